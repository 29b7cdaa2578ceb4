// The HTTP layer of apikeyd over real loopback sockets: framing, limits (413, 431, 400),
// keep-alive, 100-continue, HEAD, timeouts and a clean stop.
#include "../daemon/http_server.h"
#include "../daemon/log.h"

#include <boost/asio/post.hpp>
#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

using namespace apikeyd;
using namespace std::chrono_literals;

namespace {

// Answers with what it received, so tests can see what the server handed over.
Response echo(const Request &r) {
    Response out;
    out.status = r.target.rfind("/created", 0) == 0 ? 201 : 200;
    out.body = nlohmann::json{{"method", r.method},
                              {"target", r.target},
                              {"authorization", r.authorization ? *r.authorization : "<none>"},
                              {"body_size", r.body.size()}}
                   .dump();
    return out;
}

class Server {
public:
    explicit Server(ServerOptions options = {}) {
        // What the server answers itself, for /metrics; read after stop() (same thread).
        if (!options.on_refused)
            options.on_refused = [this](std::string_view target, unsigned status) {
                refused.emplace_back(std::string(target), status);
            };
        set_log_enabled(false);
        server_ = std::make_unique<HttpServer>(ioc_, options, echo);
        server_->start();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~Server() {
        if (thread_.joinable()) stop();
    }
    std::uint16_t port() const { return server_->port(); }

    // Stops as SIGTERM would; returns how long it took.
    std::chrono::milliseconds stop(std::chrono::milliseconds grace = 2000ms) {
        const auto start = std::chrono::steady_clock::now();
        boost::asio::post(ioc_, [this, grace] { server_->stop(grace, [this] { ioc_.stop(); }); });
        thread_.join();
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
    }

    std::vector<std::pair<std::string, unsigned>> refused;

private:
    boost::asio::io_context ioc_;
    std::unique_ptr<HttpServer> server_;
    std::thread thread_;
};

class Client {
public:
    explicit Client(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        BOOST_REQUIRE(fd_ >= 0);
        timeval tv{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        BOOST_REQUIRE(::connect(fd_, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0);
    }
    ~Client() { ::close(fd_); }

    // Returns false when the peer stopped accepting data.
    bool send(const std::string &data) {
        std::size_t off = 0;
        while (off < data.size()) {
            const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return false;
            off += static_cast<std::size_t>(n);
        }
        return true;
    }

    // Reads until EOF (or the 5 s receive timeout, which the tests treat as a failure).
    std::string read_all(bool *timed_out = nullptr) {
        std::string out;
        char buf[65536];
        while (true) {
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n > 0) {
                out.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (timed_out) *timed_out = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
            return out;
        }
    }

    // Reads until `marker` has been seen.
    std::string read_until(const std::string &marker) {
        std::string out;
        char buf[4096];
        while (out.find(marker) == std::string::npos) {
            const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        return out;
    }

private:
    int fd_ = -1;
};

std::string body_of(const std::string &response) {
    const auto end = response.find("\r\n\r\n");
    return end == std::string::npos ? "" : response.substr(end + 4);
}

std::string error_code_of(const std::string &response) {
    const auto j = nlohmann::json::parse(body_of(response), nullptr, false);
    if (!j.is_object() || !j.contains("error")) return "";
    return j["error"]["code"].get<std::string>();
}

std::size_t count(const std::string &haystack, const std::string &needle) {
    std::size_t n = 0;
    for (auto pos = haystack.find(needle); pos != std::string::npos;
         pos = haystack.find(needle, pos + 1))
        ++n;
    return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_http)

BOOST_AUTO_TEST_CASE(request_is_handed_over_and_answered_as_json) {
    Server server;
    Client c(server.port());
    c.send("POST /created?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc\r\n"
           "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
    const std::string r = c.read_all();
    BOOST_TEST(r.rfind("HTTP/1.1 201 Created\r\n", 0) == 0u, r);
    BOOST_TEST(r.find("Server: apikeyd\r\n") != std::string::npos);
    BOOST_TEST(r.find("Content-Type: application/json\r\n") != std::string::npos);
    BOOST_TEST(r.find("Cache-Control: no-store\r\n") != std::string::npos);
    BOOST_TEST(r.find("Connection: close\r\n") != std::string::npos);
    const auto j = nlohmann::json::parse(body_of(r));
    BOOST_TEST(j["method"] == "POST");
    BOOST_TEST(j["target"] == "/created?x=1");
    BOOST_TEST(j["authorization"] == "Bearer abc");
    BOOST_TEST(j["body_size"] == 5);
}

BOOST_AUTO_TEST_CASE(keep_alive_and_pipelining) {
    Server server;
    Client c(server.port());
    c.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    const std::string r = c.read_all();
    BOOST_TEST(count(r, "HTTP/1.1 200 OK") == 3u, r);
    BOOST_TEST(r.find("\"target\":\"/c\"") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(head_gets_headers_only) {
    Server server;
    Client c(server.port());
    c.send("HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    const std::string r = c.read_all();
    BOOST_TEST(r.rfind("HTTP/1.1 200", 0) == 0u);
    BOOST_TEST(r.find("Content-Length: ") != std::string::npos);
    BOOST_TEST(body_of(r).empty());
}

BOOST_AUTO_TEST_CASE(oversized_bodies_get_413) {
    ServerOptions options;
    options.max_body_bytes = 1024;
    Server server(options);
    const std::string big(1025, 'x');
    // Announced with Content-Length (refused before the body is read), with and without
    // Expect: 100-continue, and chunked (refused while reading).
    const std::string requests[] = {
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n" + big,
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\nExpect: 100-continue\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n" + big + "\r\n0\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n" + std::string(300000, 'y'),
    };
    for (const auto &request : requests) {
        Client c(server.port());
        c.send(request);
        const std::string r = c.read_all();
        BOOST_TEST_INFO(request.substr(0, 80));
        BOOST_TEST(r.rfind("HTTP/1.1 413", 0) == 0u);
        BOOST_TEST(error_code_of(r) == "payload_too_large");
        BOOST_TEST(r.find("Connection: close") != std::string::npos);
    }
    // Exactly at the limit is fine.
    Client c(server.port());
    c.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n" +
           std::string(1024, 'x'));
    BOOST_TEST(c.read_all().rfind("HTTP/1.1 200", 0) == 0u);
}

// A route with its own, larger limit (the key import): only that route gets it.
BOOST_AUTO_TEST_CASE(a_request_can_have_its_own_body_limit_or_be_refused_at_its_header) {
    ServerOptions options;
    options.max_body_bytes = 1024;
    int asked = 0;
    options.admit_body = [&asked](const Request &header, std::optional<std::uint64_t>) {
        ++asked;
        BodyAdmission admission{1024, std::nullopt};
        if (header.method == "POST" && header.target == "/big") {
            if (header.authorization == "Bearer good")
                admission.limit = 8192;
            else
                admission.refusal = error_response(401, code::unauthorized, "no token");
        }
        return admission;
    };
    Server server(options);
    auto status_of = [&](const std::string &request) {
        Client c(server.port());
        c.send(request);
        const std::string r = c.read_all();
        return r.substr(9, 3) + (r.rfind("HTTP/1.1 2", 0) == 0 ? "" : " " + error_code_of(r));
    };
    const std::string body(5000, 'x');
    const std::string good = "Authorization: Bearer good\r\n";
    BOOST_TEST(status_of("POST /big HTTP/1.1\r\nHost: a\r\n" + good + "Content-Length: 5000\r\n"
                         "Connection: close\r\n\r\n" + body) == "200");
    // Refused at the header, the body unread: without the token the route asks for, or
    // with two Authorization headers (which one would count?).
    for (const std::string auth : {"", "Authorization: Bearer bad\r\n"})
        BOOST_TEST(status_of("POST /big HTTP/1.1\r\nHost: a\r\n" + auth + "Content-Length: 5000\r\n"
                             "Connection: close\r\n\r\n" + body) == "401 unauthorized");
    const int before = asked;
    BOOST_TEST(status_of("POST /big HTTP/1.1\r\nHost: a\r\n" + good + good +
                         "Content-Length: 5000\r\nConnection: close\r\n\r\n" + body) ==
               "400 bad_request");
    BOOST_TEST(asked == before);
    BOOST_TEST(status_of("POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n"
                         "Connection: close\r\n\r\n" + body) == "413 payload_too_large");
    BOOST_TEST(status_of("PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n"
                         "Connection: close\r\n\r\n" + body) == "413 payload_too_large");
    BOOST_TEST(status_of("POST /big HTTP/1.1\r\nHost: a\r\n" + good + "Content-Length: 8193\r\n\r\n") ==
               "413 payload_too_large");
    // Chunked: counted as it arrives, against the request's limit.
    BOOST_TEST(status_of("POST /big HTTP/1.1\r\nHost: a\r\n" + good + "Transfer-Encoding: chunked\r\n"
                         "Connection: close\r\n\r\n1388\r\n" + body + "\r\n0\r\n\r\n") == "200");
    BOOST_TEST(status_of("POST /big HTTP/1.1\r\nHost: a\r\n" + good + "Transfer-Encoding: chunked\r\n\r\n"
                         "1388\r\n" + body + "\r\n1388\r\n" + body + "\r\n0\r\n\r\n") ==
               "413 payload_too_large");
    // The 413's message names the request's limit.
    Client c(server.port());
    c.send("POST /big HTTP/1.1\r\nHost: a\r\n" + good + "Content-Length: 9000\r\n\r\n");
    BOOST_TEST(c.read_all().find("larger than 8192 bytes") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(expect_100_continue) {
    Server server;
    Client c(server.port());
    c.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
           "Connection: close\r\n\r\n");
    const std::string interim = c.read_until("\r\n\r\n");
    BOOST_TEST(interim == "HTTP/1.1 100 Continue\r\n\r\n");
    c.send("body");
    const std::string r = c.read_all();
    BOOST_TEST(r.rfind("HTTP/1.1 200", 0) == 0u);
    BOOST_TEST(nlohmann::json::parse(body_of(r))["body_size"] == 4);
}

BOOST_AUTO_TEST_CASE(malformed_http_gets_400_json_and_close) {
    Server server;
    const std::string requests[] = {
        "GARBAGE\r\n\r\n",
        "GET /x HTTP/9.9\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    };
    for (const auto &request : requests) {
        Client c(server.port());
        c.send(request);
        const std::string r = c.read_all();
        BOOST_TEST_INFO(request);
        BOOST_TEST(r.rfind("HTTP/1.1 400", 0) == 0u);
        BOOST_TEST(error_code_of(r) == "bad_request");
    }
    Client c(server.port());
    c.send("GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n"
           "Connection: close\r\n\r\n");
    const std::string r = c.read_all();
    BOOST_TEST(r.rfind("HTTP/1.1 400", 0) == 0u);
    BOOST_TEST(error_code_of(r) == "bad_request");
}

BOOST_AUTO_TEST_CASE(what_rfc_9112_refuses_or_accepts) {
    Server server;
    struct Case {
        const char *request;
        const char *status;  // the status line's start
        const char *code;    // error code, or the target handed over for a 200
    };
    const Case cases[] = {
        {"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 400", "bad_request"},
        {"GET /x HTTP/1.0\r\n\r\n", "HTTP/1.0 200", "/x"},
        {"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         "5\r\nhello\r\n0\r\n\r\n",
         "HTTP/1.1 501", "not_implemented"},
        {"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
         "\r\n5\r\nhello\r\n0\r\n\r\n",
         "HTTP/1.1 501", "not_implemented"},
        {"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\nConnection: close\r\n\r\n"
         "5\r\nhello\r\n0\r\n\r\n",
         "HTTP/1.1 200", "/x"},
        // A content coding apikeyd does not decode: 415, rather than a gzip body read as
        // JSON (an import of it answered "not a JSON object" for each of its "lines") or a
        // plain body labelled gzip taken as if the label were not there. identity is none.
        {"POST /x HTTP/1.1\r\nHost: a\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
         "HTTP/1.1 415", "unsupported_media_type"},
        {"POST /x HTTP/1.1\r\nHost: a\r\nContent-Encoding: identity, br\r\nContent-Length: 2\r\n\r\n{}",
         "HTTP/1.1 415", "unsupported_media_type"},
        {"POST /x HTTP/1.1\r\nHost: a\r\nContent-Encoding: identity\r\nContent-Encoding: deflate\r\n"
         "Content-Length: 2\r\n\r\n{}",
         "HTTP/1.1 415", "unsupported_media_type"},
        {"POST /x HTTP/1.1\r\nHost: a\r\nContent-Encoding:  Identity \r\nContent-Length: 2\r\n"
         "Connection: close\r\n\r\n{}",
         "HTTP/1.1 200", "/x"},
        {"GET http://127.0.0.1:8088/api/v1/workspaces?limit=1 HTTP/1.1\r\nHost: a\r\n"
         "Connection: close\r\n\r\n",
         "HTTP/1.1 200", "/api/v1/workspaces?limit=1"},
        {"GET HTTPS://host HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "HTTP/1.1 200", "/"},
    };
    for (const auto &c : cases) {
        Client client(server.port());
        client.send(c.request);
        const std::string r = client.read_all();
        BOOST_TEST_INFO(c.request);
        BOOST_TEST(r.rfind(c.status, 0) == 0u, r);
        if (std::string_view(c.status).substr(9) == "200") {
            const auto j = nlohmann::json::parse(body_of(r), nullptr, false);
            BOOST_TEST((j.is_object() && j["target"] == c.code), r);
        } else {
            BOOST_TEST(error_code_of(r) == c.code);
        }
    }
}

BOOST_AUTO_TEST_CASE(huge_headers_get_431) {
    Server server;
    Client c(server.port());
    c.send("GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(20000, 'h') + "\r\n\r\n");
    const std::string r = c.read_all();
    BOOST_TEST(r.rfind("HTTP/1.1 431", 0) == 0u);
    BOOST_TEST(error_code_of(r) == "headers_too_large");
    // A request line longer than the whole header's limit: 414.
    Client c2(server.port());
    c2.send("GET /x?q=" + std::string(20000, 'q') + " HTTP/1.1\r\nHost: a\r\n\r\n");
    const std::string r2 = c2.read_all();
    BOOST_TEST(r2.rfind("HTTP/1.1 414", 0) == 0u, r2.substr(0, 200));
    BOOST_TEST(error_code_of(r2) == "uri_too_long");
}

BOOST_AUTO_TEST_CASE(slow_requests_are_cut_off) {
    ServerOptions options;
    options.read_timeout = 300ms;
    Server server(options);
    Client c(server.port());
    const auto start = std::chrono::steady_clock::now();
    c.send("GET /x HTTP/1.1\r\nHost: a\r\n");  // never finished
    bool timed_out = true;
    c.read_all(&timed_out);
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(!timed_out);  // the server closed, the client did not give up
    BOOST_TEST((took < 3s));

    // A trickle of bytes does not extend the deadline.
    Client slow(server.port());
    const auto start2 = std::chrono::steady_clock::now();
    bool closed = false;
    for (int i = 0; i < 40 && !closed; ++i) {
        closed = !slow.send("X");
        std::this_thread::sleep_for(25ms);
    }
    slow.read_all();
    BOOST_TEST((std::chrono::steady_clock::now() - start2 < 3s));
}

BOOST_AUTO_TEST_CASE(stop_closes_idle_connections_and_returns) {
    Server server;
    Client idle(server.port());
    idle.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n");  // keep-alive, then idle
    const std::string first = idle.read_until("}");
    BOOST_TEST(first.rfind("HTTP/1.1 200", 0) == 0u);
    Client silent(server.port());  // connected, never sends
    std::this_thread::sleep_for(50ms);
    BOOST_TEST((server.stop(5000ms) < 1000ms));
    bool timed_out = true;
    idle.read_all(&timed_out);
    BOOST_TEST(!timed_out);  // closed by the server
}

BOOST_AUTO_TEST_CASE(bind_failure_names_the_address) {
    Server server;
    boost::asio::io_context ioc;
    ServerOptions options;
    options.port = server.port();  // taken
    try {
        HttpServer second(ioc, options, echo);
        BOOST_FAIL("no error");
    } catch (const std::runtime_error &e) {
        BOOST_TEST(std::string(e.what()).find("127.0.0.1:" + std::to_string(server.port())) !=
                   std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(answers_the_server_gives_itself_are_reported) {
    ServerOptions options;
    options.max_body_bytes = 1024;
    Server server(options);
    {
        Client c(server.port());
        c.send("GARBAGE\r\n\r\n");
        c.read_all();
    }
    {
        Client c(server.port());
        c.send("POST /api/v1/workspaces HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n");
        c.read_all();
    }
    {
        Client c(server.port());
        c.send("GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n"
               "Connection: close\r\n\r\n");
        c.read_all();
    }
    {
        Client c(server.port());  // handled: not reported
        c.send("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        c.read_all();
    }
    server.stop();
    std::string seen;
    for (const auto &[target, status] : server.refused) seen += target + " " + std::to_string(status) + ";";
    BOOST_TEST(seen == " 400;/api/v1/workspaces 413;/x 400;");
}

BOOST_AUTO_TEST_SUITE_END()
