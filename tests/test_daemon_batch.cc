// Group commit (Api::handle_batch): the mutations of a batch share one durable store
// commit and one snapshot publish, each keeps its own generation and feed entry, a
// failing one aborts only itself, and a failed commit acknowledges nothing.
#include "daemon_fixture.h"
#include "key_format.h"

#include <boost/test/unit_test.hpp>

using namespace apikeyd;
using apikey::test::DaemonFixture;
using apikey::test::kAdminToken;
using nlohmann::json;

namespace {

const std::string kBearer = std::string("Bearer ") + kAdminToken;

// The requests of one batch; they own the strings Request points into.
struct BatchOf {
    struct Call {
        std::string method, target, body;
    };
    std::vector<Call> calls;

    BatchOf &add(std::string method, std::string target, std::string body = {}) {
        calls.push_back({std::move(method), std::move(target), std::move(body)});
        return *this;
    }
    std::vector<Response> run(Api &api) const {
        std::vector<Request> requests;
        for (const Call &c : calls) {
            Request r;
            r.method = c.method;
            r.target = c.target;
            r.body = c.body;
            r.authorization = kBearer;
            requests.push_back(r);
        }
        return api.handle_batch(requests);
    }
};

std::string keys_of(const std::string &ws) { return "/api/v1/workspaces/" + ws + "/api-keys"; }

json feed(DaemonFixture &f, std::uint64_t after) {
    const Response r = f.call("GET", "/api/v1/changes?after=" + std::to_string(after));
    BOOST_REQUIRE_EQUAL(r.status, 200u);
    return json::parse(r.body)["changes"];
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_batch)

BOOST_FIXTURE_TEST_CASE(creates_of_one_batch_share_one_commit_and_one_publish, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::uint64_t generation = store->generation();
    const std::uint64_t commits = store->commits();
    BatchOf batch;
    for (int i = 0; i < 5; ++i) batch.add("POST", keys_of(ws), R"({"name":"k)" + std::to_string(i) + "\"}");
    batch.add("GET", keys_of(ws));
    const auto out = batch.run(*api);
    BOOST_REQUIRE_EQUAL(out.size(), 6u);

    BOOST_TEST(store->commits() == commits + 1);  // one durable commit for five creates
    BOOST_TEST(store->generation() == generation + 5);
    BOOST_TEST(snapshot_generation() == generation + 5);  // one publish, the last generation
    BOOST_TEST(publisher->published_generation() == generation + 5);
    const json entries = feed(*this, generation);
    BOOST_REQUIRE_EQUAL(entries.size(), 5u);
    for (std::size_t i = 0; i < 5; ++i) {
        BOOST_REQUIRE_EQUAL(out[i].status, 201u);
        const json key = json_of(out[i]);
        // Distinct generations, the feed in request order.
        BOOST_TEST(entries[i]["seq"] == generation + 1 + i);
        BOOST_TEST(entries[i]["type"] == "api_key.created");
        BOOST_TEST(entries[i]["object"]["id"] == key["id"]);
        BOOST_TEST(key["name"] == "k" + std::to_string(i));
        BOOST_TEST(snapshot_key(key["key"]).has_value());
    }
    // A read in the batch is answered too (after the commit).
    BOOST_TEST(out[5].status == 200u);
}

