// A minimal blocking HTTP/1.1 keep-alive client over loopback, for the bench probes.
// Understands exactly what nginx and apikeyd send back: a header ended by CRLFCRLF and a
// Content-Length body. Any failure ends the process: a probe has no way to go on.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace bench {

[[noreturn]] inline void die(const std::string &why) {
    std::fprintf(stderr, "bench: %s\n", why.c_str());
    std::exit(1);
}

struct Response {
    int status = 0;
    std::string body;
};

class Client {
public:
    explicit Client(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0)
            die("cannot connect to 127.0.0.1:" + std::to_string(port));
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~Client() { ::close(fd_); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // `bearer` is sent as "Authorization: Bearer <bearer>" when not empty.
    Response request(const char *method, const std::string &path, const std::string &bearer,
                     const std::string &body = {}) {
        std::string req = std::string(method) + " " + path + " HTTP/1.1\r\nHost: bench\r\n";
        if (!bearer.empty()) req += "Authorization: Bearer " + bearer + "\r\n";
        if (!body.empty() || std::strcmp(method, "POST") == 0 || std::strcmp(method, "PUT") == 0)
            req += "Content-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n";
        req += "\r\n" + body;
        for (std::size_t off = 0; off < req.size();) {
            const ssize_t n = ::write(fd_, req.data() + off, req.size() - off);
            if (n <= 0) die("write failed");
            off += static_cast<std::size_t>(n);
        }
        std::size_t end;
        while ((end = buf_.find("\r\n\r\n")) == std::string::npos) fill();
        Response r;
        r.status = std::atoi(buf_.c_str() + 9);
        std::size_t length = 0;
        const std::string head = buf_.substr(0, end);
        for (std::size_t p = 0; (p = head.find("\r\n", p)) != std::string::npos;) {
            p += 2;
            if (strncasecmp(head.c_str() + p, "content-length:", 15) == 0)
                length = std::strtoul(head.c_str() + p + 15, nullptr, 10);
        }
        while (buf_.size() < end + 4 + length) fill();
        r.body = buf_.substr(end + 4, length);
        buf_.erase(0, end + 4 + length);
        return r;
    }

private:
    void fill() {
        char tmp[8192];
        const ssize_t n = ::read(fd_, tmp, sizeof tmp);
        if (n <= 0) die("connection closed by the server");
        buf_.append(tmp, static_cast<std::size_t>(n));
    }
    int fd_ = -1;
    std::string buf_;
};

// The string value of "field" in a flat JSON object (no escapes in the values we read).
inline std::string json_string(const std::string &body, const std::string &field) {
    const std::string needle = "\"" + field + "\":\"";
    const std::size_t p = body.find(needle);
    if (p == std::string::npos) return {};
    const std::size_t start = p + needle.size();
    const std::size_t end = body.find('"', start);
    return end == std::string::npos ? std::string() : body.substr(start, end - start);
}

}  // namespace bench
