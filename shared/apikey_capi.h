/* The C interface the nginx module is written against (the glue stays plain C, like
 * ModSecurity-nginx over libmodsecurity). Every function is noexcept on the C++ side:
 * no exception ever crosses into nginx. apikey_authenticate() allocates nothing but
 * through the request's allocator and makes no syscall beyond LMDB's (none once the
 * map is in memory). */
#ifndef APIKEY_CAPI_H
#define APIKEY_CAPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define APIKEY_NOEXCEPT noexcept
extern "C" {
#else
#define APIKEY_NOEXCEPT
#endif

typedef struct apikey_reader_s apikey_reader_t;

/* Opens the snapshot at `dir`. Returns NULL and writes a message into `err` (always
 * NUL-terminated) when it is missing, unreadable, unpublished or of an unknown format. */
apikey_reader_t *apikey_reader_open(const char *dir, char *err,
                                    size_t err_size) APIKEY_NOEXCEPT;
void apikey_reader_close(apikey_reader_t *reader) APIKEY_NOEXCEPT;
/* Clears LMDB reader slots of dead processes; returns how many, -1 on error. */
int apikey_reader_check(apikey_reader_t *reader) APIKEY_NOEXCEPT;
/* 0 when the open snapshot's data.mdb was truncated after it was opened (reading past
 * its end would SIGBUS the worker): close it and reopen (which refuses it, 503). 1 else.
 * Costs an fstat(); for the once-a-second watch, not the request path. */
int apikey_reader_file_is_complete(apikey_reader_t *reader) APIKEY_NOEXCEPT;

typedef struct {
    const char *data;
    size_t len;
} apikey_str_t;

/* Allocates memory that lives as long as the request (nginx: the request pool); NULL
 * when it cannot. The only memory apikey_authenticate() takes: at most about three
 * times the query string plus the entity's defaults and hidden columns, in one block,
 * and a message of at most APIKEY_MAX_MESSAGE bytes for a query refusal. */
typedef void *(*apikey_alloc_pt)(void *ctx, size_t size);

#define APIKEY_HASH_BYTES 32 /* SHA-256 */

/* A request's key as presented: its Authorization header parsed, the key's shape and
 * checksum checked, the key hashed. */
typedef struct {
    int code; /* 0 (ok): `hash` is set; else the refusal's code (see apikey_code_name) */
    unsigned char hash[APIKEY_HASH_BYTES];
} apikey_presented_key_t;

/* Makes `key` from the Authorization header's value, and starts loading the key's entry
 * of the snapshot into the cache (`reader` may be NULL: no prefetch). Called as soon as
 * the header is read (nginx: the post-read phase), the entry's memory access, a cache
 * and TLB miss, then overlaps nginx's work until the access phase looks the key up. */
void apikey_present_key(apikey_reader_t *reader, const char *authorization, size_t len,
                        apikey_presented_key_t *key) APIKEY_NOEXCEPT;

typedef struct {
    apikey_str_t authorization; /* data NULL: the request has no Authorization header */
    /* apikey_present_key() of `authorization`, made earlier; NULL: made here. */
    const apikey_presented_key_t *presented;
    apikey_str_t workspace;     /* "org/slug" as the location computed it */
    apikey_str_t entity;        /* may be empty */
    apikey_str_t args;          /* the raw query string */
    apikey_str_t raw_path;      /* the path as sent, where it may differ from the one
                                   the location matched (see request_path.h); data
                                   NULL: no need to look */
    apikey_str_t origin;        /* data NULL: no Origin header */
    int mutating;  /* any method other than GET and HEAD */
    int preflight; /* OPTIONS with Origin and Access-Control-Request-Method */
    int64_t now;   /* unix seconds */
    apikey_alloc_pt alloc;
    void *alloc_ctx;
} apikey_request_t;

#define APIKEY_UUID_LEN 36   /* an id as text */
#define APIKEY_UUID_BYTES 16 /* an id as the snapshot holds it */

/* Where the module's tables (the rate-limit zone's sets, the usage table's slots) place
 * a key: the first 4 bytes of its SHA-256 (APIKEY_HASH_BYTES), known as soon as the key
 * is presented, before its record is read, so its place can start loading then. A key's
 * hash and its id never change apart: a table placing keys by hash may tell them apart
 * by id. */
static inline uint32_t apikey_key_place(const unsigned char *hash) {
    return (uint32_t)hash[0] | (uint32_t)hash[1] << 8 | (uint32_t)hash[2] << 16 |
           (uint32_t)hash[3] << 24;
}
#define APIKEY_PREFIX_LEN 12
#define APIKEY_MAX_MESSAGE 160

/* A rate limit's bounds, the same for a key's limit set through the admin API and for
 * nginx's "apikey_rate_limit ... default=": 1 to APIKEY_MAX_RATE_LIMIT requests in a
 * window of 1 to APIKEY_MAX_RATE_WINDOW seconds (a window in nanoseconds then fits
 * 64 bits many times over, and a limit the snapshot's 32 bits). */
#define APIKEY_MAX_RATE_LIMIT 1000000000
#define APIKEY_MAX_RATE_WINDOW 86400 /* one day */

enum {
    APIKEY_CORS_NONE = 0,   /* no grant: add no CORS headers */
    APIKEY_CORS_ANY = 1,    /* every origin is allowed: "*" */
    APIKEY_CORS_ORIGIN = 2  /* this origin is allowed: echo it, with Vary: Origin */
};

typedef struct {
    int code;        /* stable outcome code, see apikey_code_name() */
    int http_status; /* 200 (pass on), 204 (answer the preflight), 400, 401, 403, 503 */
    int key_found;   /* the key fields below are set */
    int is_public;   /* admitted without a key */
    int cors;        /* APIKEY_CORS_* */
    int cors_vary;   /* the answer depends on Origin: send Vary: Origin (known workspace) */
    /* Ids as raw bytes: apikey_format_uuid() makes the text, only when it is needed
     * (a variable is read, a report is sent), not for every request. */
    unsigned char key_id[APIKEY_UUID_BYTES];
    unsigned char workspace_id[APIKEY_UUID_BYTES];
    char key_prefix[APIKEY_PREFIX_LEN];
    const char *permission; /* "read_only" / "read_write", static storage */
    uint32_t rate_limit;    /* the key's resolved budget: rate_limit requests per */
    uint32_t rate_window;   /* rate_window seconds; 0 when the snapshot sets none */
    uint64_t generation;    /* of the snapshot the decision was made from; 0 if none */
    const char *error;      /* why the snapshot could not be read, static storage */
    /* Allocated with request->alloc; empty when there is nothing to say. Comma lists. */
    apikey_str_t expand;         /* effective ?expand, when admitted */
    apikey_str_t fields;         /* effective ?fields, when admitted; empty = all */
    apikey_str_t hidden_columns; /* the entity's hidden columns, when admitted */
    /* A query refusal's message naming the offender: printable ASCII, NOT escaped for
     * JSON (escape it, e.g. ngx_escape_json). data NULL: use apikey_code_message(). */
    apikey_str_t message;
} apikey_result_t;

/* `reader` may be NULL (no snapshot yet): the result is then 503. */
void apikey_authenticate(apikey_reader_t *reader, const apikey_request_t *request,
                         apikey_result_t *result) APIKEY_NOEXCEPT;

/* True for an Access-Control-Request-Headers value safe to echo in
 * Access-Control-Allow-Headers: header names, commas and spaces, bounded length. */
int apikey_cors_header_list_is_echoable(const char *list, size_t len) APIKEY_NOEXCEPT;

/* Generation and publication time (unix ms) of the newest snapshot; 0 on
 * success, -1 when no snapshot can be read. */
int apikey_reader_generation(apikey_reader_t *reader, uint64_t *generation,
                             int64_t *published_at_ms) APIKEY_NOEXCEPT;

/* Writes the APIKEY_UUID_LEN lowercase characters (no terminator) of the id whose
 * APIKEY_UUID_BYTES bytes are at `id`. */
void apikey_format_uuid(const unsigned char *id, char *out) APIKEY_NOEXCEPT;

/* The admin API's name rules (shared/names.h), for nginx -t to refuse a constant
 * apikey_workspace / apikey_entity that apikeyd could never have published, since
 * its admin API refuses them. 1 when `text` is
 * "org/slug" with an org and a slug apikeyd accepts, 0 else. */
int apikey_workspace_is_valid(const char *text, size_t len) APIKEY_NOEXCEPT;
/* 1 when `text` is an entity name apikeyd accepts ([A-Za-z_][A-Za-z0-9_]{0,63}), for a
 * constant apikey_entity; 0 else. */
int apikey_entity_is_valid(const char *text, size_t len) APIKEY_NOEXCEPT;

/* Codes are 0 .. apikey_code_count() - 1. */
int apikey_code_count(void) APIKEY_NOEXCEPT;
int apikey_code_http_status(int code) APIKEY_NOEXCEPT;

/* The code of a request refused by the rate limiter (429). */
int apikey_code_rate_limited(void) APIKEY_NOEXCEPT;

/* `text` with every key-shaped run cut to its prefix and "...", in place; the new
 * length, never more than `len` (key_format.h: cut_keys_to_prefix). */
size_t apikey_cut_keys(char *text, size_t len) APIKEY_NOEXCEPT;

const char *apikey_code_name(int code) APIKEY_NOEXCEPT;
const char *apikey_code_message(int code) APIKEY_NOEXCEPT;
/* Length of apikey_code_name / apikey_code_message without calling strlen. */
size_t apikey_code_name_len(int code) APIKEY_NOEXCEPT;
size_t apikey_code_message_len(int code) APIKEY_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* APIKEY_CAPI_H */
