// Workspace and entity settings: validation and normalisation of every field, resolution
// (entity > workspace > default) into the snapshot's records, republication when the
// workspace depth changes, rebuilds, and the routes.
#include "../daemon/settings.h"
#include "daemon_fixture.h"

#include <boost/test/unit_test.hpp>

#include <filesystem>

using namespace apikeyd;
using apikey::test::DaemonFixture;
using nlohmann::json;
namespace snapshot = apikey::snapshot;

namespace {

const std::string kMissing = "00000000-0000-4000-8000-000000000000";

std::string error_code(const Response &r) {
    const json body = json::parse(r.body);
    BOOST_REQUIRE(body.contains("error"));
    BOOST_REQUIRE(body["error"]["message"].is_string());
    return body["error"]["code"].get<std::string>();
}

std::string error_message(const Response &r) {
    return json::parse(r.body)["error"]["message"].get<std::string>();
}

const json kEntityNulls = {{"defaultExpand", nullptr},           {"maxExpandDepth", nullptr},
                           {"defaultFields", nullptr},           {"expandableRelationships", nullptr},
                           {"filterableFields", nullptr},        {"publicAccess", nullptr},
                           {"columns", nullptr}};

json entity_defaults(int depth = 3) {
    json j = kEntityNulls;
    j["effective"] = {{"maxExpandDepth", depth},
                      {"publicAccess", "NONE"},
                      {"defaultExpand", nullptr},
                      {"defaultFields", nullptr},
                      {"expandableRelationships", nullptr},
                      {"filterableFields", nullptr},
                      {"hiddenColumns", json::array()}};
    return j;
}

struct SettingsFixture : DaemonFixture {
    std::string ws;
    SettingsFixture() { ws = create_workspace("acme-corp", "sales")["id"]; }
    std::string ws_settings() const { return "/api/v1/workspaces/" + ws + "/settings"; }
    std::string entity(const std::string &name) const {
        return "/api/v1/workspaces/" + ws + "/entities/" + name + "/settings";
    }
    json put(const std::string &target, const json &body) {
        const Response r = call("PUT", target, body.dump());
        BOOST_TEST_INFO(target << " " << body.dump() << " -> " << r.body);
        BOOST_REQUIRE_EQUAL(r.status, 200u);
        return json_of(r);
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_settings)

// --- pure validation -------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(origins_are_validated_and_normalised) {
    const struct {
        const char *in;
        const char *out;  // nullptr: invalid
    } cases[] = {
        {"https://app.example.com", "https://app.example.com"},
        {"http://localhost:3000", "http://localhost:3000"},
        {"HTTPS://App.Example.COM", "https://app.example.com"},
        {"https://example.com:443", "https://example.com"},  // browsers omit default ports
        {"http://example.com:80", "http://example.com"},
        {"http://example.com:443", "http://example.com:443"},
        {"https://example.com:08443", "https://example.com:8443"},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
        {"http://[::1]:8080", "http://[::1]:8080"},
        {"https://[2001:DB8:0:0:0:0:0:1]", "https://[2001:db8::1]"},
        {"https://xn--bcher-kva.example", "https://xn--bcher-kva.example"},
        {"https://a-b.c-d.example", "https://a-b.c-d.example"},
        {"https://a", "https://a"},
        {"https://example.com/", nullptr},  // trailing slash
        {"https://example.com/path", nullptr},
        {"https://example.com?x=1", nullptr},
        {"https://example.com#f", nullptr},
        {"https://user@example.com", nullptr},
        {"https://user:pw@example.com", nullptr},
        {"ftp://example.com", nullptr},
        {"file://example.com", nullptr},
        {"example.com", nullptr},
        {"//example.com", nullptr},
        {"https://", nullptr},
        {"https://:443", nullptr},
        {"https://example.com:", nullptr},
        {"https://example.com:0", nullptr},
        {"https://example.com:65536", nullptr},
        {"https://example.com:123456", nullptr},
        {"https://example.com:8o", nullptr},
        {"https://example.com:-1", nullptr},
        {"https://exa mple.com", nullptr},
        {"https://example.com.", nullptr},
        {"https://.example.com", nullptr},
        {"https://ex..ample.com", nullptr},
        {"https://-example.com", nullptr},
        {"https://example-.com", nullptr},
        {"https://ex_ample.com", nullptr},
        {"https://b\xc3\xbc" "cher.example", nullptr},  // IDN must be punycode
        {"https://exa%6dple.com", nullptr},
        {"https://1.2.3", nullptr},  // numeric last label: not a name, not an address
        {"https://256.1.1.1", nullptr},
        {"https://01.2.3.4", nullptr},
        {"https://example.123", nullptr},
        {"https://[::1", nullptr},
        {"https://[fe80::1%25eth0]", nullptr},
        {"https://[::1]x", nullptr},
        {"https://[not-ipv6]", nullptr},
        {"https://example.com:443:443", nullptr},
        {"https://*.example.com", nullptr},
        {"*", nullptr},
        {"null", nullptr},
        {"", nullptr},
        {" https://example.com", nullptr},
        {"https://example.com\\", nullptr},
    };
    for (const auto &c : cases) {
        BOOST_TEST_INFO(c.in);
        const auto got = normalise_origin(c.in);
        if (c.out == nullptr)
            BOOST_TEST(!got.has_value());
        else
            BOOST_TEST(got.value_or("<invalid>") == c.out);
    }
    BOOST_TEST(!normalise_origin("https://" + std::string(64, 'a') + ".com"));  // label > 63
    BOOST_TEST(normalise_origin("https://" + std::string(63, 'a') + ".com").has_value());
    std::string long_name;
    for (int i = 0; i < 64; ++i) long_name += "abc.";
    BOOST_TEST(!normalise_origin("https://" + long_name + "com"));  // name > 253
}

BOOST_AUTO_TEST_CASE(identifiers_and_relationship_paths) {
    for (const char *good : {"a", "A", "_", "orders", "Order_Items2", "_x9"})
        BOOST_TEST(is_identifier(good), good);
    BOOST_TEST(is_identifier(std::string(64, 'x')));
    for (const char *bad : {"", "9a", "a-b", "a.b", "a b", "é", "a/b", "a%20", "a,b"})
        BOOST_TEST(!is_identifier(bad), bad);
    BOOST_TEST(!is_identifier(std::string(65, 'x')));

    for (const char *good : {"customer", "items.product", "a.b.c.d.e.f.g.h.i.j"})
        BOOST_TEST(is_relationship_path(good), good);
    for (const char *bad : {"", ".a", "a.", "a..b", "a.9b", "a.b-c", "a.b.c.d.e.f.g.h.i.j.k"})
        BOOST_TEST(!is_relationship_path(bad), bad);
}

BOOST_AUTO_TEST_CASE(list_settings_are_normalised) {
    const struct {
        json in;
        json out;  // as shown back
    } cases[] = {
        {"customer,items.product", "customer,items.product"},
        {" customer , items.product ", "customer,items.product"},
        {"a,,b,", "a,b"},
        {"b,a,b,a", "b,a"},  // deduplicated, first order kept
        {json::array({"a", " b ", "a", ""}), "a,b"},
        {json::array(), nullptr},  // empty default: no default
        {"", nullptr},
        {" , ", nullptr},
        {nullptr, nullptr},
    };
    for (const auto &c : cases) {
        BOOST_TEST_INFO(c.in.dump());
        const EntitySettings s = parse_entity_settings(json{{"defaultExpand", c.in}}.dump());
        BOOST_TEST(settings_json(s)["defaultExpand"].dump() == c.out.dump());
    }
    // An empty whitelist is kept: nothing is expandable / filterable.
    EntitySettings s = parse_entity_settings(R"({"expandableRelationships":"","filterableFields":[]})");
    BOOST_TEST(s.expandable.value_or("<null>") == "");
    BOOST_TEST(s.filterable.value_or("<null>") == "");
    s = parse_entity_settings(R"({"defaultFields":" id , name ,id"})");
    BOOST_TEST(s.default_fields.value_or("") == "id,name");
}

BOOST_FIXTURE_TEST_CASE(workspace_settings_validation, SettingsFixture) {
    const auto generation = store->generation();
    const struct {
        const char *what;
        std::string body;
        const char *code;
        const char *field;
    } cases[] = {
        {"not JSON", "{", "invalid_json", ""},
        {"array body", "[]", "invalid_json", ""},
        {"unknown field", R"({"maxDepth":3})", "unknown_field", "maxDepth"},
        {"snake case", R"({"max_expand_depth":3})", "unknown_field", "max_expand_depth"},
        {"effective is output only", R"({"effective":{}})", "unknown_field", "effective"},
        {"depth negative", R"({"maxExpandDepth":-1})", "invalid_field", "maxExpandDepth"},
        {"depth absurd", R"({"maxExpandDepth":11})", "invalid_field", "maxExpandDepth"},
        {"depth huge", R"({"maxExpandDepth":18446744073709551615})", "invalid_field", "maxExpandDepth"},
        {"depth hugely negative", R"({"maxExpandDepth":-9223372036854775808})", "invalid_field", "maxExpandDepth"},
        {"depth float", R"({"maxExpandDepth":2.5})", "invalid_field", "maxExpandDepth"},
        {"depth 3.0", R"({"maxExpandDepth":3.0})", "invalid_field", "maxExpandDepth"},
        {"depth string", R"({"maxExpandDepth":"3"})", "invalid_field", "maxExpandDepth"},
        {"depth bool", R"({"maxExpandDepth":true})", "invalid_field", "maxExpandDepth"},
        {"origins string", R"({"corsAllowedOrigins":"https://a.example"})", "invalid_field", "corsAllowedOrigins"},
        {"origins object", R"({"corsAllowedOrigins":{}})", "invalid_field", "corsAllowedOrigins"},
        {"origin number", R"({"corsAllowedOrigins":[1]})", "invalid_field", "corsAllowedOrigins"},
        {"origin null item", R"({"corsAllowedOrigins":[null]})", "invalid_field", "corsAllowedOrigins"},
        {"origin with path", R"({"corsAllowedOrigins":["https://a.example/x"]})", "invalid_field", "corsAllowedOrigins"},
        {"origin trailing slash", R"({"corsAllowedOrigins":["https://a.example/"]})", "invalid_field", "corsAllowedOrigins"},
        {"origin bad scheme", R"({"corsAllowedOrigins":["ftp://a.example"]})", "invalid_field", "corsAllowedOrigins"},
        {"origin wildcard", R"({"corsAllowedOrigins":["*"]})", "invalid_field", "corsAllowedOrigins"},
        {"second origin bad", R"({"corsAllowedOrigins":["https://a.example","a.example"]})", "invalid_field", "item 2"},
    };
    for (const auto &c : cases) {
        const Response r = call("PUT", ws_settings(), c.body);
        BOOST_TEST_INFO(c.what << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == c.code);
        BOOST_TEST(error_message(r).find(c.field) != std::string::npos);
    }
    // 51 origins is too many; 50 is fine.
    json origins = json::array();
    for (int i = 0; i < 51; ++i) origins.push_back("https://o" + std::to_string(i) + ".example");
    Response r = call("PUT", ws_settings(), json{{"corsAllowedOrigins", origins}}.dump());
    BOOST_TEST(r.status == 400u);
    BOOST_TEST(error_message(r).find("corsAllowedOrigins") != std::string::npos);
    BOOST_TEST(store->generation() == generation);  // nothing was changed
    origins.erase(origins.size() - 1);
    BOOST_TEST(call("PUT", ws_settings(), json{{"corsAllowedOrigins", origins}}.dump()).status == 200u);
    for (int depth : {0, 10})
        BOOST_TEST(call("PUT", ws_settings(), json{{"maxExpandDepth", depth}}.dump()).status == 200u);
}

BOOST_FIXTURE_TEST_CASE(entity_settings_validation, SettingsFixture) {
    const auto generation = store->generation();
    const struct {
        const char *what;
        std::string body;
        const char *code;
        const char *field;
    } cases[] = {
        {"unknown field", R"({"publicaccess":"NONE"})", "unknown_field", "publicaccess"},
        {"workspace field", R"({"corsAllowedOrigins":null})", "unknown_field", "corsAllowedOrigins"},
        {"depth negative", R"({"maxExpandDepth":-2})", "invalid_field", "maxExpandDepth"},
        {"depth absurd", R"({"maxExpandDepth":1000})", "invalid_field", "maxExpandDepth"},
        {"depth string", R"({"maxExpandDepth":"2"})", "invalid_field", "maxExpandDepth"},
        {"access lowercase", R"({"publicAccess":"read_only"})", "invalid_field", "publicAccess"},
        {"access unknown", R"({"publicAccess":"PUBLIC"})", "invalid_field", "publicAccess"},
        {"access bool", R"({"publicAccess":true})", "invalid_field", "publicAccess"},
        {"expand number", R"({"defaultExpand":5})", "invalid_field", "defaultExpand"},
        {"expand object", R"({"defaultExpand":{}})", "invalid_field", "defaultExpand"},
        {"expand array of numbers", R"({"defaultExpand":[1]})", "invalid_field", "defaultExpand"},
        {"expand bad path", R"({"defaultExpand":"customer..address"})", "invalid_field", "defaultExpand"},
        {"expand space inside", R"({"defaultExpand":"cus tomer"})", "invalid_field", "defaultExpand"},
        {"expand array item with comma", R"({"defaultExpand":["a,b"]})", "invalid_field", "defaultExpand"},
        {"expand too deep a path", R"({"defaultExpand":"a.b.c.d.e.f.g.h.i.j.k"})", "invalid_field", "defaultExpand"},
        {"expandable bad", R"({"expandableRelationships":"items.-x"})", "invalid_field", "expandableRelationships"},
        {"fields dotted", R"({"defaultFields":"customer.name"})", "invalid_field", "defaultFields"},
        {"fields bad", R"({"defaultFields":"id,1st"})", "invalid_field", "item 2"},
        {"filterable bad", R"({"filterableFields":"na-me"})", "invalid_field", "filterableFields"},
        {"filterable bool", R"({"filterableFields":false})", "invalid_field", "filterableFields"},
        {"columns array", R"({"columns":[]})", "invalid_field", "columns"},
        {"columns string", R"({"columns":"ssn"})", "invalid_field", "columns"},
        {"column name bad", R"({"columns":{"s-s-n":{"apiVisible":false}}})", "invalid_field", "columns"},
        {"column name digit", R"({"columns":{"1a":{"apiVisible":false}}})", "invalid_field", "columns"},
        {"column value bool", R"({"columns":{"ssn":false}})", "invalid_field", "columns.ssn"},
        {"column value null", R"({"columns":{"ssn":null}})", "invalid_field", "columns.ssn"},
        {"column apiVisible string", R"({"columns":{"ssn":{"apiVisible":"false"}}})", "invalid_field", "columns.ssn.apiVisible"},
        {"column apiVisible null", R"({"columns":{"ssn":{"apiVisible":null}}})", "invalid_field", "columns.ssn.apiVisible"},
        {"column apiVisible missing", R"({"columns":{"ssn":{}}})", "missing_field", "columns.ssn.apiVisible"},
        {"column unknown key", R"({"columns":{"ssn":{"apiVisible":false,"visible":false}}})", "unknown_field", "columns.ssn.visible"},
        {"id hidden", R"({"columns":{"id":{"apiVisible":false}}})", "invalid_field", "primary key"},
    };
    for (const auto &c : cases) {
        const Response r = call("PUT", entity("orders"), c.body);
        BOOST_TEST_INFO(c.what << " -> " << r.body);
        BOOST_TEST(r.status == 400u);
        BOOST_TEST(error_code(r) == c.code);
        BOOST_TEST(error_message(r).find(c.field) != std::string::npos);
    }
    // Limits.
    json many = json::array();
    for (int i = 0; i < 257; ++i) many.push_back("f" + std::to_string(i));
    BOOST_TEST(call("PUT", entity("orders"), json{{"filterableFields", many}}.dump()).status == 400u);
    json columns = json::object();
    for (int i = 0; i < 1001; ++i) columns["c" + std::to_string(i)] = {{"apiVisible", false}};
    BOOST_TEST(call("PUT", entity("orders"), json{{"columns", columns}}.dump()).status == 400u);
    BOOST_TEST(store->generation() == generation);

    many.erase(many.size() - 1);
    BOOST_TEST(call("PUT", entity("orders"), json{{"filterableFields", many}}.dump()).status == 200u);
    columns.erase("c1000");
    const Response r = call("PUT", entity("orders"), json{{"columns", columns}}.dump());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r)["effective"]["hiddenColumns"].size() == 1000u);
    BOOST_TEST(snapshot_entity(ws, "orders")->hidden_columns.size() < 65536u);
    // id may be listed as visible.
    BOOST_TEST(call("PUT", entity("orders"), R"({"columns":{"id":{"apiVisible":true}}})").status == 200u);
}

BOOST_FIXTURE_TEST_CASE(entity_name_in_the_path_is_validated, SettingsFixture) {
    for (const std::string &bad : std::vector<std::string>{"9orders", "or-ders", "or%64ers", "orders.x", std::string(65, 'e'), "%20"}) {
        for (const char *method : {"GET", "PUT"}) {
            const Response r = call(method, entity(bad), "{}");
            BOOST_TEST_INFO(method << " " << bad << " -> " << r.body);
            BOOST_TEST(r.status == 400u);
            BOOST_TEST(error_code(r) == "invalid_field");
            BOOST_TEST(error_message(r).find("entity") != std::string::npos);
        }
    }
    BOOST_TEST(call("GET", entity(std::string(64, 'e'))).status == 200u);
    BOOST_TEST(call("GET", entity("_Order_2")).status == 200u);
}

// --- routes ----------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(settings_routes, SettingsFixture) {
    const struct {
        const char *method;
        std::string target;
        unsigned status;
        const char *allow;
    } cases[] = {
        {"GET", "/api/v1/workspaces/" + kMissing + "/settings", 404, ""},
        {"PUT", "/api/v1/workspaces/" + kMissing + "/settings", 404, ""},
        {"GET", "/api/v1/workspaces/not-a-uuid/settings", 404, ""},
        {"GET", "/api/v1/workspaces/" + kMissing + "/entities/orders/settings", 404, ""},
        {"PUT", "/api/v1/workspaces/" + kMissing + "/entities/orders/settings", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/entities", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/entities/orders", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/entities/orders/other", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/settings/", 404, ""},
        {"GET", "/api/v1/workspaces/" + ws + "/settings/x", 404, ""},
        {"POST", "/api/v1/workspaces/" + ws + "/settings", 405, "GET, HEAD, PUT"},
        {"DELETE", "/api/v1/workspaces/" + ws + "/settings", 405, "GET, HEAD, PUT"},
        {"PATCH", "/api/v1/workspaces/" + ws + "/entities/orders/settings", 405, "GET, HEAD, PUT"},
        {"HEAD", "/api/v1/workspaces/" + ws + "/settings", 200, ""},
        {"HEAD", "/api/v1/workspaces/" + ws + "/entities/orders/settings", 200, ""},
    };
    for (const auto &c : cases) {
        const Response r = call(c.method, c.target, "{}");
        BOOST_TEST_INFO(c.method << " " << c.target << " -> " << r.body);
        BOOST_TEST(r.status == c.status);
        if (c.status == 404) BOOST_TEST(error_code(r) == "not_found");
        if (c.status == 405) {
            BOOST_TEST(error_code(r) == "method_not_allowed");
            bool found = false;
            for (const auto &[n, v] : r.headers) found = found || (n == "Allow" && v == c.allow);
            BOOST_TEST(found);
        }
    }
    BOOST_TEST(call("GET", ws_settings(), {}, std::nullopt).status == 401u);
    BOOST_TEST(call("PUT", entity("orders"), "{}", std::string("Bearer wrong")).status == 401u);
}

BOOST_FIXTURE_TEST_CASE(workspace_settings_round_trip, SettingsFixture) {
    Response r = call("GET", ws_settings());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r) == (json{{"maxExpandDepth", nullptr},
                                   {"corsAllowedOrigins", nullptr},
                                   {"defaultRateLimit", nullptr},
                                   {"effective", {{"maxExpandDepth", 3},
                                                  {"corsAllowedOrigins", nullptr},
                                                  {"defaultRateLimit", nullptr}}}}));
    BOOST_TEST(r.body.rfind("{\"maxExpandDepth\":", 0) == 0u);  // documented order

    json got = put(ws_settings(), {{"maxExpandDepth", 5},
                                   {"corsAllowedOrigins",
                                    {"https://App.example.com", "https://dashboard.example.com:443",
                                     "https://app.example.com"}}});
    const json expected = {{"maxExpandDepth", 5},
                           {"corsAllowedOrigins", {"https://app.example.com", "https://dashboard.example.com"}},
                           {"defaultRateLimit", nullptr},
                           {"effective",
                            {{"maxExpandDepth", 5},
                             {"corsAllowedOrigins", {"https://app.example.com", "https://dashboard.example.com"}},
                             {"defaultRateLimit", nullptr}}}};
    BOOST_TEST(got == expected);
    BOOST_TEST(json_of(call("GET", ws_settings())) == expected);
    auto rec = snapshot_workspace("acme-corp/sales");
    BOOST_REQUIRE(rec);
    BOOST_TEST(rec->max_expand_depth == 5);
    BOOST_TEST(rec->cors_origins == "https://app.example.com,https://dashboard.example.com");
    BOOST_TEST(apikey::to_string(rec->id) == ws);

    // PUT replaces the whole object: an omitted field is unset again.
    got = put(ws_settings(), {{"maxExpandDepth", 0}});
    BOOST_TEST(got["corsAllowedOrigins"].is_null());
    BOOST_TEST(got["effective"]["corsAllowedOrigins"].is_null());
    BOOST_TEST(got["effective"]["maxExpandDepth"] == 0);
    rec = snapshot_workspace("acme-corp/sales");
    BOOST_TEST(rec->max_expand_depth == 0);
    BOOST_TEST(rec->cors_origins == "");

    // [] is "every origin", like null.
    got = put(ws_settings(), {{"corsAllowedOrigins", json::array()}});
    BOOST_TEST(got["corsAllowedOrigins"].is_null());
    BOOST_TEST(got["effective"]["maxExpandDepth"] == 3);
    BOOST_TEST(snapshot_workspace("acme-corp/sales")->max_expand_depth == 3);
    BOOST_TEST(put(ws_settings(), json::object()) == json_of(call("GET", ws_settings())));
    BOOST_TEST(snapshot_generation() == store->generation());
}

BOOST_FIXTURE_TEST_CASE(entity_settings_round_trip, SettingsFixture) {
    // Never configured: the defaults, 200.
    Response r = call("GET", entity("orders"));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json_of(r) == entity_defaults());
    BOOST_TEST(r.body.rfind("{\"defaultExpand\":", 0) == 0u);
    BOOST_TEST(!snapshot_entity(ws, "orders"));

