#include "query_policy.h"

#include "ascii.h"
#include "comma_list.h"
#include "names.h"

#include <algorithm>
#include <cstring>

namespace apikey {
namespace {

constexpr std::string_view kExpand = "expand";
constexpr std::string_view kFields = "fields";
constexpr std::string_view kFilter = "filter";
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

// A hidden column, in whatever case it is named: an upstream whose database folds
// names (PostgreSQL unquoted, MySQL) answers "SSN" with the column "ssn".
bool is_hidden(std::string_view hidden_columns, std::string_view field) noexcept {
    return list_contains_if(hidden_columns, [&](std::string_view column) {
        return equal_ignoring_ascii_case(column, field);
    });
}

// True for a name that some upstream's parser reads as filter[...]: PHP drops leading
// spaces, Rack and qs skip leading brackets, Rack takes a ']' after the first name for a
// '['. Such a name must be exactly filter[field] or filter[field][op], or the field an
// upstream filters on would go unchecked ("[filter][ssn]" is filter[ssn] to Rails).
bool reads_as_filter(std::string_view name) noexcept {
    const std::size_t start = name.find_first_not_of(" []");
    if (start == std::string_view::npos) return false;
    name.remove_prefix(start);
    return name.size() > kFilter.size() && name.substr(0, kFilter.size()) == kFilter &&
           (name[kFilter.size()] == '[' || name[kFilter.size()] == ']');
}

// Whether the whitelist `expandable` of relationship paths allows `path`: a listed path
// that is a prefix of it, segment by segment, allows it and what lies below ("items"
// allows "items.product.vendor"), and so does a listed path it is on the way to
// ("items.product" allows "items"). When not, `refused` is the part of `path` no listed
// path covers: up to the first segment where the closest one parts from it ("orders",
// or "items.supplier" under "items.product").
bool expandable_allows(std::string_view expandable, std::string_view path,
                       std::string_view &refused) noexcept {
    std::size_t closest = 0;  // leading segments of `path` some listed path agrees with
    const bool allowed = list_contains_if(expandable, [&](std::string_view listed) {
        std::size_t agreed = 0;
        std::string_view a = listed, b = path;
        while (true) {
            const std::size_t da = a.find('.'), db = b.find('.');
            if (a.substr(0, da) != b.substr(0, db)) break;
            ++agreed;
            if (da == std::string_view::npos || db == std::string_view::npos) return true;
            a.remove_prefix(da + 1);
            b.remove_prefix(db + 1);
        }
        closest = std::max(closest, agreed);
        return false;
    });
    if (!allowed) refused = cut_path(path, static_cast<unsigned>(closest + 1));
    return allowed;
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
    // through which rows match). The upstream reads filters from the query itself, so
    // they are looked for as the more lenient parsers find them: a ';' separates
    // parameters too (Rack 2, Perl's URI), and names that only such parsers take for
    // filters must be well formed (reads_as_filter).
    const bool filters_ok = for_each_item_sep(query, '&', [&](std::string_view pair) {
        return for_each_item_sep(pair, ';', [&](std::string_view piece) {
            Param p;
            // A piece of a pair that decodes decodes: a ';' is never part of an escape.
            if (!decode_param(piece, scratch, p) || !reads_as_filter(p.name)) return true;
            const std::string_view field = p.name.substr(0, kFilterOpen.size()) == kFilterOpen
                                               ? filter_field(p.name)
                                               : std::string_view{};
            if (field.empty()) {
                refusal = refuse(QueryStatus::invalid_query, p.name);
                return false;
            }
            if (is_hidden(entity.hidden_columns, field) ||
                (entity.filterable && !list_contains(*entity.filterable, field))) {
                refusal = refuse(QueryStatus::filter_not_allowed, field);
                return false;
            }
            return true;
        });
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
            std::string_view refused;
            if (requested && entity.expandable &&
                !expandable_allows(*entity.expandable, path, refused)) {
                refusal = refuse(QueryStatus::expand_not_allowed, refused);
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
            if (field == kPrimaryKey || !is_hidden(entity.hidden_columns, field))
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
