// The data-plane snapshot: one LMDB environment (a directory holding data.mdb and
// lock.mdb) that apikeyd writes and every nginx worker reads. This file is the single
// definition of its layout; snapshot_writer and snapshot_reader both go through it.
//
//   meta        "format"          -> u64 kFormatVersion
//               "generation"      -> u64, +1 on every publish
//               "published_at"    -> i64 unix milliseconds of the last publish
//               "key_bucket_bits" -> u64 B: the key table has 2^B buckets
//   key_buckets bucket number (a native u32, MDB_INTEGERKEY): the first B bits of
//               SHA-256(key) -> a bucket (key_bucket.h): a hash table of the bucket's
//               keys, each entry the whole hash and its KeyRecord (38 bytes; 46 or 54
//               with expiry / rate limit). Buckets without keys are absent.
//   workspaces  "org/slug"     -> WorkspaceRecord
//   entities    workspace id (16 bytes) + entity name -> EntityRecord
//
// Settings are resolved (entity > workspace > system default) by the writer, at publish
// time: the module reads one record per level and never walks a hierarchy. An entity
// without a record has the system defaults, with the workspace's max expand depth.
//
// Records hold only what a request decision needs: no names, no raw keys. Integers are
// little-endian. Each record starts with its own version byte; a decoder accepts longer
// records of its version (fields appended later) and refuses anything it does not know.
#pragma once

#include "uuid.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace apikey::snapshot {

// 3: keys in hash buckets (key_buckets), the compact key records of format 2. (2: one
// B-tree entry per key, in table key_index; 1: 64-byte records in table keys.)
// A reader refuses any other format; apikeyd rebuilds a snapshot of another format at
// start.
inline constexpr std::uint64_t kFormatVersion = 3;

// The longest key record encode() writes (expiry and rate limit both set).
inline constexpr std::size_t kMaxKeyRecordSize = 2 + 16 + 16 + 4 + 8 + 8;

inline constexpr const char *kMetaDb = "meta";
inline constexpr const char *kKeysDb = "key_buckets";  // MDB_INTEGERKEY
// The key tables of formats 1 and 2; a rebuild drops them.
inline constexpr const char *kLegacyKeysDbs[] = {"keys", "key_index"};
inline constexpr const char *kWorkspacesDb = "workspaces";
inline constexpr const char *kEntitiesDb = "entities";

// lock.mdb's mode when it is shared with the nginx workers' group (README
// "Permissions"): LMDB readers record their slot in it, so every worker and apikeyd must
// be able to write it. apikeyd creates it so (with a snapshot_group; 0600 without); a
// worker that finds it missing (a restore that copied data.mdb alone, into a directory
// the workers may write) creates it with this mode too, less its umask.
inline constexpr unsigned kGroupLockFileMode = 0660;

inline constexpr std::uint8_t kDefaultMaxExpandDepth = 3;

inline constexpr std::string_view kMetaFormat = "format";
inline constexpr std::string_view kMetaGeneration = "generation";
inline constexpr std::string_view kMetaPublishedAt = "published_at";
inline constexpr std::string_view kMetaKeyBucketBits = "key_bucket_bits";

// Bucket counts a reader accepts, and the writer's choice for a rebuild of `keys` keys:
// about 256 keys a bucket (a bucket of ~20 KB, what one key's change rewrites), at least
// 2^12 buckets, so a table that grows by single creates from empty to a million keys
// between rebuilds still has buckets of ~250 keys.
inline constexpr unsigned kMinKeyBucketBits = 1, kMaxKeyBucketBits = 24;
unsigned key_bucket_bits_for(std::size_t keys) noexcept;
// The bucket of a key hash: its first `bits` bits.
std::uint32_t key_bucket(const unsigned char *hash, unsigned bits) noexcept;

enum class Permission : std::uint8_t { read_only = 1, read_write = 2 };
enum class KeyStatus : std::uint8_t { active = 1, revoked = 2 };

std::string_view to_string(Permission p) noexcept;
std::optional<Permission> parse_permission(std::string_view text) noexcept;
std::string_view to_string(KeyStatus s) noexcept;

// A key's request budget: `limit` requests per `window_seconds`, smoothed (GCRA).
struct RateLimit {
    std::uint32_t limit = 0;
    std::uint32_t window_seconds = 0;
    friend bool operator==(const RateLimit &a, const RateLimit &b) {
        return a.limit == b.limit && a.window_seconds == b.window_seconds;
    }
    friend bool operator!=(const RateLimit &a, const RateLimit &b) { return !(a == b); }
};

struct KeyRecord {
    Uuid id;
    Uuid workspace_id;
    Permission permission = Permission::read_only;
    KeyStatus status = KeyStatus::active;
    std::optional<std::int64_t> expires_at;  // unix seconds
    // Resolved by apikeyd: the key's own limit, else its workspace's default. Unset:
    // nginx's apikey_rate_limit default applies (or none).
    std::optional<RateLimit> rate_limit;
    std::array<char, 12> prefix{};           // kKeyPrefixLength characters
};

enum class PublicAccess : std::uint8_t { none = 0, read_only = 1, read_write = 2 };

std::string_view to_string(PublicAccess a) noexcept;  // "NONE", "READ_ONLY", "READ_WRITE"
std::optional<PublicAccess> parse_public_access(std::string_view text) noexcept;

// Lists (origins, relationships, fields, columns) are stored comma-separated, without
// spaces, so the module can walk them in place.
struct WorkspaceRecord {
    Uuid id;
    std::uint8_t max_expand_depth = kDefaultMaxExpandDepth;  // resolved for the workspace
    std::string cors_origins{};                              // empty: every origin
};

// A resolved entity. An unset optional means "no restriction" / "no default".
struct EntityRecord {
    PublicAccess public_access = PublicAccess::none;
    std::uint8_t max_expand_depth = kDefaultMaxExpandDepth;
    std::optional<std::string> default_expand{};
    std::optional<std::string> default_fields{};
    std::optional<std::string> expandable{};
    std::optional<std::string> filterable{};
    std::string hidden_columns{};
};

// What a reader decodes: the same fields as views into the map, valid for as long as
// the read transaction. No allocation on the request path.
struct WorkspaceView {
    Uuid id;
    std::uint8_t max_expand_depth = kDefaultMaxExpandDepth;
    std::string_view cors_origins;
};

struct EntityView {
    PublicAccess public_access = PublicAccess::none;
    std::uint8_t max_expand_depth = kDefaultMaxExpandDepth;
    std::optional<std::string_view> default_expand, default_fields, expandable, filterable;
    std::string_view hidden_columns;
};

std::string encode(const KeyRecord &record);
bool decode(std::string_view bytes, KeyRecord &out) noexcept;

std::string encode(const WorkspaceRecord &record);
bool decode(std::string_view bytes, WorkspaceView &out) noexcept;

std::string encode(const EntityRecord &record);
bool decode(std::string_view bytes, EntityView &out) noexcept;

// The entities-table key of an entity of a workspace.
std::string entity_key(const Uuid &workspace, std::string_view entity);

std::string encode_u64(std::uint64_t value);
bool decode_u64(std::string_view bytes, std::uint64_t &out) noexcept;

// The workspaces-table key for a workspace: "org/slug".
std::string workspace_path(std::string_view org, std::string_view slug);

}  // namespace apikey::snapshot
