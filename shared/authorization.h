// Parsing of the Authorization header value (RFC 6750 section 2.1):
//   credentials = "Bearer" 1*SP b64token   ; scheme case-insensitive, one token only
// Whitespace (SP, HTAB) before and after the whole value is optional whitespace around the
// field value (RFC 9110, 5.5), not part of the credentials; between scheme and token only
// spaces are allowed.
#pragma once

#include <string_view>

namespace apikey {

enum class AuthHeader { bearer, wrong_scheme, malformed };

struct BearerToken {
    AuthHeader status = AuthHeader::malformed;
    std::string_view token;  // into the header value; set only for `bearer`
};

BearerToken parse_authorization(std::string_view value) noexcept;

// The usual header's token without the parser's scan of its characters: when `value` is
// "Bearer" (any case), one space and `size` bytes that begin with `prefix`, those bytes;
// else empty. Bytes after the prefix are not looked at. Whenever they are all token
// characters, parse_authorization(value) is this same token: a caller that accepts only
// such tokens (and checks them anyway) may skip the parser, and must ask it about any
// token it refuses.
std::string_view usual_bearer_token(std::string_view value, std::size_t size,
                                    std::string_view prefix) noexcept;

}  // namespace apikey
