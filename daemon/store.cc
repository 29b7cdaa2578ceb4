#include "store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace apikeyd {

namespace lmdb = apikey::lmdb;
using apikey::snapshot::decode_u64;
using apikey::snapshot::encode_u64;

namespace {

constexpr std::uint64_t kStoreFormat = 1;
constexpr std::string_view kMetaFormat = "format";
constexpr std::string_view kMetaGeneration = "generation";

std::string_view bytes_of(const Uuid &id) {
    return {reinterpret_cast<const char *>(id.bytes.data()), id.bytes.size()};
}

// workspace_keys key: workspace uuid + big-endian seq, so a prefix scan lists a
// workspace's keys in creation order.
std::string workspace_key_entry(const Uuid &workspace, std::uint64_t seq) {
    std::string out(bytes_of(workspace));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(seq >> (8 * i) & 0xFF));
    return out;
}

std::uint64_t read_generation(lmdb::Txn &txn, MDB_dbi meta) {
    std::uint64_t generation = 0;
    const auto g = lmdb::get(txn, meta, kMetaGeneration);
    if (!g || !decode_u64(*g, generation)) throw CorruptRecord("store has no generation");
    return generation;
}

void ensure_private_dir(const std::string &dir) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        throw std::system_error(errno, std::generic_category(), "mkdir " + dir);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
        throw std::system_error(errno, std::generic_category(), "stat " + dir);
    if (!S_ISDIR(st.st_mode)) throw std::runtime_error(dir + " is not a directory");
    if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0)
        throw std::system_error(errno, std::generic_category(), "chmod " + dir);
}

}  // namespace

// One write transaction that moves the store to the next generation. Every mutation goes
// through it, so "generation" can never change without a matching Change (and this is
// where a change-feed append goes).
class Store::Mutation {
public:
    explicit Mutation(Store &store) : store_(store), txn_(*store.env_, 0) {
        change_.generation = read_generation(txn_, store.meta_) + 1;
    }
    lmdb::Txn &txn() { return txn_; }
    Change &change() { return change_; }
    std::uint64_t generation() const { return change_.generation; }

    Change commit() {
        lmdb::put(txn_, store_.meta_, kMetaGeneration, encode_u64(change_.generation));
        txn_.commit();
        return std::move(change_);
    }

private:
    Store &store_;
    lmdb::Txn txn_;
    Change change_;
};

Store::Store(const Options &options) {
    ensure_private_dir(options.dir);

    const std::string lock_path = options.dir + "/apikeyd.lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + lock_path);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        ::close(lock_fd_);
        lock_fd_ = -1;
        if (err == EWOULDBLOCK)
            throw std::runtime_error("another apikeyd is already using " + options.dir);
        throw std::system_error(err, std::generic_category(), "flock " + lock_path);
    }

    try {
        lmdb::EnvOptions env_options;
        env_options.map_size = options.map_size;
        env_options.max_dbs = 16;
        env_options.max_readers = 126;
        env_options.mode = 0600;
        env_ = std::make_unique<lmdb::Env>(options.dir, env_options);
        env_->reader_check();

        lmdb::Txn txn(*env_, 0);
        meta_ = lmdb::open_dbi(txn, "meta");
        workspaces_ = lmdb::open_dbi(txn, "workspaces");
        workspace_paths_ = lmdb::open_dbi(txn, "workspace_paths");
        keys_ = lmdb::open_dbi(txn, "keys");
        workspace_keys_ = lmdb::open_dbi(txn, "workspace_keys");
        std::uint64_t format = 0;
        if (const auto f = lmdb::get(txn, meta_, kMetaFormat)) {
            if (!decode_u64(*f, format) || format != kStoreFormat)
                throw std::runtime_error("store in " + options.dir +
                                         " has a format this apikeyd does not know");
            read_generation(txn, meta_);
        } else {
            // A new store starts at generation 1, so it never equals the 0 that a new
            // (never published) snapshot reports: the first start always publishes.
            lmdb::put(txn, meta_, kMetaFormat, encode_u64(kStoreFormat));
            lmdb::put(txn, meta_, kMetaGeneration, encode_u64(1));
        }
        txn.commit();
    } catch (...) {
        env_.reset();
        ::close(lock_fd_);
        throw;
    }
}

