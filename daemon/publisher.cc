#include "publisher.h"

#include "log.h"

#include <algorithm>
#include <cstdint>

namespace apikeyd {

namespace snapshot = apikey::snapshot;

namespace {

snapshot::WorkspaceRecord record_of(const Workspace &w) { return workspace_record(w.id, w.settings); }

std::string mib(std::size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

std::size_t snapshot_map_ceiling(std::size_t snapshot_map_size, std::size_t store_map_size) {
    const std::size_t four_stores =
        store_map_size > SIZE_MAX / 4 ? SIZE_MAX : store_map_size * 4;
    return std::max(snapshot_map_size, four_stores);
}

void Publisher::publish(std::uint64_t generation,
                        const std::function<void(snapshot::Batch &)> &edit) {
    snapshot::Writer &w = writer();
    const std::size_t before = w.map_size();
    try {
        w.publish(generation, edit);
    } catch (const apikey::lmdb::LmdbError &e) {
        if (e.code() != MDB_MAP_FULL) throw;
        throw SnapshotFull("the snapshot is full (MDB_MAP_FULL): its map of " + mib(w.map_size()) +
                           " is at its ceiling (the larger of snapshot_map_size_mb and 4 x "
                           "store_map_size_mb, " + mib(w.max_map_size()) +
                           "); raise snapshot_map_size_mb and restart apikeyd");
    }
    if (const std::size_t after = w.map_size(); after != before)
        log_warn("snapshot map grown from " + mib(before) + " to " + mib(after) +
                 " to publish generation " + std::to_string(generation) +
                 " (snapshot_map_size_mb is " + std::to_string(options_.map_size >> 20) +
                 "; ceiling " + mib(w.max_map_size()) + ")");
}

Publisher::Publisher(Store &store, const snapshot::WriterOptions &options)
    : store_(store), options_(options), writer_(std::make_unique<snapshot::Writer>(options)) {}

void Publisher::reopen() {
    published_ = 0;
    writer_.reset();  // one environment per file and process: close before opening
    writer_ = std::make_unique<snapshot::Writer>(options_);
}

snapshot::Writer &Publisher::writer() {
    if (!writer_) {  // a reopen() that failed: try again
        published_ = 0;
        writer_ = std::make_unique<snapshot::Writer>(options_);
    }
    return *writer_;
}

bool Publisher::sync() {
    const std::uint64_t snapshot_generation = writer().generation();
    // 0 means a new snapshot or one of another format; the store starts at 1.
    if (snapshot_generation != 0 && snapshot_generation == store_.generation()) {
        published_ = snapshot_generation;
        return false;
    }
    rebuild();
    return true;
}

void Publisher::rebuild() {
    published_ = 0;
    // One read transaction of the store for the whole rebuild: the snapshot gets exactly
    // the state of the generation it is stamped with.
    Store::View view = store_.committed_view();
    const std::uint64_t generation = view.generation();
    publish(generation, [&](snapshot::Batch &batch) {
        batch.clear_all();
        std::vector<Workspace> workspaces = view.workspaces();
        for (const Workspace &w : workspaces) batch.put_workspace(w.path(), record_of(w));
        // Entity records, resolved against their workspace's settings.
        std::sort(workspaces.begin(), workspaces.end(), [](const Workspace &a, const Workspace &b) {
            return a.id.bytes < b.id.bytes;
        });
        view.for_each_entity([&](const Uuid &workspace_id, std::string_view entity,
                                 const EntitySettings &settings) {
            const auto w = std::lower_bound(
                workspaces.begin(), workspaces.end(), workspace_id,
                [](const Workspace &a, const Uuid &id) { return a.id.bytes < id.bytes; });
            if (w == workspaces.end() || w->id != workspace_id) return;  // no such workspace
            batch.put_entity(workspace_id, entity, entity_record(settings, w->settings));
        });
        // In hash order, the snapshot's key order: pages filled front to back.
        view.for_each_key_by_hash([&](const ApiKey &k) {
            const auto w = std::lower_bound(
                workspaces.begin(), workspaces.end(), k.workspace_id,
                [](const Workspace &a, const Uuid &id) { return a.id.bytes < id.bytes; });
            const bool live = w != workspaces.end() && w->id == k.workspace_id;
            batch.put_key(k.key_sha256,
                          k.snapshot_record(live ? w->settings.default_rate_limit : std::nullopt));
        });
    });
    published_ = generation;
}

void Publisher::apply(const Change &change) { apply(std::vector<const Change *>{&change}); }

void Publisher::apply(const std::vector<const Change *> &changes) {
    if (changes.empty()) return;
    if (published_ == 0 || changes.front()->generation != published_ + 1) {
        rebuild();
        return;
    }
    const std::uint64_t last = changes.back()->generation;
    published_ = 0;  // unknown until this publish commits
    publish(last, [&](snapshot::Batch &batch) {
        // Read from the store as committed: this runs right after the commit, on the same
        // thread, so it holds every change of the batch.
        Store::View view = store_.committed_view();
        for (const Change *change : changes) write_delta(batch, view, *change);
    });
    published_ = last;
}

void Publisher::write_delta(snapshot::Batch &batch, Store::View &view, const Change &change) {
    // Deletions first: a workspace deleted and re-created with the same org/slug in one
    // change must end up present.
    for (const Workspace &w : change.workspaces_deleted) batch.delete_workspace(w.path());
    for (const EntityRef &e : change.entities_deleted) batch.delete_entity(e.workspace_id, e.entity);
    for (const Workspace &w : change.workspaces_put) batch.put_workspace(w.path(), record_of(w));
    for (const EntityPut &e : change.entities_put) batch.put_entity(e.workspace_id, e.entity, e.record);
    // A key's record holds its workspace's default rate limit when it has none. The keys
    // of one change are nearly always of one workspace: its default is looked up once.
    std::optional<Uuid> looked_up;
    std::optional<snapshot::RateLimit> workspace_default;
    // In hash order (the table's key order): a bulk import then fills the keys table's
    // pages front to back, each copied once, instead of dirtying them at random.
    std::vector<const ApiKey *> keys;
    keys.reserve(change.keys_put.size());
    for (const ApiKey &k : change.keys_put) keys.push_back(&k);
    if (keys.size() > 1)
        std::sort(keys.begin(), keys.end(),
                  [](const ApiKey *a, const ApiKey *b) { return a->key_sha256 < b->key_sha256; });
    for (const ApiKey *k : keys) {
        if (looked_up != k->workspace_id) {
            const auto w = view.workspace(k->workspace_id);  // none once deleted
            workspace_default = w ? w->settings.default_rate_limit : std::nullopt;
            looked_up = k->workspace_id;
        }
        batch.put_key(k->key_sha256, k->snapshot_record(workspace_default));
    }
}

}  // namespace apikeyd
