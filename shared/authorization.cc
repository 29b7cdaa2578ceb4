#include "authorization.h"

namespace apikey {
namespace {

constexpr std::string_view kScheme = "bearer";

bool is_b64token_char(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

}  // namespace

BearerToken parse_authorization(std::string_view value) noexcept {
    std::size_t i = 0;
    while (i < value.size() && value[i] != ' ') ++i;
    const std::string_view scheme = value.substr(0, i);
    if (scheme.size() != kScheme.size()) return {AuthHeader::wrong_scheme, {}};
    for (std::size_t k = 0; k < scheme.size(); ++k)
        if (lower(scheme[k]) != kScheme[k]) return {AuthHeader::wrong_scheme, {}};

    while (i < value.size() && value[i] == ' ') ++i;
    const std::size_t start = i;
    while (i < value.size() && is_b64token_char(value[i])) ++i;
    while (i < value.size() && value[i] == '=') ++i;
    // Trailing spaces are tolerated; anything else (a second token, a comma, a control or
    // non-ASCII byte) makes the credentials malformed.
    const std::size_t end = i;
    while (i < value.size() && value[i] == ' ') ++i;
    if (end == start || i != value.size()) return {AuthHeader::malformed, {}};
    return {AuthHeader::bearer, value.substr(start, end - start)};
}

}  // namespace apikey
