// The names the admin API accepts, defined once for apikeyd (which refuses anything else
// with 400 invalid_field) and for the nginx module (whose `nginx -t` refuses a constant
// apikey_workspace / apikey_entity that no workspace or entity could ever have, through
// apikey_capi.h). Header-only: the query policy checks names on the request path.
#pragma once

#include <cstddef>
#include <string_view>

namespace apikey {

// Entity, column, field and relationship names: [A-Za-z_][A-Za-z0-9_]{0,63},
// case-sensitive.
inline constexpr std::size_t kMaxIdentifierLength = 64;

inline bool is_identifier(std::string_view text) noexcept {
    if (text.empty() || text.size() > kMaxIdentifierLength) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

// A workspace's org and slug: 1..63 of [a-z0-9-], first and last a letter or digit
// (DNS-label like), so "org/slug" is unambiguous and safe in URLs, logs and nginx
// captures.
inline constexpr std::size_t kMaxSlugLength = 63;

inline bool is_valid_slug(std::string_view text) noexcept {
    if (text.empty() || text.size() > kMaxSlugLength) return false;
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    for (const char c : text)
        if (!alnum(c) && c != '-') return false;
    return alnum(text.front()) && alnum(text.back());
}

// "org/slug": how a request names its workspace (the snapshot's workspaces table key).
inline bool is_valid_workspace_path(std::string_view text) noexcept {
    const std::size_t slash = text.find('/');
    return slash != std::string_view::npos && is_valid_slug(text.substr(0, slash)) &&
           is_valid_slug(text.substr(slash + 1));
}

}  // namespace apikey
