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

apikey::Code to_code(int code) noexcept {
    if (code < 0 || code > static_cast<int>(apikey::Code::snapshot_unavailable))
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
    result->key_found = 0;
    result->permission = nullptr;
    result->generation = 0;
    result->error = nullptr;
    if (reader == nullptr) {
        result->code = static_cast<int>(apikey::Code::snapshot_unavailable);
        result->http_status = apikey::http_status(apikey::Code::snapshot_unavailable);
        result->error = "no snapshot is open";
        return;
    }

    const auto view = reader->reader->view();
    std::optional<std::string_view> authorization;
    if (request->authorization != nullptr)
        authorization.emplace(request->authorization, request->authorization_len);
    apikey::RequestFacts facts;
    facts.mutating = request->mutating != 0;
    facts.now = request->now;

    const apikey::AuthResult auth = apikey::authenticate(
        view, authorization, {request->workspace, request->workspace_len}, facts);
    result->code = static_cast<int>(auth.code);
    result->http_status = apikey::http_status(auth.code);
    result->generation = view.generation();
    result->error = view.error();
    if (auth.key_found) {
        result->key_found = 1;
        apikey::format_uuid(auth.key.id, result->key_id);
        apikey::format_uuid(auth.key.workspace_id, result->workspace_id);
        std::memcpy(result->key_prefix, auth.key.prefix.data(), APIKEY_PREFIX_LEN);
        result->permission = apikey::snapshot::to_string(auth.key.permission).data();
    }
}

const char *apikey_code_name(int code) { return apikey::code_name(to_code(code)).data(); }
const char *apikey_code_message(int code) { return apikey::code_message(to_code(code)).data(); }
size_t apikey_code_name_len(int code) { return apikey::code_name(to_code(code)).size(); }
size_t apikey_code_message_len(int code) { return apikey::code_message(to_code(code)).size(); }

}  // extern "C"
