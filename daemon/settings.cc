#include "settings.h"

#include "rate_limit.h"
#include "request_body.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <set>

namespace apikeyd {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr std::string_view kDepthWhy = "must be an integer from 0 to 10, or null";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string lower(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::optional<int> parse_depth(const json *v, std::string_view field) {
    if (v == nullptr || v->is_null()) return std::nullopt;
    if (v->is_number_unsigned()) {
        if (v->get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxExpandDepthLimit))
            invalid_field(field, kDepthWhy);
        return static_cast<int>(v->get<std::uint64_t>());
    }
    if (v->is_number_integer()) {  // signed: negative here
        const auto n = v->get<std::int64_t>();
        if (n < 0 || n > kMaxExpandDepthLimit) invalid_field(field, kDepthWhy);
        return static_cast<int>(n);
    }
    invalid_field(field, kDepthWhy);
}

enum class ItemKind { field, path };

// A list setting: null, a comma-separated string or an array of strings; normalised to
// the comma form. `empty_is_null`: an empty list means "unset".
std::optional<std::string> parse_list(const json *v, std::string_view field, ItemKind kind,
                                      bool empty_is_null) {
    if (v == nullptr || v->is_null()) return std::nullopt;
    std::vector<std::string_view> raw;
    auto split = [&raw](std::string_view s) {
        while (true) {
            const auto comma = s.find(',');
            raw.push_back(s.substr(0, comma));
            if (comma == std::string_view::npos) break;
            s.remove_prefix(comma + 1);
        }
    };
    if (v->is_string()) {
        split(v->get_ref<const std::string &>());
    } else if (v->is_array()) {
        for (const json &item : *v) {
            if (!item.is_string())
                invalid_field(field, "must be a comma-separated string, an array of strings or null");
            // An array item is one item: a comma in it is invalid below.
            raw.push_back(item.get_ref<const std::string &>());
        }
    } else {
        invalid_field(field, "must be a comma-separated string, an array of strings or null");
    }

    std::string out;
    std::set<std::string_view> seen;
    std::size_t position = 0;
    for (std::string_view item : raw) {
        ++position;
        item = trim(item);
        if (item.empty()) continue;
        const bool ok = kind == ItemKind::field ? is_identifier(item) : is_relationship_path(item);
        if (!ok)
            invalid_field(field, "item " + std::to_string(position) +
                                     (kind == ItemKind::field
                                          ? " is not a field name: letters, digits and _, not "
                                            "starting with a digit, at most 64 characters"
                                          : " is not a relationship path: names of letters, "
                                            "digits and _ (not starting with a digit, at most 64 "
                                            "characters) joined by dots, at most 10 of them"));
        if (!seen.insert(item).second) continue;
        if (seen.size() > kMaxListItems)
            invalid_field(field, "must have at most " + std::to_string(kMaxListItems) + " items");
        if (!out.empty()) out += ',';
        out.append(item);
    }
    if (out.empty() && empty_is_null) return std::nullopt;
    return out;
}

std::optional<std::vector<std::string>> parse_origins(const json *v, std::string_view field) {
    if (v == nullptr || v->is_null()) return std::nullopt;
    if (!v->is_array()) invalid_field(field, "must be an array of origins or null");
    if (v->size() > kMaxOrigins)
        invalid_field(field, "must have at most " + std::to_string(kMaxOrigins) + " origins");
    std::vector<std::string> out;
    std::size_t position = 0;
    for (const json &item : *v) {
        ++position;
        if (!item.is_string()) invalid_field(field, "must be an array of strings or null");
        const std::string &text = item.get_ref<const std::string &>();
        if (text == "*")
            invalid_field(field, "item " + std::to_string(position) +
                                     " is \"*\": use null or [] to allow every origin");
        const auto origin = normalise_origin(text);
        if (!origin)
            invalid_field(field, "item " + std::to_string(position) +
                                     " is not an origin: scheme://host[:port] with scheme http "
                                     "or https, a DNS name or IP address, and no path, not even "
                                     "a trailing slash");
        bool dup = false;
        for (const auto &o : out) dup = dup || o == *origin;
        if (!dup) out.push_back(*origin);
    }
    if (out.empty()) return std::nullopt;  // [] is "every origin", like null
    return out;
}

std::optional<PublicAccess> parse_access(const json *v, std::string_view field) {
    if (v == nullptr || v->is_null()) return std::nullopt;
    std::optional<PublicAccess> access;
    if (v->is_string()) access = apikey::snapshot::parse_public_access(v->get<std::string>());
    if (!access) invalid_field(field, "must be \"NONE\", \"READ_ONLY\", \"READ_WRITE\" or null");
    return access;
}

std::optional<std::map<std::string, ColumnSettings>> parse_columns(const json *v) {
    if (v == nullptr || v->is_null()) return std::nullopt;
    if (!v->is_object())
        invalid_field("columns", "must be an object {\"<column>\": {\"apiVisible\": true|false}} or null");
    if (v->size() > kMaxColumns)
        invalid_field("columns", "must have at most " + std::to_string(kMaxColumns) + " columns");
    std::map<std::string, ColumnSettings> out;
    for (const auto &[name, settings] : v->items()) {
        if (!is_identifier(name))
            invalid_field("columns", "has a column name that is not valid: letters, digits and _, "
                                     "not starting with a digit, at most 64 characters");
        const std::string prefix = "columns." + name;
        if (!settings.is_object())
            invalid_field(prefix, "must be an object {\"apiVisible\": true|false}");
        for (const auto &item : settings.items())
            if (item.key() != "apiVisible") unknown_field(prefix + "." + item.key());
        const auto visible = settings.find("apiVisible");
        if (visible == settings.end())
            throw ApiError(400, code::missing_field,
                           quoted_field(prefix + ".apiVisible") + " is required");
        if (!visible->is_boolean()) invalid_field(prefix + ".apiVisible", "must be true or false");
        if (name == "id" && !visible->get<bool>())
            invalid_field(prefix + ".apiVisible",
                          "cannot be false: the primary key column \"id\" is always visible");
        out[name].api_visible = visible->get<bool>();
    }
    if (out.empty()) return std::nullopt;
    return out;
}

ordered_json optional_string(const std::optional<std::string> &s) {
    return s ? ordered_json(*s) : ordered_json(nullptr);
}

ordered_json optional_int(const std::optional<int> &i) {
    return i ? ordered_json(*i) : ordered_json(nullptr);
}

ordered_json origins_json(const std::optional<std::vector<std::string>> &origins) {
    return origins ? ordered_json(*origins) : ordered_json(nullptr);
}

std::string join(const std::vector<std::string> &items) {
    std::string out;
    for (const auto &item : items) {
        if (!out.empty()) out += ',';
        out += item;
    }
    return out;
}

bool valid_dns_name(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    std::size_t start = 0;
    bool last_numeric = false;
    while (true) {
        const auto dot = host.find('.', start);
        const std::string_view label = host.substr(start, dot == std::string_view::npos ? dot : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        last_numeric = true;
        for (const char c : label) {
            if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '-')) return false;
            if (!is_digit(c)) last_numeric = false;
        }
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    // A name ending in a numeric label is an (invalid) IPv4 address to a browser.
    return !last_numeric;
}

}  // namespace

