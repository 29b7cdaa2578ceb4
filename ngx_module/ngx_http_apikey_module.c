
/*
 * ngx_http_apikey_module: API-key authentication in the access phase.
 *
 * Thin nginx glue over the C API of the C++ core (shared/apikey_capi.h). Each
 * worker opens the LMDB snapshot published by apikeyd once, after fork, in
 * init_process; a request costs one read transaction on that memory map and
 * never talks to the daemon.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_apikey_module.h"
#include "ngx_http_apikey_rate_limit.h"
#include "ngx_http_apikey_status.h"
#include "ngx_http_apikey_usage.h"


/* How often a worker retries opening a missing snapshot and checks whether
 * the one it has open is still the one at the configured path. */
#define NGX_HTTP_APIKEY_WATCH_INTERVAL   1000

/* The same problem is logged again at most this often (seconds). */
#define NGX_HTTP_APIKEY_LOG_REPEAT       60

#define NGX_HTTP_APIKEY_ERR_SIZE         512


typedef struct {
    /* configuration: absolute, NUL-terminated; len == 0 when not set */
    ngx_str_t                  snapshot;
    ngx_str_t                  data_file;          /* snapshot/data.mdb */

    /*
     * Per-process state, set up in init_process. The main conf is copied
     * into every worker by fork(), so each worker owns its own reader:
     * LMDB requires one environment per process, opened after fork.
     */
    apikey_reader_t           *reader;
    ngx_event_t                watch;
    dev_t                      dev;                /* data.mdb of `reader` */
    ino_t                      ino;
    ngx_uint_t                 reopen;             /* a view failed */

    /* rate limiting of repeated log messages */
    time_t                     open_error_logged;
    time_t                     unavailable_logged;
    const char                *unavailable_reason;
    u_char                     open_error[NGX_HTTP_APIKEY_ERR_SIZE];

    ngx_http_apikey_usage_t    usage;              /* last_used_at reports */
    ngx_shm_zone_t            *counters;           /* decisions by outcome */

    /* the first "apikey_status", for nginx -t's message; line 0: none */
    ngx_str_t                  status_file;
    ngx_uint_t                 status_line;

    /* the "default=" of each rate-limit zone, for nginx -t's check */
    ngx_array_t               *rate_defaults;      /* of ..._rate_default_t */
} ngx_http_apikey_main_conf_t;


/*
 * A zone keeps one state per key, and a key's spending carries over to a
 * changed limit (counted in requests, ngx_http_apikey_rate_limit.c). Two
 * locations charging one zone with different "default=" limits would each
 * rescale what the other spent: a key spent at 10/60s in one, then a request
 * at 1000/60s in another, owed 0.6 s and was soon admitted 10 more. So every
 * "default=" of a zone is the same, or nginx -t refuses it.
 */

typedef struct {
    ngx_shm_zone_t            *zone;
    ngx_uint_t                 limit;
    time_t                     window;
    ngx_str_t                  file;               /* where it was given */
    ngx_uint_t                 line;
} ngx_http_apikey_rate_default_t;


/*
 * "apikey_workspace" and "apikey_entity". The usual value is one variable
 * ($entity, a capture of the location): that is read as is, without the
 * script engine's length pass, allocation and copy on every request.
 */

typedef struct {
    ngx_http_complex_value_t   cv;
    ngx_int_t                  index;    /* of a lone "$variable", or
                                            NGX_ERROR */
} ngx_http_apikey_value_t;


/*
 * Set on merge when a location of the server (or the server, or http{}) has
 * "apikey on". A request's server is known before its location, and no
 * rewrite or redirect leaves the server: the post-read phase presents keys
 * only in servers where some location may decide, and starts loading the
 * key's rate-limit state where all of them that limit share one zone.
 */

typedef struct {
    ngx_flag_t                 has_apikey;
    ngx_shm_zone_t            *rate_zone;       /* the one zone, or NULL */
    ngx_flag_t                 rate_zones;      /* more than one */
} ngx_http_apikey_srv_conf_t;


typedef struct {
    ngx_flag_t                 enable;
    ngx_http_apikey_value_t   *workspace;
    ngx_http_apikey_value_t   *entity;

    /* "apikey_rate_limit": NULL for off; defaults for keys without a limit */
    ngx_shm_zone_t            *rate_zone;
    ngx_uint_t                 rate_default_limit;
    time_t                     rate_default_window;
    ngx_uint_t                 rate_set;           /* at this level */

    /* where "apikey" was set, for configuration errors found on merge */
    ngx_str_t                  enable_file;
    ngx_uint_t                 enable_line;
} ngx_http_apikey_loc_conf_t;


/*
 * Made in the post-read phase for a request with an Authorization header (the
 * key presented), completed by the access phase (the decision). The header
 * filter and the variables read only decided ones.
 *
 * An internal redirect (try_files, error_page, index, X-Accel-Redirect)
 * clears every module context, and a location it reaches with "apikey" on
 * decides again: its workspace, entity and policy may differ. What a client
 * request spends, though (a unit of its key's rate limit, a count, a recorded
 * use), it spends once. So the request's first context is also a pool
 * cleanup's data, which survives redirects (ngx_http_realip_module finds its
 * own the same way); a later context refers to it as "first" and takes the
 * key it presented and the rate-limit verdict from it. A location without
 * "apikey" reached by a redirect (a named location proxying, error_page's
 * fallback upstream) has no context of its own: its variables and headers are
 * those of the request's latest decision, which admitted it.
 */

typedef struct ngx_http_apikey_ctx_s  ngx_http_apikey_ctx_t;

struct ngx_http_apikey_ctx_s {
    ngx_http_apikey_ctx_t     *first;              /* may be this one */
    apikey_presented_key_t     presented;
    apikey_result_t            result;
    ngx_str_t                  entity;
    ngx_str_t                  origin;             /* for the CORS grant */
    ngx_str_t                  request_headers;    /* of a preflight */
    ngx_http_apikey_rate_t     rate;
    ngx_uint_t                 rate_limit;         /* the budget applied */
    time_t                     rate_window;
    unsigned                   presented_set:1;
    unsigned                   decided:1;
    unsigned                   entity_set:1;
    unsigned                   rate_applied:1;
    unsigned                   spent:1;            /* in "first" only */
    ngx_http_apikey_ctx_t     *latest;             /* in "first" only: the
                                                      last decided */
};


/*
 * nginx's log handler ends every line logged for a request with its request
 * line, where a client may have put a key (?api_key=sk_live_...). The
 * module's own lines go through a copy of the connection's log that names the
 * client and the server but not the request, and show the request line with
 * every key cut to its prefix themselves.
 */

typedef struct {
    ngx_log_t                  log;
    ngx_http_log_ctx_t         ctx;
    ngx_str_t                  request;
} ngx_http_apikey_log_t;


typedef enum {
    NGX_HTTP_APIKEY_VAR_ID = 0,
    NGX_HTTP_APIKEY_VAR_PERMISSION,
    NGX_HTTP_APIKEY_VAR_KEY_PREFIX,
    NGX_HTTP_APIKEY_VAR_WORKSPACE_ID,
    NGX_HTTP_APIKEY_VAR_RESULT,
    NGX_HTTP_APIKEY_VAR_GENERATION,
    NGX_HTTP_APIKEY_VAR_ENTITY,
    NGX_HTTP_APIKEY_VAR_PUBLIC,
    NGX_HTTP_APIKEY_VAR_EXPAND,
    NGX_HTTP_APIKEY_VAR_FIELDS,
    NGX_HTTP_APIKEY_VAR_HIDDEN_COLUMNS
} ngx_http_apikey_var_e;


static ngx_int_t ngx_http_apikey_post_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_apikey_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_apikey_subrequest_handler(ngx_http_request_t *r);
static ngx_http_apikey_ctx_t *ngx_http_apikey_create_ctx(ngx_http_request_t *r);
static ngx_http_apikey_ctx_t *ngx_http_apikey_first_ctx(ngx_http_request_t *r);
static void ngx_http_apikey_first_ctx_cleanup(void *data);
static ngx_http_apikey_ctx_t *ngx_http_apikey_decided(ngx_http_request_t *r);
static ngx_log_t *ngx_http_apikey_request_log(ngx_http_request_t *r,
    ngx_http_apikey_log_t *safe);
