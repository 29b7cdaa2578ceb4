// The change feed: one entry per admin mutation, written in the mutation's own store
// transaction with seq = the store generation; order, paging, query validation, no
// secrets, and persistence across a restart.
#include "../daemon/time_format.h"
#include "daemon_fixture.h"

#include <boost/test/unit_test.hpp>

using namespace apikeyd;
using apikey::test::DaemonFixture;
using apikey::test::kNow;
using nlohmann::json;

namespace {

const std::string kMissing = "00000000-0000-4000-8000-000000000000";

std::string error_code(const Response &r) {
    return json::parse(r.body)["error"]["code"].get<std::string>();
}

struct FeedFixture : DaemonFixture {
    std::string feed(const std::string &ws) const { return "/api/v1/workspaces/" + ws + "/changes"; }

    json page(const std::string &target) {
        const Response r = call("GET", target);
        BOOST_TEST_INFO(target << " -> " << r.body);
        BOOST_REQUIRE_EQUAL(r.status, 200u);
        const json j = json_of(r);
        BOOST_REQUIRE(j.is_object());
        BOOST_REQUIRE(j["changes"].is_array());
        BOOST_REQUIRE(j["next_after"].is_number_unsigned());
        BOOST_TEST(j.size() == 2u);
        return j;
    }

