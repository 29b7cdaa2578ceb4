#include "publisher.h"

namespace apikeyd {

namespace snapshot = apikey::snapshot;

namespace {

snapshot::WorkspaceRecord workspace_record(const Workspace &w) {
    snapshot::WorkspaceRecord r;
    r.id = w.id;
    return r;
}

}  // namespace

Publisher::Publisher(Store &store, const snapshot::WriterOptions &options)
    : store_(store), writer_(std::make_unique<snapshot::Writer>(options)) {}

bool Publisher::sync() {
    const std::uint64_t snapshot_generation = writer_->generation();
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
    Store::View view = store_.view();
    const std::uint64_t generation = view.generation();
    writer_->publish(generation, [&](snapshot::Batch &batch) {
        batch.clear_all();
        for (const Workspace &w : view.workspaces())
            batch.put_workspace(w.path(), workspace_record(w));
        view.for_each_key(
            [&](const ApiKey &k) { batch.put_key(k.key_sha256, k.snapshot_record()); });
    });
    published_ = generation;
}

void Publisher::apply(const Change &change) {
    if (published_ == 0 || change.generation != published_ + 1) {
        rebuild();
        return;
    }
    published_ = 0;  // unknown until this publish commits
    writer_->publish(change.generation, [&](snapshot::Batch &batch) {
        // Deletions first: a workspace deleted and re-created with the same org/slug in
        // one change must end up present.
        for (const Workspace &w : change.workspaces_deleted) batch.delete_workspace(w.path());
        for (const Workspace &w : change.workspaces_put)
            batch.put_workspace(w.path(), workspace_record(w));
        for (const ApiKey &k : change.keys_put) batch.put_key(k.key_sha256, k.snapshot_record());
    });
    published_ = change.generation;
}

}  // namespace apikeyd
