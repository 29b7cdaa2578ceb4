#include "http_server.h"

#include "ascii.h"
#include "log.h"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <type_traits>

namespace apikeyd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {
// What the server needs of a connection of either kind (plain or TLS).
class SessionBase {
public:
    virtual ~SessionBase() = default;
    virtual void on_server_stop() = 0;
    virtual void evict() = 0;
    // When it started waiting for its current request; nullopt while it is writing a
    // response or closing (those are not evicted).
    virtual std::optional<std::chrono::steady_clock::time_point> waiting_since() const = 0;
};
}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
    State(asio::io_context &io, const ServerOptions &opts, BatchHandler h)
        : ioc(io), options(opts), handler(std::move(h)), gather_timer(io), acceptor(io),
          retry_timer(io), stop_timer(io) {}

    // A parsed request waiting for the flush; `respond` writes its response (the
    // session's shared_ptr inside keeps the request's bytes alive).
    struct Queued {
        Request request;
        std::function<void(Response)> respond;
    };
    void enqueue(Queued q);
    void schedule_flush();
    void flush();

    asio::io_context &ioc;
    ServerOptions options;
    BatchHandler handler;
    std::vector<Queued> queue;
    enum class Flush { none, gathering, posted } flush_state = Flush::none;
    std::size_t last_batch = 0;      // size of the previous batch
    asio::steady_timer gather_timer;  // the gathering window (see enqueue)
    tcp::acceptor acceptor;
    asio::steady_timer retry_timer;  // after an accept error (EMFILE...)
    asio::steady_timer stop_timer;   // polls for the last connection after stop()
    std::set<SessionBase *> sessions;
    bool stopping = false;
    bool accept_error_logged = false;
    bool limit_logged = false;
    Clock::time_point stop_deadline;
    std::function<void()> on_stopped;
};

namespace {

using State = HttpServer::State;

// Errors of the HTTP parser (as opposed to the network or a timeout).
bool is_parse_error(const beast::error_code &ec) {
    return ec.category() == beast::error_code(http::error::bad_method).category();
}

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

// The path and query of a request target: RFC 9112 has servers accept the absolute form
// ("http://host/path?q") too; routes only look at the path.
std::string_view origin_form(std::string_view target) {
    for (std::string_view scheme : {"http://", "https://"}) {
        if (target.size() < scheme.size() ||
            !beast::iequals(beast::string_view(target.data(), scheme.size()),
                            beast::string_view(scheme.data(), scheme.size())))
            continue;
        const auto path = target.find_first_of("/?", scheme.size());
        return path == std::string_view::npos ? std::string_view("/") : target.substr(path);
    }
    return target;
}

// Whether every Content-Encoding coding (each field, each comma-separated element) is
// identity, i.e. the body is as sent.
bool identity_content(const http::request<http::string_body> &req) {
    const auto fields = req.equal_range(http::field::content_encoding);
    for (auto field = fields.first; field != fields.second; ++field) {
        std::string_view list = sv(field->value());
        while (true) {
            const std::size_t comma = list.find(',');
            const std::string_view coding = apikey::trim_ows(list.substr(0, comma));
            if (!coding.empty() && !beast::iequals(beast::string_view(coding.data(), coding.size()), "identity"))
                return false;
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
        }
    }
    return true;
}

// What RFC 9112 makes a server refuse in a header the parser accepted; empty if none.
// An HTTP/1.1 request without Host is a 400. A transfer coding other than chunked
// ("gzip, chunked") is one apikeyd does not implement: 501, rather than reading a
// gzip body as JSON. A content coding other than identity is one it does not decode:
// 415 (RFC 9110 15.5.16); read as is, a gzip import answered "not a JSON object" for
// each of its "lines", and a plain body labelled gzip was imported.
std::pair<unsigned, std::string> header_problem(const http::request<http::string_body> &req) {
    if (req.version() >= 11 && req.find(http::field::host) == req.end())
        return {400, "an HTTP/1.1 request needs a Host header"};
    // Which one would authenticate it? Refused before any body is read.
    if (req.count(http::field::authorization) > 1) return {400, "more than one Authorization header"};
    const auto codings = req.equal_range(http::field::transfer_encoding);
    for (auto field = codings.first; field != codings.second; ++field) {
        const std::string_view coding = apikey::trim_ows(sv(field->value()));
        if (!beast::iequals(beast::string_view(coding.data(), coding.size()), "chunked"))
            return {501, "the only transfer coding accepted is chunked"};
    }
    if (!identity_content(req))
        return {415, "apikeyd does not decode a Content-Encoding: send the body uncompressed"};
    return {0, {}};
}

std::string_view header_problem_code(unsigned status) {
    switch (status) {
    case 501: return code::not_implemented;
    case 415: return code::unsupported_media_type;
    default: return code::bad_request;
    }
}

std::string sanitized_method(std::string_view method) {
    if (method.empty()) return "-";
    return std::string(method.substr(0, 20));
}

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Stream is beast::tcp_stream (plain HTTP) or TlsStream.
template <class Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
    static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
    using std::enable_shared_from_this<Session<Stream>>::shared_from_this;

public:
    template <class... Args>
    Session(std::shared_ptr<State> state, tcp::socket socket, Args &...tls)
        : stream_(std::move(socket), tls...), state_(std::move(state)) {
        beast::error_code ec;
        const auto peer = tcp_layer().socket().remote_endpoint(ec);
        peer_address_ = ec ? "" : peer.address().to_string();
        peer_ = ec ? "-" : peer_address_ + ":" + std::to_string(peer.port());
        state_->sessions.insert(this);
    }
    ~Session() override { state_->sessions.erase(this); }

