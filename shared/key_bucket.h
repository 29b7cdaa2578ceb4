// One bucket of the snapshot's key table: a small open-addressing hash table stored as a
// single LMDB value. Finding a key among a million is then a lookup among a few thousand
// buckets (a per-worker cache of where each lies, see snapshot_reader.h) and one probe
// that touches one page (rarely two) and two to five cache lines of the map, instead of a
// descent through a B-tree of a million entries whose leaf binary search misses the cache
// and the TLB at every step (0.7 µs at 1M keys; docs/BENCHMARKS.md).
//
// Layout: an array of fixed-size entries, no header (the entry count is the value's size
// over kBucketEntrySize; a size that is not a multiple is damage). An entry is the key's
// whole 32-byte SHA-256, then its KeyRecord padded with zeros to kBucketRecordSize; an
// empty entry is all zeros (a record's first byte, its version, is never 0). A key's probe
// starts at entry (hash bytes 8..11) scaled to the entry count and goes forward, wrapping
// (linear probing); at most 3/4 of the entries are used (~0.7 in a 4 KiB-page-filled
// bucket), so a hit reads ~2.1 entries (87 % within the first three) and a miss ~6,
// contiguous. The bucket number comes from the hash's first bytes
// (key_bucket in snapshot_schema.h), so the probe start is independent of it. The whole
// hash is always compared.
#pragma once

#include "sha256.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace apikey::snapshot {

inline constexpr std::size_t kBucketRecordSize = 56;  // kMaxKeyRecordSize, even
inline constexpr std::size_t kBucketEntrySize = 32 + kBucketRecordSize;

enum class BucketLookup { found, absent, corrupt };

// The entry where the probe of `hash` starts in a bucket of `entries` entries (> 0).
std::size_t probe_start(const Digest &hash, std::size_t entries) noexcept;

// The record of `hash` in `bucket`: a view into it, kBucketRecordSize bytes (the record's
// decoder ignores the padding). Never reads outside `bucket`; corrupt when its size is
// not a whole number of entries.
BucketLookup find_in_bucket(std::string_view bucket, const Digest &hash,
                            std::string_view &record) noexcept;

// Starts loading the first three entries of find_in_bucket's probe of `hash` (every cache
// line they span, within the bucket); nothing for a bucket find_in_bucket would call
// corrupt.
void prefetch_in_bucket(std::string_view bucket, const Digest &hash) noexcept;

// A key and its record as a bucket stores it, zero-padded. As an edit, an empty record
// (all zeros: a record's first byte, its version, is never 0) removes the key.
struct BucketEntry {
    Digest hash;
    std::array<char, kBucketRecordSize> record;

    // Throws std::length_error on a record longer than kBucketRecordSize or of version 0.
    static BucketEntry make(const Digest &hash, std::string_view record);
    bool removes() const noexcept { return record[0] == 0; }
};

// The order edit_bucket wants its edits in (std::stable_sort with it).
bool hash_order(const BucketEntry &a, const BucketEntry &b) noexcept;

// Every entry of `bucket`, in entry order. False (with the entries of the whole part)
// when its size is not a whole number of entries: the writer then rebuilds the bucket
// from what could be read.
bool bucket_entries(std::string_view bucket, std::vector<BucketEntry> &out);

// `bucket` (empty: none yet) with `edits` applied: for each hash the last edit in the
// list wins. `edits` must be sorted by hash_order, stably, so that "last" keeps the
// caller's order. The same keys give the same bytes whatever the history; no
// key left gives an empty string (no bucket).
std::string edit_bucket(std::string_view bucket, const std::vector<BucketEntry> &edits);

}  // namespace apikey::snapshot
