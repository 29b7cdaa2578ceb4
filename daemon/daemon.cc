#include "daemon.h"

#include "api.h"
#include "http_server.h"
#include "log.h"
#include "publisher.h"
#include "store.h"
#include "time_format.h"
#include "tls.h"
#include "usage_receiver.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/stat.h>

#include <csignal>

namespace apikeyd {

namespace asio = boost::asio;

namespace {

constexpr auto kMaintenanceInterval = std::chrono::seconds(2);
constexpr auto kShutdownGrace = std::chrono::seconds(5);

void schedule_maintenance(asio::steady_timer &timer, Api &api) {
    timer.expires_after(kMaintenanceInterval);
    timer.async_wait([&timer, &api](const boost::system::error_code &ec) {
        if (ec) return;  // cancelled: shutting down
        api.maintenance();
        schedule_maintenance(timer, api);
    });
}

}  // namespace

int run_daemon(const Config &config) {
    prepare_paths(config);  // parents it creates keep the usual umask (nginx traverses them)
    // Nothing apikeyd creates from here on is for other users: the store, its lock and the
    // snapshot get explicit modes on top of this (README, Permissions).
    ::umask(077);
    std::signal(SIGPIPE, SIG_IGN);

    std::unique_ptr<Store> store;
    std::unique_ptr<Publisher> publisher;
    try {
        store = std::make_unique<Store>(Store::Options{config.store_dir(), config.store_map_size});
    } catch (const std::exception &e) {
        log_error(std::string("cannot open the store in ") + config.store_dir() + ": " + e.what());
        return 1;
    }
    try {
        apikey::snapshot::WriterOptions options;
        options.dir = config.snapshot_path;
        options.map_size = config.snapshot_map_size;
        // A full map grows (doubling) instead of failing every publish from then on.
        options.max_map_size = snapshot_map_ceiling(config.snapshot_map_size, config.store_map_size);
        options.group = config.snapshot_group;
        // The store is the durable copy; a snapshot a system crash set back is rebuilt
        // from it below (sync), before nginx is told anything new.
        options.sync_meta = false;
        publisher = std::make_unique<Publisher>(*store, options);
        if (!publisher->discarded().empty()) log_warn(publisher->discarded());
        const bool rebuilt = publisher->sync();
        log_info(std::string(rebuilt ? "snapshot rebuilt from the store" : "snapshot up to date") +
                 " path=" + config.snapshot_path +
                 " generation=" + std::to_string(publisher->published_generation()));
    } catch (const std::exception &e) {
        log_error(std::string("cannot publish the snapshot in ") + config.snapshot_path + ": " +
                  e.what());
        return 1;
    }

    Api api(*store, *publisher, config.admin_tokens, unix_now);
    api.set_auth_limit(config.auth_limit);
    api.set_max_import_items(config.max_import_items);
    asio::io_context ioc(1);

    ServerOptions options;
    options.host = config.listen_host;
    options.port = config.listen_port;
    options.max_body_bytes = config.max_body_bytes;
    options.max_connections = config.max_connections;
    options.header_timeout = std::chrono::seconds(config.header_timeout_seconds);
    options.read_timeout = std::chrono::seconds(config.request_timeout_seconds);
    if (config.tls) options.tls = make_tls_context(*config.tls);
    // The import's body is buffered whole before dispatch authenticates the request, so its
    // larger limit is for an admin only, admitted at the header the way dispatch admits
    // (the auth limiter's 429, a 401 logged and counted against the address): otherwise any
    // client could make apikeyd hold max_import_body_bytes a connection (4 connections of
    // 200 MB without a token held 819 MB), or test tokens at the header unlimited. A body
    // declared within max_body_bytes is left to dispatch, so a failure counts once.
    options.admit_body = [&config, &api](const Request &header,
                                         std::optional<std::uint64_t> length) {
        BodyAdmission admission{config.max_body_bytes, std::nullopt};
        if (header.method != "POST" || !is_import_target(header.target) ||
            (length && *length <= config.max_body_bytes))
            return admission;
        try {
            admission.refusal = api.refuse_admin(header);
        } catch (const std::exception &e) {  // out of the asio handler it would stop apikeyd
            log_error(std::string("internal error: ") + e.what());
            admission.refusal = error_response(500, code::internal_error,
                                               "internal error; see apikeyd's log");
        }
        if (!admission.refusal) admission.limit = config.max_import_body_bytes;
        return admission;
    };
    options.on_refused = [&api](std::string_view target, unsigned status) {
        api.count_refused(target, status);
    };
    std::unique_ptr<HttpServer> server;
    try {
        server = std::make_unique<HttpServer>(ioc, options,
                                              [&api](const std::vector<Request> &batch) { return api.handle_batch(batch); });
    } catch (const std::exception &e) {
        log_error(e.what());
        return 1;
    }

    std::unique_ptr<UsageReceiver> usage;
    if (config.usage_port != 0) {
        try {
            usage = std::make_unique<UsageReceiver>(ioc, config.usage_host, config.usage_port,
                                                    *store, unix_now);
        } catch (const std::exception &e) {
            log_error("cannot receive usage reports on " + config.usage_host + ":" +
                      std::to_string(config.usage_port) + ": " + e.what());
            return 1;
        }
        usage->start();
        api.set_usage_counters(&usage->counters());
        if (!is_loopback_host(config.usage_host))
            log_warn("usage reports are received on a non-loopback address: anyone who can "
                     "reach it can move keys' last_used_at");
        // Less than what was asked: net.core.rmem_max capped it.
        const std::size_t buffer = usage->receive_buffer();
        log_info("receiving usage reports on " + config.usage_host + ":" +
                 std::to_string(usage->port()) + " (socket receive buffer " +
                 std::to_string(buffer >> 10) + " KB)");
        if (buffer < static_cast<std::size_t>(kUsageReceiveBuffer))
            log_warn("the usage socket's receive buffer is " + std::to_string(buffer >> 10) +
                     " KB, less than the " + std::to_string(kUsageReceiveBuffer >> 10) +
                     " KB asked for (net.core.rmem_max caps it): reports that arrive while "
                     "apikeyd is busy may be dropped; raise net.core.rmem_max");
    }

    asio::steady_timer maintenance(ioc);
    schedule_maintenance(maintenance, api);

    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code &ec, int signal) {
        if (ec) return;
        log_info(std::string("received ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") +
                 ", shutting down");
        maintenance.cancel();
        if (usage) usage->stop();
        server->stop(kShutdownGrace, [&ioc] { ioc.stop(); });
    });

    server->start();
    log_info("listening on " + config.listen_text() + (config.tls ? " (TLS)" : ""));
    ioc.run();
    log_info("stopped");
    return 0;
}

}  // namespace apikeyd
