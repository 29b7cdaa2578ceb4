// loadclient: holds many concurrent HTTP/1.1 keep-alive connections to nginx (loopback
// only) for a bounded time, sends a known, deterministic mix of requests and checks
// *every* answer against what that request should get. Used by t/30, t/32, t/33 and
// t/34 (the load tests); built by the Makefile (build/tools/loadclient).
//
//   loadclient --port P --connections N --duration SECS [--rate R] [--timeout SECS]
//              --req CLASS METHOD PATH STATUS NEEDLE KEY   (repeatable, at least one)
//
// Request number i (over all connections) is the (i mod n)-th --req, so the mix is
// exact: every spec gets total/n requests, give or take one. A spec's KEY is sent as
// `Authorization: Bearer KEY`; `@unknown` makes a fresh well-formed, never issued key
// for each request (right shape and CRC32 checksum), `@malformed` a fresh key of a wrong
// shape or checksum, `@none` sends no Authorization header. A POST/PUT/PATCH sends the
// body `{}`. The answer matches when its status is STATUS and its body contains NEEDLE
// (`-`: no body check), e.g. `"code":"key_revoked"` or `"key_id":"<uuid>"`. STATUS and
// NEEDLE may list alternatives separated by `|` (one needle per status, or one for all):
// `200|429 '"key_id":"<uuid>"|"code":"rate_limited"'`; `ok_STATUS` counts each.
//
// --rate R paces the whole client to about R requests/s (each connection sends one
// request every N/R s); without it every connection sends its next request as soon as
// the previous answer is read. After --duration no request is started; the ones in
// flight are finished (each bounded by --timeout, 10 s by default).
//
// Transport failures: a refused/failed connect, a timeout, a reset or EOF in the middle
// of an answer, or an unparsable answer is a transport error of that request. The one
// exception is what any HTTP client retries: a request sent on a *reused* keep-alive
// connection that the server closed (EOF/reset before a single byte of the answer) --
// the server closed it while it was idle, as nginx does on reload or at
// keepalive_timeout, and the request never reached it. That request is sent again on a
// new connection (at most 3 times) and counted in `idle_close_retries`, not as an error.
// Before that, like a pooling HTTP client, a reused connection is checked (a
// non-blocking peek) before a request is sent on it: one the server already closed is
// replaced by a new connection (`idle_closes`), so only a close that crosses the request
// on the wire is left to the retry. An answer with `Connection: close` is fine too: the
// next request opens a new connection (`server_closes`).
//
// Output on stdout, one line per class (in order of first appearance) and a total:
//   class=NAME sent=N answered=N ok=N mismatch=N transport_errors=N ok_STATUS=N...
//   total sent=N answered=N ok=N mismatch=N transport_errors=N idle_close_retries=N
//         idle_closes=N server_closes=N connects=N peak_open=N elapsed=S rps=R p50_us=U p99_us=U max_us=U
// The first mismatches and transport errors are described on stderr. Exit status 0 when
// every request was answered as expected, 1 otherwise, 2 on a usage error.
#include <boost/asio.hpp>

#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

[[noreturn]] void usage(const char *msg) {
    std::fprintf(stderr, "loadclient: %s\n", msg);
    std::fprintf(stderr,
                 "usage: loadclient --port P --connections N --duration SECS [--rate R] "
                 "[--timeout SECS] [--host 127.0.0.1]\n"
                 "                  --req CLASS METHOD PATH STATUS NEEDLE KEY ...\n");
    std::exit(2);
}

// ---- keys -----------------------------------------------------------------------------

const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