static void ngx_http_apikey_cors_headers_in(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx, ngx_uint_t *preflight);
static ngx_int_t ngx_http_apikey_preflight(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx);
static ngx_int_t ngx_http_apikey_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_apikey_header_is(ngx_table_elt_t *h,
    const char *name, size_t len);
static ngx_int_t ngx_http_apikey_value(ngx_http_request_t *r,
    ngx_http_apikey_value_t *val, ngx_str_t *value);
static void *ngx_http_apikey_alloc(void *pool, size_t size);
static ngx_int_t ngx_http_apikey_reject(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx);
static ngx_int_t ngx_http_apikey_add_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value, ngx_table_elt_t **out);
static ngx_int_t ngx_http_apikey_www_authenticate(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx);
static void ngx_http_apikey_log_unavailable(ngx_http_request_t *r,
    ngx_http_apikey_main_conf_t *amcf, ngx_http_apikey_ctx_t *ctx);

static ngx_int_t ngx_http_apikey_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_http_apikey_open(ngx_http_apikey_main_conf_t *amcf,
    ngx_log_t *log);
static void ngx_http_apikey_watch_handler(ngx_event_t *ev);
static void ngx_http_apikey_log_open_error(ngx_http_apikey_main_conf_t *amcf,
    ngx_log_t *log, ngx_uint_t level, const char *prefix, const char *err);

