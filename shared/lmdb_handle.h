// Small RAII layer over LMDB for the control plane (apikeyd and the snapshot writer).
// Errors become LmdbError carrying the LMDB code, so callers can tell MDB_MAP_FULL or
// an I/O error from a bug. The nginx module does not use this: its reader is noexcept.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace apikey::lmdb {

class LmdbError : public std::runtime_error {
public:
    LmdbError(int code, const std::string &what);
    int code() const noexcept { return code_; }

private:
    int code_;
};

// Throws LmdbError unless rc == MDB_SUCCESS.
void check(int rc, const char *what);

struct EnvOptions {
    std::size_t map_size = std::size_t{1} << 30;
    unsigned max_dbs = 16;
    unsigned max_readers = 510;
    unsigned flags = 0;    // extra mdb_env_open flags
    mdb_mode_t mode = 0600;
};

class Env {
public:
    Env(const std::string &dir, const EnvOptions &options);
    ~Env();
    Env(const Env &) = delete;
    Env &operator=(const Env &) = delete;

    MDB_env *get() const noexcept { return env_; }
    // Clears reader slots left by dead processes; returns how many.
    int reader_check();

private:
    MDB_env *env_ = nullptr;
};

class Txn {
public:
    Txn(Env &env, unsigned flags);  // flags: 0 or MDB_RDONLY
    // A nested write transaction: its changes reach `parent` when it commits, and nothing
    // when it aborts. `parent` must not be used until this one ends.
    Txn(Env &env, Txn &parent);
    ~Txn();                         // aborts if neither committed nor aborted
    Txn(const Txn &) = delete;
    Txn &operator=(const Txn &) = delete;

    MDB_txn *get() const noexcept { return txn_; }
    void commit();
    void abort() noexcept;

private:
    MDB_txn *txn_ = nullptr;
};

MDB_dbi open_dbi(Txn &txn, const char *name, unsigned flags = MDB_CREATE);

// A data.mdb shorter than its newest commit needs (truncated by a bad copy, a restore, a
// full disk, `truncate`): LMDB maps it anyway, and the first read of a page past the end
// of the file kills the process with SIGBUS. Call right after mdb_env_open, before any
// transaction. Returns false, and fills `needed` and `actual` (bytes), when the file is
// too short; true when it is long enough or its size cannot be told. Only reads the meta
// pages (the first two, which mdb_env_open already read) and fstat()s the file.
bool file_is_complete(MDB_env *env, std::uint64_t &needed, std::uint64_t &actual) noexcept;

inline MDB_val to_val(std::string_view s) {
    return MDB_val{s.size(), const_cast<char *>(s.data())};
}
inline std::string_view from_val(const MDB_val &v) {
    return {static_cast<const char *>(v.mv_data), v.mv_size};
}

// The view points into the map and is valid until the transaction ends.
std::optional<std::string_view> get(Txn &txn, MDB_dbi dbi, std::string_view key);
void put(Txn &txn, MDB_dbi dbi, std::string_view key, std::string_view value,
         unsigned flags = 0);
// Returns false when the key was not there.
bool del(Txn &txn, MDB_dbi dbi, std::string_view key);
// Empties a table without deleting it: readers' DBI handles stay valid.
void clear(Txn &txn, MDB_dbi dbi);

class Cursor {
public:
    Cursor(Txn &txn, MDB_dbi dbi);
    ~Cursor();
    Cursor(const Cursor &) = delete;
    Cursor &operator=(const Cursor &) = delete;

    // Positions at the first key >= `key` (or the first key when empty); false at end.
    bool seek(std::string_view key = {});
    bool next();
    std::string_view key() const { return from_val(key_); }
    std::string_view value() const { return from_val(value_); }

private:
    MDB_cursor *cursor_ = nullptr;
    MDB_val key_{}, value_{};
};

}  // namespace apikey::lmdb
