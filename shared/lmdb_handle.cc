#include "lmdb_handle.h"

#include <sys/stat.h>
#include <unistd.h>

namespace apikey::lmdb {

LmdbError::LmdbError(int code, const std::string &what)
    : std::runtime_error(what + ": " + mdb_strerror(code)), code_(code) {}

void check(int rc, const char *what) {
    if (rc != MDB_SUCCESS) throw LmdbError(rc, what);
}

Env::Env(const std::string &dir, const EnvOptions &options) {
    check(mdb_env_create(&env_), "mdb_env_create");
    try {
        check(mdb_env_set_mapsize(env_, options.map_size), "mdb_env_set_mapsize");
        check(mdb_env_set_maxdbs(env_, options.max_dbs), "mdb_env_set_maxdbs");
        check(mdb_env_set_maxreaders(env_, options.max_readers), "mdb_env_set_maxreaders");
        check(mdb_env_open(env_, dir.c_str(), options.flags | MDB_NOTLS, options.mode),
              ("mdb_env_open " + dir).c_str());
    } catch (...) {
        mdb_env_close(env_);
        throw;
    }
}

Env::~Env() { mdb_env_close(env_); }

int Env::reader_check() {
    int dead = 0;
    check(mdb_reader_check(env_, &dead), "mdb_reader_check");
    return dead;
}

Txn::Txn(Env &env, unsigned flags) {
    int rc = mdb_txn_begin(env.get(), nullptr, flags, &txn_);
    if (rc == MDB_MAP_RESIZED) {
        // Another process grew the map: adopt its size and try once more.
        check(mdb_env_set_mapsize(env.get(), 0), "mdb_env_set_mapsize");
        rc = mdb_txn_begin(env.get(), nullptr, flags, &txn_);
    }
    check(rc, "mdb_txn_begin");
}

Txn::Txn(Env &env, Txn &parent) {
    check(mdb_txn_begin(env.get(), parent.get(), 0, &txn_), "mdb_txn_begin (nested)");
}

Txn::~Txn() { abort(); }

void Txn::commit() {
    MDB_txn *txn = txn_;
    txn_ = nullptr;  // mdb_txn_commit frees the handle even when it fails
    check(mdb_txn_commit(txn), "mdb_txn_commit");
}

void Txn::abort() noexcept {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    txn_ = nullptr;
}

bool file_is_complete(MDB_env *env, std::uint64_t &needed, std::uint64_t &actual) noexcept {
    MDB_envinfo info{};
    MDB_stat stat{};
    mdb_filehandle_t fd = -1;
    struct stat st {};
    if (mdb_env_get_fd(env, &fd) != MDB_SUCCESS || fd < 0 || ::fstat(fd, &st) != 0) return true;
    // The meta pages themselves (the first two) are read through the map: gone, even
    // asking for them would SIGBUS.
    const long page = ::sysconf(_SC_PAGESIZE);
    if (page > 0 && st.st_size < 2 * page) {
        needed = 2 * static_cast<std::uint64_t>(page);
        actual = static_cast<std::uint64_t>(st.st_size);
        return false;
    }
    // Meta, then the size again: a concurrent writer only ever grows the file before it
    // commits a meta page that needs more of it.
    if (mdb_env_info(env, &info) != MDB_SUCCESS || mdb_env_stat(env, &stat) != MDB_SUCCESS ||
        ::fstat(fd, &st) != 0)
        return true;
    needed = (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * stat.ms_psize;
    actual = static_cast<std::uint64_t>(st.st_size);
    return actual >= needed;
}

MDB_dbi open_dbi(Txn &txn, const char *name, unsigned flags) {
    MDB_dbi dbi = 0;
    check(mdb_dbi_open(txn.get(), name, flags, &dbi), "mdb_dbi_open");
    return dbi;
}

std::optional<std::string_view> get(Txn &txn, MDB_dbi dbi, std::string_view key) {
    MDB_val k = to_val(key), v{};
    const int rc = mdb_get(txn.get(), dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check(rc, "mdb_get");
    return from_val(v);
}

void put(Txn &txn, MDB_dbi dbi, std::string_view key, std::string_view value,
         unsigned flags) {
    MDB_val k = to_val(key), v = to_val(value);
    check(mdb_put(txn.get(), dbi, &k, &v, flags), "mdb_put");
}

bool del(Txn &txn, MDB_dbi dbi, std::string_view key) {
    MDB_val k = to_val(key);
    const int rc = mdb_del(txn.get(), dbi, &k, nullptr);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "mdb_del");
    return true;
}

void clear(Txn &txn, MDB_dbi dbi) { check(mdb_drop(txn.get(), dbi, 0), "mdb_drop"); }

Cursor::Cursor(Txn &txn, MDB_dbi dbi) {
    check(mdb_cursor_open(txn.get(), dbi, &cursor_), "mdb_cursor_open");
}

Cursor::~Cursor() { mdb_cursor_close(cursor_); }

bool Cursor::seek(std::string_view key) {
    int rc;
    if (key.empty()) {
        rc = mdb_cursor_get(cursor_, &key_, &value_, MDB_FIRST);
    } else {
        key_ = to_val(key);
        rc = mdb_cursor_get(cursor_, &key_, &value_, MDB_SET_RANGE);
    }
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "mdb_cursor_get");
    return true;
}

bool Cursor::next() {
    const int rc = mdb_cursor_get(cursor_, &key_, &value_, MDB_NEXT);
    if (rc == MDB_NOTFOUND) return false;
    check(rc, "mdb_cursor_get");
    return true;
}

}  // namespace apikey::lmdb
