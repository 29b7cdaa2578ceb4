/*
 * Per-key rate limiting across all workers.
 *
 * GCRA (the generic cell rate algorithm): for a budget of `limit` requests
 * per `window`, each request moves the key's theoretical arrival time (TAT)
 * on by one emission interval T = window / limit; a request is refused when
 * that would put the TAT more than one window ahead of now. A fresh key can
 * spend its whole budget at once and then gets one request every T: smooth,
 * exact to the microsecond, and one 8-byte number of state per key. A limit
 * changed in the snapshot applies to the next request: T is computed from
 * the current record, never stored.
 *
 * State lives in a shared zone keyed by key id, in an rbtree with an LRU
 * queue, under the slab pool's mutex, as ngx_http_limit_req_module does. The
 * zone survives "nginx -s reload" (its init adopts the old zone's state).
 *
 * Every worker writes this zone, so the lock is held for the sweep, the
 * lookup and the update only (the answer's numbers are computed after), and
 * a state found moves to the head of the LRU queue only if it has not moved
 * for a second: a move writes the node, both its neighbours and the queue
 * head, cache lines another worker then has to fetch back. The queue is thus
 * in LRU order to within a second, all that eviction needs.
 */

#include "ngx_http_apikey_rate_limit.h"
#include "apikey_capi.h"


extern ngx_module_t  ngx_http_apikey_module;


typedef struct {
    u_char                        color;
    u_char                        len;
    u_short                       padding;
    uint32_t                      moved;     /* seconds, monotonic: last
                                                move to the queue head */
    ngx_queue_t                   queue;
    uint64_t                      tat;       /* microseconds, monotonic */
    u_char                        data[1];   /* the key id */
} ngx_http_apikey_rate_node_t;


typedef struct {
    ngx_rbtree_t                  rbtree;
    ngx_rbtree_node_t             sentinel;
    ngx_queue_t                   queue;     /* most recently used first */
} ngx_http_apikey_rate_shctx_t;


typedef struct {
    ngx_http_apikey_rate_shctx_t *sh;
    ngx_slab_pool_t              *shpool;
    time_t                        full_logged;   /* per worker */
    time_t                        evict_logged;  /* per worker */
} ngx_http_apikey_rate_ctx_t;


#define NGX_HTTP_APIKEY_USEC  1000000

/* a state moves to the LRU head at most once in this many seconds */
#define NGX_HTTP_APIKEY_RATE_REQUEUE  1


static ngx_int_t ngx_http_apikey_rate_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_apikey_rate_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_apikey_rate_node_t *ngx_http_apikey_rate_lookup(
    ngx_http_apikey_rate_ctx_t *ctx, ngx_uint_t hash, u_char *id, size_t len);
static ngx_uint_t ngx_http_apikey_rate_expire(ngx_http_apikey_rate_ctx_t *ctx,
    uint64_t now, ngx_uint_t force);
static void ngx_http_apikey_rate_log(time_t *logged, ngx_uint_t level,
    ngx_log_t *log, ngx_shm_zone_t *zone, const char *what);


char *
ngx_http_apikey_rate_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    u_char                      *p;
    ssize_t                      size;
    ngx_str_t                   *value, name, s;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_apikey_rate_ctx_t  *ctx;

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "zone=", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected \"zone=name:size\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data + 5;
    p = (u_char *) ngx_strchr(name.data, ':');

    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\", expected \"zone=name:size\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.len = p - name.data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (name.len == 0 || size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_apikey_rate_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_apikey_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "apikey_rate_limit_zone \"%V\" is duplicate",
                           &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_apikey_rate_init_zone;
    shm_zone->data = ctx;

    return NGX_CONF_OK;
}


ngx_shm_zone_t *
ngx_http_apikey_rate_limit_zone_ref(ngx_conf_t *cf, ngx_str_t *name)
{
    /* size 0: refers to the zone, whose directive may come later */
    return ngx_shared_memory_add(cf, name, 0, &ngx_http_apikey_module);
}


