// The control plane's records: what the authoritative store holds about workspaces,
// their settings and keys, and their on-disk encoding (one JSON document per record, so fields can be added
// without a migration). The raw key is never part of any record: only its SHA-256.
#pragma once

#include "settings.h"
#include "sha256.h"
#include "snapshot_schema.h"
#include "uuid.h"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace apikeyd {

using apikey::Digest;
using apikey::Uuid;
using apikey::snapshot::KeyStatus;
using apikey::snapshot::Permission;

// A record that does not decode: the store is damaged or written by a newer apikeyd.
class CorruptRecord : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Workspace {
    Uuid id;
    std::string org;
    std::string slug;
    std::string name;
    std::int64_t created_at = 0;  // unix seconds
    std::int64_t updated_at = 0;
    std::uint64_t seq = 0;  // store generation that created it: the listing order
    WorkspaceSettings settings;

    std::string path() const { return apikey::snapshot::workspace_path(org, slug); }
};

struct ApiKey {
    Uuid id;
    Uuid workspace_id;
    std::string name;
    std::string key_prefix;  // first kKeyPrefixLength characters of the raw key
    Digest key_sha256{};
    Permission permission = Permission::read_only;
    KeyStatus status = KeyStatus::active;
    std::optional<std::int64_t> expires_at;
    std::optional<std::int64_t> last_used_at;
    std::optional<apikey::snapshot::RateLimit> rate_limit;  // unset: nginx's default
    std::string created_by;  // admin token name
    std::int64_t created_at = 0;
    std::int64_t updated_at = 0;
    std::uint64_t seq = 0;  // store generation that created it: the listing order

    // What the data plane gets: no name, no creator, no timestamps but the expiry. The
    // rate limit is resolved: the key's own, else its workspace's default.
    apikey::snapshot::KeyRecord snapshot_record(
        const std::optional<apikey::snapshot::RateLimit> &workspace_default) const;
};

std::string encode(const Workspace &workspace);
std::string encode(const ApiKey &key);
std::string encode(const EntitySettings &settings);
// Throw CorruptRecord.
Workspace decode_workspace(std::string_view bytes);
ApiKey decode_key(std::string_view bytes);
EntitySettings decode_entity_settings(std::string_view bytes);

}  // namespace apikeyd
