/*
 * Key usage reports for last_used_at (see ngx_http_apikey_usage.h).
 */

#include "ngx_http_apikey_usage.h"
#include "apikey_capi.h"


/*
 * Keys remembered per worker between flushes (keys=N, rounded up to a power
 * of two; 24 bytes each); more are counted as dropped and reported on their
 * next use after the flush. The default holds 65536 distinct keys per interval
 * and worker, 1.5 MB per worker.
 */
#define NGX_HTTP_APIKEY_USAGE_KEYS      65536
#define NGX_HTTP_APIKEY_USAGE_MIN_KEYS  16
#define NGX_HTTP_APIKEY_USAGE_MAX_KEYS  (16 * 1024 * 1024)
#define NGX_HTTP_APIKEY_USAGE_PROBES    8

/* Fits a loopback datagram comfortably, and any Ethernet MTU. */
#define NGX_HTTP_APIKEY_USAGE_DATAGRAM  1400

#define NGX_HTTP_APIKEY_USAGE_HEADER    "apikey-usage 1\n"

/*
 * A report of many keys is many datagrams (28 keys each). Sent in one burst
 * they overflowed apikeyd's socket receive buffer, and the kernel dropped
 * the rest without a word: of 6,000 keys used in one interval 3,640 got a
 * last_used_at, and a key used once never gets one later. So a report sends
 * at most BURST datagrams (about 22 KB, a tenth of a default 208 KB buffer)
 * and goes on after PACE ms: 89,600 keys a second and worker, the default
 * keys=65536 in 0.73 s. A worker leaving sleeps between bursts, at most
 * STOP_WAIT ms when stopped (the master kills a worker that is not gone
 * after about 1.5 s of "nginx -s stop"), QUIT_WAIT ms on a reload.
 */
#define NGX_HTTP_APIKEY_USAGE_BURST      16
#define NGX_HTTP_APIKEY_USAGE_PACE       5
#define NGX_HTTP_APIKEY_USAGE_STOP_WAIT  500
#define NGX_HTTP_APIKEY_USAGE_QUIT_WAIT  3000


/*
 * 32 bytes: a slot never spans two cache lines, and a table of a power of
 * two slots is a whole number of 2 MB pages from 65536 keys on.
 */

struct ngx_http_apikey_usage_slot_s {
    time_t    used_at;                      /* 0: empty */
    u_char    id[APIKEY_UUID_BYTES];        /* as text only when sent */
    u_char    pad[32 - sizeof(time_t) - APIKEY_UUID_BYTES];
};

/* The table's pages: 2 MB ones where the kernel has them (see init_process). */
#define NGX_HTTP_APIKEY_USAGE_HUGE_PAGE  (2 * 1024 * 1024)


static ngx_int_t ngx_http_apikey_usage_flush(ngx_http_apikey_usage_t *usage,
    ngx_uint_t burst);
static void ngx_http_apikey_usage_send(ngx_http_apikey_usage_t *usage,
    u_char *buf, size_t len);
static void ngx_http_apikey_usage_flush_handler(ngx_event_t *ev);


char *
ngx_http_apikey_usage_report(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_usage_t  *usage;

    ngx_str_t   *value, s;
    ngx_url_t    u;
    ngx_int_t    interval, keys;
    ngx_uint_t   i, interval_set, keys_set;

    usage = (ngx_http_apikey_usage_t *) ((char *) conf + cmd->offset);

    if (usage->addr) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.no_resolve = 1;

    /* apikeyd's usage_listen is a UDP address: a unix socket would reach nobody */

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0 || u.no_port
        || u.addrs[0].sockaddr->sa_family == AF_UNIX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address \"%V\" in \"%V\" (expected an IP "
                           "address and port, such as 127.0.0.1:8089)",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    usage->addr = &u.addrs[0];

    interval_set = 0;
    keys_set = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0) {
            if (interval_set++) {
                goto duplicate;
            }

            s.data = value[i].data + 9;
            s.len = value[i].len - 9;
            interval = ngx_parse_time(&s, 0);

            if (interval == NGX_ERROR || interval < 100) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" in \"%V\" "
                                   "(expected interval=time of at least 100ms)",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            usage->interval = (ngx_msec_t) interval;
            continue;
        }

        if (ngx_strncmp(value[i].data, "keys=", 5) == 0) {
            if (keys_set++) {
                goto duplicate;
            }

            keys = ngx_atoi(value[i].data + 5, value[i].len - 5);

            if (keys == NGX_ERROR || keys < NGX_HTTP_APIKEY_USAGE_MIN_KEYS
                || keys > NGX_HTTP_APIKEY_USAGE_MAX_KEYS)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" in \"%V\" "
                                   "(expected keys=number from %d to %d)",
                                   &value[i], &cmd->name,
                                   NGX_HTTP_APIKEY_USAGE_MIN_KEYS,
                                   NGX_HTTP_APIKEY_USAGE_MAX_KEYS);
                return NGX_CONF_ERROR;
            }

            /* a power of two: the probe sequence masks */
            for (usage->slots_n = NGX_HTTP_APIKEY_USAGE_MIN_KEYS;
                 usage->slots_n < (ngx_uint_t) keys;
                 usage->slots_n <<= 1)
            { /* void */ }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\" (expected "
                           "interval=time or keys=number)",
                           &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"%V\"",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


