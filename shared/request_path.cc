#include "request_path.h"

namespace apikey {
namespace {

// "%2x" at `i` (either case of x), as nginx decodes it.
bool escape_2(std::string_view s, std::size_t i, char lower) noexcept {
    return i + 2 < s.size() && s[i] == '%' && s[i + 1] == '2' &&
           (s[i + 2] == lower || s[i + 2] == lower - ('a' - 'A'));
}

}  // namespace

bool ambiguous_path(std::string_view path) noexcept {
    // Per segment: how many dots it spells, and whether it spells nothing else.
    std::size_t dots = 0;
    bool only_dots = true;
    for (std::size_t i = 0; i <= path.size();) {
        if (i == path.size() || path[i] == '/') {
            if (only_dots && (dots == 1 || dots == 2)) return true;
            dots = 0;
            only_dots = true;
            ++i;
            continue;
        }
        if (escape_2(path, i, 'f')) return true;
        if (path[i] == '.') {
            ++dots;
            ++i;
        } else if (escape_2(path, i, 'e')) {
            ++dots;
            i += 3;
        } else {
            only_dots = false;
            ++i;
        }
    }
    return false;
}

}  // namespace apikey