std::string EntitySettings::hidden_columns() const {
    std::string out;
    if (!columns) return out;
    for (const auto &[name, column] : *columns) {
        if (column.api_visible) continue;
        if (!out.empty()) out += ',';
        out += name;
    }
    return out;
}

bool is_relationship_path(std::string_view text) noexcept {
    if (text.empty() || text.size() > kMaxPathLength) return false;
    std::size_t segments = 0;
    while (true) {
        const auto dot = text.find('.');
        if (!is_identifier(text.substr(0, dot)) || ++segments > kMaxPathSegments) return false;
        if (dot == std::string_view::npos) return true;
        text.remove_prefix(dot + 1);
    }
}

std::optional<std::string> normalise_origin(std::string_view text) {
    if (text.empty() || text.size() > kMaxOriginLength) return std::nullopt;
    const auto sep = text.find("://");
    if (sep == std::string_view::npos) return std::nullopt;
    const std::string scheme = lower(text.substr(0, sep));
    if (scheme != "http" && scheme != "https") return std::nullopt;
    std::string_view rest = text.substr(sep + 3);
    for (const char ch : rest) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7F || ch == '/' || ch == '?' || ch == '#' || ch == '@' ||
            ch == '\\' || ch == '%')
            return std::nullopt;
    }
    if (rest.empty()) return std::nullopt;

    std::string host;
    std::optional<std::string_view> port_text;
    if (rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        const std::string inner(rest.substr(1, close - 1));
        in6_addr address{};
        if (::inet_pton(AF_INET6, inner.c_str(), &address) != 1) return std::nullopt;
        char buffer[INET6_ADDRSTRLEN];
        if (::inet_ntop(AF_INET6, &address, buffer, sizeof buffer) == nullptr) return std::nullopt;
        host = "[" + std::string(buffer) + "]";
        rest.remove_prefix(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port_text = rest.substr(1);
        }
    } else {
        const auto colon = rest.find(':');
        if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
        host = lower(rest.substr(0, colon));
        bool dotted_digits = !host.empty();
        for (const char c : host) dotted_digits = dotted_digits && (is_digit(c) || c == '.');
        if (dotted_digits) {
            in_addr address{};  // glibc: exactly four decimal parts, no leading zeros
            if (::inet_pton(AF_INET, host.c_str(), &address) != 1) return std::nullopt;
        } else if (!valid_dns_name(host)) {
            return std::nullopt;
        }
    }

    std::string out = scheme + "://" + host;
    if (port_text) {
        if (port_text->empty() || port_text->size() > 5) return std::nullopt;
        unsigned port = 0;
        for (const char c : *port_text) {
            if (!is_digit(c)) return std::nullopt;
            port = port * 10 + static_cast<unsigned>(c - '0');
        }
        if (port < 1 || port > 65535) return std::nullopt;
        // Browsers never send a scheme's default port in Origin.
        const bool default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
        if (!default_port) out += ":" + std::to_string(port);
    }
    return out;
}

