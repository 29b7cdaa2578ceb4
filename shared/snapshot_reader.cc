#include "snapshot_reader.h"

#include "key_bucket.h"
#include "lmdb_handle.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace apikey::snapshot {
namespace {

MDB_val to_val(std::string_view s) { return MDB_val{s.size(), const_cast<char *>(s.data())}; }
std::string_view from_val(const MDB_val &v) {
    return {static_cast<const char *>(v.mv_data), v.mv_size};
}

// Asks for 2 MB pages under the map. Where the kernel can (THP, and large folios in the
// page cache: ext4 on Linux 6.x), snapshot pages read from disk (after a reboot or a cache
// drop) then come in 2 MB folios, each mapped by one entry: a lookup's random page needs
// no 4 KiB page walk (docs/BENCHMARKS.md "Other findings"). Pages cached in 4 KiB folios
// stay so. LMDB does not give the map's address (mdb_env_info's me_mapaddr is only the
// MDB_FIXEDMAP one), so the mapping of data.mdb's inode is found in /proc/self/maps.
// Advice only, at open and after a remap (both rare): a failure leaves the map as it was.
void advise_huge_pages(MDB_env *env) noexcept {
    mdb_filehandle_t fd = -1;
    struct stat st {};
    if (mdb_env_get_fd(env, &fd) != MDB_SUCCESS || ::fstat(fd, &st) != 0) return;
    std::FILE *maps = std::fopen("/proc/self/maps", "re");
    if (maps == nullptr) return;
    char line[512];
    while (std::fgets(line, sizeof line, maps) != nullptr) {
        unsigned long start = 0, end = 0, inode = 0;
        unsigned major = 0, minor = 0;
        if (std::sscanf(line, "%lx-%lx %*s %*s %x:%x %lu", &start, &end, &major, &minor,
                        &inode) == 5 &&
            inode == st.st_ino && makedev(major, minor) == st.st_dev && end > start)
            (void)::madvise(reinterpret_cast<void *>(start), end - start, MADV_HUGEPAGE);
    }
    std::fclose(maps);
}

// Picks the slot of a recent workspace or entity lookup, eight bytes a step (a byte-wise
// hash was a dependent multiply per byte, on every request). It only spreads keys over
// slots: a collision costs an mdb_get. The top bits are the best mixed.
std::uint64_t recent_hash(std::string_view key) noexcept {
    constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;
    std::uint64_t h = key.size() * kMul, word = 0;
    std::size_t i = 0;
    for (; i + 8 <= key.size(); i += 8) {
        std::memcpy(&word, key.data() + i, 8);
        h = (h ^ word) * kMul;
    }
    word = 0;
    if (i < key.size()) std::memcpy(&word, key.data() + i, key.size() - i);
    return (h ^ word) * kMul;
}

// A bucket's place in 8 bytes: its address (user-space addresses are below 2^48) and,
// above it, its entry count. A bucket that does not fit is not packed and stays unknown
// (every lookup of it asks LMDB): a size that is not a whole number of entries, damage
// find_in_bucket must see as it is, or more than 65,535 entries (a single bucket of
// 5.8 MB; a billion keys give 2^20 buckets of ~1,400).
constexpr unsigned kPlaceCountShift = 48;

bool pack_place(std::string_view bucket, std::uint64_t &place) noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(bucket.data());
    const std::uint64_t entries = bucket.size() / kBucketEntrySize;
    if (address >> kPlaceCountShift != 0 || bucket.size() % kBucketEntrySize != 0 ||
        entries >> (64 - kPlaceCountShift) != 0)
        return false;
    place = address | entries << kPlaceCountShift;
    return true;
}

std::string_view unpack_place(std::uint64_t place) noexcept {
    constexpr std::uint64_t kAddressMask = (std::uint64_t{1} << kPlaceCountShift) - 1;
    return {reinterpret_cast<const char *>(place & kAddressMask),
            (place >> kPlaceCountShift) * kBucketEntrySize};
}

bool read_u64(MDB_txn *txn, MDB_dbi dbi, std::string_view key, std::uint64_t &out) noexcept {
    MDB_val k = to_val(key), v{};
    return mdb_get(txn, dbi, &k, &v) == MDB_SUCCESS && decode_u64(from_val(v), out);
}

}  // namespace

