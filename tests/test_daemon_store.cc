// The authoritative store (generation, constraints, persistence, lock) and the publisher
// (deltas, rebuild at start when the snapshot is new, deleted or stale).
#include "daemon_fixture.h"
#include "key_format.h"

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <filesystem>

using namespace apikeyd;
using apikey::test::DaemonFixture;
using apikey::test::TempDir;
namespace snapshot = apikey::snapshot;

namespace {

Workspace make_workspace(const std::string &org, const std::string &slug) {
    Workspace w;
    w.id = apikey::random_uuid();
    w.org = org;
    w.slug = slug;
    w.name = org + " " + slug;
    w.created_at = w.updated_at = 1000;
    return w;
}

// A key record and its raw key.
std::pair<ApiKey, std::string> make_key(const Uuid &workspace,
                                        Permission permission = Permission::read_write) {
    const std::string raw = apikey::generate_key();
    ApiKey k;
    k.id = apikey::random_uuid();
    k.workspace_id = workspace;
    k.name = "key";
    k.key_prefix = std::string(apikey::key_prefix(raw));
    k.key_sha256 = apikey::sha256(raw);
    k.permission = permission;
    k.created_by = "ops";
    k.created_at = k.updated_at = 1000;
    return {k, raw};
}

Audit at(std::int64_t time = 1000) { return {"ops", time}; }

Store::Options store_options(const TempDir &dir) { return {dir.sub("store"), 16u << 20}; }

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_store)

BOOST_AUTO_TEST_CASE(generation_moves_once_per_mutation) {
    apikeyd::set_log_enabled(false);
    TempDir dir;
    Store store(store_options(dir));
    BOOST_TEST(store.generation() == 1u);  // a new store: never equal to a new snapshot's 0

    Workspace w = make_workspace("acme", "sales");
    const Change c1 = store.create_workspace(w, at());
    BOOST_TEST(c1.generation == 2u);
    BOOST_TEST(w.seq == 2u);
    BOOST_TEST(store.generation() == 2u);

    Workspace dup = make_workspace("acme", "sales");
    BOOST_CHECK_THROW(store.create_workspace(dup, at()), Conflict);
    BOOST_TEST(store.generation() == 2u);  // a refused mutation changes nothing

    auto [key, raw] = make_key(w.id);
    const auto c2 = store.create_key(key, at());
    BOOST_REQUIRE(c2);
    BOOST_TEST(c2->generation == 3u);

    auto [orphan, raw2] = make_key(apikey::random_uuid());
    BOOST_TEST(!store.create_key(orphan, at()).has_value());
    BOOST_TEST(store.generation() == 3u);

    Change change;
    BOOST_TEST((store.revoke_key(w.id, key.id, at(2000), change) == Store::Revoke::revoked));
    BOOST_TEST(change.generation == 4u);
    BOOST_REQUIRE_EQUAL(change.keys_put.size(), 1u);
    BOOST_TEST((change.keys_put[0].status == KeyStatus::revoked));
    BOOST_TEST(change.keys_put[0].updated_at == 2000);
    Change none;
    BOOST_TEST((store.revoke_key(w.id, key.id, at(3000), none) == Store::Revoke::already_revoked));
    BOOST_TEST(store.generation() == 4u);
    BOOST_TEST(store.view().key(key.id)->updated_at == 2000);  // idempotent: updated once
}

