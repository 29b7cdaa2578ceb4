// Revoke -> enforced, data-plane half, at the snapshot's full size: for each of COUNT
// keys, publish "this key is revoked" into the snapshot as one write transaction (what
// apikeyd's publisher does after its store commit), then ask nginx with that key on a
// keep-alive connection until it answers 401. Prints one line per revoke:
//   REVOKE <publish_us> <enforced_us> <requests_until_401>
// publish_us: the write transaction, begin to durable commit. enforced_us: from the start
// of the publish to the first 401 (what a client sees after apikeyd's 200).
//
//   revoke_probe --snapshot DIR --keys FILE --count N --port P [--path /api/v1/...]
//                [--group NAME]   (the snapshot group gen_snapshot was given: the writer
//                                  sets the snapshot files' modes when it opens them)
//
// This is not apikeyd: the store half of a revoke (apikeyd's own LMDB commit and its HTTP
// answer) is not in these figures.
#include "sha256.h"
#include "snapshot_reader.h"
#include "snapshot_writer.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace apikey;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string &why) {
    std::fprintf(stderr, "revoke_probe: %s\n", why.c_str());
    std::exit(1);
}

class Client {
public:
    explicit Client(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0)
            die("cannot connect to nginx");
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~Client() { ::close(fd_); }

    // One keep-alive GET; returns the status code.
    int get(const std::string &path, const std::string &key) {
        const std::string req = "GET " + path + " HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer " +
                                key + "\r\n\r\n";
        if (::write(fd_, req.data(), req.size()) != static_cast<ssize_t>(req.size()))
            die("write to nginx failed");
        // Read the header, then Content-Length bytes of body.
        std::size_t end;
        while ((end = buf_.find("\r\n\r\n")) == std::string::npos) fill();
        const int status = std::atoi(buf_.c_str() + 9);
        std::size_t length = 0;
        const std::string head = buf_.substr(0, end);
        for (std::size_t p = 0; (p = head.find("\r\n", p)) != std::string::npos;) {
            p += 2;
            if (strncasecmp(head.c_str() + p, "content-length:", 15) == 0)
                length = std::strtoul(head.c_str() + p + 15, nullptr, 10);
        }
        while (buf_.size() < end + 4 + length) fill();
        buf_.erase(0, end + 4 + length);
        return status;
    }

private:
    void fill() {
        char tmp[4096];
        const ssize_t n = ::read(fd_, tmp, sizeof tmp);
        if (n <= 0) die("nginx closed the connection");
        buf_.append(tmp, static_cast<std::size_t>(n));
    }
    int fd_ = -1;
    std::string buf_;
};

}  // namespace

int main(int argc, char **argv) {
    std::string dir, keys_file, path = "/api/v1/acme-corp/sales/Customer";
    int count = 200, port = 0;
    std::optional<gid_t> group;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--snapshot") dir = argv[i + 1];
        else if (a == "--keys") keys_file = argv[i + 1];
        else if (a == "--count") count = std::atoi(argv[i + 1]);
        else if (a == "--port") port = std::atoi(argv[i + 1]);
        else if (a == "--path") path = argv[i + 1];
        else if (a == "--group") {
            const struct group *g = ::getgrnam(argv[i + 1]);
            if (g == nullptr) die("unknown group");
            group = g->gr_gid;
        }
        else die("unknown option " + a);
    }
    if (dir.empty() || keys_file.empty() || port <= 0 || count <= 0)
        die("usage: revoke_probe --snapshot DIR --keys FILE --count N --port P [--path P]");

    // The last COUNT keys of the file: bench/run.sh uses the first ones afterwards.
    std::vector<std::string> keys;
    {
        std::ifstream in(keys_file);
        for (std::string line; std::getline(in, line);)
            if (!line.empty()) keys.push_back(line);
    }
    if (keys.size() < static_cast<std::size_t>(count)) die("not enough keys in " + keys_file);
    keys.erase(keys.begin(), keys.end() - count);

    std::string error;
    auto reader = snapshot::Reader::open(dir, error);
    if (!reader) die(error);
    snapshot::WriterOptions options;
    options.dir = dir;
    options.group = group;
    snapshot::Writer writer(options);
    Client client(port);

    for (const std::string &key : keys) {
        const Digest hash = sha256(key);
        snapshot::KeyRecord record;
        {
            auto view = reader->view();
            if (view.find_key(hash, record) != snapshot::Lookup::found) die("key not in snapshot");
        }
        if (client.get(path, key) != 200) die("key not admitted before its revoke");
        record.status = snapshot::KeyStatus::revoked;
        const auto t0 = Clock::now();
        writer.publish(writer.generation() + 1,
                       [&](snapshot::Batch &batch) { batch.put_key(hash, record); });
        const auto t1 = Clock::now();
        int requests = 0, status = 0;
        do {
            status = client.get(path, key);
            ++requests;
            if (Clock::now() - t0 > std::chrono::seconds(10)) die("revoke not enforced in 10 s");
        } while (status != 401);
        const auto t2 = Clock::now();
        using us = std::chrono::microseconds;
        std::printf("REVOKE %lld %lld %d\n",
                    static_cast<long long>(std::chrono::duration_cast<us>(t1 - t0).count()),
                    static_cast<long long>(std::chrono::duration_cast<us>(t2 - t0).count()),
                    requests);
    }
    return 0;
}
