// The admin API handler end to end over a real store and snapshot: every route, every
// error code, and what the snapshot holds after each mutation.
#include "../daemon/time_format.h"
#include "daemon_fixture.h"
#include "key_format.h"

#include <boost/test/unit_test.hpp>

#include <filesystem>

using namespace apikeyd;
using apikey::test::DaemonFixture;
using apikey::test::kAdminToken;
using nlohmann::json;
namespace snapshot = apikey::snapshot;

namespace {

const std::string kMissing = "00000000-0000-4000-8000-000000000000";

std::string header(const Response &r, const std::string &name) {
    for (const auto &[n, v] : r.headers)
        if (n == name) return v;
    return "";
}

// Checks the error body shape and returns its code.
std::string error_code(const Response &r) {
    const json body = json::parse(r.body);
    BOOST_REQUIRE(body.is_object());
    BOOST_REQUIRE(body.contains("error"));
    BOOST_REQUIRE(body["error"]["message"].is_string());
    BOOST_TEST(!body["error"]["message"].get<std::string>().empty());
    return body["error"]["code"].get<std::string>();
}

bool is_iso_utc(const json &v) {
    if (!v.is_string()) return false;
    const std::string s = v.get<std::string>();
    return s.size() == 20 && s[4] == '-' && s[10] == 'T' && s.back() == 'Z' &&
           parse_iso8601(s).has_value();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_api)

// --- admin authentication --------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(admin_token_is_required_everywhere, DaemonFixture) {
    const std::optional<std::string> bad_auth[] = {
        std::nullopt,                                  // no header
        std::string("Bearer not-the-token"),
        std::string("Basic ") + kAdminToken,           // wrong scheme
        std::string("Bearer ") + kAdminToken + " x",   // two tokens
        std::string("Bearer"),
        std::string(""),
        std::string("bearer ") + kAdminToken + "x",
    };
    for (const auto &auth : bad_auth) {
        for (const char *target : {"/api/v1/workspaces", "/nowhere", "/api/v1/workspaces/x"}) {
            const Response r = call("GET", target, {}, auth);
            BOOST_TEST_INFO(target << " with " << auth.value_or("<none>"));
            BOOST_TEST(r.status == 401u);
            BOOST_TEST(error_code(r) == "unauthorized");
            BOOST_TEST(header(r, "WWW-Authenticate").rfind("Bearer", 0) == 0u);
            BOOST_TEST(r.actor.empty());
            if (auth) BOOST_TEST(r.body.find(kAdminToken) == std::string::npos);
        }
    }
    // Nothing happens without a token.
    const Response r = call("POST", "/api/v1/workspaces",
                            R"({"org":"evil","slug":"ws","name":"x"})", std::nullopt);
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces")).empty());
    BOOST_TEST(store->generation() == 1u);
}

BOOST_FIXTURE_TEST_CASE(scheme_is_case_insensitive_and_each_token_is_its_actor, DaemonFixture) {
    Response r = call("GET", "/api/v1/workspaces", {}, std::string("bearer ") + kAdminToken);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.actor == "ops");
    r = call("POST", "/api/v1/workspaces", R"({"org":"acme","slug":"ci","name":"CI"})",
             std::string("Bearer second-token-abcdefgh"));
    BOOST_REQUIRE_EQUAL(r.status, 201u);
    BOOST_TEST(r.actor == "ci-bot");
    const std::string id = json_of(r)["id"];
    r = call("POST", "/api/v1/workspaces/" + id + "/api-keys", R"({"name":"k"})",
             std::string("Bearer second-token-abcdefgh"));
    BOOST_TEST(json_of(r)["created_by"] == "ci-bot");
}

// --- workspaces --------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(workspace_lifecycle, DaemonFixture) {
    Response r = call("POST", "/api/v1/workspaces", R"({"org":"acme-corp","slug":"sales","name":"Sales"})");
    BOOST_REQUIRE_EQUAL(r.status, 201u);
    const json ws = json_of(r);
    const std::string id = ws["id"];
    BOOST_TEST(apikey::parse_uuid(id).has_value());
    BOOST_TEST(ws["org"] == "acme-corp");
    BOOST_TEST(ws["slug"] == "sales");
    BOOST_TEST(ws["name"] == "Sales");
    BOOST_TEST(ws["created_at"] == "2027-01-15T08:00:00Z");
    BOOST_TEST(is_iso_utc(ws["updated_at"]));
    BOOST_TEST(ws.size() == 6u);
    BOOST_TEST(header(r, "Location") == "/api/v1/workspaces/" + id);
    BOOST_TEST(r.body.rfind("{\"id\":", 0) == 0u);  // documented field order, compact

    // Published at once.
    const auto rec = snapshot_workspace("acme-corp/sales");
    BOOST_REQUIRE(rec);
    BOOST_TEST(apikey::to_string(rec->id) == id);
    BOOST_TEST(snapshot_generation() == store->generation());

    const json other = create_workspace("acme-corp", "inventory");
    r = call("GET", "/api/v1/workspaces");
    BOOST_TEST(r.status == 200u);
    const json list = json_of(r);
    BOOST_REQUIRE(list.is_array());
    BOOST_REQUIRE_EQUAL(list.size(), 2u);
    BOOST_TEST(list[0]["id"] == id);  // creation order
    BOOST_TEST(list[1]["id"] == other["id"]);

    r = call("GET", "/api/v1/workspaces/" + id);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r) == ws);
    r = call("HEAD", "/api/v1/workspaces/" + id);  // HEAD answers like GET
    BOOST_TEST(r.status == 200u);

    r = call("POST", "/api/v1/workspaces", R"({"org":"acme-corp","slug":"sales","name":"Again"})");
    BOOST_TEST(r.status == 409u);
    BOOST_TEST(error_code(r) == "conflict");
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces")).size() == 2u);

    r = call("DELETE", "/api/v1/workspaces/" + id);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r) == (json{{"status", "deleted"}}));
    BOOST_TEST(call("GET", "/api/v1/workspaces/" + id).status == 404u);
    BOOST_TEST(call("DELETE", "/api/v1/workspaces/" + id).status == 404u);
    BOOST_TEST(!snapshot_workspace("acme-corp/sales"));

    const json again = create_workspace("acme-corp", "sales");  // org/slug freed
    BOOST_TEST(again["id"] != id);
    BOOST_TEST(apikey::to_string(snapshot_workspace("acme-corp/sales")->id) == again["id"]);
}

