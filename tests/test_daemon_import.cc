// POST /api/v1/workspaces/{id}/api-keys/import: NDJSON parsing, per-item validation and
// results, all-or-nothing batches, conflicts (within the batch and with the store), the
// one summary feed entry, the snapshot, and the key_hashes index of older stores.
#include "../daemon/key_import.h"
#include "daemon_fixture.h"
#include "key_format.h"
#include "lmdb_handle.h"

#include <boost/test/unit_test.hpp>

#include <filesystem>

using namespace apikeyd;
using apikey::test::DaemonFixture;
using nlohmann::json;
namespace snapshot = apikey::snapshot;

namespace {

struct Raw {
    std::string key;
    std::string sha256_hex;
    std::string prefix;
};

Raw new_raw() {
    Raw r;
    r.key = apikey::generate_key();
    r.sha256_hex = apikey::to_hex(apikey::sha256(r.key));
    r.prefix = std::string(apikey::key_prefix(r.key));
    return r;
}

std::string line_of(const Raw &r, json extra = json::object()) {
    json j{{"key_sha256", r.sha256_hex}, {"key_prefix", r.prefix}, {"name", "imported"}};
    for (auto &[k, v] : extra.items()) j[k] = v;
    return j.dump();
}

struct ImportFixture : DaemonFixture {
    std::string ws;
    ImportFixture() { ws = create_workspace("acme", "sales")["id"]; }
    Response import(const std::string &body, const std::string &workspace = "") {
        return call("POST", "/api/v1/workspaces/" + (workspace.empty() ? ws : workspace) +
                                "/api-keys/import",
                    body);
    }
    // One page of up to 10,000 (the most a page holds): every key in these tests.
    json all_keys() {
        const Response r = call("GET", "/api/v1/workspaces/" + ws + "/api-keys?limit=10000");
        BOOST_REQUIRE_EQUAL(r.status, 200u);
        for (const auto &[name, value] : r.headers) BOOST_REQUIRE(name != "Link");
        return json_of(r);
    }
    std::size_t key_count() { return all_keys().size(); }
    std::vector<json> feed() {
        std::vector<json> out;
        const json page = json_of(call("GET", "/api/v1/changes?limit=1000"));
        for (const auto &e : page["changes"]) out.push_back(e);
        return out;
    }
};

// (line, code) of each listed error.
std::vector<std::string> errors_of(const Response &r) {
    std::vector<std::string> out;
    const json body = json::parse(r.body);
    for (const auto &e : body["errors"])
        out.push_back(std::to_string(e["line"].get<int>()) + ":" + e["code"].get<std::string>());
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_import)

BOOST_FIXTURE_TEST_CASE(imports_keys_into_store_and_snapshot, ImportFixture) {
    const Raw a = new_raw(), b = new_raw(), c = new_raw();
    const std::string body =
        line_of(a, {{"permission", "read_write"}, {"name", "from legacy"}}) + "\n" +
        line_of(b, {{"rate_limit", {{"limit", 10}, {"window_seconds", 60}}}}) + "\r\n\n" +
        line_of(c, {{"expires_at", "2030-01-01T00:00:00Z"}, {"key_sha256", [&] {
                         std::string up = c.sha256_hex;
                         for (char &ch : up) ch = static_cast<char>(std::toupper(ch));
                         return up;
                     }()}}) + "\n";
    const auto generation = store->generation();
    const auto r = import(body);
    BOOST_REQUIRE_EQUAL(r.status, 201u);
    const json out = json_of(r);
    BOOST_TEST(out["imported"] == 3);
    BOOST_TEST(out["workspace_id"] == ws);
    BOOST_TEST(out["seq"] == generation + 1);
    BOOST_REQUIRE_EQUAL(out["keys"].size(), 3u);
    // Physical line numbers: the blank line 3 is skipped.
    BOOST_TEST(out["keys"][0]["line"] == 1);
    BOOST_TEST(out["keys"][1]["line"] == 2);
    BOOST_TEST(out["keys"][2]["line"] == 4);
    BOOST_TEST(store->generation() == generation + 1);  // one transaction
    BOOST_TEST(snapshot_generation() == generation + 1);

    // Listed in line order, shaped like created keys, never with a hash or raw key.
    const json list = json_of(call("GET", "/api/v1/workspaces/" + ws + "/api-keys"));
    BOOST_REQUIRE_EQUAL(list.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) BOOST_TEST(list[i]["id"] == out["keys"][i]["id"]);
    BOOST_TEST(list[0]["name"] == "from legacy");
    BOOST_TEST(list[0]["permission"] == "read_write");
    BOOST_TEST(list[0]["key_prefix"] == a.prefix);
    BOOST_TEST(list[0]["status"] == "active");
    BOOST_TEST(list[0]["created_by"] == "ops");
    BOOST_TEST(list[1]["permission"] == "read_only");  // the default, as for a create
    BOOST_TEST(list[1]["rate_limit"]["limit"] == 10);
    BOOST_TEST(list[2]["expires_at"] == "2030-01-01T00:00:00Z");
    BOOST_TEST(r.body.find(a.sha256_hex) == std::string::npos);
    BOOST_TEST(!list[0].contains("key_sha256"));

    // The snapshot answers for the raw keys.
    const auto ra = snapshot_key(a.key), rb = snapshot_key(b.key), rc = snapshot_key(c.key);
    BOOST_REQUIRE(ra && rb && rc);
    BOOST_TEST(apikey::to_string(ra->id) == out["keys"][0]["id"].get<std::string>());
    BOOST_TEST((ra->permission == snapshot::Permission::read_write));
    BOOST_TEST((rb->permission == snapshot::Permission::read_only));
    BOOST_TEST(rb->rate_limit.has_value());
    BOOST_TEST(rc->expires_at.has_value());

    // Imported keys are ordinary keys: revocable, and still there after a restart.
    const std::string id = out["keys"][0]["id"];
    BOOST_TEST(call("DELETE", "/api/v1/workspaces/" + ws + "/api-keys/" + id).status == 200u);
    BOOST_TEST((snapshot_key(a.key)->status == snapshot::KeyStatus::revoked));
    reopen();
    BOOST_TEST(key_count() == 3u);
    BOOST_TEST(store->view().key_by_hash(apikey::sha256(b.key)).has_value());
}

BOOST_FIXTURE_TEST_CASE(one_summary_entry_in_the_feed, ImportFixture) {
    std::string body;
    std::vector<Raw> raws;
    for (int i = 0; i < 50; ++i) {
        raws.push_back(new_raw());
        body += line_of(raws.back()) + "\n";
    }
    const auto before = feed().size();
    const auto r = import(body);
    BOOST_REQUIRE_EQUAL(r.status, 201u);
    const json out = json_of(r);
    const auto entries = feed();
    BOOST_REQUIRE_EQUAL(entries.size(), before + 1);
    const json &e = entries.back();
    BOOST_TEST(e["type"] == "api_key.imported");
    BOOST_TEST(e["seq"] == out["seq"]);
    BOOST_TEST(e["actor"] == "ops");
    BOOST_TEST(e["workspace_id"] == ws);
    BOOST_TEST(e["object"]["count"] == 50);
    BOOST_TEST(e["object"]["first_key_id"] == out["keys"][0]["id"]);
    BOOST_TEST(e["object"]["last_key_id"] == out["keys"][49]["id"]);
    BOOST_TEST(e["object"]["created_by"] == "ops");
    // No secrets: neither hashes nor prefixes of the keys.
    const std::string text = e.dump();
    for (const Raw &raw : raws) {
        BOOST_TEST(text.find(raw.sha256_hex) == std::string::npos);
        BOOST_TEST(text.find(raw.key) == std::string::npos);
    }
    // The workspace's own feed has it too.
    const json ws_feed = json_of(call("GET", "/api/v1/workspaces/" + ws + "/changes"));
    BOOST_TEST(ws_feed["changes"].back()["type"] == "api_key.imported");
}

BOOST_FIXTURE_TEST_CASE(every_bad_item_is_listed_and_nothing_is_stored, ImportFixture) {
    const Raw good = new_raw(), good2 = new_raw();
    const std::vector<std::string> lines = {
        line_of(good),                                                    // 1 ok
        "{not json",                                                      // 2
        "[1,2]",                                                          // 3 not an object
        line_of(new_raw(), {{"extra", 1}}),                               // 4 unknown field
        json{{"key_prefix", good.prefix}, {"name", "x"}}.dump(),          // 5 no key_sha256
        line_of(new_raw(), {{"key_sha256", "abc"}}),                      // 6 short hash
        line_of(new_raw(), {{"key_sha256", std::string(64, 'g')}}),       // 7 not hex
        line_of(new_raw(), {{"key_prefix", "sk_test_abcd"}}),             // 8 bad prefix
        line_of(new_raw(), {{"key_prefix", "sk_live_ab!d"}}),             // 9
        line_of(new_raw(), {{"key_prefix", 12}}),                         // 10 type
        line_of(new_raw(), {{"name", ""}}),                               // 11
        line_of(new_raw(), {{"permission", "admin"}}),                    // 12
        line_of(new_raw(), {{"expires_at", "2020-01-01T00:00:00Z"}}),     // 13 past
        line_of(new_raw(), {{"expires_at", 5}}),                          // 14
        line_of(new_raw(), {{"rate_limit", {{"limit", 0}, {"window_seconds", 1}}}}),  // 15
        std::string(64, '[') + std::string(64, ']'),                      // 16 too deep
        line_of(good2),                                                   // 17 ok
        "{\"key_sha256\":\"" + std::string(5000, 'a') + "\"}",            // 18 too long
    };
    std::string body;
    for (const auto &l : lines) body += l + "\n";
    const auto generation = store->generation();
    const auto before = feed().size();
    const auto r = import(body);
    BOOST_REQUIRE_EQUAL(r.status, 400u);
    const json out = json_of(r);
    BOOST_TEST(out["error"]["code"] == "import_rejected");
    BOOST_TEST(out["imported"] == 0);
    BOOST_TEST(out["items"] == 18);
    BOOST_TEST(out["errors_total"] == 16);
    BOOST_TEST(out["errors_truncated"] == false);
    const std::vector<std::string> expected = {
        "2:invalid_json",   "3:invalid_json",   "4:unknown_field",  "5:missing_field",
        "6:invalid_field",  "7:invalid_field",  "8:invalid_field",  "9:invalid_field",
        "10:invalid_field", "11:invalid_field", "12:invalid_field", "13:invalid_field",
        "14:invalid_field", "15:invalid_field", "16:invalid_json",  "18:invalid_json",
    };
    BOOST_TEST(errors_of(r) == expected, boost::test_tools::per_element());
    for (const auto &e : out["errors"]) BOOST_TEST(!e["message"].get<std::string>().empty());
    // Nothing behind: no key, no generation, no feed entry, nothing in the snapshot.
    BOOST_TEST(key_count() == 0u);
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(feed().size() == before);
    BOOST_TEST(!snapshot_key(good.key).has_value());
    BOOST_TEST(!store->view().key_by_hash(apikey::sha256(good.key)).has_value());
}

BOOST_FIXTURE_TEST_CASE(duplicates_are_conflicts, ImportFixture) {
    const Raw a = new_raw(), b = new_raw(), c = new_raw();
    BOOST_REQUIRE_EQUAL(import(line_of(a) + "\n").status, 201u);
    const std::string a_id = json_of(call("GET", "/api/v1/workspaces/" + ws + "/api-keys"))[0]["id"];

    // Twice in one batch (lines 2 and 4 repeat line 1) and already stored (line 3).
    const auto r = import(line_of(b) + "\n" + line_of(b, {{"name", "again"}}) + "\n" + line_of(a) +
                          "\n" + line_of(b) + "\n" + line_of(c) + "\n");
    BOOST_REQUIRE_EQUAL(r.status, 409u);
    const std::vector<std::string> expected = {"2:conflict", "3:conflict", "4:conflict"};
    BOOST_TEST(errors_of(r) == expected, boost::test_tools::per_element());
    const json out = json_of(r);
    BOOST_TEST(out["errors"][0]["message"].get<std::string>().find("line 1") != std::string::npos);
    BOOST_TEST(out["errors"][1]["message"].get<std::string>().find(a_id) != std::string::npos);
    BOOST_TEST(key_count() == 1u);
    BOOST_TEST(!snapshot_key(c.key).has_value());

    // The same hash in another workspace conflicts too (hashes are global), and so does a
    // revoked key's.
    const std::string other = create_workspace("acme", "other")["id"];
    BOOST_TEST(import(line_of(a) + "\n", other).status == 409u);
    call("DELETE", "/api/v1/workspaces/" + ws + "/api-keys/" + a_id);
    BOOST_TEST(import(line_of(a) + "\n").status == 409u);

    // A conflict and an invalid item: 400 (not only conflicts), both listed.
    const auto mixed = import(line_of(a) + "\n" + line_of(c, {{"permission", "x"}}) + "\n");
    BOOST_TEST(mixed.status == 400u);
    BOOST_TEST(errors_of(mixed).size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(created_keys_are_conflicts_too, ImportFixture) {
    const json created = create_key(ws);
    const std::string raw = created["key"];
    Raw r{raw, apikey::to_hex(apikey::sha256(raw)), std::string(apikey::key_prefix(raw))};
    const auto res = import(line_of(r) + "\n");
    BOOST_TEST(res.status == 409u);
    BOOST_TEST(errors_of(res).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(the_error_list_is_capped, ImportFixture) {
    std::string body;
    for (int i = 0; i < 250; ++i) body += line_of(new_raw(), {{"permission", "nope"}}) + "\n";
    const auto r = import(body);
    BOOST_REQUIRE_EQUAL(r.status, 400u);
    const json out = json_of(r);
    BOOST_TEST(out["errors_total"] == 250);
    BOOST_TEST(out["errors"].size() == kMaxListedImportErrors);
    BOOST_TEST(out["errors_truncated"] == true);
    BOOST_TEST(out["errors"][0]["line"] == 1);
    BOOST_TEST(out["errors"][99]["line"] == 100);

    // Phases merge by line: a duplicate on line 3 comes before invalid lines after it.
    const Raw a = new_raw();
    std::string mixed = line_of(a) + "\n" + line_of(new_raw(), {{"permission", "x"}}) + "\n" +
                        line_of(a) + "\n";
    for (int i = 0; i < 150; ++i) mixed += line_of(new_raw(), {{"permission", "x"}}) + "\n";
    const auto m = import(mixed);
    const auto errs = errors_of(m);
    BOOST_REQUIRE_EQUAL(errs.size(), kMaxListedImportErrors);
    BOOST_TEST(errs[0] == "2:invalid_field");
    BOOST_TEST(errs[1] == "3:conflict");
    BOOST_TEST(json_of(m)["errors_total"] == 152);
}

BOOST_FIXTURE_TEST_CASE(body_level_errors, ImportFixture) {
    const auto empty = import("");
    BOOST_TEST(empty.status == 400u);
    BOOST_TEST(json_of(empty)["error"]["code"] == "invalid_json");
    BOOST_TEST(import("\n  \n\r\n").status == 400u);

    api->set_max_import_items(2);
    const auto many = import(line_of(new_raw()) + "\n" + line_of(new_raw()) + "\n\n" +
                             line_of(new_raw()) + "\n");
    BOOST_TEST(many.status == 413u);
    BOOST_TEST(json_of(many)["error"]["code"] == "payload_too_large");
    BOOST_TEST(import(line_of(new_raw()) + "\n\n" + line_of(new_raw())).status == 201u);
    BOOST_TEST(key_count() == 2u);

    // Unknown workspace, wrong methods, no token.
    BOOST_TEST(import(line_of(new_raw()), "00000000-0000-4000-8000-000000000000").status == 404u);
    const auto get = call("GET", "/api/v1/workspaces/" + ws + "/api-keys/import");
    BOOST_TEST(get.status == 405u);
    bool allow_post = false;
    for (const auto &[n, v] : get.headers) allow_post = allow_post || (n == "Allow" && v == "POST");
    BOOST_TEST(allow_post);
    BOOST_TEST(call("POST", "/api/v1/workspaces/" + ws + "/api-keys/import", line_of(new_raw()),
                    std::nullopt)
                   .status == 401u);
}

// Imports into tables that already hold keys: the part of each batch below a table's
// last key is inserted, the rest appended; every key must be found by id, hash and listing.
BOOST_FIXTURE_TEST_CASE(imports_mix_with_existing_keys, ImportFixture) {
    std::vector<std::string> created_ids;
    for (int i = 0; i < 30; ++i) created_ids.push_back(create_key(ws)["id"]);
    std::vector<Raw> raws;
    std::vector<std::string> ids;
    for (int round = 0; round < 3; ++round) {
        std::string body;
        for (int i = 0; i < 400; ++i) {
            raws.push_back(new_raw());
            body += line_of(raws.back()) + "\n";
        }
        const auto r = import(body);
        BOOST_REQUIRE_EQUAL(r.status, 201u);
        const json out = json_of(r);
        for (const auto &k : out["keys"]) ids.push_back(k["id"]);
    }
    BOOST_TEST(key_count() == 30u + 1200u);
    {
    auto view = store->view();
    for (std::size_t i = 0; i < raws.size(); ++i) {
        const auto id = view.key_by_hash(apikey::sha256(raws[i].key));
        BOOST_REQUIRE(id.has_value());
        BOOST_TEST(apikey::to_string(*id) == ids[i]);
        const auto key = view.key(*id);
        BOOST_REQUIRE(key.has_value());
        BOOST_TEST(key->key_prefix == raws[i].prefix);
    }
    for (const auto &id : created_ids) BOOST_TEST(view.key(*apikey::parse_uuid(id)).has_value());
    }
    // Listing: the created keys first, then each batch in line order.
    const json list = all_keys();
    for (std::size_t i = 0; i < ids.size(); ++i) BOOST_TEST(list[30 + i]["id"] == ids[i]);
    // The snapshot agrees, also after a full rebuild.
    BOOST_TEST(snapshot_key(raws.front().key).has_value());
    std::filesystem::remove_all(snapshot_dir());
    reopen();
    for (const Raw &raw : raws) BOOST_TEST(snapshot_key(raw.key).has_value());
}

BOOST_AUTO_TEST_CASE(import_target_and_loggable_path) {
    BOOST_TEST(is_import_target("/api/v1/workspaces/x/api-keys/import"));
    BOOST_TEST(is_import_target("/api/v1/workspaces/x/api-keys/import?a=b"));
    BOOST_TEST(!is_import_target("/api/v1/workspaces/x/api-keys"));
    BOOST_TEST(!is_import_target("/api/v1/workspaces/x/api-keys/import/y"));
    BOOST_TEST(!is_import_target("/api/v1/workspaces/x/settings"));
    BOOST_TEST(loggable_path("/api/v1/workspaces/00000000-0000-4000-8000-000000000000/api-keys/import") ==
               "/api/v1/workspaces/00000000-0000-4000-8000-000000000000/api-keys/import");
}

BOOST_AUTO_TEST_CASE(key_prefix_shape) {
    BOOST_TEST(is_valid_key_prefix("sk_live_aB3z"));
    BOOST_TEST(!is_valid_key_prefix("sk_live_aB3"));
    BOOST_TEST(!is_valid_key_prefix("sk_live_aB3zz"));
    BOOST_TEST(!is_valid_key_prefix("sk_test_aB3z"));
    BOOST_TEST(!is_valid_key_prefix("sk_live_a-3z"));
}

// A store written before key_hashes existed gets the index at open: imports of its keys'
// hashes are conflicts.
BOOST_FIXTURE_TEST_CASE(key_hashes_are_rebuilt_for_older_stores, ImportFixture) {
    const json created = create_key(ws);
    const std::string raw = created["key"];
    close();
    {
        apikey::lmdb::EnvOptions options;
        options.map_size = store_map_size;
        apikey::lmdb::Env env(store_dir(), options);
        apikey::lmdb::Txn txn(env, 0);
        const MDB_dbi hashes = apikey::lmdb::open_dbi(txn, "key_hashes");
        BOOST_REQUIRE(mdb_drop(txn.get(), hashes, 1) == MDB_SUCCESS);  // as if never there
        txn.commit();
    }
    open();
    BOOST_TEST(store->view().key_by_hash(apikey::sha256(raw)).has_value());
    Raw r{raw, apikey::to_hex(apikey::sha256(raw)), std::string(apikey::key_prefix(raw))};
    BOOST_TEST(import(line_of(r) + "\n").status == 409u);
}

BOOST_AUTO_TEST_SUITE_END()