Store::~Store() {
    env_.reset();
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::uint64_t Store::generation() { return view().generation(); }

Store::View Store::view() { return View(*this); }

Store::View::View(Store &store)
    : store_(store), txn_(std::make_unique<lmdb::Txn>(*store.env_, MDB_RDONLY)) {}

std::uint64_t Store::View::generation() { return read_generation(*txn_, store_.meta_); }

std::vector<Workspace> Store::View::workspaces() {
    std::vector<Workspace> out;
    lmdb::Cursor cursor(*txn_, store_.workspaces_);
    for (bool ok = cursor.seek(); ok; ok = cursor.next())
        out.push_back(decode_workspace(cursor.value()));
    std::sort(out.begin(), out.end(),
              [](const Workspace &a, const Workspace &b) { return a.seq < b.seq; });
    return out;
}

std::optional<Workspace> Store::View::workspace(const Uuid &id) {
    const auto bytes = lmdb::get(*txn_, store_.workspaces_, bytes_of(id));
    if (!bytes) return std::nullopt;
    return decode_workspace(*bytes);
}

std::vector<ApiKey> Store::View::keys_of(const Uuid &workspace_id) {
    std::vector<ApiKey> out;
    const std::string_view prefix = bytes_of(workspace_id);
    lmdb::Cursor cursor(*txn_, store_.workspace_keys_);
    for (bool ok = cursor.seek(prefix); ok && cursor.key().substr(0, 16) == prefix;
         ok = cursor.next()) {
        const auto bytes = lmdb::get(*txn_, store_.keys_, cursor.value());
        if (!bytes) throw CorruptRecord("workspace_keys points at a missing key");
        out.push_back(decode_key(*bytes));
    }
    return out;
}

std::optional<ApiKey> Store::View::key(const Uuid &id) {
    const auto bytes = lmdb::get(*txn_, store_.keys_, bytes_of(id));
    if (!bytes) return std::nullopt;
    return decode_key(*bytes);
}

void Store::View::for_each_key(const std::function<void(const ApiKey &)> &fn) {
    lmdb::Cursor cursor(*txn_, store_.keys_);
    for (bool ok = cursor.seek(); ok; ok = cursor.next()) fn(decode_key(cursor.value()));
}

Change Store::create_workspace(Workspace &workspace) {
    Mutation m(*this);
    const std::string path = workspace.path();
    if (lmdb::get(m.txn(), workspace_paths_, path))
        throw Conflict("workspace " + path + " already exists");
    workspace.seq = m.generation();
    lmdb::put(m.txn(), workspaces_, bytes_of(workspace.id), encode(workspace), MDB_NOOVERWRITE);
    lmdb::put(m.txn(), workspace_paths_, path, bytes_of(workspace.id));
    m.change().workspaces_put.push_back(workspace);
    return m.commit();
}

std::optional<Change> Store::delete_workspace(const Uuid &id, std::int64_t now) {
    Mutation m(*this);
    const auto bytes = lmdb::get(m.txn(), workspaces_, bytes_of(id));
    if (!bytes) return std::nullopt;
    const Workspace workspace = decode_workspace(*bytes);

    // Revoke its keys. They stay in `keys` (revoked), so the snapshot keeps answering
    // key_revoked for them rather than forgetting them; the listing index goes.
    std::vector<std::string> index_entries;
    {
        const std::string_view prefix = bytes_of(id);
        lmdb::Cursor cursor(m.txn(), workspace_keys_);
        for (bool ok = cursor.seek(prefix); ok && cursor.key().substr(0, 16) == prefix;
             ok = cursor.next()) {
            index_entries.emplace_back(cursor.key());
            const auto key_bytes = lmdb::get(m.txn(), keys_, cursor.value());
            if (!key_bytes) throw CorruptRecord("workspace_keys points at a missing key");
            ApiKey key = decode_key(*key_bytes);
            if (key.status != KeyStatus::revoked) {
                key.status = KeyStatus::revoked;
                key.updated_at = now;
            }
            m.change().keys_put.push_back(std::move(key));
        }
    }
    for (const ApiKey &key : m.change().keys_put)
        lmdb::put(m.txn(), keys_, bytes_of(key.id), encode(key));
    for (const std::string &entry : index_entries) lmdb::del(m.txn(), workspace_keys_, entry);
    lmdb::del(m.txn(), workspace_paths_, workspace.path());
    lmdb::del(m.txn(), workspaces_, bytes_of(id));
    m.change().workspaces_deleted.push_back(workspace);
    return m.commit();
}

std::optional<Change> Store::create_key(ApiKey &key) {
    Mutation m(*this);
    if (!lmdb::get(m.txn(), workspaces_, bytes_of(key.workspace_id))) return std::nullopt;
    key.seq = m.generation();
    lmdb::put(m.txn(), keys_, bytes_of(key.id), encode(key), MDB_NOOVERWRITE);
    lmdb::put(m.txn(), workspace_keys_, workspace_key_entry(key.workspace_id, key.seq),
              bytes_of(key.id));
    m.change().keys_put.push_back(key);
    return m.commit();
}

Store::Revoke Store::revoke_key(const Uuid &workspace_id, const Uuid &key_id, std::int64_t now,
                                Change &change) {
    Mutation m(*this);
    if (!lmdb::get(m.txn(), workspaces_, bytes_of(workspace_id))) return Revoke::not_found;
    const auto bytes = lmdb::get(m.txn(), keys_, bytes_of(key_id));
    if (!bytes) return Revoke::not_found;
    ApiKey key = decode_key(*bytes);
    if (key.workspace_id != workspace_id) return Revoke::not_found;
    // Idempotent: a second revoke changes nothing, not even updated_at or the generation.
    if (key.status == KeyStatus::revoked) return Revoke::already_revoked;
    key.status = KeyStatus::revoked;
    key.updated_at = now;
    lmdb::put(m.txn(), keys_, bytes_of(key.id), encode(key));
    m.change().keys_put.push_back(std::move(key));
    change = m.commit();
    return Revoke::revoked;
}

}  // namespace apikeyd