    void start() {
        waiting_since_ = Clock::now();
        if constexpr (kTls) {
            // The handshake counts against the header deadline: a client that opens a
            // connection and sends nothing (or plain HTTP) is gone within it.
            tcp_layer().expires_after(state_->options.header_timeout);
            stream_.async_handshake(asio::ssl::stream_base::server,
                                    [self = shared_from_this()](beast::error_code ec) {
                                        if (ec) return self->close();
                                        self->read_request();
                                    });
        } else {
            read_request();
        }
    }

    // The server is stopping: a connection waiting for (or in the middle of) a request is
    // closed now; one with a request queued or a response being written finishes it, then
    // closes (see on_write).
    void on_server_stop() override {
        if (phase_ != Phase::writing && phase_ != Phase::queued) close();
    }

    void evict() override { close(); }

    std::optional<Clock::time_point> waiting_since() const override {
        if (phase_ != Phase::reading) return std::nullopt;
        return waiting_since_;
    }

private:
    enum class Phase { reading, queued, writing, draining };

    beast::tcp_stream &tcp_layer() { return beast::get_lowest_layer(stream_); }

    void read_request() {
        phase_ = Phase::reading;
        waiting_since_ = Clock::now();
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(state_->options.header_limit));
        // The limit depends on the route: set once the header is read (on_header). Until
        // then the largest possible (not boost::none: Beast compares Content-Length with
        // it and an empty optional is smaller than any length).
        parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
        body_limit_ = state_->options.max_body_bytes;
        // The headers within header_timeout (an idle keep-alive wait included), the whole
        // request within read_timeout: a trickle of bytes extends neither.
        request_deadline_ = Clock::now() + state_->options.read_timeout;
        tcp_layer().expires_after(std::min(state_->options.header_timeout,
                                           state_->options.read_timeout));
        http::async_read_header(stream_, buffer_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                    self->on_header(ec);
                                });
    }

    void on_header(beast::error_code ec) {
        started_ = Clock::now();
        if (ec) return on_read_error(ec);
        if (const auto [status, message] = header_problem(parser_->get()); status != 0)
            return send_error(status, header_problem_code(status), message);
        tcp_layer().expires_at(request_deadline_);
        if (state_->options.admit_body) {
            std::optional<std::uint64_t> length;
            if (const auto declared = parser_->content_length()) length = *declared;
            else if (!parser_->chunked()) length = 0;  // no body at all
            BodyAdmission admission = state_->options.admit_body(request_of_header(), length);
            if (admission.refusal) {
                refused(admission.refusal->status);
                return write(std::move(*admission.refusal), /*keep_alive=*/false, /*head=*/false);
            }
            body_limit_ = admission.limit;
        }
        // Content-Length is checked here, a chunked body by the parser as it arrives.
        if (const auto length = parser_->content_length(); length && *length > body_limit_)
            return on_read_error(http::error::body_limit);
        parser_->body_limit(body_limit_);
        if (parser_->is_done()) return handle();
        if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
            // curl waits a second for this before sending a body over 1 KiB.
            static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
            asio::async_write(stream_, asio::buffer(k100.data(), k100.size()),
                              [self = shared_from_this()](beast::error_code ec2, std::size_t) {
                                  if (ec2) return self->close();
                                  self->read_body();
                              });
            return;
        }
        read_body();
    }

    void read_body() {
        http::async_read(stream_, buffer_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             if (ec) return self->on_read_error(ec);
                             self->handle();
                         });
    }

    void on_read_error(beast::error_code ec) {
        if (ec == http::error::body_limit)
            return send_error(413, code::payload_too_large,
                              "the request body is larger than " +
                                  std::to_string(body_limit_) + " bytes");
        if (ec == http::error::header_limit) {
            // The parser looks for the header's end before it reads the request line: no
            // line end among the bytes read means the request line alone is too long.
            const auto seen = buffer_.data();
            if (std::memchr(seen.data(), '\n', seen.size()) == nullptr)
                return send_error(414, code::uri_too_long, "the request target is too long");
            return send_error(431, code::headers_too_large, "the request headers are too large");
        }
        // A closed connection, a timeout or a message cut short: nobody to answer.
        if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
            !is_parse_error(ec))
            return close();
        send_error(400, code::bad_request, "malformed HTTP request");
    }

    void refused(unsigned status) {
        if (!state_->options.on_refused) return;
        const bool parsed = parser_ && !parser_->get().method_string().empty();
        state_->options.on_refused(parsed ? sv(parser_->get().target()) : std::string_view{}, status);
    }

    void send_error(unsigned status, std::string_view code, const std::string &message) {
        if (started_ == Clock::time_point{}) started_ = Clock::now();
        refused(status);
        write(error_response(status, code, message), /*keep_alive=*/false, /*head=*/false);
    }

    // The request as its header shows it (header_problem refused two Authorization headers).
    Request request_of_header() const {
        const auto &req = parser_->get();
        Request request;
        request.method = sv(req.method_string());
        request.target = origin_form(sv(req.target()));
        if (const auto it = req.find(http::field::authorization); it != req.end())
            request.authorization = sv(it->value());
        request.peer = peer_address_;
        return request;
    }

    void handle() {
        Request request = request_of_header();
        request.body = parser_->get().body();
        phase_ = Phase::queued;
        state_->enqueue({request, [self = shared_from_this()](Response r) {
                             auto &req = self->parser_->get();
                             self->write(std::move(r), req.keep_alive() && !self->state_->stopping,
                                         req.method() == http::verb::head);
                         }});
    }

    void write(Response r, bool keep_alive, bool head) {
        // The request line is known as soon as it was parsed, also when the request was
        // refused later (a too-large Content-Length is caught at the end of the header).
        const bool parsed = parser_ && !parser_->get().method_string().empty();
        const std::string method = parsed ? sanitized_method(sv(parser_->get().method_string())) : "-";
        const std::string path = parsed ? loggable_path(sv(parser_->get().target())) : "-";

        res_ = {};
        res_.version(parsed && parser_->get().version() == 10 ? 10 : 11);
        res_.result(r.status);
        res_.set(http::field::server, "apikeyd");
        res_.set(http::field::content_type, r.content_type);
        // Responses can carry a raw key: nothing may cache them.
        res_.set(http::field::cache_control, "no-store");
        res_.set("X-Content-Type-Options", "nosniff");
        for (const auto &[name, value] : r.headers) res_.set(name, value);
        res_.body() = std::move(r.body);
        res_.keep_alive(keep_alive);
        res_.prepare_payload();
        const std::size_t bytes = res_.body().size();
        if (head) res_.body().clear();  // Content-Length stays that of the GET answer

        const auto us =
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_).count();
        log_info("access peer=" + peer_ + " method=" + method + " path=" + path +
                 " status=" + std::to_string(r.status) + " bytes=" + std::to_string(bytes) +
                 " us=" + std::to_string(us) + " actor=" + (r.actor.empty() ? "-" : r.actor));

        phase_ = Phase::writing;
        tcp_layer().expires_after(state_->options.read_timeout);
        http::async_write(stream_, res_,
                          [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                              self->on_write(ec, keep_alive);
                          });
    }

    void on_write(beast::error_code ec, bool keep_alive) {
        if (ec) return close();
        if (!keep_alive || state_->stopping) return drain_and_close();
        read_request();
    }

    // Half-close, then read and discard what the client still sends (bounded in bytes
    // and time) before closing: closing with unread data would reset the connection and
    // could destroy the answer before the client reads it.
    void drain_and_close() {
        phase_ = Phase::draining;
        if constexpr (kTls) {
            // close_notify, then wait (bounded) for the client's, which TLS clients send
            // or answer with a close: either way the answer was delivered first.
            tcp_layer().expires_after(std::chrono::seconds(2));
            stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->close(); });
        } else {
            beast::error_code ec;
            tcp_layer().socket().shutdown(tcp::socket::shutdown_send, ec);
            if (ec) return close();
            tcp_layer().expires_after(std::chrono::seconds(2));
            drain_some();
        }
    }

    void drain_some() {
        stream_.async_read_some(asio::buffer(drain_buffer_),
                                [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                    self->drained_ += n;
                                    if (ec || self->drained_ > (std::size_t{1} << 20))
                                        return self->close();
                                    self->drain_some();
                                });
    }

    void close() {
        phase_ = Phase::draining;
        beast::error_code ec;
        tcp_layer().socket().shutdown(tcp::socket::shutdown_both, ec);
        tcp_layer().close();
    }

    Stream stream_;
    std::shared_ptr<State> state_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    std::string peer_;          // address:port, for the access log
    std::string peer_address_;  // address only, for the API ("" when unknown)
    Clock::time_point waiting_since_{};
    Clock::time_point request_deadline_{};
    Phase phase_ = Phase::reading;
    Clock::time_point started_{};
    std::array<char, 4096> drain_buffer_{};
    std::size_t drained_ = 0;
    std::size_t body_limit_ = 0;  // of the request being read
};

