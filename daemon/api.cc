#include "api.h"

#include "authorization.h"
#include "key_format.h"
#include "key_import.h"
#include "log.h"
#include "rate_limit.h"
#include "request_body.h"
#include "time_format.h"
#include "views.h"

#include <nlohmann/json.hpp>

#include <chrono>

namespace apikeyd {
namespace {

using json = nlohmann::ordered_json;  // fields in the documented order
namespace lmdb = apikey::lmdb;

constexpr std::string_view kWorkspacesPath = "/api/v1/workspaces";
constexpr std::size_t kFeedDefaultLimit = 100;
constexpr std::size_t kFeedMaxLimit = 1000;
// A feed page stops growing past this many bytes of entries (at least one entry).
constexpr std::size_t kFeedMaxPageBytes = 4u << 20;
// A key list page: 1,000 keys are about 350 KB of JSON; 10,000 at most (a few MB, tens of
// ms), so one listing never holds the other admin requests for long.
constexpr std::size_t kKeysDefaultLimit = 1000;
constexpr std::size_t kKeysMaxLimit = 10000;

std::string dump(const json &j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Response json_response(unsigned status, const json &body) {
    Response r;
    r.status = status;
    r.body = dump(body);
    return r;
}

std::string workspace_location(const Uuid &id) {
    return std::string(kWorkspacesPath) + "/" + apikey::to_string(id);
}

Response not_found(std::string_view what) {
    return error_response(404, code::not_found, std::string(what) + " not found");
}

Response method_not_allowed(std::string_view allow) {
    Response r = error_response(405, code::method_not_allowed,
                                "method not allowed here; allowed: " + std::string(allow));
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
}

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (path.empty() || path.front() != '/') return out;
    path.remove_prefix(1);
    while (true) {
        const auto slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

std::string_view query_of(std::string_view target) {
    const auto q = target.find('?');
    return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

// `list` is "A" or "A, B": is `method` one of them?
bool method_listed(std::string_view list, std::string_view method) {
    while (!list.empty()) {
        const std::size_t comma = list.find(',');
        if (list.substr(0, comma) == method) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
        while (!list.empty() && list.front() == ' ') list.remove_prefix(1);
    }
    return false;
}

// {"limit": 1..1e9, "window_seconds": 1..86400} or null.
Response no_route() { return error_response(404, code::not_found, "no such route"); }

// ?after=N&limit=M of the change feed: decimal digits only, each at most once.
struct FeedQuery {
    std::uint64_t after = 0;
    std::size_t limit = kFeedDefaultLimit;
};

// Decimal digits only (no sign, no exponent), at most `max`; nullopt otherwise.
std::optional<std::uint64_t> decimal(std::string_view value, std::uint64_t max) {
    if (value.empty() || value.size() > 20) return std::nullopt;
    std::uint64_t n = 0;
    for (const char c : value) {
        if (c < '0' || c > '9') return std::nullopt;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (n > (max - digit) / 10) return std::nullopt;
        n = n * 10 + digit;
    }
    return n;
}

// ?limit= of a paged route: 1..max.
std::size_t page_limit(std::string_view value, std::size_t max) {
    const auto n = decimal(value, UINT64_MAX);
    if (!n || *n < 1 || *n > max)
        invalid_field("limit", "must be an integer from 1 to " + std::to_string(max));
    return static_cast<std::size_t>(*n);
}

std::uint64_t feed_after(std::string_view value) {
    const auto n = decimal(value, UINT64_MAX);
    if (!n) invalid_field("after", "must be a non-negative integer (a seq)");
    return *n;
}

// `name=value` pairs of a query string, split on '&' (empty pairs skipped), raw: no
// percent-decoding, so "%61fter" is not "after".
using QueryParams = std::vector<std::pair<std::string_view, std::string_view>>;

QueryParams split_query(std::string_view query) {
    QueryParams out;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view param = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (param.empty()) continue;
        const auto eq = param.find('=');
        out.emplace_back(param.substr(0, eq),
                         eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1));
    }
    return out;
}

// 400 unknown_field for a parameter the route does not take; `takes` says what it does
// ("after and limit", or empty for none). The name is echoed only when it is harmless,
// and a key pasted as one (?sk_live_...=1) only as its prefix.
[[noreturn]] void unknown_parameter(std::string_view name, std::string_view takes) {
    std::string shown(name);
    shown.resize(apikey::cut_keys_to_prefix(shown.data(), shown.size()));
    throw ApiError(400, code::unknown_field,
                   "unknown query parameter" +
                       (is_identifier(name) ? " \"" + shown + "\"" : std::string()) +
                       (takes.empty() ? std::string("; this route takes no query parameters")
                                      : "; this route takes " + std::string(takes)));
}

// For every route but the two that page: a parameter the route would ignore is refused
// before it does anything, so ?dry_run=true never deletes and ?limit=1 never silently
// returns everything.
void refuse_query(std::string_view query) {
    const QueryParams params = split_query(query);
    if (!params.empty()) unknown_parameter(params.front().first, {});
}

// ?after=&limit= of a paged route (the change feeds, the key list): each at most once and
// no other parameter; `after` read by the route's own parser, `limit` 1..max_limit.
template <class Query, class ParseAfter>
Query parse_page_query(std::string_view query, ParseAfter parse_after, std::size_t max_limit) {
    Query out;
    bool seen_after = false, seen_limit = false;
    for (const auto &[name, value] : split_query(query)) {
        bool *seen = name == "after" ? &seen_after : name == "limit" ? &seen_limit : nullptr;
        if (seen == nullptr) unknown_parameter(name, "after and limit");
        if (*seen) invalid_field(name, "is given more than once");
        *seen = true;
        if (name == "after") out.after = parse_after(value);
        else out.limit = page_limit(value, max_limit);
    }
    return out;
}

// ?after=C&limit=M of the key list. C is the cursor the previous page's Link header gave:
// the listing position of its last key, "<seq>" or, for an imported key, "<seq>.<index>".
struct KeyListQuery {
    std::optional<ListPosition> after;
    std::size_t limit = kKeysDefaultLimit;
};

std::string cursor_text(const ListPosition &p) {
    return std::to_string(p.seq) + (p.index ? "." + std::to_string(*p.index) : std::string());
}

ListPosition parse_cursor(std::string_view text) {
    const auto dot = text.find('.');
    const auto seq = decimal(text.substr(0, dot), UINT64_MAX);
    const auto index = dot == std::string_view::npos ? std::optional<std::uint64_t>(0)
                                                     : decimal(text.substr(dot + 1), UINT32_MAX);
    if (!seq || !index)
        invalid_field("after", "must be the cursor of a Link: <...>; rel=\"next\" header of "
                               "the previous page");
    ListPosition p{*seq, std::nullopt};
    if (dot != std::string_view::npos) p.index = static_cast<std::uint32_t>(*index);
    return p;
}


// A failed store transaction: nothing of it was changed.
Response store_error(const lmdb::LmdbError &e) {
    log_error(std::string("store error: ") + e.what());
    return error_response(503, code::store_unavailable,
                          e.code() == MDB_MAP_FULL
                              ? "the store is full (raise store_map_size_mb); nothing was changed"
                              : "the store cannot be used right now; nothing was changed");
}

constexpr const char *kNotPublished =
    "the change was stored but not yet published to nginx; apikeyd keeps retrying, see its log";

// `r` replaced by `by`, still naming the admin token that asked (for the access log).
void replace_response(Response &r, Response by) {
    by.actor = std::move(r.actor);
    r = std::move(by);
}

}  // namespace

Api::Api(Store &store, Publisher &publisher, std::vector<AdminToken> tokens, Clock clock)
    : store_(store), publisher_(publisher), tokens_(std::move(tokens)), clock_(std::move(clock)) {}

const AdminToken *Api::authenticate(const std::optional<std::string_view> &authorization) const {
    if (!authorization) return nullptr;
    const auto bearer = apikey::parse_authorization(*authorization);
    if (bearer.status != apikey::AuthHeader::bearer) return nullptr;
    const apikey::Digest digest = apikey::sha256(bearer.token);
    // Compare with every configured hash, in constant time each, without stopping early.
    const AdminToken *found = nullptr;
    for (const AdminToken &token : tokens_) {
        const bool match = apikey::digest_equal(token.sha256, digest);
        if (match && found == nullptr) found = &token;
    }
    return found;
}

Response Api::handle(const Request &request) noexcept {
    Response r = dispatch(request);
    count(request, r);
    return r;
}

void Api::count(const Request &request, const Response &response) noexcept {
    try {
        metrics_.count_request(request.target, response.status);
    } catch (...) {  // out of memory for a counter: the answer matters more
    }
}

// Healthy: the store answers and the snapshot holds its newest generation. A failed
// publish (published generation 0 until a rebuild works) or a store error is a 503 with
// the reason; nginx keeps serving the last snapshot meanwhile.
Response Api::healthz() {
    std::uint64_t generation = 0;
    std::string reason;
    try {
        generation = store_.generation();
    } catch (const std::exception &e) {
        reason = "the store cannot be read";
    }
    const std::uint64_t published = publisher_.published_generation();
    if (reason.empty() && (publish_failing_ || published == 0))
        reason = with_full_hint("the snapshot cannot be published; nginx serves the last one");
    else if (reason.empty() && published != generation)
        reason = "the snapshot is behind the store";
    json body{{"status", reason.empty() ? "ok" : "degraded"},
              {"generation", generation},
              {"published_generation", published}};
    if (!reason.empty()) body["reason"] = reason;
    return json_response(reason.empty() ? 200 : 503, body);
}

Response Api::metrics(std::string_view query) {
    refuse_query(query);
    Gauges g;
    g.store_generation = store_.generation();
    g.snapshot_generation = publisher_.published_generation();
    g.store_bytes = store_.used_bytes();
    const Store::Counts counts = store_.counts();
    g.workspaces = counts.workspaces;
    g.keys = counts.keys;
    g.healthy = !publish_failing_ && g.snapshot_generation == g.store_generation;
    g.usage = usage_;
    Response r;
    r.status = 200;
    r.body = metrics_.render(g);
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
}

void Api::count_refused(std::string_view target, unsigned status) noexcept {
    try {
        metrics_.count_request(target, status);
    } catch (...) {
    }
}

std::optional<Response> Api::refuse_admin(const Request &request, const AdminToken **token) {
    const std::int64_t now = clock_();
    if (const std::int64_t wait = auth_limiter_.blocked_for(request.peer, now); wait > 0) {
        Response r = error_response(429, code::too_many_requests,
                                    "too many failed admin authentications from this "
                                    "address; retry after " + std::to_string(wait) + " s");
        r.headers.emplace_back("Retry-After", std::to_string(wait));
        return r;
    }
    const AdminToken *admin = authenticate(request.authorization);
    if (admin == nullptr) {
        // The address only: never the header, which may hold a real token or key.
        const std::string peer = request.peer.empty() ? "-" : std::string(request.peer);
        log_warn("admin authentication failed peer=" + peer + " reason=" +
                 (request.authorization ? "invalid_token" : "missing_token"));
        if (auth_limiter_.record_failure(request.peer, now))
            log_warn("admin authentication blocked peer=" + peer + " for " +
                     std::to_string(auth_limiter_.options().window_seconds) + " s after " +
                     std::to_string(auth_limiter_.options().max_failures) + " failures");
        return error_response(401, code::unauthorized,
                              "a valid admin token is required: Authorization: Bearer <token>");
    }
    if (token != nullptr) *token = admin;
    return std::nullopt;
}

Response Api::dispatch(const Request &request) noexcept {
    std::string actor;
    try {
        const std::string_view path = path_of(request.target);
        const bool read = request.method == "GET" || request.method == "HEAD";
        // For load balancers and probes: no token, nothing secret in it.
        // It ignores any query: probes may add one (a cache buster) and it reports the
        // same whatever is asked.
        if (path == "/healthz") return read ? healthz() : method_not_allowed("GET, HEAD");
        const AdminToken *token = nullptr;
        if (auto refusal = refuse_admin(request, &token)) return std::move(*refusal);
        actor = token->name;
        Response r = path != "/metrics" ? route(request, actor)
                     : read             ? metrics(query_of(request.target))
                                        : method_not_allowed("GET, HEAD");
        r.actor = actor;
        return r;
    } catch (const ApiError &e) {
        Response r = e.response();
        r.actor = actor;
        return r;
    } catch (const lmdb::LmdbError &e) {
        Response r = store_error(e);
        r.actor = actor;
        return r;
    } catch (const std::exception &e) {
        log_error(std::string("internal error: ") + e.what());
    } catch (...) {
        log_error("internal error: unknown exception");
    }
    Response r = error_response(500, code::internal_error, "internal error; see apikeyd's log");
    r.actor = actor;
    return r;
}

Response Api::route(const Request &request, const std::string &actor) {
    const auto segments = split_path(path_of(request.target));
    const std::string_view query = query_of(request.target);
    const std::size_t n = segments.size();
    const std::string_view method = request.method == "HEAD" ? "GET" : request.method;
    if (n < 3 || segments[0] != "api" || segments[1] != "v1") return no_route();

    // Which route, and the one method besides GET/HEAD it takes ("" for none).
    enum class Route { workspaces, workspace, keys, key, import, settings, entity_settings, changes, all_changes };
    Route route;
    std::string_view write;
    if (n == 3 && segments[2] == "changes") {
        route = Route::all_changes;
    } else if (segments[2] != "workspaces") {
        return no_route();
    } else if (n == 3) {
        route = Route::workspaces, write = "POST";
    } else if (n == 4) {
        route = Route::workspace, write = "DELETE";
    } else if (n == 5 && segments[4] == "api-keys") {
        route = Route::keys, write = "POST";
    } else if (n == 5 && segments[4] == "settings") {
        route = Route::settings, write = "PUT";
    } else if (n == 5 && segments[4] == "changes") {
        route = Route::changes;
    } else if (n == 6 && segments[4] == "api-keys" && segments[5] == "import") {
        // POST only: there is nothing to GET.
        if (request.method != "POST") return method_not_allowed("POST");
        route = Route::import, write = "POST";
    } else if (n == 6 && segments[4] == "api-keys") {
        route = Route::key, write = "DELETE, PATCH";
    } else if (n == 7 && segments[4] == "entities" && segments[6] == "settings") {
        route = Route::entity_settings, write = "PUT";
    } else {
        return no_route();
    }
    const bool get = method == "GET";
    if (!get && (write.empty() || !method_listed(write, method)))
        return method_not_allowed(write.empty() ? std::string("GET, HEAD")
                                                : "GET, HEAD, " + std::string(write));

    // The change feeds and the key list page (after, limit) and parse their own query;
    // every other route takes none.
    const bool pages = route == Route::changes || route == Route::all_changes ||
                       (route == Route::keys && get);
    if (!pages) refuse_query(query);

    if (route == Route::all_changes) return list_changes(std::nullopt, query);
    if (route == Route::workspaces) return get ? list_workspaces() : create_workspace(request.body, actor);

    const auto workspace_id = apikey::parse_uuid(segments[3]);
    if (!workspace_id) return not_found("workspace");
    switch (route) {
    case Route::workspace:
        return get ? get_workspace(*workspace_id) : delete_workspace(*workspace_id, actor);
    case Route::keys:
        return get ? list_keys(*workspace_id, query) : create_key(*workspace_id, request.body, actor);
    case Route::import: return import_keys(*workspace_id, request.body, actor);
    case Route::settings:
        return get ? get_workspace_settings(*workspace_id)
                   : put_workspace_settings(*workspace_id, request.body, actor);
    case Route::changes: return list_changes(*workspace_id, query);
    case Route::entity_settings: {
        const std::string_view entity = segments[5];
        if (!is_identifier(entity))
            invalid_field("entity", "in the path must be 1-64 letters, digits and _, not starting "
                                    "with a digit");
        return get ? get_entity_settings(*workspace_id, std::string(entity))
                   : put_entity_settings(*workspace_id, std::string(entity), request.body, actor);
    }
    default: break;
    }
    const auto key_id = apikey::parse_uuid(segments[5]);
    if (!key_id) return not_found("API key");
    if (get) return get_key(*workspace_id, *key_id);
    return method == "PATCH" ? patch_key(*workspace_id, *key_id, request.body, actor)
                             : revoke_key(*workspace_id, *key_id, actor);
}

// --- workspaces ------------------------------------------------------------------------

Response Api::list_workspaces() {
    json list = json::array();
    for (const Workspace &w : store_.view().workspaces()) list.push_back(workspace_json(w));
    return json_response(200, list);
}

Response Api::create_workspace(std::string_view body, const std::string &actor) {
    const JsonObject object(body, {{"org"}, {"slug"}, {"name"}});
    Workspace w;
    w.org = object.required_string("org");
    if (!is_valid_slug(w.org))
        invalid_field("org", "must be 1-63 characters of a-z, 0-9 and -, starting and ending "
                             "with a letter or digit");
    w.slug = object.required_string("slug");
    if (!is_valid_slug(w.slug))
        invalid_field("slug", "must be 1-63 characters of a-z, 0-9 and -, starting and ending "
                              "with a letter or digit");
    w.name = checked_name(object.required_string("name"), "name");

    ensure_published();
    w.id = apikey::random_uuid();
    w.created_at = w.updated_at = clock_();
    Change change;
    try {
        change = store_.create_workspace(w, Audit{actor, w.created_at});
    } catch (const Conflict &) {
        return error_response(409, code::conflict,
                              "a workspace with this org and slug already exists");
    }
    log_info("workspace created id=" + apikey::to_string(w.id) + " path=" + w.path() +
             " by=" + actor + " generation=" + std::to_string(change.generation));
    publish(std::move(change));
    Response r = json_response(201, workspace_json(w));
    r.headers.emplace_back("Location", workspace_location(w.id));
    return r;
}

Response Api::get_workspace(const Uuid &id) {
    const auto w = store_.view().workspace(id);
    if (!w) return not_found("workspace");
    return json_response(200, workspace_json(*w));
}

Response Api::delete_workspace(const Uuid &id, const std::string &actor) {
    ensure_published();
    auto change = store_.delete_workspace(id, Audit{actor, clock_()});
    if (!change) return not_found("workspace");
    const Workspace &w = change->workspaces_deleted.front();
    log_info("workspace deleted id=" + apikey::to_string(id) + " path=" + w.path() + " by=" +
             actor + " keys_revoked=" + std::to_string(change->keys_put.size()) +
             " generation=" + std::to_string(change->generation));
    publish(std::move(*change));
    return json_response(200, json{{"status", "deleted"}});
}

// --- keys ------------------------------------------------------------------------------

// One page, still a plain array (what clients of the unpaged list read); when keys
// follow, a Link header (RFC 8288) gives the next page's URL, as GitHub's API does.
Response Api::list_keys(const Uuid &workspace_id, std::string_view query) {
    const auto q = parse_page_query<KeyListQuery>(query, parse_cursor, kKeysMaxLimit);
    Store::View view = store_.view();
    if (!view.workspace(workspace_id)) return not_found("workspace");
    const KeyPage page = view.keys_page(workspace_id, q.after, q.limit);
    json list = json::array();
    for (const ApiKey &k : page.keys) list.push_back(key_json(k));
    Response r = json_response(200, list);
    if (page.more)
        r.headers.emplace_back("Link", "<" + workspace_location(workspace_id) +
                                           "/api-keys?after=" + cursor_text(*page.last) +
                                           "&limit=" + std::to_string(q.limit) + ">; rel=\"next\"");
    return r;
}

Response Api::create_key(const Uuid &workspace_id, std::string_view body,
                         const std::string &actor) {
    const JsonObject object(body, {{"name"},
                                   {"permission"},
                                   {"expires_at"},
                                   {"rate_limit"}});
    const std::int64_t now = clock_();
    ApiKey k;
    parse_key_fields(object, now, k);

    ensure_published();
    std::string raw = apikey::generate_key();
    k.id = apikey::random_uuid();
    k.workspace_id = workspace_id;
    k.key_prefix = std::string(apikey::key_prefix(raw));
    k.key_sha256 = apikey::sha256(raw);
    k.status = KeyStatus::active;
    k.created_by = actor;
    k.created_at = k.updated_at = now;
    auto change = store_.create_key(k, Audit{actor, now});
    if (!change) return not_found("workspace");
    log_info("key created id=" + apikey::to_string(k.id) + " workspace=" +
             apikey::to_string(workspace_id) + " prefix=" + k.key_prefix + " permission=" +
             std::string(apikey::snapshot::to_string(k.permission)) + " by=" + actor +
             " generation=" + std::to_string(change->generation));
    publish(std::move(*change));
    Response r = json_response(201, key_json(k, &raw));
    r.headers.emplace_back("Location", workspace_location(workspace_id) + "/api-keys/" +
                                           apikey::to_string(k.id));
    return r;
}

Response Api::import_keys(const Uuid &workspace_id, std::string_view body,
                          const std::string &actor) {
    if (!store_.view().workspace(workspace_id)) return not_found("workspace");
    using Steady = std::chrono::steady_clock;
    const auto ms_since = [](Steady::time_point t) {
        return std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(Steady::now() - t).count());
    };
    auto t = Steady::now();
    const std::int64_t now = clock_();
    ParsedImport parsed = parse_import(body, now, max_import_items_);
    std::string timings = " parse_ms=" + ms_since(t);
    t = Steady::now();
    {
        // Already stored (in any workspace, revoked included): a conflict, as a duplicate
        // within the batch is.
        ImportErrors stored;
        Store::View view = store_.view();
        for (std::size_t i = 0; i < parsed.keys.size(); ++i)
            if (const auto existing = view.key_by_hash(parsed.keys[i].key_sha256))
                stored.add(parsed.lines[i], code::conflict,
                           "a key with this key_sha256 already exists (id " +
                               apikey::to_string(*existing) + ")");
        if (!stored.empty()) parsed.errors.merge(std::move(stored));
    }
    timings += " check_ms=" + ms_since(t);
    t = Steady::now();
    if (!parsed.errors.empty()) {
        // All or nothing: nothing is stored, every bad item (up to the cap) is listed.
        const ImportErrors &errors = parsed.errors;
        json out;
        out["error"]["code"] = code::import_rejected;
        out["error"]["message"] = std::to_string(errors.count()) + " of " +
                                  std::to_string(parsed.items) +
                                  " keys are invalid or conflict; nothing was imported";
        out["imported"] = 0;
        out["items"] = parsed.items;
        out["errors_total"] = errors.count();
        out["errors_truncated"] = errors.count() > errors.listed().size();
        json list = json::array();
        for (const ImportError &e : errors.listed())
            list.push_back(json{{"line", e.line}, {"code", e.code}, {"message", e.message}});
        out["errors"] = std::move(list);
        return json_response(errors.only_conflicts() ? 409 : 400, out);
    }

