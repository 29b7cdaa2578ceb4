/*
 * Per-key rate limiting across all workers.
 *
 * GCRA (the generic cell rate algorithm): for a budget of `limit` requests
 * per `window`, each request moves the key's theoretical arrival time (TAT)
 * on by one emission interval T = window / limit; a request is refused when
 * that would put the TAT more than one window ahead of now. A fresh key can
 * spend its whole budget at once and then gets one request every T: smooth,
 * and one 8-byte number (the TAT) of state per key. Time is counted in
 * nanoseconds: in microseconds T was cut short at the API's extremes (10^9
 * a day: 86 µs for 86.4, a budget of 1,004,651,162; 10^9 a second: 1 µs, a
 * budget of 10^6). T is exact where the limit divides the window in
 * nanoseconds, else rounded down by under 1 ns: the budget then exceeds the
 * limit by less than one part in T (0.1 % at a million a second, nothing
 * below about 31,000 a second; rounded up instead, 7 a second would be a
 * budget of 6). Only beyond 5 * 10^8 a second is T 1 ns and the budget the
 * window's nanoseconds (10^9 a second for 6 * 10^8). A limit
 * changed in the snapshot applies to the next request: T is computed from
 * the current record; the state keeps the T it was last spent with only to
 * carry the key's spending over to a new one (see the check).
 *
 * The states live in a shared zone as a set-associative table: a key's
 * state can only sit in one set of NGX_HTTP_APIKEY_RATE_WAYS slots, chosen
 * by the key's hash, so a request reads and writes one 256-byte block
 * whatever the number of keys being limited. (A tree of states, as
 * limit_req keeps, costs a cache miss per level once many keys are limited
 * at once, and its nodes, rebalanced by every worker, are lines the other
 * workers have to fetch back.) The hash is known as soon as the request's
 * header is read, long before the key's record says its limit: the set's
 * lines are prefetched then (the post-read phase), and their miss overlaps
 * the snapshot entry's instead of stalling the check.
 *
 * A state whose TAT has passed has fully recovered and means nothing: its
 * slot is free, so nothing ever has to be swept. A key whose set holds no
 * free slot takes the place of the set's least recently used state, whose
 * key starts again with a full budget: the graceful degradation of a zone
 * too small, warned about.
 *
 * One lock (the zone's slab mutex) guards the table; it is held for the
 * scan and the update of one set only. The zone survives "nginx -s reload"
 * with the same size (its init adopts the old zone's table).
 */

#include "ngx_http_apikey_rate_limit.h"
#include "apikey_capi.h"


extern ngx_module_t  ngx_http_apikey_module;


typedef struct {
    u_char                        key[16];   /* the key's hash, its first
                                                16 bytes; zero: unused */
    uint64_t                      tat;       /* nanoseconds, monotonic;
                                                past: recovered, free */
    uint32_t                      used;      /* seconds, monotonic: last
                                                request, for eviction */
    float                         interval;  /* T (nanoseconds) the TAT's
                                                lead over now counts in */
} ngx_http_apikey_rate_state_t;


/* the slots a key's state may take: 8 of 32 bytes, four cache lines */
#define NGX_HTTP_APIKEY_RATE_WAYS  8
#define NGX_HTTP_APIKEY_RATE_SET                                              \
    (NGX_HTTP_APIKEY_RATE_WAYS * sizeof(ngx_http_apikey_rate_state_t))


typedef struct {
    ngx_uint_t                    sets;
    ngx_http_apikey_rate_state_t *states;    /* sets * WAYS, set-aligned */
} ngx_http_apikey_rate_shctx_t;


typedef struct {
    ngx_http_apikey_rate_shctx_t *sh;
    ngx_slab_pool_t              *shpool;
    time_t                        evict_logged;  /* per worker */
} ngx_http_apikey_rate_ctx_t;


#define NGX_HTTP_APIKEY_NSEC  1000000000


