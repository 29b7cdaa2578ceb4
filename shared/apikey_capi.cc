#include "apikey_capi.h"

#include "decision.h"
#include "key_format.h"
#include "names.h"
#include "snapshot_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

static_assert(APIKEY_UUID_BYTES == sizeof(apikey::Uuid::bytes) &&
                  APIKEY_UUID_LEN == apikey::kUuidTextLength,
              "apikey_capi.h and uuid.h agree on the size of an id");
static_assert(APIKEY_HASH_BYTES == sizeof(apikey::Digest),
              "apikey_capi.h and sha256.h agree on the size of a hash");
static_assert(APIKEY_MAX_MESSAGE == apikey::kMaxRejectionMessage,
              "apikey_capi.h and decision.h agree on the longest message");

struct apikey_reader_s {
    std::unique_ptr<apikey::snapshot::Reader> reader;
};

namespace {

std::string_view view_of(const apikey_str_t &s) noexcept { return {s.data, s.len}; }

apikey::Code to_code(int code) noexcept {
    if (code < 0 || code > static_cast<int>(apikey::kLastCode))
        return apikey::Code::snapshot_unavailable;
    return static_cast<apikey::Code>(code);
}

}  // namespace

extern "C" {

apikey_reader_t *apikey_reader_open(const char *dir, char *err, size_t err_size) noexcept {
    if (err_size > 0) err[0] = '\0';
    try {
        std::string error;
        auto reader = apikey::snapshot::Reader::open(dir, error);
        if (reader == nullptr) {
            if (err_size > 0) {
                const size_t n = std::min(error.size(), err_size - 1);
                std::memcpy(err, error.data(), n);
                err[n] = '\0';
            }
            return nullptr;
        }
        auto *handle = new apikey_reader_s;
        handle->reader = std::move(reader);
        return handle;
    } catch (...) {
        if (err_size > 0) std::snprintf(err, err_size, "out of memory");
        return nullptr;
    }
}

void apikey_reader_close(apikey_reader_t *reader) noexcept { delete reader; }

int apikey_reader_check(apikey_reader_t *reader) noexcept {
    return reader != nullptr ? reader->reader->reader_check() : 0;
}

int apikey_reader_file_is_complete(apikey_reader_t *reader) noexcept {
    return reader == nullptr || reader->reader->file_is_complete() ? 1 : 0;
}

void apikey_present_key(apikey_reader_t *reader, const char *authorization, size_t len,
                        apikey_presented_key_t *key) noexcept {
    const apikey::PresentedKey presented =
        apikey::present_key({authorization, len}, reader != nullptr ? reader->reader.get() : nullptr);
    key->code = static_cast<int>(presented.code);
    std::memcpy(key->hash, presented.hash.data(), APIKEY_HASH_BYTES);
}

void apikey_authenticate(apikey_reader_t *reader, const apikey_request_t *request,
                         apikey_result_t *result) noexcept {
    std::memset(result, 0, sizeof(*result));
    auto finish = [&](apikey::Code code) {
        result->code = static_cast<int>(code);
        result->http_status = apikey::http_status(code);
    };
    if (reader == nullptr) {
        finish(apikey::Code::snapshot_unavailable);
        result->error = "no snapshot is open";
        return;
    }

    const auto view = reader->reader->view();
    apikey::Request req;
    apikey::PresentedKey presented;
    if (request->authorization.data != nullptr) {
        req.authorization = view_of(request->authorization);
        if (request->presented != nullptr) {
            presented.code = to_code(request->presented->code);
            std::memcpy(presented.hash.data(), request->presented->hash, APIKEY_HASH_BYTES);
            req.presented = &presented;
        }
    }
    if (request->origin.data != nullptr) req.origin = view_of(request->origin);
    req.workspace_path = view_of(request->workspace);
    req.entity = view_of(request->entity);
    req.query = view_of(request->args);
    req.raw_path = view_of(request->raw_path);
    req.preflight = request->preflight != 0;
    req.facts.mutating = request->mutating != 0;
    req.facts.now = request->now;
    req.alloc.fn = request->alloc;
    req.alloc.ctx = request->alloc_ctx;

    const apikey::Decision d = apikey::decide(view, req);
    finish(d.code);
    result->generation = view.generation();
    result->error = view.error();
    result->is_public = d.code == apikey::Code::public_access;
    result->cors = d.cors == apikey::CorsGrant::any_origin    ? APIKEY_CORS_ANY
                   : d.cors == apikey::CorsGrant::this_origin ? APIKEY_CORS_ORIGIN
                                                              : APIKEY_CORS_NONE;
    result->cors_vary = d.cors_vary ? 1 : 0;
    if (d.key_found) {
        result->key_found = 1;
        std::memcpy(result->key_id, d.key.id.bytes.data(), APIKEY_UUID_BYTES);
        std::memcpy(result->workspace_id, d.key.workspace_id.bytes.data(), APIKEY_UUID_BYTES);
        std::memcpy(result->key_prefix, d.key.prefix.data(), APIKEY_PREFIX_LEN);
        result->permission = apikey::snapshot::to_string(d.key.permission).data();
        if (d.key.rate_limit) {
            result->rate_limit = d.key.rate_limit->limit;
            result->rate_window = d.key.rate_limit->window_seconds;
        }
    }

    if (apikey::admitted(d.code)) {
        // Already in the request's memory (decide copied them out of the map).
        result->expand = {d.query.expand.data(), d.query.expand.size()};
        result->fields = {d.query.fields.data(), d.query.fields.size()};
        result->hidden_columns = {d.hidden_columns.data(), d.hidden_columns.size()};
        return;
    }
    if (d.code != apikey::Code::invalid_query && d.code != apikey::Code::expand_not_allowed &&
        d.code != apikey::Code::filter_not_allowed)
        return;  // the code's own message
    // The offender may point into the map: the message is written while the view lives.
    auto *message = static_cast<char *>(request->alloc != nullptr
                                            ? request->alloc(request->alloc_ctx,
                                                             apikey::kMaxRejectionMessage)
                                            : nullptr);
    if (message == nullptr) return;  // the generic message still says what happened
    result->message.len = apikey::rejection_message(d.code, d.query.offender, message);
    result->message.data = message;
}

int apikey_cors_header_list_is_echoable(const char *list, size_t len) noexcept {
    return apikey::is_echoable_header_list({list, len}) ? 1 : 0;
}

int apikey_reader_generation(apikey_reader_t *reader, uint64_t *generation,
                             int64_t *published_at_ms) noexcept {
    if (reader == nullptr) return -1;
    const auto view = reader->reader->view();
    if (!view.ok()) return -1;
    *generation = view.generation();
    *published_at_ms = view.published_at_ms();
    return 0;
}

void apikey_format_uuid(const unsigned char *id, char *out) noexcept {
    apikey::Uuid uuid;
    std::memcpy(uuid.bytes.data(), id, APIKEY_UUID_BYTES);
    apikey::format_uuid(uuid, out);
}

int apikey_workspace_is_valid(const char *text, size_t len) noexcept {
    return apikey::is_valid_workspace_path({text, len}) ? 1 : 0;
}

int apikey_entity_is_valid(const char *text, size_t len) noexcept {
    return apikey::is_identifier({text, len}) ? 1 : 0;
}

int apikey_code_count(void) noexcept { return static_cast<int>(apikey::kLastCode) + 1; }

int apikey_code_http_status(int code) noexcept { return apikey::http_status(to_code(code)); }

int apikey_code_rate_limited(void) noexcept { return static_cast<int>(apikey::Code::rate_limited); }

size_t apikey_cut_keys(char *text, size_t len) noexcept { return apikey::cut_keys_to_prefix(text, len); }

const char *apikey_code_name(int code) noexcept { return apikey::code_name(to_code(code)).data(); }
const char *apikey_code_message(int code) noexcept { return apikey::code_message(to_code(code)).data(); }
size_t apikey_code_name_len(int code) noexcept { return apikey::code_name(to_code(code)).size(); }
size_t apikey_code_message_len(int code) noexcept { return apikey::code_message(to_code(code)).size(); }

}  // extern "C"
