// The authoritative store: one LMDB environment in data_dir/store, private to apikeyd,
// with durable commits (no MDB_NOSYNC): an acknowledged change survives a crash.
//
//   meta             "format" -> u64 kStoreFormat, "generation" -> u64
//   workspaces       workspace uuid (16 bytes) -> Workspace (JSON)
//   workspace_paths  "org/slug" -> workspace uuid       (live workspaces only)
//   keys             key uuid (16 bytes) -> ApiKey (JSON)
//   workspace_keys   workspace uuid + seq (u64 big-endian) -> key uuid   (listing order);
//                    an imported key: workspace uuid + seq + its index in the batch (u32
//                    big-endian), so a batch's keys (one seq) list in line order
//   key_hashes       SHA-256 of the key (32 bytes) -> key uuid   (every key: an imported
//                    hash must be new; built from `keys` when a store lacks it)
//   entity_settings  workspace uuid + entity name -> EntitySettings (JSON)   (live only)
//   changes          seq (u64 big-endian) -> change-feed entry (JSON)
//   workspace_changes workspace uuid + seq (u64 big-endian) -> ""   (a workspace's feed)
//
// Every mutation is one write transaction (a nested one inside a Batch: group commit, see
// below) that also increments "generation" and appends
// exactly one change-feed entry whose seq is that generation (Mutation::commit, the one
// place every mutation goes through, refuses to commit without one). It returns the
// Change it committed, which the publisher applies to the snapshot stamped with that
// generation. Comparing the two generations at start tells whether the snapshot missed a
// change (a crash between the two commits).
//
// A feed entry: {"seq", "time" (ISO 8601 UTC), "actor" (admin token name), "type",
// "workspace_id", "entity" (entity settings only), "object"}: the object after the change
// as the API shows it (views.h, settings.h), never a raw key or a key hash. Entries of a
// deleted workspace are kept (the global feed still lists them).
#pragma once

#include "lmdb_handle.h"
#include "records.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace apikeyd {

// One entity's resolved snapshot record (entity > workspace > default, see settings.h).
struct EntityPut {
    Uuid workspace_id;
    std::string entity;
    apikey::snapshot::EntityRecord record;
};

struct EntityRef {
    Uuid workspace_id;
    std::string entity;
};

// What one committed mutation changed, for the publisher.
struct Change {
    std::uint64_t generation = 0;
    std::vector<Workspace> workspaces_put;      // created or updated, live
    std::vector<Workspace> workspaces_deleted;  // as they were before deletion
    std::vector<ApiKey> keys_put;               // created or updated (revoked included)
    std::vector<EntityPut> entities_put;        // entity records to (re)publish
    std::vector<EntityRef> entities_deleted;    // entities left without settings

    bool empty() const {
        return workspaces_put.empty() && workspaces_deleted.empty() && keys_put.empty() &&
               entities_put.empty() && entities_deleted.empty();
    }
};

// Who made a change and when: the change feed's "actor" and "time".
struct Audit {
    std::string actor;       // admin token name
    std::int64_t time = 0;   // unix seconds
};

// One change-feed entry as stored (compact JSON).
struct FeedEntry {
    std::uint64_t seq = 0;
    std::string json;
};

// Where a key stands in its workspace's listing (workspace_keys): the seq that created
// it, and for an imported key its index in the batch (a batch's keys share one seq). The
// key list's paging cursor.
struct ListPosition {
    std::uint64_t seq = 0;
    std::optional<std::uint32_t> index;
};

// One page of a workspace's keys, in listing order.
struct KeyPage {
    std::vector<ApiKey> keys;
    std::optional<ListPosition> last;  // of the page's last key; nullopt when empty
    bool more = false;                 // keys follow the page
};

// org/slug already taken by a live workspace.
class Conflict : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Store {
public:
    struct Options {
        std::string dir;
        std::size_t map_size = std::size_t{1} << 30;
    };

