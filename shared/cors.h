// CORS decisions for a workspace's corsAllowedOrigins (seed 003): an empty list allows
// every origin. Only the decision lives here; the module writes the headers.
#pragma once

#include <string_view>

namespace apikey {

enum class CorsGrant { none, any_origin, this_origin };

// `allowed` is the workspace's comma-separated list; `origin` the request's Origin
// header. Scheme and host compare case-insensitively; "null" never matches a list.
CorsGrant cors_grant(std::string_view allowed, std::string_view origin) noexcept;

// True for a request header list (Access-Control-Request-Headers) made only of header
// names separated by commas and spaces, short enough to echo back.
bool is_echoable_header_list(std::string_view list) noexcept;

}  // namespace apikey
