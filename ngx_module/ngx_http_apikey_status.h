/*
 * Decision counters shared by all workers, and the "apikey_status" handler
 * that serves them with the snapshot's generation and age in the Prometheus
 * text format.
 */

#ifndef NGX_HTTP_APIKEY_STATUS_H
#define NGX_HTTP_APIKEY_STATUS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* Adds the shared counters zone (once per configuration). */
ngx_int_t ngx_http_apikey_status_init_zone(ngx_conf_t *cf,
    ngx_shm_zone_t **zone);

/* Counts one decision with outcome `code`. */
void ngx_http_apikey_status_count(ngx_shm_zone_t *zone, int code);

/* "apikey_status;" in a location */
char *ngx_http_apikey_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

#endif /* NGX_HTTP_APIKEY_STATUS_H */
