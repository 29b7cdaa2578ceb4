// The request decision, as plain functions of a request's facts and snapshot records:
// no nginx, no LMDB, so every rule is unit-tested on its own.
#pragma once

#include "snapshot_reader.h"
#include "snapshot_schema.h"

#include <cstdint>
#include <optional>
#include <string_view>

namespace apikey {

// Stable, machine-readable outcome codes: they appear in JSON error bodies, in the
// $apikey_result variable and in logs. Never renumber or rename; append.
enum class Code : std::uint8_t {
    ok,
    missing_credentials,
    invalid_authorization,
    malformed_key,
    unknown_key,
    key_revoked,
    key_expired,
    wrong_workspace,
    read_only_key,
    snapshot_unavailable,
};

std::string_view code_name(Code code) noexcept;
std::string_view code_message(Code code) noexcept;
int http_status(Code code) noexcept;

struct RequestFacts {
    bool mutating = false;    // any method but GET and HEAD
    std::int64_t now = 0;     // unix seconds
};

// The rules for a key found in the snapshot. `location_workspace` is the id of the
// workspace the request is for, or nullopt when the snapshot has no such workspace.
Code decide_key(const snapshot::KeyRecord &key, const std::optional<Uuid> &location_workspace,
                const RequestFacts &request) noexcept;

struct AuthResult {
    Code code = Code::snapshot_unavailable;
    bool key_found = false;        // `key` holds the record: also set on 403 and some 401s
    snapshot::KeyRecord key;
};

// The whole check for one request: header, key shape, hash lookup, decide_key.
// `authorization` is nullopt when the request has no Authorization header.
AuthResult authenticate(const snapshot::Reader::View &view,
                        std::optional<std::string_view> authorization,
                        std::string_view workspace_path, const RequestFacts &request) noexcept;

}  // namespace apikey