namespace {

const std::initializer_list<FieldSpec> kWorkspaceFields = {
    {"maxExpandDepth"}, {"corsAllowedOrigins"}, {"defaultRateLimit"}};

WorkspaceSettings workspace_from(const JsonObject &object) {
    WorkspaceSettings s;
    s.max_expand_depth = parse_depth(object.get("maxExpandDepth"), "maxExpandDepth");
    s.cors_origins = parse_origins(object.get("corsAllowedOrigins"), "corsAllowedOrigins");
    if (const auto *limit = object.get("defaultRateLimit"))
        s.default_rate_limit = parse_rate_limit(*limit, "defaultRateLimit");
    return s;
}

const std::initializer_list<FieldSpec> kEntityFields = {
    {"defaultExpand"},    {"maxExpandDepth"}, {"defaultFields"}, {"expandableRelationships"},
    {"filterableFields"}, {"publicAccess"},   {"columns"}};

EntitySettings entity_from(const JsonObject &object) {
    EntitySettings s;
    s.default_expand = parse_list(object.get("defaultExpand"), "defaultExpand", ItemKind::path, true);
    s.max_expand_depth = parse_depth(object.get("maxExpandDepth"), "maxExpandDepth");
    s.default_fields = parse_list(object.get("defaultFields"), "defaultFields", ItemKind::field, true);
    s.expandable = parse_list(object.get("expandableRelationships"), "expandableRelationships",
                              ItemKind::path, false);
    s.filterable = parse_list(object.get("filterableFields"), "filterableFields", ItemKind::field, false);
    s.public_access = parse_access(object.get("publicAccess"), "publicAccess");
    s.columns = parse_columns(object.get("columns"));
    return s;
}

}  // namespace

WorkspaceSettings parse_workspace_settings(std::string_view body) {
    return workspace_from(JsonObject(body, kWorkspaceFields));
}