// At the connection limit: closes the connection that has waited longest for its request
// (an idle keep-alive one or a slow sender), so a crowd of them cannot lock clients out.
// False when every connection is busy answering.
bool evict_longest_waiting(const std::shared_ptr<State> &st) {
    SessionBase *oldest = nullptr;
    Clock::time_point oldest_since{};
    for (SessionBase *s : st->sessions) {
        const auto since = s->waiting_since();
        if (since && (oldest == nullptr || *since < oldest_since)) {
            oldest = s;
            oldest_since = *since;
        }
    }
    if (oldest == nullptr) return false;
    oldest->evict();  // its pending read completes with an error and frees it
    return true;
}

void do_accept(const std::shared_ptr<State> &st) {
    st->acceptor.async_accept(st->ioc, [st](beast::error_code ec, tcp::socket socket) {
        if (st->stopping || ec == asio::error::operation_aborted) return;
        if (ec) {
            // Out of file descriptors and the like: retry shortly instead of spinning.
            if (!st->accept_error_logged) log_error("accept failed: " + ec.message());
            st->accept_error_logged = true;
            st->retry_timer.expires_after(std::chrono::milliseconds(100));
            st->retry_timer.async_wait([st](beast::error_code e) {
                if (!e && !st->stopping) do_accept(st);
            });
            return;
        }
        st->accept_error_logged = false;
        if (st->sessions.size() >= st->options.max_connections && !evict_longest_waiting(st)) {
            if (!st->limit_logged)
                log_warn("connection limit of " + std::to_string(st->options.max_connections) +
                         " reached and every connection is busy; refusing new connections");
            st->limit_logged = true;
            beast::error_code ignored;
            socket.close(ignored);
        } else {
            st->limit_logged = false;
            if (st->options.tls)
                std::make_shared<Session<TlsStream>>(st, std::move(socket), *st->options.tls)->start();
            else
                std::make_shared<Session<beast::tcp_stream>>(st, std::move(socket))->start();
        }
        do_accept(st);
    });
}

