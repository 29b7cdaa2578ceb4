#include "store.h"

#include "time_format.h"
#include "views.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <nlohmann/json.hpp>

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

std::string big_endian(std::uint64_t seq) {
    std::string out;
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(seq >> (8 * i) & 0xFF));
    return out;
}

std::uint64_t from_big_endian(std::string_view bytes) {
    std::uint64_t v = 0;
    for (const char c : bytes.substr(0, 8)) v = v << 8 | static_cast<unsigned char>(c);
    return v;
}

// workspace_keys and workspace_changes keys: workspace uuid + big-endian seq, so a
// prefix scan lists a workspace's keys (changes) in order.
std::string workspace_key_entry(const Uuid &workspace, std::uint64_t seq) {
    return std::string(bytes_of(workspace)) + big_endian(seq);
}

std::string_view digest_bytes(const Digest &d) {
    return {reinterpret_cast<const char *>(d.data()), d.size()};
}

std::string entity_settings_key(const Uuid &workspace, std::string_view entity) {
    return std::string(bytes_of(workspace)).append(entity);
}

// Puts `n` new entries whose keys ascend; entry(i) returns (key, value) views valid until
// the next call. Those beyond the table's last key are appended (MDB_APPEND: no search,
// pages filled completely), the others inserted. False when a key already exists.
template <typename Entry>
bool put_ascending(lmdb::Txn &txn, MDB_dbi dbi, std::size_t n, Entry entry) {
    MDB_cursor *raw = nullptr;
    lmdb::check(mdb_cursor_open(txn.get(), dbi, &raw), "mdb_cursor_open");
    const std::unique_ptr<MDB_cursor, void (*)(MDB_cursor *)> cursor(raw, mdb_cursor_close);
    MDB_val last{}, unused{};
    int rc = mdb_cursor_get(raw, &last, &unused, MDB_LAST);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) lmdb::check(rc, "mdb_cursor_get");
    const std::string last_key = rc == MDB_NOTFOUND ? std::string() : std::string(lmdb::from_val(last));
    bool append = rc == MDB_NOTFOUND;
    for (std::size_t i = 0; i < n; ++i) {
        const auto [key, value] = entry(i);
        MDB_val k = lmdb::to_val(key), v = lmdb::to_val(value);
        if (!append) {
            MDB_val l = lmdb::to_val(last_key);
            append = mdb_cmp(txn.get(), dbi, &k, &l) > 0;
        }
        rc = mdb_cursor_put(raw, &k, &v, append ? MDB_APPEND : MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) return false;
        lmdb::check(rc, "mdb_cursor_put");
    }
    return true;
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
// through it, so "generation" can never change without a matching Change and exactly one
// change-feed entry, committed together.
class Store::Mutation {
public:
    Mutation(Store &store, const Audit &audit)
        : store_(store), audit_(audit),
          txn_(store.batch_ ? lmdb::Txn(*store.env_, *store.batch_) : lmdb::Txn(*store.env_, 0)) {
        change_.generation = read_generation(txn_, store.meta_) + 1;
    }
    lmdb::Txn &txn() { return txn_; }
    Change &change() { return change_; }
    std::uint64_t generation() const { return change_.generation; }

    // The change-feed entry of this mutation; `object` is the object after the change as
    // the API shows it.
    void record(std::string_view type, const Uuid &workspace_id, nlohmann::ordered_json object,
                const std::string *entity = nullptr) {
        entry_ = nlohmann::ordered_json();
        entry_["seq"] = change_.generation;
        entry_["time"] = format_iso8601(audit_.time);
        entry_["actor"] = audit_.actor;
        entry_["type"] = type;
        entry_["workspace_id"] = apikey::to_string(workspace_id);
        if (entity != nullptr) entry_["entity"] = *entity;
        entry_["object"] = std::move(object);
        workspace_ = workspace_id;
    }

    Change commit() {
        if (entry_.is_null()) throw std::logic_error("a store mutation without a change-feed entry");
        const std::string seq = big_endian(change_.generation);
        lmdb::put(txn_, store_.changes_, seq,
                  entry_.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace),
                  MDB_NOOVERWRITE);
        lmdb::put(txn_, store_.workspace_changes_, std::string(bytes_of(workspace_)) + seq, {});
        lmdb::put(txn_, store_.meta_, kMetaGeneration, encode_u64(change_.generation));
        txn_.commit();
        if (store_.batch_ == nullptr) ++store_.commits_;  // else durable with the batch
        return std::move(change_);
    }