WorkspaceSettings workspace_settings_from_json(const json &value) {
    return workspace_from(JsonObject(value, kWorkspaceFields));
}

EntitySettings parse_entity_settings(std::string_view body) {
    return entity_from(JsonObject(body, kEntityFields));
}

EntitySettings entity_settings_from_json(const json &value) {
    return entity_from(JsonObject(value, kEntityFields));
}

apikey::snapshot::WorkspaceRecord workspace_record(const Uuid &id, const WorkspaceSettings &ws) {
    apikey::snapshot::WorkspaceRecord r;
    r.id = id;
    r.max_expand_depth = static_cast<std::uint8_t>(ws.effective_max_expand_depth());
    if (ws.cors_origins) r.cors_origins = join(*ws.cors_origins);
    return r;
}

apikey::snapshot::EntityRecord entity_record(const EntitySettings &e, const WorkspaceSettings &ws) {
    apikey::snapshot::EntityRecord r;
    r.public_access = e.public_access.value_or(PublicAccess::none);
    r.max_expand_depth =
        static_cast<std::uint8_t>(e.max_expand_depth.value_or(ws.effective_max_expand_depth()));
    r.default_expand = e.default_expand;
    r.default_fields = e.default_fields;
    r.expandable = e.expandable;
    r.filterable = e.filterable;
    r.hidden_columns = e.hidden_columns();
    return r;
}

ordered_json settings_json(const WorkspaceSettings &s) {
    ordered_json j;
    j["maxExpandDepth"] = optional_int(s.max_expand_depth);
    j["corsAllowedOrigins"] = origins_json(s.cors_origins);
    j["defaultRateLimit"] = rate_limit_json(s.default_rate_limit);
    return j;
}

ordered_json settings_json(const EntitySettings &s) {
    ordered_json j;
    j["defaultExpand"] = optional_string(s.default_expand);
    j["maxExpandDepth"] = optional_int(s.max_expand_depth);
    j["defaultFields"] = optional_string(s.default_fields);
    j["expandableRelationships"] = optional_string(s.expandable);
    j["filterableFields"] = optional_string(s.filterable);
    j["publicAccess"] = s.public_access
                            ? ordered_json(std::string(apikey::snapshot::to_string(*s.public_access)))
                            : ordered_json(nullptr);
    if (s.columns) {
        ordered_json columns = ordered_json::object();
        for (const auto &[name, column] : *s.columns)
            columns[name] = ordered_json{{"apiVisible", column.api_visible}};
        j["columns"] = std::move(columns);
    } else {
        j["columns"] = nullptr;
    }
    return j;
}

ordered_json workspace_settings_view(const WorkspaceSettings &s) {
    ordered_json j = settings_json(s);
    ordered_json effective;
    effective["maxExpandDepth"] = s.effective_max_expand_depth();
    effective["corsAllowedOrigins"] = origins_json(s.cors_origins);  // null: every origin
    effective["defaultRateLimit"] = rate_limit_json(s.default_rate_limit);  // null: nginx's
    j["effective"] = std::move(effective);
    return j;
}

ordered_json entity_settings_view(const EntitySettings &e, const WorkspaceSettings &ws) {
    ordered_json j = settings_json(e);
    const auto r = entity_record(e, ws);
    ordered_json effective;
    effective["maxExpandDepth"] = r.max_expand_depth;
    effective["publicAccess"] = std::string(apikey::snapshot::to_string(r.public_access));
    effective["defaultExpand"] = optional_string(r.default_expand);
    effective["defaultFields"] = optional_string(r.default_fields);
    effective["expandableRelationships"] = optional_string(r.expandable);
    effective["filterableFields"] = optional_string(r.filterable);
    ordered_json hidden = ordered_json::array();
    if (e.columns)
        for (const auto &[name, column] : *e.columns)
            if (!column.api_visible) hidden.push_back(name);
    effective["hiddenColumns"] = std::move(hidden);
    j["effective"] = std::move(effective);
    return j;
}

}  // namespace apikeyd