BOOST_AUTO_TEST_CASE(keys_are_scoped_and_listed_in_creation_order) {
    TempDir dir;
    Store store(store_options(dir));
    Workspace a = make_workspace("acme", "a"), b = make_workspace("acme", "b");
    store.create_workspace(a, at());
    store.create_workspace(b, at());
    std::vector<Uuid> ids;
    for (int i = 0; i < 5; ++i) {
        auto [k, raw] = make_key(i % 2 ? b.id : a.id);
        BOOST_REQUIRE(store.create_key(k, at()));
        if (i % 2 == 0) ids.push_back(k.id);
    }
    auto view = store.view();
    const auto listed = view.keys_of(a.id);
    BOOST_REQUIRE_EQUAL(listed.size(), ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) BOOST_TEST((listed[i].id == ids[i]));
    BOOST_TEST(view.keys_of(b.id).size() == 2u);
    BOOST_TEST(view.keys_of(apikey::random_uuid()).empty());

    const auto workspaces = view.workspaces();
    BOOST_REQUIRE_EQUAL(workspaces.size(), 2u);
    BOOST_TEST(workspaces[0].slug == "a");
    BOOST_TEST(workspaces[1].slug == "b");

    // A key cannot be revoked through another workspace.
    Change change;
    BOOST_TEST((store.revoke_key(b.id, ids[0], at(5), change) == Store::Revoke::not_found));
    BOOST_TEST((store.revoke_key(apikey::random_uuid(), ids[0], at(5), change) == Store::Revoke::not_found));
    BOOST_TEST((store.revoke_key(a.id, apikey::random_uuid(), at(5), change) == Store::Revoke::not_found));
}

BOOST_AUTO_TEST_CASE(delete_workspace_revokes_keys_and_frees_the_path) {
    TempDir dir;
    Store store(store_options(dir));
    Workspace w = make_workspace("acme", "temp");
    store.create_workspace(w, at());
    auto [k1, raw1] = make_key(w.id);
    auto [k2, raw2] = make_key(w.id);
    store.create_key(k1, at());
    store.create_key(k2, at());
    Change ignored;
    store.revoke_key(w.id, k2.id, at(1500), ignored);

    const auto change = store.delete_workspace(w.id, at(2000));
    BOOST_REQUIRE(change);
    BOOST_REQUIRE_EQUAL(change->workspaces_deleted.size(), 1u);
    BOOST_TEST(change->workspaces_deleted[0].path() == "acme/temp");
    BOOST_REQUIRE_EQUAL(change->keys_put.size(), 2u);
    for (const ApiKey &k : change->keys_put) BOOST_TEST((k.status == KeyStatus::revoked));

    auto view = store.view();
    BOOST_TEST(!view.workspace(w.id));
    BOOST_TEST(view.workspaces().empty());
    BOOST_TEST(view.key(k1.id)->updated_at == 2000);
    BOOST_TEST(view.key(k2.id)->updated_at == 1500);  // already revoked: untouched
    BOOST_TEST(!store.delete_workspace(w.id, at(3000)));

    Workspace again = make_workspace("acme", "temp");
    BOOST_CHECK_NO_THROW(store.create_workspace(again, at()));
}

BOOST_AUTO_TEST_CASE(everything_survives_a_reopen) {
    TempDir dir;
    Workspace w = make_workspace("acme", "sales");
    auto [k, raw] = make_key(w.id, Permission::read_only);
    k.expires_at = 1'900'000'000;
    {
        Store store(store_options(dir));
        store.create_workspace(w, at());
        store.create_key(k, at());
    }
    Store store(store_options(dir));
    BOOST_TEST(store.generation() == 3u);
    auto view = store.view();
    const auto w2 = view.workspace(w.id);
    BOOST_REQUIRE(w2);
    BOOST_TEST(w2->name == w.name);
    BOOST_TEST(w2->path() == "acme/sales");
    const auto k2 = view.key(k.id);
    BOOST_REQUIRE(k2);
    BOOST_TEST(k2->key_prefix == k.key_prefix);
    BOOST_TEST((k2->key_sha256 == k.key_sha256));
    BOOST_TEST((k2->permission == Permission::read_only));
    BOOST_TEST((k2->expires_at == k.expires_at));
    BOOST_TEST(!k2->last_used_at.has_value());
    BOOST_TEST(k2->created_by == "ops");
}

