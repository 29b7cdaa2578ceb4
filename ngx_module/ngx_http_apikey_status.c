/*
 * Decision counters and the status handler (see ngx_http_apikey_status.h).
 *
 * One atomic counter per outcome code in a small shared zone: a request
 * costs one atomic add, no lock. The zone is kept across reloads, so the
 * counters only go up while nginx runs, as Prometheus counters must.
 *
 * The counters are sharded: one row per worker slot (ngx_worker modulo
 * NGX_HTTP_APIKEY_COUNTER_ROWS), each row on cache lines of its own, and the
 * status handler sums the rows. With one shared row every request of every
 * worker wrote the same cache line, which then bounced between the cores.
 * The add stays atomic: after a reload the old and the new worker of a slot
 * share its row for a while, and beyond NGX_HTTP_APIKEY_COUNTER_ROWS workers
 * rows are shared too; only the contention is gone.
 */

#include "ngx_http_apikey_module.h"
#include "ngx_http_apikey_status.h"


#define NGX_HTTP_APIKEY_MAX_CODES     64
#define NGX_HTTP_APIKEY_COUNTER_ROWS  32      /* a power of two */


/*
 * 64 counters of 4 or 8 bytes: a row is a multiple of 128 bytes (two cache
 * lines, what adjacent-line prefetch pulls in together), and the rows start
 * on a page (ngx_slab_calloc() gives whole pages for blocks this large), so
 * no two rows share a cache line.
 */

typedef struct {
    ngx_atomic_t                    counts[NGX_HTTP_APIKEY_MAX_CODES];
} ngx_http_apikey_counter_row_t;


typedef struct {
    ngx_http_apikey_counter_row_t  *rows;     /* NGX_HTTP_APIKEY_COUNTER_ROWS */
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

    /* the rows, and room for the slab allocator's own pages */

    *zone = ngx_shared_memory_add(cf, &name,
                                  NGX_HTTP_APIKEY_COUNTER_ROWS
                                  * sizeof(ngx_http_apikey_counter_row_t)
                                  + 8 * ngx_pagesize,
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
        counters->rows = ocounters->rows;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        counters->rows = shpool->data;
        return NGX_OK;
    }

    counters->rows = ngx_slab_calloc(shpool, NGX_HTTP_APIKEY_COUNTER_ROWS
                                         * sizeof(ngx_http_apikey_counter_row_t));
    if (counters->rows == NULL) {
        return NGX_ERROR;
    }

    shpool->data = counters->rows;

    return NGX_OK;
}


void
ngx_http_apikey_status_count(ngx_shm_zone_t *zone, int code)
{
    ngx_http_apikey_counters_t     *counters;
    ngx_http_apikey_counter_row_t  *row;

    if (zone == NULL || code < 0 || code >= NGX_HTTP_APIKEY_MAX_CODES) {
        return;
    }

    counters = zone->data;
    row = &counters->rows[ngx_worker & (NGX_HTTP_APIKEY_COUNTER_ROWS - 1)];

    (void) ngx_atomic_fetch_add(&row->counts[code], 1);
}


/* All workers' counts of outcome `code`. */

static ngx_atomic_uint_t
ngx_http_apikey_counters_sum(ngx_http_apikey_counters_t *counters, int code)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  sum;

    sum = 0;

    for (i = 0; i < NGX_HTTP_APIKEY_COUNTER_ROWS; i++) {
        sum += counters->rows[i].counts[code];
    }

    return sum;
}


char *
ngx_http_apikey_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_apikey_status_handler) {
        return "is duplicate";
    }

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
        /* no apikey_snapshot (nginx -t refuses that): nothing to report */
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
                              ngx_http_apikey_counters_sum(counters, code));
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
