// Rate limits in the admin API: validation of the {"limit", "window_seconds"} object (key
// rate_limit at create and PATCH, workspace defaultRateLimit), PATCH of a key, and the
// resolution into the snapshot's key records at publish time: the key's own limit, else
// its workspace's default, else none (nginx's own default applies).
#include "daemon_fixture.h"

#include <boost/test/unit_test.hpp>

using namespace apikey::test;
using nlohmann::json;
namespace snapshot = apikey::snapshot;

namespace {

struct RateLimitFixture : DaemonFixture {
    std::string ws;
    std::string W;

    RateLimitFixture() {
        ws = create_workspace("acme-corp", "sales")["id"].get<std::string>();
        W = "/api/v1/workspaces/" + ws;
    }

    apikeyd::Response patch(const std::string &key_id, const json &body) {
        return call("PATCH", W + "/api-keys/" + key_id, body.dump());
    }
    apikeyd::Response put_settings(const json &body) { return call("PUT", W + "/settings", body.dump()); }

    // The limit the snapshot holds for a raw key (requires the key to be published).
    std::optional<snapshot::RateLimit> published_limit(const json &created) {
        const auto record = snapshot_key(created["key"].get<std::string>());
        BOOST_REQUIRE(record);
        return record->rate_limit;
    }

