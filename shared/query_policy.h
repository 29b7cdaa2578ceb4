// The entity's query policy (seed 003) applied to a request's query string: which
// relationships may be expanded and how deep, which fields may be filtered on, which
// fields are returned. The module hands the upstream the effective values; the upstream
// no longer needs to know the settings.
#pragma once

#include "snapshot_schema.h"

#include <string>
#include <string_view>

namespace apikey {

enum class QueryStatus { ok, invalid_query, expand_not_allowed, filter_not_allowed };

struct QueryOutcome {
    QueryStatus status = QueryStatus::ok;
    std::string offender;  // the parameter, relationship or field refused (decoded)
    std::string expand;    // effective: comma-separated dot paths, cut at the max depth
    std::string fields;    // effective: comma-separated; empty means every visible field
};

// `query` is the raw query string (after '?', not decoded). Recognised parameters:
//   expand=a,b.c   (repeatable)   fields=x,y   (repeatable)   filter[field]=value
// Others pass through untouched. Names and values are percent-decoded, '+' is a space.
QueryOutcome apply_query_policy(std::string_view query, const snapshot::EntityView &entity);

}  // namespace apikey
