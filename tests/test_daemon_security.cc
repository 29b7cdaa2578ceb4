// Security properties of apikeyd below the integration tests: failed admin auth is
// logged (address, never the token) and rate limited per address with bounded memory;
// admin tokens compare by hash; no raw key or admin token is ever written to the store or
// the snapshot; TLS config validation; a listen beyond loopback needs TLS; files are
// private; the HTTP server survives slow, idle and TLS-less clients.
#include "../daemon/auth_limiter.h"
#include "../daemon/config.h"
#include "../daemon/http_server.h"
#include "../daemon/log.h"
#include "../daemon/tls.h"
#include "daemon_fixture.h"

#include <boost/asio/post.hpp>
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

using namespace apikeyd;
using namespace apikey::test;
using namespace std::chrono_literals;

namespace {

std::string slurp(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void spit(const std::string &path, const std::string &text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

// Captures what apikeyd logs (stderr) while alive.
class LogCapture {
public:
    explicit LogCapture(const TempDir &dir) : path_(dir.sub("captured.log")) {
        std::fflush(stderr);
        saved_ = ::dup(2);
        const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(fd, 2);
        ::close(fd);
        set_log_enabled(true);
    }
    ~LogCapture() { restore(); }
    std::string text() {
        restore();
        return slurp(path_);
    }

private:
    void restore() {
        if (saved_ < 0) return;
        set_log_enabled(false);
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        saved_ = -1;
    }
    std::string path_;
    int saved_ = -1;
};

Response call_from(DaemonFixture &f, const std::string &peer, const std::string &auth,
                   std::string_view target = "/api/v1/workspaces") {
    Request request;
    request.method = "GET";
    request.target = target;
    request.authorization = auth;
    request.peer = peer;
    return f.api->handle(request);
}

const std::string kGood = std::string("Bearer ") + kAdminToken;

mode_t mode_of(const std::string &path) {
    struct stat st {};
    BOOST_REQUIRE_MESSAGE(::stat(path.c_str(), &st) == 0, "stat " + path);
    return st.st_mode & 07777;
}

// A self-signed certificate and key made by the openssl command (a Debian package, see
// scripts/install-deps.sh).
void make_cert(const std::string &cert, const std::string &key) {
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                            "-keyout " + key + " -out " + cert + " >/dev/null 2>&1";
    BOOST_REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "openssl req failed");
}

std::string config_error(const std::string &path) {
    try {
        load_config(path);
    } catch (const ConfigError &e) {
        return e.what();
    }
    return "";
}

std::string minimal_yaml(const std::string &listen, const std::string &extra = "") {
    return "listen: \"" + listen + "\"\n"
           "data_dir: data\n"
           "snapshot_path: snapshot\n"
           "admin_tokens:\n"
           "  - name: ops\n"
           "    token_sha256: 6f2c014d35c913bade57156ae7d84d634382689147680b19e34ff7651927dd1f\n" +
           extra;
}

class Server {
public:
    explicit Server(ServerOptions options) {
        set_log_enabled(false);
        server_ = std::make_unique<HttpServer>(ioc_, options, [](const Request &r) {
            Response out;
            out.body = "{\"peer\":\"" + std::string(r.peer) + "\"}";
            return out;
        });
        server_->start();
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~Server() {
        boost::asio::post(ioc_, [this] { server_->stop(500ms, [this] { ioc_.stop(); }); });
        thread_.join();
    }
    std::uint16_t port() const { return server_->port(); }

private:
    boost::asio::io_context ioc_;
    std::unique_ptr<HttpServer> server_;
    std::thread thread_;
};

int connect_to(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0);
    return fd;
}

void send_all(int fd, const std::string &s) { (void)::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_security)

BOOST_AUTO_TEST_CASE(auth_limiter_blocks_after_n_failures_per_address) {
    AuthLimiter l({3, 60, 100});
    BOOST_TEST(!l.record_failure("10.0.0.1", 1000));
    BOOST_TEST(!l.record_failure("10.0.0.1", 1001));
    BOOST_TEST(l.blocked_for("10.0.0.1", 1001) == 0);
    BOOST_TEST(l.record_failure("10.0.0.1", 1002));  // the third blocks
    BOOST_TEST(l.blocked_for("10.0.0.1", 1002) == 60);
    BOOST_TEST(l.blocked_for("10.0.0.1", 1061) == 1);
    BOOST_TEST(l.blocked_for("10.0.0.1", 1062) == 0);  // over
    BOOST_TEST(l.blocked_for("10.0.0.2", 1002) == 0);  // others unaffected
    BOOST_TEST(!l.record_failure("10.0.0.1", 1062));   // a fresh window
    // Failures spread wider than the window never block.
    AuthLimiter w({3, 10, 100});
    for (int i = 0; i < 10; ++i) BOOST_TEST(!w.record_failure("a", 1000 + i * 6));
    // 0 disables; an unknown address is never limited.
    AuthLimiter off({0, 60, 100});
    for (int i = 0; i < 10; ++i) BOOST_TEST(!off.record_failure("a", 1000));
    BOOST_TEST(!l.record_failure("", 1000));
    BOOST_TEST(l.blocked_for("", 1000) == 0);
}

BOOST_AUTO_TEST_CASE(auth_limiter_counts_ipv6_per_64) {
    BOOST_TEST(AuthLimiter::key_of("192.0.2.1") == "192.0.2.1");
    BOOST_TEST(AuthLimiter::key_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64");
    BOOST_TEST(AuthLimiter::key_of("::ffff:192.0.2.1") == "::ffff:192.0.2.1");
    AuthLimiter l({2, 60, 100});
    BOOST_TEST(!l.record_failure("2001:db8::1", 1000));
    BOOST_TEST(l.record_failure("2001:db8::2", 1000));  // same /64
    BOOST_TEST(l.blocked_for("2001:db8::ffff", 1000) == 60);
    BOOST_TEST(l.blocked_for("2001:db8:0:1::1", 1000) == 0);  // another /64
}

BOOST_AUTO_TEST_CASE(auth_limiter_table_is_bounded_and_keeps_blocks) {
    AuthLimiter l({2, 60, 50});
    l.record_failure("blocked", 1000);
    BOOST_TEST(l.record_failure("blocked", 1000));
    for (int i = 0; i < 1000; ++i) l.record_failure("addr-" + std::to_string(i), 1001);
    BOOST_TEST(l.size() <= 50u);
    BOOST_TEST(l.blocked_for("blocked", 1001) > 0);  // the block outlived the crowd
    // Expired entries go first.
    for (int i = 0; i < 1000; ++i) l.record_failure("late-" + std::to_string(i), 5000);
    BOOST_TEST(l.size() <= 50u);
}

BOOST_AUTO_TEST_CASE(api_rate_limits_failed_admin_auth_per_address) {
    DaemonFixture f;
    f.api->set_auth_limit({3, 60, 100});
    LogCapture capture(f.dir);
    const std::string wrong = "Bearer not-the-admin-token-SECRETVALUE";
    for (int i = 0; i < 3; ++i) BOOST_TEST(call_from(f, "192.0.2.7", wrong).status == 401u);
    const Response blocked = call_from(f, "192.0.2.7", wrong);
    BOOST_TEST(blocked.status == 429u);
    BOOST_TEST(DaemonFixture::json_of(blocked)["error"]["code"] == "too_many_requests");
    bool retry_after = false;
    for (const auto &[name, value] : blocked.headers)
        if (name == "Retry-After") retry_after = value == "60";
    BOOST_TEST(retry_after);
    // While blocked, even the right token is refused from there...
    BOOST_TEST(call_from(f, "192.0.2.7", kGood).status == 429u);
    // ...while other addresses, and /healthz, are unaffected.
    BOOST_TEST(call_from(f, "192.0.2.8", kGood).status == 200u);
    BOOST_TEST(call_from(f, "192.0.2.7", kGood, "/healthz").status == 200u);
    f.now += 61;
    BOOST_TEST(call_from(f, "192.0.2.7", kGood).status == 200u);
    // Successes do not count; a missing header counts like a wrong one.
    for (int i = 0; i < 10; ++i) BOOST_TEST(call_from(f, "192.0.2.9", kGood).status == 200u);

    const std::string log = capture.text();
    BOOST_TEST(log.find("admin authentication failed peer=192.0.2.7 reason=invalid_token") !=
               std::string::npos);
    BOOST_TEST(log.find("admin authentication blocked peer=192.0.2.7") != std::string::npos);
    BOOST_TEST(log.find("SECRETVALUE") == std::string::npos);
    BOOST_TEST(log.find(kAdminToken) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(admin_tokens_compare_by_hash) {
    // The Api holds only SHA-256 digests (AdminToken has no raw token), compared with
    // apikey::digest_equal (constant time) against every configured token, no early exit.
    const apikey::Digest a = apikey::sha256("token-a"), b = apikey::sha256("token-b");
    BOOST_TEST(apikey::digest_equal(a, a));
    BOOST_TEST(!apikey::digest_equal(a, b));
    apikey::Digest last_bit = a;
    last_bit[31] ^= 1;
    BOOST_TEST(!apikey::digest_equal(a, last_bit));
    DaemonFixture f;
    const std::string token = kAdminToken;
    for (const std::string &near :
         {token.substr(0, token.size() - 1), token + "x", std::string("x") + token.substr(1),
          apikey::to_hex(apikey::sha256(token))})  // the hash itself is no token
        BOOST_TEST(f.call("GET", "/api/v1/workspaces", {}, "Bearer " + near).status == 401u);
    BOOST_TEST(f.call("GET", "/api/v1/workspaces", {}, "Bearer second-token-abcdefgh").status == 200u);
}

BOOST_AUTO_TEST_CASE(no_raw_key_or_token_in_store_or_snapshot_files) {
    DaemonFixture f;
    const auto ws = f.create_workspace("acme", "sales");
    std::vector<nlohmann::json> keys;
    for (int i = 0; i < 5; ++i)
        keys.push_back(f.create_key(ws["id"].get<std::string>(), {{"name", "k" + std::to_string(i)}}));
    f.call("DELETE", "/api/v1/workspaces/" + ws["id"].get<std::string>() + "/api-keys/" +
                         keys[0]["id"].get<std::string>());
    f.close();  // everything on disk
    const std::string store = slurp(f.store_dir() + "/data.mdb");
    const std::string snapshot = slurp(f.snapshot_dir() + "/data.mdb");
    BOOST_REQUIRE(!store.empty());
    BOOST_REQUIRE(!snapshot.empty());
    for (const auto &k : keys) {
        const std::string raw = k["key"];
        const std::string prefix = k["key_prefix"];
        BOOST_TEST(raw.rfind(prefix, 0) == 0u);
        BOOST_TEST(prefix.size() < raw.size());
        for (const std::string *file : {&store, &snapshot}) {
            BOOST_TEST(file->find(raw) == std::string::npos);
            // Not even the random part without the fixed sk_live_ start.
            BOOST_TEST(file->find(raw.substr(8)) == std::string::npos);
        }
        BOOST_TEST(store.find(prefix) != std::string::npos);  // only the prefix is kept
    }
    for (const std::string *file : {&store, &snapshot})
        BOOST_TEST(file->find(kAdminToken) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(store_and_snapshot_files_are_private) {
    const mode_t old = ::umask(0);  // the worst umask: modes must be explicit
    {
        DaemonFixture f;
        for (const std::string &p : {f.store_dir(), f.snapshot_dir()})
            BOOST_TEST(mode_of(p) == 0700u, p);
        for (const std::string &p : {f.store_dir() + "/data.mdb", f.store_dir() + "/lock.mdb",
                                    f.store_dir() + "/apikeyd.lock", f.snapshot_dir() + "/data.mdb",
                                    f.snapshot_dir() + "/lock.mdb"})
            BOOST_TEST(mode_of(p) == 0600u, p);
    }
    ::umask(old);
}

BOOST_AUTO_TEST_CASE(listen_beyond_loopback_needs_tls) {
    BOOST_TEST(is_loopback_host("127.0.0.1"));
    BOOST_TEST(is_loopback_host("127.3.4.5"));
    BOOST_TEST(is_loopback_host("::1"));
    BOOST_TEST(!is_loopback_host("0.0.0.0"));
    BOOST_TEST(!is_loopback_host("::"));
    BOOST_TEST(!is_loopback_host("10.1.2.3"));
    BOOST_TEST(!is_loopback_host("128.0.0.1"));
    for (const char *listen : {"0.0.0.0:8088", "192.0.2.1:8088", "[::]:8088"}) {
        try {
            parse_config(minimal_yaml(listen), "/etc/apikeyd");
            BOOST_ERROR(std::string("accepted ") + listen);
        } catch (const ConfigError &e) {
            const std::string what = e.what();
            BOOST_TEST(what.find("listen: ") == 0u, what);
            BOOST_TEST(what.find("not a loopback address") != std::string::npos, what);
            BOOST_TEST(what.find("tls") != std::string::npos, what);
        }
    }
    const Config c = parse_config(
        minimal_yaml("0.0.0.0:8088", "tls:\n  cert_file: c.pem\n  key_file: /k.pem\n"), "/etc/apikeyd");
    BOOST_REQUIRE(c.tls);
    BOOST_TEST(c.tls->cert_file == "/etc/apikeyd/c.pem");
    BOOST_TEST(c.tls->key_file == "/k.pem");
}

BOOST_AUTO_TEST_CASE(tls_and_auth_limit_keys_are_validated) {
    auto error_of = [](const std::string &extra) {
        try {
            parse_config(minimal_yaml("127.0.0.1:1", extra), "/etc");
        } catch (const ConfigError &e) {
            return std::string(e.what());
        }
        return std::string();
    };
    BOOST_TEST(error_of("tls: yes\n").rfind("tls:", 0) == 0u);
    BOOST_TEST(error_of("tls:\n  cert_file: a\n").rfind("tls.key_file: is required", 0) == 0u);
    BOOST_TEST(error_of("tls:\n  key_file: a\n").rfind("tls.cert_file: is required", 0) == 0u);
    BOOST_TEST(error_of("tls:\n  cert_file: a\n  key_file: b\n  ca: c\n").rfind("tls.ca: unknown", 0) == 0u);
    BOOST_TEST(error_of("auth_rate_limit:\n  max_failures: -1\n").rfind("auth_rate_limit.max_failures", 0) == 0u);
    BOOST_TEST(error_of("auth_rate_limit:\n  window_seconds: 0\n").rfind("auth_rate_limit.window_seconds", 0) == 0u);
    BOOST_TEST(error_of("auth_rate_limit:\n  burst: 1\n").rfind("auth_rate_limit.burst: unknown", 0) == 0u);
    BOOST_TEST(error_of("max_connections: 0\n").rfind("max_connections", 0) == 0u);
    const Config c = parse_config(
        minimal_yaml("127.0.0.1:1", "auth_rate_limit:\n  max_failures: 5\n  window_seconds: 30\n"
                                    "max_connections: 7\nheader_timeout_seconds: 2\n"
                                    "request_timeout_seconds: 3\n"), "/etc");
    BOOST_TEST(c.auth_limit.max_failures == 5u);
    BOOST_TEST(c.auth_limit.window_seconds == 30u);
    BOOST_TEST(c.max_connections == 7u);
    BOOST_TEST(c.header_timeout_seconds == 2u);
    BOOST_TEST(c.request_timeout_seconds == 3u);
    BOOST_TEST(error_of("header_timeout_seconds: 0\n").rfind("header_timeout_seconds", 0) == 0u);
    BOOST_TEST(error_of("request_timeout_seconds: 3601\n").rfind("request_timeout_seconds", 0) == 0u);
    const Config d = parse_config(minimal_yaml("127.0.0.1:1"), "/etc");
    BOOST_TEST(d.auth_limit.max_failures == 10u);
    BOOST_TEST(d.auth_limit.window_seconds == 60u);
}

BOOST_AUTO_TEST_CASE(tls_files_are_checked_at_load) {
    TempDir dir;
    const std::string cert = dir.sub("cert.pem"), key = dir.sub("key.pem");
    make_cert(cert, key);
    const std::string other_cert = dir.sub("other.pem"), other_key = dir.sub("other-key.pem");
    make_cert(other_cert, other_key);
    spit(dir.sub("garbage.pem"), "not a certificate\n");
    spit(dir.sub("empty.pem"), "");
    auto with_tls = [&](const std::string &c, const std::string &k) {
        const std::string path = dir.sub("apikeyd.yaml");
        spit(path, minimal_yaml("0.0.0.0:8088", "tls:\n  cert_file: " + c + "\n  key_file: " + k + "\n"));
        return config_error(path);
    };
    BOOST_TEST(with_tls(cert, key) == "");
    BOOST_TEST(with_tls("cert.pem", "key.pem") == "");  // relative to the file
    auto has = [](const std::string &what, const std::string &part) {
        const bool ok = what.find(part) != std::string::npos;
        if (!ok) BOOST_TEST_MESSAGE("message: " + what);
        return ok;
    };
    BOOST_TEST(has(with_tls(dir.sub("missing.pem"), key), "tls.cert_file: cannot read"));
    BOOST_TEST(has(with_tls(cert, dir.sub("missing.pem")), "tls.key_file: cannot read"));
    BOOST_TEST(has(with_tls(dir.sub("empty.pem"), key), "tls.cert_file: "));
    BOOST_TEST(has(with_tls(dir.sub("garbage.pem"), key), "tls.cert_file: " + dir.sub("garbage.pem") +
                                                             " is not a PEM certificate"));
    BOOST_TEST(has(with_tls(cert, dir.sub("garbage.pem")), "is not a PEM private key"));
    BOOST_TEST(has(with_tls(cert, cert), "is not a PEM private key"));
    BOOST_TEST(has(with_tls(cert, other_key), "does not match the certificate"));
    if (::geteuid() != 0) {  // root reads anything
        ::chmod(key.c_str(), 0);
        BOOST_TEST(has(with_tls(cert, key), "tls.key_file: cannot read"));
    }
}

BOOST_AUTO_TEST_CASE(plain_http_to_a_tls_port_is_closed_and_the_peer_is_handed_over) {
    TempDir dir;
    const std::string cert = dir.sub("cert.pem"), key = dir.sub("key.pem");
    make_cert(cert, key);
    ServerOptions options;
    options.tls = make_tls_context({cert, key});
    options.header_timeout = 2s;
    Server server(options);
    const int fd = connect_to(server.port());
    send_all(fd, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    const auto start = std::chrono::steady_clock::now();
    const std::string answer = read_all(fd);
    ::close(fd);
    BOOST_TEST(answer.find("HTTP/1.1") == std::string::npos);  // no HTTP answer, no key
    BOOST_TEST((std::chrono::steady_clock::now() - start < 4s));

    ServerOptions plain;
    Server p(plain);
    const int c = connect_to(p.port());
    send_all(c, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    BOOST_TEST(read_all(c).find("{\"peer\":\"127.0.0.1\"}") != std::string::npos);
    ::close(c);
}

BOOST_AUTO_TEST_CASE(headers_must_arrive_within_header_timeout) {
    ServerOptions options;
    options.header_timeout = 300ms;
    options.read_timeout = 20s;
    Server server(options);
    const int fd = connect_to(server.port());
    const auto start = std::chrono::steady_clock::now();
    bool closed = false;
    for (int i = 0; i < 60 && !closed; ++i) {  // one header byte every 25 ms
        closed = ::send(fd, "X", 1, MSG_NOSIGNAL) <= 0;
        std::this_thread::sleep_for(25ms);
    }
    read_all(fd);
    ::close(fd);
    BOOST_TEST((std::chrono::steady_clock::now() - start < 1500ms));
    // An idle connection too.
    const int idle = connect_to(server.port());
    const auto start2 = std::chrono::steady_clock::now();
    read_all(idle);
    ::close(idle);
    BOOST_TEST((std::chrono::steady_clock::now() - start2 < 1500ms));
}

BOOST_AUTO_TEST_CASE(idle_connections_at_the_limit_make_room_for_a_client) {
    ServerOptions options;
    options.max_connections = 5;
    Server server(options);
    std::vector<int> idle;
    for (int i = 0; i < 5; ++i) idle.push_back(connect_to(server.port()));
    const int trickle = connect_to(server.port());  // evicts the oldest
    send_all(trickle, "GET /x HTTP/1.1\r\n");
    std::this_thread::sleep_for(100ms);
    for (int round = 0; round < 3; ++round) {
        const int c = connect_to(server.port());
        send_all(c, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        BOOST_TEST(read_all(c).rfind("HTTP/1.1 200", 0) == 0u);
        ::close(c);
    }
    // The first idle connection was the one closed.
    BOOST_TEST(read_all(idle[0]).empty());
    for (int fd : idle) ::close(fd);
    ::close(trickle);
}

BOOST_AUTO_TEST_SUITE_END()
