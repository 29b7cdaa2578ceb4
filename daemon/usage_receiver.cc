#include "usage_receiver.h"

#include "log.h"

#include <boost/asio/ip/address.hpp>

#include <charconv>
#include <chrono>

namespace apikeyd {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kHeader = "apikey-usage 1\n";
constexpr std::int64_t kFutureSlack = 60;  // seconds of clock skew tolerated
constexpr auto kFlushInterval = std::chrono::seconds(1);

}  // namespace

bool parse_usage_datagram(std::string_view datagram, std::int64_t now,
                          std::vector<std::pair<Uuid, std::int64_t>> &uses,
                          std::uint64_t &rejected_lines) {
    if (datagram.substr(0, kHeader.size()) != kHeader) return false;
    datagram.remove_prefix(kHeader.size());
    while (!datagram.empty()) {
        const std::size_t nl = datagram.find('\n');
        const std::string_view line = datagram.substr(0, nl);
        datagram.remove_prefix(nl == std::string_view::npos ? datagram.size() : nl + 1);
        const std::size_t space = line.find(' ');
        const auto id = apikey::parse_uuid(line.substr(0, space));
        std::int64_t at = 0;
        const std::string_view time = space == std::string_view::npos ? "" : line.substr(space + 1);
        const auto parsed = std::from_chars(time.data(), time.data() + time.size(), at);
        if (!id || time.empty() || parsed.ec != std::errc() ||
            parsed.ptr != time.data() + time.size() || at <= 0 || at > now + kFutureSlack) {
            ++rejected_lines;
            continue;
        }
        uses.emplace_back(*id, at);
    }
    return true;
}

UsageReceiver::UsageReceiver(asio::io_context &ioc, const std::string &host, std::uint16_t port,
                             Store &store, std::int64_t (*clock)())
    : socket_(ioc), timer_(ioc), store_(store), clock_(clock) {
    const asio::ip::udp::endpoint endpoint(asio::ip::make_address(host), port);
    socket_.open(endpoint.protocol());
    socket_.bind(endpoint);
}

void UsageReceiver::start() {
    receive();
    schedule_flush();
}

void UsageReceiver::stop() {
    stopped_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
    flush();
}

void UsageReceiver::receive() {
    socket_.async_receive_from(
        asio::buffer(buffer_), sender_,
        [this](const boost::system::error_code &ec, std::size_t n) {
            if (stopped_ || ec == asio::error::operation_aborted) return;
            if (!ec) {
                ++counters_.datagrams;
                std::vector<std::pair<Uuid, std::int64_t>> uses;
                if (!parse_usage_datagram({buffer_.data(), n}, clock_(), uses,
                                          counters_.rejected_lines)) {
                    ++counters_.rejected_datagrams;
                }
                for (const auto &[id, at] : uses) {
                    std::int64_t &newest = pending_[id.bytes];
                    if (at > newest) newest = at;
                }
            }
            receive();
        });
}

void UsageReceiver::schedule_flush() {
    timer_.expires_after(kFlushInterval);
    timer_.async_wait([this](const boost::system::error_code &ec) {
        if (ec || stopped_) return;
        flush();
        schedule_flush();
    });
}

void UsageReceiver::flush() {
    if (pending_.empty()) return;
    std::vector<std::pair<Uuid, std::int64_t>> uses;
    uses.reserve(pending_.size());
    for (const auto &[bytes, at] : pending_) uses.emplace_back(Uuid{bytes}, at);
    try {
        counters_.keys_updated += store_.record_usage(uses);
        pending_.clear();
    } catch (const std::exception &e) {
        // Kept for the next flush; the store may be full or briefly unusable.
        log_error(std::string("cannot record key usage: ") + e.what());
    }
}

}  // namespace apikeyd
