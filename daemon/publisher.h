// Publishes the store's state to the data-plane snapshot (shared/snapshot_writer.h).
//
// After every committed store mutation, apply() writes that mutation's delta (keys,
// workspace records with their resolved settings, resolved entity records; see
// settings.h) in one snapshot transaction stamped with the store generation it produced. A delta is only
// applied on top of the generation right before it; in every other case (first start,
// snapshot deleted or stale after a crash between the two commits, a publish that failed
// earlier) the snapshot is rebuilt from the store in one transaction. Readers never see a
// half-applied change, and tables are only emptied, never dropped (readers keep handles).
// A publish that fills the snapshot map grows it (doubling, up to snapshot_map_ceiling)
// and runs again; only beyond the ceiling does it fail, naming snapshot_map_size_mb.
#pragma once

#include "snapshot_writer.h"
#include "store.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

namespace apikeyd {

// A publish that found the snapshot map full even at its growth ceiling. The message names
// the map's size and the setting to raise (snapshot_map_size_mb), for the log and the 503.
class SnapshotFull : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The ceiling the snapshot map may grow to: the larger of snapshot_map_size_mb and four
// times store_map_size_mb. The snapshot holds far less per key than the store (a hash and
// a fixed record against JSON records and indexes), so a snapshot of everything the store
// can hold, and a rebuild's second copy of it, fit well below that.
std::size_t snapshot_map_ceiling(std::size_t snapshot_map_size, std::size_t store_map_size);

class Publisher {
public:
    // Opens (creates) the snapshot. Throws on failure.
    Publisher(Store &store, const apikey::snapshot::WriterOptions &options);

    // Makes the snapshot match the store: a full rebuild unless its generation already
    // equals the store's. Returns true when it rebuilt. Throws on failure.
    bool sync();

    // Publishes one committed change (see above). Throws on failure; the next apply() or
    // sync() then rebuilds.
    void apply(const Change &change);
    // The changes of one group commit (consecutive generations, in order) in one snapshot
    // transaction stamped with the last generation: nginx sees all of them or none.
    void apply(const std::vector<const Change *> &changes);

    // False when the snapshot's files were deleted or replaced behind apikeyd's back.
    bool in_place() const { return writer_ && writer_->in_place(); }
    // Opens (creates) the snapshot at its path anew; the next sync() rebuilds it. Throws.
    void reopen();

    // Non-empty when a truncated snapshot was found at start and replaced (for the log).
    const std::string &discarded() const {
        static const std::string none;
        return writer_ ? writer_->discarded() : none;
    }

    // The generation the snapshot is known to hold, 0 when unknown (after a failure).
    std::uint64_t published_generation() const { return published_; }

private:
    void rebuild();
    // writer().publish(), logging a map it had to grow, and SnapshotFull when even the
    // ceiling is too small.
    void publish(std::uint64_t generation,
                 const std::function<void(apikey::snapshot::Batch &)> &edit);
    // One change's delta into an open snapshot transaction.
    void write_delta(apikey::snapshot::Batch &batch, Store::View &view, const Change &change);
    apikey::snapshot::Writer &writer();  // writer_, opened again if a reopen() failed

    Store &store_;
    apikey::snapshot::WriterOptions options_;
    std::unique_ptr<apikey::snapshot::Writer> writer_;
    std::uint64_t published_ = 0;
};

}  // namespace apikeyd
