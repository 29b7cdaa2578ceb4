#include "request_body.h"

#include "key_format.h"

#include <functional>
#include <set>
#include <vector>

namespace apikeyd {

using nlohmann::json;

std::string quoted_field(std::string_view field) {
    if (field.empty() || field.size() > 64) return "a field";
    for (const char c : field)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return "a field";
    // A key pasted as a member name ({"sk_live_...": 1}) is not echoed whole.
    std::string name(field);
    name.resize(apikey::cut_keys_to_prefix(name.data(), name.size()));
    return "field \"" + name + "\"";
}

namespace {

// Depth of [ and { nesting outside strings; stops counting at the limit.
bool nesting_within(std::string_view text, std::size_t limit) {
    std::size_t depth = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return false;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return true;
}

// Member names of each object open while parsing, innermost last. JSON leaves duplicate
// names to the parser (RFC 8259 4) and nlohmann keeps the last one, so a body could pass
// a check of one value and have the other stored ({"permission":"read_only",
// "permission":"read_write"}): any duplicate, at any depth, is refused instead.
class DuplicateMemberCheck {
public:
    bool operator()(int /*depth*/, json::parse_event_t event, json &parsed) {
        switch (event) {
        case json::parse_event_t::object_start: open_.emplace_back(); break;
        case json::parse_event_t::object_end:
            if (!open_.empty()) open_.pop_back();
            break;
        case json::parse_event_t::key:
            if (!open_.empty() && !open_.back().insert(parsed.get<std::string>()).second)
                throw DuplicateMember(400, code::invalid_json,
                                      quoted_field(parsed.get<std::string>()) +
                                          " appears more than once in one object: "
                                          "duplicate member names are refused");
            break;
        default: break;
        }
        return true;  // keep everything
    }

private:
    std::vector<std::set<std::string>> open_;
};

}  // namespace

void invalid_field(std::string_view field, std::string_view why) {
    throw ApiError(400, code::invalid_field, quoted_field(field) + " " + std::string(why));
}

void unknown_field(std::string_view field) {
    throw ApiError(400, code::unknown_field, "unknown " + quoted_field(field));
}

JsonObject::JsonObject(std::string_view body, std::initializer_list<FieldSpec> fields) {
    if (!nesting_within(body, kMaxJsonDepth))
        throw ApiError(400, code::invalid_json, "the body is nested too deeply");
    DuplicateMemberCheck duplicates;
    try {
        object_ = json::parse(body.begin(), body.end(), std::ref(duplicates));
    } catch (const json::parse_error &) {
        throw ApiError(400, code::invalid_json, "the body is not valid JSON");
    } catch (const json::out_of_range &) {  // a number no double holds: 1e380
        throw ApiError(400, code::invalid_json, "the body holds a number out of range");
    }
    if (!object_.is_object()) throw ApiError(400, code::invalid_json, "the body must be a JSON object");
    check_fields(fields);
}

JsonObject::JsonObject(json value, std::initializer_list<FieldSpec> fields)
    : object_(std::move(value)) {
    if (!object_.is_object()) throw ApiError(400, code::invalid_json, "a JSON object is required");
    check_fields(fields);
}

void JsonObject::check_fields(std::initializer_list<FieldSpec> fields) const {
    for (const auto &item : object_.items()) {
        bool known = false;
        for (const FieldSpec &f : fields) known = known || f.name == item.key();
        if (!known) throw ApiError(400, code::unknown_field, "unknown " + quoted_field(item.key()));
    }
}

const json *JsonObject::get(std::string_view field) const {
    const auto it = object_.find(std::string(field));
    return it == object_.end() ? nullptr : &*it;
}

std::string JsonObject::required_string(std::string_view field) const {
    const json *value = get(field);
    if (value == nullptr) throw ApiError(400, code::missing_field, quoted_field(field) + " is required");
    if (!value->is_string()) invalid_field(field, "must be a string");
    return value->get<std::string>();
}

namespace {

// Space, tab, LF, VT, FF, CR: what trimming removes; a name of nothing else says nothing.
bool ascii_blank(std::string_view text) {
    for (const char c : text)
        if (c != ' ' && (c < '\t' || c > '\r')) return false;
    return true;
}

}  // namespace

std::string checked_name(const std::string &value, std::string_view field, std::size_t max_chars) {
    // "  " is as empty as "" (and gets its error, not the control-character one for "\t").
    if (ascii_blank(value)) invalid_field(field, "must not be empty");
    std::size_t chars = 0;
    for (const char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c & 0xC0) != 0x80) ++chars;  // not a UTF-8 continuation byte
        if (c < 0x20 || c == 0x7F) invalid_field(field, "must not contain control characters");
    }
    if (chars > max_chars)
        invalid_field(field, "must be at most " + std::to_string(max_chars) + " characters");
    return value;
}

}  // namespace apikeyd