    ensure_published();
    for (ApiKey &k : parsed.keys) {
        k.id = apikey::random_uuid();
        k.workspace_id = workspace_id;
        k.status = KeyStatus::active;
        k.created_by = actor;
        k.created_at = k.updated_at = now;
    }
    std::optional<Change> change;
    try {
        change = store_.import_keys(workspace_id, parsed.keys, Audit{actor, now});
    } catch (const Conflict &) {  // checked above on this same thread: not expected
        return error_response(409, code::conflict,
                              "a key of the import already exists; nothing was imported");
    }
    if (!change) return not_found("workspace");
    timings += " store_ms=" + ms_since(t);

    // Built by hand: a million results through nlohmann would cost seconds. Before the
    // publish, which takes the change.
    std::string out = "{\"imported\":" + std::to_string(change->keys_put.size()) +
                      ",\"workspace_id\":\"" + apikey::to_string(workspace_id) +
                      "\",\"seq\":" + std::to_string(change->generation) + ",\"keys\":[";
    out.reserve(out.size() + change->keys_put.size() * 60 + 2);
    for (std::size_t i = 0; i < change->keys_put.size(); ++i) {
        if (i > 0) out += ',';
        out += "{\"line\":";
        out += std::to_string(parsed.lines[i]);
        out += ",\"id\":\"";
        out += apikey::to_string(change->keys_put[i].id);
        out += "\"}";
    }
    out += "]}";
    const std::string summary = "keys imported count=" + std::to_string(change->keys_put.size()) +
                                " workspace=" + apikey::to_string(workspace_id) + " by=" + actor +
                                " generation=" + std::to_string(change->generation);
    t = Steady::now();
    publish(std::move(*change));
    timings += " publish_ms=" + ms_since(t);  // 0 in a batch: published after its commit
    log_info(summary + timings);
    Response r;
    r.status = 201;
    r.body = std::move(out);
    return r;
}

Response Api::get_key(const Uuid &workspace_id, const Uuid &key_id) {
    Store::View view = store_.view();
    if (!view.workspace(workspace_id)) return not_found("workspace");
    const auto k = view.key(key_id);
    // A key of another workspace does not exist under this one.
    if (!k || k->workspace_id != workspace_id) return not_found("API key");
    return json_response(200, key_json(*k));
}

Response Api::revoke_key(const Uuid &workspace_id, const Uuid &key_id, const std::string &actor) {
    ensure_published();
    Change change;
    switch (store_.revoke_key(workspace_id, key_id, Audit{actor, clock_()}, change)) {
    case Store::Revoke::not_found: return not_found("API key");
    case Store::Revoke::already_revoked: break;
    case Store::Revoke::revoked:
        log_info("key revoked id=" + apikey::to_string(key_id) + " workspace=" +
                 apikey::to_string(workspace_id) + " by=" + actor +
                 " generation=" + std::to_string(change.generation));
        publish(std::move(change));
        break;
    }
    return json_response(200, json{{"status", "revoked"}});
}

Response Api::patch_key(const Uuid &workspace_id, const Uuid &key_id, std::string_view body,
                        const std::string &actor) {
    const JsonObject object(body, {{"name"}, {"rate_limit"}});
    Store::KeyUpdate update;
    if (const nlohmann::json *name = object.get("name")) {
        if (!name->is_string()) invalid_field("name", "must be a string");
        update.name = checked_name(name->get<std::string>(), "name");
    }
    if (const nlohmann::json *limit = object.get("rate_limit"))
        update.rate_limit = parse_rate_limit(*limit, "rate_limit");
    if (!update.name && !update.rate_limit)
        throw ApiError(400, code::missing_field,
                       "the body must set at least one of \"name\" or \"rate_limit\"");

    ensure_published();
    Change change;
    switch (store_.update_key(workspace_id, key_id, update, Audit{actor, clock_()}, change)) {
    case Store::Update::not_found: return not_found("API key");
    case Store::Update::unchanged: break;
    case Store::Update::updated:
        log_info("key updated id=" + apikey::to_string(key_id) + " workspace=" +
                 apikey::to_string(workspace_id) + " by=" + actor +
                 " generation=" + std::to_string(change.generation));
        publish(std::move(change));
        break;
    }
    return get_key(workspace_id, key_id);
}

// --- settings --------------------------------------------------------------------------

Response Api::get_workspace_settings(const Uuid &workspace_id) {
    const auto w = store_.view().workspace(workspace_id);
    if (!w) return not_found("workspace");
    return json_response(200, workspace_settings_view(w->settings));
}

Response Api::put_workspace_settings(const Uuid &workspace_id, std::string_view body,
                                     const std::string &actor) {
    const WorkspaceSettings settings = parse_workspace_settings(body);
    ensure_published();
    Change change;
    switch (store_.put_workspace_settings(workspace_id, settings, Audit{actor, clock_()}, change)) {
    case Store::Update::not_found: return not_found("workspace");
    case Store::Update::unchanged: break;
    case Store::Update::updated:
        log_info("workspace settings updated id=" + apikey::to_string(workspace_id) + " by=" +
                 actor + " entities_republished=" + std::to_string(change.entities_put.size()) +
                 " generation=" + std::to_string(change.generation));
        publish(std::move(change));
        break;
    }
    return json_response(200, workspace_settings_view(settings));
}

Response Api::get_entity_settings(const Uuid &workspace_id, const std::string &entity) {
    Store::View view = store_.view();
    const auto w = view.workspace(workspace_id);
    if (!w) return not_found("workspace");
    // An entity never configured has the defaults: 200, not 404.
    const EntitySettings settings = view.entity_settings(workspace_id, entity).value_or(EntitySettings{});
    return json_response(200, entity_settings_view(settings, w->settings));
}

Response Api::put_entity_settings(const Uuid &workspace_id, const std::string &entity,
                                  std::string_view body, const std::string &actor) {
    const EntitySettings settings = parse_entity_settings(body);
    ensure_published();
    Change change;
    switch (store_.put_entity_settings(workspace_id, entity, settings, Audit{actor, clock_()},
                                       change)) {
    case Store::Update::not_found: return not_found("workspace");
    case Store::Update::unchanged: break;
    case Store::Update::updated:
        log_info("entity settings updated workspace=" + apikey::to_string(workspace_id) +
                 " entity=" + entity + " by=" + actor +
                 " generation=" + std::to_string(change.generation));
        publish(std::move(change));
        break;
    }
    const auto w = store_.view().workspace(workspace_id);
    if (!w) return not_found("workspace");
    return json_response(200, entity_settings_view(settings, w->settings));
}

// --- change feed -----------------------------------------------------------------------

Response Api::list_changes(const std::optional<Uuid> &workspace_id, std::string_view query) {
    const auto q = parse_page_query<FeedQuery>(query, feed_after, kFeedMaxLimit);
    Store::View view = store_.view();
    // A deleted workspace's feed is gone like its other routes; /api/v1/changes keeps it.
    if (workspace_id && !view.workspace(*workspace_id)) return not_found("workspace");
    const auto entries = view.changes(workspace_id, q.after, q.limit, kFeedMaxPageBytes);
    // Entries are stored as compact JSON: spliced in, not re-encoded.
    std::string body = "{\"changes\":[";
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) body += ',';
        body += entries[i].json;
    }
    body += "],\"next_after\":";
    body += std::to_string(entries.empty() ? q.after : entries.back().seq);
    body += '}';
    Response r;
    r.status = 200;
    r.body = std::move(body);
    return r;
}

