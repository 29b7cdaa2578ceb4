#include "usage_receiver.h"

#include "log.h"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>

namespace apikeyd {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kHeader = "apikey-usage 1\n";
constexpr auto kFlushInterval = std::chrono::seconds(1);

}  // namespace

bool parse_usage_datagram(std::string_view datagram, std::int64_t now,
                          std::vector<std::pair<Uuid, std::int64_t>> &uses,
                          std::uint64_t &rejected_lines) {
    if (datagram.size() > kMaxUsageDatagram || datagram.substr(0, kHeader.size()) != kHeader)
        return false;
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
            parsed.ptr != time.data() + time.size() || at <= 0 || at > now + kUsageFutureSlack) {
            ++rejected_lines;
            continue;
        }
        uses.emplace_back(*id, std::min(at, now));
    }
    return true;
}

UsageReceiver::UsageReceiver(asio::io_context &ioc, const std::string &host, std::uint16_t port,
                             Store &store, std::int64_t (*clock)())
    : socket_(ioc), timer_(ioc), store_(store), clock_(clock) {
    const asio::ip::udp::endpoint endpoint(asio::ip::make_address(host), port);
    socket_.open(endpoint.protocol());
    // Larger than the default, as far as the kernel allows (see kUsageReceiveBuffer): not
    // fatal, the granted size is logged at start.
    boost::system::error_code ignored;
    socket_.set_option(asio::socket_base::receive_buffer_size(kUsageReceiveBuffer), ignored);
    socket_.bind(endpoint);
}

std::size_t UsageReceiver::receive_buffer() const {
    asio::socket_base::receive_buffer_size size;
    boost::system::error_code ec;
    socket_.get_option(size, ec);
    return ec || size.value() < 0 ? 0 : static_cast<std::size_t>(size.value());
}

void UsageReceiver::start() {
    receive();
    schedule_flush();
}

void UsageReceiver::stop() {
    stopped_ = true;
    drain();
    boost::system::error_code ignored;
    socket_.close(ignored);
    timer_.cancel();
    flush();
}

// The datagrams the kernel already holds for the socket were reported before apikeyd
// stopped: closed away with it, a key used only then never got its last_used_at.
void UsageReceiver::drain() noexcept {
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);
    for (std::size_t n = 0; !ec && n < kMaxDrainedDatagrams; ++n) {
        const std::size_t size = socket_.receive_from(asio::buffer(buffer_), sender_, 0, ec);
        if (ec) break;  // would_block: none left
        try {
            on_datagram(size);
        } catch (const std::exception &e) {
            log_error(std::string("usage report dropped: ") + e.what());
        }
    }
}

std::uint16_t UsageReceiver::port() const {
    boost::system::error_code ec;
    const auto endpoint = socket_.local_endpoint(ec);
    return ec ? 0 : endpoint.port();
}

void UsageReceiver::receive() {
    socket_.async_receive_from(
        asio::buffer(buffer_), sender_,
        [this](const boost::system::error_code &ec, std::size_t n) {
            if (stopped_ || ec == asio::error::operation_aborted) return;
            // Other errors (an ICMP error reported on the socket, say) only skip a datagram.
            if (!ec) {
                try {
                    on_datagram(n);
                } catch (const std::exception &e) {  // out of memory: drop this one
                    log_error(std::string("usage report dropped: ") + e.what());
                }
            }
            receive();
        });
}

void UsageReceiver::on_datagram(std::size_t size) {
    ++counters_.datagrams;
    std::vector<std::pair<Uuid, std::int64_t>> uses;
    if (!parse_usage_datagram({buffer_.data(), size}, clock_(), uses, counters_.rejected_lines)) {
        ++counters_.rejected_datagrams;
        return;
    }
    for (const auto &[id, at] : uses) {
        std::int64_t &newest = pending_[id.bytes];
        if (at > newest) newest = at;
    }
    if (pending_.size() >= kMaxPendingUses) flush();
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
        const Store::UsageResult result = store_.record_usage(uses);
        counters_.keys_updated += result.updated;
        counters_.unknown_keys += result.unknown;
        if (result.updated > 0) ++counters_.writes;
        pending_.clear();
    } catch (const std::exception &e) {
        // Kept for the next flush; the store may be full or briefly unusable. Past the
        // cap the collected uses are dropped: a key's next use reports it again.
        ++counters_.write_failures;
        log_error(std::string("cannot record key usage: ") + e.what());
        if (pending_.size() >= kMaxPendingUses) pending_.clear();
    }
}

}  // namespace apikeyd
