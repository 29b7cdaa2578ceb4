// Receives the nginx module's usage reports (UDP on loopback) and turns them into keys'
// last_used_at. Datagram, as ngx_module/ngx_http_apikey_usage.c writes it:
//
//   apikey-usage 1\n
//   <key uuid> <unix seconds>\n ...
//
// Reports are collected for a second and written in one store transaction; a lost or
// malformed datagram only delays an update until the key's next use.
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

struct UsageCounters {
    std::uint64_t datagrams = 0;
    std::uint64_t rejected_datagrams = 0;  // not a usage report
    std::uint64_t rejected_lines = 0;      // malformed, or a time in the future
    std::uint64_t keys_updated = 0;
};

// The uses in one datagram, or false when it is not a usage report at all. Lines that do
// not parse, and times more than a minute after `now`, are skipped and counted.
bool parse_usage_datagram(std::string_view datagram, std::int64_t now,
                          std::vector<std::pair<Uuid, std::int64_t>> &uses,
                          std::uint64_t &rejected_lines);

class UsageReceiver {
public:
    // Binds host:port (throws on failure).
    UsageReceiver(boost::asio::io_context &ioc, const std::string &host, std::uint16_t port,
                  Store &store, std::int64_t (*clock)());
    void start();
    void stop();  // flushes what was collected
    const UsageCounters &counters() const { return counters_; }

private:
    void receive();
    void schedule_flush();
    void flush();

    boost::asio::ip::udp::socket socket_;
    boost::asio::steady_timer timer_;
    Store &store_;
    std::int64_t (*clock_)();
    std::array<char, 2048> buffer_{};
    boost::asio::ip::udp::endpoint sender_;
    std::map<std::array<std::uint8_t, 16>, std::int64_t> pending_;  // newest use per key
    UsageCounters counters_;
    bool stopped_ = false;
};

}  // namespace apikeyd
