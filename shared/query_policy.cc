#include "query_policy.h"

#include "comma_list.h"

#include <vector>

namespace apikey {
namespace {

constexpr std::string_view kFilterOpen = "filter[";
constexpr std::string_view kPrimaryKey = "id";

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// application/x-www-form-urlencoded decoding; false on a broken %-escape.
bool percent_decode(std::string_view in, std::string &out) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '+') {
            out.push_back(' ');
        } else if (c == '%') {
            if (i + 2 >= in.size()) return false;
            const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            out.push_back(static_cast<char>(hi << 4 | lo));
            i += 2;
        } else {
            out.push_back(c);
        }
    }
    return true;
}

bool is_identifier(std::string_view s) noexcept {
    if (s.empty() || s.size() > 64) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

bool is_path(std::string_view s) noexcept {
    return for_each_item_sep(s, '.', [](std::string_view seg) { return is_identifier(seg); }) &&
           !s.empty() && s.front() != '.' && s.back() != '.' &&
           s.find("..") == std::string_view::npos;
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

// The first `depth` dot-separated segments of `path` (empty when depth is 0).
std::string_view cut_path(std::string_view path, unsigned depth) noexcept {
    std::size_t end = 0;
    for (unsigned seen = 0; seen < depth; ++seen) {
        const std::size_t dot = path.find('.', end);
        if (dot == std::string_view::npos) return path;
        end = dot + 1;
    }
    return depth == 0 ? std::string_view{} : path.substr(0, end - 1);
}

void append_unique(std::string &list, std::string_view item) {
    if (item.empty() || list_contains(list, item)) return;
    if (!list.empty()) list.push_back(',');
    list.append(item);
}

QueryOutcome refuse(QueryStatus status, std::string_view offender) {
    QueryOutcome out;
    out.status = status;
    out.offender.assign(offender.substr(0, 64));
    return out;
}

}  // namespace

QueryOutcome apply_query_policy(std::string_view query, const snapshot::EntityView &entity) {
    std::optional<std::string> expand_param, fields_param;
    std::string name, value;

    bool broken = false;
    std::string broken_param;
    for_each_item_sep(query, '&', [&](std::string_view pair) {
        const std::size_t eq = pair.find('=');
        if (!percent_decode(pair.substr(0, eq), name) ||
            !percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1),
                            value)) {
            broken = true;
            broken_param.assign(pair.substr(0, eq));
            return false;
        }
        if (name == "expand") {
            if (!expand_param) expand_param.emplace();
            if (!value.empty()) append_unique(*expand_param, value);
        } else if (name == "fields") {
            if (!fields_param) fields_param.emplace();
            if (!value.empty()) append_unique(*fields_param, value);
        }
        return true;
    });
    if (broken) return refuse(QueryStatus::invalid_query, broken_param);

    // Filters: a second pass, so that a broken escape anywhere wins over a refusal.
    QueryOutcome filter_refusal;
    for_each_item_sep(query, '&', [&](std::string_view pair) {
        percent_decode(pair.substr(0, pair.find('=')), name);
        if (name.compare(0, kFilterOpen.size(), kFilterOpen) != 0) return true;
        if (name.back() != ']') {
            filter_refusal = refuse(QueryStatus::invalid_query, name);
            return false;
        }
        const std::string_view field =
            std::string_view(name).substr(kFilterOpen.size(), name.size() - kFilterOpen.size() - 1);
        if (!is_identifier(field)) {
            filter_refusal = refuse(QueryStatus::invalid_query, name);
            return false;
        }
        // A hidden column is never filterable: its values would leak through the answers.
        if (list_contains(entity.hidden_columns, field) ||
            (entity.filterable && !list_contains(*entity.filterable, field))) {
            filter_refusal = refuse(QueryStatus::filter_not_allowed, field);
            return false;
        }
        return true;
    });
    if (filter_refusal.status != QueryStatus::ok) return filter_refusal;

    QueryOutcome out;

    // Expand: what was asked (even asked empty), else the entity's default.
    const bool requested = expand_param.has_value();
    const std::string_view expand = requested ? std::string_view(*expand_param)
                                              : entity.default_expand.value_or(std::string_view{});
    bool expand_ok = true;
    for_each_item(expand, [&](std::string_view raw) {
        const std::string_view path = trim(raw);
        if (path.empty()) return true;
        if (!is_path(path)) {
            out = refuse(QueryStatus::invalid_query, path);
            expand_ok = false;
            return false;
        }
        const std::string_view head = cut_path(path, 1);
        if (requested && entity.expandable && !list_contains(*entity.expandable, head)) {
            out = refuse(QueryStatus::expand_not_allowed, head);
            expand_ok = false;
            return false;
        }
        append_unique(out.expand, cut_path(path, entity.max_expand_depth));
        return true;
    });
    if (!expand_ok) return out;

    // Fields: what was asked, else the default; hidden columns out, the primary key in.
    const std::string_view fields = fields_param ? std::string_view(*fields_param)
                                                 : entity.default_fields.value_or(std::string_view{});
    std::string kept;
    bool fields_ok = true;
    for_each_item(fields, [&](std::string_view raw) {
        const std::string_view field = trim(raw);
        if (field.empty()) return true;
        if (!is_identifier(field)) {
            out = refuse(QueryStatus::invalid_query, field);
            fields_ok = false;
            return false;
        }
        if (!list_contains(entity.hidden_columns, field) || field == kPrimaryKey)
            append_unique(kept, field);
        return true;
    });
    if (!fields_ok) return out;
    if (!kept.empty() && !list_contains(kept, kPrimaryKey)) {
        out.fields.assign(kPrimaryKey).append(",").append(kept);
    } else if (kept.empty() && !fields.empty()) {
        out.fields.assign(kPrimaryKey);  // every field asked for is hidden
    } else {
        out.fields = std::move(kept);
    }
    return out;
}

}  // namespace apikey
