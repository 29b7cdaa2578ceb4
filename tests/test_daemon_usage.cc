// Usage reports (nginx -> apikeyd, UDP) into keys' last_used_at, and apikeyd's own
// observability: /healthz and /metrics (Prometheus text format 0.0.4).
#include "daemon_fixture.h"
#include "../daemon/metrics.h"
#include "../daemon/usage_receiver.h"

#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

using namespace apikey::test;
using apikeyd::parse_usage_datagram;
using nlohmann::json;

namespace {

const std::string kId = "550e8400-e29b-41d4-a716-446655440000";

std::string usage_line(const std::string &id, std::int64_t at) {
    return id + " " + std::to_string(at) + "\n";
}

// The whole Prometheus text-format check the tests share: every line is a HELP, a TYPE or
// a sample `name{labels} value`; every sample belongs to a family with one TYPE (given
// before its samples) and one HELP; histogram samples are _bucket/_sum/_count with
// cumulative buckets ending in le="+Inf" equal to _count. Returns the samples by
// `name{labels}`; errors are reported through BOOST_TEST.
std::map<std::string, double> parse_prometheus(const std::string &text) {
    static const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*)");
    static const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
    static const std::regex sample(
        R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|\+Inf|-Inf|NaN))");
    std::map<std::string, std::string> types;
    std::set<std::string> helps;
    std::map<std::string, double> samples;
    BOOST_TEST((!text.empty() && text.back() == '\n'), "ends with a newline");
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::smatch m;
        if (std::regex_match(line, m, help)) {
            BOOST_TEST(helps.insert(m[1]).second, "one HELP for " << m[1]);
        } else if (std::regex_match(line, m, type)) {
            BOOST_TEST(types.emplace(m[1], m[2]).second, "one TYPE for " << m[1]);
        } else if (std::regex_match(line, m, sample)) {
            std::string family = m[1];
            for (const char *suffix : {"_bucket", "_sum", "_count"}) {
                const std::string s = suffix;
                if (family.size() > s.size() && family.compare(family.size() - s.size(), s.size(), s) == 0 &&
                    types.count(family.substr(0, family.size() - s.size())) &&
                    types[family.substr(0, family.size() - s.size())] == "histogram")
                    family.resize(family.size() - s.size());
            }
            BOOST_TEST(types.count(family) == 1u, "TYPE before the samples of " << line);
            BOOST_TEST(helps.count(family) == 1u, "HELP for " << line);
            const std::string key = std::string(m[1]) + std::string(m[2]);
            BOOST_TEST(samples.count(key) == 0u, "one sample for " << key);
            samples[key] = std::stod(m[3]);
        } else {
            BOOST_TEST(false, "not exposition format: \"" << line << "\"");
        }
    }
    // Histograms: cumulative buckets (non-decreasing by le), +Inf == _count.
    for (const auto &[name, t] : types) {
        if (t != "histogram") continue;
        std::vector<std::pair<double, double>> buckets;  // le, count
        const std::string prefix = name + "_bucket{le=\"";
        for (const auto &[key, v] : samples)
            if (key.rfind(prefix, 0) == 0) {
                const std::string le = key.substr(prefix.size(), key.size() - prefix.size() - 2);
                buckets.emplace_back(le == "+Inf" ? HUGE_VAL : std::stod(le), v);
            }
        std::sort(buckets.begin(), buckets.end());
        BOOST_REQUIRE(!buckets.empty());
        BOOST_TEST(std::isinf(buckets.back().first), "a +Inf bucket for " << name);
        for (std::size_t i = 1; i < buckets.size(); ++i) BOOST_TEST(buckets[i].second >= buckets[i - 1].second);
        BOOST_TEST(buckets.back().second == samples[name + "_count"]);
        BOOST_TEST(samples.count(name + "_sum") == 1u);
    }
    return samples;
}

// A controllable clock for the receiver (it takes a plain function pointer).
std::int64_t g_now = kNow;
std::int64_t test_clock() { return g_now; }