static ngx_int_t ngx_http_apikey_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_apikey_init(ngx_conf_t *cf);
static void *ngx_http_apikey_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_apikey_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_apikey_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_apikey_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_apikey_snapshot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_apikey_enable(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_apikey_set_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_apikey_lone_variable(ngx_conf_t *cf,
    ngx_str_t *value, ngx_int_t *index);
static char *ngx_http_apikey_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_apikey_rate_default_check(ngx_conf_t *cf,
    ngx_http_apikey_loc_conf_t *alcf);
static char *ngx_http_apikey_conf_where(ngx_conf_t *cf, ngx_str_t *file,
    ngx_uint_t *line);
static char *ngx_http_apikey_status_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void ngx_http_apikey_apply_rate_limit(ngx_http_request_t *r,
    ngx_http_apikey_loc_conf_t *alcf, ngx_http_apikey_ctx_t *ctx);
static ngx_int_t ngx_http_apikey_rate_headers(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx);

static ngx_int_t ngx_http_apikey_init_process(ngx_cycle_t *cycle);
static void ngx_http_apikey_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_apikey_commands[] = {

    { ngx_string("apikey_snapshot"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_apikey_snapshot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("apikey"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_apikey_enable,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_apikey_loc_conf_t, enable),
      NULL },

    { ngx_string("apikey_workspace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_apikey_set_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_apikey_loc_conf_t, workspace),
      NULL },

    { ngx_string("apikey_entity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_apikey_set_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_apikey_loc_conf_t, entity),
      NULL },

    { ngx_string("apikey_usage_report"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_apikey_usage_report,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_apikey_main_conf_t, usage),
      NULL },

    { ngx_string("apikey_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_apikey_status_directive,
      0,
      0,
      NULL },

    { ngx_string("apikey_rate_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_apikey_rate_limit_zone,
      0,
      0,
      NULL },

    { ngx_string("apikey_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_apikey_rate_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_apikey_module_ctx = {
    ngx_http_apikey_add_variables,         /* preconfiguration */
    ngx_http_apikey_init,                  /* postconfiguration */

    ngx_http_apikey_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_apikey_create_srv_conf,       /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_apikey_create_loc_conf,       /* create location configuration */
    ngx_http_apikey_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_apikey_module = {
    NGX_MODULE_V1,
    &ngx_http_apikey_module_ctx,           /* module context */
    ngx_http_apikey_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_apikey_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_apikey_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_apikey_vars[] = {

    { ngx_string("apikey_id"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_permission"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_PERMISSION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_key_prefix"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_KEY_PREFIX, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_workspace_id"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_WORKSPACE_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_result"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_RESULT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_snapshot_generation"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_GENERATION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_entity"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_ENTITY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_public"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_PUBLIC, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_expand"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_EXPAND, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_fields"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_FIELDS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_hidden_columns"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_HIDDEN_COLUMNS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_apikey_next_header_filter;


/* request path */

/*
 * As soon as the request's header is read: the key presented is checked and
 * hashed, and its snapshot entry starts to load, with the slots the hash
 * places its last use and its rate-limit state in. That entry is one of a
 * million, a cache and TLB miss, and so are the slots; started here, they
 * overlap the work nginx does until the access phase (finding the location,
 * rewrites) instead of stalling it (docs/BENCHMARKS.md). In a server with a
 * location with "apikey", a request for another location pays for a hash
 * only if it presents a token of a key's length and scheme; in other servers
 * nothing is done.
 */

static ngx_int_t
ngx_http_apikey_post_read(ngx_http_request_t *r)
{
    ngx_table_elt_t              *h;
    ngx_http_apikey_ctx_t        *ctx;
    ngx_http_apikey_srv_conf_t   *ascf;
    ngx_http_apikey_main_conf_t  *amcf;

    h = r->headers_in.authorization;

    if (h == NULL) {
        return NGX_DECLINED;
    }

    ascf = ngx_http_get_module_srv_conf(r, ngx_http_apikey_module);

    if (!ascf->has_apikey) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_apikey_create_ctx(r);
    if (ctx == NULL) {
        /* the access phase tries again */
        return NGX_DECLINED;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_apikey_module);

    apikey_present_key(amcf->reader, (const char *) h->value.data,
                       h->value.len, &ctx->presented);
    ctx->presented_set = 1;

    if (ctx->presented.code == 0) {
        /* where the key's last use and rate-limit state go start loading too */
        ngx_http_apikey_usage_prefetch(&amcf->usage, ctx->presented.hash);

        if (ascf->rate_zone) {
            ngx_http_apikey_rate_limit_prefetch(ascf->rate_zone,
                                                ctx->presented.hash);
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "apikey: key presented: %s",
                   apikey_code_name(ctx->presented.code));

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_apikey_handler(ngx_http_request_t *r)
{
    u_char                       *last, *query;
    ngx_str_t                     workspace;
    ngx_log_t                    *log;
    ngx_http_apikey_log_t         safe;
    ngx_uint_t                    preflight, used;
    ngx_http_request_t           *cr;
    apikey_request_t              req;
    ngx_http_apikey_ctx_t        *ctx;
    ngx_http_apikey_loc_conf_t   *alcf;
    ngx_http_apikey_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_apikey_module);

    if (!alcf->enable) {
        return NGX_DECLINED;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_apikey_module);

    ctx = ngx_http_get_module_ctx(r, ngx_http_apikey_module);

    if (ctx == NULL) {
        /* no Authorization header, or an internal redirect cleared it */
        ctx = ngx_http_apikey_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (!ctx->decided) {

        /* merge guarantees a workspace wherever "apikey" is on */

        if (ngx_http_apikey_value(r, alcf->workspace, &workspace) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (alcf->entity) {
            if (ngx_http_apikey_value(r, alcf->entity, &ctx->entity)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ctx->entity_set = 1;
        }

        ngx_memzero(&req, sizeof(apikey_request_t));

        if (r->headers_in.authorization) {
            req.authorization.data = (const char *)
                                     r->headers_in.authorization->value.data;
            req.authorization.len = r->headers_in.authorization->value.len;

            if (!ctx->presented_set) {
                /* no post-read phase (an internal redirect cleared it) */
                apikey_present_key(amcf->reader, req.authorization.data,
                                   req.authorization.len, &ctx->presented);
                ctx->presented_set = 1;
            }

            req.presented = &ctx->presented;
        }

        ngx_http_apikey_cors_headers_in(r, ctx, &preflight);

        if (ctx->origin.data) {
            req.origin.data = (const char *) ctx->origin.data;
            req.origin.len = ctx->origin.len;
        }

        req.workspace.data = (const char *) workspace.data;
        req.workspace.len = workspace.len;
        req.entity.data = (const char *) ctx->entity.data;
        req.entity.len = ctx->entity.len;
        req.args.data = (const char *) r->args.data;
        req.args.len = r->args.len;

        /*
         * The request decided for: a subrequest that answers with its status
         * only (auth_request, mirror) stands for its client's request, whose
         * method and path as sent count; one that makes content (an SSI
         * include) is a GET of its own, normalised URI.
         */

        cr = (r != r->main && r->header_only) ? r->main : r;

        /*
         * The location matched the path nginx normalised; proxy_pass without
         * a URI part passes it as sent, unless the URI was changed since
         * (valid_unparsed_uri). Only a path with "%", "//" or "/." can differ.
         */

        if (cr->valid_unparsed_uri && (cr->quoted_uri || cr->complex_uri)) {
            last = cr->unparsed_uri.data + cr->unparsed_uri.len;
            query = ngx_strlchr(cr->unparsed_uri.data, last, '?');

            req.raw_path.data = (const char *) cr->unparsed_uri.data;
            req.raw_path.len = (query ? query : last) - cr->unparsed_uri.data;
        }

        req.mutating = (cr->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) ? 0 : 1;
        req.preflight = (int) preflight;
        req.now = (int64_t) ngx_time();
        req.alloc = ngx_http_apikey_alloc;
        req.alloc_ctx = r->pool;

        apikey_authenticate(amcf->reader, &req, &ctx->result);

        /* a key that authenticated was used, whatever else was refused */

        used = ctx->result.key_found
               && ctx->result.http_status != NGX_HTTP_UNAUTHORIZED
               && ctx->result.http_status != NGX_HTTP_SERVICE_UNAVAILABLE;

        /* last: refused requests never spend a key's budget */

        if (ctx->result.http_status == NGX_HTTP_OK && ctx->result.key_found) {
            ngx_http_apikey_apply_rate_limit(r, alcf, ctx);
        }

        /* a decision after an internal redirect spends nothing more */

        if (!ctx->first->spent) {
            ctx->first->spent = 1;

            ngx_http_apikey_status_count(amcf->counters, ctx->result.code);

            if (used) {
                ngx_http_apikey_usage_record(&amcf->usage, ctx->presented.hash,
                                             (u_char *) ctx->result.key_id,
                                             ngx_time());
            }
        }

        ctx->decided = 1;

        /* a subrequest's decision is its own, never its main request's */

        if (r == r->main) {
            ctx->first->latest = ctx;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "apikey: workspace \"%V\": %s, generation %uL",
                       &workspace, apikey_code_name(ctx->result.code),
                       (uint64_t) ctx->result.generation);
    }

    if (ctx->result.http_status == NGX_HTTP_OK) {
        return NGX_OK;
    }

    if (ctx->result.http_status == NGX_HTTP_NO_CONTENT) {
        return ngx_http_apikey_preflight(r, ctx);
    }

    if (ctx->result.http_status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_http_apikey_log_unavailable(r, amcf, ctx);

        if (amcf->reader) {
            /* open, but the view failed: let the watch timer reopen it */
            amcf->reopen = 1;
        }

    } else if (r->connection->log->log_level >= NGX_LOG_INFO) {
        log = ngx_http_apikey_request_log(r, &safe);

        if (ctx->result.key_found) {
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "apikey: rejected with %i %s, key prefix \"%*s\", "
                          "request: \"%V\"",
                          (ngx_int_t) ctx->result.http_status,
                          apikey_code_name(ctx->result.code),
                          (size_t) APIKEY_PREFIX_LEN, ctx->result.key_prefix,
                          &safe.request);

        } else {
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "apikey: rejected with %i %s, request: \"%V\"",
                          (ngx_int_t) ctx->result.http_status,
                          apikey_code_name(ctx->result.code), &safe.request);
        }
    }

    /*
     * The rejection is final, also under "satisfy any": handing 401/403
     * back to the phase engine would let another access module (allow)
     * pass the request on with the rejected key's $apikey_id, and would
     * replace the JSON body with nginx's HTML error page. With "satisfy
     * any" a valid key is enough on its own (NGX_OK skips the remaining
     * access handlers), but a bad one is never overridden.
     */

    return ngx_http_apikey_reject(r, ctx);
}


/*
 * nginx's access phase skips subrequests (auth_request, SSI includes,
 * mirror): their main request was checked. But a location with "apikey"
 * reached by one must decide all the same, or it would admit anything: an
 * auth_request into it would let every request through. So subrequests are
 * decided in the preaccess phase, as their client's request (its method, its
 * path as sent, its key), each location by its own workspace and entity; what
 * the request spends it spends once (see ngx_http_apikey_ctx_t). A refusal
 * ends the subrequest with its status and JSON body; auth_request hands 401
 * (with WWW-Authenticate) and 403 on to the client, and turns others into 500.
 */

static ngx_int_t
ngx_http_apikey_subrequest_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (r == r->main) {
        return NGX_DECLINED;
    }

    rc = ngx_http_apikey_handler(r);

    /* NGX_OK would skip the phase's other handlers (limit_req, limit_conn) */

    return (rc == NGX_OK) ? NGX_DECLINED : rc;
}


/*
 * Sends the whole rejection from the access phase and ends the request.
 *
 * The access checker treats any handler status other than NGX_OK,
 * NGX_DECLINED, NGX_AGAIN and NGX_DONE by calling ngx_http_finalize_request()
 * with it, and a special status there means nginx's own HTML error page.
 * To answer with our JSON body instead, this does what the content phase
 * does for a content handler: send header and body, pass the result to
 * ngx_http_finalize_request() exactly once, and return NGX_DONE so that the
 * checker returns NGX_OK and the phase engine stops without touching the
 * request again (it may already be freed, e.g. on keep-alive). No extra
 * reference is taken: r->count is only raised by the body discard when
 * the body cannot be drained at once, and ngx_http_finalize_connection()
 * accounts for that (discard_body).
 */

static ngx_int_t
ngx_http_apikey_reject(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx)
{
    u_char        *p;
    size_t         len, name_len, message_len;
    ngx_int_t      rc;
    ngx_buf_t     *b;
    ngx_str_t      key, value;
    ngx_chain_t    out;
    const char    *name, *message;

    static ngx_str_t  json = ngx_string("application/json");
    static ngx_str_t  cache_control = ngx_string("Cache-Control");
    static ngx_str_t  no_store = ngx_string("no-store");
    static ngx_str_t  retry_after = ngx_string("Retry-After");
    static ngx_str_t  one_second = ngx_string("1");

    /*
     * As nginx does for its own error responses: no "100 Continue" (the
     * client need not upload a body only to have it thrown away), and if
     * the body cannot be discarded (say, broken chunked encoding) the
     * connection is not kept alive.
     */

    r->expect_tested = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = ctx->result.http_status;

    key = cache_control;
    value = no_store;

    if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
        goto failed;
    }

    if (ctx->result.http_status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        key = retry_after;
        value = one_second;

        if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
            goto failed;
        }

    } else if (ctx->result.http_status == NGX_HTTP_TOO_MANY_REQUESTS) {
        key = retry_after;
        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            goto failed;
        }

        value.len = ngx_sprintf(value.data, "%T", ctx->rate.retry_after)
                    - value.data;

        if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
            goto failed;
        }

    } else if ((ctx->result.http_status == NGX_HTTP_UNAUTHORIZED
                || ngx_strcmp(apikey_code_name(ctx->result.code),
                              "read_only_key") == 0)
               && ngx_http_apikey_www_authenticate(r, ctx) != NGX_OK)
    {
        goto failed;
    }

    /* {"error":{"code":"<name>","message":"<message>"}}\n */

    name = apikey_code_name(ctx->result.code);
    name_len = apikey_code_name_len(ctx->result.code);
    if (ctx->result.message.data) {
        message = ctx->result.message.data;
        message_len = ctx->result.message.len;

    } else {
        message = apikey_code_message(ctx->result.code);
        message_len = apikey_code_message_len(ctx->result.code);
    }

    len = sizeof("{\"error\":{\"code\":\"") - 1
          + name_len + ngx_escape_json(NULL, (u_char *) name, name_len)
          + sizeof("\",\"message\":\"") - 1
          + message_len + ngx_escape_json(NULL, (u_char *) message, message_len)
          + sizeof("\"}}\n") - 1;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        goto failed;
    }

    p = b->last;
    p = ngx_cpymem(p, "{\"error\":{\"code\":\"",
                   sizeof("{\"error\":{\"code\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, (u_char *) name, name_len);
    p = ngx_cpymem(p, "\",\"message\":\"", sizeof("\",\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, (u_char *) message, message_len);
    p = ngx_cpymem(p, "\"}}\n", sizeof("\"}}\n") - 1);
    b->last = p;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.content_type_len = json.len;
    r->headers_out.content_type = json;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        /* HEAD: the header filter set header_only and sent last_buf */
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));
    return NGX_DONE;

failed:

    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    return NGX_DONE;
}


static ngx_int_t
ngx_http_apikey_www_authenticate(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx)
{
    ngx_str_t   key, value;

    static ngx_str_t  www_authenticate = ngx_string("WWW-Authenticate");
    static ngx_str_t  bearer = ngx_string("Bearer");
    static ngx_str_t  invalid_token =
                          ngx_string("Bearer error=\"invalid_token\"");
    static ngx_str_t  insufficient_scope =
                          ngx_string("Bearer error=\"insufficient_scope\"");

    if (r->headers_out.www_authenticate) {
        /* a previous access handler set one (auth_basic): ours wins */
        r->headers_out.www_authenticate->hash = 0;
        r->headers_out.www_authenticate = NULL;
    }

    key = www_authenticate;

    if (ctx->result.http_status == NGX_HTTP_FORBIDDEN) {
        value = insufficient_scope;

    } else if (ngx_strcmp(apikey_code_name(ctx->result.code),
                          "missing_credentials") == 0)
    {
        /* RFC 6750, 3.1: no error code when no credentials were sent */
        value = bearer;

    } else {
        value = invalid_token;
    }

    return ngx_http_apikey_add_header(r, &key, &value,
                                      &r->headers_out.www_authenticate);
}


static ngx_int_t
ngx_http_apikey_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value, ngx_table_elt_t **out)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    if (out) {
        *out = h;
    }

    return NGX_OK;
}


/*
 * CORS (seed 003). The grant is decided from the workspace's allowed origins
 * together with the rest of the decision; the header filter puts it on every
 * response of the request, the upstream's and our own rejections alike
 * (add_header would skip 4xx).
 */

static ngx_int_t
ngx_http_apikey_header_is(ngx_table_elt_t *h, const char *name, size_t len)
{
    return h->key.len == len
           && ngx_strncasecmp(h->key.data, (u_char *) name, len) == 0;
}


static void
ngx_http_apikey_cors_headers_in(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx, ngx_uint_t *preflight)
{
    ngx_uint_t        i, request_method;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    request_method = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_apikey_header_is(&h[i], "Origin", sizeof("Origin") - 1)) {
            ctx->origin = h[i].value;

        } else if (ngx_http_apikey_header_is(&h[i],
                       "Access-Control-Request-Method",
                       sizeof("Access-Control-Request-Method") - 1))
        {
            request_method = 1;

        } else if (ngx_http_apikey_header_is(&h[i],
                       "Access-Control-Request-Headers",
                       sizeof("Access-Control-Request-Headers") - 1))
        {
            ctx->request_headers = h[i].value;
        }
    }

    /*
     * Answered for a client's request only: a subrequest's answer would not
     * reach the browser, and auth_request would take its 204 for a pass. In a
     * subrequest standing for it, a preflight is an OPTIONS like any other.
     */

    *preflight = (r == r->main && r->method == NGX_HTTP_OPTIONS
                  && ctx->origin.data != NULL && request_method);
}


/* Answers a preflight from an allowed origin: 204, no key needed. */

static ngx_int_t
ngx_http_apikey_preflight(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   key, value;

    static ngx_str_t  allow_methods = ngx_string("Access-Control-Allow-Methods");
    static ngx_str_t  methods =
                  ngx_string("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    static ngx_str_t  allow_headers = ngx_string("Access-Control-Allow-Headers");
    static ngx_str_t  always_allowed = ngx_string("Authorization, Content-Type");
    static ngx_str_t  max_age = ngx_string("Access-Control-Max-Age");
    static ngx_str_t  ten_minutes = ngx_string("600");

    r->expect_tested = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    key = allow_methods;
    value = methods;

    if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
        goto failed;
    }

    value = always_allowed;

    if (ctx->request_headers.len
        && apikey_cors_header_list_is_echoable(
               (const char *) ctx->request_headers.data,
               ctx->request_headers.len))
    {
        value.len = always_allowed.len + 2 + ctx->request_headers.len;
        value.data = ngx_pnalloc(r->pool, value.len);
        if (value.data == NULL) {
            goto failed;
        }

        p = ngx_cpymem(value.data, always_allowed.data, always_allowed.len);
        p = ngx_cpymem(p, ", ", 2);
        ngx_memcpy(p, ctx->request_headers.data, ctx->request_headers.len);
    }

    key = allow_headers;

    if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
        goto failed;
    }

    key = max_age;
    value = ten_minutes;

    if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
        goto failed;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    /* as for a rejection: the response is complete, stop the phase engine */

    ngx_http_finalize_request(r, rc);
    return NGX_DONE;

failed:

    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    return NGX_DONE;
}


/*
 * The module is the CORS authority of the locations it guards: a grant the
 * upstream sent itself would bypass the workspace's list (or duplicate ours,
 * which browsers refuse), so it is dropped.
 */

static void
ngx_http_apikey_clear_upstream_grant(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0
            && ngx_http_apikey_header_is(&h[i], "Access-Control-Allow-Origin",
                   sizeof("Access-Control-Allow-Origin") - 1))
        {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "apikey: dropping the upstream's "
                           "Access-Control-Allow-Origin \"%V\"", &h[i].value);
            h[i].hash = 0;
        }
    }
}


static ngx_int_t
ngx_http_apikey_header_filter(ngx_http_request_t *r)
{
    ngx_str_t               key, value;
    ngx_http_apikey_ctx_t  *ctx;

    static ngx_str_t  allow_origin = ngx_string("Access-Control-Allow-Origin");
    static ngx_str_t  any_origin = ngx_string("*");
    static ngx_str_t  vary = ngx_string("Vary");
    static ngx_str_t  origin = ngx_string("Origin");
    static ngx_str_t  expose_headers =
                          ngx_string("Access-Control-Expose-Headers");
    static ngx_str_t  exposed =
        ngx_string("WWW-Authenticate, Retry-After, RateLimit, RateLimit-Policy");

    ctx = (r == r->main) ? ngx_http_apikey_decided(r) : NULL;

    if (ctx == NULL) {
        return ngx_http_apikey_next_header_filter(r);
    }

    if (ctx->rate_applied && ngx_http_apikey_rate_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_apikey_clear_upstream_grant(r);

    /*
     * For a known workspace the answer depends on Origin, granted or not:
     * without Vary a shared cache could hand the response it stored for a
     * request without Origin (no grant) to a browser of an allowed origin.
     */

    if (ctx->result.cors_vary || ctx->result.cors != APIKEY_CORS_NONE) {
        key = vary;
        value = origin;

        if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ctx->result.cors == APIKEY_CORS_NONE) {
        return ngx_http_apikey_next_header_filter(r);
    }

    key = allow_origin;
    value = (ctx->result.cors == APIKEY_CORS_ANY) ? any_origin : ctx->origin;

    if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    /* scripts may read why they were refused or throttled (not on preflights) */

    if (ctx->result.http_status != NGX_HTTP_NO_CONTENT) {
        key = expose_headers;
        value = exposed;

        if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_http_apikey_next_header_filter(r);
}


/* per-key rate limit (ngx_http_apikey_rate_limit.c holds the zone) */

static void
ngx_http_apikey_apply_rate_limit(ngx_http_request_t *r,
    ngx_http_apikey_loc_conf_t *alcf, ngx_http_apikey_ctx_t *ctx)
{
    ngx_http_apikey_ctx_t  *first;

    if (alcf->rate_zone == NULL) {
        return;
    }

    first = ctx->first;

    if (first->rate_applied) {
        /* spent by the request's decision before an internal redirect */
        ctx->rate = first->rate;
        ctx->rate_limit = first->rate_limit;
        ctx->rate_window = first->rate_window;

    } else {
        if (ctx->result.rate_limit) {
            ctx->rate_limit = ctx->result.rate_limit;
            ctx->rate_window = (time_t) ctx->result.rate_window;

        } else if (alcf->rate_default_limit) {
            ctx->rate_limit = alcf->rate_default_limit;
            ctx->rate_window = alcf->rate_default_window;

        } else {
            return;
        }

        /* its warning is about the zone: no request in it (nor a key) */

        ngx_http_apikey_rate_limit_check(alcf->rate_zone,
                                         ctx->presented.hash,
                                         ctx->rate_limit,
                                         ctx->rate_window, &ctx->rate,
                                         ngx_cycle->log);

        if (first != ctx) {
            first->rate = ctx->rate;
            first->rate_limit = ctx->rate_limit;
            first->rate_window = ctx->rate_window;
            first->rate_applied = 1;
        }
    }

    ctx->rate_applied = 1;

    if (!ctx->rate.allowed) {
        ctx->result.code = apikey_code_rate_limited();
        ctx->result.http_status = NGX_HTTP_TOO_MANY_REQUESTS;
        ctx->result.message.data = NULL;
        ctx->result.message.len = 0;
    }
}


/*
 * The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers):
 *   RateLimit-Policy: "apikey";q=<limit>;w=<window>
 *   RateLimit: "apikey";r=<remaining>;t=<seconds until the budget is full>
 */

static ngx_int_t
ngx_http_apikey_rate_headers(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx)
{
    ngx_str_t  key, value;

    static ngx_str_t  policy = ngx_string("RateLimit-Policy");
    static ngx_str_t  state = ngx_string("RateLimit");

    value.data = ngx_pnalloc(r->pool,
                             sizeof("\"apikey\";q=;w=") + 2 * NGX_INT_T_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "\"apikey\";q=%ui;w=%T",
                            ctx->rate_limit, ctx->rate_window)
                - value.data;
    key = policy;

    if (ngx_http_apikey_add_header(r, &key, &value, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    value.data = ngx_pnalloc(r->pool,
                             sizeof("\"apikey\";r=;t=") + 2 * NGX_INT_T_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "\"apikey\";r=%ui;t=%T",
                            ctx->rate.remaining, ctx->rate.reset)
                - value.data;
    key = state;

    return ngx_http_apikey_add_header(r, &key, &value, NULL);
}


/*
 * The value of "apikey_workspace" or "apikey_entity". A lone variable is
 * taken as it is, as ngx_http_complex_value() would copy it: a variable that
 * is not found (or fails) is the empty string. Its memory lives as long as
 * the request, as the copy would.
 */

static ngx_int_t
ngx_http_apikey_value(ngx_http_request_t *r, ngx_http_apikey_value_t *val,
    ngx_str_t *value)
{
    ngx_http_variable_value_t  *vv;

    if (val->index == NGX_ERROR) {
        return ngx_http_complex_value(r, &val->cv, value);
    }

    vv = ngx_http_get_flushed_variable(r, val->index);

    if (vv == NULL || vv->not_found) {
        value->len = 0;
        value->data = (u_char *) "";
        return NGX_OK;
    }

    value->len = vv->len;
    value->data = vv->data;

    return NGX_OK;
}


/*
 * A new context, set as the request's. After an internal redirect the
 * request's first one is found through its pool cleanup, and this one takes
 * the key presented from it; else this one is the first.
 */

static ngx_http_apikey_ctx_t *
ngx_http_apikey_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t     *cln;
    ngx_http_apikey_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_apikey_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->first = ngx_http_apikey_first_ctx(r);

    if (ctx->first) {
        ctx->presented = ctx->first->presented;
        ctx->presented_set = ctx->first->presented_set;

    } else {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NULL;
        }

        cln->handler = ngx_http_apikey_first_ctx_cleanup;
        cln->data = ctx;
        ctx->first = ctx;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_apikey_module);

    return ctx;
}


/*
 * The first context of a request whose contexts an internal redirect (or a
 * filter's error response, ngx_http_filter_finalize_request) has cleared,
 * else NULL: before that it is the request's context.
 */

static ngx_http_apikey_ctx_t *
ngx_http_apikey_first_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    if (!r->internal && !r->filter_finalize) {
        return NULL;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_apikey_first_ctx_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


/* Marks the request's first context (it holds nothing to release). */

static void
ngx_http_apikey_first_ctx_cleanup(void *data)
{
}


/*
 * The request's context once the access phase has decided, else NULL. In a
 * location without "apikey" that a redirect led to, the latest decision's:
 * not for a subrequest, whose pool is its main request's, nor before a
 * location with "apikey" has decided (its rewrite phase's "if" and "set").
 */

static ngx_http_apikey_ctx_t *
ngx_http_apikey_decided(ngx_http_request_t *r)
{
    ngx_http_apikey_ctx_t       *ctx;
    ngx_http_apikey_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_apikey_module);

    if (ctx == NULL && r == r->main) {

        /* a location with "apikey" decides for itself, later (access phase) */

        alcf = ngx_http_get_module_loc_conf(r, ngx_http_apikey_module);

        if (!alcf->enable) {
            ctx = ngx_http_apikey_first_ctx(r);
            ctx = ctx ? ctx->latest : NULL;
        }
    }

    return (ctx && ctx->decided) ? ctx : NULL;
}


static void *
ngx_http_apikey_alloc(void *pool, size_t size)
{
    return ngx_pnalloc(pool, size);
}


/* The connection's log without the request line, and the line with keys cut. */

static ngx_log_t *
ngx_http_apikey_request_log(ngx_http_request_t *r, ngx_http_apikey_log_t *safe)
{
    u_char  *p;

    safe->log = *r->connection->log;
    safe->ctx = *(ngx_http_log_ctx_t *) safe->log.data;
    safe->ctx.request = NULL;
    safe->ctx.current_request = NULL;
    safe->log.data = &safe->ctx;

    ngx_str_null(&safe->request);

    p = ngx_pnalloc(r->pool, r->main->request_line.len);
    if (p != NULL) {
        ngx_memcpy(p, r->main->request_line.data, r->main->request_line.len);
        safe->request.len = apikey_cut_keys((char *) p,
                                            r->main->request_line.len);
        safe->request.data = p;
    }

    return &safe->log;
}


static void
ngx_http_apikey_log_unavailable(ngx_http_request_t *r,
    ngx_http_apikey_main_conf_t *amcf, ngx_http_apikey_ctx_t *ctx)
{
    time_t                  now;
    const char             *reason;
    ngx_log_t              *log;
    ngx_http_apikey_log_t   safe;

    reason = ctx->result.error ? ctx->result.error : "unknown error";

    if (amcf->reader == NULL && amcf->open_error[0] != '\0') {
        reason = (const char *) amcf->open_error;
    }

    now = ngx_time();

    /*
     * No snapshot open: why was already logged at "error" when opening it
     * failed (ngx_http_apikey_log_open_error, once a minute at most), so
     * each 503 is only an "info" line; one error per problem, not two.
     */

    if ((amcf->unavailable_reason == reason
         && now - amcf->unavailable_logged < NGX_HTTP_APIKEY_LOG_REPEAT)
        || (amcf->reader == NULL && amcf->open_error[0] != '\0'))
    {
        if (r->connection->log->log_level >= NGX_LOG_INFO) {
            log = ngx_http_apikey_request_log(r, &safe);

            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "apikey: rejected with 503 snapshot_unavailable, "
                          "request: \"%V\"", &safe.request);
        }

        return;
    }

    amcf->unavailable_reason = reason;
    amcf->unavailable_logged = now;

    log = ngx_http_apikey_request_log(r, &safe);

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "apikey: answering 503 snapshot_unavailable, snapshot "
                  "\"%V\": %s (logged at most once a minute), request: \"%V\"",
                  &amcf->snapshot, reason, &safe.request);
}


static ngx_int_t
ngx_http_apikey_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                 *p;
    size_t                  len;
    const char             *s;
    ngx_http_apikey_ctx_t  *ctx;

    /*
     * A subrequest's own decision if it was made in a location with "apikey",
     * else its main request's, which admitted it
     */

    ctx = ngx_http_apikey_decided(r);

    if (ctx == NULL && r != r->main) {
        ctx = ngx_http_apikey_decided(r->main);
    }

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_APIKEY_VAR_ID:
        if (!ctx->result.key_found) {
            goto not_found;
        }

        p = ngx_pnalloc(r->pool, APIKEY_UUID_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        apikey_format_uuid(ctx->result.key_id, (char *) p);
        len = APIKEY_UUID_LEN;
        break;

    case NGX_HTTP_APIKEY_VAR_WORKSPACE_ID:
        if (!ctx->result.key_found) {
            goto not_found;
        }

        p = ngx_pnalloc(r->pool, APIKEY_UUID_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        apikey_format_uuid(ctx->result.workspace_id, (char *) p);
        len = APIKEY_UUID_LEN;
        break;

    case NGX_HTTP_APIKEY_VAR_KEY_PREFIX:
        if (!ctx->result.key_found) {
            goto not_found;
        }

        p = (u_char *) ctx->result.key_prefix;
        len = APIKEY_PREFIX_LEN;
        break;

    case NGX_HTTP_APIKEY_VAR_PERMISSION:
        if (!ctx->result.key_found || ctx->result.permission == NULL) {
            goto not_found;
        }

        s = ctx->result.permission;
        p = (u_char *) s;
        len = ngx_strlen(s);
        break;

    case NGX_HTTP_APIKEY_VAR_RESULT:
        p = (u_char *) apikey_code_name(ctx->result.code);
        len = apikey_code_name_len(ctx->result.code);
        break;

    case NGX_HTTP_APIKEY_VAR_GENERATION:
        if (ctx->result.generation == 0) {
            /* no snapshot was read for this request */
            goto not_found;
        }

        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        len = ngx_sprintf(p, "%uL", (uint64_t) ctx->result.generation) - p;
        break;

    case NGX_HTTP_APIKEY_VAR_ENTITY:
        if (!ctx->entity_set) {
            goto not_found;
        }

        p = ctx->entity.data;
        len = ctx->entity.len;
        break;

    case NGX_HTTP_APIKEY_VAR_PUBLIC:
        if (!ctx->result.is_public) {
            goto not_found;
        }

        p = (u_char *) "1";
        len = 1;
        break;

    case NGX_HTTP_APIKEY_VAR_EXPAND:
        p = (u_char *) ctx->result.expand.data;
        len = ctx->result.expand.len;
        break;

    case NGX_HTTP_APIKEY_VAR_FIELDS:
        p = (u_char *) ctx->result.fields.data;
        len = ctx->result.fields.len;
        break;

    case NGX_HTTP_APIKEY_VAR_HIDDEN_COLUMNS:
        p = (u_char *) ctx->result.hidden_columns.data;
        len = ctx->result.hidden_columns.len;
        break;

    default:
        goto not_found;
    }

    v->len = len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;

not_found:

    v->not_found = 1;
    return NGX_OK;
}


/* the snapshot, per worker */

static ngx_int_t
ngx_http_apikey_open(ngx_http_apikey_main_conf_t *amcf, ngx_log_t *log)
{
    int               dead;
    ngx_uint_t        reopening;
    ngx_file_info_t   fi;
    char              err[NGX_HTTP_APIKEY_ERR_SIZE];

    /*
     * An environment already open is closed first, never after opening the
     * new one: LMDB forbids two environments on the same files in one
     * process (closing one drops the process's fcntl() locks on lock.mdb
     * and clears every reader slot of this pid, including the other
     * environment's). Until the new one opens, requests get 503.
     */

    reopening = (amcf->reader != NULL);

    if (reopening) {
        apikey_reader_close(amcf->reader);
        amcf->reader = NULL;
    }

    /*
     * The identity of data.mdb is taken before opening: if the file is
     * replaced in between, the next check sees a different inode and opens
     * again, instead of missing the replacement for good.
     */

    ngx_memzero(&fi, sizeof(ngx_file_info_t));

    if (ngx_file_info(amcf->data_file.data, &fi) == NGX_FILE_ERROR) {
        fi.st_dev = 0;
        fi.st_ino = 0;
    }

    err[0] = '\0';

    amcf->reader = apikey_reader_open((const char *) amcf->snapshot.data,
                                      err, sizeof(err));

    if (amcf->reader == NULL) {
        ngx_http_apikey_log_open_error(amcf, log, NGX_LOG_ERR,
                                       "answering 503 and retrying every "
                                       "second", err);
        return NGX_ERROR;
    }

    /* frees the reader slots a crashed predecessor left in lock.mdb */

    dead = apikey_reader_check(amcf->reader);

    if (dead > 0) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "apikey: cleared %d stale reader slot(s) of snapshot "
                      "\"%V\"", dead, &amcf->snapshot);
    }

    amcf->dev = fi.st_dev;
    amcf->ino = fi.st_ino;
    amcf->reopen = 0;

    if (reopening || amcf->open_error[0] != '\0') {
        ngx_log_error(NGX_LOG_NOTICE, log, 0, "apikey: snapshot \"%V\" %s",
                      &amcf->snapshot, reopening ? "reopened" : "opened");
    }

    amcf->open_error[0] = '\0';
    amcf->open_error_logged = 0;

    return NGX_OK;
}


static void
ngx_http_apikey_log_open_error(ngx_http_apikey_main_conf_t *amcf,
    ngx_log_t *log, ngx_uint_t level, const char *consequence, const char *err)
{
    time_t  now;

    now = ngx_time();

    if (err[0] == '\0') {
        err = "unknown error";
    }

    if (ngx_strcmp(amcf->open_error, err) == 0
        && now - amcf->open_error_logged < NGX_HTTP_APIKEY_LOG_REPEAT)
    {
        return;
    }

    ngx_log_error(level, log, 0, "apikey: %s; %s", err, consequence);

    (void) ngx_cpystrn(amcf->open_error, (u_char *) err,
                       NGX_HTTP_APIKEY_ERR_SIZE);
    amcf->open_error_logged = now;
}


/*
 * Every second: open the snapshot while there is none, and otherwise check
 * that the open one is still the one at the configured path. apikeyd
 * publishes in place (an LMDB write transaction), so normally this finds
 * nothing to do; but if the snapshot was deleted and created anew, or a
 * view failed (say, a format upgrade), a worker would otherwise keep
 * answering from an orphaned file forever.
 */

static void
ngx_http_apikey_watch_handler(ngx_event_t *ev)
{
    u_char                       *p;
    ngx_err_t                     err;
    ngx_file_info_t               fi;
    ngx_http_apikey_main_conf_t  *amcf;
    u_char                        msg[NGX_HTTP_APIKEY_ERR_SIZE];

    amcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (amcf->reader == NULL || amcf->reopen) {
        (void) ngx_http_apikey_open(amcf, ev->log);

    } else if (ngx_file_info(amcf->data_file.data, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        p = ngx_snprintf(msg, sizeof(msg) - 1, ngx_file_info_n " \"%V\" "
                         "failed: ", &amcf->data_file);
        p = ngx_strerror(err, p, msg + sizeof(msg) - 1 - p);
        *p = '\0';

        ngx_http_apikey_log_open_error(amcf, ev->log, NGX_LOG_WARN,
                                       "the snapshot is gone from its path: "
                                       "still serving the one opened before",
                                       (const char *) msg);

    } else if (fi.st_dev != amcf->dev || fi.st_ino != amcf->ino) {
        (void) ngx_http_apikey_open(amcf, ev->log);

    } else if (!apikey_reader_file_is_complete(amcf->reader)) {
        /*
         * data.mdb was truncated in place: the next lookup past its end
         * would kill this worker with SIGBUS. Reopening refuses it (503,
         * logged once) until a complete snapshot is back.
         */
        (void) ngx_http_apikey_open(amcf, ev->log);

    } else {
        amcf->open_error[0] = '\0';
    }

    ngx_add_timer(ev, NGX_HTTP_APIKEY_WATCH_INTERVAL);
}


static ngx_int_t
ngx_http_apikey_init_process(ngx_cycle_t *cycle)
{
    ngx_http_apikey_main_conf_t  *amcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        /* cache manager and loader serve no requests */
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_apikey_module);

    if (amcf == NULL || amcf->snapshot.len == 0) {
        return NGX_OK;
    }

    amcf->reader = NULL;
    amcf->reopen = 0;
    amcf->open_error[0] = '\0';
    amcf->open_error_logged = 0;
    amcf->unavailable_logged = 0;
    amcf->unavailable_reason = NULL;

    (void) ngx_http_apikey_open(amcf, cycle->log);

    ngx_memzero(&amcf->watch, sizeof(ngx_event_t));
    amcf->watch.handler = ngx_http_apikey_watch_handler;
    amcf->watch.data = amcf;
    amcf->watch.log = cycle->log;
    amcf->watch.cancelable = 1;

    ngx_add_timer(&amcf->watch, NGX_HTTP_APIKEY_WATCH_INTERVAL);

    if (ngx_http_apikey_usage_init_process(&amcf->usage, cycle) != NGX_OK) {
        /* requests are still decided; only last_used_at goes unreported */
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "apikey: usage reports are off in this worker");
    }

    return NGX_OK;
}