BOOST_FIXTURE_TEST_CASE(routes_not_found_and_methods_not_allowed, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string key = create_key(ws)["id"];
    const struct {
        const char *method;
        std::string target;
        unsigned status;
        const char *allow;
    } cases[] = {
        {"GET", "/", 404, ""},
        {"GET", "/api/v1/no-such-collection", 404, ""},
        {"GET", "/api/v1/workspaces/", 404, ""},  // no trailing slash
        {"GET", "/api/v2/workspaces", 404, ""},
        {"GET", "/api/v1/workspaces/" + kMissing, 404, ""},
        {"GET", "/api/v1/workspaces/not-a-uuid", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/other", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/api-keys/", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/api-keys/nope", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/api-keys/" + key + "/x", 404, ""},
        {"GET", "/api/v1/workspaces/" + kMissing + "/api-keys", 404, ""},
        {"GET", "/api/v1/workspaces/" + kMissing + "/api-keys/" + key, 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/api-keys/" + kMissing, 404, ""},
        {"PATCH", "/api/v1/workspaces", 405, "GET, HEAD, POST"},
        {"DELETE", "/api/v1/workspaces", 405, "GET, HEAD, POST"},
        {"PUT", "/api/v1/workspaces/" + ws, 405, "GET, HEAD, DELETE"},
        {"POST", "/api/v1/workspaces/" + ws, 405, "GET, HEAD, DELETE"},
        {"DELETE", "/api/v1/workspaces/" + ws + "/api-keys", 405, "GET, HEAD, POST"},
        {"PUT", "/api/v1/workspaces/" + ws + "/api-keys/" + key, 405, "GET, HEAD, DELETE, PATCH"},
        {"OPTIONS", "/api/v1/workspaces", 405, "GET, HEAD, POST"},
        {"GET", "/api/v1/workspaces?limit=5", 400, ""},  // refused, not ignored: below
    };
    for (const auto &c : cases) {
        const Response r = call(c.method, c.target, "{}");
        BOOST_TEST_INFO(c.method << " " << c.target << " -> " << r.body);
        BOOST_TEST(r.status == c.status);
        if (c.status == 404) BOOST_TEST(error_code(r) == "not_found");
        if (c.status == 405) {
            BOOST_TEST(error_code(r) == "method_not_allowed");
            BOOST_TEST(header(r, "Allow") == c.allow);
        }
    }
}

// A parameter a route would ignore is refused before it does anything: DELETE
// ?dry_run=true used to really delete, ?limit=1 on a list used to return everything.
BOOST_FIXTURE_TEST_CASE(query_parameters_a_route_does_not_take_are_refused_first, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string key = create_key(ws)["id"];
    const std::string W = "/api/v1/workspaces/" + ws;
    const std::uint64_t generation = store->generation();
    const struct {
        const char *method;
        std::string target;
        const char *body;
        const char *named;  // in the message, "" when the name is not echoed
    } cases[] = {
        {"DELETE", W + "?dry_run=true", "", "dry_run"},
        {"GET", W + "?x=1", "", "x"},
        {"HEAD", W + "?x", "", "x"},
        {"GET", "/api/v1/workspaces?limit=1", "", "limit"},
        {"POST", "/api/v1/workspaces?dry_run=1", R"({"org":"acme","slug":"b","name":"B"})", "dry_run"},
        {"POST", W + "/api-keys?permission=read_only", R"({"name":"k"})", "permission"},
        {"POST", W + "/api-keys/import?dry_run=1",
         R"({"key_sha256":"0000000000000000000000000000000000000000000000000000000000000001","key_prefix":"sk_live_AbC1","name":"i"})",
         "dry_run"},
        {"GET", W + "/api-keys/" + key + "?fields=name", "", "fields"},
        {"DELETE", W + "/api-keys/" + key + "?dry_run=true", "", "dry_run"},
        {"PATCH", W + "/api-keys/" + key + "?force=1", R"({"name":"n"})", "force"},
        {"GET", W + "/settings?effective=0", "", "effective"},
        {"PUT", W + "/settings?merge=1", R"({"maxExpandDepth":5})", "merge"},
        {"PUT", W + "/entities/orders/settings?merge=1", R"({"publicAccess":"READ_ONLY"})", "merge"},
        {"GET", W + "/entities/orders/settings?a=1&b=2", "", "a"},
        {"GET", "/metrics?name[]=x", "", ""},
        {"GET", W + "?a.b=1", "", ""},  // not a parameter name: not echoed
        {"GET", W + "?=1", "", ""},
    };
    for (const auto &c : cases) {
        const Response r = call(c.method, c.target, c.body);
        BOOST_TEST_INFO(c.method << " " << c.target << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == "unknown_field");
        const std::string message = json_of(r)["error"]["message"];
        BOOST_TEST(message.find("this route takes no query parameters") != std::string::npos);
        if (*c.named) BOOST_TEST(message.find("\"" + std::string(c.named) + "\"") != std::string::npos);
        if (!*c.named) BOOST_TEST(message.find("\"") == std::string::npos);
    }
    // Nothing happened: the workspace and its key are as they were, no generation spent.
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(call("GET", W).status == 200u);
    const json k = json_of(call("GET", W + "/api-keys/" + key));
    BOOST_TEST(k["status"] == "active");
    BOOST_TEST(k["name"] == "k");
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces")).size() == 1u);
    // An empty query (a bare "?", stray "&") holds no parameter; method and route errors
    // come first.
    BOOST_TEST(call("GET", W + "?").status == 200u);
    BOOST_TEST(call("GET", "/api/v1/workspaces?&").status == 200u);
    BOOST_TEST(call("PUT", W + "?x=1").status == 405u);
    BOOST_TEST(call("GET", "/api/v1/nope?x=1").status == 404u);
    BOOST_TEST(call("GET", "/api/v1/workspaces?x=1", {}, std::nullopt).status == 401u);
    // /healthz, for probes, ignores a query (a cache buster) as before.
    BOOST_TEST(call("GET", "/healthz?probe=1", {}, std::nullopt).status == 200u);
    // A key pasted as a parameter or member name is named by its prefix only.
    const std::string pasted = apikey::generate_key();
    for (const Response &r : {call("GET", W + "?" + pasted + "=1"),
                              call("POST", "/api/v1/workspaces",
                                   R"({"org":"acme","slug":"c","name":"C",")" + pasted + R"(":1})")}) {
        BOOST_TEST_INFO(r.body);
        BOOST_TEST(error_code(r) == "unknown_field");
        BOOST_TEST(r.body.find(pasted) == std::string::npos);
        BOOST_TEST(r.body.find(pasted.substr(0, 12) + "...") != std::string::npos);
    }
}

namespace {

// The URL of a Link: <URL>; rel="next" header, "" when there is none.
std::string next_link(const Response &r) {
    const std::string link = header(r, "Link");
    if (link.empty()) return "";
    BOOST_TEST(link.front() == '<');
    BOOST_TEST(link.find(">; rel=\"next\"") != std::string::npos);
    return link.substr(1, link.find('>') - 1);
}

}  // namespace

// A workspace's key list used to come in one response, whatever its size (84 MB and
// 2.6 s at 250,000 keys, holding every other admin request). It pages now: still a plain
// array, at most `limit` keys (default 1000), a Link header to the next page.
BOOST_FIXTURE_TEST_CASE(the_key_list_pages_with_a_link_to_the_next_page, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string K = "/api/v1/workspaces/" + ws + "/api-keys";
    std::vector<std::string> created;
    for (int i = 0; i < 3; ++i) created.push_back(create_key(ws)["id"]);
    std::string body;  // 1,000 imported keys: one seq, listed by their index
    for (int i = 0; i < 1000; ++i)
        body += json{{"key_sha256", apikey::to_hex(apikey::sha256(apikey::generate_key()))},
                     {"key_prefix", "sk_live_AbC1"}, {"name", "i" + std::to_string(i)}}.dump() + "\n";
    Response r = call("POST", K + "/import", body);
    BOOST_REQUIRE_EQUAL(r.status, 201u);
    const json imported = json_of(r);
    for (const auto &k : imported["keys"]) created.push_back(k["id"]);
    for (int i = 0; i < 2; ++i) created.push_back(create_key(ws)["id"]);

    // No query: the first 1,000, and a link to the rest.
    r = call("GET", K);
    BOOST_REQUIRE_EQUAL(r.status, 200u);
    BOOST_TEST(json_of(r).is_array());
    BOOST_TEST(json_of(r).size() == 1000u);
    const std::string next = next_link(r);
    BOOST_TEST(next.rfind(K + "?after=", 0) == 0);
    BOOST_TEST(next.find("&limit=1000") != std::string::npos);
    r = call("GET", next);
    BOOST_REQUIRE_EQUAL(r.status, 200u);
    BOOST_TEST(json_of(r).size() == 5u);
    BOOST_TEST(next_link(r).empty());  // the last page

    // Small pages, across the import's indexed entries and plain ones: every key once,
    // in creation order, and a key created meanwhile comes on a later page.
    std::vector<std::string> listed;
    std::string target = K + "?limit=7";
    int pages = 0;
    while (!target.empty() && pages < 1000) {
        r = call("GET", target);
        BOOST_REQUIRE_EQUAL(r.status, 200u);
        BOOST_TEST(json_of(r).size() <= 7u);
        const json page = json_of(r);
        for (const auto &k : page) listed.push_back(k["id"]);
        target = next_link(r);
        if (++pages == 3) created.push_back(create_key(ws)["id"]);
    }
    BOOST_TEST(listed == created);
    BOOST_TEST(pages == static_cast<int>((created.size() + 6) / 7));
    BOOST_TEST(json_of(call("GET", K + "?limit=10000")).size() == created.size());
    BOOST_TEST(header(call("GET", K + "?limit=10000"), "Link").empty());
    BOOST_TEST(json_of(call("GET", K + "?limit=" + std::to_string(created.size() - 1) + "&after=0")).size() ==
               created.size() - 1);
    BOOST_TEST(json_of(call("GET", K + "?after=18446744073709551615")).empty());
    BOOST_TEST(call("HEAD", K + "?limit=1").status == 200u);

    const struct {
        const char *query;
        const char *code;
        const char *named;
    } bad[] = {
        {"limit=0", "invalid_field", "limit"},
        {"limit=10001", "invalid_field", "limit"},
        {"limit=-1", "invalid_field", "limit"},
        {"limit=", "invalid_field", "limit"},
        {"limit=1&limit=2", "invalid_field", "limit"},
        {"after=abc", "invalid_field", "after"},
        {"after=", "invalid_field", "after"},
        {"after=1.", "invalid_field", "after"},
        {"after=.1", "invalid_field", "after"},
        {"after=1.2.3", "invalid_field", "after"},
        {"after=1.4294967296", "invalid_field", "after"},
        {"after=18446744073709551616", "invalid_field", "after"},
        {"after=1&after=2", "invalid_field", "after"},
        {"offset=5", "unknown_field", "offset"},
        {"page=2&limit=5", "unknown_field", "page"},
    };
    for (const auto &c : bad) {
        r = call("GET", K + "?" + c.query);
        BOOST_TEST_INFO(c.query << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == c.code);
        BOOST_TEST(json_of(r)["error"]["message"].get<std::string>().find(c.named) != std::string::npos);
    }
    BOOST_TEST(json_of(call("GET", K + "?offset=5"))["error"]["message"].get<std::string>().find(
                   "takes after and limit") != std::string::npos);
    // Creating a key takes no query.
    const std::uint64_t generation = store->generation();
    r = call("POST", K + "?limit=1", R"({"name":"x"})");
    BOOST_TEST(r.status == 400u);
    BOOST_TEST(error_code(r) == "unknown_field");
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(call("GET", "/api/v1/workspaces/" + kMissing + "/api-keys?limit=1").status == 404u);
}

// Found by fuzz/fuzz_api_create_key: a number JSON allows but a double cannot hold
// (1e380) made nlohmann throw out_of_range, not parse_error, and every body route
// answered 500 internal_error. It is a client error: 400 invalid_json, nothing changed.
BOOST_FIXTURE_TEST_CASE(numbers_out_of_range_are_invalid_json_on_every_body_route, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"].get<std::string>();
    const std::string key = create_key(ws)["id"].get<std::string>();
    const std::uint64_t generation = store->generation();
    const struct {
        const char *method;
        std::string target;
        std::string body;
    } cases[] = {
        {"POST", "/api/v1/workspaces", R"({"org":"a","slug":"b","name":"c","x":1e380})"},
        {"POST", "/api/v1/workspaces/" + ws + "/api-keys",
         R"({"name":"k","rate_limit":{"limit":1e380,"window_seconds":60}})"},
        {"POST", "/api/v1/workspaces/" + ws + "/api-keys", R"({"name":"k","rate_limit":{"limit":-1e400)"},
        {"PATCH", "/api/v1/workspaces/" + ws + "/api-keys/" + key, R"({"rate_limit":{"limit":1E+999}})"},
        {"PUT", "/api/v1/workspaces/" + ws + "/settings", R"({"maxExpandDepth":1e309})"},
        {"PUT", "/api/v1/workspaces/" + ws + "/entities/Person/settings", R"({"maxExpandDepth":-1e309})"},
    };
    for (const auto &c : cases) {
        const Response r = call(c.method, c.target, c.body);
        BOOST_TEST_INFO(c.method << " " << c.target << " " << c.body << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == "invalid_json");
    }
    BOOST_TEST(store->generation() == generation);
}

// nlohmann keeps the last of two members of the same name: {"permission":"read_only",
// "permission":"read_write"} made a read_write key. Any duplicate, at any depth and
// however escaped, is 400 invalid_json naming it, on every body route; nothing changes.
BOOST_FIXTURE_TEST_CASE(duplicate_member_names_are_invalid_json_on_every_body_route, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"].get<std::string>();
    const std::string key = create_key(ws)["id"].get<std::string>();
    const std::string W = "/api/v1/workspaces/" + ws;
    const std::uint64_t generation = store->generation();
    const struct {
        const char *method;
        std::string target;
        std::string body;
        const char *named;
    } cases[] = {
        {"POST", W + "/api-keys", R"({"name":"x","permission":"read_only","permission":"read_write"})", "permission"},
        {"POST", W + "/api-keys", R"({"name":"x","permission":"read_write","permission":"read_write"})", "permission"},
        {"POST", W + "/api-keys", R"({"name":"x","na\u006de":"y"})", "name"},  // an escape is the same name
        {"POST", W + "/api-keys", R"({"name":"x","rate_limit":{"limit":5,"limit":500,"window_seconds":60}})", "limit"},
        {"POST", "/api/v1/workspaces", R"({"org":"acme","slug":"b","slug":"c","name":"B"})", "slug"},
        {"PATCH", W + "/api-keys/" + key, R"({"name":"a","name":"b"})", "name"},
        {"PATCH", W + "/api-keys/" + key, R"({"rate_limit":{"window_seconds":60,"limit":1,"window_seconds":1}})", "window_seconds"},
        {"PUT", W + "/settings", R"({"maxExpandDepth":2,"maxExpandDepth":9})", "maxExpandDepth"},
        {"PUT", W + "/settings", R"({"defaultRateLimit":{"limit":1,"window_seconds":60},"defaultRateLimit":null})", "defaultRateLimit"},
        {"PUT", W + "/entities/orders/settings",
         R"({"columns":{"ssn":{"apiVisible":false,"apiVisible":true}}})", "apiVisible"},
        {"PUT", W + "/entities/orders/settings", R"({"columns":{"ssn":{"apiVisible":false},"ssn":{}}})", "ssn"},
        {"PUT", W + "/entities/orders/settings", R"({"publicAccess":"NONE","publicAccess":"READ_WRITE"})", "publicAccess"},
        // Deep inside an array, in an unknown field: still refused as a duplicate first.
        {"PUT", W + "/entities/orders/settings", R"({"x":[[{"a":1,"b":{"c":1,"c":2}}]]})", "c"},
    };
    for (const auto &c : cases) {
        const Response r = call(c.method, c.target, c.body);
        BOOST_TEST_INFO(c.method << " " << c.target << " " << c.body << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == "invalid_json");
        BOOST_TEST(json_of(r)["error"]["message"].get<std::string>().find(
                       "\"" + std::string(c.named) + "\" appears more than once") != std::string::npos);
    }
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(json_of(call("GET", W + "/api-keys")).size() == 1u);

    // An import line with one is an invalid_json line; the batch stores nothing.
    const std::string hash(64, 'a');
    const Response r = call("POST", W + "/api-keys/import",
                            R"({"key_sha256":")" + hash + R"(","key_prefix":"sk_live_AbC1","name":"i"})" "\n" +
                                R"({"key_sha256":")" + std::string(64, 'b') +
                                R"(","key_prefix":"sk_live_AbC1","name":"i","permission":"read_only","permission":"read_write"})");
    BOOST_TEST_INFO(r.body);
    BOOST_TEST(r.status == 400u);
    const json body = json_of(r);
    BOOST_TEST(body["error"]["code"] == "import_rejected");
    BOOST_REQUIRE_EQUAL(body["errors"].size(), 1u);
    BOOST_TEST(body["errors"][0]["line"] == 2);
    BOOST_TEST(body["errors"][0]["code"] == "invalid_json");
    BOOST_TEST(body["errors"][0]["message"].get<std::string>().find("\"permission\" appears more than once") !=
               std::string::npos);
    BOOST_TEST(store->generation() == generation);

    // The same names in different objects are not duplicates.
    BOOST_TEST(call("POST", W + "/api-keys",
                    R"({"name":"x","rate_limit":{"limit":5,"window_seconds":60}})").status == 201u);
    BOOST_TEST(call("PUT", W + "/entities/orders/settings",
                    R"({"columns":{"a":{"apiVisible":false},"b":{"apiVisible":false}}})").status == 200u);
}