std::unique_ptr<Reader> Reader::open(const std::string &dir, std::string &error) noexcept {
    try {
        std::unique_ptr<Reader> reader(new Reader());
        int rc = mdb_env_create(&reader->env_);
        if (rc == MDB_SUCCESS) rc = mdb_env_set_maxdbs(reader->env_, 8);
        if (rc != MDB_SUCCESS) {
            error = std::string("mdb_env_create: ") + mdb_strerror(rc);
            return nullptr;
        }
        // MDB_NOTLS: the reader slot belongs to our one long-lived transaction, not to a
        // thread. Read-ahead stays on (no MDB_NORDAHEAD): the snapshot is small enough to
        // live in the page cache (~126 bytes a key), and when the cache has lost it
        // (reboot, memory pressure) each first touch of a page would otherwise be one
        // 4 KiB read at random. Measured (docs/BENCHMARKS.md "Other findings"): a fresh
        // 2-worker nginx on an uncached 1M-key snapshot took ~30,000 major faults with
        // MDB_NORDAHEAD and ~30 without.
        // The mode is lock.mdb's, used only when it is missing and this worker may create
        // it (data.mdb alone restored into a directory the workers can write): with 0 it
        // was created 0000 and no other process could open the snapshot any more.
        rc = mdb_env_open(reader->env_, dir.c_str(), MDB_RDONLY | MDB_NOTLS,
                          static_cast<mdb_mode_t>(kGroupLockFileMode));
        if (rc != MDB_SUCCESS) {
            error = "cannot open snapshot \"" + dir + "\": " + mdb_strerror(rc);
            return nullptr;
        }
        advise_huge_pages(reader->env_);
        // A truncated data.mdb would SIGBUS the worker on its first lookup (and every
        // respawned worker again, in init_process): refuse it, answer 503 and retry.
        std::uint64_t needed = 0, actual = 0;
        if (!lmdb::file_is_complete(reader->env_, needed, actual)) {
            error = "snapshot \"" + dir + "\" is truncated: data.mdb has " +
                    std::to_string(actual) + " bytes, its newest commit needs " +
                    std::to_string(needed);
            return nullptr;
        }
        rc = reader->start();
        if (rc == MDB_SUCCESS) rc = mdb_dbi_open(reader->txn_, kMetaDb, 0, &reader->meta_);
        // The format first: another format may not have this format's tables at all, and
        // "has format 1" says more than "not published yet".
        std::uint64_t format = 0;
        if (rc == MDB_SUCCESS && read_u64(reader->txn_, reader->meta_, kMetaFormat, format) &&
            format != kFormatVersion) {
            error = "snapshot \"" + dir + "\" has format " + std::to_string(format) +
                    ", this module reads format " + std::to_string(kFormatVersion);
            return nullptr;
        }
        if (rc == MDB_SUCCESS && format == 0) rc = MDB_NOTFOUND;  // no format stamped yet
        if (rc == MDB_SUCCESS) rc = mdb_dbi_open(reader->txn_, kKeysDb, 0, &reader->keys_);
        if (rc == MDB_SUCCESS)
            rc = mdb_dbi_open(reader->txn_, kWorkspacesDb, 0, &reader->workspaces_);
        if (rc == MDB_SUCCESS)
            rc = mdb_dbi_open(reader->txn_, kEntitiesDb, 0, &reader->entities_);
        if (rc != MDB_SUCCESS) {
            error = "snapshot \"" + dir + "\" is not published yet: " + mdb_strerror(rc);
            return nullptr;
        }
        // Committing (not resetting) the first transaction is what makes the table
        // handles it opened usable by every later transaction of this environment.
        rc = mdb_txn_commit(reader->txn_);
        reader->txn_ = nullptr;
        if (rc != MDB_SUCCESS) {
            error = std::string("mdb_txn_commit: ") + mdb_strerror(rc);
            return nullptr;
        }
        return reader;
    } catch (...) {
        error = "out of memory opening the snapshot";
        return nullptr;
    }
}

Reader::~Reader() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    if (env_ != nullptr) mdb_env_close(env_);
}

