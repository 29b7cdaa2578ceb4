// Walking the comma-separated lists the snapshot stores (origins, relationships, fields,
// columns) in place, without splitting them into containers.
#pragma once

#include <string_view>
#include <utility>

namespace apikey {

// Calls fn(item) for each non-empty `sep`-separated item; stops early and returns false
// when fn does.
template <typename Fn>
bool for_each_item_sep(std::string_view list, char sep, Fn &&fn) {
    while (!list.empty()) {
        const std::size_t at = list.find(sep);
        const std::string_view item = list.substr(0, at);
        if (!item.empty() && !fn(item)) return false;
        if (at == std::string_view::npos) break;
        list.remove_prefix(at + 1);
    }
    return true;
}

template <typename Fn>
bool for_each_item(std::string_view list, Fn &&fn) {
    return for_each_item_sep(list, ',', std::forward<Fn>(fn));
}

template <typename Pred>
bool list_contains_if(std::string_view list, Pred &&pred) {
    return !for_each_item(list, [&](std::string_view item) { return !pred(item); });
}

inline bool list_contains(std::string_view list, std::string_view wanted) {
    return list_contains_if(list, [&](std::string_view item) { return item == wanted; });
}

}  // namespace apikey