    // Creates the directory (0700) and environment (0600) when needed, and takes an
    // exclusive lock so a second apikeyd on the same data_dir refuses to start.
    // Throws (std::runtime_error, LmdbError) when it cannot.
    explicit Store(const Options &options);
    ~Store();
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;

    // Group commit: while a Batch is open, every mutation runs in an LMDB nested
    // transaction of the batch's one write transaction, so a mutation that fails aborts
    // only itself and the next one sees the writes of those before it (each still gets its
    // own generation and feed entry). Nothing of the batch is durable, or visible to
    // committed_view(), until commit(): one synced commit for all of them. At most one
    // batch at a time; the destructor aborts one not committed.
    class Batch {
    public:
        explicit Batch(Store &store);  // throws LmdbError
        ~Batch();
        Batch(const Batch &) = delete;
        Batch &operator=(const Batch &) = delete;
        void commit();  // throws LmdbError; the batch is over either way

    private:
        Store &store_;
        std::unique_ptr<apikey::lmdb::Txn> txn_;
    };

    // Durable write commits so far (a batch's counts once): for tests and benchmarks.
    std::uint64_t commits() const { return commits_; }
    // Fault injection for tests: called right before a batch commits; what it throws
    // fails the commit (the batch is then aborted).
    void set_before_batch_commit(std::function<void()> hook) { before_batch_commit_ = std::move(hook); }

    // A consistent read-only view (one LMDB read transaction). While a Batch is open,
    // view() reads through the batch instead (what its mutations wrote so far); the
    // committed_view() never does (what the snapshot may be built from).
    class View {
    public:
        std::uint64_t generation();
        std::vector<Workspace> workspaces();  // creation order
        std::optional<Workspace> workspace(const Uuid &id);
        std::vector<ApiKey> keys_of(const Uuid &workspace_id);  // creation order
        // At most `limit` of them, from the first after `after` (from the start when
        // nullopt): one seek and `limit` + 1 reads, whatever the workspace holds.
        KeyPage keys_page(const Uuid &workspace_id, const std::optional<ListPosition> &after,
                          std::size_t limit);
        std::optional<ApiKey> key(const Uuid &id);
        // The id of the key with this SHA-256, of any workspace, revoked ones included.
        std::optional<Uuid> key_by_hash(const Digest &key_sha256);
        // Every key, of live and deleted workspaces alike, in id order.
        void for_each_key(const std::function<void(const ApiKey &)> &fn);
        // The same in key_sha256 order: the snapshot's key order.
        void for_each_key_by_hash(const std::function<void(const ApiKey &)> &fn);
        // nullopt when the entity has no settings (all defaults).
        std::optional<EntitySettings> entity_settings(const Uuid &workspace_id,
                                                      std::string_view entity);
        // Every configured entity of every live workspace, by workspace then name.
        void for_each_entity(const std::function<void(const Uuid &workspace_id,
                                                      std::string_view entity,
                                                      const EntitySettings &)> &fn);
        // Feed entries with seq > after, in seq order: of one workspace, or of all when
        // `workspace_id` is nullopt. At most `limit` entries, and no more once their
        // total size reached `max_bytes` (always at least one when there is one).
        std::vector<FeedEntry> changes(const std::optional<Uuid> &workspace_id,
                                       std::uint64_t after, std::size_t limit,
                                       std::size_t max_bytes);

    private:
        friend class Store;
        View(Store &store, apikey::lmdb::Txn *batch);
        Store &store_;
        std::unique_ptr<apikey::lmdb::Txn> own_;  // null when reading through a batch
        apikey::lmdb::Txn *txn_;
    };
    View view();
    View committed_view();

    // Bytes of the map in use (pages up to the last one written).
    std::uint64_t used_bytes();
    std::uint64_t generation();  // committed

    // Every mutation records `audit` (who, when) in its change-feed entry.