void
ngx_http_apikey_usage_init_conf(ngx_http_apikey_usage_t *usage)
{
    usage->interval = 1000;
    usage->slots_n = NGX_HTTP_APIKEY_USAGE_KEYS;
    usage->fd = (ngx_socket_t) -1;
}


ngx_int_t
ngx_http_apikey_usage_init_process(ngx_http_apikey_usage_t *usage,
    ngx_cycle_t *cycle)
{
    size_t        size;
    ngx_socket_t  fd;

    if (usage->addr == NULL) {
        return NGX_OK;
    }

    /*
     * Every request with a key writes a slot at random in a table of
     * megabytes: in 4 KB pages nearly each one is a TLB miss, whose page walk
     * the request waits for (docs/BENCHMARKS.md). A table of whole 2 MB pages
     * is aligned and advised for them; without THP it stays in 4 KB pages.
     */

    size = usage->slots_n * sizeof(ngx_http_apikey_usage_slot_t);

    usage->slots = ngx_pmemalign(cycle->pool, size,
                                 size >= NGX_HTTP_APIKEY_USAGE_HUGE_PAGE
                                 ? NGX_HTTP_APIKEY_USAGE_HUGE_PAGE
                                 : NGX_CPU_CACHE_LINE);
    if (usage->slots == NULL) {
        return NGX_ERROR;
    }

#if (NGX_LINUX && defined MADV_HUGEPAGE)
    if (size >= NGX_HTTP_APIKEY_USAGE_HUGE_PAGE) {
        (void) madvise(usage->slots, size, MADV_HUGEPAGE);
    }
#endif

    ngx_memzero(usage->slots, size);

    fd = ngx_socket(usage->addr->sockaddr->sa_family, SOCK_DGRAM, 0);

    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "apikey: usage report socket failed");
        return NGX_ERROR;
    }

    if (ngx_nonblocking(fd) == -1
        || connect(fd, usage->addr->sockaddr, usage->addr->socklen) == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "apikey: usage report socket to %V failed",
                      &usage->addr->name);
        ngx_close_socket(fd);
        return NGX_ERROR;
    }

    usage->fd = fd;
    usage->log = cycle->log;

    usage->flush.handler = ngx_http_apikey_usage_flush_handler;
    usage->flush.data = usage;
    usage->flush.log = cycle->log;
    usage->flush.cancelable = 1;

    ngx_add_timer(&usage->flush, usage->interval);

    return NGX_OK;
}


void
ngx_http_apikey_usage_exit_process(ngx_http_apikey_usage_t *usage)
{
    ngx_msec_t  waited, wait;

    if (usage->fd == (ngx_socket_t) -1) {
        return;
    }

    /*
     * What this worker saw since the last tick is not lost on a reload: all
     * of it, from the table's start (a paced report under way has passed
     * slots used again since), paced as the timer paces it, then what is
     * left at once.
     */
    usage->next = 0;
    wait = ngx_terminate ? NGX_HTTP_APIKEY_USAGE_STOP_WAIT
                         : NGX_HTTP_APIKEY_USAGE_QUIT_WAIT;

    for (waited = 0; waited < wait; waited += NGX_HTTP_APIKEY_USAGE_PACE)
    {
        if (ngx_http_apikey_usage_flush(usage, NGX_HTTP_APIKEY_USAGE_BURST)
            != NGX_AGAIN)
        {
            break;
        }

        ngx_msleep(NGX_HTTP_APIKEY_USAGE_PACE);
    }

    if (usage->next) {
        (void) ngx_http_apikey_usage_flush(usage, 0);
    }

    ngx_close_socket(usage->fd);
    usage->fd = (ngx_socket_t) -1;
}


/* Where the probe for a key starts; it goes on with the following slots. */

static ngx_inline ngx_uint_t
ngx_http_apikey_usage_home(ngx_http_apikey_usage_t *usage, u_char *hash)
{
    return apikey_key_place(hash) & (usage->slots_n - 1);
}