    std::vector<json> feed_of_type(const std::string &type) {
        std::vector<json> out;
        const json page = json_of(call("GET", W + "/changes?limit=1000"));
        for (const json &e : page["changes"])
            if (e["type"] == type) out.push_back(e);
        return out;
    }
};

bool same(const std::optional<snapshot::RateLimit> &a, std::uint32_t limit, std::uint32_t window) {
    return a && a->limit == limit && a->window_seconds == window;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_rate_limit)

BOOST_FIXTURE_TEST_CASE(create_with_rate_limit, RateLimitFixture) {
    const json created = create_key(ws, {{"name", "ci"}, {"rate_limit", {{"limit", 10}, {"window_seconds", 60}}}});
    BOOST_TEST(created["rate_limit"] == (json{{"limit", 10}, {"window_seconds", 60}}));
    const json got = json_of(call("GET", W + "/api-keys/" + created["id"].get<std::string>()));
    BOOST_TEST(got["rate_limit"] == created["rate_limit"]);
    BOOST_TEST(same(published_limit(created), 10, 60));

    const json unlimited = create_key(ws, {{"name", "free"}, {"rate_limit", nullptr}});
    BOOST_TEST(unlimited["rate_limit"].is_null());
    BOOST_TEST(!published_limit(unlimited));

    // Bounds are inclusive.
    const json edges = create_key(ws, {{"name", "edges"},
                                       {"rate_limit", {{"limit", 1'000'000'000}, {"window_seconds", 86400}}}});
    BOOST_TEST(same(published_limit(edges), 1'000'000'000, 86400));
    BOOST_TEST(same(published_limit(create_key(ws, {{"name", "min"},
                                                    {"rate_limit", {{"limit", 1}, {"window_seconds", 1}}}})),
                    1, 1));
}

BOOST_FIXTURE_TEST_CASE(rate_limit_validation_names_the_field, RateLimitFixture) {
    const std::string key_id = create_key(ws)["id"].get<std::string>();
    const struct {
        const char *what;
        std::string limit;  // JSON of the rate-limit value
        const char *code;
        const char *field;
    } cases[] = {
        {"a string", R"("10/m")", "invalid_field", "\"rate_limit\""},
        {"a number", "10", "invalid_field", "\"rate_limit\""},
        {"an array", "[10, 60]", "invalid_field", "\"rate_limit\""},
        {"true", "true", "invalid_field", "\"rate_limit\""},
        {"empty object", "{}", "missing_field", "rate_limit.limit"},
        {"no limit", R"({"window_seconds":60})", "missing_field", "rate_limit.limit"},
        {"no window", R"({"limit":5})", "missing_field", "rate_limit.window_seconds"},
        {"limit 0", R"({"limit":0,"window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"limit negative", R"({"limit":-1,"window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"limit over 1e9", R"({"limit":1000000001,"window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"limit huge", R"({"limit":18446744073709551615,"window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"limit fraction", R"({"limit":2.5,"window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"limit 1.0", R"({"limit":1.0,"window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"limit a string", R"({"limit":"5","window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"limit null", R"({"limit":null,"window_seconds":60})", "invalid_field", "rate_limit.limit"},
        {"window 0", R"({"limit":5,"window_seconds":0})", "invalid_field", "rate_limit.window_seconds"},
        {"window over a day", R"({"limit":5,"window_seconds":86401})", "invalid_field", "rate_limit.window_seconds"},
        {"window a bool", R"({"limit":5,"window_seconds":true})", "invalid_field", "rate_limit.window_seconds"},
        {"unknown member", R"({"limit":5,"window_seconds":60,"burst":3})", "unknown_field", "burst"},
    };
    for (const auto &c : cases) {
        BOOST_TEST_CONTEXT(c.what) {
            // At create, with PATCH, and as a workspace default (whose field name differs).
            const auto created = call("POST", W + "/api-keys", R"({"name":"x","rate_limit":)" + c.limit + "}");
            const auto patched = call("PATCH", W + "/api-keys/" + key_id, R"({"rate_limit":)" + c.limit + "}");
            const auto defaulted = call("PUT", W + "/settings", R"({"defaultRateLimit":)" + c.limit + "}");
            for (const auto *r : {&created, &patched, &defaulted}) {
                BOOST_TEST(r->status == 400u);
                const json error = json_of(*r)["error"];
                BOOST_TEST(error["code"] == c.code);
            }
            std::string field = c.field;
            BOOST_TEST(json_of(created)["error"]["message"].get<std::string>().find(field) != std::string::npos);
            BOOST_TEST(json_of(patched)["error"]["message"].get<std::string>().find(field) != std::string::npos);
            if (field.rfind("\"rate_limit", 0) == 0) field.replace(1, 10, "defaultRateLimit");
            else if (field.rfind("rate_limit", 0) == 0) field.replace(0, 10, "defaultRateLimit");
            BOOST_TEST(json_of(defaulted)["error"]["message"].get<std::string>().find(field) != std::string::npos,
                       json_of(defaulted)["error"]["message"]);
        }
    }
    // Nothing was stored by any refused request.
    BOOST_TEST(feed_of_type("api_key.updated").empty());
    BOOST_TEST(feed_of_type("workspace.settings_updated").empty());
}

BOOST_FIXTURE_TEST_CASE(patch_rate_limit_and_name, RateLimitFixture) {
    const json created = create_key(ws, {{"name", "ci"}});
    const std::string id = created["id"].get<std::string>();
    std::uint64_t generation = store->generation();

    now += 10;
    auto r = patch(id, {{"rate_limit", {{"limit", 5}, {"window_seconds", 10}}}});
    BOOST_TEST(r.status == 200u);
    json key = json_of(r);
    BOOST_TEST(key["rate_limit"] == (json{{"limit", 5}, {"window_seconds", 10}}));
    BOOST_TEST(key["name"] == "ci");
    BOOST_TEST(key["updated_at"] == "2027-01-15T08:00:10Z");
    BOOST_TEST(key["created_at"] == "2027-01-15T08:00:00Z");
    BOOST_TEST(!key.contains("key"));
    BOOST_TEST(store->generation() == generation + 1);
    BOOST_TEST(snapshot_generation() == store->generation());
    BOOST_TEST(same(published_limit(created), 5, 10));

    // The same again changes nothing: no generation, no feed entry, updated_at kept.
    now += 10;
    r = patch(id, {{"rate_limit", {{"limit", 5}, {"window_seconds", 10}}}});
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["updated_at"] == "2027-01-15T08:00:10Z");
    BOOST_TEST(store->generation() == generation + 1);

    // name alone, then both, then null removes the limit.
    r = patch(id, {{"name", "ci (rotated)"}});
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["name"] == "ci (rotated)");
    BOOST_TEST(json_of(r)["rate_limit"] == (json{{"limit", 5}, {"window_seconds", 10}}));
    r = patch(id, {{"name", "ci"}, {"rate_limit", nullptr}});
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["name"] == "ci");
    BOOST_TEST(json_of(r)["rate_limit"].is_null());
    BOOST_TEST(!published_limit(created));
    BOOST_TEST(store->generation() == generation + 3);

    // Each change is one api_key.updated entry with the key as the API shows it.
    const auto updates = feed_of_type("api_key.updated");
    BOOST_REQUIRE_EQUAL(updates.size(), 3u);
    BOOST_TEST(updates[0]["object"]["rate_limit"] == (json{{"limit", 5}, {"window_seconds", 10}}));
    BOOST_TEST(updates[0]["actor"] == "ops");
    BOOST_TEST(updates[1]["object"]["name"] == "ci (rotated)");
    BOOST_TEST(updates[2]["object"]["rate_limit"].is_null());
    for (const json &u : updates) {
        BOOST_TEST(!u["object"].contains("key"));
        BOOST_TEST(!u["object"].contains("key_sha256"));
    }

    // Survives a restart (and a full rebuild of the snapshot from the store).
    patch(id, {{"rate_limit", {{"limit", 7}, {"window_seconds", 1}}}});
    close();
    std::filesystem::remove_all(snapshot_dir());
    open();
    BOOST_TEST(json_of(call("GET", W + "/api-keys/" + id))["rate_limit"] ==
               (json{{"limit", 7}, {"window_seconds", 1}}));
    BOOST_TEST(same(published_limit(created), 7, 1));
}

BOOST_FIXTURE_TEST_CASE(patch_errors, RateLimitFixture) {
    const std::string id = create_key(ws)["id"].get<std::string>();
    const std::uint64_t generation = store->generation();
    const struct {
        const char *what;
        std::string body;
        unsigned status;
        const char *code;
        const char *named;  // in the message
    } cases[] = {
        {"empty object", "{}", 400, "missing_field", "rate_limit"},
        {"not JSON", "{", 400, "invalid_json", ""},
        {"an array", "[]", 400, "invalid_json", ""},
        {"empty body", "", 400, "invalid_json", ""},
        {"unknown field", R"({"permission":"read_write"})", 400, "unknown_field", "permission"},
        {"status is not patchable", R"({"status":"active"})", 400, "unknown_field", "status"},
        {"expires_at is not patchable", R"({"expires_at":null,"name":"x"})", 400, "unknown_field", "expires_at"},
        {"name null", R"({"name":null})", 400, "invalid_field", "name"},
        {"name empty", R"({"name":""})", 400, "invalid_field", "name"},
        {"name a number", R"({"name":5})", 400, "invalid_field", "name"},
        {"name with a newline", R"({"name":"a\nb"})", 400, "invalid_field", "name"},
        {"a good name and a bad limit", R"({"name":"ok","rate_limit":{"limit":0,"window_seconds":1}})", 400,
         "invalid_field", "rate_limit.limit"},
    };
    for (const auto &c : cases) {
        BOOST_TEST_CONTEXT(c.what) {
            const auto r = call("PATCH", W + "/api-keys/" + id, c.body);
            BOOST_TEST(r.status == c.status);
            BOOST_TEST(json_of(r)["error"]["code"] == c.code);
            BOOST_TEST(json_of(r)["error"]["message"].get<std::string>().find(c.named) != std::string::npos);
        }
    }
    BOOST_TEST(json_of(call("GET", W + "/api-keys/" + id))["name"] == "k");
    BOOST_TEST(store->generation() == generation);

    const json body = {{"rate_limit", nullptr}};
    // Unknown key, malformed key id, unknown workspace, another workspace's key.
    BOOST_TEST(patch("00000000-0000-4000-8000-000000000000", body).status == 404u);
    BOOST_TEST(patch("not-a-uuid", body).status == 404u);
    BOOST_TEST(call("PATCH", "/api/v1/workspaces/00000000-0000-4000-8000-000000000000/api-keys/" + id,
                    body.dump()).status == 404u);
    const std::string other = create_workspace("acme-corp", "inventory")["id"].get<std::string>();
    BOOST_TEST(call("PATCH", "/api/v1/workspaces/" + other + "/api-keys/" + id, body.dump()).status == 404u);
    // Without a token.
    BOOST_TEST(call("PATCH", W + "/api-keys/" + id, body.dump(), std::nullopt).status == 401u);
    // PATCH is only for a key.
    BOOST_TEST(call("PATCH", W + "/api-keys", body.dump()).status == 405u);
}

BOOST_FIXTURE_TEST_CASE(revoked_keys_may_be_patched_and_stay_revoked, RateLimitFixture) {
    const json created = create_key(ws);
    const std::string id = created["id"].get<std::string>();
    BOOST_TEST(call("DELETE", W + "/api-keys/" + id).status == 200u);
    const auto r = patch(id, {{"name", "old CI key"}, {"rate_limit", {{"limit", 1}, {"window_seconds", 1}}}});
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["status"] == "revoked");
    BOOST_TEST(json_of(r)["name"] == "old CI key");
    const auto record = snapshot_key(created["key"].get<std::string>());
    BOOST_REQUIRE(record);
    BOOST_TEST((record->status == snapshot::KeyStatus::revoked));

    // A deleted workspace's keys are gone from the API, PATCH included.
    const std::string live = create_key(ws)["id"].get<std::string>();
    BOOST_TEST(call("DELETE", W).status == 200u);
    BOOST_TEST(patch(live, {{"name", "x"}}).status == 404u);
}

BOOST_FIXTURE_TEST_CASE(resolution_own_then_workspace_default_then_none, RateLimitFixture) {
    const json own = create_key(ws, {{"name", "own"}, {"rate_limit", {{"limit", 50}, {"window_seconds", 60}}}});
    const json inherits = create_key(ws, {{"name", "inherits"}});
    const json revoked = create_key(ws, {{"name", "revoked"}});
    call("DELETE", W + "/api-keys/" + revoked["id"].get<std::string>());
    BOOST_TEST(same(published_limit(own), 50, 60));
    BOOST_TEST(!published_limit(inherits));  // nothing: nginx's default applies

    // Setting the default republishes the inheriting keys in the same snapshot
    // transaction as the settings (one generation), and leaves keys with their own alone.
    const std::uint64_t generation = store->generation();
    auto r = put_settings({{"defaultRateLimit", {{"limit", 2}, {"window_seconds", 60}}}});
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["defaultRateLimit"] == (json{{"limit", 2}, {"window_seconds", 60}}));
    BOOST_TEST(json_of(r)["effective"]["defaultRateLimit"] == (json{{"limit", 2}, {"window_seconds", 60}}));
    BOOST_TEST(store->generation() == generation + 1);
    BOOST_TEST(snapshot_generation() == generation + 1);
    BOOST_TEST(same(published_limit(inherits), 2, 60));
    BOOST_TEST(same(published_limit(own), 50, 60));
    BOOST_TEST(same(published_limit(revoked), 2, 60));  // harmless: it is refused anyway
    // The API shows each key's own limit, not the resolved one.
    BOOST_TEST(json_of(call("GET", W + "/api-keys/" + inherits["id"].get<std::string>()))["rate_limit"].is_null());
    BOOST_TEST(json_of(call("GET", W + "/settings"))["defaultRateLimit"] ==
               (json{{"limit", 2}, {"window_seconds", 60}}));

    // A key created later inherits it; removing a key's own limit falls back to it.
    const json later = create_key(ws, {{"name", "later"}});
    BOOST_TEST(same(published_limit(later), 2, 60));
    patch(own["id"].get<std::string>(), {{"rate_limit", nullptr}});
    BOOST_TEST(same(published_limit(own), 2, 60));
    // Giving a key its own limit wins over the default.
    patch(later["id"].get<std::string>(), {{"rate_limit", {{"limit", 9}, {"window_seconds", 3}}}});
    BOOST_TEST(same(published_limit(later), 9, 3));

    // Changing the default moves every inheriting key; other settings changes keep it.
    put_settings({{"defaultRateLimit", {{"limit", 3}, {"window_seconds", 1}}}});
    BOOST_TEST(same(published_limit(inherits), 3, 1));
    BOOST_TEST(same(published_limit(own), 3, 1));
    BOOST_TEST(same(published_limit(later), 9, 3));
    put_settings({{"defaultRateLimit", {{"limit", 3}, {"window_seconds", 1}}}, {"maxExpandDepth", 5}});
    BOOST_TEST(same(published_limit(inherits), 3, 1));

    // Another workspace's keys never see this default.
    const std::string other = create_workspace("acme-corp", "inventory")["id"].get<std::string>();
    BOOST_TEST(!published_limit(create_key(other)));

    // A full rebuild resolves the same way.
    close();
    std::filesystem::remove_all(snapshot_dir());
    open();
    BOOST_TEST(same(published_limit(inherits), 3, 1));
    BOOST_TEST(same(published_limit(later), 9, 3));

    // Removing the default (PUT replaces the whole settings object) frees them again.
    r = put_settings(json::object());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["defaultRateLimit"].is_null());
    BOOST_TEST(json_of(r)["effective"]["defaultRateLimit"].is_null());
    BOOST_TEST(!published_limit(inherits));
    BOOST_TEST(!published_limit(own));
    BOOST_TEST(same(published_limit(later), 9, 3));
    BOOST_TEST(snapshot_generation() == store->generation());

    // Each default change is a workspace.settings_updated entry naming the new default.
    const auto entries = feed_of_type("workspace.settings_updated");
    BOOST_REQUIRE(!entries.empty());
    BOOST_TEST(entries.back()["object"]["defaultRateLimit"].is_null());
    BOOST_TEST(entries.front()["object"]["defaultRateLimit"] == (json{{"limit", 2}, {"window_seconds", 60}}));
}

BOOST_FIXTURE_TEST_CASE(keys_of_a_deleted_workspace_lose_its_default, RateLimitFixture) {
    const json k = create_key(ws);
    put_settings({{"defaultRateLimit", {{"limit", 2}, {"window_seconds", 60}}}});
    BOOST_TEST(same(published_limit(k), 2, 60));
    BOOST_TEST(call("DELETE", W).status == 200u);
    const auto record = snapshot_key(k["key"].get<std::string>());
    BOOST_REQUIRE(record);
    BOOST_TEST((record->status == snapshot::KeyStatus::revoked));
    BOOST_TEST(!record->rate_limit);
}

BOOST_AUTO_TEST_SUITE_END()
