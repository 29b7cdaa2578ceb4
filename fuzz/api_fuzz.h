// Shared by the admin API body targets (fuzz_api_*.cc): a complete apikeyd minus the
// sockets (Store + Publisher + Api, as tests/daemon_fixture.h) on real LMDB files in a
// fresh mkdtemp directory (under /dev/shm when there is one: no disk syncs per input),
// with one workspace and one key made at start. Each input is one request body sent
// through Api::handle, with the admin token.
//
// Invariants checked on every answer: never a 5xx (a body is the client's fault or
// fine), the body is JSON, a 4xx is {"error":{"code","message"}}, and after it the
// snapshot holds the store's generation (nothing is left unpublished).
#pragma once

#include "../daemon/api.h"
#include "../daemon/log.h"
#include "../daemon/publisher.h"
#include "../daemon/store.h"
#include "fuzz_check.h"
#include "sha256.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

namespace fuzz {

inline constexpr const char *kAdminToken = "fuzz-admin-token-0123456789";

class ApiHarness {
public:
    ApiHarness() {
        apikeyd::set_log_enabled(false);
        // APIKEY_FUZZ_TMP (make fuzz sets it, and removes it after the run), else /dev/shm.
        const char *base = std::getenv("APIKEY_FUZZ_TMP");
        if (base == nullptr || *base == '\0')
            base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : nullptr;
        std::string pattern = (base ? std::filesystem::path(base)
                                    : std::filesystem::temp_directory_path()) /
                              "apikey-fuzz-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) std::abort();
        dir_ = pattern;
        store_ = std::make_unique<apikeyd::Store>(
            apikeyd::Store::Options{dir_ + "/store", std::size_t{1} << 30});
        apikey::snapshot::WriterOptions options;
        options.dir = dir_ + "/snapshot";
        options.map_size = std::size_t{1} << 30;
        publisher_ = std::make_unique<apikeyd::Publisher>(*store_, options);
        publisher_->sync();
        api_ = std::make_unique<apikeyd::Api>(
            *store_, *publisher_,
            std::vector<apikeyd::AdminToken>{{"fuzz", apikey::sha256(kAdminToken)}},
            [] { return std::int64_t{1'800'000'000}; });
        const auto ws = call("POST", "/api/v1/workspaces",
                             R"({"org":"acme-corp","slug":"sales","name":"Acme sales"})");
        FUZZ_CHECK(ws.status == 201);
        workspace_id_ = nlohmann::json::parse(ws.body).at("id").get<std::string>();
        const auto key = call("POST", workspaces() + "/api-keys", R"({"name":"fuzz key"})");
        FUZZ_CHECK(key.status == 201);
        key_id_ = nlohmann::json::parse(key.body).at("id").get<std::string>();
    }
    ~ApiHarness() {
        api_.reset();
        publisher_.reset();
        store_.reset();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    std::string workspaces() const { return "/api/v1/workspaces/" + workspace_id_; }
    std::string key() const { return workspaces() + "/api-keys/" + key_id_; }

    apikeyd::Response call(std::string_view method, const std::string &target, std::string_view body) {
        apikeyd::Request request;
        request.method = method;
        request.target = target;
        request.body = body;
        const std::string auth = std::string("Bearer ") + kAdminToken;
        request.authorization = auth;
        return api_->handle(request);
    }

    // One fuzzed body: the request, then the invariants.
    void body(std::string_view method, const std::string &target, const std::uint8_t *data,
              std::size_t size) {
        const std::string text(reinterpret_cast<const char *>(data), size);
        const apikeyd::Response r = call(method, target, text);
        if (r.status >= 500) {
            std::fprintf(stderr, "%s %s -> %u %s\n", std::string(method).c_str(), target.c_str(),
                         r.status, r.body.c_str());
        }
        FUZZ_CHECK(r.status >= 200 && r.status < 500);
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        FUZZ_CHECK(!j.is_discarded());
        if (r.status >= 400) {
            FUZZ_CHECK(j.is_object() && j.contains("error"));
            FUZZ_CHECK(j["error"]["code"].is_string() && j["error"]["message"].is_string());
        }
        FUZZ_CHECK(publisher_->published_generation() == store_->generation());
    }

private:
    std::string dir_;
    std::unique_ptr<apikeyd::Store> store_;
    std::unique_ptr<apikeyd::Publisher> publisher_;
    std::unique_ptr<apikeyd::Api> api_;
    std::string workspace_id_, key_id_;
};

inline ApiHarness &harness() {
    static ApiHarness h;
    return h;
}

}  // namespace fuzz