static ngx_int_t ngx_http_apikey_rate_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_inline ngx_http_apikey_rate_state_t *ngx_http_apikey_rate_set(
    ngx_http_apikey_rate_shctx_t *sh, u_char *hash);


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

    u_char                      *p;
    size_t                       size;
    ngx_http_apikey_rate_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* reload, the same size: keep every key's state */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    /*
     * Every free page of the zone in one block: the context in its first
     * set's place, then the sets (page-aligned, so no set straddles a line
     * or a page). Zeroed: an unused slot is all zeros, a recovered state. A
     * new zone is zeros already unless nginx was built to fill its pools
     * with junk; this pass is made once, when nginx creates the zone.
     */
    size = ctx->shpool->pfree << ngx_pagesize_shift;

    p = ngx_slab_alloc(ctx->shpool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(p, size);

    ctx->sh = (ngx_http_apikey_rate_shctx_t *) p;
    ctx->sh->states = (ngx_http_apikey_rate_state_t *)
                          (p + NGX_HTTP_APIKEY_RATE_SET);
    ctx->sh->sets = size / NGX_HTTP_APIKEY_RATE_SET - 1;

    ctx->shpool->data = ctx->sh;

    /* what the zone holds, for sizing it (and for t/36, which fills a set) */
    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "apikey: rate limit zone \"%V\" holds %ui states "
                  "in %ui sets of %ui", &shm_zone->shm.name,
                  ctx->sh->sets * NGX_HTTP_APIKEY_RATE_WAYS, ctx->sh->sets,
                  (ngx_uint_t) NGX_HTTP_APIKEY_RATE_WAYS);

    return NGX_OK;
}


/*
 * Which slot a key without a state in its set takes: a free one (recovered:
 * forgetting it changes nothing), else the least recently used state, and
 * of those the nearest to recovering.
 */

static ngx_inline ngx_uint_t
ngx_http_apikey_rate_evicts_before(ngx_http_apikey_rate_state_t *s,
    ngx_http_apikey_rate_state_t *victim, uint64_t now)
{
    if (victim->tat <= now) {
        return 0;
    }

    if (s->tat <= now) {
        return 1;
    }

    return s->used < victim->used
           || (s->used == victim->used && s->tat < victim->tat);
}


/*
 * A key whose limit changed since it last spent (its own, the workspace
 * default, the zone's default=: one for all its locations, nginx -t checks)
 * owes the requests it spent, not the
 * time they cost under the old limit: the TAT's lead over now is that many
 * old intervals, rescaled to the new one. Left in time, a limit shortened
 * from a day to a minute kept a spent key out for the rest of the day, one
 * raised left a spent key refused, one lowered below what the key had spent
 * still admitted it. The lead never exceeds one window: a key can owe no
 * more than its whole budget. Only on a change: the usual request compares
 * a float.
 */

static ngx_inline void
ngx_http_apikey_rate_carry_over(ngx_http_apikey_rate_state_t *state,
    uint64_t now, float interval, uint64_t window_ns)
{
    double  lead;

    if (state->interval == interval && state->tat - now <= window_ns) {
        return;
    }

    lead = (double) (state->tat - now);

    if (state->interval > 0) {          /* set with every TAT: a guard */
        lead = lead * interval / state->interval;
    }

    state->tat = now + (uint64_t) ngx_min(lead, (double) window_ns);
}


/* the key's place (uniform: SHA-256), scaled to the number of sets */

static ngx_inline ngx_http_apikey_rate_state_t *
ngx_http_apikey_rate_set(ngx_http_apikey_rate_shctx_t *sh, u_char *hash)
{
    return sh->states
           + (((uint64_t) apikey_key_place(hash) * sh->sets) >> 32)
             * NGX_HTTP_APIKEY_RATE_WAYS;
}