    const json body = {{"defaultExpand", "customer, items.product"},
                       {"maxExpandDepth", 2},
                       {"defaultFields", json::array({"id", "name", "email", "created_at"})},
                       {"expandableRelationships", "customer,items"},
                       {"filterableFields", "name,email,created_at,status"},
                       {"publicAccess", "READ_ONLY"},
                       {"columns", {{"ssn", {{"apiVisible", false}}},
                                    {"notes", {{"apiVisible", false}}},
                                    {"email", {{"apiVisible", true}}}}}};
    const json got = put(entity("orders"), body);
    json expected = {{"defaultExpand", "customer,items.product"},
                     {"maxExpandDepth", 2},
                     {"defaultFields", "id,name,email,created_at"},
                     {"expandableRelationships", "customer,items"},
                     {"filterableFields", "name,email,created_at,status"},
                     {"publicAccess", "READ_ONLY"},
                     {"columns", {{"email", {{"apiVisible", true}}},
                                  {"notes", {{"apiVisible", false}}},
                                  {"ssn", {{"apiVisible", false}}}}},
                     {"effective",
                      {{"maxExpandDepth", 2},
                       {"publicAccess", "READ_ONLY"},
                       {"defaultExpand", "customer,items.product"},
                       {"defaultFields", "id,name,email,created_at"},
                       {"expandableRelationships", "customer,items"},
                       {"filterableFields", "name,email,created_at,status"},
                       {"hiddenColumns", {"notes", "ssn"}}}}};
    BOOST_TEST(got == expected);
    BOOST_TEST(json_of(call("GET", entity("orders"))) == expected);

