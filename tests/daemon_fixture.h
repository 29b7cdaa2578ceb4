// A complete apikeyd minus the sockets, on real LMDB files in a fresh temporary
// directory: Store + Publisher + Api with a fixed clock. reopen() destroys and recreates
// them all, as a daemon restart would.
#pragma once

#include "../daemon/api.h"
#include "../daemon/log.h"
#include "../daemon/publisher.h"
#include "../daemon/store.h"
#include "sha256.h"
#include "snapshot_reader.h"
#include "temp_dir.h"

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

namespace apikey::test {

inline constexpr const char *kAdminToken = "test-admin-token-0123456789";
inline constexpr std::int64_t kNow = 1'800'000'000;  // 2027-01-15T08:00:00Z

inline std::vector<apikeyd::AdminToken> admin_tokens() {
    return {{"ops", apikey::sha256(kAdminToken)}, {"ci-bot", apikey::sha256("second-token-abcdefgh")}};
}

struct DaemonFixture {
    TempDir dir;
    std::int64_t now = kNow;
    std::size_t store_map_size = 64u << 20;
    std::size_t snapshot_map_size = 64u << 20;
    std::size_t snapshot_max_map_size = 0;  // growth ceiling; 0: the map never grows
    std::unique_ptr<apikeyd::Store> store;
    std::unique_ptr<apikeyd::Publisher> publisher;
    std::unique_ptr<apikeyd::Api> api;

    DaemonFixture() {
        apikeyd::set_log_enabled(false);
        open();
    }
    ~DaemonFixture() { close(); }

    std::string store_dir() const { return dir.sub("store"); }
    std::string snapshot_dir() const { return dir.sub("snapshot"); }

    void open() {
        store = std::make_unique<apikeyd::Store>(apikeyd::Store::Options{store_dir(), store_map_size});
        auto options = writer_options(snapshot_dir());
        options.map_size = snapshot_map_size;
        options.max_map_size = snapshot_max_map_size;
        publisher = std::make_unique<apikeyd::Publisher>(*store, options);
        publisher->sync();
        api = std::make_unique<apikeyd::Api>(*store, *publisher, admin_tokens(),
                                             [this] { return now; });
    }
    void close() {
        api.reset();
        publisher.reset();
        store.reset();
    }
    void reopen() {
        close();
        open();
    }

    apikeyd::Response call(std::string_view method, std::string_view target,
                           std::string_view body = {},
                           std::optional<std::string> authorization =
                               std::string("Bearer ") + kAdminToken) {
        apikeyd::Request request;
        request.method = method;
        request.target = target;
        request.body = body;
        if (authorization) request.authorization = *authorization;
        return api->handle(request);
    }

    static nlohmann::json json_of(const apikeyd::Response &r) {
        return nlohmann::json::parse(r.body);
    }

    // POST a workspace and return its JSON (requires 201).
    nlohmann::json create_workspace(const std::string &org, const std::string &slug) {
        const auto r = call("POST", "/api/v1/workspaces",
                            nlohmann::json{{"org", org}, {"slug", slug}, {"name", org + " " + slug}}
                                .dump());
        BOOST_REQUIRE_EQUAL(r.status, 201u);
        return json_of(r);
    }

    nlohmann::json create_key(const std::string &workspace_id, nlohmann::json body = {{"name", "k"}}) {
        const auto r = call("POST", "/api/v1/workspaces/" + workspace_id + "/api-keys", body.dump());
        BOOST_REQUIRE_EQUAL(r.status, 201u);
        return json_of(r);
    }

    // A short-lived reader of the published snapshot (nullptr if there is none).
    std::unique_ptr<snapshot::Reader> reader() const {
        std::string error;
        return snapshot::Reader::open(snapshot_dir(), error);
    }

    // The snapshot's record of a raw key, or nullopt.
    std::optional<snapshot::KeyRecord> snapshot_key(const std::string &raw) const {
        auto r = reader();
        BOOST_REQUIRE(r);
        auto view = r->view();
        BOOST_REQUIRE(view.ok());
        snapshot::KeyRecord record;
        if (view.find_key(apikey::sha256(raw), record) != snapshot::Lookup::found)
            return std::nullopt;
        return record;
    }

    std::optional<snapshot::WorkspaceRecord> snapshot_workspace(const std::string &path) const {
        auto r = reader();
        BOOST_REQUIRE(r);
        auto view = r->view();
        BOOST_REQUIRE(view.ok());
        snapshot::WorkspaceView found;
        if (view.find_workspace(path, found) != snapshot::Lookup::found) return std::nullopt;
        return snapshot::WorkspaceRecord{found.id, found.max_expand_depth,
                                         std::string(found.cors_origins)};
    }

    // The snapshot's record of an entity of a workspace (by id), or nullopt.
    std::optional<snapshot::EntityRecord> snapshot_entity(const std::string &workspace_id,
                                                          const std::string &entity) const {
        auto r = reader();
        BOOST_REQUIRE(r);
        auto view = r->view();
        BOOST_REQUIRE(view.ok());
        const auto id = apikey::parse_uuid(workspace_id);
        BOOST_REQUIRE(id);
        snapshot::EntityView found;
        if (view.find_entity(*id, entity, found) != snapshot::Lookup::found) return std::nullopt;
        snapshot::EntityRecord record;
        record.public_access = found.public_access;
        record.max_expand_depth = found.max_expand_depth;
        auto copy = [](const std::optional<std::string_view> &v) {
            return v ? std::optional<std::string>(std::string(*v)) : std::nullopt;
        };
        record.default_expand = copy(found.default_expand);
        record.default_fields = copy(found.default_fields);
        record.expandable = copy(found.expandable);
        record.filterable = copy(found.filterable);
        record.hidden_columns = std::string(found.hidden_columns);
        return record;
    }

    std::uint64_t snapshot_generation() const {
        auto r = reader();
        if (!r) return 0;
        return r->view().generation();
    }
};

}  // namespace apikey::test