// "  " was accepted as a name where "" was refused: a name of ASCII whitespace only is
// refused on every route that takes one, with exactly the empty name's error.
BOOST_FIXTURE_TEST_CASE(blank_names_are_refused_like_empty_ones, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"].get<std::string>();
    const std::string key = create_key(ws)["id"].get<std::string>();
    const std::string W = "/api/v1/workspaces/" + ws;
    const std::uint64_t generation = store->generation();
    const auto body_with = [](const std::string &target, const json &name) {
        if (target == "/api/v1/workspaces") return json{{"org", "acme"}, {"slug", "b"}, {"name", name}}.dump();
        return json{{"name", name}}.dump();
    };
    const std::pair<const char *, std::string> routes[] = {
        {"POST", "/api/v1/workspaces"}, {"POST", W + "/api-keys"}, {"PATCH", W + "/api-keys/" + key}};
    for (const auto &[method, target] : routes) {
        const Response empty = call(method, target, body_with(target, ""));
        BOOST_TEST_INFO(method << " " << target << " \"\" -> " << empty.body);
        BOOST_REQUIRE_EQUAL(empty.status, 400u);
        BOOST_TEST(error_code(empty) == "invalid_field");
        for (const char *blank : {" ", "   ", "\t", " \r\n ", "\v\f"}) {
            const Response r = call(method, target, body_with(target, blank));
            BOOST_TEST_INFO(method << " " << target << " " << json(blank).dump() << " -> " << r.body);
            BOOST_TEST(r.status == 400u);
            BOOST_TEST(r.body == empty.body);
        }
    }
    // An import line: the same error, listed for its line.
    const Response r = call("POST", W + "/api-keys/import",
                            json{{"key_sha256", std::string(64, 'c')}, {"key_prefix", "sk_live_AbC1"}, {"name", "  "}}.dump());
    BOOST_TEST(r.status == 400u);
    BOOST_REQUIRE_EQUAL(json_of(r)["errors"].size(), 1u);
    BOOST_TEST(json_of(r)["errors"][0]["code"] == "invalid_field");
    BOOST_TEST(json_of(r)["errors"][0]["message"] == "field \"name\" must not be empty");
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(json_of(call("GET", W + "/api-keys/" + key))["name"] == "k");

    // Whitespace around other characters is kept as given; a non-ASCII space is a character.
    BOOST_TEST(create_key(ws, {{"name", " ci "}})["name"] == " ci ");
    BOOST_TEST(create_key(ws, {{"name", "\u00a0"}})["name"] == "\u00a0");
}