BOOST_FIXTURE_TEST_CASE(a_failing_mutation_aborts_only_itself_and_later_ones_see_earlier_ones,
                        DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string key = create_key(ws)["id"];
    const std::uint64_t generation = store->generation();
    const std::uint64_t commits = store->commits();
    const auto out = BatchOf()
                         .add("POST", keys_of(ws), R"({"name":"first"})")
                         .add("POST", keys_of(ws), R"({"name":"bad","permission":"root"})")
                         .add("POST", "/api/v1/workspaces", R"({"org":"acme","slug":"x","name":"x"})")
                         // The same org/slug again: sees the create before it, uncommitted.
                         .add("POST", "/api/v1/workspaces", R"({"org":"acme","slug":"x","name":"x"})")
                         .add("DELETE", keys_of(ws) + "/" + key)
                         .add("DELETE", keys_of(ws) + "/" + key)  // idempotent: no second entry
                         .add("POST", keys_of(ws), R"({"name":"last"})")
                         .run(*api);
    BOOST_REQUIRE_EQUAL(out.size(), 7u);
    BOOST_TEST(out[0].status == 201u);
    BOOST_TEST(out[1].status == 400u);
    BOOST_TEST(out[2].status == 201u);
    BOOST_TEST(out[3].status == 409u);
    BOOST_TEST(out[4].status == 200u);
    BOOST_TEST(out[5].status == 200u);
    BOOST_TEST(json_of(out[5])["status"] == "revoked");
    BOOST_TEST(out[6].status == 201u);
    BOOST_TEST(store->commits() == commits + 1);

    const json entries = feed(*this, generation);
    BOOST_REQUIRE_EQUAL(entries.size(), 4u);
    const char *types[] = {"api_key.created", "workspace.created", "api_key.revoked", "api_key.created"};
    for (std::size_t i = 0; i < 4; ++i) {
        BOOST_TEST(entries[i]["seq"] == generation + 1 + i);
        BOOST_TEST(entries[i]["type"] == types[i]);
    }
    BOOST_TEST(entries[3]["object"]["name"] == "last");
    BOOST_TEST(snapshot_generation() == generation + 4);
    BOOST_TEST(snapshot_workspace("acme/x").has_value());
    BOOST_TEST(snapshot_key(json_of(out[6])["key"]).has_value());
}

BOOST_FIXTURE_TEST_CASE(a_failed_batch_commit_acknowledges_nothing, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::uint64_t generation = store->generation();
    const std::uint64_t commits = store->commits();
    store->set_before_batch_commit([] { throw apikey::lmdb::LmdbError(EIO, "injected"); });
    const auto out = BatchOf()
                         .add("POST", keys_of(ws), R"({"name":"a"})")
                         .add("POST", "/api/v1/workspaces", R"({"org":"acme","slug":"x","name":"x"})")
                         .add("GET", keys_of(ws))  // it would show the uncommitted key
                         .run(*api);
    BOOST_REQUIRE_EQUAL(out.size(), 3u);
    for (const Response &r : out) {
        BOOST_TEST(r.status == 503u);
        BOOST_TEST(json::parse(r.body)["error"]["code"] == "store_unavailable");
        BOOST_TEST(r.body.find("sk_live_") == std::string::npos);
        BOOST_TEST(r.actor == "ops");
    }
    BOOST_TEST(store->commits() == commits);
    BOOST_TEST(store->generation() == generation);
    BOOST_TEST(snapshot_generation() == generation);
    BOOST_TEST(feed(*this, generation).empty());
    BOOST_TEST(json_of(call("GET", keys_of(ws))).empty());

    // The next batch works, and takes the generations the failed one did not keep.
    store->set_before_batch_commit(nullptr);
    const auto again = BatchOf().add("POST", keys_of(ws), R"({"name":"a"})").run(*api);
    BOOST_TEST(again[0].status == 201u);
    BOOST_TEST(store->generation() == generation + 1);
    BOOST_TEST(snapshot_generation() == generation + 1);
    BOOST_TEST(snapshot_key(json_of(again[0])["key"]).has_value());
}

BOOST_FIXTURE_TEST_CASE(a_patch_answers_with_the_batch_state_and_one_key_is_published_once,
                        DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string key = create_key(ws)["id"];
    const auto out = BatchOf()
                         .add("PATCH", keys_of(ws) + "/" + key, R"({"name":"renamed"})")
                         .add("DELETE", keys_of(ws) + "/" + key)
                         .run(*api);
    BOOST_REQUIRE_EQUAL(out[0].status, 200u);
    BOOST_TEST(json_of(out[0])["name"] == "renamed");  // its own write, not yet committed
    BOOST_TEST(out[1].status == 200u);
    const json k = json_of(call("GET", keys_of(ws) + "/" + key));
    BOOST_TEST(k["name"] == "renamed");
    BOOST_TEST(k["status"] == "revoked");
    BOOST_TEST(snapshot_generation() == store->generation());
}

