#include "decision.h"

#include "authorization.h"
#include "key_format.h"
#include "request_path.h"
#include "sha256.h"

#include <cstring>

namespace apikey {

std::string_view code_name(Code code) noexcept {
    switch (code) {
    case Code::ok: return "ok";
    case Code::missing_credentials: return "missing_credentials";
    case Code::invalid_authorization: return "invalid_authorization";
    case Code::malformed_key: return "malformed_key";
    case Code::unknown_key: return "unknown_key";
    case Code::key_revoked: return "key_revoked";
    case Code::key_expired: return "key_expired";
    case Code::wrong_workspace: return "wrong_workspace";
    case Code::read_only_key: return "read_only_key";
    case Code::snapshot_unavailable: return "snapshot_unavailable";
    case Code::public_access: return "public_access";
    case Code::cors_preflight: return "cors_preflight";
    case Code::cors_origin_not_allowed: return "cors_origin_not_allowed";
    case Code::invalid_query: return "invalid_query";
    case Code::expand_not_allowed: return "expand_not_allowed";
    case Code::filter_not_allowed: return "filter_not_allowed";
    case Code::rate_limited: return "rate_limited";
    case Code::ambiguous_path: return "ambiguous_path";
    }
    return "internal_error";
}

std::string_view code_message(Code code) noexcept {
    switch (code) {
    case Code::ok: return "Allowed";
    case Code::missing_credentials: return "An API key is required: send Authorization: Bearer <key>";
    case Code::invalid_authorization: return "The Authorization header must be 'Bearer <key>' with exactly one key";
    case Code::malformed_key: return "The API key is malformed or its checksum is wrong";
    case Code::unknown_key: return "The API key is not valid";
    case Code::key_revoked: return "The API key has been revoked";
    case Code::key_expired: return "The API key has expired";
    case Code::wrong_workspace: return "The API key does not belong to this workspace";
    case Code::read_only_key: return "The API key is read-only: only GET and HEAD are allowed";
    case Code::snapshot_unavailable: return "Authentication data is unavailable; try again shortly";
    case Code::public_access: return "Allowed without a key: the entity is public";
    case Code::cors_preflight: return "Preflight allowed";
    case Code::cors_origin_not_allowed: return "This origin may not call this API";
    case Code::invalid_query: return "The query string is malformed";
    case Code::expand_not_allowed: return "A relationship in expand may not be expanded";
    case Code::filter_not_allowed: return "A field in filter may not be filtered on";
    case Code::rate_limited: return "The API key is over its rate limit: retry after Retry-After seconds";
    case Code::ambiguous_path: return "The path has an encoded slash or a dot segment";
    }
    return "Internal error";
}

int http_status(Code code) noexcept {
    switch (code) {
    case Code::ok:
    case Code::public_access: return 200;
    case Code::cors_preflight: return 204;
    case Code::read_only_key:
    case Code::cors_origin_not_allowed: return 403;
    case Code::invalid_query:
    case Code::expand_not_allowed:
    case Code::filter_not_allowed:
    case Code::ambiguous_path: return 400;
    case Code::snapshot_unavailable: return 503;
    case Code::rate_limited: return 429;
    default: return 401;
    }
}

Code decide_key(const snapshot::KeyRecord &key, const std::optional<Uuid> &location_workspace,
                const RequestFacts &request) noexcept {
    if (key.status != snapshot::KeyStatus::active) return Code::key_revoked;
    if (key.expires_at && request.now >= *key.expires_at) return Code::key_expired;
    if (!location_workspace || *location_workspace != key.workspace_id)
        return Code::wrong_workspace;
    if (request.mutating && key.permission != snapshot::Permission::read_write)
        return Code::read_only_key;
    return Code::ok;
}

PresentedKey present_key(std::string_view authorization,
                         const snapshot::Reader *prefetch) noexcept {
    PresentedKey key;
    // "Bearer <key>" and nothing else, the header of nearly every request, is split by
    // its length: the checksum below checks every character of a key, so the parser's
    // scan of them (as long as the checksum) would be done twice.
    std::string_view token = usual_bearer_token(authorization, kKeyLength, kKeyScheme);
    const bool usual = !token.empty();
    if (!usual) {
        const BearerToken bearer = parse_authorization(authorization);
        if (bearer.status != AuthHeader::bearer) return key;
        token = bearer.token;
    }
    // Length and scheme first (a usual header's token has them): other garbage never
    // costs a hash or a lookup.
    key.code = Code::malformed_key;
    if (!usual && !looks_like_key(token)) return key;
    Digest hash;
    if (!sha256(token, hash)) {
        key.code = Code::snapshot_unavailable;
        return key;
    }
    // The hash before the checksum: the bucket's place (a cache miss the entry's
    // address depends on) loads while the checksum is computed.
    if (prefetch != nullptr) prefetch->prefetch_bucket_place(hash);
    if (!is_well_formed_key(token)) {
        // Not a key; the parser says whether it is a bearer token at all.
        if (usual && parse_authorization(authorization).status != AuthHeader::bearer)
            key.code = Code::invalid_authorization;
        return key;
    }
    key.code = Code::ok;
    key.hash = hash;
    if (prefetch != nullptr) prefetch->prefetch_key(hash);
    return key;
}

AuthResult authenticate(const snapshot::Reader::View &view, const PresentedKey &key,
                        const std::optional<Uuid> &location_workspace,
                        const RequestFacts &request) noexcept {
    AuthResult result;
    if (!view.ok()) return result;
    if (key.code != Code::ok) {
        result.code = key.code;
        return result;
    }
    switch (view.find_key(key.hash, result.key)) {
    case snapshot::Lookup::absent: result.code = Code::unknown_key; return result;
    case snapshot::Lookup::corrupt: return result;  // never admit what we cannot read
    case snapshot::Lookup::found: break;
    }
    result.key_found = true;
    result.code = decide_key(result.key, location_workspace, request);
    return result;
}

AuthResult authenticate(const snapshot::Reader::View &view, std::string_view authorization,
                        const std::optional<Uuid> &location_workspace,
                        const RequestFacts &request) noexcept {
    if (!view.ok()) return AuthResult{};
    return authenticate(view, present_key(authorization), location_workspace, request);
}

Code decide_public(snapshot::PublicAccess access, bool mutating) noexcept {
    switch (access) {
    case snapshot::PublicAccess::read_write: return Code::public_access;
    case snapshot::PublicAccess::read_only:
        return mutating ? Code::missing_credentials : Code::public_access;
    case snapshot::PublicAccess::none: break;
    }
    return Code::missing_credentials;
}

namespace {

Code code_of(QueryStatus status) noexcept {
    switch (status) {
    case QueryStatus::invalid_query: return Code::invalid_query;
    case QueryStatus::expand_not_allowed: return Code::expand_not_allowed;
    case QueryStatus::filter_not_allowed: return Code::filter_not_allowed;
    case QueryStatus::no_memory: return Code::snapshot_unavailable;
    case QueryStatus::ok: break;
    }
    return Code::ok;
}

}  // namespace

Decision decide(const snapshot::Reader::View &view, const Request &request) noexcept {
    Decision d;
    // Which workspace and entity the request is for is what is in doubt: refused before
    // anything is checked for them, without a snapshot too. The one thing looked up
    // first is the CORS answer of the workspace the location matched, which the 400
    // carries like any rejection: an allowed origin's script can read why it failed.
    const bool ambiguous = !request.raw_path.empty() && ambiguous_path(request.raw_path);
    if (ambiguous) d.code = Code::ambiguous_path;
    if (!view.ok()) return d;

    std::optional<Uuid> workspace_id;
    snapshot::WorkspaceView workspace;
    switch (view.find_workspace(request.workspace_path, workspace)) {
    case snapshot::Lookup::found: workspace_id = workspace.id; break;
    case snapshot::Lookup::absent: break;
    case snapshot::Lookup::corrupt: return d;
    }

    // An unknown workspace grants nothing: its settings are unknown.
    if (workspace_id) {
        d.cors_vary = true;
        if (request.origin) d.cors = cors_grant(workspace.cors_origins, *request.origin);
    }
    if (ambiguous) return d;
    if (request.preflight) {
        d.code = d.cors != CorsGrant::none ? Code::cors_preflight : Code::cors_origin_not_allowed;
        return d;
    }

    snapshot::EntityView entity;
    if (workspace_id) {
        entity.max_expand_depth = workspace.max_expand_depth;
        if (!request.entity.empty() &&
            view.find_entity(*workspace_id, request.entity, entity) == snapshot::Lookup::corrupt)
            return d;
    }

    if (request.authorization) {
        const PresentedKey key = request.presented != nullptr
                                     ? *request.presented
                                     : present_key(*request.authorization);
        const AuthResult auth = authenticate(view, key, workspace_id, request.facts);
        d.code = auth.code;
        d.key_found = auth.key_found;
        d.key = auth.key;
    } else {
        d.code = decide_public(entity.public_access, request.facts.mutating);
    }
    if (!admitted(d.code)) return d;

    // One block from the request's allocator: the policy's working memory and results,
    // then the hidden columns, copied out of the map before the transaction ends.
    const std::size_t policy_size = query_policy_memory(request.query, entity);
    const std::size_t hidden_size = entity.hidden_columns.size();
    char *memory = nullptr;
    if (policy_size + hidden_size != 0) {
        memory = static_cast<char *>(request.alloc.allocate(policy_size + hidden_size));
        if (memory == nullptr) {
            d.code = Code::snapshot_unavailable;
            return d;
        }
    }
    d.query = apply_query_policy(request.query, entity, memory, policy_size);
    if (d.query.status != QueryStatus::ok) {
        d.code = code_of(d.query.status);
        return d;
    }
    if (hidden_size != 0) {
        std::memcpy(memory + policy_size, entity.hidden_columns.data(), hidden_size);
        d.hidden_columns = {memory + policy_size, hidden_size};
    }
    return d;
}

std::size_t rejection_message(Code code, std::string_view offender, char *out) noexcept {
    std::string_view before, after;
    switch (code) {
    case Code::invalid_query:
        before = "The query string is malformed near '";
        after = "'";
        break;
    case Code::expand_not_allowed:
        before = "The relationship '";
        after = "' may not be expanded on this entity";
        break;
    case Code::filter_not_allowed:
        before = "The field '";
        after = "' may not be filtered on for this entity";
        break;
    default:
        before = code_message(code).substr(0, kMaxRejectionMessage);
        std::memcpy(out, before.data(), before.size());
        return before.size();
    }
    offender = offender.substr(0, kMaxOffender);
    char *p = out;
    std::memcpy(p, before.data(), before.size());
    p += before.size();
    // Offenders come from the query string: any bytes. Printable ASCII only.
    for (char c : offender) {
        const auto u = static_cast<unsigned char>(c);
        *p++ = u >= 0x20 && u < 0x7F ? c : '?';
    }
    std::memcpy(p, after.data(), after.size());
    p += after.size();
    // A key put in the query (expand=sk_live_...) is not echoed whole.
    return cut_keys_to_prefix(out, static_cast<std::size_t>(p - out));
}

}  // namespace apikey
