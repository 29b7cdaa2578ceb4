// Failed admin authentication, per source address: after `max_failures` failures within
// `window_seconds` the address is refused (429) until the window that blocked it ends,
// whatever token it presents; other addresses are unaffected. The table holds at most
// `max_entries` addresses: expired ones are dropped first, then the oldest window. IPv6
// addresses count per /64 (one host usually holds a whole /64), IPv4 per address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace apikeyd {

struct AuthLimitOptions {
    std::uint32_t max_failures = 10;     // 0: never block (failures are still logged)
    std::uint32_t window_seconds = 60;
    std::size_t max_entries = 10000;
};

class AuthLimiter {
public:
    explicit AuthLimiter(AuthLimitOptions options = {}) : options_(options) {}

    // Seconds the address must still wait (at least 1), or 0 when it may try.
    std::int64_t blocked_for(std::string_view address, std::int64_t now) const;
    // Records one failure; true when this failure blocked the address.
    bool record_failure(std::string_view address, std::int64_t now);

    std::size_t size() const { return table_.size(); }
    // What an address is counted under: itself, or its /64 for IPv6.
    static std::string key_of(std::string_view address);
    const AuthLimitOptions &options() const { return options_; }

private:
    struct Entry {
        std::int64_t window_start = 0;
        std::uint32_t failures = 0;
        std::int64_t blocked_until = 0;  // 0: not blocked
    };
    void make_room(std::int64_t now);

    AuthLimitOptions options_;
    std::unordered_map<std::string, Entry> table_;
};

}  // namespace apikeyd
