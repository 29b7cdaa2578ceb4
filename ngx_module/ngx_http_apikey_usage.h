/*
 * Key usage reports for last_used_at: each worker remembers the latest use
 * of each key in a fixed table (no allocation, no syscall per request) and a
 * timer sends it to apikeyd as UDP datagrams on loopback:
 *
 *     apikey-usage 1\n
 *     <key uuid> <unix seconds>\n ...
 *
 * Loss only delays: apikeyd keeps the newest time it has seen per key, and
 * the next use is reported again. But a key used once may never be used
 * again, so a report is paced rather than sent in one burst the receiver's
 * socket buffer cannot hold, and a send is not lost to an old error.
 */

#ifndef NGX_HTTP_APIKEY_USAGE_H
#define NGX_HTTP_APIKEY_USAGE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct ngx_http_apikey_usage_slot_s  ngx_http_apikey_usage_slot_t;

typedef struct {
    /* configuration */
    ngx_addr_t                     *addr;        /* NULL: no reports */
    ngx_msec_t                      interval;
    ngx_uint_t                      slots_n;     /* keys=, a power of two */

    /* per worker */
    ngx_socket_t                    fd;
    ngx_http_apikey_usage_slot_t   *slots;
    ngx_uint_t                      used;        /* slots holding a use */
    ngx_uint_t                      next;        /* where a paced report goes
                                                    on; 0: none under way */
    ngx_uint_t                      dropped;     /* table full since last flush */
    ngx_event_t                     flush;
    ngx_log_t                      *log;
} ngx_http_apikey_usage_t;


/* "apikey_usage_report address [interval=time] [keys=number];" (http) */
char *ngx_http_apikey_usage_report(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

void ngx_http_apikey_usage_init_conf(ngx_http_apikey_usage_t *usage);
ngx_int_t ngx_http_apikey_usage_init_process(ngx_http_apikey_usage_t *usage,
    ngx_cycle_t *cycle);
void ngx_http_apikey_usage_exit_process(ngx_http_apikey_usage_t *usage);

/*
 * Starts loading the slot where ngx_http_apikey_usage_record() will look for
 * the key whose SHA-256 is `hash`: a cache miss that nginx's work until the
 * access phase then overlaps.
 */
void ngx_http_apikey_usage_prefetch(ngx_http_apikey_usage_t *usage,
    u_char *hash);

/*
 * Remembers that the key `id` (APIKEY_UUID_BYTES raw bytes), whose SHA-256 is
 * `hash` (its place in the table), was used at `now`.
 */
void ngx_http_apikey_usage_record(ngx_http_apikey_usage_t *usage,
    u_char *hash, u_char *id, time_t now);

#endif /* NGX_HTTP_APIKEY_USAGE_H */
