#include "snapshot_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace apikey::snapshot {
namespace {

void set_mode(const std::string &path, mode_t mode, const std::optional<gid_t> &group) {
    if (group && ::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0)
        throw std::system_error(errno, std::generic_category(), "chown " + path);
    if (::chmod(path.c_str(), mode) != 0)
        throw std::system_error(errno, std::generic_category(), "chmod " + path);
}

std::string_view bucket_key(const std::uint32_t &bucket) {
    return {reinterpret_cast<const char *>(&bucket), sizeof(bucket)};
}

// Drops data.mdb's cached pages after a publish that wrote much of the key table. Its
// pwrite()s left them in 4 KiB folios, and a worker maps cached folios as they are: each
// random key lookup then walks 4 KiB page tables. Read back by the workers' faults on a
// map advised MADV_HUGEPAGE (snapshot_reader.cc), the pages come in 2 MB folios where the
// kernel has large folios for the file system (ext4 since Linux 6.16, XFS since 5.18) and
// are mapped by one entry each; later pwrite()s of a publish go into those folios and
// keep them. The walk is what is left of the lookup's cost once the module prefetches the
// entry early (post-read phase): 2 MB mappings took 0.05-0.19 us a request off it here.
// The commit has synced the data pages, so this loses nothing; pages a process maps (a
// running worker's) stay cached as they are. Best effort: without large folios the
// workers read the file back in read-ahead chunks once. docs/BENCHMARKS.md.
// 2 MB: one huge page. A publish that wrote less cannot have filled one.
constexpr std::size_t kPageCacheReleaseBytes = std::size_t{2} << 20;

void release_page_cache(MDB_env *env) noexcept {
    mdb_filehandle_t fd = -1;
    if (mdb_env_get_fd(env, &fd) == MDB_SUCCESS)
        (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

}  // namespace

void Batch::put_key(const Digest &hash, const KeyRecord &record) {
    key_edits_.push_back(BucketEntry::make(hash, encode(record)));
}

void Batch::delete_key(const Digest &hash) { key_edits_.push_back(BucketEntry::make(hash, {})); }

void Batch::flush_keys() {
    // Stable: of two edits of one hash, the later one wins. Hash order is bucket order (a
    // bucket is the hash's first bits).
    std::stable_sort(key_edits_.begin(), key_edits_.end(), hash_order);
    if (rebuilding_) {
        std::size_t keys = 0;
        for (std::size_t i = 0; i < key_edits_.size(); ++i)
            if ((i + 1 == key_edits_.size() || key_edits_[i + 1].hash != key_edits_[i].hash) &&
                !key_edits_[i].removes())
                ++keys;
        bucket_bits_ = key_bucket_bits_for(keys);
    }
    std::vector<BucketEntry> edits;
    for (std::size_t i = 0; i < key_edits_.size(); ++i) {
        edits.push_back(key_edits_[i]);
        const std::uint32_t number = key_bucket(key_edits_[i].hash.data(), bucket_bits_);
        if (i + 1 < key_edits_.size() &&
            key_bucket(key_edits_[i + 1].hash.data(), bucket_bits_) == number)
            continue;
        const std::string_view k = bucket_key(number);
        // After clear_all() the table is empty and the buckets come in ascending order.
        const auto old = rebuilding_ ? std::nullopt : lmdb::get(txn_, keys_, k);
        const std::string value = edit_bucket(old.value_or(std::string_view()), edits);
        if (!value.empty()) {
            lmdb::put(txn_, keys_, k, value, rebuilding_ ? MDB_APPEND : 0);
            key_bytes_written_ += value.size();
        } else if (old) {
            lmdb::del(txn_, keys_, k);
        }
        edits.clear();
    }
    std::vector<BucketEntry>().swap(key_edits_);
}

void Batch::put_workspace(std::string_view path, const WorkspaceRecord &record) {
    lmdb::put(txn_, workspaces_, path, encode(record));
}

void Batch::delete_workspace(std::string_view path) { lmdb::del(txn_, workspaces_, path); }

void Batch::put_entity(const Uuid &workspace, std::string_view entity,
                       const EntityRecord &record) {
    lmdb::put(txn_, entities_, entity_key(workspace, entity), encode(record));
}

void Batch::delete_entity(const Uuid &workspace, std::string_view entity) {
    lmdb::del(txn_, entities_, entity_key(workspace, entity));
}

void Batch::clear_all() {
    std::vector<BucketEntry>().swap(key_edits_);
    rebuilding_ = true;
    lmdb::clear(txn_, keys_);
    // Key tables of older formats, left by an older apikeyd: their pages go back to the
    // free list.
    for (const char *name : kLegacyKeysDbs) {
        MDB_dbi legacy = 0;
        if (mdb_dbi_open(txn_.get(), name, 0, &legacy) == MDB_SUCCESS)
            lmdb::check(mdb_drop(txn_.get(), legacy, 1), "mdb_drop");
    }
    lmdb::clear(txn_, workspaces_);
    lmdb::clear(txn_, entities_);
}

Writer::Writer(const WriterOptions &options) : max_map_size_(options.max_map_size) {
    data_path_ = options.dir + "/data.mdb";
    std::filesystem::create_directories(options.dir);
    set_mode(options.dir, options.group ? 0750 : 0700, options.group);

    lmdb::EnvOptions env_options;
    env_options.map_size = options.map_size;
    // Readers never need to write data.mdb; they do need to write lock.mdb.
    env_options.mode = options.group ? kGroupLockFileMode : 0600;
    if (!options.sync_meta) env_options.flags |= MDB_NOMETASYNC;
    // A truncated data.mdb would SIGBUS apikeyd on its first read (one cut inside its first
    // page LMDB refuses as MDB_INVALID). The snapshot is only a copy of the store: throw it
    // away and start a new one (generation 0, so the publisher rebuilds it; nginx workers
    // see a new inode and reopen within a second).
    std::uint64_t needed = 0, actual = 0;
    try {
        env_ = std::make_unique<lmdb::Env>(options.dir, env_options);
        if (!lmdb::file_is_complete(env_->get(), needed, actual))
            discarded_ = "snapshot data.mdb in " + options.dir + " was truncated (" +
                         std::to_string(actual) + " bytes, its newest commit needs " +
                         std::to_string(needed) + "): discarded, rebuilding it from the store";
    } catch (const lmdb::LmdbError &e) {
        if (e.code() != MDB_INVALID) throw;
        discarded_ = "snapshot data.mdb in " + options.dir + " is not an LMDB file (" +
                     e.what() + "): discarded, rebuilding it from the store";
    }
    if (!discarded_.empty()) {
        env_.reset();
        for (const char *name : {"/data.mdb", "/lock.mdb"}) {
            const std::string path = options.dir + name;
            if (::unlink(path.c_str()) != 0 && errno != ENOENT)
                throw std::system_error(errno, std::generic_category(), "unlink " + path);
        }
        env_ = std::make_unique<lmdb::Env>(options.dir, env_options);
    }
    set_mode(options.dir + "/data.mdb", options.group ? 0640 : 0600, options.group);
    set_mode(options.dir + "/lock.mdb", options.group ? kGroupLockFileMode : 0600, options.group);

    // Slots of readers that died (a crashed nginx worker) would pin old pages forever.
    env_->reader_check();

    lmdb::Txn txn(*env_, 0);
    meta_ = lmdb::open_dbi(txn, kMetaDb);
    keys_ = lmdb::open_dbi(txn, kKeysDb, MDB_CREATE | MDB_INTEGERKEY);
    workspaces_ = lmdb::open_dbi(txn, kWorkspacesDb);
    entities_ = lmdb::open_dbi(txn, kEntitiesDb);
    txn.commit();
}

bool Writer::in_place() const {
    mdb_filehandle_t fd = -1;
    struct stat open_file {}, at_path {};
    if (mdb_env_get_fd(env_->get(), &fd) != MDB_SUCCESS || ::fstat(fd, &open_file) != 0)
        return true;  // cannot tell: assume nothing happened
    if (::stat(data_path_.c_str(), &at_path) != 0) return errno != ENOENT && errno != ENOTDIR;
    return open_file.st_dev == at_path.st_dev && open_file.st_ino == at_path.st_ino;
}

std::uint64_t Writer::generation() {
    lmdb::Txn txn(*env_, MDB_RDONLY);
    std::uint64_t format = 0, generation = 0;
    const auto f = lmdb::get(txn, meta_, kMetaFormat);
    const auto g = lmdb::get(txn, meta_, kMetaGeneration);
    if (!f || !decode_u64(*f, format) || format != kFormatVersion) return 0;
    if (!g || !decode_u64(*g, generation)) return 0;
    return generation;
}

std::size_t Writer::map_size() const {
    MDB_envinfo info{};
    lmdb::check(mdb_env_info(env_->get(), &info), "mdb_env_info");
    return info.me_mapsize;
}

bool Writer::grow_map() {
    const std::size_t now = map_size();
    if (now >= max_map_size_) return false;
    const std::size_t grown = now > max_map_size_ / 2 ? max_map_size_ : now * 2;
    // Allowed only with no transaction of this environment open in this process: the
    // failed publish's has been aborted, and nothing else here holds one. Readers in other
    // processes (nginx workers) get MDB_MAP_RESIZED on their next transaction and adopt
    // the new size (snapshot_reader.cc).
    lmdb::check(mdb_env_set_mapsize(env_->get(), grown), "mdb_env_set_mapsize");
    return true;
}

void Writer::publish(std::uint64_t generation, const std::function<void(Batch &)> &edit) {
    while (true) {
        try {
            publish_once(generation, edit);
            return;
        } catch (const lmdb::LmdbError &e) {
            // publish_once's transaction is gone: nothing of the attempt was written.
            if (e.code() != MDB_MAP_FULL || !grow_map()) throw;
        }
    }
}

void Writer::publish_once(std::uint64_t generation, const std::function<void(Batch &)> &edit) {
    env_->reader_check();
    lmdb::Txn txn(*env_, 0);
    // The bucket count of the key table as it stands; a rebuild (clear_all) picks anew.
    std::uint64_t bits = 0;
    const auto stamped = lmdb::get(txn, meta_, kMetaKeyBucketBits);
    if (!stamped || !decode_u64(*stamped, bits) || bits < kMinKeyBucketBits ||
        bits > kMaxKeyBucketBits)
        bits = key_bucket_bits_for(0);
    Batch batch(txn, keys_, workspaces_, entities_, static_cast<unsigned>(bits));
    edit(batch);
    batch.flush_keys();
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    lmdb::put(txn, meta_, kMetaFormat, encode_u64(kFormatVersion));
    lmdb::put(txn, meta_, kMetaGeneration, encode_u64(generation));
    lmdb::put(txn, meta_, kMetaKeyBucketBits, encode_u64(batch.bucket_bits_));
    lmdb::put(txn, meta_, kMetaPublishedAt, encode_u64(static_cast<std::uint64_t>(now_ms)));
    txn.commit();
    if (batch.key_bytes_written_ >= kPageCacheReleaseBytes) release_page_cache(env_->get());
}

}  // namespace apikey::snapshot
