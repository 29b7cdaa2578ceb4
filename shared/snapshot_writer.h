// Publishes the data-plane snapshot. apikeyd is its only writer; every change is one
// LMDB write transaction, so each nginx worker sees the new state on its next request
// (its next read transaction) and never a half-applied change.
#pragma once

#include "key_bucket.h"
#include "lmdb_handle.h"
#include "sha256.h"
#include "snapshot_schema.h"

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace apikey::snapshot {

struct WriterOptions {
    std::string dir;
    std::size_t map_size = std::size_t{1} << 32;  // address space, not disk: the file is sparse
    // Ceiling of the map's growth: a publish that finds the map full (MDB_MAP_FULL) is
    // run again on a map twice as large (mdb_env_set_mapsize between transactions; nginx
    // workers adopt it on MDB_MAP_RESIZED), up to this size. 0 (or not above map_size):
    // the map never grows and a full map fails the publish.
    std::size_t max_map_size = 0;
    // Group the nginx workers run in. The directory and data.mdb become readable by it and
    // lock.mdb writable (LMDB readers take a slot there). Without a group everything is
    // private to apikeyd's user, for an nginx running as that same user.
    std::optional<gid_t> group;
    // false: no durable sync of the meta page at each commit (LMDB's MDB_NOMETASYNC). The
    // data pages are still synced before the meta page is written, so a system crash never
    // leaves a torn snapshot; it may undo the last publishes (the snapshot is then behind,
    // at an older consistent generation). apikeyd sets this: it compares the generations
    // at start and rebuilds a snapshot that is behind its store (docs/BENCHMARKS.md,
    // "Control plane"). One fsync per publish instead of two.
    bool sync_meta = true;
};

// The edits of one publish, applied inside its transaction. Key edits are collected and
// written at the end of the publish, each touched bucket of the key table read and
// written once, in bucket order: a publish of many keys (a bulk import, a full rebuild)
// costs one pass over the buckets it touches, not one bucket copy per key.
class Batch {
public:
    void put_key(const Digest &hash, const KeyRecord &record);
    void delete_key(const Digest &hash);
    void put_workspace(std::string_view path, const WorkspaceRecord &record);
    void delete_workspace(std::string_view path);
    void put_entity(const Uuid &workspace, std::string_view entity, const EntityRecord &record);
    void delete_entity(const Uuid &workspace, std::string_view entity);
    // Empties every table: the start of a full rebuild. The key table then gets the bucket
    // count chosen for the number of keys put after it (key_bucket_bits_for), its buckets
    // appended in order (MDB_APPEND: full pages, no free pages inside the table).
    void clear_all();

private:
    friend class Writer;
    Batch(lmdb::Txn &txn, MDB_dbi keys, MDB_dbi workspaces, MDB_dbi entities,
          unsigned bucket_bits)
        : txn_(txn), keys_(keys), workspaces_(workspaces), entities_(entities),
          bucket_bits_(bucket_bits) {}
    // Writes the collected key edits: for each key the last one wins.
    void flush_keys();
    lmdb::Txn &txn_;
    MDB_dbi keys_, workspaces_, entities_;
    unsigned bucket_bits_;     // the key table's, stamped into meta by the publish
    bool rebuilding_ = false;  // clear_all() was called
    std::size_t key_bytes_written_ = 0;   // buckets put by flush_keys()
    std::vector<BucketEntry> key_edits_;  // in call order; an empty record deletes
};

class Writer {
public:
    // Creates the directory and environment if needed. Throws on any failure.
    explicit Writer(const WriterOptions &options);

    // Non-empty when the constructor found a truncated snapshot and replaced it with a new
    // one: what it found (for the log).
    const std::string &discarded() const { return discarded_; }

    // False when the directory's data.mdb is no longer the file this writer has open
    // (deleted, or replaced by another): publishing would only reach the orphan, which
    // nginx workers started from now on never see.
    bool in_place() const;

    // The generation of the last publish, 0 for a new or foreign-format snapshot.
    std::uint64_t generation();

    // Runs `edit` and stamps format, `generation` and the time in one transaction. A
    // publish that wrote 2 MB or more of the key table (a full rebuild, a bulk import)
    // then drops data.mdb's pages from the page cache, so that nginx
    // workers read them back in 2 MB folios (snapshot_writer.cc, release_page_cache).
    // A full map is grown (WriterOptions::max_map_size) and `edit` run again from the
    // start, so it must only depend on its arguments and what it reads. Throws
    // lmdb::LmdbError MDB_MAP_FULL when the map is full at its ceiling.
    void publish(std::uint64_t generation, const std::function<void(Batch &)> &edit);

    // The map's size now (it only grows while this writer is open).
    std::size_t map_size() const;
    std::size_t max_map_size() const { return max_map_size_; }

private:
    void publish_once(std::uint64_t generation, const std::function<void(Batch &)> &edit);
    // Doubles the map, capped at the ceiling; false when it is at the ceiling already.
    bool grow_map();

    std::size_t max_map_size_ = 0;
    std::unique_ptr<lmdb::Env> env_;
    MDB_dbi meta_ = 0, keys_ = 0, workspaces_ = 0, entities_ = 0;
    std::string discarded_;
    std::string data_path_;
};

}  // namespace apikey::snapshot