    auto rec = snapshot_entity(ws, "orders");
    BOOST_REQUIRE(rec);
    BOOST_TEST((rec->public_access == snapshot::PublicAccess::read_only));
    BOOST_TEST(rec->max_expand_depth == 2);
    BOOST_TEST(rec->default_expand.value_or("") == "customer,items.product");
    BOOST_TEST(rec->default_fields.value_or("") == "id,name,email,created_at");
    BOOST_TEST(rec->expandable.value_or("") == "customer,items");
    BOOST_TEST(rec->filterable.value_or("") == "name,email,created_at,status");
    BOOST_TEST(rec->hidden_columns == "notes,ssn");

    // Entities are independent, and names are case-sensitive.
    BOOST_TEST(json_of(call("GET", entity("Orders"))) == entity_defaults());
    BOOST_TEST(!snapshot_entity(ws, "Orders"));

    // PUT replaces everything; all-null removes the record (defaults again).
    const json only_access = put(entity("orders"), {{"publicAccess", "READ_WRITE"}});
    BOOST_TEST(only_access["defaultExpand"].is_null());
    BOOST_TEST(only_access["columns"].is_null());
    BOOST_TEST(only_access["effective"]["hiddenColumns"] == json::array());
    rec = snapshot_entity(ws, "orders");
    BOOST_REQUIRE(rec);
    BOOST_TEST((rec->public_access == snapshot::PublicAccess::read_write));
    BOOST_TEST(rec->max_expand_depth == 3);
    BOOST_TEST(!rec->default_expand.has_value());
    BOOST_TEST(!rec->expandable.has_value());
    BOOST_TEST(rec->hidden_columns == "");