std::uint32_t crc32(const std::string &s) {
    static std::array<std::uint32_t, 256> table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    std::uint32_t c = 0xFFFFFFFFu;
    for (unsigned char ch : s) c = table[(c ^ ch) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

std::string checksum(const std::string &body) {
    std::uint32_t v = crc32(body);
    std::string out(6, '0');
    for (int i = 5; i >= 0; --i) {
        out[i] = B62[v % 62];
        v /= 62;
    }
    return out;
}

std::mt19937_64 rng{std::random_device{}()};

std::string random_b62(std::size_t n) {
    std::string s(n, '0');
    for (auto &c : s) c = B62[rng() % 62];
    return s;
}

std::string unknown_key() {
    std::string body = "sk_live_" + random_b62(32);
    return body + checksum(body);
}

// Wrong checksum, length or prefix, in turn: all 401 malformed_key, before any lookup.
std::string malformed_key(std::uint64_t n) {
    std::string good = unknown_key();
    switch (n % 4) {
    case 0: {  // right shape, checksum off by one digit
        char &c = good[good.size() - 1];
        c = (c == 'z') ? '0' : (c == '9' ? 'A' : (c == 'Z' ? 'a' : c + 1));
        return good;
    }
    case 1: return good.substr(0, good.size() - 1);  // one character short
    case 2: return good + B62[rng() % 62];            // one character long
    default: return "sk_test_" + good.substr(8);      // other prefix
    }
}

// ---- specs and counters ---------------------------------------------------------------

// STATUS and NEEDLE may list alternatives, `200|429` with `"key_id":"..."|"code":"rate_limited"`:
// the answer must match one status and that status's needle (a single needle applies to
// every status).
struct Spec {
    std::string cls, method, path, key;
    std::vector<int> statuses;
    std::vector<std::string> needles;
    std::size_t cls_index = 0;
};

struct ClassStats {
    std::string name;
    std::uint64_t sent = 0, answered = 0, ok = 0, mismatch = 0, transport = 0;
    std::map<int, std::uint64_t> ok_by_status;  // matching answers per status
};

std::vector<std::string> split_alternatives(const std::string &s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        auto bar = s.find('|', start);
        out.push_back(s.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
        if (bar == std::string::npos) return out;
        start = bar + 1;
    }
}

struct Options {
    std::string host = "127.0.0.1";
    unsigned short port = 0;
    std::size_t connections = 0;
    double duration = 0, rate = 0, timeout = 10;
};

struct Shared {
    Options opt;
    std::vector<Spec> specs;
    std::vector<ClassStats> classes;
    tcp::endpoint endpoint;
    Clock::time_point start, deadline;
    std::uint64_t next_request = 0;
    std::uint64_t retries = 0, idle_closes = 0, server_closes = 0, connects = 0, malformed_seq = 0;
    std::size_t open = 0, peak_open = 0, active = 0;
    std::vector<std::uint32_t> latencies_us;
    int reported_mismatch = 0, reported_transport = 0;
};

// ---- one connection -------------------------------------------------------------------

class Conn : public std::enable_shared_from_this<Conn> {
public:
    Conn(asio::io_context &ioc, Shared &sh, std::size_t id)
        : ioc_(ioc), sh_(sh), id_(id), sock_(ioc), timer_(ioc), pace_(ioc) {}

    void start() {
        ++sh_.active;
        if (sh_.opt.rate > 0) {
            // spread the connections' first requests over one interval
            interval_ = std::chrono::duration_cast<Clock::duration>(
                std::chrono::duration<double>(sh_.opt.connections / sh_.opt.rate));
            next_at_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                interval_ * (static_cast<double>(id_) / sh_.opt.connections));
        }
        next();
    }

private:
    asio::io_context &ioc_;
    Shared &sh_;
    std::size_t id_;
    tcp::socket sock_;
    asio::steady_timer timer_, pace_;
    Clock::duration interval_{};
    Clock::time_point next_at_{}, sent_at_{};
    bool connected_ = false;
    std::uint64_t answers_on_conn_ = 0;  // answers read on the current connection
    const Spec *spec_ = nullptr;
    int attempts_ = 0;
    std::string req_, buf_;
    std::array<char, 16384> rd_{};
    bool timed_out_ = false;
    std::uint64_t gen_ = 0;  // invalidates stale timer callbacks

    void finish() {
        close();
        --sh_.active;
    }

    void close() {
        if (connected_) --sh_.open;
        connected_ = false;
        error_code ec;
        sock_.shutdown(tcp::socket::shutdown_both, ec);
        sock_.close(ec);
        answers_on_conn_ = 0;
    }

    // Picks the next request (or stops after the deadline), paced when --rate is given.
    void next() {
        auto now = Clock::now();
        if (now >= sh_.deadline) return finish();
        if (sh_.opt.rate > 0 && next_at_ > now) {
            if (next_at_ >= sh_.deadline) return finish();
            pace_.expires_at(next_at_);
            pace_.async_wait([self = shared_from_this()](error_code) { self->issue(); });
            return;
        }
        issue();
    }

    void issue() {
        if (Clock::now() >= sh_.deadline) return finish();
        if (sh_.opt.rate > 0) next_at_ += interval_;
        spec_ = &sh_.specs[sh_.next_request++ % sh_.specs.size()];
        ++sh_.classes[spec_->cls_index].sent;
        attempts_ = 0;
        build_request();
        send();
    }

    void build_request() {
        std::string key = spec_->key;
        if (key == "@unknown") key = unknown_key();
        else if (key == "@malformed") key = malformed_key(sh_.malformed_seq++);
        req_.clear();
        req_ += spec_->method + " " + spec_->path + " HTTP/1.1\r\nHost: localhost\r\n";
        if (key != "@none") req_ += "Authorization: Bearer " + key + "\r\n";
        const std::string &m = spec_->method;
        if (m == "POST" || m == "PUT" || m == "PATCH")
            req_ += "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        else
            req_ += "\r\n";
    }

    void arm_timer() {
        timed_out_ = false;
        std::uint64_t g = ++gen_;
        timer_.expires_after(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(sh_.opt.timeout)));
        timer_.async_wait([self = shared_from_this(), g](error_code ec) {
            if (ec || g != self->gen_) return;
            self->timed_out_ = true;
            error_code ignore;
            self->sock_.cancel(ignore);
            self->sock_.close(ignore);
        });
    }

    // Like any pooling HTTP client, checks a reused connection before sending on it: if
    // the server closed it while it was idle (nginx on reload, at keepalive_timeout), a
    // new one is opened and nothing is lost. Only a close that crosses the request on the
    // wire is left for io_failed's retry.
    bool closed_while_idle() {
        char c;
        ssize_t n = ::recv(sock_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || n > 0;
    }

    void send() {
        ++attempts_;
        sent_at_ = Clock::now();
        arm_timer();
        if (connected_ && closed_while_idle()) {
            ++sh_.idle_closes;
            close();
        }
        if (connected_) return write();
        auto self = shared_from_this();
        sock_.async_connect(sh_.endpoint, [self](error_code ec) {
            if (ec) return self->transport_error("connect: " + ec.message(), true);
            self->connected_ = true;
            ++self->sh_.connects;
            if (++self->sh_.open > self->sh_.peak_open) self->sh_.peak_open = self->sh_.open;
            error_code ignore;
            self->sock_.set_option(tcp::no_delay(true), ignore);
            self->write();
        });
    }

    void write() {
        buf_.clear();
        auto self = shared_from_this();
        asio::async_write(sock_, asio::buffer(req_), [self](error_code ec, std::size_t) {
            if (ec) return self->io_failed("write", ec);
            self->read();
        });
    }

    void read() {
        auto self = shared_from_this();
        sock_.async_read_some(asio::buffer(rd_), [self](error_code ec, std::size_t n) {
            if (ec) return self->io_failed("read", ec);
            self->buf_.append(self->rd_.data(), n);
            self->parse();
        });
    }

    // A reused keep-alive connection closed by the server before any byte of the answer:
    // the request never reached it; send it again on a new connection.
    void io_failed(const char *what, const error_code &ec) {
        bool closed = ec == asio::error::eof || ec == asio::error::connection_reset ||
                      ec == asio::error::broken_pipe;
        if (!timed_out_ && closed && buf_.empty() && answers_on_conn_ > 0 && attempts_ <= 3) {
            ++sh_.retries;
            close();
            return send();
        }
        transport_error(std::string(what) + ": " +
                            (timed_out_ ? std::string("timeout") : ec.message()) +
                            (buf_.empty() ? "" : " (after " + std::to_string(buf_.size()) +
                                                     " bytes of the answer)"),
                        false);
    }

    void transport_error(const std::string &why, bool connect_failed) {
        ++gen_;
        timer_.cancel();
        ++sh_.classes[spec_->cls_index].transport;
        if (sh_.reported_transport++ < 10)
            std::fprintf(stderr, "transport error: conn %zu class %s attempt %d: %s\n", id_,
                         spec_->cls.c_str(), attempts_, why.c_str());
        close();
        if (connect_failed) {
            // do not spin on a refused port
            pace_.expires_after(std::chrono::milliseconds(50));
            pace_.async_wait([self = shared_from_this()](error_code) { self->next(); });
            return;
        }
        next();
    }

    static std::string lower(std::string s) {
        for (auto &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    }

    // Parses buf_; reads more until a whole answer is there.
    void parse() {
        auto head_end = buf_.find("\r\n\r\n");
        if (head_end == std::string::npos) {
            if (buf_.size() > 65536) return transport_error("answer head over 64 KiB", false);
            return read();
        }
        int status = 0;
        if (buf_.compare(0, 7, "HTTP/1.") != 0 || buf_.size() < 12 ||
            std::sscanf(buf_.c_str() + 9, "%3d", &status) != 1)
            return transport_error("bad status line: " + buf_.substr(0, buf_.find("\r\n")),
                                   false);
        bool http10 = buf_.compare(0, 8, "HTTP/1.0") == 0;
        long long content_length = -1;
        bool chunked = false, conn_close = http10, keep_alive = false;
        std::size_t pos = buf_.find("\r\n") + 2;
        while (pos < head_end) {
            std::size_t eol = buf_.find("\r\n", pos);
            std::string line = buf_.substr(pos, eol - pos);
            pos = eol + 2;
            auto colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string name = lower(line.substr(0, colon));
            std::string value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            std::string lv = lower(value);
            if (name == "content-length") content_length = std::atoll(value.c_str());
            else if (name == "transfer-encoding" && lv.find("chunked") != std::string::npos)
                chunked = true;
            else if (name == "connection") {
                if (lv.find("close") != std::string::npos) conn_close = true;
                if (lv.find("keep-alive") != std::string::npos) keep_alive = true;
            }
        }
        if (http10 && keep_alive) conn_close = false;
        std::size_t body_start = head_end + 4;
        std::string body;
        if (chunked) {
            std::size_t p = body_start;
            while (true) {
                std::size_t eol = buf_.find("\r\n", p);
                if (eol == std::string::npos) return read();
                long long len = std::strtoll(buf_.c_str() + p, nullptr, 16);
                if (len < 0) return transport_error("bad chunk size", false);
                if (len == 0) {
                    if (buf_.find("\r\n", eol + 2) == std::string::npos) return read();
                    break;  // (no trailers expected)
                }
                if (buf_.size() < eol + 2 + len + 2) return read();
                body.append(buf_, eol + 2, len);
                p = eol + 2 + len + 2;
            }
        } else if (content_length >= 0) {
            if (buf_.size() < body_start + content_length) return read();
            body = buf_.substr(body_start, content_length);
        } else if (status == 204 || status == 304 || spec_->method == "HEAD") {
        } else {
            return transport_error("answer without Content-Length or chunked body", false);
        }
        answered(status, body, conn_close);
    }

    void answered(int status, const std::string &body, bool conn_close) {
        ++gen_;
        timer_.cancel();
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent_at_)
                      .count();
        sh_.latencies_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us, UINT32_MAX)));
        ClassStats &cs = sh_.classes[spec_->cls_index];
        ++cs.answered;
        ++answers_on_conn_;
        bool ok = false;
        for (std::size_t i = 0; i < spec_->statuses.size() && !ok; ++i) {
            const std::string &needle =
                spec_->needles.size() == 1 ? spec_->needles[0] : spec_->needles[i];
            ok = status == spec_->statuses[i] &&
                 (needle == "-" || body.find(needle) != std::string::npos);
        }
        if (ok) {
            ++cs.ok;
            ++cs.ok_by_status[status];
        } else {
            ++cs.mismatch;
            if (sh_.reported_mismatch++ < 10)
                std::fprintf(stderr, "mismatch: class %s %s %s: got %d %s\n",
                             spec_->cls.c_str(), spec_->method.c_str(), spec_->path.c_str(),
                             status, body.substr(0, 300).c_str());
        }
        if (conn_close) {
            ++sh_.server_closes;
            close();
        }
        next();
    }
};

}  // namespace

