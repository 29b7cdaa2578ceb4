#include "query_policy.h"

#include "comma_list.h"
#include "names.h"

#include <algorithm>
#include <cstring>

namespace apikey {
namespace {

constexpr std::string_view kExpand = "expand";
constexpr std::string_view kFields = "fields";
constexpr std::string_view kFilterOpen = "filter[";
constexpr std::string_view kPrimaryKey = "id";
constexpr std::string_view kPrimaryKeyFirst = "id,";

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

constexpr std::size_t kBroken = static_cast<std::size_t>(-1);

// application/x-www-form-urlencoded decoding into `out` (room for in.size() bytes: the
// result is never longer). Returns the decoded length, or kBroken on a broken %-escape.
std::size_t percent_decode(std::string_view in, char *out) noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '+') {
            out[n++] = ' ';
        } else if (c == '%') {
            if (in.size() - i < 3) return kBroken;
            const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) return kBroken;
            out[n++] = static_cast<char>(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = c;
        }
    }
    return n;
}

struct Param {
    std::string_view raw_name;
    std::string_view name, value;  // decoded, into the scratch memory
};

// Splits "name=value" and decodes both into `scratch` (room for pair.size() bytes).
bool decode_param(std::string_view pair, char *scratch, Param &out) noexcept {
    const std::size_t eq = pair.find('=');
    out.raw_name = pair.substr(0, eq);
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    const std::size_t n = percent_decode(out.raw_name, scratch);
    if (n == kBroken) return false;
    const std::size_t v = percent_decode(raw_value, scratch + n);
    if (v == kBroken) return false;
    out.name = {scratch, n};
    out.value = {scratch + n, v};
    return true;
}

// Dot-separated identifiers: "items.product".
bool is_path(std::string_view s) noexcept {
    if (s.empty()) return false;
    while (true) {
        const std::size_t dot = s.find('.');
        if (!is_identifier(s.substr(0, dot))) return false;
        if (dot == std::string_view::npos) return true;
        s.remove_prefix(dot + 1);
    }
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The first `depth` dot-separated segments of `path` (empty when depth is 0).
std::string_view cut_path(std::string_view path, unsigned depth) noexcept {
    if (depth == 0) return {};
    std::size_t end = 0;
    for (unsigned seen = 0; seen < depth; ++seen) {
        const std::size_t dot = path.find('.', end);
        if (dot == std::string_view::npos) return path;
        end = dot + 1;
    }
    return path.substr(0, end - 1);
}

// A comma-separated list written front to back into the caller's memory, without
// duplicates, in order.
class ListWriter {
public:
    ListWriter(char *data, std::size_t capacity) noexcept : data_(data), capacity_(capacity) {}

    std::string_view view() const noexcept { return {data_, len_}; }
    bool overflowed() const noexcept { return overflowed_; }

    void append_unique(std::string_view item) noexcept {
        if (item.empty() || list_contains(view(), item)) return;
        const std::size_t need = item.size() + (len_ != 0 ? 1 : 0);
        if (capacity_ - len_ < need) {
            overflowed_ = true;
            return;
        }
        if (len_ != 0) data_[len_++] = ',';
        std::memcpy(data_ + len_, item.data(), item.size());
        len_ += item.size();
    }

private:
    char *data_;
    std::size_t capacity_;
    std::size_t len_ = 0;
    bool overflowed_ = false;
};

QueryOutcome refuse(QueryStatus status, std::string_view offender) noexcept {
    QueryOutcome out;
    out.status = status;
    out.offender = offender.substr(0, kMaxOffender);
    return out;
}

// filter[field] or filter[field][op]: the field, or empty when the name is malformed.
std::string_view filter_field(std::string_view name) noexcept {
    std::string_view rest = name.substr(kFilterOpen.size());
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return {};
    const std::string_view field = rest.substr(0, close);
    rest.remove_prefix(close + 1);
    if (!is_identifier(field)) return {};
    if (rest.empty()) return field;
    // One operator: filter[price][gte]=10 still filters on price.
    if (rest.size() < 3 || rest.front() != '[' || rest.back() != ']' ||
        !is_identifier(rest.substr(1, rest.size() - 2)))
        return {};
    return field;
}

}  // namespace

std::size_t query_policy_memory(std::string_view query,
                                const snapshot::EntityView &entity) noexcept {
    const std::size_t q = query.size();
    const std::size_t de = entity.default_expand ? entity.default_expand->size() : 0;
    const std::size_t df = entity.default_fields ? entity.default_fields->size() : 0;
    if (q == 0 && de == 0 && df == 0) return 0;
    // scratch for one decoded parameter, effective expand, "id," + effective fields
    return q + std::max(q, de) + kPrimaryKeyFirst.size() + std::max(q, df);
}