    BOOST_TEST(put(entity("orders"), kEntityNulls) == entity_defaults());
    BOOST_TEST(!snapshot_entity(ws, "orders"));
    BOOST_TEST(put(entity("orders"), {{"columns", json::object()}}) == entity_defaults());
    BOOST_TEST(snapshot_generation() == store->generation());
}

// --- resolution ------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(depth_resolves_entity_then_workspace_then_default, SettingsFixture) {
    put(entity("inherits"), {{"publicAccess", "READ_ONLY"}});
    put(entity("own"), {{"maxExpandDepth", 1}});
    BOOST_TEST(snapshot_entity(ws, "inherits")->max_expand_depth == 3);  // system default
    BOOST_TEST(snapshot_entity(ws, "own")->max_expand_depth == 1);
    BOOST_TEST(snapshot_workspace("acme-corp/sales")->max_expand_depth == 3);

    // The workspace's depth changes: every inheriting entity record is republished with
    // it, in the same snapshot transaction (one generation).
    const auto generation = store->generation();
    put(ws_settings(), {{"maxExpandDepth", 6}});
    BOOST_TEST(store->generation() == generation + 1);
    BOOST_TEST(snapshot_generation() == generation + 1);
    BOOST_TEST(snapshot_workspace("acme-corp/sales")->max_expand_depth == 6);
    BOOST_TEST(snapshot_entity(ws, "inherits")->max_expand_depth == 6);
    BOOST_TEST((snapshot_entity(ws, "inherits")->public_access == snapshot::PublicAccess::read_only));
    BOOST_TEST(snapshot_entity(ws, "own")->max_expand_depth == 1);  // entity wins
    BOOST_TEST(json_of(call("GET", entity("inherits")))["effective"]["maxExpandDepth"] == 6);
    BOOST_TEST(json_of(call("GET", entity("inherits")))["maxExpandDepth"].is_null());
    BOOST_TEST(json_of(call("GET", entity("own")))["effective"]["maxExpandDepth"] == 1);
    BOOST_TEST(json_of(call("GET", entity("never")))["effective"]["maxExpandDepth"] == 6);
    BOOST_TEST(!snapshot_entity(ws, "never"));  // the module uses the workspace's depth

    // A later entity PUT resolves against the current workspace depth.
    put(entity("later"), {{"defaultFields", "id"}});
    BOOST_TEST(snapshot_entity(ws, "later")->max_expand_depth == 6);

    // An entity depth of 0 is a value, not "unset".
    put(entity("own"), {{"maxExpandDepth", 0}});
    BOOST_TEST(snapshot_entity(ws, "own")->max_expand_depth == 0);

    // Back to the default.
    put(ws_settings(), json::object());
    BOOST_TEST(snapshot_entity(ws, "inherits")->max_expand_depth == 3);
    BOOST_TEST(snapshot_entity(ws, "later")->max_expand_depth == 3);
    BOOST_TEST(snapshot_entity(ws, "own")->max_expand_depth == 0);

    // Another workspace is not affected.
    const std::string other = create_workspace("acme-corp", "inventory")["id"];
    put("/api/v1/workspaces/" + other + "/entities/inherits/settings", {{"publicAccess", "READ_WRITE"}});
    put(ws_settings(), {{"maxExpandDepth", 9}});
    BOOST_TEST(snapshot_entity(other, "inherits")->max_expand_depth == 3);
    BOOST_TEST((snapshot_entity(other, "inherits")->public_access == snapshot::PublicAccess::read_write));
    BOOST_TEST(snapshot_entity(ws, "inherits")->max_expand_depth == 9);
}

