// The request decision, as plain functions of a request's facts and snapshot records:
// no nginx, no LMDB, so every rule is unit-tested on its own.
#pragma once

#include "cors.h"
#include "query_policy.h"
#include "snapshot_reader.h"
#include "snapshot_schema.h"

#include <cstdint>
#include <cstddef>
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
    public_access,            // admitted without a key: the entity is public
    cors_preflight,           // a preflight from an allowed origin, answered 204
    cors_origin_not_allowed,  // a preflight from an origin the workspace does not allow
    invalid_query,
    expand_not_allowed,
    filter_not_allowed,
    rate_limited,  // decided by the module's shared rate-limit zone, after everything else
    ambiguous_path,  // the path as sent may mean another location to the upstream
};

inline constexpr Code kLastCode = Code::ambiguous_path;

// True for the codes that let the request through to the upstream.
inline bool admitted(Code code) noexcept { return code == Code::ok || code == Code::public_access; }

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

// The first half of a key check, which needs no snapshot view: the Authorization
// header's value parsed, the key's shape and checksum checked, the key hashed. Given
// `prefetch`, it also starts loading the key's entry into the cache (the module does
// this as soon as the header is read, docs/BENCHMARKS.md).
struct PresentedKey {
    Code code = Code::invalid_authorization;  // ok: `hash` is set
    Digest hash{};
};
PresentedKey present_key(std::string_view authorization,
                         const snapshot::Reader *prefetch = nullptr) noexcept;

// The second half: the hash looked up, decide_key.
AuthResult authenticate(const snapshot::Reader::View &view, const PresentedKey &key,
                        const std::optional<Uuid> &location_workspace,
                        const RequestFacts &request) noexcept;

// Both halves: header, key shape, hash lookup, decide_key. `authorization` is the
// Authorization header's value.
AuthResult authenticate(const snapshot::Reader::View &view, std::string_view authorization,
                        const std::optional<Uuid> &location_workspace,
                        const RequestFacts &request) noexcept;

// No key: the entity's publicAccess decides (seed 003).
Code decide_public(snapshot::PublicAccess access, bool mutating) noexcept;

// Memory for what a decision hands back beyond the snapshot's transaction (effective
// expand and fields, hidden columns): nginx gives the request pool. nullptr when it
// cannot; a null `fn` never gives any.
struct Allocator {
    void *(*fn)(void *ctx, std::size_t size) = nullptr;
    void *ctx = nullptr;
    void *allocate(std::size_t size) const noexcept { return fn != nullptr ? fn(ctx, size) : nullptr; }
};

struct Request {
    std::optional<std::string_view> authorization;  // nullopt: no Authorization header
    // present_key(*authorization) when it was made earlier (the module does it as soon
    // as the request's header is read); nullptr: decide() makes it.
    const PresentedKey *presented = nullptr;
    std::string_view workspace_path;                // "org/slug"
    std::string_view entity;
    std::string_view query;                         // raw, after '?'
    // The path as the client sent it (without the query) where it may differ from the
    // one the location matched and the upstream gets it as sent; empty: no need to look.
    std::string_view raw_path;
    std::optional<std::string_view> origin;         // the Origin header
    bool preflight = false;  // OPTIONS with Origin and Access-Control-Request-Method
    RequestFacts facts;
    Allocator alloc;         // used only for admitted requests with a query or settings
};

struct Decision {
    Code code = Code::snapshot_unavailable;
    bool key_found = false;
    snapshot::KeyRecord key;
    CorsGrant cors = CorsGrant::none;
    // The CORS answer depends on Origin (the workspace is known): responses carry
    // Vary: Origin, granted or not, so that no cache hands one origin's answer to another.
    bool cors_vary = false;
    // Effective expand and fields when admitted, in memory from request.alloc; the
    // offender on a query refusal (may point into the snapshot: use it before the view
    // ends).
    QueryOutcome query;
    std::string_view hidden_columns;  // in memory from request.alloc, when admitted
};

// Everything for one request, in order: an ambiguous raw path (request_path.h), CORS
// preflight, authentication (or public access), permission, query policy. Never throws,
// never allocates but through request.alloc; anything unreadable (or no memory) is a 503.
Decision decide(const snapshot::Reader::View &view, const Request &request) noexcept;

// The longest message rejection_message writes.
inline constexpr std::size_t kMaxRejectionMessage = 160;

// The message of a rejection into `out` (room for kMaxRejectionMessage bytes), naming
// what was refused for the query codes; returns its length. Printable ASCII only (other
// bytes of the offender become '?'), not yet escaped for JSON: quotes and backslashes
// of the offender are kept for the writer of the body to escape.
std::size_t rejection_message(Code code, std::string_view offender, char *out) noexcept;

}  // namespace apikey