QueryOutcome apply_query_policy(std::string_view query, const snapshot::EntityView &entity,
                                char *memory, std::size_t size) noexcept {
    const std::size_t need = query_policy_memory(query, entity);
    char nothing[4];
    if (need == 0) {
        memory = nothing;
        size = sizeof(nothing);
    } else if (memory == nullptr || size < need) {
        return refuse(QueryStatus::no_memory, {});
    }
    const std::size_t q = query.size();
    const std::size_t de = entity.default_expand ? entity.default_expand->size() : 0;
    char *const scratch = memory;
    char *const expand_mem = memory + q;
    const std::size_t expand_cap = std::max(q, de);
    char *const fields_mem = expand_mem + expand_cap;
    const std::size_t fields_cap = size - q - expand_cap;

    // 1. Every name and value decodes: a broken escape anywhere is refused first.
    QueryOutcome refusal;
    auto each_param = [&](auto &&fn) {
        return for_each_item_sep(query, '&', [&](std::string_view pair) {
            Param p;
            if (!decode_param(pair, scratch, p)) {
                refusal = refuse(QueryStatus::invalid_query, p.raw_name);
                return false;
            }
            return fn(p);
        });
    };
    if (!each_param([](const Param &) { return true; })) return refusal;

    // 2. Filters: the whitelist, and never a hidden column (its values would leak
    // through which rows match).
    const bool filters_ok = each_param([&](const Param &p) {
        if (p.name.substr(0, kFilterOpen.size()) != kFilterOpen) return true;
        const std::string_view field = filter_field(p.name);
        if (field.empty()) {
            refusal = refuse(QueryStatus::invalid_query, p.name);
            return false;
        }
        if (list_contains(entity.hidden_columns, field) ||
            (entity.filterable && !list_contains(*entity.filterable, field))) {
            refusal = refuse(QueryStatus::filter_not_allowed, field);
            return false;
        }
        return true;
    });
    if (!filters_ok) return refusal;

    // 3. Expand: what was asked (even asked empty), else the entity's default; every
    // path cut at the max depth, never refused for depth.
    ListWriter expand(expand_mem, expand_cap);
    auto add_paths = [&](std::string_view list, bool requested) {
        return for_each_item(list, [&](std::string_view item) {
            const std::string_view path = trim(item);
            if (path.empty()) return true;
            if (!is_path(path)) {
                refusal = refuse(QueryStatus::invalid_query, path);
                return false;
            }
            const std::string_view head = cut_path(path, 1);
            if (requested && entity.expandable && !list_contains(*entity.expandable, head)) {
                refusal = refuse(QueryStatus::expand_not_allowed, head);
                return false;
            }
            expand.append_unique(cut_path(path, entity.max_expand_depth));
            return true;
        });
    };
    bool expand_requested = false;
    bool expand_ok = each_param([&](const Param &p) {
        if (p.name != kExpand) return true;
        expand_requested = true;
        return add_paths(p.value, true);
    });
    if (expand_ok && !expand_requested && entity.default_expand)
        expand_ok = add_paths(*entity.default_expand, false);
    if (!expand_ok) return refusal;

    // 4. Fields: what was asked, else the default; hidden columns out, the primary key
    // in. Written after room for "id," so that it can be put in front.
    ListWriter kept(fields_mem + kPrimaryKeyFirst.size(), fields_cap - kPrimaryKeyFirst.size());
    bool any_field = false;
    auto add_fields = [&](std::string_view list) {
        return for_each_item(list, [&](std::string_view item) {
            const std::string_view field = trim(item);
            if (field.empty()) return true;
            if (!is_identifier(field)) {
                refusal = refuse(QueryStatus::invalid_query, field);
                return false;
            }
            any_field = true;
            if (field == kPrimaryKey || !list_contains(entity.hidden_columns, field))
                kept.append_unique(field);
            return true;
        });
    };
    bool fields_requested = false;
    bool fields_ok = each_param([&](const Param &p) {
        if (p.name != kFields) return true;
        fields_requested = true;
        return add_fields(p.value);
    });
    if (fields_ok && !fields_requested && entity.default_fields)
        fields_ok = add_fields(*entity.default_fields);
    if (!fields_ok) return refusal;

    if (expand.overflowed() || kept.overflowed()) return refuse(QueryStatus::no_memory, {});

    QueryOutcome out;
    out.expand = expand.view();
    const std::string_view fields = kept.view();
    if (!any_field) {
        out.fields = {};  // every visible field
    } else if (fields.empty()) {
        std::memcpy(fields_mem, kPrimaryKey.data(), kPrimaryKey.size());
        out.fields = {fields_mem, kPrimaryKey.size()};  // every field asked is hidden
    } else if (!list_contains(fields, kPrimaryKey)) {
        std::memcpy(fields_mem, kPrimaryKeyFirst.data(), kPrimaryKeyFirst.size());
        out.fields = {fields_mem, kPrimaryKeyFirst.size() + fields.size()};
    } else {
        out.fields = fields;
    }
    return out;
}

}  // namespace apikey