BOOST_FIXTURE_TEST_CASE(cors_change_alone_does_not_republish_entities, SettingsFixture) {
    put(entity("orders"), {{"publicAccess", "READ_ONLY"}});
    Change change;
    WorkspaceSettings s;
    s.cors_origins = std::vector<std::string>{"https://a.example"};
    BOOST_TEST((store->put_workspace_settings(*apikey::parse_uuid(ws), s, {"ops", now}, change) ==
                Store::Update::updated));
    BOOST_TEST(change.entities_put.empty());
    BOOST_REQUIRE_EQUAL(change.workspaces_put.size(), 1u);
    s.max_expand_depth = 4;
    BOOST_TEST((store->put_workspace_settings(*apikey::parse_uuid(ws), s, {"ops", now}, change) ==
                Store::Update::updated));
    BOOST_REQUIRE_EQUAL(change.entities_put.size(), 1u);
    BOOST_TEST(change.entities_put[0].entity == "orders");
    BOOST_TEST(change.entities_put[0].record.max_expand_depth == 4);
}

BOOST_FIXTURE_TEST_CASE(setting_the_same_settings_changes_nothing, SettingsFixture) {
    put(ws_settings(), {{"maxExpandDepth", 4}});
    put(entity("orders"), {{"defaultExpand", "a,b"}});
    const auto generation = store->generation();
    now += 100;
    put(ws_settings(), {{"maxExpandDepth", 4}, {"corsAllowedOrigins", json::array()}});
    put(entity("orders"), {{"defaultExpand", " a , b,a "}, {"columns", json::object()}});
    put(entity("never_configured"), kEntityNulls);
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + ws))["updated_at"] == "2027-01-15T08:00:00Z");
    // A real change bumps the workspace's updated_at.
    put(ws_settings(), {{"maxExpandDepth", 5}});
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + ws))["updated_at"] == "2027-01-15T08:01:40Z");
}