static void
ngx_http_apikey_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_apikey_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_apikey_module);

    if (amcf == NULL) {
        return;
    }

    if (amcf->watch.timer_set) {
        ngx_del_timer(&amcf->watch);
    }

    if (amcf->reader) {
        apikey_reader_close(amcf->reader);
        amcf->reader = NULL;
    }

    ngx_http_apikey_usage_exit_process(&amcf->usage);
}


/* configuration */

static ngx_int_t
ngx_http_apikey_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_apikey_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_apikey_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt          *h;
    ngx_http_apikey_main_conf_t  *amcf;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_apikey_handler;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);

    if (amcf->snapshot.len) {
        h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_apikey_post_read;

        h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_apikey_subrequest_handler;
    }

    /*
     * The counters and the snapshot's generation exist only with a snapshot:
     * a status location without one could only answer 404, which a scraper
     * reports as a target down, not as a configuration mistake.
     */

    if (amcf->status_line && amcf->snapshot.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"apikey_status\" has nothing to report: "
                      "\"apikey_snapshot\" is not set in the http block "
                      "in %V:%ui", &amcf->status_file, amcf->status_line);
        return NGX_ERROR;
    }

    if (amcf->snapshot.len
        && ngx_http_apikey_status_init_zone(cf, &amcf->counters) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_apikey_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_apikey_header_filter;

    return NGX_OK;
}


