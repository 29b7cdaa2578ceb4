// Parsing of the Authorization header value (RFC 6750 section 2.1):
//   credentials = "Bearer" 1*SP b64token   ; scheme case-insensitive, one token only
#pragma once

#include <string_view>

namespace apikey {

enum class AuthHeader { bearer, wrong_scheme, malformed };

struct BearerToken {
    AuthHeader status = AuthHeader::malformed;
    std::string_view token;  // into the header value; set only for `bearer`
};

BearerToken parse_authorization(std::string_view value) noexcept;

}  // namespace apikey