BOOST_AUTO_TEST_CASE(store_files_are_private_and_locked) {
    TempDir dir;
    Store store(store_options(dir));
    namespace fs = std::filesystem;
    const auto private_mode = [](const std::string &p) {
        return (fs::status(p).permissions() & (fs::perms::group_all | fs::perms::others_all)) ==
               fs::perms::none;
    };
    BOOST_TEST(private_mode(dir.sub("store")));
    BOOST_TEST(private_mode(dir.sub("store/data.mdb")));
    BOOST_TEST(private_mode(dir.sub("store/lock.mdb")));
    // A second daemon on the same data_dir is refused.
    BOOST_CHECK_THROW(Store second(store_options(dir)), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(records_round_trip_and_refuse_garbage) {
    auto [k, raw] = make_key(apikey::random_uuid());
    k.expires_at = 42;
    k.last_used_at = 43;
    k.status = KeyStatus::revoked;
    const ApiKey back = decode_key(encode(k));
    BOOST_TEST((back.id == k.id));
    BOOST_TEST((back.expires_at == k.expires_at));
    BOOST_TEST((back.last_used_at == k.last_used_at));
    BOOST_TEST((back.status == KeyStatus::revoked));
    BOOST_TEST(encode(k).find(raw) == std::string::npos);  // never the raw key

    BOOST_CHECK_THROW(decode_key("not json"), CorruptRecord);
    BOOST_CHECK_THROW(decode_key("{}"), CorruptRecord);
    BOOST_CHECK_THROW(decode_workspace("{\"v\":2}"), CorruptRecord);
}

// --- publisher ---------------------------------------------------------------------------

BOOST_FIXTURE_TEST_CASE(first_start_publishes_an_empty_snapshot, DaemonFixture) {
    BOOST_TEST(snapshot_generation() == 1u);
    BOOST_TEST(publisher->published_generation() == 1u);
    BOOST_TEST(!snapshot_workspace("acme/sales"));
}

BOOST_FIXTURE_TEST_CASE(each_mutation_is_published_with_its_generation, DaemonFixture) {
    Workspace w = make_workspace("acme", "sales");
    publisher->apply(store->create_workspace(w, at()));
    BOOST_TEST(snapshot_generation() == 2u);
    const auto ws = snapshot_workspace("acme/sales");
    BOOST_REQUIRE(ws);
    BOOST_TEST((ws->id == w.id));

    auto [k, raw] = make_key(w.id);
    publisher->apply(*store->create_key(k, at()));
    BOOST_TEST(snapshot_generation() == 3u);
    auto rec = snapshot_key(raw);
    BOOST_REQUIRE(rec);
    BOOST_TEST((rec->status == KeyStatus::active));

    publisher->apply(*store->delete_workspace(w.id, at(5000)));
    BOOST_TEST(snapshot_generation() == 4u);
    BOOST_TEST(!snapshot_workspace("acme/sales"));
    rec = snapshot_key(raw);
    BOOST_REQUIRE(rec);  // kept, as revoked: nginx answers key_revoked, not unknown_key
    BOOST_TEST((rec->status == KeyStatus::revoked));
}

BOOST_FIXTURE_TEST_CASE(crash_between_the_two_commits_is_repaired_at_start, DaemonFixture) {
    Workspace w = make_workspace("acme", "sales");
    publisher->apply(store->create_workspace(w, at()));
    auto [k, raw] = make_key(w.id);
    store->create_key(k, at());  // committed, never published: the daemon "crashed" here
    BOOST_TEST(!snapshot_key(raw));
    BOOST_TEST(snapshot_generation() == 2u);

    reopen();  // sync() sees snapshot 2 != store 3 and rebuilds
    BOOST_TEST(snapshot_generation() == 3u);
    BOOST_TEST(snapshot_key(raw).has_value());
    BOOST_TEST(snapshot_workspace("acme/sales").has_value());
}

BOOST_FIXTURE_TEST_CASE(a_gap_in_generations_rebuilds_instead_of_applying, DaemonFixture) {
    Workspace w = make_workspace("acme", "sales");
    store->create_workspace(w, at());  // not published
    auto [k, raw] = make_key(w.id);
    const auto change = store->create_key(k, at());
    publisher->apply(*change);  // generation 3 on top of 1: a delta would lose the workspace
    BOOST_TEST(snapshot_generation() == 3u);
    BOOST_TEST(snapshot_workspace("acme/sales").has_value());
    BOOST_TEST(snapshot_key(raw).has_value());
}

BOOST_FIXTURE_TEST_CASE(deleted_snapshot_is_rebuilt_with_everything, DaemonFixture) {
    Workspace live = make_workspace("acme", "live"), gone = make_workspace("acme", "gone");
    publisher->apply(store->create_workspace(live, at()));
    publisher->apply(store->create_workspace(gone, at()));
    auto [k1, raw1] = make_key(live.id);
    auto [k2, raw2] = make_key(live.id);
    auto [k3, raw3] = make_key(gone.id);
    publisher->apply(*store->create_key(k1, at()));
    publisher->apply(*store->create_key(k2, at()));
    publisher->apply(*store->create_key(k3, at()));
    Change change;
    store->revoke_key(live.id, k2.id, at(10), change);
    publisher->apply(change);
    publisher->apply(*store->delete_workspace(gone.id, at(11)));

    close();
    std::filesystem::remove_all(snapshot_dir());
    open();

    BOOST_TEST(snapshot_generation() == store->generation());
    BOOST_TEST(snapshot_workspace("acme/live").has_value());
    BOOST_TEST(!snapshot_workspace("acme/gone").has_value());
    BOOST_TEST((snapshot_key(raw1)->status == KeyStatus::active));
    BOOST_TEST((snapshot_key(raw2)->status == KeyStatus::revoked));
    BOOST_TEST((snapshot_key(raw3)->status == KeyStatus::revoked));
    const auto rec = snapshot_key(raw1);
    BOOST_TEST((rec->id == k1.id));
    BOOST_TEST((rec->workspace_id == live.id));
    BOOST_TEST(std::string(rec->prefix.data(), rec->prefix.size()) == k1.key_prefix);
}

BOOST_FIXTURE_TEST_CASE(stale_snapshot_content_is_replaced_by_a_rebuild, DaemonFixture) {
    Workspace w = make_workspace("acme", "sales");
    publisher->apply(store->create_workspace(w, at()));
    close();
    // Something foreign in the snapshot (an older store's data) at another generation.
    {
        apikey::snapshot::Writer writer(apikey::test::writer_options(snapshot_dir()));
        writer.publish(99, [](apikey::snapshot::Batch &b) {
            apikey::snapshot::WorkspaceRecord r;
            r.id = apikey::random_uuid();
            b.put_workspace("old/ws", r);
        });
    }
    open();
    BOOST_TEST(snapshot_generation() == 2u);
    BOOST_TEST(!snapshot_workspace("old/ws").has_value());
    BOOST_TEST(snapshot_workspace("acme/sales").has_value());
}

BOOST_FIXTURE_TEST_CASE(up_to_date_snapshot_is_not_rebuilt, DaemonFixture) {
    Workspace w = make_workspace("acme", "sales");
    publisher->apply(store->create_workspace(w, at()));
    close();
    store = std::make_unique<Store>(Store::Options{store_dir(), 64u << 20});
    publisher = std::make_unique<Publisher>(*store, apikey::test::writer_options(snapshot_dir()));
    BOOST_TEST(!publisher->sync());
    BOOST_TEST(publisher->published_generation() == 2u);
}

// Truncated, the store used to SIGBUS apikeyd at start; it is refused, saying why.
BOOST_AUTO_TEST_CASE(a_truncated_store_is_refused) {
    TempDir dir;
    {
        Store store(store_options(dir));
        Workspace w = make_workspace("acme", "sales");
        store.create_workspace(w, at());
        for (int i = 0; i < 300; ++i) {
            auto [k, raw] = make_key(w.id, Permission::read_only);
            store.create_key(k, at());
        }
    }
    const std::string data = dir.sub("store") + "/data.mdb";
    BOOST_REQUIRE(::truncate(data.c_str(), 8192) == 0);
    try {
        Store store(store_options(dir));
        BOOST_FAIL("a truncated store was opened");
    } catch (const std::runtime_error &e) {
        BOOST_TEST(std::string(e.what()).find("is truncated") != std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_SUITE_END()
