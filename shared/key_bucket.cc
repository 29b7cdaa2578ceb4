#include "key_bucket.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace apikey::snapshot {
namespace {

// LMDB stores a value of more than about half a page in overflow pages of its own (4 KiB,
// 16 bytes of header): buckets of a million-key table are ~28 KB. Entries that fill the
// last page cost no space and shorten probes.
constexpr std::size_t kPageBytes = 4096, kPageHeader = 16;

// Whole-hash comparison, in constant time as every key hash comparison.
bool same_hash(const char *stored, const Digest &hash) noexcept {
    Digest d;
    std::memcpy(d.data(), stored, d.size());
    return digest_equal(d, hash);
}

bool is_empty(const char *entry) noexcept { return entry[32] == 0; }

// A hit is the probe's first entry in 65 % of lookups, within the first two in 80 %, the
// first three in 87 % (1M keys; linear probing at the buckets' ~0.7 load). Prefetching
// only the first entry left the lookup waiting on memory for the rest: 0.08 µs a request
// against 0.03 with three (docs/BENCHMARKS.md).
constexpr std::size_t kPrefetchEntries = 3;

// How many entries `bucket` holds; 0 for one whose size is not a whole number of them.
std::size_t entry_count(std::string_view bucket) noexcept {
    return bucket.size() % kBucketEntrySize == 0 ? bucket.size() / kBucketEntrySize : 0;
}

}  // namespace

std::size_t probe_start(const Digest &hash, std::size_t entries) noexcept {
    std::uint32_t bits;
    std::memcpy(&bits, hash.data() + 8, 4);
    // Scaled, not masked: the entry count need not be a power of two.
    return static_cast<std::size_t>((static_cast<std::uint64_t>(bits) * entries) >> 32);
}

BucketLookup find_in_bucket(std::string_view bucket, const Digest &hash,
                            std::string_view &record) noexcept {
    const std::size_t count = entry_count(bucket);
    if (count == 0) return BucketLookup::corrupt;
    std::size_t i = probe_start(hash, count);
    // Bounded by the entry count: a damaged bucket without an empty entry ends too.
    for (std::size_t probed = 0; probed < count; ++probed) {
        const char *entry = bucket.data() + i * kBucketEntrySize;
        if (is_empty(entry)) return BucketLookup::absent;
        if (same_hash(entry, hash)) {
            record = std::string_view(entry + 32, kBucketRecordSize);
            return BucketLookup::found;
        }
        if (++i == count) i = 0;
    }
    return BucketLookup::absent;
}

void prefetch_in_bucket(std::string_view bucket, const Digest &hash) noexcept {
    const std::size_t count = entry_count(bucket);
    if (count == 0) return;
    const char *data = bucket.data();
    const std::size_t first = probe_start(hash, count) * kBucketEntrySize;
    const std::size_t last =
        std::min(first + kPrefetchEntries * kBucketEntrySize, bucket.size()) - 1;
    for (std::size_t line = first; line < last; line += 64) __builtin_prefetch(data + line);
    __builtin_prefetch(data + last);
}

bool hash_order(const BucketEntry &a, const BucketEntry &b) noexcept { return a.hash < b.hash; }

BucketEntry BucketEntry::make(const Digest &hash, std::string_view record) {
    if (record.size() > kBucketRecordSize || (!record.empty() && record[0] == 0))
        throw std::length_error("key record longer than 56 bytes or of version 0");
    BucketEntry e{hash, {}};
    std::copy(record.begin(), record.end(), e.record.begin());  // an empty view may be null
    return e;
}

bool bucket_entries(std::string_view bucket, std::vector<BucketEntry> &out) {
    const std::size_t count = bucket.size() / kBucketEntrySize;
    for (std::size_t i = 0; i < count; ++i) {
        const char *entry = bucket.data() + i * kBucketEntrySize;
        if (is_empty(entry)) continue;
        BucketEntry e;
        std::memcpy(e.hash.data(), entry, 32);
        std::memcpy(e.record.data(), entry + 32, kBucketRecordSize);
        out.push_back(e);
    }
    return bucket.size() % kBucketEntrySize == 0;
}

namespace {

// `entries` (sorted by hash, distinct, none removing) as a bucket.
std::string encode(const std::vector<BucketEntry> &entries) {
    if (entries.empty()) return {};
    // At most 3/4 used; in overflow pages, as many more as fill the last page.
    std::size_t count = (entries.size() * 4 + 2) / 3;
    const std::size_t bytes = count * kBucketEntrySize;
    if (bytes > kPageBytes / 2) {
        const std::size_t pages = (bytes + kPageHeader + kPageBytes - 1) / kPageBytes;
        count = (pages * kPageBytes - kPageHeader) / kBucketEntrySize;
    }
    std::string out(count * kBucketEntrySize, '\0');
    for (const auto &e : entries) {
        std::size_t i = probe_start(e.hash, count);
        while (!is_empty(out.data() + i * kBucketEntrySize))
            if (++i == count) i = 0;
        char *entry = out.data() + i * kBucketEntrySize;
        std::memcpy(entry, e.hash.data(), 32);
        std::memcpy(entry + 32, e.record.data(), kBucketRecordSize);
    }
    return out;
}

}  // namespace

std::string edit_bucket(std::string_view bucket, const std::vector<BucketEntry> &edits) {
    std::vector<BucketEntry> entries;
    entries.reserve(bucket.size() / kBucketEntrySize + edits.size());
    bucket_entries(bucket, entries);  // a damaged bucket keeps what could be read
    std::sort(entries.begin(), entries.end(), hash_order);
    // A damaged bucket may hold one hash twice.
    entries.erase(std::unique(entries.begin(), entries.end(),
                              [](const BucketEntry &a, const BucketEntry &b) { return a.hash == b.hash; }),
                  entries.end());
    // Merge the last edit of each hash into the sorted entries.
    std::vector<BucketEntry> merged;
    merged.reserve(entries.size() + edits.size());
    auto old = entries.begin();
    for (std::size_t i = 0; i < edits.size(); ++i) {
        const BucketEntry &edit = edits[i];
        if (i + 1 < edits.size() && edits[i + 1].hash == edit.hash) continue;  // a later one wins
        while (old != entries.end() && old->hash < edit.hash) merged.push_back(*old++);
        if (old != entries.end() && old->hash == edit.hash) ++old;
        if (!edit.removes()) merged.push_back(edit);
    }
    merged.insert(merged.end(), old, entries.end());
    return encode(merged);
}

}  // namespace apikey::snapshot
