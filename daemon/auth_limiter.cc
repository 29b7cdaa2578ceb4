#include "auth_limiter.h"

namespace apikeyd {

std::int64_t AuthLimiter::blocked_for(std::string_view address, std::int64_t now) const {
    if (options_.max_failures == 0 || address.empty()) return 0;
    const auto it = table_.find(std::string(address));
    if (it == table_.end() || it->second.blocked_until <= now) return 0;
    return it->second.blocked_until - now;
}

bool AuthLimiter::record_failure(std::string_view address, std::int64_t now) {
    if (options_.max_failures == 0 || address.empty()) return false;
    const std::int64_t window = options_.window_seconds;
    auto it = table_.find(std::string(address));
    if (it == table_.end()) {
        if (table_.size() >= options_.max_entries) make_room(now);
        it = table_.emplace(std::string(address), Entry{now, 0, 0}).first;
    }
    Entry &e = it->second;
    if (e.blocked_until != 0 && e.blocked_until <= now) e = Entry{now, 0, 0};  // block over
    if (e.blocked_until == 0 && now >= e.window_start + window) e = Entry{now, 0, 0};
    if (e.blocked_until != 0) return false;  // still blocked (callers check first)
    if (++e.failures < options_.max_failures) return false;
    e.blocked_until = now + window;
    return true;
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
