#include "decision.h"

#include "authorization.h"
#include "key_format.h"
#include "sha256.h"

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
    }
    return "Internal error";
}

int http_status(Code code) noexcept {
    switch (code) {
    case Code::ok: return 200;
    case Code::read_only_key: return 403;
    case Code::snapshot_unavailable: return 503;
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

AuthResult authenticate(const snapshot::Reader::View &view,
                        std::optional<std::string_view> authorization,
                        std::string_view workspace_path, const RequestFacts &request) noexcept {
    AuthResult result;
    if (!view.ok()) return result;
    if (!authorization) {
        result.code = Code::missing_credentials;
        return result;
    }
    const BearerToken bearer = parse_authorization(*authorization);
    if (bearer.status != AuthHeader::bearer) {
        result.code = Code::invalid_authorization;
        return result;
    }
    // Shape and checksum first: garbage never costs a hash or a lookup.
    if (!is_well_formed_key(bearer.token)) {
        result.code = Code::malformed_key;
        return result;
    }
    Digest hash;
    if (!sha256(bearer.token, hash)) return result;

    switch (view.find_key(hash, result.key)) {
    case snapshot::Lookup::absent: result.code = Code::unknown_key; return result;
    case snapshot::Lookup::corrupt: return result;  // never admit what we cannot read
    case snapshot::Lookup::found: break;
    }
    result.key_found = true;

    std::optional<Uuid> location_workspace;
    snapshot::WorkspaceView workspace;
    switch (view.find_workspace(workspace_path, workspace)) {
    case snapshot::Lookup::found: location_workspace = workspace.id; break;
    case snapshot::Lookup::absent: break;
    case snapshot::Lookup::corrupt: result.code = Code::snapshot_unavailable; return result;
    }
    result.code = decide_key(result.key, location_workspace, request);
    return result;
}

}  // namespace apikey
