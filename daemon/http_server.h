// The admin API's HTTP/1.1 server: Boost.Beast, asynchronous, on one io_context thread
// (the handler runs there too, so the API needs no locks). It only moves bytes: every
// request is handed to a Handler (Api::handle) and its Response written back as JSON.
//
// Limits: headers 16 KiB (431), body max_body_bytes or what admit_body says for the
// request (413), the headers must arrive within header_timeout and the whole request within
// read_timeout (slowloris), idle keep-alive connections close after header_timeout, at
// most max_connections at once: at the limit a new connection replaces the one that has
// waited longest for its request (idle or trickling), so a crowd of idle connections
// cannot lock clients out. With `tls` every connection is TLS (handshake within
// header_timeout); plain HTTP to it is just closed. Malformed HTTP gets a 400 JSON answer
// and the connection is closed. Error answers that close the connection first drain what
// the client is still sending (bounded), so the client reads the answer instead of a reset.
// One access-log line per request: peer, method, loggable path, status, bytes, µs, actor.
//
// Group commit: a parsed request is queued, not handled at once; a flush posted to the
// io_context hands the queue (the requests that arrived in the same turn, at most
// kMaxBatch) to the BatchHandler in one call, then writes every response. While a batch
// commits, the next one gathers in the sockets.
#pragma once

#include "api.h"
#include "response.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace apikeyd {

// What a request's header allows before its body is read: the body's limit, or an answer
// sent at once, the body unread and the connection closed.
struct BodyAdmission {
    std::size_t limit = 0;
    std::optional<Response> refusal;
};

struct ServerOptions {
    std::string host = "127.0.0.1";  // IP literal
    std::uint16_t port = 0;          // 0: any free port (tests)
    std::size_t max_body_bytes = 65536;
    // Once the header is read: the request as it shows it (no body) and its declared length
    // (0 without a body, nullopt: chunked). The key import's larger limit, for admins only: the body is
    // buffered before the handler authenticates the request. Unset: max_body_bytes for
    // every request.
    std::function<BodyAdmission(const Request &header, std::optional<std::uint64_t> length)>
        admit_body;
    std::size_t header_limit = 16 * 1024;
    std::chrono::milliseconds header_timeout{10'000};  // also for an idle keep-alive wait
    std::chrono::milliseconds read_timeout{30'000};    // the whole request, body included
    std::size_t max_connections = 512;
    // Server-side TLS context (certificate and key loaded); null: plain HTTP.
    std::shared_ptr<boost::asio::ssl::context> tls;
    // Told of every answer the server gives itself, without the handler (400 malformed,
    // 413, 431): request target ("" when not parsed) and status. Optional.
    std::function<void(std::string_view target, unsigned status)> on_refused;
};

class HttpServer {
public:
    using Handler = std::function<Response(const Request &)>;
    // One response per request, in order (Api::handle_batch).
    using BatchHandler = std::function<std::vector<Response>(const std::vector<Request> &)>;
    static constexpr std::size_t kMaxBatch = 256;

    // Binds and listens; throws std::runtime_error naming the address when it cannot.
    HttpServer(boost::asio::io_context &ioc, const ServerOptions &options, BatchHandler handler);
    // Each request on its own (a batch handled one by one).
    HttpServer(boost::asio::io_context &ioc, const ServerOptions &options, Handler handler);
    ~HttpServer();
    HttpServer(const HttpServer &) = delete;
    HttpServer &operator=(const HttpServer &) = delete;

    std::uint16_t port() const;

    void start();  // begins accepting
    // Stops accepting, closes connections waiting for a request, lets responses being
    // written finish, then calls `done` (on the io_context) once no connection is left or
    // after `grace`, whichever comes first.
    void stop(std::chrono::milliseconds grace, std::function<void()> done);

    // Connections currently open.
    std::size_t connections() const;

    struct State;  // shared with the connections, which may outlive this object

private:
    std::shared_ptr<State> state_;
};

}  // namespace apikeyd
