// ASCII helpers for HTTP and query text: case folding for names compared without case
// (origins' schemes and hosts, hidden columns), and the optional whitespace around field
// values. No locale, no allocation, usable on the request path.
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

// Without the optional whitespace (RFC 9110, 5.5: SP or HTAB) around a field value or a
// list element, which is not part of it.
inline std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace apikey
