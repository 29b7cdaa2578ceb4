#include "authorization.h"

#include "ascii.h"

#include <array>
#include <cstdint>

namespace apikey {
namespace {

// One 256-entry table for every class the parser needs: real keys are random base62, so
// chains of range comparisons would mispredict on nearly every character.
enum : std::uint8_t { kToken = 0x01, kSpace = 0x02, kPad = 0x04 };

constexpr std::array<std::uint8_t, 256> make_classes() {
    std::array<std::uint8_t, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = kToken;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] = kToken;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = kToken;
    for (char c : {'-', '.', '_', '~', '+', '/'}) t[static_cast<unsigned char>(c)] = kToken;
    t[' '] = kSpace;
    t['='] = kPad;
    return t;
}
constexpr auto kClass = make_classes();

inline std::uint8_t cls(char c) noexcept { return kClass[static_cast<unsigned char>(c)]; }

// "bearer" in any case: OR-ing 0x20 lowercases letters (and maps nothing else onto them:
// the bytes compared against are all letters).
inline bool is_bearer(const char *p) noexcept {
    constexpr char kLower[] = "bearer";
    unsigned diff = 0;
    for (int k = 0; k < 6; ++k)
        diff |= static_cast<unsigned char>(p[k] | 0x20) ^ static_cast<unsigned char>(kLower[k]);
    return diff == 0;
}

}  // namespace

BearerToken parse_authorization(std::string_view value) noexcept {
    // nginx strips only spaces around a value, and only in HTTP/1.x: a tab there, or any
    // whitespace in an HTTP/2 field, reaches the module in the value.
    value = trim_ows(value);
    const char *p = value.data();
    const std::size_t n = value.size();
    // The scheme is the text before the first space: exactly "Bearer", any case.
    if (n < 6 || !is_bearer(p) || (n > 6 && p[6] != ' ')) return {AuthHeader::wrong_scheme, {}};

    std::size_t i = 6;
    while (i < n && cls(p[i]) == kSpace) ++i;
    const std::size_t start = i;
    while (i < n && cls(p[i]) == kToken) ++i;
    while (i < n && cls(p[i]) == kPad) ++i;
    // Anything after the token (a second token, a comma, a control or non-ASCII byte) makes
    // the credentials malformed; the value's trailing whitespace is gone already.
    if (i == start || i != n) return {AuthHeader::malformed, {}};
    return {AuthHeader::bearer, value.substr(start, i - start)};
}

std::string_view usual_bearer_token(std::string_view value, std::size_t size,
                                    std::string_view prefix) noexcept {
    if (value.size() != 7 + size || prefix.size() > size || !is_bearer(value.data()) ||
        value[6] != ' ' || value.substr(7, prefix.size()) != prefix)
        return {};
    return value.substr(7);
}

}  // namespace apikey