BOOST_FIXTURE_TEST_CASE(workspace_body_validation, DaemonFixture) {
    const struct {
        const char *what;
        std::string body;
        const char *code;
        const char *field;  // named in the message
    } cases[] = {
        {"empty body", "", "invalid_json", ""},
        {"truncated", R"({"org":"a",)", "invalid_json", ""},
        {"garbage", "not json at all", "invalid_json", ""},
        {"array", R"(["org","slug"])", "invalid_json", ""},
        {"string", R"("x")", "invalid_json", ""},
        {"null", "null", "invalid_json", ""},
        {"deep nesting", std::string(5000, '[') + std::string(5000, ']'), "invalid_json", ""},
        {"invalid UTF-8", "{\"org\":\"a\xff\",\"slug\":\"b\",\"name\":\"c\"}", "invalid_json", ""},
        {"unknown field", R"({"org":"acme","slug":"x","name":"X","colour":"red"})", "unknown_field", "colour"},
        {"id is not settable", R"({"id":"x","org":"acme","slug":"x","name":"X"})", "unknown_field", "id"},
        {"missing org", R"({"slug":"x","name":"X"})", "missing_field", "org"},
        {"missing slug", R"({"org":"acme","name":"X"})", "missing_field", "slug"},
        {"missing name", R"({"org":"acme","slug":"x"})", "missing_field", "name"},
        {"slug number", R"({"org":"acme","slug":5,"name":"X"})", "invalid_field", "slug"},
        {"org null", R"({"org":null,"slug":"x","name":"X"})", "invalid_field", "org"},
        {"name object", R"({"org":"acme","slug":"x","name":{}})", "invalid_field", "name"},
        {"org with slash", R"({"org":"acme/corp","slug":"x","name":"X"})", "invalid_field", "org"},
        {"org uppercase", R"({"org":"Acme","slug":"x","name":"X"})", "invalid_field", "org"},
        {"slug leading dash", R"({"org":"acme","slug":"-x","name":"X"})", "invalid_field", "slug"},
        {"slug trailing dash", R"({"org":"acme","slug":"x-","name":"X"})", "invalid_field", "slug"},
        {"slug empty", R"({"org":"acme","slug":"","name":"X"})", "invalid_field", "slug"},
        {"slug 64 chars", R"({"org":"acme","slug":")" + std::string(64, 'a') + R"(","name":"X"})",
         "invalid_field", "slug"},
        {"slug with space", R"({"org":"acme","slug":"a b","name":"X"})", "invalid_field", "slug"},
        {"name empty", R"({"org":"acme","slug":"x","name":""})", "invalid_field", "name"},
        {"name 201 chars", R"({"org":"acme","slug":"x","name":")" + std::string(201, 'n') + R"("})",
         "invalid_field", "name"},
        {"name with newline", R"({"org":"acme","slug":"x","name":"a\nb"})", "invalid_field", "name"},
    };
    for (const auto &c : cases) {
        const Response r = call("POST", "/api/v1/workspaces", c.body);
        BOOST_TEST_INFO(c.what << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == c.code);
        BOOST_TEST(json_of(r)["error"]["message"].get<std::string>().find(c.field) != std::string::npos);
    }
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces")).empty());
    BOOST_TEST(store->generation() == 1u);

    // Limits that are fine.
    const json ok = json{{"org", std::string(63, 'a')}, {"slug", "0-9"}, {"name", std::string(200, 'x')}};
    BOOST_TEST(call("POST", "/api/v1/workspaces", ok.dump()).status == 201u);
    const json utf8 = json{{"org", "acme"}, {"slug", "u"}, {"name", "Ventes \xc3\xa9t\xc3\xa9 \xe2\x82\xac"}};
    const Response r = call("POST", "/api/v1/workspaces", utf8.dump());
    BOOST_TEST(r.status == 201u);
    BOOST_TEST(json_of(r)["name"] == utf8["name"]);
}