private:
    Store &store_;
    const Audit &audit_;
    lmdb::Txn txn_;
    Change change_;
    nlohmann::ordered_json entry_;
    Uuid workspace_;
};

Store::Store(const Options &options) {
    ensure_private_dir(options.dir);

    const std::string lock_path = options.dir + "/apikeyd.lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + lock_path);
    ::fchmod(lock_fd_, 0600);  // also when an older file had a looser mode
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
        // Explicit, whatever the umask or a restored backup's modes: apikeyd's user only.
        for (const char *file : {"/data.mdb", "/lock.mdb"}) ::chmod((options.dir + file).c_str(), 0600);
        // Truncated, the store would SIGBUS apikeyd on its first read (at every restart).
        // It is the only copy of the data: refuse to start, saying why.
        std::uint64_t needed = 0, actual = 0;
        if (!lmdb::file_is_complete(env_->get(), needed, actual))
            throw std::runtime_error("store " + options.dir + "/data.mdb is truncated: " +
                                     std::to_string(actual) + " bytes, its newest commit needs " +
                                     std::to_string(needed) + "; restore it from a backup");
        env_->reader_check();

        lmdb::Txn txn(*env_, 0);
        meta_ = lmdb::open_dbi(txn, "meta");
        workspaces_ = lmdb::open_dbi(txn, "workspaces");
        workspace_paths_ = lmdb::open_dbi(txn, "workspace_paths");
        keys_ = lmdb::open_dbi(txn, "keys");
        workspace_keys_ = lmdb::open_dbi(txn, "workspace_keys");
        entity_settings_ = lmdb::open_dbi(txn, "entity_settings");
        changes_ = lmdb::open_dbi(txn, "changes");
        workspace_changes_ = lmdb::open_dbi(txn, "workspace_changes");
        key_hashes_ = lmdb::open_dbi(txn, "key_hashes");
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
        // Stores written before key_hashes existed (or any mismatch): rebuild the index
        // from the keys, in this same transaction. Cheap counts, no scan, when in step.
        MDB_stat keys_stat{}, hashes_stat{};
        lmdb::check(mdb_stat(txn.get(), keys_, &keys_stat), "mdb_stat");
        lmdb::check(mdb_stat(txn.get(), key_hashes_, &hashes_stat), "mdb_stat");
        if (keys_stat.ms_entries != hashes_stat.ms_entries) {
            lmdb::clear(txn, key_hashes_);
            lmdb::Cursor cursor(txn, keys_);
            for (bool ok = cursor.seek(); ok; ok = cursor.next()) {
                const ApiKey key = decode_key(cursor.value());
                lmdb::put(txn, key_hashes_, digest_bytes(key.key_sha256), bytes_of(key.id));
            }
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

std::uint64_t Store::generation() { return committed_view().generation(); }

Store::View Store::view() { return View(*this, batch_); }

Store::View Store::committed_view() { return View(*this, nullptr); }

Store::View::View(Store &store, lmdb::Txn *batch)
    : store_(store), own_(batch ? nullptr : std::make_unique<lmdb::Txn>(*store.env_, MDB_RDONLY)),
      txn_(batch ? batch : own_.get()) {}

Store::Batch::Batch(Store &store) : store_(store) {
    if (store.batch_ != nullptr) throw std::logic_error("a store batch is already open");
    txn_ = std::make_unique<lmdb::Txn>(*store.env_, 0);
    store.batch_ = txn_.get();
}

Store::Batch::~Batch() {
    if (store_.batch_ == txn_.get()) store_.batch_ = nullptr;
}

void Store::Batch::commit() {
    store_.batch_ = nullptr;  // over, whatever happens: later mutations commit alone
    try {
        if (store_.before_batch_commit_) store_.before_batch_commit_();
    } catch (...) {
        txn_->abort();
        throw;
    }
    txn_->commit();
    ++store_.commits_;
}

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

namespace {

// workspace_keys' key after the workspace uuid: big-endian seq, then the big-endian index
// for an imported key.
std::string position_bytes(const ListPosition &p) {
    std::string out = big_endian(p.seq);
    if (p.index)
        for (int b = 3; b >= 0; --b) out.push_back(static_cast<char>(*p.index >> (8 * b) & 0xFF));
    return out;
}

ListPosition position_of(std::string_view suffix) {
    ListPosition p;
    p.seq = from_big_endian(suffix);
    if (suffix.size() == 12) {
        std::uint32_t index = 0;
        for (const char c : suffix.substr(8)) index = index << 8 | static_cast<unsigned char>(c);
        p.index = index;
    } else if (suffix.size() != 8) {
        throw CorruptRecord("workspace_keys holds an entry of a bad length");
    }
    return p;
}

}  // namespace

KeyPage Store::View::keys_page(const Uuid &workspace_id, const std::optional<ListPosition> &after,
                               std::size_t limit) {
    KeyPage out;
    const std::string_view prefix = bytes_of(workspace_id);
    // Entries sort by seq then index (a plain seq before its batch's indexed entries, which
    // never share it), so the page starts at the first entry past `after`.
    const std::string from = std::string(prefix) + (after ? position_bytes(*after) : std::string());
    lmdb::Cursor cursor(*txn_, store_.workspace_keys_);
    for (bool ok = cursor.seek(from); ok && cursor.key().substr(0, 16) == prefix; ok = cursor.next()) {
        if (after && cursor.key() <= std::string_view(from)) continue;
        if (out.keys.size() == limit) {
            out.more = true;
            break;
        }
        const auto bytes = lmdb::get(*txn_, store_.keys_, cursor.value());
        if (!bytes) throw CorruptRecord("workspace_keys points at a missing key");
        out.keys.push_back(decode_key(*bytes));
        out.last = position_of(cursor.key().substr(16));
    }
    return out;
}

std::optional<ApiKey> Store::View::key(const Uuid &id) {
    const auto bytes = lmdb::get(*txn_, store_.keys_, bytes_of(id));
    if (!bytes) return std::nullopt;
    return decode_key(*bytes);
}

std::optional<Uuid> Store::View::key_by_hash(const Digest &key_sha256) {
    const auto bytes = lmdb::get(*txn_, store_.key_hashes_, digest_bytes(key_sha256));
    if (!bytes) return std::nullopt;
    if (bytes->size() != 16) throw CorruptRecord("key_hashes holds a bad key id");
    Uuid id;
    std::copy_n(bytes->data(), 16, reinterpret_cast<char *>(id.bytes.data()));
    return id;
}

void Store::View::for_each_key(const std::function<void(const ApiKey &)> &fn) {
    lmdb::Cursor cursor(*txn_, store_.keys_);
    for (bool ok = cursor.seek(); ok; ok = cursor.next()) fn(decode_key(cursor.value()));
}

void Store::View::for_each_key_by_hash(const std::function<void(const ApiKey &)> &fn) {
    lmdb::Cursor cursor(*txn_, store_.key_hashes_);
    for (bool ok = cursor.seek(); ok; ok = cursor.next()) {
        const auto bytes = lmdb::get(*txn_, store_.keys_, cursor.value());
        if (!bytes) throw CorruptRecord("key_hashes points at a missing key");
        fn(decode_key(*bytes));
    }
}

std::optional<EntitySettings> Store::View::entity_settings(const Uuid &workspace_id,
                                                          std::string_view entity) {
    const auto bytes =
        lmdb::get(*txn_, store_.entity_settings_, entity_settings_key(workspace_id, entity));
    if (!bytes) return std::nullopt;
    return decode_entity_settings(*bytes);
}

void Store::View::for_each_entity(
    const std::function<void(const Uuid &, std::string_view, const EntitySettings &)> &fn) {
    lmdb::Cursor cursor(*txn_, store_.entity_settings_);
    for (bool ok = cursor.seek(); ok; ok = cursor.next()) {
        if (cursor.key().size() <= 16) throw CorruptRecord("entity_settings key too short");
        Uuid workspace_id;
        std::copy_n(cursor.key().data(), 16, reinterpret_cast<char *>(workspace_id.bytes.data()));
        fn(workspace_id, cursor.key().substr(16), decode_entity_settings(cursor.value()));
    }
}

std::vector<FeedEntry> Store::View::changes(const std::optional<Uuid> &workspace_id,
                                            std::uint64_t after, std::size_t limit,
                                            std::size_t max_bytes) {
    std::vector<FeedEntry> out;
    if (after == UINT64_MAX || limit == 0) return out;
    std::size_t bytes = 0;
    auto add = [&](std::uint64_t seq, std::string_view entry) {
        if (!out.empty() && bytes + entry.size() > max_bytes) return false;
        bytes += entry.size();
        out.push_back({seq, std::string(entry)});
        return out.size() < limit;
    };
    if (!workspace_id) {
        lmdb::Cursor cursor(*txn_, store_.changes_);
        for (bool ok = cursor.seek(big_endian(after + 1)); ok; ok = cursor.next())
            if (!add(from_big_endian(cursor.key()), cursor.value())) break;
        return out;
    }
    const std::string_view prefix = bytes_of(*workspace_id);
    lmdb::Cursor cursor(*txn_, store_.workspace_changes_);
    for (bool ok = cursor.seek(workspace_key_entry(*workspace_id, after + 1));
         ok && cursor.key().size() == 24 && cursor.key().substr(0, 16) == prefix; ok = cursor.next()) {
        const std::string seq(cursor.key().substr(16));
        const auto entry = lmdb::get(*txn_, store_.changes_, seq);
        if (!entry) throw CorruptRecord("workspace_changes points at a missing change");
        if (!add(from_big_endian(seq), *entry)) break;
    }
    return out;
}

Change Store::create_workspace(Workspace &workspace, const Audit &audit) {
    Mutation m(*this, audit);
    const std::string path = workspace.path();
    if (lmdb::get(m.txn(), workspace_paths_, path))
        throw Conflict("workspace " + path + " already exists");
    workspace.seq = m.generation();
    lmdb::put(m.txn(), workspaces_, bytes_of(workspace.id), encode(workspace), MDB_NOOVERWRITE);
    lmdb::put(m.txn(), workspace_paths_, path, bytes_of(workspace.id));
    m.change().workspaces_put.push_back(workspace);
    m.record("workspace.created", workspace.id, workspace_json(workspace));
    return m.commit();
}

std::optional<Change> Store::delete_workspace(const Uuid &id, const Audit &audit) {
    const std::int64_t now = audit.time;
    Mutation m(*this, audit);
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

    // Its entity settings go with it, from the store and from the snapshot.
    std::vector<std::string> entity_entries;
    {
        const std::string_view prefix = bytes_of(id);
        lmdb::Cursor cursor(m.txn(), entity_settings_);
        for (bool ok = cursor.seek(prefix); ok && cursor.key().substr(0, 16) == prefix;
             ok = cursor.next()) {
            entity_entries.emplace_back(cursor.key());
            m.change().entities_deleted.push_back({id, std::string(cursor.key().substr(16))});
        }
    }
    for (const std::string &entry : entity_entries) lmdb::del(m.txn(), entity_settings_, entry);

    lmdb::del(m.txn(), workspace_paths_, workspace.path());
    lmdb::del(m.txn(), workspaces_, bytes_of(id));
    m.change().workspaces_deleted.push_back(workspace);
    m.record("workspace.deleted", id, workspace_json(workspace));
    return m.commit();
}

std::optional<Change> Store::create_key(ApiKey &key, const Audit &audit) {
    Mutation m(*this, audit);
    if (!lmdb::get(m.txn(), workspaces_, bytes_of(key.workspace_id))) return std::nullopt;
    key.seq = m.generation();
    lmdb::put(m.txn(), keys_, bytes_of(key.id), encode(key), MDB_NOOVERWRITE);
    lmdb::put(m.txn(), workspace_keys_, workspace_key_entry(key.workspace_id, key.seq),
              bytes_of(key.id));
    lmdb::put(m.txn(), key_hashes_, digest_bytes(key.key_sha256), bytes_of(key.id),
              MDB_NOOVERWRITE);
    m.change().keys_put.push_back(key);
    m.record("api_key.created", key.workspace_id, key_json(key));  // never the raw key
    return m.commit();
}

std::optional<Change> Store::import_keys(const Uuid &workspace_id, std::vector<ApiKey> &keys,
                                        const Audit &audit) {
    Mutation m(*this, audit);
    if (!lmdb::get(m.txn(), workspaces_, bytes_of(workspace_id))) return std::nullopt;
    const std::uint64_t seq = m.generation();
    for (ApiKey &key : keys) key.seq = seq;

    // Each table in its own key order: every leaf page is then copied (dirtied) once and
    // filled front to back, instead of a random walk over a million-key B-tree; past the
    // table's last key, entries are appended (put_ascending). The sort keys are copied
    // next to their index: sorting a million 200-byte ApiKeys by reference misses cache.
    {
        std::vector<std::pair<Digest, std::uint32_t>> by_hash(keys.size());
        for (std::uint32_t i = 0; i < keys.size(); ++i) by_hash[i] = {keys[i].key_sha256, i};
        std::sort(by_hash.begin(), by_hash.end());
        if (!put_ascending(m.txn(), key_hashes_, by_hash.size(), [&](std::size_t j) {
                return std::pair(digest_bytes(by_hash[j].first), bytes_of(keys[by_hash[j].second].id));
            }))
            throw Conflict("a key with this key_sha256 already exists");
    }
    {
        std::vector<std::pair<std::array<std::uint8_t, 16>, std::uint32_t>> by_id(keys.size());
        for (std::uint32_t i = 0; i < keys.size(); ++i) by_id[i] = {keys[i].id.bytes, i};
        std::sort(by_id.begin(), by_id.end());
        std::string record;
        if (!put_ascending(m.txn(), keys_, by_id.size(), [&](std::size_t j) {
                const ApiKey &key = keys[by_id[j].second];
                record = encode(key);
                return std::pair(bytes_of(key.id), std::string_view(record));
            }))
            throw Conflict("a key id is already taken");
    }
    {
        // workspace + seq + index: ascending in line order.
        std::string entry = workspace_key_entry(workspace_id, seq) + std::string(4, '\0');
        if (!put_ascending(m.txn(), workspace_keys_, keys.size(), [&](std::size_t i) {
                for (int b = 0; b < 4; ++b)
                    entry[24 + b] = static_cast<char>(i >> (8 * (3 - b)) & 0xFF);
                return std::pair(std::string_view(entry), bytes_of(keys[i].id));
            }))
            throw Conflict("a listing entry is already taken");
    }

    // One summary entry: no key objects, no hashes. The batch's keys are listed together,
    // in line order, from first_key_id to last_key_id in GET .../api-keys.
    nlohmann::ordered_json object;
    object["count"] = keys.size();
    object["first_key_id"] = keys.empty() ? nlohmann::ordered_json(nullptr)
                                          : nlohmann::ordered_json(apikey::to_string(keys.front().id));
    object["last_key_id"] = keys.empty() ? nlohmann::ordered_json(nullptr)
                                         : nlohmann::ordered_json(apikey::to_string(keys.back().id));
    object["created_by"] = audit.actor;
    object["created_at"] = format_iso8601(audit.time);
    m.record("api_key.imported", workspace_id, std::move(object));
    m.change().keys_put = std::move(keys);
    keys.clear();
    return m.commit();
}

Store::Revoke Store::revoke_key(const Uuid &workspace_id, const Uuid &key_id, const Audit &audit,
                                Change &change) {
    const std::int64_t now = audit.time;
    Mutation m(*this, audit);
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
    m.record("api_key.revoked", workspace_id, key_json(key));
    m.change().keys_put.push_back(std::move(key));
    change = m.commit();
    return Revoke::revoked;
}

std::uint64_t Store::used_bytes() {
    MDB_envinfo info{};
    MDB_stat stat{};
    lmdb::check(mdb_env_info(env_->get(), &info), "mdb_env_info");
    lmdb::check(mdb_env_stat(env_->get(), &stat), "mdb_env_stat");
    return static_cast<std::uint64_t>(info.me_last_pgno + 1) * stat.ms_psize;
}

Store::UsageResult Store::record_usage(const std::vector<std::pair<Uuid, std::int64_t>> &uses) {
    UsageResult result;
    if (uses.empty()) return result;
    lmdb::Txn txn(*env_, 0);
    for (const auto &[id, used_at] : uses) {
        const auto bytes = lmdb::get(txn, keys_, bytes_of(id));
        if (!bytes) {  // unknown (or another store's) key: nothing to update
            ++result.unknown;
            continue;
        }
        ApiKey key = decode_key(*bytes);
        if (key.last_used_at && *key.last_used_at >= used_at) continue;  // never backwards
        key.last_used_at = used_at;
        lmdb::put(txn, keys_, bytes_of(id), encode(key));
        ++result.updated;
    }
    // Nothing moved: abort (no write, no fsync) rather than commit an empty transaction.
    if (result.updated > 0) txn.commit();
    return result;
}

Store::Update Store::update_key(const Uuid &workspace_id, const Uuid &key_id,
                                const KeyUpdate &update, const Audit &audit, Change &change) {
    Mutation m(*this, audit);
    const auto bytes = lmdb::get(m.txn(), keys_, bytes_of(key_id));
    if (!bytes || !lmdb::get(m.txn(), workspaces_, bytes_of(workspace_id))) return Update::not_found;
    ApiKey key = decode_key(*bytes);
    if (key.workspace_id != workspace_id) return Update::not_found;
    bool changed = false;
    if (update.name && *update.name != key.name) {
        key.name = *update.name;
        changed = true;
    }
    if (update.rate_limit && *update.rate_limit != key.rate_limit) {
        key.rate_limit = *update.rate_limit;
        changed = true;
    }
    if (!changed) return Update::unchanged;
    key.updated_at = audit.time;
    lmdb::put(m.txn(), keys_, bytes_of(key.id), encode(key));
    m.record("api_key.updated", workspace_id, key_json(key));
    m.change().keys_put.push_back(std::move(key));
    change = m.commit();
    return Update::updated;
}

Store::Counts Store::counts() {
    lmdb::Txn txn(*env_, MDB_RDONLY);
    MDB_stat stat{};
    Counts c;
    lmdb::check(mdb_stat(txn.get(), workspaces_, &stat), "mdb_stat");
    c.workspaces = stat.ms_entries;
    lmdb::check(mdb_stat(txn.get(), keys_, &stat), "mdb_stat");
    c.keys = stat.ms_entries;
    return c;
}

Store::Update Store::put_workspace_settings(const Uuid &workspace_id,
                                            const WorkspaceSettings &settings, const Audit &audit,
                                            Change &change) {
    Mutation m(*this, audit);
    const auto bytes = lmdb::get(m.txn(), workspaces_, bytes_of(workspace_id));
    if (!bytes) return Update::not_found;
    Workspace workspace = decode_workspace(*bytes);
    if (workspace.settings == settings) return Update::unchanged;
    const bool depth_changed =
        workspace.settings.effective_max_expand_depth() != settings.effective_max_expand_depth();
    if (workspace.settings.default_rate_limit != settings.default_rate_limit) {
        // Key records hold the resolved limit: republish the keys that inherit it.
        const std::string_view prefix = bytes_of(workspace_id);
        lmdb::Cursor cursor(m.txn(), workspace_keys_);
        for (bool ok = cursor.seek(prefix); ok && cursor.key().substr(0, 16) == prefix;
             ok = cursor.next()) {
            const auto key_bytes = lmdb::get(m.txn(), keys_, cursor.value());
            if (!key_bytes) throw CorruptRecord("workspace_keys points at a missing key");
            ApiKey key = decode_key(*key_bytes);
            if (!key.rate_limit) m.change().keys_put.push_back(std::move(key));
        }
    }
    workspace.settings = settings;
    workspace.updated_at = audit.time;
    lmdb::put(m.txn(), workspaces_, bytes_of(workspace_id), encode(workspace));
    if (depth_changed) {
        // Entity records hold the resolved depth: republish those that inherit it (all of
        // the workspace's, simplest, in this same snapshot transaction).
        const std::string_view prefix = bytes_of(workspace_id);
        lmdb::Cursor cursor(m.txn(), entity_settings_);
        for (bool ok = cursor.seek(prefix); ok && cursor.key().substr(0, 16) == prefix;
             ok = cursor.next())
            m.change().entities_put.push_back(
                {workspace_id, std::string(cursor.key().substr(16)),
                 entity_record(decode_entity_settings(cursor.value()), settings)});
    }
    m.change().workspaces_put.push_back(workspace);
    m.record("workspace.settings_updated", workspace_id, workspace_settings_view(settings));
    change = m.commit();
    return Update::updated;
}

Store::Update Store::put_entity_settings(const Uuid &workspace_id, const std::string &entity,
                                         const EntitySettings &settings, const Audit &audit,
                                         Change &change) {
    Mutation m(*this, audit);
    const auto bytes = lmdb::get(m.txn(), workspaces_, bytes_of(workspace_id));
    if (!bytes) return Update::not_found;
    const Workspace workspace = decode_workspace(*bytes);
    const std::string key = entity_settings_key(workspace_id, entity);
    std::optional<EntitySettings> current;
    if (const auto old = lmdb::get(m.txn(), entity_settings_, key))
        current = decode_entity_settings(*old);
    if (settings.empty()) {
        if (!current) return Update::unchanged;
        lmdb::del(m.txn(), entity_settings_, key);
        m.change().entities_deleted.push_back({workspace_id, entity});
    } else {
        if (current && *current == settings) return Update::unchanged;
        lmdb::put(m.txn(), entity_settings_, key, encode(settings));
        m.change().entities_put.push_back(
            {workspace_id, entity, entity_record(settings, workspace.settings)});
    }
    m.record("entity.settings_updated", workspace_id,
             entity_settings_view(settings, workspace.settings), &entity);
    change = m.commit();
    return Update::updated;
}

}  // namespace apikeyd
