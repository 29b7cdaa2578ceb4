#include "key_bucket.h"
#include "key_format.h"
#include "sha256.h"
#include "snapshot_reader.h"
#include "snapshot_schema.h"
#include "snapshot_writer.h"
#include "temp_dir.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <lmdb.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace apikey;
using namespace apikey::snapshot;

namespace {

KeyRecord sample_record(std::optional<std::int64_t> expires_at = std::nullopt) {
    KeyRecord r;
    r.id = random_uuid();
    r.workspace_id = random_uuid();
    r.permission = Permission::read_write;
    r.status = KeyStatus::active;
    r.expires_at = expires_at;
    std::memcpy(r.prefix.data(), "sk_live_AbC1", 12);
    return r;
}

void check_equal(const KeyRecord &a, const KeyRecord &b) {
    BOOST_TEST((a.id == b.id));
    BOOST_TEST((a.workspace_id == b.workspace_id));
    BOOST_TEST((a.permission == b.permission));
    BOOST_TEST((a.status == b.status));
    BOOST_TEST((a.expires_at == b.expires_at));
    BOOST_TEST((a.prefix == b.prefix));
    BOOST_TEST((a.rate_limit == b.rate_limit));
}

// The share of `path`'s pages in the page cache (mincore on a mapping of it), 0..1.
double cached_share(const std::string &path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    BOOST_REQUIRE(fd >= 0);
    struct stat st {};
    BOOST_REQUIRE(::fstat(fd, &st) == 0);
    const std::size_t size = static_cast<std::size_t>(st.st_size), pages = (size + 4095) / 4096;
    void *map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    BOOST_REQUIRE(map != MAP_FAILED);
    std::vector<unsigned char> resident(pages);
    BOOST_REQUIRE(::mincore(map, size, resident.data()) == 0);
    ::munmap(map, size);
    return static_cast<double>(std::count_if(resident.begin(), resident.end(),
                                             [](unsigned char r) { return r & 1; })) /
           static_cast<double>(pages);
}

// A reader of a snapshot published empty in `dir`, whose key table's bucket of `hash`
// was then set to `bytes` behind the writer's back.
std::unique_ptr<Reader> open_with_bucket(test::TempDir &dir, const Digest &hash,
                                         std::string_view bytes) {
    Writer(test::writer_options(dir.sub("snap"))).publish(1, [&](Batch &) {});
    {
        lmdb::Env env(dir.sub("snap"), lmdb::EnvOptions{std::size_t{1} << 32});
        lmdb::Txn txn(env, 0);
        const MDB_dbi keys = lmdb::open_dbi(txn, kKeysDb, 0);
        const std::uint32_t number = key_bucket(hash.data(), key_bucket_bits_for(0));
        lmdb::put(txn, keys, std::string_view(reinterpret_cast<const char *>(&number), 4),
                  bytes);
        txn.commit();
    }
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    return reader;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(snapshot_codec)

BOOST_AUTO_TEST_CASE(key_record_round_trip) {
    for (const auto &expiry : {std::optional<std::int64_t>{}, std::optional<std::int64_t>{0},
                               std::optional<std::int64_t>{1893456000},
                               std::optional<std::int64_t>{-5}}) {
        KeyRecord in = sample_record(expiry);
        KeyRecord out;
        BOOST_REQUIRE(decode(encode(in), out));
        check_equal(in, out);
        in.rate_limit = RateLimit{100, 60};
        BOOST_REQUIRE(decode(encode(in), out));
        check_equal(in, out);
    }
}

BOOST_AUTO_TEST_CASE(key_record_stays_small) {
    // Part of the snapshot-bytes-per-key budget: the value, before LMDB's overhead.
    BOOST_TEST(encode(sample_record()).size() <= kMaxKeyRecordSize);
    KeyRecord plain = sample_record();
    plain.expires_at.reset();
    plain.rate_limit.reset();
    // Format 2: a key without expiry or own rate limit (most keys) is 38 bytes.
    BOOST_TEST(encode(plain).size() == 38u);
}

BOOST_AUTO_TEST_CASE(key_record_decoder_refuses_what_it_does_not_know) {
    const std::string good = encode(sample_record());
    KeyRecord out;
    BOOST_TEST(!decode(good.substr(0, good.size() - 1), out));
    BOOST_TEST(!decode("", out));
    std::string other_version = good;
    other_version[0] = 1;  // format 1's record
    BOOST_TEST(!decode(other_version, out));
    other_version[0] = 3;
    BOOST_TEST(!decode(other_version, out));
    std::string unknown_flag = good;
    unknown_flag[1] = static_cast<char>(unknown_flag[1] | 0x10);
    BOOST_TEST(!decode(unknown_flag, out));
    // A flag announcing a field the record is too short for.
    KeyRecord plain = sample_record();
    plain.expires_at.reset();
    plain.rate_limit.reset();
    std::string truncated = encode(plain);
    truncated[1] = static_cast<char>(truncated[1] | 0x04);
    BOOST_TEST(!decode(truncated, out));
    // Fields appended by a later writer of the same record version are ignored.
    BOOST_TEST(decode(good + "future", out));
}

BOOST_AUTO_TEST_CASE(workspace_record_round_trip) {
    for (const char *origins : {"", "https://app.example.com,http://localhost:3000"}) {
        const WorkspaceRecord in{random_uuid(), 5, origins};
        WorkspaceView out;
        const std::string bytes = encode(in);
        BOOST_REQUIRE(decode(bytes, out));
        BOOST_TEST((in.id == out.id));
        BOOST_TEST(out.max_expand_depth == 5);
        BOOST_TEST(out.cors_origins == origins);
        BOOST_TEST(!decode(bytes.substr(0, bytes.size() - 1), out));
        BOOST_TEST(!decode(bytes.substr(1), out));
    }
}

BOOST_AUTO_TEST_CASE(entity_record_round_trip) {
    EntityRecord all_set;
    all_set.public_access = PublicAccess::read_only;
    all_set.max_expand_depth = 2;
    all_set.default_expand = "customer,items.product";
    all_set.default_fields = "id,name";
    all_set.expandable = "";  // set but empty: nothing is expandable
    all_set.filterable = "name,email";
    all_set.hidden_columns = "ssn";
    const EntityRecord none_set;
    for (const EntityRecord &in : {all_set, none_set}) {
        const std::string bytes = encode(in);
        EntityView out;
        BOOST_REQUIRE(decode(bytes, out));
        BOOST_TEST((out.public_access == in.public_access));
        BOOST_TEST(out.max_expand_depth == in.max_expand_depth);
        BOOST_TEST((out.default_expand == in.default_expand));
        BOOST_TEST((out.default_fields == in.default_fields));
        BOOST_TEST((out.expandable == in.expandable));
        BOOST_TEST((out.filterable == in.filterable));
        BOOST_TEST(out.hidden_columns == in.hidden_columns);
        for (std::size_t cut = 0; cut < bytes.size(); ++cut)
            BOOST_TEST(!decode(bytes.substr(0, cut), out), "truncated to " << cut);
    }
    std::string bad = encode(all_set);
    bad[1] = 9;
    EntityView out;
    BOOST_TEST(!decode(bad, out));
}

BOOST_AUTO_TEST_CASE(u64_round_trip) {
    std::uint64_t v = 0;
    BOOST_REQUIRE(decode_u64(encode_u64(0x0102030405060708ull), v));
    BOOST_TEST(v == 0x0102030405060708ull);
    BOOST_TEST(!decode_u64("1234567", v));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(snapshot_store)

BOOST_AUTO_TEST_CASE(reader_refuses_a_missing_or_unpublished_snapshot) {
    test::TempDir dir;
    std::string error;
    BOOST_TEST(!Reader::open(dir.sub("nope"), error));
    BOOST_TEST(error.find("nope") != std::string::npos);

    Writer writer(test::writer_options(dir.sub("snap")));  // created, never published
    error.clear();
    // The tables exist but no format is stamped yet.
    BOOST_TEST(!Reader::open(dir.sub("snap"), error));
    BOOST_TEST(!error.empty());
}

// data.mdb restored alone into a directory the reader may write: the reader creates
// lock.mdb, with the group mode apikeyd gives it (less the umask), not 0000 (which locked
// every other process out of the snapshot).
BOOST_AUTO_TEST_CASE(reader_creates_a_missing_lock_file_with_the_group_mode) {
    test::TempDir dir;
    {
        Writer writer(test::writer_options(dir.sub("snap")));
        writer.publish(1, [&](Batch &b) {
            b.put_workspace("acme-corp/sales", WorkspaceRecord{sample_record().workspace_id});
        });
    }
    std::filesystem::create_directory(dir.sub("restored"));
    std::filesystem::copy_file(dir.sub("snap") + "/data.mdb", dir.sub("restored") + "/data.mdb");
    const std::string lock = dir.sub("restored") + "/lock.mdb";
    BOOST_REQUIRE(!std::filesystem::exists(lock));

    const mode_t umask_was = ::umask(022);
    std::string error;
    auto reader = Reader::open(dir.sub("restored"), error);
    ::umask(umask_was);
    BOOST_REQUIRE_MESSAGE(reader, error);
    struct stat st {};
    BOOST_REQUIRE(::stat(lock.c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 07777) == (kGroupLockFileMode & ~0022u));
}

BOOST_AUTO_TEST_CASE(published_changes_are_seen_by_an_open_reader) {
    test::TempDir dir;
    Writer writer(test::writer_options(dir.sub("snap")));
    const std::string key = generate_key();
    const Digest hash = sha256(key);
    KeyRecord record = sample_record();
    writer.publish(1, [&](Batch &b) {
        b.put_workspace("acme-corp/sales", WorkspaceRecord{record.workspace_id});
        b.put_key(hash, record);
        EntityRecord customer;
        customer.public_access = PublicAccess::read_write;
        b.put_entity(record.workspace_id, "Customer", customer);
    });
    BOOST_TEST(writer.generation() == 1u);

    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    {
        auto view = reader->view();
        BOOST_REQUIRE(view.ok());
        BOOST_TEST(view.generation() == 1u);
        KeyRecord found;
        BOOST_TEST((view.find_key(hash, found) == Lookup::found));
        check_equal(record, found);
        WorkspaceView ws;
        BOOST_TEST((view.find_workspace("acme-corp/sales", ws) == Lookup::found));
        BOOST_TEST((ws.id == record.workspace_id));
        BOOST_TEST((view.find_workspace("acme-corp/inventory", ws) == Lookup::absent));
        BOOST_TEST((view.find_key(sha256("other"), found) == Lookup::absent));
        EntityView entity;
        BOOST_TEST((view.find_entity(record.workspace_id, "Customer", entity) == Lookup::found));
        BOOST_TEST((entity.public_access == PublicAccess::read_write));
        BOOST_TEST((view.find_entity(record.workspace_id, "Order", entity) == Lookup::absent));
        BOOST_TEST((view.find_entity(random_uuid(), "Customer", entity) == Lookup::absent));
    }

    // A revoke published while the reader stays open is visible in its next view.
    record.status = KeyStatus::revoked;
    writer.publish(2, [&](Batch &b) { b.put_key(hash, record); });
    {
        auto view = reader->view();
        BOOST_REQUIRE(view.ok());
        BOOST_TEST(view.generation() == 2u);
        KeyRecord found;
        BOOST_REQUIRE((view.find_key(hash, found) == Lookup::found));
        BOOST_TEST((found.status == KeyStatus::revoked));
    }

    // A full rebuild empties tables in place: the reader's table handles stay valid.
    writer.publish(3, [&](Batch &b) { b.clear_all(); });
    auto view = reader->view();
    BOOST_REQUIRE(view.ok());
    KeyRecord found;
    BOOST_TEST((view.find_key(hash, found) == Lookup::absent));
}

// The reader keeps its last workspace and entity lookups (found or not) while the snapshot
// version stays: every answer must still be the current snapshot's.
BOOST_AUTO_TEST_CASE(workspace_and_entity_lookups_follow_every_publish) {
    test::TempDir dir;
    Writer writer(test::writer_options(dir.sub("snap")));
    const Uuid ws = random_uuid();
    const std::string long_name(200, 'E');  // longer than what the reader keeps
    std::vector<std::string> entities;
    for (int i = 0; i < 40; ++i) entities.push_back("Entity" + std::to_string(i));  // > slots
    entities.push_back(long_name);
    writer.publish(1, [&](Batch &b) { b.put_workspace("acme/sales", WorkspaceRecord{ws, 3, "https://a"}); });
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    auto check = [&](const char *origins, bool entities_public) {
        for (int round = 0; round < 2; ++round) {  // the second round answered from memory
            auto view = reader->view();
            BOOST_REQUIRE(view.ok());
            WorkspaceView w;
            BOOST_REQUIRE((view.find_workspace("acme/sales", w) == Lookup::found));
            BOOST_TEST(w.cors_origins == origins);
            BOOST_TEST((view.find_workspace("acme/other", w) == Lookup::absent));
            for (const auto &name : entities) {
                EntityView e;
                const Lookup found = view.find_entity(ws, name, e);
                BOOST_TEST((found == (entities_public ? Lookup::found : Lookup::absent)), name);
                if (entities_public) BOOST_TEST((e.public_access == PublicAccess::read_only));
            }
        }
    };
    check("https://a", false);
    writer.publish(2, [&](Batch &b) {
        b.put_workspace("acme/sales", WorkspaceRecord{ws, 3, "https://b"});
        EntityRecord pub;
        pub.public_access = PublicAccess::read_only;
        for (const auto &name : entities) b.put_entity(ws, name, pub);
    });
    check("https://b", true);
    writer.publish(3, [&](Batch &b) {
        b.put_workspace("acme/sales", WorkspaceRecord{ws, 3, "https://c"});
        for (const auto &name : entities) b.delete_entity(ws, name);
    });
    check("https://c", false);
}

BOOST_AUTO_TEST_CASE(a_full_rebuild_writes_keys_in_hash_order_and_applies_edits_in_order) {
    test::TempDir dir;
    Writer writer(test::writer_options(dir.sub("snap")));
    std::vector<std::pair<Digest, KeyRecord>> keys;
    for (int i = 0; i < 3000; ++i) keys.emplace_back(sha256(generate_key()), sample_record());
    const Digest twice = keys[10].first, deleted = keys[20].first, after = sha256(generate_key());
    KeyRecord revoked = keys[10].second;
    revoked.status = KeyStatus::revoked;
    writer.publish(1, [&](Batch &b) {
        b.clear_all();
        for (const auto &[hash, record] : keys) b.put_key(hash, record);  // random order
        b.put_key(twice, revoked);   // the later put of one hash wins
        b.delete_key(deleted);       // applies to the puts before it
        b.put_key(after, sample_record());
    });
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    {
        auto view = reader->view();
        BOOST_REQUIRE(view.ok());
        KeyRecord found;
        for (const auto &[hash, record] : keys) {
            if (hash == twice || hash == deleted) continue;
            BOOST_REQUIRE((view.find_key(hash, found) == Lookup::found));
            check_equal(record, found);
        }
        BOOST_REQUIRE((view.find_key(twice, found) == Lookup::found));
        BOOST_TEST((found.status == KeyStatus::revoked));
        BOOST_TEST((view.find_key(deleted, found) == Lookup::absent));
        BOOST_TEST((view.find_key(after, found) == Lookup::found));
    }
    // Incremental publishes after a rebuild put and delete in place.
    writer.publish(2, [&](Batch &b) {
        b.delete_key(keys[0].first);
        b.put_key(deleted, keys[20].second);
    });
    auto view = reader->view();
    BOOST_REQUIRE(view.ok());
    BOOST_TEST(view.generation() == 2u);
    KeyRecord found;
    BOOST_TEST((view.find_key(keys[0].first, found) == Lookup::absent));
    BOOST_TEST((view.find_key(deleted, found) == Lookup::found));
}

BOOST_AUTO_TEST_CASE(hashes_sharing_their_first_16_bytes_are_told_apart) {
    test::TempDir dir;
    Writer writer(test::writer_options(dir.sub("snap")));
    Digest a = sha256("a"), b = a, c = a;
    b[31] ^= 1;  // same bucket, tag and probe start: another hash
    c[20] ^= 1;
    const KeyRecord ra = sample_record(), rb = sample_record();
    auto check = [&](bool a_in, bool b_in) {
        std::string error;
        auto reader = Reader::open(dir.sub("snap"), error);
        BOOST_REQUIRE_MESSAGE(reader, error);
        auto view = reader->view();
        KeyRecord found;
        BOOST_TEST((view.find_key(a, found) == (a_in ? Lookup::found : Lookup::absent)));
        if (a_in) check_equal(ra, found);
        BOOST_TEST((view.find_key(b, found) == (b_in ? Lookup::found : Lookup::absent)));
        if (b_in) check_equal(rb, found);
        BOOST_TEST((view.find_key(c, found) == Lookup::absent));  // never a partial match
    };
    writer.publish(1, [&](Batch &batch) {  // a rebuild: both in one bucket
        batch.clear_all();
        batch.put_key(b, rb);
        batch.put_key(a, ra);
    });
    check(true, true);
    writer.publish(2, [&](Batch &batch) { batch.delete_key(a); });
    check(false, true);
    writer.publish(3, [&](Batch &batch) { batch.put_key(a, ra); });
    check(true, true);
    writer.publish(4, [&](Batch &batch) {
        batch.delete_key(b);
        batch.delete_key(a);
    });
    check(false, false);
}

BOOST_AUTO_TEST_CASE(reader_refuses_another_format_and_the_writer_reports_generation_0) {
    test::TempDir dir;
    {
        Writer writer(test::writer_options(dir.sub("snap")));
        writer.publish(7, [&](Batch &b) { b.put_key(sha256(generate_key()), sample_record()); });
    }
    {
        // Stamp format 1, as an older apikeyd would have left it.
        lmdb::Env env(dir.sub("snap"), lmdb::EnvOptions{std::size_t{1} << 32});
        lmdb::Txn txn(env, 0);
        const MDB_dbi meta = lmdb::open_dbi(txn, kMetaDb, 0);
        lmdb::put(txn, meta, kMetaFormat, encode_u64(1));
        txn.commit();
    }
    std::string error;
    BOOST_TEST(!Reader::open(dir.sub("snap"), error));
    BOOST_TEST(error.find("has format 1, this module reads format " +
                          std::to_string(kFormatVersion)) != std::string::npos, error);
    Writer writer(test::writer_options(dir.sub("snap")));
    BOOST_TEST(writer.generation() == 0u);  // apikeyd rebuilds on 0
}

// What older apikeyds left: format 1's "keys" table of 32-byte hashes, format 2's
// "key_index" of 8-byte integer keys.
BOOST_DATA_TEST_CASE(an_older_format_is_named_as_such_and_rebuilt_in_place,
                     boost::unit_test::data::make({1, 2}), old_format) {
    test::TempDir dir;
    const std::string key = generate_key();
    const char *legacy_table = kLegacyKeysDbs[old_format - 1];
    {
        std::filesystem::create_directories(dir.sub("snap"));
        lmdb::Env env(dir.sub("snap"), lmdb::EnvOptions{std::size_t{1} << 32});
        lmdb::Txn txn(env, 0);
        const MDB_dbi meta = lmdb::open_dbi(txn, kMetaDb);
        const MDB_dbi keys = lmdb::open_dbi(txn, legacy_table);
        lmdb::open_dbi(txn, kWorkspacesDb);
        lmdb::open_dbi(txn, kEntitiesDb);
        const Digest hash = sha256(key);
        lmdb::put(txn, keys,
                  std::string_view(reinterpret_cast<const char *>(hash.data()), old_format == 1 ? 32 : 8),
                  std::string(64, '\1'));
        lmdb::put(txn, meta, kMetaFormat, encode_u64(old_format));
        lmdb::put(txn, meta, kMetaGeneration, encode_u64(5));
        txn.commit();
    }
    std::string error;
    BOOST_TEST(!Reader::open(dir.sub("snap"), error));
    BOOST_TEST(error.find("has format " + std::to_string(old_format) + ", this module reads format " +
                          std::to_string(kFormatVersion)) != std::string::npos, error);

    {
        // apikeyd's start: generation 0, so a full rebuild, which drops the old table.
        Writer writer(test::writer_options(dir.sub("snap")));
        BOOST_REQUIRE(writer.generation() == 0u);
        writer.publish(6, [&](Batch &b) {
            b.clear_all();
            b.put_key(sha256(key), sample_record());
        });
        auto reader = Reader::open(dir.sub("snap"), error);
        BOOST_REQUIRE_MESSAGE(reader, error);
        auto view = reader->view();
        KeyRecord found;
        BOOST_TEST((view.find_key(sha256(key), found) == Lookup::found));
    }
    lmdb::Env env(dir.sub("snap"), lmdb::EnvOptions{std::size_t{1} << 32});
    lmdb::Txn txn(env, MDB_RDONLY);
    MDB_dbi legacy = 0;
    BOOST_TEST(mdb_dbi_open(txn.get(), legacy_table, 0, &legacy) == MDB_NOTFOUND);
}

// apikeyd picks the bucket count at each full rebuild (key_bucket_bits_for). Written here
// through the schema directly, at 2^3 and then 2^5 buckets, under an open reader.
BOOST_AUTO_TEST_CASE(an_open_reader_follows_a_change_of_bucket_count) {
    test::TempDir dir;
    std::vector<BucketEntry> keys;
    for (int i = 0; i < 200; ++i) keys.push_back(BucketEntry::make(sha256(generate_key()), encode(sample_record())));
    { Writer(test::writer_options(dir.sub("snap"))).publish(1, [](Batch &) {}); }
    auto write_at = [&](unsigned bits, std::uint64_t generation) {
        lmdb::Env env(dir.sub("snap"), lmdb::EnvOptions{std::size_t{1} << 32});
        lmdb::Txn txn(env, 0);
        const MDB_dbi meta = lmdb::open_dbi(txn, kMetaDb, 0);
        const MDB_dbi table = lmdb::open_dbi(txn, kKeysDb, MDB_INTEGERKEY);
        lmdb::clear(txn, table);
        std::map<std::uint32_t, std::vector<BucketEntry>> buckets;
        for (const auto &k : keys) buckets[key_bucket(k.hash.data(), bits)].push_back(k);
        for (auto &[number, entries] : buckets) {
            std::stable_sort(entries.begin(), entries.end(), hash_order);
            lmdb::put(txn, table, std::string_view(reinterpret_cast<const char *>(&number), 4),
                      edit_bucket({}, entries));
        }
        lmdb::put(txn, meta, kMetaKeyBucketBits, encode_u64(bits));
        lmdb::put(txn, meta, kMetaGeneration, encode_u64(generation));
        txn.commit();
    };
    // prefetch_key is a hint in every state: before the view (places of the version
    // before, of a table of another size, or none yet) and before each lookup. It has no
    // result to check: what this catches is a read outside the bucket table (ASan, make
    // test-sanitize) or a lookup it disturbed. (prefetch_bucket_place reads nothing, only
    // issues prefetch instructions: there is nothing of it to check.)
    auto all_found = [&](Reader &reader) {
        for (const auto &k : keys) reader.prefetch_key(k.hash);
        auto view = reader.view();
        BOOST_REQUIRE_MESSAGE(view.ok(), view.error());
        KeyRecord found;
        for (const auto &k : keys) {
            reader.prefetch_key(k.hash);
            BOOST_REQUIRE((view.find_key(k.hash, found) == Lookup::found));
        }
        BOOST_TEST((view.find_key(sha256("not a key"), found) == Lookup::absent));
        return view.generation();
    };
    write_at(3, 2);
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    BOOST_TEST(all_found(*reader) == 2u);
    write_at(5, 3);
    BOOST_TEST(all_found(*reader) == 3u);

    // apikeyd's next incremental publish keeps the table's bucket count.
    keys.push_back(BucketEntry::make(sha256(generate_key()), encode(sample_record())));
    KeyRecord record;
    BOOST_REQUIRE(decode(std::string_view(keys.back().record.data(), kBucketRecordSize), record));
    Writer(test::writer_options(dir.sub("snap"))).publish(4, [&](Batch &b) { b.put_key(keys.back().hash, record); });
    BOOST_TEST(all_found(*reader) == 4u);
    lmdb::Env env(dir.sub("snap"), lmdb::EnvOptions{std::size_t{1} << 32});
    lmdb::Txn txn(env, MDB_RDONLY);
    std::uint64_t bits = 0;
    BOOST_TEST(decode_u64(lmdb::get(txn, lmdb::open_dbi(txn, kMetaDb, 0), kMetaKeyBucketBits).value(), bits));
    BOOST_TEST(bits == 5u);
}

// apikeyd grew the map past what an open reader has mapped (MDB_MAP_RESIZED on its next
// renew): the reader remaps, and nothing it remembered of the old map is used.
BOOST_AUTO_TEST_CASE(an_open_reader_follows_a_grown_map) {
    test::TempDir dir;
    auto options = test::writer_options(dir.sub("snap"));
    options.map_size = std::size_t{1} << 20;
    const Digest first = sha256(generate_key());
    { Writer(options).publish(1, [&](Batch &b) { b.put_key(first, sample_record()); }); }
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    KeyRecord found;
    BOOST_REQUIRE((reader->view().find_key(first, found) == Lookup::found));

    options.map_size = std::size_t{64} << 20;
    std::vector<Digest> more;
    for (int i = 0; i < 20000; ++i) more.push_back(sha256(generate_key()));  // ~2.5 MB
    Writer(options).publish(2, [&](Batch &b) {
        for (const auto &h : more) b.put_key(h, sample_record());
    });
    auto view = reader->view();
    BOOST_REQUIRE_MESSAGE(view.ok(), view.error());
    BOOST_TEST(view.generation() == 2u);
    BOOST_TEST((view.find_key(first, found) == Lookup::found));
    for (const auto &h : more) BOOST_REQUIRE((view.find_key(h, found) == Lookup::found));
}

// A publish that fills the map grows it, doubling up to max_map_size, and runs again in
// the same open writer: an open reader follows (MDB_MAP_RESIZED), the writer goes on.
// Without a ceiling above map_size, a full map fails the publish and writes nothing.
BOOST_AUTO_TEST_CASE(a_full_map_grows_up_to_its_ceiling) {
    test::TempDir dir;
    auto options = test::writer_options(dir.sub("snap"));
    options.map_size = std::size_t{1} << 20;
    options.max_map_size = std::size_t{64} << 20;
    Writer writer(options);
    const Digest first = sha256(generate_key());
    writer.publish(1, [&](Batch &b) { b.put_key(first, sample_record()); });
    BOOST_TEST(writer.map_size() == std::size_t{1} << 20);
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    KeyRecord found;
    BOOST_REQUIRE((reader->view().find_key(first, found) == Lookup::found));

    std::vector<Digest> more;
    for (int i = 0; i < 20000; ++i) more.push_back(sha256(generate_key()));  // ~2.5 MB
    int runs = 0;
    writer.publish(2, [&](Batch &b) {
        ++runs;
        for (const auto &h : more) b.put_key(h, sample_record());
    });
    BOOST_TEST(runs > 1);  // run again after each growth
    BOOST_TEST(writer.map_size() > (std::size_t{1} << 20));
    BOOST_TEST(writer.map_size() <= options.max_map_size);
    {
        auto view = reader->view();
        BOOST_REQUIRE_MESSAGE(view.ok(), view.error());
        BOOST_TEST(view.generation() == 2u);
        for (const auto &h : more) BOOST_REQUIRE((view.find_key(h, found) == Lookup::found));
    }
    writer.publish(3, [&](Batch &b) { b.delete_key(first); });  // and it goes on
    auto view = reader->view();
    BOOST_REQUIRE_MESSAGE(view.ok(), view.error());
    BOOST_TEST((view.find_key(first, found) == Lookup::absent));

    // At the ceiling: MDB_MAP_FULL, nothing of the publish written.
    test::TempDir small;
    auto capped = test::writer_options(small.sub("snap"));
    capped.map_size = std::size_t{1} << 20;
    capped.max_map_size = std::size_t{2} << 20;
    Writer full(capped);
    full.publish(1, [&](Batch &b) { b.put_key(first, sample_record()); });
    BOOST_CHECK_EXCEPTION(full.publish(2, [&](Batch &b) {
                              for (const auto &h : more) b.put_key(h, sample_record());
                          }),
                          lmdb::LmdbError, [](const lmdb::LmdbError &e) { return e.code() == MDB_MAP_FULL; });
    BOOST_TEST(full.map_size() == capped.max_map_size);
    BOOST_TEST(full.generation() == 1u);
}

BOOST_AUTO_TEST_CASE(a_rebuild_picks_the_bucket_count_for_its_keys) {
    BOOST_TEST(key_bucket_bits_for(0) == 12u);
    BOOST_TEST(key_bucket_bits_for(1'000'000) == 12u);  // 244 keys a bucket
    BOOST_TEST(key_bucket_bits_for(1'100'000) == 13u);
    BOOST_TEST(key_bucket_bits_for(10'000'000) == 16u);
    BOOST_TEST(key_bucket_bits_for(std::size_t{1} << 40) == 20u);
    for (std::size_t keys : {std::size_t{5'000}, std::size_t{3'000'000}, std::size_t{200'000'000}}) {
        const unsigned bits = key_bucket_bits_for(keys);
        BOOST_TEST((bits == 12u || bits == 20u || keys >> bits <= 256u));
        BOOST_TEST((bits >= kMinKeyBucketBits && bits <= kMaxKeyBucketBits));
    }
}

BOOST_AUTO_TEST_CASE(a_view_is_a_consistent_snapshot) {
    test::TempDir dir;
    Writer writer(test::writer_options(dir.sub("snap")));
    const Digest hash = sha256(generate_key());
    writer.publish(1, [&](Batch &) {});
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE(reader);
    auto view = reader->view();
    BOOST_REQUIRE(view.ok());
    writer.publish(2, [&](Batch &b) { b.put_key(hash, sample_record()); });
    KeyRecord found;
    // Begun before the publish: still the old state.
    BOOST_TEST((view.find_key(hash, found) == Lookup::absent));
    BOOST_TEST(view.generation() == 1u);
}

BOOST_AUTO_TEST_CASE(corrupt_record_is_reported_not_admitted) {
    test::TempDir dir;
    const Digest hash = sha256("k");
    const auto reader = open_with_bucket(dir, hash, "garbage");
    // Every time: the reader's memory of where buckets lie must not turn damage into an
    // absent key (a place holds whole entries only).
    for (int views = 0; views < 2; ++views) {
        auto view = reader->view();
        BOOST_REQUIRE(view.ok());
        KeyRecord found;
        BOOST_TEST((view.find_key(hash, found) == Lookup::corrupt));
        BOOST_TEST((view.find_key(hash, found) == Lookup::corrupt));
    }
}

// The reader remembers a bucket's place with its entry count in 16 bits; a bigger
// bucket (65,536 entries and more: 5.8 MB) is looked up in LMDB every time, and its keys
// are found all the same.
BOOST_AUTO_TEST_CASE(a_bucket_too_large_to_remember_is_found_every_time) {
    const Digest hash = sha256("k");
    const KeyRecord record = sample_record();
    // 65,536 empty entries and the key in the one its probe starts at (the writer never
    // makes a bucket this big).
    constexpr std::size_t kEntries = std::size_t{1} << 16;
    const std::size_t start = probe_start(hash, kEntries);
    std::string bucket(kEntries * kBucketEntrySize, '\0');
    const BucketEntry entry = BucketEntry::make(hash, encode(record));
    std::memcpy(&bucket[start * kBucketEntrySize], entry.hash.data(), entry.hash.size());
    std::memcpy(&bucket[start * kBucketEntrySize + entry.hash.size()], entry.record.data(),
                entry.record.size());
    test::TempDir dir;
    const auto reader = open_with_bucket(dir, hash, bucket);
    for (int views = 0; views < 2; ++views) {
        auto view = reader->view();
        BOOST_REQUIRE(view.ok());
        reader->prefetch_bucket_place(hash);
        reader->prefetch_key(hash);
        for (int lookups = 0; lookups < 2; ++lookups) {
            KeyRecord found;
            BOOST_REQUIRE((view.find_key(hash, found) == Lookup::found));
            check_equal(record, found);
        }
    }
}

BOOST_AUTO_TEST_CASE(files_are_private_without_a_group) {
    test::TempDir dir;
    Writer writer(test::writer_options(dir.sub("snap")));
    struct stat st {};
    BOOST_REQUIRE(::stat(dir.sub("snap/data.mdb").c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == 0600u);
    BOOST_REQUIRE(::stat(dir.sub("snap").c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == 0700u);
}

// A truncated data.mdb (a bad copy, a restore, `truncate`) used to SIGBUS nginx workers
// and apikeyd on their first read past its end (t/23_fault_snapshot.t).
BOOST_AUTO_TEST_CASE(a_truncated_snapshot_is_refused_and_replaced) {
    test::TempDir dir;
    const std::string snap = dir.sub("snap");
    const std::string data = snap + "/data.mdb";
    {
        Writer writer(test::writer_options(snap));
        writer.publish(7, [&](Batch &b) {
            for (int i = 0; i < 500; ++i) b.put_key(sha256(generate_key()), sample_record());
        });
    }
    struct stat st {};
    BOOST_REQUIRE(::stat(data.c_str(), &st) == 0);
    BOOST_REQUIRE(st.st_size > 8 * 4096);
    std::string error;
    {
        auto reader = Reader::open(snap, error);
        BOOST_REQUIRE(reader);
        BOOST_TEST(reader->file_is_complete());
        // Cut in place under the open reader: it can tell (before any lookup past the end).
        BOOST_REQUIRE(::truncate(data.c_str(), st.st_size / 2) == 0);
        BOOST_TEST(!reader->file_is_complete());
    }
    error.clear();
    BOOST_TEST(!Reader::open(snap, error));
    BOOST_TEST(error.find("is truncated") != std::string::npos, error);

    BOOST_REQUIRE(::truncate(data.c_str(), 100) == 0);  // not even one page
    error.clear();
    BOOST_TEST(!Reader::open(snap, error));
    BOOST_TEST(!error.empty());

    for (const off_t size : {off_t{100}, off_t{8192}}) {
        BOOST_REQUIRE(::truncate(data.c_str(), size) == 0);
        // The writer throws it away and starts a new one (generation 0: rebuild).
        Writer writer(test::writer_options(snap));
        BOOST_TEST(!writer.discarded().empty());
        BOOST_TEST(writer.generation() == 0u);
        writer.publish(8, [&](Batch &b) { b.put_key(sha256(generate_key()), sample_record()); });
        BOOST_TEST(writer.generation() == 8u);
    }
    {
        Writer writer(test::writer_options(snap));  // a complete one is kept
        BOOST_TEST(writer.discarded().empty());
        BOOST_TEST(writer.generation() == 8u);
    }
    error.clear();
    BOOST_TEST((Reader::open(snap, error) != nullptr), error);
}

BOOST_AUTO_TEST_CASE(a_publish_that_rewrote_the_key_table_leaves_the_page_cache) {
    test::TempDir dir;
    struct statfs fs {};
    BOOST_REQUIRE(::statfs(dir.path().c_str(), &fs) == 0);
    if (fs.f_type == TMPFS_MAGIC) {  // tmpfs pages are the file: nothing to drop
        BOOST_TEST_MESSAGE("skipped: the temporary directory is on tmpfs");
        return;
    }
    const std::string data = dir.sub("snap") + "/data.mdb";
    Writer writer(test::writer_options(dir.sub("snap")));
    // 40,000 keys: ~4.7 MB of buckets, more than the 2 MB that make a publish release.
    std::vector<Digest> hashes;
    writer.publish(1, [&](Batch &b) {
        b.clear_all();
        for (int i = 0; i < 40'000; ++i) {
            hashes.push_back(sha256(generate_key()));
            b.put_key(hashes.back(), sample_record());
        }
    });
    BOOST_TEST(cached_share(data) < 0.1);

    // Read back (a worker's lookups), the keys are all there.
    std::string error;
    auto reader = Reader::open(dir.sub("snap"), error);
    BOOST_REQUIRE_MESSAGE(reader, error);
    {
        auto view = reader->view();
        KeyRecord found;
        std::size_t missing = 0;
        for (const auto &h : hashes) missing += view.find_key(h, found) != Lookup::found;
        BOOST_TEST(missing == 0u);
    }
    BOOST_TEST(cached_share(data) > 0.9);

    // A publish of one key leaves the cache alone.
    writer.publish(2, [&](Batch &b) { b.put_key(sha256(generate_key()), sample_record()); });
    BOOST_TEST(cached_share(data) > 0.9);
}

BOOST_AUTO_TEST_CASE(a_writer_knows_when_its_snapshot_was_deleted_or_replaced) {
    test::TempDir dir;
    const std::string snap = dir.sub("snap");
    Writer writer(test::writer_options(snap));
    BOOST_TEST(writer.in_place());
    BOOST_REQUIRE(std::rename((snap + "/data.mdb").c_str(), (snap + "/old.mdb").c_str()) == 0);
    BOOST_TEST(!writer.in_place());  // missing
    BOOST_REQUIRE(std::rename((snap + "/old.mdb").c_str(), (snap + "/data.mdb").c_str()) == 0);
    BOOST_TEST(writer.in_place());
    std::filesystem::copy_file(snap + "/data.mdb", snap + "/copy.mdb");
    BOOST_REQUIRE(std::rename((snap + "/copy.mdb").c_str(), (snap + "/data.mdb").c_str()) == 0);
    BOOST_TEST(!writer.in_place());  // another file at the path
}

BOOST_AUTO_TEST_SUITE_END()
