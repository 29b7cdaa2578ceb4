// The admin API's answer to one request, independent of the HTTP library, and the one
// error body shape every failure uses: {"error":{"code":"...","message":"..."}}.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace apikeyd {

struct Response {
    unsigned status = 200;
    std::string body;  // JSON, unless content_type says otherwise
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type etc.
    std::string actor;  // admin token name when authenticated, for the access log
};

// Stable, machine-readable error codes of the admin API. Never rename; append.
namespace code {
inline constexpr std::string_view bad_request = "bad_request";             // 400 malformed HTTP
inline constexpr std::string_view invalid_json = "invalid_json";           // 400
inline constexpr std::string_view unknown_field = "unknown_field";         // 400
inline constexpr std::string_view invalid_field = "invalid_field";         // 400
inline constexpr std::string_view missing_field = "missing_field";         // 400
inline constexpr std::string_view unauthorized = "unauthorized";           // 401
inline constexpr std::string_view not_found = "not_found";                 // 404
inline constexpr std::string_view method_not_allowed = "method_not_allowed";  // 405
inline constexpr std::string_view conflict = "conflict";                   // 409
inline constexpr std::string_view payload_too_large = "payload_too_large"; // 413
inline constexpr std::string_view uri_too_long = "uri_too_long";           // 414
inline constexpr std::string_view headers_too_large = "headers_too_large"; // 431
inline constexpr std::string_view internal_error = "internal_error";       // 500
inline constexpr std::string_view not_implemented = "not_implemented";     // 501 transfer coding
inline constexpr std::string_view unsupported_media_type = "unsupported_media_type";  // 415 content coding
inline constexpr std::string_view store_unavailable = "store_unavailable"; // 503
inline constexpr std::string_view publish_failed = "publish_failed";       // 503
inline constexpr std::string_view too_many_requests = "too_many_requests"; // 429 admin auth
inline constexpr std::string_view import_rejected = "import_rejected";     // 400/409 import
}  // namespace code

Response error_response(unsigned status, std::string_view code, std::string_view message);

}  // namespace apikeyd