int Reader::reader_check() noexcept {
    int dead = 0;
    return mdb_reader_check(env_, &dead) == MDB_SUCCESS ? dead : -1;
}

bool Reader::file_is_complete() noexcept {
    std::uint64_t needed = 0, actual = 0;
    return lmdb::file_is_complete(env_, needed, actual);
}

int Reader::start() noexcept {
    int rc = txn_ != nullptr ? mdb_txn_renew(txn_)
                             : mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn_);
    if (rc != MDB_MAP_RESIZED) return rc;
    // apikeyd grew the map. Adopting the new size needs no live transaction here. The map
    // may move: the meta records are read again, which drops every remembered pointer.
    meta_txn_id_ = 0;
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    txn_ = nullptr;
    rc = mdb_env_set_mapsize(env_, 0);
    if (rc != MDB_SUCCESS) return rc;
    advise_huge_pages(env_);  // a new map
    return mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn_);
}

Reader::View Reader::view() noexcept {
    View v;
    const int rc = start();
    if (rc != MDB_SUCCESS) {
        v.error_ = mdb_strerror(rc);
        return v;
    }
    // The meta records change only with a commit, and every commit has a new transaction
    // id: they are read again only when the id moved since the last request.
    if (mdb_txn_id(txn_) != meta_txn_id_ && !read_meta()) {
        mdb_txn_reset(txn_);
        meta_txn_id_ = 0;
        v.error_ = "snapshot format changed to one this module does not read";
        return v;
    }
    v.generation_ = generation_;
    v.reader_ = this;
    return v;
}

bool Reader::read_meta() noexcept {
    std::uint64_t format = 0, generation = 0, bits = 0;
    if (!read_u64(txn_, meta_, kMetaFormat, format) || format != kFormatVersion ||
        !read_u64(txn_, meta_, kMetaKeyBucketBits, bits) || bits < kMinKeyBucketBits ||
        bits > kMaxKeyBucketBits)
        return false;
    read_u64(txn_, meta_, kMetaGeneration, generation);
    generation_ = generation;
    bucket_bits_ = static_cast<unsigned>(bits);
    if (bucket_bits_ != buckets_bits_) {
        // Zeroed pages from the kernel, touched only where a bucket is looked up: the
        // places, then their epochs. On failure lookups go to LMDB every time.
        buckets_.reset(static_cast<std::uint64_t *>(
            std::calloc(std::size_t{2} << bucket_bits_, sizeof(std::uint64_t))));
        buckets_bits_ = buckets_ ? bucket_bits_ : 0;
    }
    meta_txn_id_ = mdb_txn_id(txn_);
    ++epoch_;  // every remembered bucket and lookup is of the previous version
    return true;
}

void Reader::FreeBuckets::operator()(std::uint64_t *p) const noexcept { std::free(p); }

std::uint64_t *Reader::bucket_place(std::uint32_t number) const noexcept {
    return buckets_ != nullptr && buckets_bits_ == bucket_bits_ ? &buckets_[number] : nullptr;
}

int Reader::bucket(std::uint32_t number, std::string_view &out) noexcept {
    std::uint64_t *place = bucket_place(number);
    if (place != nullptr && *epoch_of(place) == epoch_) {
        out = unpack_place(*place);
        return MDB_SUCCESS;
    }
    MDB_val k{sizeof(number), &number}, v{};
    const int rc = mdb_get(txn_, keys_, &k, &v);
    if (rc == MDB_NOTFOUND) v = MDB_val{0, nullptr};
    else if (rc != MDB_SUCCESS) return rc;
    out = from_val(v);
    if (place != nullptr && pack_place(out, *place)) *epoch_of(place) = epoch_;
    return MDB_SUCCESS;
}

