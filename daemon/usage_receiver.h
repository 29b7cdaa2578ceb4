// Receives the nginx module's usage reports (UDP on loopback) and turns them into keys'
// last_used_at. Datagram, as ngx_module/ngx_http_apikey_usage.c writes it (at most
// kMaxUsageDatagram bytes, text):
//
//   apikey-usage 1\n
//   <key uuid> <unix seconds>\n ...
//
// Reports are collected for a second and written in one store transaction, which only
// ever moves a key's last_used_at forward. This is not an admin change: no generation,
// no change-feed entry, no snapshot publish. A lost or malformed datagram only delays an
// update until the key's next use.
//
// Hostile or broken input: a datagram over kMaxUsageDatagram bytes or without the exact
// header line is dropped whole; inside one, a line that is not "<uuid> <1..digits>", or a
// time more than kUsageFutureSlack seconds after now, is skipped. Both are counted.
// Times up to that slack ahead are clamped to now (last_used_at is never in the future).
// Work per datagram is bounded by its size (at most ~30 lines); the keys collected
// between two writes are capped (kMaxPendingUses: reaching it writes at once).
#pragma once

#include "store.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace apikeyd {

inline constexpr std::size_t kMaxUsageDatagram = 1400;
inline constexpr std::int64_t kUsageFutureSlack = 60;  // seconds
inline constexpr std::size_t kMaxPendingUses = 100'000;
// The socket receive buffer asked for: what arrives while apikeyd does something else (an
// admin batch, a large import: seconds) waits there, and beyond it the kernel drops
// datagrams without a word. The default (net.core.rmem_default, 208 KB) holds about 90
// datagrams (2,600 keys); 4 MB, which Linux doubles for its bookkeeping, about 3,600
// (100,000 keys). The kernel caps what is asked at net.core.rmem_max.
inline constexpr int kUsageReceiveBuffer = 4 << 20;
// At stop, at most this many datagrams already received are read (a full buffer holds
// about 3,600; a flood must not hold a shutdown).
inline constexpr std::size_t kMaxDrainedDatagrams = 10'000;

struct UsageCounters {
    std::uint64_t datagrams = 0;           // received, valid or not
    std::uint64_t rejected_datagrams = 0;  // not a usage report, or too large
    std::uint64_t rejected_lines = 0;      // malformed, or a time too far in the future
    std::uint64_t unknown_keys = 0;        // well-formed uses of ids the store does not know
    std::uint64_t keys_updated = 0;        // last_used_at values moved forward
    std::uint64_t writes = 0;              // store transactions that recorded usage
    std::uint64_t write_failures = 0;      // store writes that failed (retried later)
};

// The uses in one datagram, or false when it is not a usage report at all (wrong header,
// over kMaxUsageDatagram bytes). Lines that do not parse, and times more than
// kUsageFutureSlack seconds after `now`, are skipped and counted; times within the slack
// are clamped to `now`.
bool parse_usage_datagram(std::string_view datagram, std::int64_t now,
                          std::vector<std::pair<Uuid, std::int64_t>> &uses,
                          std::uint64_t &rejected_lines);

class UsageReceiver {
public:
    // Binds host:port (throws on failure).
    UsageReceiver(boost::asio::io_context &ioc, const std::string &host, std::uint16_t port,
                  Store &store, std::int64_t (*clock)());
    void start();
    void stop();  // reads what the socket holds, then writes what was collected
    const UsageCounters &counters() const { return counters_; }
    std::uint16_t port() const;  // the bound port (tests bind port 0)
    // The socket's receive buffer as granted, in the terms it is asked in (Asio halves
    // what Linux reports); 0 when unknown.
    std::size_t receive_buffer() const;
    void flush();  // writes what was collected now (also run every second)

private:
    void receive();
    void schedule_flush();
    void on_datagram(std::size_t size);
    void drain() noexcept;

    boost::asio::ip::udp::socket socket_;
    boost::asio::steady_timer timer_;
    Store &store_;
    std::int64_t (*clock_)();
    // Larger than any valid datagram, so an oversized one is seen as such, not cut short.
    std::array<char, kMaxUsageDatagram + 1> buffer_{};
    boost::asio::ip::udp::endpoint sender_;
    std::map<std::array<std::uint8_t, 16>, std::int64_t> pending_;  // newest use per key
    UsageCounters counters_;
    bool stopped_ = false;
};

}  // namespace apikeyd
