// The admin REST API as a pure function of a request: method, target, Authorization value
// and body in, Response out. No sockets, so every route is unit-tested directly; the HTTP
// server only moves bytes. Routes (JSON in and out, no trailing slashes):
//
//   GET  POST    /api/v1/workspaces
//   GET  DELETE  /api/v1/workspaces/{id}
//   GET  POST    /api/v1/workspaces/{id}/api-keys   GET ?after=C&limit=M: pages (Link: next)
//   GET  DELETE  /api/v1/workspaces/{id}/api-keys/{keyId}
//        POST    /api/v1/workspaces/{id}/api-keys/import   NDJSON bulk import (key_import.h)
//   GET  PUT     /api/v1/workspaces/{id}/settings
//   GET  PUT     /api/v1/workspaces/{id}/entities/{entity}/settings
//   GET          /api/v1/workspaces/{id}/changes?after=N&limit=M   (a live workspace's feed)
//   GET          /api/v1/changes?after=N&limit=M                  (every workspace's)
//   PATCH        /api/v1/workspaces/{id}/api-keys/{keyId}   {"name"?, "rate_limit"?}
//   GET          /metrics   Prometheus text (admin token, like every route)
//   GET          /healthz   {"status":"ok"} or 503: the only route without a token
//
// A query parameter a route does not take (all but the feeds' and key list's after and limit) is
// 400 unknown_field before the route does anything; /healthz ignores its query.
// HEAD is answered like GET (the server drops the body). Every route, known or not,
// first requires "Authorization: Bearer <admin token>". Failed attempts are logged with
// the source address (never what was presented); an address with too many of them gets
// 429 too_many_requests with Retry-After until its window ends.
#pragma once

#include "auth_limiter.h"
#include "config.h"
#include "metrics.h"
#include "publisher.h"
#include "response.h"
#include "store.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace apikeyd {

struct Request {
    std::string_view method;  // as sent: "GET", "POST", ...
    std::string_view target;  // origin-form: path plus optional "?query"
    std::optional<std::string_view> authorization;  // nullopt when the header is absent
    std::string_view body;
    // The client's IP address as the server saw it ("" when unknown: no auth limiting).
    std::string_view peer;
};

class Api {
public:
    using Clock = std::function<std::int64_t()>;  // unix seconds

    Api(Store &store, Publisher &publisher, std::vector<AdminToken> tokens, Clock clock);

    // Never throws: store and publish failures become 5xx JSON errors.
    Response handle(const Request &request) noexcept;

    // Group commit: the requests in order, their mutations in one Store::Batch (one
    // durable commit) and their changes in one snapshot publish, and only then the
    // responses. A mutation sees those before it; one that fails aborts only itself. If
    // the commit fails, every response is the store's 503 (nothing was changed, and no
    // read may show what was not); if the publish fails, every mutation that changed
    // something gets handle()'s 503 publish_failed (stored, published later).
    std::vector<Response> handle_batch(const std::vector<Request> &requests) noexcept;

    // Retries a snapshot publish that failed earlier; the server calls it periodically.
    void maintenance() noexcept;

    // Failed admin authentication per source address (see auth_limiter.h); on by default.
    void set_auth_limit(const AuthLimitOptions &options) { auth_limiter_ = AuthLimiter(options); }
    // Most keys one import may hold (413 beyond): Config::max_import_items.
    void set_max_import_items(std::size_t n) { max_import_items_ = n; }

    // Reported by /metrics (the receiver outlives the Api's use of it).
    void set_usage_counters(const UsageCounters *usage) { usage_ = usage; }

    // Why `request` gets no admin access: 429 while its address is blocked, else 401
    // without a valid token (logged with the address, counted against it). nullopt when
    // admitted, with `token` set if given. What dispatch() does first; the server asks it
    // at the header for a body only an admin may send (admit_import_body).
    std::optional<Response> refuse_admin(const Request &request,
                                         const AdminToken **token = nullptr);

    // Counts, in /metrics, a request the HTTP server answered itself (malformed, too
    // large) without calling handle().
    void count_refused(std::string_view target, unsigned status) noexcept;

private:
    Response dispatch(const Request &request) noexcept;
    void count(const Request &request, const Response &response) noexcept;
    Response healthz();
    Response metrics(std::string_view query);
    Response route(const Request &request, const std::string &actor);
    Response list_workspaces();
    Response create_workspace(std::string_view body, const std::string &actor);
    Response get_workspace(const Uuid &id);
    Response delete_workspace(const Uuid &id, const std::string &actor);
    Response list_keys(const Uuid &workspace_id, std::string_view query);
    Response create_key(const Uuid &workspace_id, std::string_view body, const std::string &actor);
    Response import_keys(const Uuid &workspace_id, std::string_view body, const std::string &actor);
    Response get_key(const Uuid &workspace_id, const Uuid &key_id);
    Response revoke_key(const Uuid &workspace_id, const Uuid &key_id, const std::string &actor);
    Response patch_key(const Uuid &workspace_id, const Uuid &key_id, std::string_view body,
                       const std::string &actor);
    Response get_workspace_settings(const Uuid &workspace_id);
    Response put_workspace_settings(const Uuid &workspace_id, std::string_view body,
                                    const std::string &actor);
    Response get_entity_settings(const Uuid &workspace_id, const std::string &entity);
    Response put_entity_settings(const Uuid &workspace_id, const std::string &entity,
                                 std::string_view body, const std::string &actor);
    // nullopt: the feed of every workspace.
    Response list_changes(const std::optional<Uuid> &workspace_id, std::string_view query);

    // nullptr when the header does not carry a configured admin token.
    const AdminToken *authenticate(const std::optional<std::string_view> &authorization) const;
    // Before a mutation: a snapshot left behind by an earlier failure is rebuilt first, so
    // the store never runs ahead of what nginx enforces by more than one change (one
    // batch's changes under group commit).
    void ensure_published();
    // Rebuilds a snapshot left behind by a failed publish; false while that still fails.
    bool try_sync() noexcept;
    // Publishes now, or, in a batch, once the batch is committed.
    void publish(Change &&change);
    bool apply_changes(const std::vector<const Change *> &changes) noexcept;

    // The open handle_batch(), if any.
    struct Pending {
        bool in_sync = false;                 // ensure_published() at the batch's start
        std::size_t current = 0;              // index of the request being handled
        std::vector<Change> changes;          // in generation order
        std::vector<std::size_t> changed_by;  // request index of each change
    };
    Pending *batch_ = nullptr;

    Store &store_;
    Publisher &publisher_;
    std::vector<AdminToken> tokens_;
    Clock clock_;
    bool publish_failing_ = false;  // log state changes once, not every retry
    bool snapshot_full_ = false;    // the failure is SnapshotFull: messages name the setting
    // `message`, naming snapshot_map_size_mb when the snapshot is full.
    std::string with_full_hint(std::string_view message) const;
    Metrics metrics_;
    const UsageCounters *usage_ = nullptr;
    AuthLimiter auth_limiter_;
    std::size_t max_import_items_ = 1'000'000;
};

// POST to this target is a key import, whose body may be up to max_import_body_bytes.
bool is_import_target(std::string_view target) noexcept;

// The request path as it may be logged: the query is dropped and every segment that is
// neither a route word nor a UUID becomes "*", so nothing a client puts in a URL (a key
// pasted by mistake) reaches the log. Capped in length.
std::string loggable_path(std::string_view target);

}  // namespace apikeyd
