/*
 * Per-key rate limiting shared by all workers: GCRA state keyed by the key's
 * hash in a shared memory zone (a set-associative table, 32 bytes a state).
 */

#ifndef NGX_HTTP_APIKEY_RATE_LIMIT_H
#define NGX_HTTP_APIKEY_RATE_LIMIT_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct {
    ngx_uint_t   allowed;
    ngx_uint_t   remaining;     /* requests left right now */
    time_t       reset;         /* seconds until the full budget is back */
    time_t       retry_after;   /* when refused: whole seconds, at least 1 */
} ngx_http_apikey_rate_t;


/* "apikey_rate_limit_zone zone=name:size;" */
char *ngx_http_apikey_rate_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* Finds the zone named by "zone=name" (declared before or after). */
ngx_shm_zone_t *ngx_http_apikey_rate_limit_zone_ref(ngx_conf_t *cf,
    ngx_str_t *name);

/* Starts loading the lines the key's state may sit in (`hash`: as below). */
void ngx_http_apikey_rate_limit_prefetch(ngx_shm_zone_t *zone, u_char *hash);

/*
 * Spends one request of `limit` per `window` seconds for the key whose
 * SHA-256 is `hash` (APIKEY_HASH_BYTES; its first 16 bytes tell keys apart).
 * Never fails: a full zone evicts a state.
 */
void ngx_http_apikey_rate_limit_check(ngx_shm_zone_t *zone, u_char *hash,
    ngx_uint_t limit, time_t window, ngx_http_apikey_rate_t *rate,
    ngx_log_t *log);

#endif /* NGX_HTTP_APIKEY_RATE_LIMIT_H */