// --- keys ------------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(key_lifecycle_and_snapshot, DaemonFixture) {
    const json ws = create_workspace("acme-corp", "sales");
    const std::string ws_id = ws["id"];
    const std::string keys = "/api/v1/workspaces/" + ws_id + "/api-keys";

    Response r = call("POST", keys, R"({"name":"reporting"})");
    BOOST_REQUIRE_EQUAL(r.status, 201u);
    const json created = json_of(r);
    const std::string raw = created["key"];
    BOOST_TEST(apikey::is_well_formed_key(raw));
    BOOST_TEST(created["key_prefix"] == raw.substr(0, 12));
    BOOST_TEST(created["workspace_id"] == ws_id);
    BOOST_TEST(created["name"] == "reporting");
    BOOST_TEST(created["permission"] == "read_only");  // least privilege by default
    BOOST_TEST(created["status"] == "active");
    BOOST_TEST(created["expires_at"].is_null());
    BOOST_TEST(created["last_used_at"].is_null());
    BOOST_TEST(created["rate_limit"].is_null());
    BOOST_TEST(created["created_by"] == "ops");
    BOOST_TEST(created["created_at"] == "2027-01-15T08:00:00Z");
    BOOST_TEST(created["updated_at"] == "2027-01-15T08:00:00Z");
    BOOST_TEST(created.size() == 13u);
    for (const char *secret_field : {"key_sha256", "hash", "secret"})
        BOOST_TEST(!created.contains(secret_field));
    const std::string key_id = created["id"];
    BOOST_TEST(header(r, "Location") == keys + "/" + key_id);

    // In the snapshot under SHA-256(raw key), with the decision's fields.
    auto rec = snapshot_key(raw);
    BOOST_REQUIRE(rec);
    BOOST_TEST(apikey::to_string(rec->id) == key_id);
    BOOST_TEST(apikey::to_string(rec->workspace_id) == ws_id);
    BOOST_TEST((rec->permission == Permission::read_only));
    BOOST_TEST((rec->status == KeyStatus::active));
    BOOST_TEST(!rec->expires_at.has_value());
    BOOST_TEST(std::string(rec->prefix.data(), 12) == raw.substr(0, 12));

    // The raw key and its hash appear nowhere else.
    const std::string hash_hex = apikey::to_hex(apikey::sha256(raw));
    const json rw = create_key(ws_id, {{"name", "ci"}, {"permission", "read_write"},
                                       {"expires_at", "2030-06-01T12:00:00.250+02:00"}});
    BOOST_TEST(rw["permission"] == "read_write");
    BOOST_TEST(rw["expires_at"] == "2030-06-01T10:00:00Z");
    BOOST_TEST(rw["key"] != raw);
    BOOST_TEST((snapshot_key(rw["key"])->permission == Permission::read_write));
    BOOST_TEST(*snapshot_key(rw["key"])->expires_at == *parse_iso8601("2030-06-01T10:00:00Z"));

    r = call("GET", keys);
    BOOST_TEST(r.status == 200u);
    const json list = json_of(r);
    BOOST_REQUIRE_EQUAL(list.size(), 2u);
    BOOST_TEST(list[0]["id"] == key_id);  // creation order
    BOOST_TEST(list[1]["id"] == rw["id"]);
    for (const auto &k : list) {
        BOOST_TEST(!k.contains("key"));
        BOOST_TEST(!k.contains("key_sha256"));
        BOOST_TEST(k.size() == 12u);
    }
    BOOST_TEST(r.body.find(raw) == std::string::npos);
    BOOST_TEST(r.body.find(rw["key"].get<std::string>()) == std::string::npos);
    BOOST_TEST(r.body.find(hash_hex) == std::string::npos);

    r = call("GET", keys + "/" + key_id);
    BOOST_TEST(r.status == 200u);
    json got = json_of(r);
    BOOST_TEST(!got.contains("key"));
    BOOST_TEST(r.body.find(raw) == std::string::npos);
    json expected = created;
    expected.erase("key");
    BOOST_TEST(got == expected);

    // Revoke: once, idempotently, published at once.
    now += 60;
    r = call("DELETE", keys + "/" + key_id);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r) == (json{{"status", "revoked"}}));
    BOOST_TEST((snapshot_key(raw)->status == KeyStatus::revoked));
    BOOST_TEST((snapshot_key(rw["key"])->status == KeyStatus::active));  // others unaffected
    got = json_of(call("GET", keys + "/" + key_id));
    BOOST_TEST(got["status"] == "revoked");
    BOOST_TEST(got["updated_at"] == "2027-01-15T08:01:00Z");
    const auto generation = store->generation();
    now += 60;
    r = call("DELETE", keys + "/" + key_id);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r) == (json{{"status", "revoked"}}));
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(json_of(call("GET", keys + "/" + key_id))["updated_at"] == "2027-01-15T08:01:00Z");
    BOOST_TEST(call("DELETE", keys + "/" + kMissing).status == 404u);
}