void
ngx_http_apikey_rate_limit_prefetch(ngx_shm_zone_t *zone, u_char *hash)
{
    u_char                        *line;
    ngx_http_apikey_rate_ctx_t    *ctx;
    ngx_http_apikey_rate_state_t  *set;

    ctx = zone->data;
    set = ngx_http_apikey_rate_set(ctx->sh, hash);

    for (line = (u_char *) set;
         line < (u_char *) (set + NGX_HTTP_APIKEY_RATE_WAYS);
         line += ngx_cacheline_size)
    {
        __builtin_prefetch(line, 1);
    }
}


void
ngx_http_apikey_rate_limit_check(ngx_shm_zone_t *zone, u_char *hash,
    ngx_uint_t limit, time_t window, ngx_http_apikey_rate_t *rate,
    ngx_log_t *log)
{
    float                          finterval;
    uint64_t                       now, window_ns, interval, tat, wait;
    uint32_t                       sec;
    ngx_uint_t                     i, allowed, evicted_limited;
    ngx_http_apikey_rate_ctx_t    *ctx;
    ngx_http_apikey_rate_state_t  *set, *state, *victim;

    ctx = zone->data;

    now = (uint64_t) ngx_current_msec * 1000000;
    sec = (uint32_t) (now / NGX_HTTP_APIKEY_NSEC);
    window_ns = (uint64_t) window * NGX_HTTP_APIKEY_NSEC;
    interval = window_ns / limit;

    if (interval == 0) {
        interval = 1;
    }

    finterval = (float) interval;

    set = ngx_http_apikey_rate_set(ctx->sh, hash);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    state = NULL;
    victim = set;

    for (i = 0; i < NGX_HTTP_APIKEY_RATE_WAYS; i++) {

        if (ngx_memcmp(set[i].key, hash, sizeof(set[i].key)) == 0) {
            state = &set[i];
            break;
        }

        if (ngx_http_apikey_rate_evicts_before(&set[i], victim, now)) {
            victim = &set[i];
        }
    }

    evicted_limited = 0;

    if (state == NULL) {
        /* a state still limiting is evicted only when the set is full */
        evicted_limited = (victim->tat > now);

        state = victim;
        ngx_memcpy(state->key, hash, sizeof(state->key));
        state->tat = now;
    }

    if (state->tat > now) {
        ngx_http_apikey_rate_carry_over(state, now, finterval, window_ns);
    }

    state->interval = finterval;

    tat = ngx_max(state->tat, now);

    allowed = (tat + interval - now <= window_ns);

    if (allowed) {
        tat += interval;
        state->tat = tat;
    }

    if (state->used != sec) {
        state->used = sec;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (allowed) {
        rate->allowed = 1;
        rate->remaining = (ngx_uint_t) ((window_ns - (tat - now)) / interval);

        /* T rounded down can leave room for more than the limit */
        if (rate->remaining >= limit) {
            rate->remaining = limit - 1;
        }

        rate->retry_after = 0;

    } else {
        /* allowed again once tat + interval - window <= now */
        wait = tat + interval - window_ns - now;

        rate->allowed = 0;
        rate->remaining = 0;
        /*
         * whole seconds, rounded up: a client that waits that long is
         * admitted (rounded down, it got another 429)
         */
        rate->retry_after = ngx_max((time_t) ((wait + NGX_HTTP_APIKEY_NSEC - 1)
                                              / NGX_HTTP_APIKEY_NSEC), 1);
    }

    rate->reset = (time_t) ((tat - now + NGX_HTTP_APIKEY_NSEC - 1)
                            / NGX_HTTP_APIKEY_NSEC);

    if (evicted_limited && ngx_time() - ctx->evict_logged >= 60) {
        /*
         * Evicting a key that is still limited restarts its budget: with a
         * zone too small for the keys in use (found under load: 400 keys
         * cycling through a 32k zone were all admitted, 3/60s
         * notwithstanding) limits stop applying without a word. Say so, once
         * a minute per worker, so the zone gets sized.
         */
        ctx->evict_logged = ngx_time();

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "apikey: rate limit zone \"%V\" is full: evicted the "
                      "state of a key still being limited, its budget "
                      "restarts; make the zone larger (logged once a minute)",
                      &zone->shm.name);
    }
}