void poll_stopped(const std::shared_ptr<State> &st) {
    if (st->sessions.empty() || Clock::now() >= st->stop_deadline) {
        if (!st->sessions.empty())
            log_warn(std::to_string(st->sessions.size()) +
                     " connection(s) still open at the end of the shutdown grace period");
        auto done = std::move(st->on_stopped);
        st->on_stopped = nullptr;
        if (done) done();
        return;
    }
    st->stop_timer.expires_after(std::chrono::milliseconds(20));
    st->stop_timer.async_wait([st](beast::error_code ec) {
        if (!ec) poll_stopped(st);
    });
}

void close_all(const std::shared_ptr<State> &st) {
    st->stopping = true;
    beast::error_code ignored;
    st->acceptor.close(ignored);
    st->retry_timer.cancel();
    const std::set<SessionBase *> sessions = st->sessions;  // close() may erase from it
    for (SessionBase *s : sessions) s->on_server_stop();
}

}  // namespace

// Clients that were answered together send their next requests together, but not in the
// same io_context turn: flushing at the first arrival would commit it alone and leave the
// rest for the next commit (batches of 1 and 7 instead of 8, twice the syncs). So once the
// previous batch held several requests, the flush waits until as many are queued again,
// at most kGatherWindow: a lone client never waits.
constexpr std::chrono::microseconds kGatherWindow{1000};

