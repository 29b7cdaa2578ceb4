/*
 * Decision counters and the status handler (see ngx_http_apikey_status.h).
 *
 * One atomic counter per outcome code in a small shared zone: a request
 * costs one atomic add, no lock. The zone is kept across reloads, so the
 * counters only go up while nginx runs, as Prometheus counters must.
 */

#include "ngx_http_apikey_module.h"
#include "ngx_http_apikey_status.h"


#define NGX_HTTP_APIKEY_MAX_CODES  64


typedef struct {
    ngx_atomic_t   *counts;
} ngx_http_apikey_counters_t;


static ngx_int_t ngx_http_apikey_counters_init(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_apikey_status_handler(ngx_http_request_t *r);


ngx_int_t
ngx_http_apikey_status_init_zone(ngx_conf_t *cf, ngx_shm_zone_t **zone)
{
    ngx_str_t                    name = ngx_string("apikey_counters");
    ngx_http_apikey_counters_t  *counters;

    if (apikey_code_count() > NGX_HTTP_APIKEY_MAX_CODES) {
        return NGX_ERROR;
    }

    *zone = ngx_shared_memory_add(cf, &name, 8 * ngx_pagesize,
                                  &ngx_http_apikey_module);
    if (*zone == NULL) {
        return NGX_ERROR;
    }

    if ((*zone)->data == NULL) {
        counters = ngx_pcalloc(cf->pool, sizeof(ngx_http_apikey_counters_t));
        if (counters == NULL) {
            return NGX_ERROR;
        }

        (*zone)->init = ngx_http_apikey_counters_init;
        (*zone)->data = counters;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_apikey_counters_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_apikey_counters_t  *ocounters = data;

    ngx_slab_pool_t             *shpool;
    ngx_http_apikey_counters_t  *counters;

    counters = shm_zone->data;

    if (ocounters) {
        counters->counts = ocounters->counts;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        counters->counts = shpool->data;
        return NGX_OK;
    }

    counters->counts = ngx_slab_calloc(shpool, NGX_HTTP_APIKEY_MAX_CODES
                                               * sizeof(ngx_atomic_t));
    if (counters->counts == NULL) {
        return NGX_ERROR;
    }

    shpool->data = (void *) counters->counts;

    return NGX_OK;
}


void
ngx_http_apikey_status_count(ngx_shm_zone_t *zone, int code)
{
    ngx_http_apikey_counters_t  *counters;

    if (zone == NULL || code < 0 || code >= NGX_HTTP_APIKEY_MAX_CODES) {
        return;
    }

    counters = zone->data;
    (void) ngx_atomic_fetch_add(&counters->counts[code], 1);
}


char *
ngx_http_apikey_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_apikey_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_apikey_status_handler(ngx_http_request_t *r)
{
    int                          code, up;
    size_t                       len;
    int64_t                      published_ms, age_ms;
    uint64_t                     generation;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_chain_t                  out;
    ngx_time_t                  *tp;
    ngx_shm_zone_t              *zone;
    ngx_http_apikey_counters_t  *counters;

    static ngx_str_t  type = ngx_string("text/plain; version=0.0.4");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    zone = ngx_http_apikey_counters(r);

    if (zone == NULL) {
        /* no apikey_snapshot: there is nothing to report */
        return NGX_HTTP_NOT_FOUND;
    }

    counters = zone->data;

    up = (ngx_http_apikey_worker_reader(r) != NULL
          && apikey_reader_generation(ngx_http_apikey_worker_reader(r),
                                      &generation, &published_ms) == 0);

    len = 512 + (size_t) apikey_code_count() * (64 + NGX_ATOMIC_T_LEN) + 256;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last,
        "# HELP apikey_requests_total Requests decided by the apikey module, "
        "by outcome.\n# TYPE apikey_requests_total counter\n",
        sizeof("# HELP apikey_requests_total Requests decided by the apikey "
               "module, by outcome.\n# TYPE apikey_requests_total counter\n")
        - 1);

    for (code = 0; code < apikey_code_count(); code++) {
        b->last = ngx_sprintf(b->last,
                              "apikey_requests_total{code=\"%s\",status=\"%d\"} "
                              "%uA\n",
                              apikey_code_name(code),
                              apikey_code_http_status(code),
                              counters->counts[code]);
    }

    b->last = ngx_sprintf(b->last,
        "# HELP apikey_snapshot_up Whether this worker can read the snapshot.\n"
        "# TYPE apikey_snapshot_up gauge\n"
        "apikey_snapshot_up %d\n", up);

    if (up) {
        tp = ngx_timeofday();
        age_ms = (int64_t) tp->sec * 1000 + tp->msec - published_ms;

        if (age_ms < 0) {
            age_ms = 0;
        }

        b->last = ngx_sprintf(b->last,
            "# HELP apikey_snapshot_generation Generation of the newest "
            "snapshot apikeyd published.\n"
            "# TYPE apikey_snapshot_generation gauge\n"
            "apikey_snapshot_generation %uL\n"
            "# HELP apikey_snapshot_age_seconds Seconds since apikeyd last "
            "published the snapshot.\n"
            "# TYPE apikey_snapshot_age_seconds gauge\n"
            "apikey_snapshot_age_seconds %L.%03L\n",
            generation, age_ms / 1000, age_ms % 1000);
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = b->last - b->pos;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
