#include "apikey_capi.h"

#include "decision.h"
#include "snapshot_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>

struct apikey_reader_s {
    std::unique_ptr<apikey::snapshot::Reader> reader;
};

namespace {

std::string_view view_of(const apikey_str_t &s) noexcept { return {s.data, s.len}; }

// Copies `text` into memory from the request's allocator; false when that fails.
bool copy_out(const apikey_request_t *request, std::string_view text, apikey_str_t &out) noexcept {
    out.data = nullptr;
    out.len = 0;
    if (text.empty()) return true;
    auto *p = static_cast<char *>(request->alloc(request->alloc_ctx, text.size()));
    if (p == nullptr) return false;
    std::memcpy(p, text.data(), text.size());
    out.data = p;
    out.len = text.size();
    return true;
}

apikey::Code to_code(int code) noexcept {
    if (code < 0 || code > static_cast<int>(apikey::kLastCode))
        return apikey::Code::snapshot_unavailable;
    return static_cast<apikey::Code>(code);
}

}  // namespace

extern "C" {

apikey_reader_t *apikey_reader_open(const char *dir, char *err, size_t err_size) {
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
    auto *handle = new (std::nothrow) apikey_reader_s;
    if (handle == nullptr) {
        if (err_size > 0) std::snprintf(err, err_size, "out of memory");
        return nullptr;
    }
    handle->reader = std::move(reader);
    return handle;
}

void apikey_reader_close(apikey_reader_t *reader) { delete reader; }

int apikey_reader_check(apikey_reader_t *reader) {
    return reader != nullptr ? reader->reader->reader_check() : 0;
}

void apikey_authenticate(apikey_reader_t *reader, const apikey_request_t *request,
                         apikey_result_t *result) {
    std::memset(result, 0, sizeof(*result));
    auto finish = [&](apikey::Code code) {
        result->code = static_cast<int>(code);
        result->http_status = apikey::http_status(code);
    };
    if (reader == nullptr) {
        finish(apikey::Code::snapshot_unavailable);
        result->error = "no snapshot is open";
        copy_out(request, apikey::code_message(apikey::Code::snapshot_unavailable), result->message);
        return;
    }

    const auto view = reader->reader->view();
    apikey::Request req;
    if (request->authorization.data != nullptr) req.authorization = view_of(request->authorization);
    if (request->origin.data != nullptr) req.origin = view_of(request->origin);
    req.workspace_path = view_of(request->workspace);
    req.entity = view_of(request->entity);
    req.query = view_of(request->args);
    req.preflight = request->preflight != 0;
    req.facts.mutating = request->mutating != 0;
    req.facts.now = request->now;

    const apikey::Decision d = apikey::decide(view, req);
    finish(d.code);
    result->generation = view.generation();
    result->error = view.error();
    result->is_public = d.code == apikey::Code::public_access;
    result->cors = d.cors == apikey::CorsGrant::any_origin    ? APIKEY_CORS_ANY
                   : d.cors == apikey::CorsGrant::this_origin ? APIKEY_CORS_ORIGIN
                                                              : APIKEY_CORS_NONE;
    if (d.key_found) {
        result->key_found = 1;
        apikey::format_uuid(d.key.id, result->key_id);
        apikey::format_uuid(d.key.workspace_id, result->workspace_id);
        std::memcpy(result->key_prefix, d.key.prefix.data(), APIKEY_PREFIX_LEN);
        result->permission = apikey::snapshot::to_string(d.key.permission).data();
        if (d.key.rate_limit) {
            result->rate_limit = d.key.rate_limit->limit;
            result->rate_window = d.key.rate_limit->window_seconds;
        }
    }

    bool copied = true;
    if (apikey::admitted(d.code)) {
        // Out of the map before the view's transaction ends.
        copied = copy_out(request, d.query.expand, result->expand) &&
                 copy_out(request, d.query.fields, result->fields) &&
                 copy_out(request, d.hidden_columns, result->hidden_columns);
    } else if (apikey::http_status(d.code) != 204) {
        try {
            copied = copy_out(request, apikey::rejection_message(d.code, d.query.offender),
                              result->message);
        } catch (...) {
            copied = false;
        }
    }
    if (!copied) {
        std::memset(result, 0, sizeof(*result));
        finish(apikey::Code::snapshot_unavailable);
        result->error = "out of memory";
    }
}

int apikey_cors_header_list_is_echoable(const char *list, size_t len) {
    return apikey::is_echoable_header_list({list, len}) ? 1 : 0;
}

int apikey_reader_generation(apikey_reader_t *reader, uint64_t *generation,
                             int64_t *published_at_ms) {
    if (reader == nullptr) return -1;
    const auto view = reader->reader->view();
    if (!view.ok()) return -1;
    *generation = view.generation();
    *published_at_ms = view.published_at_ms();
    return 0;
}

int apikey_code_count(void) { return static_cast<int>(apikey::kLastCode) + 1; }

int apikey_code_http_status(int code) { return apikey::http_status(to_code(code)); }

int apikey_code_rate_limited(void) { return static_cast<int>(apikey::Code::rate_limited); }

const char *apikey_code_name(int code) { return apikey::code_name(to_code(code)).data(); }
const char *apikey_code_message(int code) { return apikey::code_message(to_code(code)).data(); }
size_t apikey_code_name_len(int code) { return apikey::code_name(to_code(code)).size(); }
size_t apikey_code_message_len(int code) { return apikey::code_message(to_code(code)).size(); }

}  // extern "C"