class UdpSender {
public:
    explicit UdpSender(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
        BOOST_REQUIRE(fd_ >= 0);
        addr_.sin_family = AF_INET;
        addr_.sin_port = htons(port);
        addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    ~UdpSender() { ::close(fd_); }
    void send(const std::string &datagram) {
        BOOST_REQUIRE(::sendto(fd_, datagram.data(), datagram.size(), 0,
                               reinterpret_cast<const sockaddr *>(&addr_), sizeof addr_) ==
                      static_cast<ssize_t>(datagram.size()));
    }

private:
    int fd_ = -1;
    sockaddr_in addr_{};
};

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_usage)

BOOST_AUTO_TEST_CASE(datagram_table) {
    const std::string id = kId;
    const std::int64_t now = 1'800'000'000;
    const std::string header = "apikey-usage 1\n";
    // A full datagram as the module writes it: as many lines as fit in 1400 bytes.
    std::string full = header;
    std::size_t full_lines = 0;
    while (full.size() + usage_line(id, now).size() <= apikeyd::kMaxUsageDatagram) {
        full += usage_line(id, now - static_cast<std::int64_t>(full_lines));
        ++full_lines;
    }
    std::string oversize = full;
    oversize.append(apikeyd::kMaxUsageDatagram + 1 - oversize.size(), '\n');
    struct Case {
        std::string what;
        std::string datagram;
        bool report;
        std::size_t uses;
        std::uint64_t rejected;
    };
    const Case cases[] = {
        {"one line", header + id + " 1799999999\n", true, 1, 0},
        {"no final newline", header + id + " 1799999999", true, 1, 0},
        {"empty report", header, true, 0, 0},
        {"empty lines are rejected", header + "\n\n" + id + " 1799999999\n", true, 1, 2},
        {"other version", "apikey-usage 2\n" + id + " 1\n", false, 0, 0},
        {"version 10", "apikey-usage 10\n" + id + " 1\n", false, 0, 0},
        {"CRLF header", "apikey-usage 1\r\n" + id + " 1799999999\r\n", false, 0, 0},
        {"header without newline", "apikey-usage 1", false, 0, 0},
        {"leading space", " apikey-usage 1\n", false, 0, 0},
        {"nothing", "", false, 0, 0},
        {"HTTP", "GET / HTTP/1.1\r\n", false, 0, 0},
        {"binary", std::string("\0\xff\x01\n", 4), false, 0, 0},
        {"over a minute ahead", header + id + " 1800000061\n", true, 0, 1},
        {"a minute ahead", header + id + " 1800000060\n", true, 1, 0},
        {"negative and zero", header + id + " -5\n" + id + " 0\n", true, 0, 2},
        {"no time, empty time, junk time", header + id + "\n" + id + " \n" + id + " 12x\n", true, 0, 3},
        {"plus sign", header + id + " +1799999999\n", true, 0, 1},
        {"two spaces", header + id + "  1799999999\n", true, 0, 1},
        {"trailing space", header + id + " 1799999999 \n", true, 0, 1},
        {"CR at the end of a line", header + id + " 1799999999\r\n", true, 0, 1},
        {"extra field", header + id + " 1799999999 7\n", true, 0, 1},
        {"bad uuid, good line", header + "not-a-uuid 1799999999\n" + id + " 1799999999\n", true, 1, 1},
        {"uuid too short", header + id.substr(1) + " 1799999999\n", true, 0, 1},
        {"overflowing time", header + id + " 99999999999999999999999\n", true, 0, 1},
        {"NUL in a line", header + id + std::string(" 17\0" "99", 5) + "\n", true, 0, 1},
        {"1400 bytes", full, true, full_lines, 0},
        {"1401 bytes", oversize, false, 0, 0},
        {"far too large", header + std::string(100000, 'x'), false, 0, 0},
    };
    for (const auto &c : cases) {
        BOOST_TEST_CONTEXT(c.what) {
            std::vector<std::pair<apikey::Uuid, std::int64_t>> uses;
            std::uint64_t rejected = 0;
            BOOST_TEST(parse_usage_datagram(c.datagram, now, uses, rejected) == c.report);
            BOOST_TEST(uses.size() == c.uses);
            BOOST_TEST(rejected == c.rejected);
            for (const auto &[u, at] : uses) {
                BOOST_TEST(apikey::to_string(u) == id);
                BOOST_TEST(at <= now);  // never in the future
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(times_ahead_of_now_are_clamped_and_uppercase_ids_accepted) {
    std::vector<std::pair<apikey::Uuid, std::int64_t>> uses;
    std::uint64_t rejected = 0;
    std::string upper = kId;
    for (char &c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    BOOST_TEST(parse_usage_datagram("apikey-usage 1\n" + kId + " 1800000030\n" + kId + " 1700000000\n",
                                    1'800'000'000, uses, rejected));
    BOOST_REQUIRE_EQUAL(uses.size(), 2u);
    BOOST_TEST(uses[0].second == 1'800'000'000);  // 30 s ahead: now
    BOOST_TEST(uses[1].second == 1'700'000'000);
    uses.clear();
    parse_usage_datagram("apikey-usage 1\n" + upper + " 1700000000\n", 1'800'000'000, uses, rejected);
    BOOST_REQUIRE_EQUAL(uses.size(), 1u);
    BOOST_TEST(apikey::to_string(uses[0].first) == kId);
}

BOOST_FIXTURE_TEST_CASE(usage_moves_last_used_at_forward_only, DaemonFixture) {
    const auto ws = create_workspace("acme", "sales");
    const auto key = create_key(ws["id"].get<std::string>());
    const auto other = create_key(ws["id"].get<std::string>());
    const auto id = *apikey::parse_uuid(key["id"].get<std::string>());
    const std::string path =
        "/api/v1/workspaces/" + ws["id"].get<std::string>() + "/api-keys/" + key["id"].get<std::string>();
    const std::uint64_t generation = store->generation();
    const std::uint64_t published = snapshot_generation();
    const auto feed_before = call("GET", "/api/v1/changes?limit=1000").body;

    auto result = store->record_usage({{id, 1'800'000'000}});
    BOOST_TEST(result.updated == 1u);
    BOOST_TEST(result.unknown == 0u);
    BOOST_TEST(json_of(call("GET", path))["last_used_at"] == "2027-01-15T08:00:00Z");
    result = store->record_usage({{id, 1'700'000'000}});  // older: ignored
    BOOST_TEST(result.updated == 0u);
    result = store->record_usage({{id, 1'800'000'000}});  // the same: ignored
    BOOST_TEST(result.updated == 0u);
    result = store->record_usage({{apikey::random_uuid(), 1'800'000'000}, {id, 1'800'000'005}});
    BOOST_TEST(result.unknown == 1u);
    BOOST_TEST(result.updated == 1u);
    BOOST_TEST(json_of(call("GET", path))["last_used_at"] == "2027-01-15T08:00:05Z");
    // The list shows it, and the other key is still null.
    const json list = json_of(call("GET", "/api/v1/workspaces/" + ws["id"].get<std::string>() + "/api-keys"));
    BOOST_TEST(list.size() == 2u);
    for (const json &k : list) {
        if (k["id"] == key["id"]) BOOST_TEST(k["last_used_at"] == "2027-01-15T08:00:05Z");
        else BOOST_TEST(k["last_used_at"].is_null());
    }
    // Usage is not an admin change: no generation, no publish, nothing in the feed, and
    // updated_at keeps meaning "changed by an admin".
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(snapshot_generation() == published);
    BOOST_TEST(call("GET", "/api/v1/changes?limit=1000").body == feed_before);
    BOOST_TEST(json_of(call("GET", path))["updated_at"] == key["updated_at"]);
    // Survives a restart; a revoked key keeps (and may still get) its last use.
    reopen();
    BOOST_TEST(json_of(call("GET", path))["last_used_at"] == "2027-01-15T08:00:05Z");
    call("DELETE", path);
    BOOST_TEST(json_of(call("GET", path))["last_used_at"] == "2027-01-15T08:00:05Z");
    BOOST_TEST(other["last_used_at"].is_null());
}

BOOST_FIXTURE_TEST_CASE(receiver_batches_datagrams_into_one_write, DaemonFixture) {
    const auto ws = create_workspace("acme", "sales")["id"].get<std::string>();
    const std::string a = create_key(ws)["id"], b = create_key(ws)["id"];
    const std::string K = "/api/v1/workspaces/" + ws + "/api-keys/";
    const std::uint64_t generation = store->generation();
    g_now = kNow;

    boost::asio::io_context ioc;
    apikeyd::UsageReceiver receiver(ioc, "127.0.0.1", 0, *store, test_clock);
    BOOST_REQUIRE(receiver.port() != 0);
    receiver.start();
    const auto &counters = receiver.counters();
    UdpSender sender(receiver.port());
    // Two workers report the same key (the newest wins), one reports another key, and
    // junk of every kind arrives in between.
    sender.send("apikey-usage 1\n" + usage_line(a, kNow - 10) + usage_line(b, kNow - 50));
    sender.send("apikey-usage 1\n" + usage_line(a, kNow - 5) + "garbage\n" +
                usage_line("00000000-0000-4000-8000-000000000000", kNow));
    sender.send("apikey-usage 1\n" + usage_line(a, kNow - 20));
    sender.send("not a report");
    sender.send("apikey-usage 1\n" + std::string(2000, 'x'));  // oversize
    sender.send("apikey-usage 1\n" + usage_line(b, kNow + 3600));  // an hour ahead
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (counters.datagrams < 6 && std::chrono::steady_clock::now() < deadline)
        ioc.run_for(std::chrono::milliseconds(10));
    BOOST_TEST(counters.datagrams == 6u);
    BOOST_TEST(counters.rejected_datagrams == 2u);
    BOOST_TEST(counters.rejected_lines == 2u);

    // Collected, not yet written: the write happens once a second (here: flush()).
    if (counters.writes == 0) {
        BOOST_TEST(json_of(call("GET", K + a))["last_used_at"].is_null());
        receiver.flush();
    }
    BOOST_TEST(counters.writes == 1u);  // one transaction for every key
    BOOST_TEST(counters.keys_updated == 2u);
    BOOST_TEST(counters.unknown_keys == 1u);
    BOOST_TEST(json_of(call("GET", K + a))["last_used_at"] == "2027-01-15T07:59:55Z");
    BOOST_TEST(json_of(call("GET", K + b))["last_used_at"] == "2027-01-15T07:59:10Z");

    // An older report later changes nothing, and nothing is written for it.
    sender.send("apikey-usage 1\n" + usage_line(a, kNow - 1000));
    while (counters.datagrams < 7 && std::chrono::steady_clock::now() < deadline)
        ioc.run_for(std::chrono::milliseconds(10));
    receiver.flush();
    BOOST_TEST(counters.writes == 1u);
    BOOST_TEST(json_of(call("GET", K + a))["last_used_at"] == "2027-01-15T07:59:55Z");

    // stop() writes what is still collected.
    sender.send("apikey-usage 1\n" + usage_line(a, kNow));
    while (counters.datagrams < 8 && std::chrono::steady_clock::now() < deadline)
        ioc.run_for(std::chrono::milliseconds(10));
    receiver.stop();
    BOOST_TEST(json_of(call("GET", K + a))["last_used_at"] == "2027-01-15T08:00:00Z");
    BOOST_TEST(store->generation() == generation);
}

// What the kernel already holds when apikeyd stops (SIGTERM: a restart, an upgrade) was
// reported before it stopped: read and written, not closed away with the socket. A key
// used once then never got a last_used_at.
BOOST_FIXTURE_TEST_CASE(stop_records_what_the_socket_already_holds, DaemonFixture) {
    const auto ws = create_workspace("acme", "sales")["id"].get<std::string>();
    std::vector<std::string> ids;
    for (int i = 0; i < 40; ++i) ids.push_back(create_key(ws)["id"]);
    const std::string K = "/api/v1/workspaces/" + ws + "/api-keys/";
    g_now = kNow;

    boost::asio::io_context ioc;
    apikeyd::UsageReceiver receiver(ioc, "127.0.0.1", 0, *store, test_clock);
    receiver.start();
    UdpSender sender(receiver.port());
    for (std::size_t i = 0; i < ids.size(); i += 20) {
        std::string datagram = "apikey-usage 1\n";
        for (std::size_t j = i; j < i + 20; ++j) datagram += usage_line(ids[j], kNow - 1);
        sender.send(datagram);
    }
    // Never run: the datagrams wait in the socket.
    receiver.stop();
    BOOST_TEST(receiver.counters().datagrams == 2u);
    for (const std::string &id : ids)
        BOOST_TEST(json_of(call("GET", K + id))["last_used_at"] == "2027-01-15T07:59:59Z");
}

// Reports that arrive while apikeyd does something else wait in the socket's receive
// buffer; the default (208 KB, ~90 datagrams) dropped most of a busy second's reports.
BOOST_AUTO_TEST_CASE(receiver_asks_for_a_large_receive_buffer) {
    std::size_t rmem_max = 0;
    std::ifstream("/proc/sys/net/core/rmem_max") >> rmem_max;
    apikeyd::Store::Options options;
    TempDir dir;
    options.dir = dir.sub("store");
    apikeyd::Store store(options);
    boost::asio::io_context ioc;
    apikeyd::UsageReceiver receiver(ioc, "127.0.0.1", 0, store, test_clock);
    // What is asked, up to net.core.rmem_max (the default is half of net.core.rmem_default
    // in these terms: Asio halves what Linux reports).
    BOOST_REQUIRE(rmem_max > 0u);
    BOOST_TEST(receiver.receive_buffer() ==
               std::min<std::size_t>(apikeyd::kUsageReceiveBuffer, rmem_max));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(daemon_metrics)

BOOST_AUTO_TEST_CASE(route_patterns_keep_label_values_few) {
    const std::string id = "550e8400-e29b-41d4-a716-446655440000";
    const std::pair<std::string, std::string> cases[] = {
        {"/api/v1/workspaces", "/api/v1/workspaces"},
        {"/api/v1/workspaces/" + id + "/api-keys?x=1", "/api/v1/workspaces/{id}/api-keys"},
        {"/api/v1/workspaces/" + id + "/api-keys/" + id, "/api/v1/workspaces/{id}/api-keys/{id}"},
        {"/api/v1/workspaces/" + id + "/entities/Customer/settings",
         "/api/v1/workspaces/{id}/entities/{entity}/settings"},
        {"/api/v1/workspaces/" + id + "/changes?after=3", "/api/v1/workspaces/{id}/changes"},
        {"/metrics", "/metrics"},
        {"/healthz", "/healthz"},
        {"/api/v1/sk_live_pasted_by_mistake", "other"},
        {"/api/v1/workspaces/\"}\n", "other"},
        {"/", "other"},
        {"", "other"},
        {"relative", "other"},
    };
    for (const auto &[target, route] : cases) BOOST_TEST(apikeyd::Metrics::route_of(target) == route, target);
}

BOOST_AUTO_TEST_CASE(rendered_text_is_valid_exposition_format) {
    apikeyd::Metrics m;
    m.count_request("/api/v1/workspaces", 201);
    m.count_request("/api/v1/workspaces", 201);
    m.count_request("/nope", 401);
    m.observe_publish(0.002);
    m.observe_publish(5);  // over every bucket
    m.count_publish_failure();
    apikeyd::Gauges g;
    g.store_generation = 7;
    g.snapshot_generation = 7;
    g.store_bytes = 4096;
    g.workspaces = 2;
    g.keys = 3;

    auto text = m.render(g);
    auto v = parse_prometheus(text);
    BOOST_TEST(text.find("# TYPE apikeyd_http_requests_total counter") != std::string::npos);
    BOOST_TEST(v["apikeyd_http_requests_total{route=\"/api/v1/workspaces\",status=\"201\"}"] == 2);
    BOOST_TEST(v["apikeyd_http_requests_total{route=\"other\",status=\"401\"}"] == 1);
    BOOST_TEST(v["apikeyd_store_generation"] == 7);
    BOOST_TEST(v["apikeyd_snapshot_generation"] == 7);
    BOOST_TEST(v["apikeyd_store_bytes"] == 4096);
    BOOST_TEST(v["apikeyd_workspaces"] == 2);
    BOOST_TEST(v["apikeyd_api_keys"] == 3);
    BOOST_TEST(v["apikeyd_healthy"] == 1);
    BOOST_TEST(v["apikeyd_snapshot_publish_failures_total"] == 1);
    BOOST_TEST(v["apikeyd_snapshot_publish_seconds_bucket{le=\"0.001\"}"] == 0);
    BOOST_TEST(v["apikeyd_snapshot_publish_seconds_bucket{le=\"0.0025\"}"] == 1);
    BOOST_TEST(v["apikeyd_snapshot_publish_seconds_bucket{le=\"1\"}"] == 1);
    BOOST_TEST(v["apikeyd_snapshot_publish_seconds_bucket{le=\"+Inf\"}"] == 2);
    BOOST_TEST(v["apikeyd_snapshot_publish_seconds_count"] == 2);
    BOOST_TEST(v["apikeyd_snapshot_publish_seconds_sum"] == 5.002, boost::test_tools::tolerance(1e-9));
    BOOST_TEST(v.count("apikeyd_usage_datagrams_total") == 0u);  // no usage_listen

    apikeyd::UsageCounters usage;
    usage.datagrams = 5;
    usage.rejected_datagrams = 1;
    usage.rejected_lines = 2;
    usage.unknown_keys = 3;
    usage.keys_updated = 4;
    usage.writes = 1;
    g.usage = &usage;
    g.healthy = false;
    v = parse_prometheus(m.render(g));
    BOOST_TEST(v["apikeyd_healthy"] == 0);
    BOOST_TEST(v["apikeyd_usage_datagrams_total"] == 5);
    BOOST_TEST(v["apikeyd_usage_rejected_datagrams_total"] == 1);
    BOOST_TEST(v["apikeyd_usage_rejected_lines_total"] == 2);
    BOOST_TEST(v["apikeyd_usage_unknown_keys_total"] == 3);
    BOOST_TEST(v["apikeyd_usage_keys_updated_total"] == 4);
    BOOST_TEST(v["apikeyd_usage_writes_total"] == 1);
    BOOST_TEST(v["apikeyd_usage_write_failures_total"] == 0);

    // Empty: still valid (no request yet, no publish yet).
    parse_prometheus(apikeyd::Metrics().render(apikeyd::Gauges{}));
}

BOOST_FIXTURE_TEST_CASE(healthz_and_metrics_through_the_api, DaemonFixture) {
    // /healthz: no token, nothing secret; only GET and HEAD.
    auto r = call("GET", "/healthz", {}, std::nullopt);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["status"] == "ok");
    BOOST_TEST(json_of(r)["generation"] == store->generation());
    BOOST_TEST(call("HEAD", "/healthz", {}, std::nullopt).status == 200u);
    BOOST_TEST(call("GET", "/healthz?probe=1", {}, std::nullopt).status == 200u);
    r = call("POST", "/healthz", "{}", std::nullopt);
    BOOST_TEST(r.status == 405u);

    // /metrics: the admin token, GET and HEAD only.
    BOOST_TEST(call("GET", "/metrics", {}, std::nullopt).status == 401u);
    BOOST_TEST(call("GET", "/metrics", {}, std::string("Bearer wrong")).status == 401u);
    BOOST_TEST(call("POST", "/metrics").status == 405u);
    r = call("GET", "/metrics");
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.content_type.rfind("text/plain; version=0.0.4", 0) == 0u);
    auto before = parse_prometheus(r.body);

    const std::string ws = create_workspace("acme", "sales")["id"];
    create_key(ws);
    create_key(ws);
    call("GET", "/api/v1/workspaces/" + ws + "/api-keys");
    call("GET", "/api/v1/workspaces/00000000-0000-4000-8000-000000000000");
    call("GET", "/api/v1/workspaces", {}, std::nullopt);
    api->count_refused("", 400);  // what the HTTP server reports for malformed requests
    api->count_refused("/api/v1/workspaces", 413);

    auto after = parse_prometheus(call("GET", "/metrics").body);
    const auto delta = [&](const std::string &k) { return after[k] - before[k]; };
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"/api/v1/workspaces\",status=\"201\"}") == 1);
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"/api/v1/workspaces/{id}/api-keys\",status=\"201\"}") == 2);
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"/api/v1/workspaces/{id}/api-keys\",status=\"200\"}") == 1);
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"/api/v1/workspaces/{id}\",status=\"404\"}") == 1);
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"/api/v1/workspaces\",status=\"401\"}") == 1);
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"/api/v1/workspaces\",status=\"413\"}") == 1);
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"other\",status=\"400\"}") == 1);
    BOOST_TEST(delta("apikeyd_http_requests_total{route=\"/metrics\",status=\"200\"}") == 1);
    BOOST_TEST(delta("apikeyd_store_generation") == 3);
    BOOST_TEST(after["apikeyd_snapshot_generation"] == after["apikeyd_store_generation"]);
    BOOST_TEST(delta("apikeyd_snapshot_publish_seconds_count") == 3);
    BOOST_TEST(after["apikeyd_workspaces"] == 1);
    BOOST_TEST(after["apikeyd_api_keys"] == 2);
    BOOST_TEST(after["apikeyd_store_bytes"] > 0);
    BOOST_TEST(after["apikeyd_healthy"] == 1);

    // Deleting the workspace: still 2 keys stored (revoked), no live workspace.
    call("DELETE", "/api/v1/workspaces/" + ws);
    after = parse_prometheus(call("GET", "/metrics").body);
    BOOST_TEST(after["apikeyd_workspaces"] == 0);
    BOOST_TEST(after["apikeyd_api_keys"] == 2);
}

BOOST_FIXTURE_TEST_CASE(healthz_is_503_while_publishing_fails, DaemonFixture) {
    close();
    snapshot_map_size = 256u << 10;
    open();
    const std::string ws = create_workspace("acme", "sales")["id"];
    apikeyd::Response r;
    for (int i = 0; i < 20000; ++i) {
        r = call("POST", "/api/v1/workspaces/" + ws + "/api-keys", R"({"name":"k"})");
        if (r.status != 201) break;
    }
    BOOST_REQUIRE_EQUAL(r.status, 503u);
    r = call("GET", "/healthz", {}, std::nullopt);
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(json_of(r)["status"] == "degraded");
    BOOST_TEST(json_of(r)["generation"] == store->generation());
    BOOST_TEST(json_of(r)["published_generation"] == 0);
    BOOST_TEST(!json_of(r)["reason"].get<std::string>().empty());
    auto v = parse_prometheus(call("GET", "/metrics").body);
    BOOST_TEST(v["apikeyd_healthy"] == 0);
    BOOST_TEST(v["apikeyd_snapshot_generation"] == 0);
    BOOST_TEST(v["apikeyd_snapshot_publish_failures_total"] >= 1);

    // Repaired (more room): healthy again.
    close();
    snapshot_map_size = 64u << 20;
    open();
    BOOST_TEST(call("GET", "/healthz", {}, std::nullopt).status == 200u);
}

BOOST_AUTO_TEST_SUITE_END()