BOOST_FIXTURE_TEST_CASE(deleting_a_workspace_deletes_its_entity_records, SettingsFixture) {
    put(ws_settings(), {{"maxExpandDepth", 2}, {"corsAllowedOrigins", {"https://a.example"}}});
    put(entity("orders"), {{"publicAccess", "READ_WRITE"}});
    put(entity("customers"), {{"filterableFields", "name"}});
    const std::string other = create_workspace("acme-corp", "inventory")["id"];
    put("/api/v1/workspaces/" + other + "/entities/orders/settings", {{"publicAccess", "READ_ONLY"}});

    BOOST_TEST(call("DELETE", "/api/v1/workspaces/" + ws).status == 200u);
    BOOST_TEST(!snapshot_entity(ws, "orders"));
    BOOST_TEST(!snapshot_entity(ws, "customers"));
    BOOST_TEST(snapshot_entity(other, "orders").has_value());
    BOOST_TEST(call("GET", ws_settings()).status == 404u);
    BOOST_TEST(call("GET", entity("orders")).status == 404u);
    BOOST_TEST(call("PUT", entity("orders"), "{}").status == 404u);
    BOOST_TEST(call("PUT", ws_settings(), "{}").status == 404u);

    // The same org/slug again starts from the defaults.
    const std::string again = create_workspace("acme-corp", "sales")["id"];
    const auto rec = snapshot_workspace("acme-corp/sales");
    BOOST_TEST(rec->max_expand_depth == 3);
    BOOST_TEST(rec->cors_origins == "");
    BOOST_TEST(!snapshot_entity(again, "orders"));
    BOOST_TEST(json_of(call("GET", "/api/v1/workspaces/" + again + "/entities/orders/settings")) ==
               entity_defaults());

    // And a rebuild does not bring anything back.
    close();
    std::filesystem::remove_all(snapshot_dir());
    open();
    BOOST_TEST(!snapshot_entity(ws, "orders"));
    BOOST_TEST(snapshot_entity(other, "orders").has_value());
}

