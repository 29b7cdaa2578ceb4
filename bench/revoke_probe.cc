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
#include "http_client.h"
#include "sha256.h"
#include "snapshot_reader.h"
#include "snapshot_writer.h"

#include <grp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace apikey;
using bench::die;
using Clock = std::chrono::steady_clock;

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
    bench::Client client(port);

    for (const std::string &key : keys) {
        const Digest hash = sha256(key);
        snapshot::KeyRecord record;
        {
            auto view = reader->view();
            if (view.find_key(hash, record) != snapshot::Lookup::found) die("key not in snapshot");
        }
        if (client.request("GET", path, key).status != 200) die("key not admitted before its revoke");
        record.status = snapshot::KeyStatus::revoked;
        const auto t0 = Clock::now();
        writer.publish(writer.generation() + 1,
                       [&](snapshot::Batch &batch) { batch.put_key(hash, record); });
        const auto t1 = Clock::now();
        int requests = 0, status = 0;
        do {
            status = client.request("GET", path, key).status;
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