void
ngx_http_apikey_usage_prefetch(ngx_http_apikey_usage_t *usage, u_char *hash)
{
    if (usage->slots != NULL) {
        __builtin_prefetch(
            &usage->slots[ngx_http_apikey_usage_home(usage, hash)], 1);
    }
}


void
ngx_http_apikey_usage_record(ngx_http_apikey_usage_t *usage, u_char *hash,
    u_char *id, time_t now)
{
    ngx_uint_t                     i, n;
    ngx_http_apikey_usage_slot_t  *slot;

    if (usage->slots == NULL) {
        return;
    }

    i = ngx_http_apikey_usage_home(usage, hash);

    for (n = 0; n < NGX_HTTP_APIKEY_USAGE_PROBES; n++, i++) {
        slot = &usage->slots[i & (usage->slots_n - 1)];

        if (slot->used_at == 0) {
            ngx_memcpy(slot->id, id, APIKEY_UUID_BYTES);
            slot->used_at = now;
            usage->used++;
            return;
        }

        if (ngx_memcmp(slot->id, id, APIKEY_UUID_BYTES) == 0) {
            slot->used_at = now;
            return;
        }
    }

    usage->dropped++;
}


static void
ngx_http_apikey_usage_flush_handler(ngx_event_t *ev)
{
    ngx_http_apikey_usage_t  *usage = ev->data;

    if (ngx_http_apikey_usage_flush(usage, NGX_HTTP_APIKEY_USAGE_BURST)
        == NGX_AGAIN)
    {
        /* the rest of the report shortly (exit_process sends it when leaving) */
        ngx_add_timer(ev, NGX_HTTP_APIKEY_USAGE_PACE);
        return;
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, usage->interval);
    }
}


/*
 * Sends the uses in the table from usage->next on, clearing their slots:
 * at most `burst` datagrams (0: no limit), then NGX_AGAIN with usage->next
 * where to go on. Uses recorded meanwhile into slots already passed wait
 * for the next report.
 */

static ngx_int_t
ngx_http_apikey_usage_flush(ngx_http_apikey_usage_t *usage, ngx_uint_t burst)
{
    u_char                        *p, *last;
    ngx_uint_t                     i, lines, sent;
    ngx_http_apikey_usage_slot_t  *slot;
    u_char                         buf[NGX_HTTP_APIKEY_USAGE_DATAGRAM];

    if (usage->used == 0) {
        usage->next = 0;
        return NGX_OK;
    }

    if (usage->dropped && usage->next == 0) {
        ngx_log_error(NGX_LOG_WARN, usage->log, 0,
                      "apikey: %ui key uses not recorded since the last usage "
                      "report (more than about %ui keys per interval in one "
                      "worker: raise apikey_usage_report keys=); they are "
                      "reported on their next use",
                      usage->dropped, usage->slots_n);
        usage->dropped = 0;
    }

    last = buf + sizeof(buf);
    p = ngx_cpymem(buf, NGX_HTTP_APIKEY_USAGE_HEADER,
                   sizeof(NGX_HTTP_APIKEY_USAGE_HEADER) - 1);
    lines = 0;
    sent = 0;

    for (i = usage->next; i < usage->slots_n; i++) {
        slot = &usage->slots[i];

        if (slot->used_at == 0) {
            continue;
        }

        if ((size_t) (last - p) < APIKEY_UUID_LEN + 2 + NGX_TIME_T_LEN) {
            ngx_http_apikey_usage_send(usage, buf, p - buf);
            p = buf + sizeof(NGX_HTTP_APIKEY_USAGE_HEADER) - 1;
            lines = 0;

            if (++sent == burst) {
                usage->next = i;
                return NGX_AGAIN;
            }
        }

        apikey_format_uuid(slot->id, (char *) p);
        p += APIKEY_UUID_LEN;
        p = ngx_sprintf(p, " %T\n", slot->used_at);
        lines++;

        slot->used_at = 0;
        usage->used--;
    }

    if (lines) {
        ngx_http_apikey_usage_send(usage, buf, p - buf);
    }

    usage->next = 0;

    return NGX_OK;
}


/*
 * Errors are not retried: apikeyd may be down, and the next use of each key
 * is reported again. But a datagram its closed port refused leaves the
 * error (ECONNREFUSED) on the socket, and the next send fails with it,
 * unsent: the first report to an apikeyd back up was lost, and with it the
 * keys used only then. That failed call cleared the error: send once more.
 */

static void
ngx_http_apikey_usage_send(ngx_http_apikey_usage_t *usage, u_char *buf,
    size_t len)
{
    if (send(usage->fd, buf, len, 0) == -1
        && ngx_socket_errno == NGX_ECONNREFUSED)
    {
        (void) send(usage->fd, buf, len, 0);
    }
}