void State::enqueue(Queued q) {
    queue.push_back(std::move(q));
    const bool enough = last_batch <= 1 || queue.size() >= last_batch;
    if (flush_state == Flush::posted || (flush_state == Flush::gathering && !enough)) return;
    if (!enough) {
        flush_state = Flush::gathering;
        gather_timer.expires_after(kGatherWindow);
        gather_timer.async_wait([st = shared_from_this()](beast::error_code ec) {
            if (!ec && st->flush_state == Flush::gathering) st->schedule_flush();
        });
        return;
    }
    schedule_flush();
}

void State::schedule_flush() {
    if (flush_state == Flush::gathering) gather_timer.cancel();
    flush_state = Flush::posted;
    // Posted, not run now: the requests whose reads completed in this same turn join
    // the batch first.
    asio::post(ioc, [st = shared_from_this()] { st->flush(); });
}

void State::flush() {
    flush_state = Flush::none;
    std::vector<Queued> batch;
    if (queue.size() <= HttpServer::kMaxBatch) {
        batch.swap(queue);
    } else {
        const auto end = queue.begin() + HttpServer::kMaxBatch;
        batch.assign(std::make_move_iterator(queue.begin()), std::make_move_iterator(end));
        queue.erase(queue.begin(), end);
        schedule_flush();
    }
    if (batch.empty()) return;
    last_batch = batch.size();
    std::vector<Request> requests;
    requests.reserve(batch.size());
    for (const Queued &q : batch) requests.push_back(q.request);
    std::vector<Response> responses = handler(requests);
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].respond(std::move(responses[i]));
}

HttpServer::HttpServer(asio::io_context &ioc, const ServerOptions &options, Handler handler)
    : HttpServer(ioc, options, [handler = std::move(handler)](const std::vector<Request> &requests) {
          std::vector<Response> out;
          out.reserve(requests.size());
          for (const Request &r : requests) out.push_back(handler(r));
          return out;
      }) {}

HttpServer::HttpServer(asio::io_context &ioc, const ServerOptions &options, BatchHandler handler)
    : state_(std::make_shared<State>(ioc, options, std::move(handler))) {
    const std::string where = options.host + ":" + std::to_string(options.port);
    beast::error_code ec;
    const auto address = asio::ip::make_address(options.host, ec);
    if (ec) throw std::runtime_error("cannot listen on " + where + ": not an IP address");
    const tcp::endpoint endpoint(address, options.port);
    auto &acceptor = state_->acceptor;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
}

HttpServer::~HttpServer() { close_all(state_); }

std::uint16_t HttpServer::port() const {
    beast::error_code ec;
    const auto endpoint = state_->acceptor.local_endpoint(ec);
    return ec ? 0 : endpoint.port();
}

std::size_t HttpServer::connections() const { return state_->sessions.size(); }

void HttpServer::start() { do_accept(state_); }

void HttpServer::stop(std::chrono::milliseconds grace, std::function<void()> done) {
    close_all(state_);
    state_->stop_deadline = Clock::now() + grace;
    state_->on_stopped = std::move(done);
    poll_stopped(state_);
}

}  // namespace apikeyd
