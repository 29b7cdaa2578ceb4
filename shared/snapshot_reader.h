// Read side of the snapshot, for nginx workers: opened once per worker after fork, one
// read transaction per request (renew at the start, reset at the end), nothing thrown,
// nothing allocated on the request path (but the bucket cache, once after a rebuild that
// changed the key table's bucket count).
#pragma once

#include "sha256.h"
#include "snapshot_schema.h"

#include <lmdb.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace apikey::snapshot {

enum class Lookup { found, absent, corrupt };

class Reader {
public:
    // nullptr with `error` set when the snapshot is missing, unreadable, not yet published
    // or of a format this build does not know.
    static std::unique_ptr<Reader> open(const std::string &dir, std::string &error) noexcept;
    ~Reader();
    Reader(const Reader &) = delete;
    Reader &operator=(const Reader &) = delete;

    // Frees reader slots of dead processes; returns how many, or -1 on error.
    int reader_check() noexcept;

    // False when data.mdb became shorter than the newest commit needs (truncated in place
    // after it was opened): the next lookup past its end would SIGBUS the process.
    bool file_is_complete() noexcept;

    // A consistent view of the newest published snapshot, for one request.
    class View {
    public:
        ~View();
        View(View &&other) noexcept;
        View(const View &) = delete;
        View &operator=(const View &) = delete;
        View &operator=(View &&) = delete;

        // False when no transaction could be started or the format changed under us;
        // `error()` then says why.
        bool ok() const noexcept { return reader_ != nullptr; }
        const char *error() const noexcept { return error_; }

        Lookup find_key(const Digest &hash, KeyRecord &out) const noexcept;
        Lookup find_workspace(std::string_view path, WorkspaceView &out) const noexcept;
        Lookup find_entity(const Uuid &workspace, std::string_view entity,
                           EntityView &out) const noexcept;
        std::uint64_t generation() const noexcept { return generation_; }
        // Read on demand: only monitoring needs it, not the request path. 0 if unknown.
        std::int64_t published_at_ms() const noexcept;

    private:
        friend class Reader;
        View() = default;
        Reader *reader_ = nullptr;
        const char *error_ = nullptr;
        std::uint64_t generation_ = 0;
    };

    View view() noexcept;

    // Hints that a view's find_key(hash) follows, without a transaction, in two steps
    // with as much work between them as the caller has (present_key: the checksum):
    // prefetch_bucket_place starts loading where the key's bucket lies (a line of the
    // per-worker bucket table, evicted between requests); prefetch_key reads that place
    // and starts loading the entries where the probe begins. The entry is one of a
    // million, a cache and TLB miss that overlaps the work done before the lookup.
    // Where no earlier lookup remembered the bucket's place, prefetch_key does nothing.
    void prefetch_bucket_place(const Digest &hash) const noexcept;
    void prefetch_key(const Digest &hash) const noexcept;

private:
    Reader() = default;
    // Begins or renews the transaction, adopting a grown map; returns an LMDB code.
    int start() noexcept;
    // Reads the meta records of a transaction id not seen before; false when they say
    // another format or an impossible bucket count.
    bool read_meta() noexcept;
    // The bucket `number` of the key table in the current transaction (empty: none), or
    // an LMDB error code.
    int bucket(std::uint32_t number, std::string_view &out) noexcept;

    MDB_env *env_ = nullptr;
    MDB_txn *txn_ = nullptr;  // kept across requests, reset between them
    MDB_dbi meta_ = 0, keys_ = 0, workspaces_ = 0, entities_ = 0;
    // Transaction id the meta records were last read in (0: never) and what they said.
    std::size_t meta_txn_id_ = 0;
    std::uint64_t generation_ = 0;
    unsigned bucket_bits_ = 0;

    // Where each bucket of the key table lies in the map, found by an mdb_get once per
    // snapshot version and kept while the transaction id stays: pages of the newest
    // commit are never reused by the writer, so a pointer taken in an earlier transaction
    // of the same id (reset and renewed since) still points at the same bytes. `epoch_`
    // moves whenever the id moves or the map is remapped; a place of another epoch is
    // unknown (to the lookup; the prefetch still uses it).
    //
    // The places and their epochs are two arrays of 2^bits, one calloc'ed block sized
    // when the bucket count changes (a rebuild); without it every lookup does its mdb_get.
    // A place is 8 bytes, so that the prefetch reads 32 KB at 4,096 buckets rather than
    // 96 KB of {epoch, pointer, size} records, which did not stay in cache between
    // requests (docs/BENCHMARKS.md).
    struct FreeBuckets {
        void operator()(std::uint64_t *p) const noexcept;
    };
    std::unique_ptr<std::uint64_t[], FreeBuckets> buckets_;
    unsigned buckets_bits_ = 0;  // what buckets_ was sized for
    // The place of bucket `number`, nullptr when buckets_ is not sized for the current
    // bucket count; the epoch of a place bucket_place returned.
    std::uint64_t *bucket_place(std::uint32_t number) const noexcept;
    std::uint64_t *epoch_of(std::uint64_t *place) const noexcept {
        return place + (std::size_t{1} << buckets_bits_);
    }
    std::uint64_t epoch_ = 1;

    // The last lookups of the workspace and entity tables (a handful of keys serve most
    // requests), found or not, kept for the epoch like the bucket cache: direct-mapped by
    // a hash of the key, keys up to kRecentKeyMax bytes.
    static constexpr std::size_t kRecentKeyMax = 128, kRecentSlots = 16;
    // Everything a hit reads comes first: for keys up to 32 bytes (a workspace path, an
    // entity) a hit touches one cache line.
    struct RecentGet {
        std::uint64_t epoch = 0;
        std::size_t key_size = 0;
        const char *data = nullptr;  // nullptr: not in the table
        std::size_t size = 0;
        char key[kRecentKeyMax];
    };
    using RecentGets = std::array<RecentGet, kRecentSlots>;
    // mdb_get through `recent`: MDB_SUCCESS with `out`, MDB_NOTFOUND, or an LMDB error.
    int get(MDB_dbi dbi, RecentGets &recent, std::string_view key, std::string_view &out) noexcept;
    RecentGets recent_workspaces_{}, recent_entities_{};
};

}  // namespace apikey::snapshot
