// libFuzzer target: the usage datagram parser (daemon/usage_receiver,
// parse_usage_datagram), fed what any local process could send to the UDP port.
// Invariants: only a datagram of at most kMaxUsageDatagram bytes with the exact header
// is accepted; every use it yields has a time in 1..now; uses plus rejected lines never
// exceed the lines after the header; the datagram is read in place (exact-size copy).
#include "../daemon/usage_receiver.h"
#include "fuzz_check.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::unique_ptr<char[]> copy(new char[size ? size : 1]);
    if (size) std::memcpy(copy.get(), data, size);
    const std::string_view datagram(copy.get(), size);
    constexpr std::int64_t now = 1'800'000'000;
    std::vector<std::pair<apikeyd::Uuid, std::int64_t>> uses;
    std::uint64_t rejected = 0;
    const bool ok = apikeyd::parse_usage_datagram(datagram, now, uses, rejected);
    constexpr std::string_view header = "apikey-usage 1\n";
    if (!ok) {
        FUZZ_CHECK(size > apikeyd::kMaxUsageDatagram || datagram.substr(0, header.size()) != header);
        FUZZ_CHECK(uses.empty() && rejected == 0);
        return 0;
    }
    FUZZ_CHECK(size <= apikeyd::kMaxUsageDatagram && datagram.substr(0, header.size()) == header);
    std::size_t lines = 0;
    std::string_view body = datagram.substr(header.size());
    while (!body.empty()) {
        ++lines;
        const std::size_t nl = body.find('\n');
        if (nl == std::string_view::npos) break;
        body.remove_prefix(nl + 1);
    }
    FUZZ_CHECK(uses.size() + rejected == lines);
    for (const auto &[id, at] : uses) FUZZ_CHECK(at >= 1 && at <= now);
    return 0;
}