BOOST_FIXTURE_TEST_CASE(keys_are_scoped_to_their_workspace, DaemonFixture) {
    const std::string sales = create_workspace("acme-corp", "sales")["id"];
    const std::string inventory = create_workspace("acme-corp", "inventory")["id"];
    const json key = create_key(sales);
    const std::string wrong = "/api/v1/workspaces/" + inventory + "/api-keys/" + key["id"].get<std::string>();
    Response r = call("GET", wrong);
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(error_code(r) == "not_found");
    r = call("DELETE", wrong);
    BOOST_TEST(r.status == 404u);
    BOOST_TEST((snapshot_key(key["key"])->status == KeyStatus::active));
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + inventory + "/api-keys")).empty());
    r = call("POST", "/api/v1/workspaces/" + kMissing + "/api-keys", R"({"name":"x"})");
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(error_code(r) == "not_found");
}

BOOST_FIXTURE_TEST_CASE(key_body_validation, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string keys = "/api/v1/workspaces/" + ws + "/api-keys";
    const auto generation = store->generation();
    const struct {
        const char *what;
        std::string body;
        const char *code;
        const char *field;
    } cases[] = {
        {"bad JSON", "{", "invalid_json", ""},
        {"array", "[]", "invalid_json", ""},
        {"no name", R"({"permission":"read_only"})", "missing_field", "name"},
        {"name number", R"({"name":1})", "invalid_field", "name"},
        {"name empty", R"({"name":""})", "invalid_field", "name"},
        {"unknown permission", R"({"name":"x","permission":"admin"})", "invalid_field", "permission"},
        {"permission uppercase", R"({"name":"x","permission":"READ_ONLY"})", "invalid_field", "permission"},
        {"permission null", R"({"name":"x","permission":null})", "invalid_field", "permission"},
        {"permission number", R"({"name":"x","permission":2})", "invalid_field", "permission"},
        {"expires_at in the past", R"({"name":"x","expires_at":"2020-01-01T00:00:00Z"})", "invalid_field", "expires_at"},
        {"expires_at now", R"({"name":"x","expires_at":"2027-01-15T08:00:00Z"})", "invalid_field", "expires_at"},
        {"expires_at unparsable", R"({"name":"x","expires_at":"next tuesday"})", "invalid_field", "expires_at"},
        {"expires_at without zone", R"({"name":"x","expires_at":"2030-01-01T00:00:00"})", "invalid_field", "expires_at"},
        {"expires_at number", R"({"name":"x","expires_at":1900000000})", "invalid_field", "expires_at"},
        // Past the last instant shown as is (9999-12-31T23:59:59Z): stored, it would show clamped.
        {"expires_at past 9999 by its offset", R"({"name":"x","expires_at":"9999-12-31T23:59:59-23:59"})", "invalid_field", "expires_at"},
        {"expires_at past 9999 by a minute", R"({"name":"x","expires_at":"9999-12-31T23:59:59-00:01"})", "invalid_field", "expires_at"},
        {"rate_limit unknown member", R"({"name":"x","rate_limit":{"requests":10}})", "unknown_field", "requests"},
        {"rate_limit not an object", R"({"name":"x","rate_limit":"10/s"})", "invalid_field", "rate_limit"},
        {"rate_limit zero", R"({"name":"x","rate_limit":{"limit":0,"window_seconds":60}})", "invalid_field", "rate_limit.limit"},
        {"rate_limit window too long", R"({"name":"x","rate_limit":{"limit":5,"window_seconds":86401}})", "invalid_field", "rate_limit.window_seconds"},
        {"rate_limit fraction", R"({"name":"x","rate_limit":{"limit":1.5,"window_seconds":60}})", "invalid_field", "rate_limit.limit"},
        {"rate_limit without window", R"({"name":"x","rate_limit":{"limit":5}})", "missing_field", "rate_limit.window_seconds"},
        {"client-chosen key", R"({"name":"x","key":"sk_live_x"})", "unknown_field", "key"},
        {"status not settable", R"({"name":"x","status":"revoked"})", "unknown_field", "status"},
    };
    for (const auto &c : cases) {
        const Response r = call("POST", keys, c.body);
        BOOST_TEST_INFO(c.what << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == c.code);
        BOOST_TEST(json_of(r)["error"]["message"].get<std::string>().find(c.field) != std::string::npos);
        BOOST_TEST(r.body.find("sk_live_x") == std::string::npos);  // values never echoed
    }
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(json_of(call("GET", keys)).empty());

    BOOST_TEST(call("POST", keys, R"({"name":"x","expires_at":null})").status == 201u);
    BOOST_TEST(call("POST", keys, R"({"name":"x","expires_at":"2027-01-15T08:00:01Z"})").status == 201u);
    // The last instant there is, however written, is stored and shown as that instant.
    for (const char *last : {"9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999+00:00"}) {
        const Response r = call("POST", keys, json{{"name", "x"}, {"expires_at", last}}.dump());
        BOOST_TEST_INFO(last << " -> " << r.body);
        BOOST_REQUIRE_EQUAL(r.status, 201u);
        BOOST_TEST(json_of(r)["expires_at"] == "9999-12-31T23:59:59Z");
        const std::string raw = json_of(r)["key"];
        BOOST_TEST(*snapshot_key(raw)->expires_at == std::int64_t{253402300799});
    }
}