int Reader::get(MDB_dbi dbi, RecentGets &recent, std::string_view key,
                std::string_view &out) noexcept {
    static_assert(kRecentSlots == 16, "the slot is the hash's top 4 bits");
    RecentGet &slot = recent[recent_hash(key) >> 60];
    if (slot.epoch == epoch_ && slot.key_size == key.size() &&
        std::memcmp(slot.key, key.data(), key.size()) == 0) {
        out = std::string_view(slot.data, slot.size);
        return slot.data != nullptr ? MDB_SUCCESS : MDB_NOTFOUND;
    }
    MDB_val k = to_val(key), v{};
    const int rc = mdb_get(txn_, dbi, &k, &v);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return rc;
    out = rc == MDB_SUCCESS ? from_val(v) : std::string_view();
    if (key.size() <= kRecentKeyMax) {
        slot.epoch = epoch_;
        slot.key_size = key.size();
        std::memcpy(slot.key, key.data(), key.size());
        slot.data = rc == MDB_SUCCESS ? out.data() : nullptr;
        slot.size = out.size();
    }
    return rc;
}

Reader::View::View(View &&other) noexcept
    : reader_(std::exchange(other.reader_, nullptr)),
      error_(other.error_),
      generation_(other.generation_) {}

Reader::View::~View() {
    if (reader_ != nullptr) mdb_txn_reset(reader_->txn_);
}

std::int64_t Reader::View::published_at_ms() const noexcept {
    std::uint64_t published = 0;
    if (reader_ != nullptr) read_u64(reader_->txn_, reader_->meta_, kMetaPublishedAt, published);
    return static_cast<std::int64_t>(published);
}

void Reader::prefetch_bucket_place(const Digest &hash) const noexcept {
    if (bucket_bits_ == 0) return;
    std::uint64_t *place = bucket_place(key_bucket(hash.data(), bucket_bits_));
    if (place == nullptr) return;
    __builtin_prefetch(place);
    __builtin_prefetch(epoch_of(place));  // the lookup's check, later
}

void Reader::prefetch_key(const Digest &hash) const noexcept {
    if (bucket_bits_ == 0) return;  // no version read yet: no bucket count to hash with
    // A place remembered in an older version (any epoch) is still right for every bucket
    // the publishes since did not rewrite (a create rewrites one of thousands), and a
    // wrong or unmapped one costs a wasted prefetch: prefetches never fault.
    const std::uint64_t *place = bucket_place(key_bucket(hash.data(), bucket_bits_));
    if (place != nullptr && *place != 0) prefetch_in_bucket(unpack_place(*place), hash);
}

Lookup Reader::View::find_key(const Digest &hash, KeyRecord &out) const noexcept {
    std::string_view bucket, record;
    if (reader_->bucket(key_bucket(hash.data(), reader_->bucket_bits_), bucket) != MDB_SUCCESS)
        return Lookup::corrupt;
    if (bucket.empty()) return Lookup::absent;
    switch (find_in_bucket(bucket, hash, record)) {
    case BucketLookup::found: return decode(record, out) ? Lookup::found : Lookup::corrupt;
    case BucketLookup::absent: return Lookup::absent;
    case BucketLookup::corrupt: break;
    }
    return Lookup::corrupt;
}

Lookup Reader::View::find_workspace(std::string_view path, WorkspaceView &out) const noexcept {
    if (path.empty() || path.size() > 511) return Lookup::absent;  // LMDB's key limit
    std::string_view value;
    const int rc = reader_->get(reader_->workspaces_, reader_->recent_workspaces_, path, value);
    if (rc == MDB_NOTFOUND) return Lookup::absent;
    if (rc != MDB_SUCCESS) return Lookup::corrupt;
    return decode(value, out) ? Lookup::found : Lookup::corrupt;
}

Lookup Reader::View::find_entity(const Uuid &workspace, std::string_view entity,
                                 EntityView &out) const noexcept {
    // LMDB's key limit is 511 bytes; the 16-byte workspace id comes first.
    if (entity.empty() || entity.size() > 511 - workspace.bytes.size()) return Lookup::absent;
    char key[511];
    std::memcpy(key, workspace.bytes.data(), workspace.bytes.size());
    std::memcpy(key + workspace.bytes.size(), entity.data(), entity.size());
    std::string_view value;
    const int rc = reader_->get(reader_->entities_, reader_->recent_entities_,
                                std::string_view(key, workspace.bytes.size() + entity.size()), value);
    if (rc == MDB_NOTFOUND) return Lookup::absent;
    if (rc != MDB_SUCCESS) return Lookup::corrupt;
    return decode(value, out) ? Lookup::found : Lookup::corrupt;
}

}  // namespace apikey::snapshot
