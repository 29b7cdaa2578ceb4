/* The C interface the nginx module is written against (the glue stays plain C, like
 * ModSecurity-nginx over libmodsecurity). Every function is noexcept on the C++ side:
 * no exception ever crosses into nginx. */
#ifndef APIKEY_CAPI_H
#define APIKEY_CAPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct apikey_reader_s apikey_reader_t;

/* Opens the snapshot at `dir`. Returns NULL and writes a message into `err` (always
 * NUL-terminated) when it is missing, unreadable, unpublished or of an unknown format. */
apikey_reader_t *apikey_reader_open(const char *dir, char *err, size_t err_size);
void apikey_reader_close(apikey_reader_t *reader);
/* Clears LMDB reader slots of dead processes; returns how many, -1 on error. */
int apikey_reader_check(apikey_reader_t *reader);

typedef struct {
    const char *authorization; /* NULL when the request has no Authorization header */
    size_t authorization_len;
    const char *workspace; /* "org/slug" as the location computed it */
    size_t workspace_len;
    int mutating; /* any method other than GET and HEAD */
    int64_t now;  /* unix seconds */
} apikey_request_t;

#define APIKEY_UUID_LEN 36
#define APIKEY_PREFIX_LEN 12

typedef struct {
    int code;        /* stable outcome code, see apikey_code_name() */
    int http_status; /* 200 (allow), 401, 403 or 503 */
    int key_found;   /* the key fields below are set */
    char key_id[APIKEY_UUID_LEN];
    char workspace_id[APIKEY_UUID_LEN];
    char key_prefix[APIKEY_PREFIX_LEN];
    const char *permission; /* "read_only" / "read_write", static storage */
    uint64_t generation;    /* of the snapshot the decision was made from; 0 if none */
    const char *error;      /* why the snapshot could not be read, static storage */
} apikey_result_t;

/* `reader` may be NULL (no snapshot yet): the result is then 503. */
void apikey_authenticate(apikey_reader_t *reader, const apikey_request_t *request,
                         apikey_result_t *result);

const char *apikey_code_name(int code);
const char *apikey_code_message(int code);
/* Length of apikey_code_name / apikey_code_message without calling strlen. */
size_t apikey_code_name_len(int code);
size_t apikey_code_message_len(int code);

#ifdef __cplusplus
}
#endif

#endif /* APIKEY_CAPI_H */
