#include "auth_limiter.h"

#include <arpa/inet.h>

#include <cstring>

namespace apikeyd {

std::int64_t AuthLimiter::blocked_for(std::string_view address, std::int64_t now) const {
    if (options_.max_failures == 0 || address.empty()) return 0;
    const auto it = table_.find(key_of(address));
    if (it == table_.end() || it->second.blocked_until <= now) return 0;
    return it->second.blocked_until - now;
}

bool AuthLimiter::record_failure(std::string_view address, std::int64_t now) {
    if (options_.max_failures == 0 || address.empty()) return false;
    const std::int64_t window = options_.window_seconds;
    const std::string key = key_of(address);
    auto it = table_.find(key);
    if (it == table_.end()) {
        if (table_.size() >= options_.max_entries) make_room(now);
        it = table_.emplace(key, Entry{now, 0, 0}).first;
    }
    Entry &e = it->second;
    if (e.blocked_until != 0 && e.blocked_until <= now) e = Entry{now, 0, 0};  // block over
    if (e.blocked_until == 0 && now >= e.window_start + window) e = Entry{now, 0, 0};
    if (e.blocked_until != 0) return false;  // still blocked (callers check first)
    if (++e.failures < options_.max_failures) return false;
    e.blocked_until = now + window;
    return true;
}

std::string AuthLimiter::key_of(std::string_view address) {
    const std::string text(address);
    in6_addr a6{};
    if (::inet_pton(AF_INET6, text.c_str(), &a6) != 1 || IN6_IS_ADDR_V4MAPPED(&a6)) return text;
    std::memset(a6.s6_addr + 8, 0, 8);
    char buf[INET6_ADDRSTRLEN];
    if (::inet_ntop(AF_INET6, &a6, buf, sizeof buf) == nullptr) return text;
    return std::string(buf) + "/64";
}

void AuthLimiter::make_room(std::int64_t now) {
    const std::int64_t window = options_.window_seconds;
    for (auto it = table_.begin(); it != table_.end();) {
        const Entry &e = it->second;
        const bool expired = e.blocked_until != 0 ? e.blocked_until <= now
                                                  : now >= e.window_start + window;
        it = expired ? table_.erase(it) : std::next(it);
    }
    if (table_.size() < options_.max_entries || table_.empty()) return;
    // Still full of live entries: forget the one whose window started first (a blocked
    // address counts from when its block ends, so blocks are the last to go).
    auto oldest = table_.begin();
    auto age = [](const Entry &e) { return e.blocked_until != 0 ? e.blocked_until : e.window_start; };
    for (auto it = table_.begin(); it != table_.end(); ++it)
        if (age(it->second) < age(oldest->second)) oldest = it;
    table_.erase(oldest);
}

}  // namespace apikeyd
