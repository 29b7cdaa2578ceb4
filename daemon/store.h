// The authoritative store: one LMDB environment in data_dir/store, private to apikeyd,
// with durable commits (no MDB_NOSYNC): an acknowledged change survives a crash.
//
//   meta             "format" -> u64 kStoreFormat, "generation" -> u64
//   workspaces       workspace uuid (16 bytes) -> Workspace (JSON)
//   workspace_paths  "org/slug" -> workspace uuid       (live workspaces only)
//   keys             key uuid (16 bytes) -> ApiKey (JSON)
//   workspace_keys   workspace uuid + seq (u64 big-endian) -> key uuid   (listing order)
//
// Every mutation is one write transaction that also increments "generation"; it returns
// the Change it committed, which the publisher applies to the snapshot stamped with that
// generation. Comparing the two generations at start tells whether the snapshot missed a
// change (a crash between the two commits). A change feed (a `changes` table keyed by
// generation) belongs in Mutation::commit, the one place every mutation goes through.
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

// What one committed mutation changed, for the publisher (and a future change feed).
struct Change {
    std::uint64_t generation = 0;
    std::vector<Workspace> workspaces_put;      // created or updated, live
    std::vector<Workspace> workspaces_deleted;  // as they were before deletion
    std::vector<ApiKey> keys_put;               // created or updated (revoked included)

    bool empty() const {
        return workspaces_put.empty() && workspaces_deleted.empty() && keys_put.empty();
    }
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

    // A consistent read-only view (one LMDB read transaction).
    class View {
    public:
        std::uint64_t generation();
        std::vector<Workspace> workspaces();  // creation order
        std::optional<Workspace> workspace(const Uuid &id);
        std::vector<ApiKey> keys_of(const Uuid &workspace_id);  // creation order
        std::optional<ApiKey> key(const Uuid &id);
        // Every key, of live and deleted workspaces alike.
        void for_each_key(const std::function<void(const ApiKey &)> &fn);

    private:
        friend class Store;
        explicit View(Store &store);
        Store &store_;
        std::unique_ptr<apikey::lmdb::Txn> txn_;
    };
    View view();

    std::uint64_t generation();

    // Assigns seq; fills `workspace` in. Throws Conflict when org/slug is taken.
    Change create_workspace(Workspace &workspace);
    // Revokes every active key of the workspace, deletes it and frees its org/slug.
    // nullopt when there is no such workspace.
    std::optional<Change> delete_workspace(const Uuid &id, std::int64_t now);
    // Assigns seq. nullopt when the workspace does not exist.
    std::optional<Change> create_key(ApiKey &key);

    enum class Revoke { not_found, already_revoked, revoked };
    // A key of another workspace is not_found. `change` is set only for `revoked`.
    Revoke revoke_key(const Uuid &workspace_id, const Uuid &key_id, std::int64_t now,
                      Change &change);

private:
    class Mutation;

    std::unique_ptr<apikey::lmdb::Env> env_;
    MDB_dbi meta_ = 0, workspaces_ = 0, workspace_paths_ = 0, keys_ = 0, workspace_keys_ = 0;
    int lock_fd_ = -1;
};

}  // namespace apikeyd
