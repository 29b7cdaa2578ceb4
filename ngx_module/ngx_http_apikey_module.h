/*
 * What the module's main file shares with its other files.
 */

#ifndef NGX_HTTP_APIKEY_MODULE_H
#define NGX_HTTP_APIKEY_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "apikey_capi.h"


extern ngx_module_t  ngx_http_apikey_module;

/* This worker's snapshot reader (NULL while none is open). */
apikey_reader_t *ngx_http_apikey_worker_reader(ngx_http_request_t *r);

/* The shared decision counters (NULL without apikey_snapshot). */
ngx_shm_zone_t *ngx_http_apikey_counters(ngx_http_request_t *r);

#endif /* NGX_HTTP_APIKEY_MODULE_H */
