// The entity's query policy (seed 003) applied to a request's query string: which
// relationships may be expanded and how deep, which fields may be filtered on, which
// fields are returned. The module hands the upstream the effective values; the upstream
// no longer needs to know the settings.
//
// Request path: nothing here allocates, throws or makes a syscall. The caller provides
// the memory (nginx: the request pool), sized by query_policy_memory().
#pragma once

#include "snapshot_schema.h"

#include <cstddef>
#include <string_view>

namespace apikey {

enum class QueryStatus {
    ok,
    invalid_query,       // broken %-escape, bad relationship path or field name
    expand_not_allowed,  // a requested path no entry of `expandable` covers
    filter_not_allowed,  // filter[f] with f outside `filterable`, or hidden (any case)
    no_memory,           // the caller's memory was too small (never with the right size)
};

// Offenders are cut to this many bytes.
inline constexpr std::size_t kMaxOffender = 64;

struct QueryOutcome {
    QueryStatus status = QueryStatus::ok;
    // What was refused (decoded, except for a broken escape: the raw parameter name).
    // A view into the query, the entity record or the caller's memory.
    std::string_view offender;
    // Effective values, views into the caller's memory (valid as long as it is):
    std::string_view expand;  // comma-separated dot paths, cut at the max depth
    std::string_view fields;  // comma-separated; empty means every visible field
};

// The bytes apply_query_policy needs for `query` and `entity`: three times the query
// plus the entity's defaults, at most. 0 when there is nothing to do.
std::size_t query_policy_memory(std::string_view query,
                                const snapshot::EntityView &entity) noexcept;

// `query` is the raw query string (after '?', not decoded). Recognised parameters:
//   expand=a,b.c (repeatable, joined)   fields=x,y (repeatable, joined)
//   filter[field]=value   filter[field][op]=value
// Others pass through untouched. Names and values are percent-decoded, '+' is a space.
// Filters are also looked for as lenient upstream parsers find them (after a ';',
// "[filter][f]", " filter[f]"): checked, or refused as invalid_query.
// `memory` holds at least query_policy_memory(query, entity) bytes.
QueryOutcome apply_query_policy(std::string_view query, const snapshot::EntityView &entity,
                                char *memory, std::size_t size) noexcept;

}  // namespace apikey