    // Assigns seq; fills `workspace` in. Throws Conflict when org/slug is taken.
    Change create_workspace(Workspace &workspace, const Audit &audit);
    // Revokes every active key of the workspace (updated_at = audit.time), deletes it and
    // its entity settings, and frees its org/slug. nullopt when there is no such workspace.
    std::optional<Change> delete_workspace(const Uuid &id, const Audit &audit);
    // Assigns seq. nullopt when the workspace does not exist.
    std::optional<Change> create_key(ApiKey &key, const Audit &audit);
    // A bulk import (POST .../api-keys/import): every key of `keys` (validated, ids, hashes
    // and timestamps set) in one transaction with one "api_key.imported" feed entry; each
    // gets seq = the new generation. The keys move into the returned Change (keys_put, in
    // the given order). nullopt when the workspace does not exist; throws Conflict when a
    // hash is already stored (the caller checks first; then nothing is written).
    std::optional<Change> import_keys(const Uuid &workspace_id, std::vector<ApiKey> &keys,
                                      const Audit &audit);

    enum class Revoke { not_found, already_revoked, revoked };
    // A key of another workspace is not_found. `change` is set only for `revoked`.
    Revoke revoke_key(const Uuid &workspace_id, const Uuid &key_id, const Audit &audit,
                      Change &change);

    // Settings replace the whole settings object. Setting what is already set changes
    // nothing (no generation, no feed entry): `unchanged`. `change` is set for `updated`.
    enum class Update { not_found, unchanged, updated };
    // Also republishes every entity record of the workspace when its effective
    // maxExpandDepth changes (entity records hold the resolved depth).
    Update put_workspace_settings(const Uuid &workspace_id, const WorkspaceSettings &settings,
                                  const Audit &audit, Change &change);
    // PATCH of a key: each field that is set replaces the key's value. A key of another
    // workspace (or of a deleted one) is not_found. Revoked keys may be updated too (their
    // name and limit are metadata; revocation stays final). Nothing different from what
    // is stored: `unchanged` (no generation, no feed entry, updated_at kept).
    struct KeyUpdate {
        std::optional<std::string> name;
        // Set: the key's own limit becomes the inner value (nullopt: none, inherit).
        std::optional<std::optional<apikey::snapshot::RateLimit>> rate_limit;
    };
    Update update_key(const Uuid &workspace_id, const Uuid &key_id, const KeyUpdate &update,
                      const Audit &audit, Change &change);

    // Cheap counts (LMDB table statistics, no scan): live workspaces, stored keys (revoked
    // and those of deleted workspaces included).
    struct Counts {
        std::uint64_t workspaces = 0;
        std::uint64_t keys = 0;
    };
    Counts counts();

    // Usage reported by nginx: last_used_at = max(stored, reported) for each known key,
    // in one transaction. Not an admin change: no generation, no feed entry, no publish.
    struct UsageResult {
        std::size_t updated = 0;  // keys whose last_used_at moved forward
        std::size_t unknown = 0;  // ids the store has no key for
    };
    UsageResult record_usage(const std::vector<std::pair<Uuid, std::int64_t>> &uses);

    // All-null settings delete the entity's record (it has the defaults again).
    Update put_entity_settings(const Uuid &workspace_id, const std::string &entity,
                               const EntitySettings &settings, const Audit &audit,
                               Change &change);

private:
    class Mutation;

    std::unique_ptr<apikey::lmdb::Env> env_;
    MDB_dbi meta_ = 0, workspaces_ = 0, workspace_paths_ = 0, keys_ = 0, workspace_keys_ = 0,
            entity_settings_ = 0, changes_ = 0, workspace_changes_ = 0, key_hashes_ = 0;
    int lock_fd_ = -1;
    apikey::lmdb::Txn *batch_ = nullptr;  // the open Batch's transaction
    std::uint64_t commits_ = 0;
    std::function<void()> before_batch_commit_;
};

}  // namespace apikeyd