BOOST_FIXTURE_TEST_CASE(rebuild_and_restart_keep_settings, SettingsFixture) {
    put(ws_settings(), {{"maxExpandDepth", 7}, {"corsAllowedOrigins", {"http://localhost:3000"}}});
    put(entity("orders"), {{"publicAccess", "READ_ONLY"},
                           {"expandableRelationships", ""},
                           {"columns", {{"ssn", {{"apiVisible", false}}}}}});
    put(entity("items"), {{"maxExpandDepth", 1}, {"defaultExpand", "product"}});
    const json ws_before = json_of(call("GET", ws_settings()));
    const json orders_before = json_of(call("GET", entity("orders")));

    auto check = [&] {
        BOOST_TEST(snapshot_generation() == store->generation());
        const auto w = snapshot_workspace("acme-corp/sales");
        BOOST_REQUIRE(w);
        BOOST_TEST(w->max_expand_depth == 7);
        BOOST_TEST(w->cors_origins == "http://localhost:3000");
        const auto orders = snapshot_entity(ws, "orders");
        BOOST_REQUIRE(orders);
        BOOST_TEST((orders->public_access == snapshot::PublicAccess::read_only));
        BOOST_TEST(orders->max_expand_depth == 7);  // resolved from the workspace
        BOOST_TEST(orders->expandable.value_or("<null>") == "");
        BOOST_TEST(!orders->filterable.has_value());
        BOOST_TEST(orders->hidden_columns == "ssn");
        const auto items = snapshot_entity(ws, "items");
        BOOST_REQUIRE(items);
        BOOST_TEST(items->max_expand_depth == 1);
        BOOST_TEST(items->default_expand.value_or("") == "product");
        BOOST_TEST(json_of(call("GET", ws_settings())) == ws_before);
        BOOST_TEST(json_of(call("GET", entity("orders"))) == orders_before);
    };
    reopen();
    check();
    // A deleted snapshot is rebuilt with settings and entity records.
    close();
    std::filesystem::remove_all(snapshot_dir());
    open();
    check();
    // So is a stale one (a crash between the store commit and the publish).
    Change change;
    WorkspaceSettings s;
    s.max_expand_depth = 7;
    s.cors_origins = std::vector<std::string>{"http://localhost:3000"};
    EntitySettings e;
    e.max_expand_depth = 1;
    e.default_expand = "product";
    e.filterable = "name";
    BOOST_TEST((store->put_entity_settings(*apikey::parse_uuid(ws), "items", e, {"ops", now}, change) ==
                Store::Update::updated));  // committed, not published
    reopen();
    BOOST_TEST(snapshot_entity(ws, "items")->filterable.value_or("") == "name");
    check();
}

BOOST_AUTO_TEST_CASE(workspace_records_without_settings_still_decode) {
    // Written by an apikeyd from before settings existed.
    const Workspace w = decode_workspace(
        R"({"v":1,"id":"9b88572e-066f-4155-bf10-58199ea397a1","org":"a","slug":"b","name":"c",)"
        R"("created_at":1,"updated_at":2,"seq":3})");
    BOOST_TEST(w.settings.empty());
    BOOST_CHECK_THROW(decode_workspace(
                          R"({"v":1,"id":"9b88572e-066f-4155-bf10-58199ea397a1","org":"a","slug":"b",)"
                          R"("name":"c","created_at":1,"updated_at":2,"seq":3,"settings":{"maxExpandDepth":"x"}})"),
                      CorruptRecord);
    BOOST_CHECK_THROW(decode_entity_settings("{\"v\":1}"), CorruptRecord);
    EntitySettings e;
    e.columns = std::map<std::string, ColumnSettings>{{"ssn", {false}}};
    e.public_access = PublicAccess::read_write;
    BOOST_TEST((decode_entity_settings(encode(e)) == e));
}

BOOST_AUTO_TEST_SUITE_END()