static ngx_int_t
ngx_http_apikey_rate_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_apikey_rate_ctx_t  *octx = data;

    size_t                       len;
    ngx_http_apikey_rate_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* reload: keep every key's state */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_apikey_rate_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_apikey_rate_insert);
    ngx_queue_init(&ctx->sh->queue);

    len = sizeof(" in apikey rate limit zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in apikey rate limit zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is handled (and logged) here, by evicting */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


void
ngx_http_apikey_rate_limit_check(ngx_shm_zone_t *zone, u_char *id, size_t len,
    ngx_uint_t limit, time_t window, ngx_http_apikey_rate_t *rate,
    ngx_log_t *log)
{
    size_t                        size;
    uint64_t                      now, window_us, interval, tat, wait;
    uint32_t                      hash, sec;
    ngx_uint_t                    allowed, evicted_limited;
    ngx_rbtree_node_t            *node;
    ngx_http_apikey_rate_ctx_t   *ctx;
    ngx_http_apikey_rate_node_t  *rn;

    ctx = zone->data;
    evicted_limited = 0;

    now = (uint64_t) ngx_current_msec * 1000;
    sec = (uint32_t) (now / NGX_HTTP_APIKEY_USEC);
    window_us = (uint64_t) window * NGX_HTTP_APIKEY_USEC;
    interval = window_us / limit;

    if (interval == 0) {
        interval = 1;
    }

    hash = apikey_id_hash(id);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* drop a state or two that has fully recovered: it means nothing now */
    ngx_http_apikey_rate_expire(ctx, now, 0);

    rn = ngx_http_apikey_rate_lookup(ctx, hash, id, len);

    if (rn) {
        if (sec - rn->moved >= NGX_HTTP_APIKEY_RATE_REQUEUE) {
            rn->moved = sec;
            ngx_queue_remove(&rn->queue);
            ngx_queue_insert_head(&ctx->sh->queue, &rn->queue);
        }

        tat = ngx_max(rn->tat, now);

    } else {
        size = offsetof(ngx_rbtree_node_t, color)
               + offsetof(ngx_http_apikey_rate_node_t, data)
               + len;

        node = ngx_slab_alloc_locked(ctx->shpool, size);

        if (node == NULL) {
            /* evicting a state still limiting is warned about below */
            evicted_limited = ngx_http_apikey_rate_expire(ctx, now, 1);
            node = ngx_slab_alloc_locked(ctx->shpool, size);
        }

        if (node == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);

            ngx_http_apikey_rate_log(&ctx->full_logged, NGX_LOG_ERR, log, zone,
                                     "cannot hold another key even after "
                                     "evicting; requests of new keys pass "
                                     "unlimited");

            rate->allowed = 1;
            rate->remaining = limit - 1;
            rate->reset = 0;
            rate->retry_after = 0;
            return;
        }

        node->key = hash;
        rn = (ngx_http_apikey_rate_node_t *) &node->color;
        rn->len = (u_char) len;
        rn->moved = sec;
        ngx_memcpy(rn->data, id, len);
        ngx_rbtree_insert(&ctx->sh->rbtree, node);
        ngx_queue_insert_head(&ctx->sh->queue, &rn->queue);

        tat = now;
        rn->tat = now;
    }

    allowed = (tat + interval - now <= window_us);

    if (allowed) {
        tat += interval;
        rn->tat = tat;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (allowed) {
        rate->allowed = 1;
        rate->remaining = (ngx_uint_t) ((window_us - (tat - now)) / interval);
        rate->retry_after = 0;

    } else {
        /* allowed again once tat + interval - window <= now */
        wait = tat + interval - window_us - now;

        rate->allowed = 0;
        rate->remaining = 0;
        /* whole seconds, never more than the true wait, at least 1 */
        rate->retry_after = ngx_max((time_t) (wait / NGX_HTTP_APIKEY_USEC), 1);
    }

    rate->reset = (time_t) ((tat - now + NGX_HTTP_APIKEY_USEC - 1)
                            / NGX_HTTP_APIKEY_USEC);

    if (evicted_limited) {
        /*
         * Evicting a key that is still limited restarts its budget: with a
         * zone too small for the keys in use (found under load: 400 keys
         * cycling through a 32k zone were all admitted, 3/60s
         * notwithstanding) limits stop applying without a word. Say so, so
         * the zone gets sized.
         */
        ngx_http_apikey_rate_log(&ctx->evict_logged, NGX_LOG_WARN, log, zone,
                                 "is full: evicted the state of a key still "
                                 "being limited, its budget restarts; make "
                                 "the zone larger");
    }
}


/* "apikey: rate limit zone "name" <what> (logged once a minute)": per worker */

static void
ngx_http_apikey_rate_log(time_t *logged, ngx_uint_t level, ngx_log_t *log,
    ngx_shm_zone_t *zone, const char *what)
{
    if (ngx_time() - *logged < 60) {
        return;
    }

    *logged = ngx_time();

    ngx_log_error(level, log, 0,
                  "apikey: rate limit zone \"%V\" %s (logged once a minute)",
                  &zone->shm.name, what);
}


static ngx_http_apikey_rate_node_t *
ngx_http_apikey_rate_lookup(ngx_http_apikey_rate_ctx_t *ctx, ngx_uint_t hash,
    u_char *id, size_t len)
{
    ngx_int_t                     rc;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_apikey_rate_node_t  *rn;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        rn = (ngx_http_apikey_rate_node_t *) &node->color;

        rc = ngx_memn2cmp(id, rn->data, len, (size_t) rn->len);

        if (rc == 0) {
            return rn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Removes states from the least recently used end: up to two that have
 * fully recovered (their TAT is past, so forgetting them changes nothing),
 * or, when `force`d by a full zone, the oldest ones whatever their state
 * (their keys start again with a full budget: the graceful degradation).
 * Returns how many of those were still limiting (TAT ahead of now).
 */

static ngx_uint_t
ngx_http_apikey_rate_expire(ngx_http_apikey_rate_ctx_t *ctx, uint64_t now,
    ngx_uint_t force)
{
    ngx_uint_t                    n, limited;
    ngx_queue_t                  *q;
    ngx_rbtree_node_t            *node;
    ngx_http_apikey_rate_node_t  *rn;

    limited = 0;

    for (n = 0; n < 3; n++) {

        if (ngx_queue_empty(&ctx->sh->queue)) {
            return limited;
        }

        q = ngx_queue_last(&ctx->sh->queue);
        rn = ngx_queue_data(q, ngx_http_apikey_rate_node_t, queue);

        if (!force && rn->tat > now) {
            return limited;
        }

        if (rn->tat > now) {
            limited++;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) rn - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&ctx->sh->rbtree, node);
        ngx_slab_free_locked(ctx->shpool, node);
    }

    return limited;
}


static void
ngx_http_apikey_rate_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t            **p;
    ngx_http_apikey_rate_node_t   *rn, *rnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            rn = (ngx_http_apikey_rate_node_t *) &node->color;
            rnt = (ngx_http_apikey_rate_node_t *) &temp->color;

            p = (ngx_memn2cmp(rn->data, rnt->data, rn->len, rnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}