BOOST_FIXTURE_TEST_CASE(deleting_a_workspace_revokes_its_keys_everywhere, DaemonFixture) {
    const std::string ws = create_workspace("acme-corp", "temp")["id"];
    const json k1 = create_key(ws, {{"name", "a"}, {"permission", "read_write"}});
    const json k2 = create_key(ws, {{"name", "b"}});
    BOOST_TEST(call("DELETE", "/api/v1/workspaces/" + ws).status == 200u);
    BOOST_TEST(call("GET", "/api/v1/workspaces/" + ws + "/api-keys").status == 404u);
    BOOST_TEST(call("GET", "/api/v1/workspaces/" + ws + "/api-keys/" + k1["id"].get<std::string>()).status == 404u);
    BOOST_TEST(!snapshot_workspace("acme-corp/temp"));
    BOOST_TEST((snapshot_key(k1["key"])->status == KeyStatus::revoked));
    BOOST_TEST((snapshot_key(k2["key"])->status == KeyStatus::revoked));

    // A new workspace with the same org/slug does not revive them.
    const std::string ws2 = create_workspace("acme-corp", "temp")["id"];
    BOOST_TEST((snapshot_key(k1["key"])->status == KeyStatus::revoked));
    BOOST_TEST(apikey::to_string(snapshot_key(k1["key"])->workspace_id) == ws);
    BOOST_TEST(apikey::to_string(snapshot_workspace("acme-corp/temp")->id) == ws2);
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + ws2 + "/api-keys")).empty());
}

BOOST_FIXTURE_TEST_CASE(restart_keeps_everything, DaemonFixture) {
    const json ws = create_workspace("acme-corp", "sales");
    const std::string ws_id = ws["id"];
    const json active = create_key(ws_id, {{"name", "a"}, {"permission", "read_write"}});
    const json revoked = create_key(ws_id, {{"name", "b"}});
    call("DELETE", "/api/v1/workspaces/" + ws_id + "/api-keys/" + revoked["id"].get<std::string>());
    const json before = json_of(call("GET", "/api/v1/workspaces/" + ws_id + "/api-keys"));

    reopen();
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + ws_id)) == ws);
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + ws_id + "/api-keys")) == before);
    BOOST_TEST((snapshot_key(active["key"])->status == KeyStatus::active));
    BOOST_TEST((snapshot_key(revoked["key"])->status == KeyStatus::revoked));

    // Deleted snapshot: rebuilt from the store at start.
    close();
    std::filesystem::remove_all(snapshot_dir());
    open();
    BOOST_TEST((snapshot_key(active["key"])->status == KeyStatus::active));
    BOOST_TEST((snapshot_key(revoked["key"])->status == KeyStatus::revoked));
    BOOST_TEST(snapshot_workspace("acme-corp/sales").has_value());
    const json k = create_key(ws_id);  // and mutations go on
    BOOST_TEST(snapshot_key(k["key"]).has_value());
    BOOST_TEST(snapshot_generation() == store->generation());
}

BOOST_FIXTURE_TEST_CASE(full_store_is_a_503_and_never_a_half_write, DaemonFixture) {
    close();
    store_map_size = 256u << 10;
    open();
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string long_name(200, 'n');
    int created = 0;
    Response r;
    for (int i = 0; i < 10000; ++i) {
        r = call("POST", "/api/v1/workspaces/" + ws + "/api-keys", json{{"name", long_name}}.dump());
        if (r.status != 201) break;
        ++created;
    }
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(error_code(r) == "store_unavailable");
    BOOST_TEST(created > 0);
    // Store, listing and snapshot agree on what was acknowledged.
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + ws + "/api-keys")).size() ==
               static_cast<std::size_t>(created));
    BOOST_TEST(store->generation() == static_cast<std::uint64_t>(created) + 2);
    BOOST_TEST(snapshot_generation() == store->generation());
    // Reads and revocations still work.
    BOOST_TEST(call("GET", "/api/v1/workspaces").status == 200u);
}

BOOST_FIXTURE_TEST_CASE(failed_publish_is_a_503_and_is_repaired, DaemonFixture) {
    close();
    snapshot_map_size = 256u << 10;
    open();
    const std::string ws = create_workspace("acme", "sales")["id"];
    Response r;
    std::vector<std::string> raw_keys;
    for (int i = 0; i < 20000; ++i) {
        r = call("POST", "/api/v1/workspaces/" + ws + "/api-keys", R"({"name":"k"})");
        if (r.status != 201) break;
        raw_keys.push_back(json_of(r)["key"]);
    }
    BOOST_REQUIRE_EQUAL(r.status, 503u);
    BOOST_TEST(error_code(r) == "publish_failed");
    BOOST_TEST(r.body.find("sk_live_") == std::string::npos);
    BOOST_TEST(publisher->published_generation() == 0u);
    const auto generation = store->generation();  // the change is stored...
    BOOST_TEST(snapshot_generation() == generation - 1);  // ...but not published

    // While the snapshot cannot be brought up to date, no further change is accepted.
    r = call("POST", "/api/v1/workspaces", R"({"org":"acme","slug":"other","name":"x"})");
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(error_code(r) == "publish_failed");
    BOOST_TEST(store->generation() == generation);
    api->maintenance();  // still failing: harmless
    BOOST_TEST(publisher->published_generation() == 0u);

    // With room again (an operator raised snapshot_map_size_mb), the start repairs it.
    close();
    snapshot_map_size = 64u << 20;
    open();
    BOOST_TEST(snapshot_generation() == generation);
    for (const auto &raw : raw_keys) BOOST_REQUIRE(snapshot_key(raw).has_value());
}

