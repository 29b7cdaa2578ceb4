#include "daemon_fixture.h"
#include "../daemon/metrics.h"
#include "../daemon/usage_receiver.h"

#include <boost/test/unit_test.hpp>

using namespace apikey::test;
using apikeyd::parse_usage_datagram;

BOOST_AUTO_TEST_SUITE(daemon_usage)

BOOST_AUTO_TEST_CASE(datagram_table) {
    const std::string id = "550e8400-e29b-41d4-a716-446655440000";
    const std::int64_t now = 1'800'000'000;
    struct Case {
        std::string datagram;
        bool report;
        std::size_t uses;
        std::uint64_t rejected;
    };
    const Case cases[] = {
        {"apikey-usage 1\n" + id + " 1799999999\n", true, 1, 0},
        {"apikey-usage 1\n" + id + " 1799999999", true, 1, 0},  // no final newline
        {"apikey-usage 1\n", true, 0, 0},
        {"apikey-usage 2\n" + id + " 1\n", false, 0, 0},
        {"", false, 0, 0},
        {"GET / HTTP/1.1\r\n", false, 0, 0},
        {"apikey-usage 1\n" + id + " 1800000061\n", true, 0, 1},  // over a minute ahead
        {"apikey-usage 1\n" + id + " 1800000060\n", true, 1, 0},
        {"apikey-usage 1\n" + id + " -5\n" + id + " 0\n", true, 0, 2},
        {"apikey-usage 1\n" + id + "\n" + id + " \n" + id + " 12x\n", true, 0, 3},
        {"apikey-usage 1\nnot-a-uuid 1799999999\n" + id + " 1799999999\n", true, 1, 1},
        {"apikey-usage 1\n" + id + " 99999999999999999999999\n", true, 0, 1},  // overflow
    };
    for (const auto &c : cases) {
        std::vector<std::pair<apikey::Uuid, std::int64_t>> uses;
        std::uint64_t rejected = 0;
        BOOST_TEST_INFO(c.datagram);
        BOOST_TEST(parse_usage_datagram(c.datagram, now, uses, rejected) == c.report);
        BOOST_TEST(uses.size() == c.uses);
        BOOST_TEST(rejected == c.rejected);
    }
}

BOOST_FIXTURE_TEST_CASE(usage_moves_last_used_at_forward_only, DaemonFixture) {
    const auto ws = create_workspace("acme", "sales");
    const auto key = create_key(ws["id"].get<std::string>());
    const auto id = *apikey::parse_uuid(key["id"].get<std::string>());
    const std::string path =
        "/api/v1/workspaces/" + ws["id"].get<std::string>() + "/api-keys/" + key["id"].get<std::string>();
    const std::uint64_t generation = store->generation();

    BOOST_TEST(store->record_usage({{id, 1'800'000'000}}) == 1u);
    BOOST_TEST(json_of(call("GET", path))["last_used_at"] == "2027-01-15T08:00:00Z");
    BOOST_TEST(store->record_usage({{id, 1'700'000'000}}) == 0u);  // older: ignored
    BOOST_TEST(store->record_usage({{apikey::random_uuid(), 1'800'000'000}}) == 0u);
    BOOST_TEST(json_of(call("GET", path))["last_used_at"] == "2027-01-15T08:00:00Z");
    // Usage is not an admin change: nothing published, nothing in the feed.
    BOOST_TEST(store->generation() == generation);
    reopen();
    BOOST_TEST(json_of(call("GET", path))["last_used_at"] == "2027-01-15T08:00:00Z");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(daemon_metrics)

BOOST_AUTO_TEST_CASE(route_patterns_keep_label_values_few) {
    const std::string id = "550e8400-e29b-41d4-a716-446655440000";
    const std::pair<std::string, std::string> cases[] = {
        {"/api/v1/workspaces", "/api/v1/workspaces"},
        {"/api/v1/workspaces/" + id + "/api-keys?x=1", "/api/v1/workspaces/{id}/api-keys"},
        {"/api/v1/workspaces/" + id + "/entities/Customer/settings",
         "/api/v1/workspaces/{id}/entities/{entity}/settings"},
        {"/metrics", "/metrics"},
        {"/api/v1/sk_live_pasted_by_mistake", "other"},
        {"/", "other"},
        {"", "other"},
        {"relative", "other"},
    };
    for (const auto &[target, route] : cases)
        BOOST_TEST(apikeyd::Metrics::route_of(target) == route, target);
}

BOOST_AUTO_TEST_CASE(rendered_text_has_types_and_counts) {
    apikeyd::Metrics m;
    m.count_request("/api/v1/workspaces", 201);
    m.count_request("/api/v1/workspaces", 201);
    m.observe_publish(0.002);
    apikeyd::Gauges g;
    g.store_generation = 7;
    const std::string text = m.render(g);
    BOOST_TEST(text.find("# TYPE apikeyd_http_requests_total counter") != std::string::npos);
    BOOST_TEST(text.find("apikeyd_http_requests_total{route=\"/api/v1/workspaces\",status=\"201\"} 2") !=
               std::string::npos);
    BOOST_TEST(text.find("apikeyd_store_generation 7") != std::string::npos);
    BOOST_TEST(text.find("apikeyd_snapshot_publish_seconds_bucket{le=\"0.001\"} 0") != std::string::npos);
    BOOST_TEST(text.find("apikeyd_snapshot_publish_seconds_bucket{le=\"0.0025\"} 1") != std::string::npos);
    BOOST_TEST(text.find("apikeyd_snapshot_publish_seconds_count 1") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