// --- publishing ------------------------------------------------------------------------

bool Api::try_sync() noexcept {
    if (publisher_.published_generation() != 0) return true;
    try {
        publisher_.sync();
        if (publish_failing_) log_info("snapshot publishing works again");
        publish_failing_ = snapshot_full_ = false;
        return true;
    } catch (const std::exception &e) {
        if (!publish_failing_) log_error(std::string("snapshot publish failed: ") + e.what());
        metrics_.count_publish_failure();
        publish_failing_ = true;
        snapshot_full_ = dynamic_cast<const SnapshotFull *>(&e) != nullptr;
        return false;
    }
}

void Api::ensure_published() {
    // In a batch, checked once before it began: a rebuild must read committed state only.
    if (!(batch_ ? batch_->in_sync : try_sync()))
        throw ApiError(503, code::publish_failed,
                       with_full_hint("the snapshot cannot be published right now, so no change "
                                      "is accepted; see apikeyd's log"));
}

// Applies `changes` (consecutive generations) in one snapshot transaction; false, logged
// and counted, when that fails (the next publish or maintenance() rebuilds).
bool Api::apply_changes(const std::vector<const Change *> &changes) noexcept {
    try {
        const auto start = std::chrono::steady_clock::now();
        publisher_.apply(changes);
        metrics_.observe_publish(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        return true;
    } catch (const std::exception &e) {
        log_error("snapshot publish of generation " + std::to_string(changes.back()->generation) +
                  " failed: " + e.what());
        metrics_.count_publish_failure();
        publish_failing_ = true;
        snapshot_full_ = dynamic_cast<const SnapshotFull *>(&e) != nullptr;
        return false;
    }
}

std::string Api::with_full_hint(std::string_view message) const {
    // The one failure an operator fixes by configuration: say which setting.
    return std::string(message) +
           (snapshot_full_ ? " (the snapshot map is full even grown to its ceiling: raise "
                             "snapshot_map_size_mb and restart apikeyd)"
                           : "");
}

void Api::publish(Change &&change) {
    if (batch_ != nullptr) {  // published by handle_batch() once the batch is durable
        batch_->changes.push_back(std::move(change));
        batch_->changed_by.push_back(batch_->current);
        return;
    }
    if (!apply_changes({&change})) throw ApiError(503, code::publish_failed, with_full_hint(kNotPublished));
}

std::vector<Response> Api::handle_batch(const std::vector<Request> &requests) noexcept {
    Pending pending;
    // Before the batch opens: a rebuild it needs reads the committed store.
    pending.in_sync = try_sync();
    std::vector<Response> out;
    out.reserve(requests.size());
    try {
        Store::Batch batch(store_);
        batch_ = &pending;
        for (; pending.current < requests.size(); ++pending.current)
            out.push_back(dispatch(requests[pending.current]));
        batch_ = nullptr;
        batch.commit();
    } catch (const std::exception &e) {
        // Not durable: no response of the batch may claim (or show) what it wrote.
        batch_ = nullptr;
        const auto *store = dynamic_cast<const lmdb::LmdbError *>(&e);
        if (store == nullptr) log_error(std::string("internal error: ") + e.what());
        const Response failed = store ? store_error(*store)
                                      : error_response(500, code::internal_error,
                                                       "internal error; see apikeyd's log");
        out.resize(requests.size());
        for (Response &r : out) replace_response(r, failed);
        pending.changes.clear();  // never published: the store does not hold them
    }
    if (!pending.changes.empty()) {
        std::vector<const Change *> changes;
        for (const Change &c : pending.changes) changes.push_back(&c);
        if (!apply_changes(changes))
            for (const std::size_t i : pending.changed_by)
                replace_response(out[i], error_response(503, code::publish_failed, with_full_hint(kNotPublished)));
    }
    for (std::size_t i = 0; i < requests.size(); ++i) count(requests[i], out[i]);
    return out;
}

void Api::maintenance() noexcept {
    // The snapshot deleted (or replaced) while apikeyd runs: publishing would only reach
    // the orphaned file the old workers still read, and new workers (a respawn, a reload)
    // would answer 503 until apikeyd restarts. Create it anew; try_sync() rebuilds it.
    try {
        if (!publisher_.in_place()) {
            log_warn("the snapshot's data.mdb was deleted or replaced: creating it anew");
            publisher_.reopen();
        }
    } catch (const std::exception &e) {
        if (!publish_failing_) log_error(std::string("snapshot reopen failed: ") + e.what());
        publish_failing_ = true;
        return;
    }
    try_sync();
}

bool is_import_target(std::string_view target) noexcept {
    try {
        const auto s = split_path(path_of(target));
        return s.size() == 6 && s[0] == "api" && s[1] == "v1" && s[2] == "workspaces" &&
               s[4] == "api-keys" && s[5] == "import";
    } catch (...) {
        return false;
    }
}

std::string loggable_path(std::string_view target) {
    const std::string_view path = path_of(target);
    if (path.empty() || path.front() != '/') return "*";
    std::string out;
    for (const std::string_view segment : split_path(path)) {
        out += '/';
        if (segment == "api" || segment == "v1" || segment == "workspaces" ||
            segment == "api-keys" || segment == "settings" || segment == "entities" ||
            segment == "changes" || segment == "import" || segment == "healthz" ||
            segment == "metrics" || segment.empty() || apikey::parse_uuid(segment))
            out += segment;
        else
            out += '*';
        if (out.size() > 200) return out.substr(0, 200) + "...";
    }
    return out;
}

}  // namespace apikeyd