static void *
ngx_http_apikey_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_apikey_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_apikey_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     amcf->snapshot = { 0, NULL };
     *     amcf->data_file = { 0, NULL };
     *     amcf->reader = NULL;
     *     amcf->status_line = 0;
     *     amcf->rate_defaults = NULL;
     */

    ngx_http_apikey_usage_init_conf(&amcf->usage);

    return amcf;
}


static void *
ngx_http_apikey_create_srv_conf(ngx_conf_t *cf)
{
    /* has_apikey = 0: set by ngx_http_apikey_merge_loc_conf() */

    return ngx_pcalloc(cf->pool, sizeof(ngx_http_apikey_srv_conf_t));
}


static void *
ngx_http_apikey_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_apikey_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_apikey_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->workspace = NULL;
     *     conf->entity = NULL;
     *     conf->enable_file = { 0, NULL };
     *     conf->enable_line = 0;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->rate_zone = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_apikey_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_apikey_loc_conf_t *prev = parent;
    ngx_http_apikey_loc_conf_t *conf = child;

    ngx_http_apikey_srv_conf_t   *ascf;
    ngx_http_apikey_main_conf_t  *amcf;

    if (conf->enable == NGX_CONF_UNSET) {
        conf->enable = prev->enable;
        conf->enable_file = prev->enable_file;
        conf->enable_line = prev->enable_line;
    }

    ngx_conf_merge_value(conf->enable, prev->enable, 0);

    if (conf->workspace == NULL) {
        conf->workspace = prev->workspace;
    }

    if (conf->entity == NULL) {
        conf->entity = prev->entity;
    }

    if (!conf->rate_set) {
        conf->rate_zone = prev->rate_zone;
        conf->rate_default_limit = prev->rate_default_limit;
        conf->rate_default_window = prev->rate_default_window;
    }

    ngx_conf_merge_ptr_value(conf->rate_zone, prev->rate_zone, NULL);

    if (conf->rate_zone && conf->rate_zone->data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"apikey_rate_limit\" uses zone \"%V\" but no "
                           "\"apikey_rate_limit_zone\" declares it",
                           &conf->rate_zone->shm.name);
        return NGX_CONF_ERROR;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    /*
     * nginx merges the server{} level and each location with cf->ctx holding
     * the server's srv_conf: this marks the server the location is in.
     */

    ascf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_apikey_module);
    ascf->has_apikey = 1;

    if (conf->rate_zone && !ascf->rate_zones) {
        if (ascf->rate_zone == NULL) {
            ascf->rate_zone = conf->rate_zone;

        } else if (ascf->rate_zone != conf->rate_zone) {
            /* which one a request will use is known in its location only */
            ascf->rate_zone = NULL;
            ascf->rate_zones = 1;
        }
    }

    /*
     * All of http{} has been parsed by now, wherever apikey_snapshot
     * stands in it. Errors point at the "apikey on" they are about.
     */

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);

    if (amcf->snapshot.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"apikey\" is on but \"apikey_snapshot\" is not set "
                      "in the http block in %V:%ui",
                      &conf->enable_file, conf->enable_line);
        return NGX_CONF_ERROR;
    }

    if (conf->workspace == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"apikey\" is on but \"apikey_workspace\" is not set "
                      "for it (at this level or above) in %V:%ui",
                      &conf->enable_file, conf->enable_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_apikey_snapshot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_main_conf_t *amcf = conf;

    u_char          *p;
    ngx_err_t        err;
    ngx_str_t       *value, path;
    ngx_file_info_t  fi;

    if (amcf->snapshot.len) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive",
                           &path, &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* relative to the prefix (-p); the result is NUL-terminated */

    if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (path.len > 1 && path.data[path.len - 1] == '/') {
        path.len--;
    }

    amcf->snapshot.len = path.len;
    amcf->snapshot.data = ngx_pnalloc(cf->pool, path.len + 1);
    if (amcf->snapshot.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(amcf->snapshot.data, path.data, path.len + 1);

    /*
     * A path that exists and is no directory (or lies below a file) can never
     * hold a snapshot; a missing one is a cold start, before apikeyd's first
     * publish (503 until then). Other errors (EACCES for a user running
     * nginx -t who may not look) are left to the workers to report.
     */

    if (ngx_file_info(amcf->snapshot.data, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

        if (err == NGX_ENOTDIR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                               "invalid value \"%V\" in \"%V\" directive",
                               &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }

    } else if (!ngx_is_dir(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it is not a directory", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    amcf->data_file.len = path.len + sizeof("/data.mdb") - 1;
    amcf->data_file.data = ngx_pnalloc(cf->pool, amcf->data_file.len + 1);
    if (amcf->data_file.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(amcf->data_file.data, path.data, path.len);
    (void) ngx_cpystrn(p, (u_char *) "/data.mdb", sizeof("/data.mdb"));

    return NGX_CONF_OK;
}


static char *
ngx_http_apikey_enable(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_loc_conf_t *alcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_http_apikey_conf_where(cf, &alcf->enable_file,
                                      &alcf->enable_line);
}


static char *
ngx_http_apikey_set_value(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                         *value;
    ngx_http_apikey_value_t          **val;
    ngx_http_complex_value_t          *cv;
    ngx_http_compile_complex_value_t   ccv;

    val = (ngx_http_apikey_value_t **) (p + cmd->offset);

    if (*val != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty value in \"%V\" directive", &cmd->name);
        return NGX_CONF_ERROR;
    }

    *val = ngx_palloc(cf->pool, sizeof(ngx_http_apikey_value_t));
    if (*val == NULL) {
        return NGX_CONF_ERROR;
    }

    cv = &(*val)->cv;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_apikey_lone_variable(cf, &value[1], &(*val)->index)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /*
     * A constant workspace must be one apikeyd can publish: "org/slug" as its
     * admin API accepts them (shared/names.h, through apikey_capi.h). A value
     * with variables is known per request only.
     */

    if (cmd->offset == offsetof(ngx_http_apikey_loc_conf_t, workspace)
        && cv->lengths == NULL
        && !apikey_workspace_is_valid((const char *) value[1].data,
                                      value[1].len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be \"org/slug\", each 1-63 characters "
                           "of a-z, 0-9 and \"-\", starting and ending with "
                           "a letter or digit", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* so must a constant entity: a name its admin API accepts */

    if (cmd->offset == offsetof(ngx_http_apikey_loc_conf_t, entity)
        && cv->lengths == NULL
        && !apikey_entity_is_valid((const char *) value[1].data, value[1].len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be an entity name: 1-64 characters of "
                           "A-Z, a-z, 0-9 and \"_\", not starting with a "
                           "digit", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Sets *index to the index of the variable when `value` is exactly one,
 * "$name" or "${name}", and to NGX_ERROR when it is anything else (text,
 * several variables, or a capture such as $1, which is no variable).
 */

static ngx_int_t
ngx_http_apikey_lone_variable(ngx_conf_t *cf, ngx_str_t *value,
    ngx_int_t *index)
{
    u_char     *p, *last;
    ngx_str_t   name;

    *index = NGX_ERROR;

    p = value->data;
    last = p + value->len;

    if (value->len < 2 || *p++ != '$') {
        return NGX_OK;
    }

    if (*p == '{') {
        if (last[-1] != '}') {
            return NGX_OK;
        }

        p++;
        last--;
    }

    name.data = p;
    name.len = last - p;

    if (name.len == 0 || (*p >= '0' && *p <= '9')) {
        return NGX_OK;
    }

    for ( /* void */ ; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '_'))
        {
            return NGX_OK;
        }
    }

    /* compiling the value registered it: this only looks the index up */

    *index = ngx_http_get_variable_index(cf, &name);

    return (*index == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/* "apikey_status": the handler, and where it stands for nginx -t's checks */

static char *
ngx_http_apikey_status_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char                         *rv;
    ngx_http_apikey_main_conf_t  *amcf;

    rv = ngx_http_apikey_status(cf, cmd, conf);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);

    if (amcf->status_line) {
        return NGX_CONF_OK;
    }

    return ngx_http_apikey_conf_where(cf, &amcf->status_file,
                                      &amcf->status_line);
}


/*
 * Where the directive being parsed stands, for a message nginx -t gives
 * later: the file's name copied (an included file's does not outlive its
 * parsing) and the line.
 */

static char *
ngx_http_apikey_conf_where(ngx_conf_t *cf, ngx_str_t *file, ngx_uint_t *line)
{
    file->len = cf->conf_file->file.name.len;
    file->data = ngx_pstrdup(cf->pool, &cf->conf_file->file.name);
    if (file->data == NULL) {
        return NGX_CONF_ERROR;
    }

    *line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* Records the location's "default=" for its zone; refuses a different one. */

static char *
ngx_http_apikey_rate_default_check(ngx_conf_t *cf,
    ngx_http_apikey_loc_conf_t *alcf)
{
    ngx_uint_t                       i;
    ngx_http_apikey_main_conf_t     *amcf;
    ngx_http_apikey_rate_default_t  *d;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);

    if (amcf->rate_defaults == NULL) {
        amcf->rate_defaults = ngx_array_create(cf->pool, 4,
                                      sizeof(ngx_http_apikey_rate_default_t));
        if (amcf->rate_defaults == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    d = amcf->rate_defaults->elts;

    for (i = 0; i < amcf->rate_defaults->nelts; i++) {
        if (d[i].zone != alcf->rate_zone) {
            continue;
        }

        if (d[i].limit == alcf->rate_default_limit
            && d[i].window == alcf->rate_default_window)
        {
            return NGX_CONF_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" has default=%ui/%Ts in %V:%ui: a zone "
                           "keeps one state per key, so every \"default=\" "
                           "charging it must be the same (use another zone "
                           "for another default)",
                           &alcf->rate_zone->shm.name, d[i].limit,
                           d[i].window, &d[i].file, d[i].line);
        return NGX_CONF_ERROR;
    }

    d = ngx_array_push(amcf->rate_defaults);
    if (d == NULL) {
        return NGX_CONF_ERROR;
    }

    d->zone = alcf->rate_zone;
    d->limit = alcf->rate_default_limit;
    d->window = alcf->rate_default_window;

    return ngx_http_apikey_conf_where(cf, &d->file, &d->line);
}


/* apikey_rate_limit zone=name [default=N/window] | off */

static char *
ngx_http_apikey_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_loc_conf_t *alcf = conf;

    u_char     *slash;
    time_t      window;
    ngx_int_t   limit;
    ngx_str_t  *value, name, s;
    ngx_uint_t  i, zone_set, default_set;

    if (alcf->rate_set) {
        return "is duplicate";
    }

    alcf->rate_set = 1;
    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            return "takes no parameters after \"off\"";
        }

        alcf->rate_zone = NULL;
        return NGX_CONF_OK;
    }

    zone_set = 0;
    default_set = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            if (zone_set++) {
                goto duplicate;
            }

            name.data = value[i].data + 5;
            name.len = value[i].len - 5;

            if (name.len == 0) {
                goto invalid;
            }

            alcf->rate_zone = ngx_http_apikey_rate_limit_zone_ref(cf, &name);
            if (alcf->rate_zone == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "default=", 8) == 0) {
            if (default_set++) {
                goto duplicate;
            }

            s.data = value[i].data + 8;
            slash = (u_char *) ngx_strchr(s.data, '/');

            if (slash == NULL) {
                goto invalid;
            }

            limit = ngx_atoi(s.data, slash - s.data);

            s.data = slash + 1;
            s.len = value[i].data + value[i].len - s.data;
            window = ngx_parse_time(&s, 1);

            if (limit <= 0 || window == (time_t) NGX_ERROR || window <= 0) {
                goto invalid;
            }

            /* the admin API's bounds, which keep the limiter's arithmetic exact */

            if (limit > APIKEY_MAX_RATE_LIMIT
                || window > APIKEY_MAX_RATE_WINDOW)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" (a limit is 1 "
                                   "to %d requests in a window of 1s to 1d)",
                                   &value[i], APIKEY_MAX_RATE_LIMIT);
                return NGX_CONF_ERROR;
            }

            alcf->rate_default_limit = (ngx_uint_t) limit;
            alcf->rate_default_window = window;
            continue;
        }

        goto invalid;
    }

    if (alcf->rate_zone == NGX_CONF_UNSET_PTR || alcf->rate_zone == NULL) {
        return "needs \"zone=name\" (or \"off\")";
    }

    if (default_set) {
        return ngx_http_apikey_rate_default_check(cf, alcf);
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" (expected \"zone=name\", "
                       "\"default=requests/window\" such as default=100/60s, "
                       "or \"off\")", &value[i]);
    return NGX_CONF_ERROR;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"%V\"",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


/* for the module's other files (ngx_http_apikey_module.h) */

apikey_reader_t *
ngx_http_apikey_worker_reader(ngx_http_request_t *r)
{
    ngx_http_apikey_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_apikey_module);

    return amcf->reader;
}


ngx_shm_zone_t *
ngx_http_apikey_counters(ngx_http_request_t *r)
{
    ngx_http_apikey_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_apikey_module);

    return amcf->counters;
}
