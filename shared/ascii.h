// ASCII case folding for names the HTTP and query rules compare without case (origins'
// schemes and hosts, hidden columns): no locale, no allocation, usable on the request path.
#pragma once

#include <cstddef>
#include <string_view>

namespace apikey {

inline char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline bool equal_ignoring_ascii_case(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

}  // namespace apikey