namespace {

// An import body of `n` new keys.
std::string import_body(int n) {
    std::string body;
    for (int i = 0; i < n; ++i)
        body += json{{"key_sha256", apikey::to_hex(apikey::sha256(apikey::generate_key()))},
                     {"key_prefix", "sk_live_AbC1"},
                     {"name", "imported"}}
                    .dump() +
                "\n";
    return body;
}

bool names_the_setting(const Response &r) {
    return json::parse(r.body)["error"]["message"].get<std::string>().find("snapshot_map_size_mb") !=
           std::string::npos;
}

}  // namespace

// snapshot_map_size_mb too small for an import: the publish used to fail (503) and every
// change after it too, forever. The map now grows and the import is published.
BOOST_FIXTURE_TEST_CASE(a_publish_that_fills_the_snapshot_grows_its_map, DaemonFixture) {
    close();
    snapshot_map_size = 256u << 10;
    snapshot_max_map_size = 64u << 20;
    open();
    const std::string ws = create_workspace("acme", "sales")["id"];
    const json before = create_key(ws);
    Response r = call("POST", "/api/v1/workspaces/" + ws + "/api-keys/import", import_body(5000));
    BOOST_TEST_INFO(r.body.substr(0, 300));
    BOOST_REQUIRE_EQUAL(r.status, 201u);
    BOOST_TEST(snapshot_generation() == store->generation());
    // Changes go on, revokes included, and nginx's view has them.
    r = call("DELETE", "/api/v1/workspaces/" + ws + "/api-keys/" + before["id"].get<std::string>());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST((snapshot_key(before["key"])->status == KeyStatus::revoked));
    const json after = create_key(ws);
    BOOST_TEST(snapshot_key(after["key"]).has_value());
    BOOST_TEST(call("GET", "/healthz", {}, std::nullopt).status == 200u);
    // A restart with the same small setting keeps the grown file and publishes on.
    reopen();
    BOOST_TEST(snapshot_generation() == store->generation());
    BOOST_TEST(create_key(ws)["status"] == "active");
}

// Full even at the ceiling: every error and log line names snapshot_map_size_mb, and a
// start with that setting still too small fails naming it (it used to log only
// MDB_MAP_FULL).
BOOST_FIXTURE_TEST_CASE(a_snapshot_full_at_its_ceiling_names_the_setting, DaemonFixture) {
    close();
    snapshot_map_size = 256u << 10;
    snapshot_max_map_size = 512u << 10;
    open();
    const std::string ws = create_workspace("acme", "sales")["id"];
    const json key = create_key(ws);
    Response r = call("POST", "/api/v1/workspaces/" + ws + "/api-keys/import", import_body(5000));
    BOOST_REQUIRE_EQUAL(r.status, 503u);
    BOOST_TEST(error_code(r) == "publish_failed");
    BOOST_TEST(names_the_setting(r));
    r = call("DELETE", "/api/v1/workspaces/" + ws + "/api-keys/" + key["id"].get<std::string>());
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(error_code(r) == "publish_failed");
    BOOST_TEST(names_the_setting(r));
    r = call("GET", "/healthz", {}, std::nullopt);
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(json_of(r)["reason"].get<std::string>().find("snapshot_map_size_mb") != std::string::npos);

    // A restart with the setting unchanged: the rebuild fails, saying what to raise.
    close();
    BOOST_CHECK_EXCEPTION(open(), SnapshotFull, [](const SnapshotFull &e) {
        return std::string(e.what()).find("raise snapshot_map_size_mb") != std::string::npos;
    });
    close();
    snapshot_map_size = 64u << 20;
    open();
    BOOST_TEST(snapshot_generation() == store->generation());
}

BOOST_AUTO_TEST_CASE(the_snapshot_map_ceiling_is_four_stores_or_the_setting) {
    BOOST_TEST(snapshot_map_ceiling(std::size_t{4096} << 20, std::size_t{1024} << 20) == std::size_t{4096} << 20);
    BOOST_TEST(snapshot_map_ceiling(std::size_t{1} << 20, std::size_t{1024} << 20) == std::size_t{4096} << 20);
    BOOST_TEST(snapshot_map_ceiling(std::size_t{64} << 30, std::size_t{1} << 30) == std::size_t{64} << 30);
    BOOST_TEST(snapshot_map_ceiling(1, SIZE_MAX / 2) == SIZE_MAX);
}

BOOST_AUTO_TEST_CASE(loggable_path_hides_anything_but_route_words_and_uuids) {
    const std::string id = "9b88572e-066f-4155-bf10-58199ea397a1";
    BOOST_TEST(loggable_path("/api/v1/workspaces") == "/api/v1/workspaces");
    BOOST_TEST(loggable_path("/api/v1/workspaces/" + id + "/api-keys?x=1") ==
               "/api/v1/workspaces/" + id + "/api-keys");
    BOOST_TEST(loggable_path("/api/v1/workspaces/sk_live_abcdefgh/x") == "/api/v1/workspaces/*/*");
    BOOST_TEST(loggable_path("/api/v1/workspaces/" + id + "/entities/patients/settings") ==
               "/api/v1/workspaces/" + id + "/entities/*/settings");
    BOOST_TEST(loggable_path("/api/v1/workspaces/" + id + "/changes?after=sk_live_x") ==
               "/api/v1/workspaces/" + id + "/changes");
    BOOST_TEST(loggable_path("/api/v1/changes") == "/api/v1/changes");
    // Probes and scrapes are told apart in the log (they were both "/*").
    BOOST_TEST(loggable_path("/healthz?ts=sk_live_x") == "/healthz");
    BOOST_TEST(loggable_path("/metrics") == "/metrics");
    BOOST_TEST(loggable_path("http://host/x") == "*");
    BOOST_TEST(loggable_path(std::string(1000, '/')).size() < 210u);
}

BOOST_AUTO_TEST_SUITE_END()