// Imports in a batch with the mutations they could race: a hash imported by an earlier
// request of the batch conflicts, a workspace deleted earlier in the batch is a 404, a bad
// batch leaves nothing; the feed's seqs stay contiguous, and the snapshot holds exactly the
// keys of the imports that were answered 201.
BOOST_FIXTURE_TEST_CASE(imports_in_a_batch_see_the_batch_and_leave_no_gap, DaemonFixture) {
    const std::string ws = create_workspace("acme", "sales")["id"];
    const std::string other = create_workspace("acme", "other")["id"];
    std::vector<std::string> raw;
    for (int i = 0; i < 5; ++i) raw.push_back(apikey::generate_key());
    const auto line = [&](int i) {
        return json{{"key_sha256", apikey::to_hex(apikey::sha256(raw[i]))},
                    {"key_prefix", std::string(apikey::key_prefix(raw[i]))},
                    {"name", "k"}}.dump() + "\n";
    };
    const auto import_into = [](const std::string &w) { return keys_of(w) + "/import"; };
    const std::uint64_t generation = store->generation();
    const auto out = BatchOf()
                         .add("POST", import_into(ws), line(0) + line(1))
                         .add("POST", import_into(ws), line(1) + line(2))      // 1 taken above
                         .add("POST", import_into(other), line(3))
                         .add("DELETE", "/api/v1/workspaces/" + other)
                         .add("POST", import_into(other), line(4))              // deleted above
                         .add("POST", import_into(ws), line(2) + "{\"bad\n")   // a bad line
                         .run(*api);
    BOOST_REQUIRE_EQUAL(out.size(), 6u);
    const unsigned expected[] = {201, 409, 201, 200, 404, 400};
    for (std::size_t i = 0; i < 6; ++i) BOOST_TEST(out[i].status == expected[i], i << ": " << out[i].body);

    const json entries = feed(*this, generation);
    BOOST_REQUIRE_EQUAL(entries.size(), 3u);
    const char *types[] = {"api_key.imported", "api_key.imported", "workspace.deleted"};
    for (std::size_t i = 0; i < 3; ++i) {
        BOOST_TEST(entries[i]["seq"] == generation + 1 + i);
        BOOST_TEST(entries[i]["type"] == types[i]);
    }
    BOOST_TEST(store->generation() == generation + 3);
    BOOST_TEST(snapshot_generation() == generation + 3);
    BOOST_TEST(snapshot_key(raw[0]).has_value());
    BOOST_TEST(snapshot_key(raw[1]).has_value());
    BOOST_TEST(!snapshot_key(raw[2]).has_value());
    BOOST_TEST((snapshot_key(raw[3]) && snapshot_key(raw[3])->status == apikey::snapshot::KeyStatus::revoked));
    BOOST_TEST(!snapshot_key(raw[4]).has_value());
    BOOST_TEST(json_of(call("GET", keys_of(ws))).size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(a_failed_batch_publish_is_a_503_for_its_changes_only, DaemonFixture) {
    close();
    snapshot_map_size = 256u << 10;
    open();
    const std::string ws = create_workspace("acme", "sales")["id"];
    // Fill the snapshot until a batch's publish fails (the store has room).
    std::vector<Response> out;
    for (int i = 0; i < 2000; ++i) {
        BatchOf batch;
        for (int j = 0; j < 10; ++j) batch.add("POST", keys_of(ws), R"({"name":"k"})");
        batch.add("GET", "/api/v1/workspaces/" + ws);
        out = batch.run(*api);
        if (out[0].status != 201) break;
    }
    BOOST_REQUIRE_EQUAL(out[0].status, 503u);
    for (std::size_t j = 0; j < 10; ++j) {
        BOOST_TEST(out[j].status == 503u);
        BOOST_TEST(json::parse(out[j].body)["error"]["code"] == "publish_failed");
        BOOST_TEST(out[j].body.find("sk_live_") == std::string::npos);
    }
    BOOST_TEST(out[10].status == 200u);  // the read changed nothing
    BOOST_TEST(publisher->published_generation() == 0u);
    // Stored, published by the start's rebuild once there is room.
    const std::uint64_t generation = store->generation();
    close();
    snapshot_map_size = 64u << 20;
    open();
    BOOST_TEST(snapshot_generation() == generation);
}

BOOST_AUTO_TEST_SUITE_END()