    // Every entry of a feed, paging with `limit`.
    json all(const std::string &target, int limit) {
        json out = json::array();
        std::uint64_t after = 0;
        for (int pages = 0; pages < 1000; ++pages) {
            const json p = page(target + "?after=" + std::to_string(after) + "&limit=" + std::to_string(limit));
            BOOST_TEST(p["changes"].size() <= static_cast<std::size_t>(limit));
            if (p["changes"].empty()) {
                BOOST_TEST(p["next_after"] == after);
                return out;
            }
            for (const auto &e : p["changes"]) out.push_back(e);
            after = p["next_after"];
            BOOST_TEST(after == p["changes"].back()["seq"].get<std::uint64_t>());
        }
        BOOST_FAIL("feed does not end");
        return out;
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_changes)

BOOST_FIXTURE_TEST_CASE(every_mutation_is_one_entry_in_order, FeedFixture) {
    const json ws = create_workspace("acme-corp", "sales");
    const std::string id = ws["id"];
    now += 1;
    const json key = create_key(id, {{"name", "ci"}, {"permission", "read_write"}});
    const std::string raw = key["key"];
    now += 1;
    BOOST_TEST(call("DELETE", "/api/v1/workspaces/" + id + "/api-keys/" + key["id"].get<std::string>()).status == 200u);
    BOOST_TEST(call("DELETE", "/api/v1/workspaces/" + id + "/api-keys/" + key["id"].get<std::string>()).status == 200u);  // no-op
    now += 1;
    const Response ws_put = call("PUT", "/api/v1/workspaces/" + id + "/settings",
                                 R"({"maxExpandDepth":4,"corsAllowedOrigins":["https://a.example"]})",
                                 std::string("Bearer second-token-abcdefgh"));
    BOOST_REQUIRE_EQUAL(ws_put.status, 200u);
    now += 1;
    const Response entity_put = call("PUT", "/api/v1/workspaces/" + id + "/entities/orders/settings",
                                     R"({"publicAccess":"READ_ONLY","columns":{"ssn":{"apiVisible":false}}})");
    BOOST_REQUIRE_EQUAL(entity_put.status, 200u);
    // Nothing changes: no entry.
    BOOST_TEST(call("PUT", "/api/v1/workspaces/" + id + "/settings",
                    R"({"maxExpandDepth":4,"corsAllowedOrigins":["https://A.example:443"]})").status == 200u);
    // Refused: no entry.
    BOOST_TEST(call("PUT", "/api/v1/workspaces/" + id + "/settings", R"({"maxExpandDepth":99})").status == 400u);

    const json p = page(feed(id));
    const json &c = p["changes"];
    BOOST_REQUIRE_EQUAL(c.size(), 5u);
    const char *types[] = {"workspace.created", "api_key.created", "api_key.revoked",
                           "workspace.settings_updated", "entity.settings_updated"};
    for (std::size_t i = 0; i < c.size(); ++i) {
        BOOST_TEST_INFO(c[i].dump());
        BOOST_TEST(c[i]["type"] == types[i]);
        BOOST_TEST(c[i]["workspace_id"] == id);
        BOOST_TEST(c[i]["seq"] == 2 + i);  // the store generation of the mutation
        BOOST_TEST(c[i]["time"] == format_iso8601(kNow + static_cast<std::int64_t>(i)));
        BOOST_TEST(c[i]["actor"] == (i == 3 ? "ci-bot" : "ops"));
        BOOST_TEST(c[i]["object"].is_object());
        BOOST_TEST(c[i].contains("entity") == (i == 4));
    }
    BOOST_TEST(p["next_after"] == 6);
    BOOST_TEST(store->generation() == 6u);
    // Field order as documented.
    const Response raw_page = call("GET", feed(id));
    BOOST_TEST(raw_page.body.rfind("{\"changes\":[{\"seq\":2,\"time\":", 0) == 0u);

    // Objects as the API shows them after the change.
    BOOST_TEST(c[0]["object"] == ws);
    json key_view = key;
    key_view.erase("key");
    BOOST_TEST(c[1]["object"] == key_view);
    BOOST_TEST(c[2]["object"]["status"] == "revoked");
    BOOST_TEST(c[2]["object"]["id"] == key["id"]);
    BOOST_TEST(c[3]["object"] == json_of(ws_put));
    BOOST_TEST(c[4]["entity"] == "orders");
    BOOST_TEST(c[4]["object"] == json_of(entity_put));
    BOOST_TEST(c[4]["object"]["effective"]["maxExpandDepth"] == 4);

    // No secrets: neither the raw key nor its hash, anywhere in the feed.
    BOOST_TEST(raw_page.body.find(raw) == std::string::npos);
    BOOST_TEST(raw_page.body.find(apikey::to_hex(apikey::sha256(raw))) == std::string::npos);
    BOOST_TEST(!c[1]["object"].contains("key"));
    BOOST_TEST(!c[1]["object"].contains("key_sha256"));
}

BOOST_FIXTURE_TEST_CASE(a_settings_put_is_one_entry_with_one_seq, FeedFixture) {
    const std::string id = create_workspace("acme", "sales")["id"];
    for (const char *e : {"a", "b", "c"})
        call("PUT", "/api/v1/workspaces/" + id + "/entities/" + e + "/settings", R"({"publicAccess":"READ_ONLY"})");
    const auto before = store->generation();
    // Republishes three entity records, but is one mutation.
    BOOST_TEST(call("PUT", "/api/v1/workspaces/" + id + "/settings", R"({"maxExpandDepth":2})").status == 200u);
    BOOST_TEST(store->generation() == before + 1);
    const json p = page(feed(id) + "?after=" + std::to_string(before));
    BOOST_REQUIRE_EQUAL(p["changes"].size(), 1u);
    BOOST_TEST(p["changes"][0]["seq"] == before + 1);
    BOOST_TEST(p["changes"][0]["type"] == "workspace.settings_updated");
    BOOST_TEST(snapshot_generation() == before + 1);
}

BOOST_FIXTURE_TEST_CASE(feeds_are_per_workspace_and_page, FeedFixture) {
    const std::string a = create_workspace("acme", "a")["id"];
    const std::string b = create_workspace("acme", "b")["id"];
    for (int i = 0; i < 12; ++i) create_key(i % 3 == 0 ? b : a, {{"name", "k" + std::to_string(i)}});

    const json feed_a = all(feed(a), 5);
    const json feed_b = all(feed(b), 1);
    BOOST_TEST(feed_a.size() == 1u + 8u);
    BOOST_TEST(feed_b.size() == 1u + 4u);
    std::uint64_t last = 0;
    for (const auto &e : feed_a) {
        BOOST_TEST(e["workspace_id"] == a);
        BOOST_TEST(e["seq"].get<std::uint64_t>() > last);  // strictly increasing
        last = e["seq"];
    }
    for (const auto &e : feed_b) BOOST_TEST(e["workspace_id"] == b);
    BOOST_TEST(all(feed(a), 1000) == feed_a);
    BOOST_TEST(all(feed(a), 1) == feed_a);

    // after is exclusive and need not be one of the workspace's seqs.
    const std::uint64_t third = feed_a[2]["seq"];
    json p = page(feed(a) + "?after=" + std::to_string(third) + "&limit=2");
    BOOST_REQUIRE_EQUAL(p["changes"].size(), 2u);
    BOOST_TEST(p["changes"][0] == feed_a[3]);
    BOOST_TEST(p["next_after"] == feed_a[4]["seq"]);
    p = page(feed(a) + "?limit=3&after=" + std::to_string(third - 1));
    BOOST_TEST(p["changes"][0] == feed_a[2]);
    // Past the end: empty, next_after stays.
    p = page(feed(a) + "?after=18446744073709551615");
    BOOST_TEST(p["changes"].empty());
    BOOST_TEST(p["next_after"] == 18446744073709551615ull);
    p = page(feed(a) + "?after=1000");
    BOOST_TEST(p["changes"].empty());
    BOOST_TEST(p["next_after"] == 1000);
    // Defaults: after 0, limit 100.
    for (int i = 0; i < 120; ++i) create_key(a);
    BOOST_TEST(page(feed(a))["changes"].size() == 100u);
    BOOST_TEST(page(feed(a) + "?")["changes"].size() == 100u);
    BOOST_TEST(page(feed(a) + "?limit=1000")["changes"].size() == 129u);

    // The global feed has everything, in order.
    const json global = all("/api/v1/changes", 7);
    BOOST_TEST(global.size() == store->generation() - 1);
    for (std::size_t i = 0; i < global.size(); ++i) BOOST_TEST(global[i]["seq"] == 2 + i);
}

BOOST_FIXTURE_TEST_CASE(feed_query_validation, FeedFixture) {
    const std::string id = create_workspace("acme", "sales")["id"];
    const struct {
        const char *query;
        const char *code;
        const char *named;
    } cases[] = {
        {"after=-1", "invalid_field", "after"},
        {"after=1.5", "invalid_field", "after"},
        {"after=abc", "invalid_field", "after"},
        {"after=", "invalid_field", "after"},
        {"after", "invalid_field", "after"},
        {"after=+1", "invalid_field", "after"},
        {"after=%31", "invalid_field", "after"},
        {"after=1e3", "invalid_field", "after"},
        {"after=18446744073709551616", "invalid_field", "after"},  // > u64
        {"after=1&after=2", "invalid_field", "after"},
        {"limit=0", "invalid_field", "limit"},
        {"limit=1001", "invalid_field", "limit"},
        {"limit=-5", "invalid_field", "limit"},
        {"limit=ten", "invalid_field", "limit"},
        {"limit=99999999999999999999999", "invalid_field", "limit"},
        {"limit=", "invalid_field", "limit"},
        {"limit=5&limit=5", "invalid_field", "limit"},
        {"offset=3", "unknown_field", "offset"},
        {"after=1&cursor=x", "unknown_field", "cursor"},
        {"After=1", "unknown_field", "After"},
        {"=1", "unknown_field", "query parameter"},
        {"sk_live_abc=1", "unknown_field", "query parameter"},
    };
    for (const auto &c : cases) {
        for (const std::string &target : {feed(id), std::string("/api/v1/changes")}) {
            const Response r = call("GET", target + "?" + c.query);
            BOOST_TEST_INFO(target << "?" << c.query << " -> " << r.body);
            BOOST_TEST(r.status == 400u);
            BOOST_TEST(error_code(r) == c.code);
            BOOST_TEST(json_of(r)["error"]["message"].get<std::string>().find(c.named) != std::string::npos);
        }
    }
    for (const char *ok : {"after=0", "after=007", "limit=1", "limit=1000", "after=5&limit=10", "&after=1&", "limit=10&after=1"})
        BOOST_TEST(call("GET", feed(id) + "?" + ok).status == 200u, ok);
    BOOST_TEST(call("GET", feed(kMissing)).status == 404u);
    BOOST_TEST(call("GET", "/api/v1/workspaces/not-a-uuid/changes").status == 404u);
    BOOST_TEST(call("POST", feed(id)).status == 405u);
    BOOST_TEST(call("DELETE", "/api/v1/changes").status == 405u);
    BOOST_TEST(call("HEAD", feed(id)).status == 200u);
    BOOST_TEST(call("GET", feed(id) + "/x").status == 404u);
    BOOST_TEST(call("GET", "/api/v1/changes", {}, std::nullopt).status == 401u);
    BOOST_TEST(call("GET", feed(id), {}, std::string("Bearer nope")).status == 401u);
}

BOOST_FIXTURE_TEST_CASE(deleted_workspace_feed_is_404_but_the_global_feed_keeps_it, FeedFixture) {
    const std::string id = create_workspace("acme", "temp")["id"];
    create_key(id);
    call("PUT", "/api/v1/workspaces/" + id + "/entities/orders/settings", R"({"publicAccess":"READ_WRITE"})");
    const json before = page(feed(id))["changes"];
    BOOST_TEST(call("DELETE", "/api/v1/workspaces/" + id).status == 200u);
    const Response r = call("GET", feed(id));
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(error_code(r) == "not_found");

    const json global = page("/api/v1/changes")["changes"];
    BOOST_REQUIRE_EQUAL(global.size(), before.size() + 1);
    for (std::size_t i = 0; i < before.size(); ++i) BOOST_TEST(global[i] == before[i]);
    const json &deleted = global.back();
    BOOST_TEST(deleted["type"] == "workspace.deleted");
    BOOST_TEST(deleted["workspace_id"] == id);
    BOOST_TEST(deleted["object"]["id"] == id);
    BOOST_TEST(deleted["object"]["org"] == "acme");
    BOOST_TEST(deleted["seq"] == store->generation());

    // A new workspace with the same org/slug has its own, new feed.
    const std::string again = create_workspace("acme", "temp")["id"];
    const json fresh = page(feed(again))["changes"];
    BOOST_REQUIRE_EQUAL(fresh.size(), 1u);
    BOOST_TEST(fresh[0]["type"] == "workspace.created");
}

BOOST_FIXTURE_TEST_CASE(feed_survives_a_restart, FeedFixture) {
    const std::string id = create_workspace("acme", "sales")["id"];
    const json key = create_key(id);
    call("PUT", "/api/v1/workspaces/" + id + "/settings", R"({"maxExpandDepth":1})");
    const json before = page(feed(id));
    const json global_before = page("/api/v1/changes");

    reopen();
    BOOST_TEST(page(feed(id)) == before);
    BOOST_TEST(page("/api/v1/changes") == global_before);
    // And seqs go on from where they were.
    now += 5;
    call("DELETE", "/api/v1/workspaces/" + id + "/api-keys/" + key["id"].get<std::string>());
    const json after = page(feed(id) + "?after=" + std::to_string(before["next_after"].get<std::uint64_t>()));
    BOOST_REQUIRE_EQUAL(after["changes"].size(), 1u);
    BOOST_TEST(after["changes"][0]["seq"] == before["next_after"].get<std::uint64_t>() + 1);
    BOOST_TEST(after["changes"][0]["type"] == "api_key.revoked");
    BOOST_TEST(after["changes"][0]["time"] == "2027-01-15T08:00:05Z");
}

BOOST_FIXTURE_TEST_CASE(a_refused_mutation_leaves_no_entry, FeedFixture) {
    const std::string id = create_workspace("acme", "sales")["id"];
    BOOST_TEST(call("POST", "/api/v1/workspaces", R"({"org":"acme","slug":"sales","name":"x"})").status == 409u);
    BOOST_TEST(call("POST", "/api/v1/workspaces/" + kMissing + "/api-keys", R"({"name":"x"})").status == 404u);
    BOOST_TEST(call("PUT", "/api/v1/workspaces/" + kMissing + "/settings", "{}").status == 404u);
    BOOST_TEST(call("PUT", "/api/v1/workspaces/" + kMissing + "/entities/x/settings", R"({"publicAccess":"NONE"})").status == 404u);
    BOOST_TEST(page("/api/v1/changes")["changes"].size() == 1u);
    BOOST_TEST(store->generation() == 2u);
}

BOOST_AUTO_TEST_CASE(a_page_is_bounded_in_bytes) {
    apikeyd::set_log_enabled(false);
    apikey::test::TempDir dir;
    Store store({dir.sub("store"), 64u << 20});
    Workspace w;
    w.id = apikey::random_uuid();
    w.org = "acme";
    w.slug = "big";
    w.name = "Big";
    store.create_workspace(w, {"ops", 1});
    const std::string long_name(1000, 'n');
    for (int i = 0; i < 30; ++i) {
        EntitySettings s;
        s.default_fields = "id";
        Change change;
        BOOST_REQUIRE((store.put_entity_settings(w.id, "e" + std::to_string(i), s, {long_name, 2},
                                                 change) == Store::Update::updated));
    }
    auto view = store.view();
    const auto all = view.changes(w.id, 0, 1000, std::size_t{1} << 30);
    BOOST_TEST(all.size() == 31u);
    const auto bounded = view.changes(w.id, 0, 1000, 10'000);
    BOOST_TEST(bounded.size() < all.size());
    BOOST_TEST(bounded.size() >= 1u);
    std::size_t bytes = 0;
    for (const auto &e : bounded) bytes += e.json.size();
    BOOST_TEST(bytes <= 10'000u);
    const auto one = view.changes(w.id, 0, 1000, 1);  // always at least one
    BOOST_TEST(one.size() == 1u);
    BOOST_TEST(view.changes(std::nullopt, 0, 1000, 10'000).size() == bounded.size());
}

BOOST_AUTO_TEST_SUITE_END()
