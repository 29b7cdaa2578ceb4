#include "cors.h"

#include "ascii.h"
#include "comma_list.h"

namespace apikey {
namespace {

constexpr std::size_t kMaxEchoedHeaders = 1024;

bool is_token_char(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           c == '-' || c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' ||
           c == '&' || c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' ||
           c == '~';
}

}  // namespace

CorsGrant cors_grant(std::string_view allowed, std::string_view origin) noexcept {
    if (origin.empty()) return CorsGrant::none;
    if (allowed.empty()) return CorsGrant::any_origin;
    // The opaque origin of sandboxed frames, file: pages and redirects: shared by every
    // such document, so it never identifies anyone a list could mean.
    if (origin == "null") return CorsGrant::none;
    // Origins are stored normalised (lowercase scheme and host, no trailing slash).
    return list_contains_if(allowed, [&](std::string_view item) {
               return equal_ignoring_ascii_case(item, origin);
           })
               ? CorsGrant::this_origin
               : CorsGrant::none;
}

bool is_echoable_header_list(std::string_view list) noexcept {
    if (list.empty() || list.size() > kMaxEchoedHeaders) return false;
    for (char c : list)
        if (!is_token_char(c) && c != ',' && c != ' ') return false;
    return true;
}

}  // namespace apikey