int main(int argc, char **argv) {
    Shared sh;
    std::map<std::string, std::size_t> class_index;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto need = [&](int n) {
            if (i + n >= argc) usage(("missing value after " + a).c_str());
        };
        if (a == "--port") { need(1); sh.opt.port = static_cast<unsigned short>(std::atoi(argv[++i])); }
        else if (a == "--host") { need(1); sh.opt.host = argv[++i]; }
        else if (a == "--connections") { need(1); sh.opt.connections = std::strtoul(argv[++i], nullptr, 10); }
        else if (a == "--duration") { need(1); sh.opt.duration = std::atof(argv[++i]); }
        else if (a == "--rate") { need(1); sh.opt.rate = std::atof(argv[++i]); }
        else if (a == "--timeout") { need(1); sh.opt.timeout = std::atof(argv[++i]); }
        else if (a == "--req") {
            need(6);
            Spec s;
            s.cls = argv[++i];
            s.method = argv[++i];
            s.path = argv[++i];
            for (const auto &st : split_alternatives(argv[++i])) {
                s.statuses.push_back(std::atoi(st.c_str()));
                if (s.statuses.back() < 100 || s.statuses.back() > 599) usage("bad STATUS");
            }
            s.needles = split_alternatives(argv[++i]);
            if (s.needles.size() != 1 && s.needles.size() != s.statuses.size())
                usage("NEEDLE must have one alternative or one per STATUS");
            s.key = argv[++i];
            auto it = class_index.find(s.cls);
            if (it == class_index.end()) {
                it = class_index.emplace(s.cls, sh.classes.size()).first;
                { ClassStats cs; cs.name = s.cls; sh.classes.push_back(cs); }
            }
            s.cls_index = it->second;
            sh.specs.push_back(s);
        } else {
            usage(("unknown argument " + a).c_str());
        }
    }
    if (!sh.opt.port || !sh.opt.connections || sh.opt.duration <= 0 || sh.specs.empty())
        usage("--port, --connections, --duration and at least one --req are required");
    if (sh.opt.timeout <= 0) usage("--timeout must be positive");

    // One descriptor per connection plus a margin: raise the soft limit to the hard one.
    // (as root the hard limit may be raised too)
    struct rlimit rl;
    const rlim_t need = sh.opt.connections + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < need) {
        struct rlimit more = {need, need};
        setrlimit(RLIMIT_NOFILE, &more);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        std::fprintf(stderr, "loadclient: RLIMIT_NOFILE %llu is too low for %zu connections\n",
                     static_cast<unsigned long long>(rl.rlim_cur), sh.opt.connections);
        return 2;
    }

    asio::io_context ioc(1);
    error_code ec;
    auto addr = asio::ip::make_address(sh.opt.host, ec);
    if (ec || !addr.is_loopback()) usage("--host must be a loopback address");
    sh.endpoint = tcp::endpoint(addr, sh.opt.port);
    sh.latencies_us.reserve(1 << 20);
    sh.start = Clock::now();
    sh.deadline = sh.start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(sh.opt.duration));
    for (std::size_t i = 0; i < sh.opt.connections; ++i)
        std::make_shared<Conn>(ioc, sh, i)->start();
    ioc.run();
    double elapsed = std::chrono::duration<double>(Clock::now() - sh.start).count();

    ClassStats total;
    total.name = "total";
    for (const auto &c : sh.classes) {
        std::printf("class=%s sent=%llu answered=%llu ok=%llu mismatch=%llu transport_errors=%llu",
                    c.name.c_str(), (unsigned long long)c.sent, (unsigned long long)c.answered,
                    (unsigned long long)c.ok, (unsigned long long)c.mismatch,
                    (unsigned long long)c.transport);
        for (const auto &[st, n] : c.ok_by_status)
            std::printf(" ok_%d=%llu", st, (unsigned long long)n);
        std::printf("\n");
        total.sent += c.sent;
        total.answered += c.answered;
        total.ok += c.ok;
        total.mismatch += c.mismatch;
        total.transport += c.transport;
    }
    auto &lat = sh.latencies_us;
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) -> unsigned long long {
        if (lat.empty()) return 0;
        std::size_t i = static_cast<std::size_t>(p * (lat.size() - 1));
        return lat[i];
    };
    std::printf("total sent=%llu answered=%llu ok=%llu mismatch=%llu transport_errors=%llu "
                "idle_close_retries=%llu idle_closes=%llu server_closes=%llu connects=%llu peak_open=%zu "
                "elapsed=%.2f rps=%.0f p50_us=%llu p99_us=%llu max_us=%llu\n",
                (unsigned long long)total.sent, (unsigned long long)total.answered,
                (unsigned long long)total.ok, (unsigned long long)total.mismatch,
                (unsigned long long)total.transport, (unsigned long long)sh.retries,
                (unsigned long long)sh.idle_closes,
                (unsigned long long)sh.server_closes, (unsigned long long)sh.connects,
                sh.peak_open, elapsed, elapsed > 0 ? total.answered / elapsed : 0.0, pct(0.5),
                pct(0.99), lat.empty() ? 0ULL : (unsigned long long)lat.back());
    std::fflush(stdout);
    return total.mismatch == 0 && total.transport == 0 && total.sent == total.ok ? 0 : 1;
}
