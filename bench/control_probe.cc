// Control-plane figures through the real apikeyd and nginx + module:
//  0. with --import N: fills the workspace with N keys through the bulk import
//     (POST .../api-keys/import, NDJSON of SHA-256 + prefix of keys generated here), in
//     batches of --import-batch, timed from the first byte sent to the last 201; then
//     checks that nginx admits one imported key of each batch.
//  1. key creates per second: CLIENTS concurrent keep-alive connections, each creating
//     PER_CLIENT keys through POST /api/v1/workspaces/{id}/api-keys (apikeyd commits its
//     store durably and publishes the snapshot before it answers).
//  2. revoke -> 401: for REVOKES of the created keys, DELETE through the admin API, then
//     ask nginx with that key until it answers 401; the time is counted from the moment
//     the DELETE's 200 arrived.
// Output lines (microseconds):
//   IMPORT <keys> <batches> <seconds> <body_bytes> <slowest_batch_seconds>
//   CREATE <clients> <keys> <seconds> <p50_us> <p99_us>
//   REVOKE_E2E <delete_us> <after_200_us> <requests_until_401>
//
//   control_probe --admin-port P --token-file F --nginx-port N [--clients 8]
//                 [--per-client 250] [--revokes 200] [--org acme-corp --slug sales]
//                 [--import 0] [--import-batch 1000000]
#include "http_client.h"
#include "key_format.h"
#include "sha256.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using bench::die;
using Clock = std::chrono::steady_clock;

long long us_since(Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
}

long long percentile(std::vector<long long> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    std::size_t i = static_cast<std::size_t>(p / 100.0 * v.size() + 0.999999);
    return v[i == 0 ? 0 : i - 1];
}

struct Key {
    std::string id, raw;
};

}  // namespace

int main(int argc, char **argv) {
    int admin_port = 0, nginx_port = 0, clients = 8, per_client = 250, revokes = 200;
    long import_keys = 0, import_batch = 1'000'000;
    std::string token_file, org = "acme-corp", slug = "sales";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i], v = argv[i + 1];
        if (a == "--admin-port") admin_port = std::atoi(v.c_str());
        else if (a == "--nginx-port") nginx_port = std::atoi(v.c_str());
        else if (a == "--token-file") token_file = v;
        else if (a == "--clients") clients = std::atoi(v.c_str());
        else if (a == "--per-client") per_client = std::atoi(v.c_str());
        else if (a == "--revokes") revokes = std::atoi(v.c_str());
        else if (a == "--import") import_keys = std::atol(v.c_str());
        else if (a == "--import-batch") import_batch = std::atol(v.c_str());
        else if (a == "--org") org = v;
        else if (a == "--slug") slug = v;
        else die("control_probe: unknown option " + a);
    }
    std::string token;
    if (std::ifstream in(token_file); !(in >> token)) die("control_probe: no admin token");
    if (admin_port <= 0 || nginx_port <= 0 || clients <= 0 || per_client <= 0)
        die("control_probe: --admin-port, --nginx-port and --token-file are required");

    std::string ws;
    {
        bench::Client admin(admin_port);
        const auto r = admin.request("POST", "/api/v1/workspaces", token,
                                     "{\"org\":\"" + org + "\",\"slug\":\"" + slug +
                                         "\",\"name\":\"bench\"}");
        ws = bench::json_string(r.body, "id");
        if (r.status != 201 && r.status != 200) die("workspace create: " + r.body);
        if (ws.empty()) die("workspace create: no id in " + r.body);
    }
    const std::string keys_path = "/api/v1/workspaces/" + ws + "/api-keys";

    // 0. bulk import
    if (import_keys > 0) {
        if (import_batch <= 0) die("control_probe: --import-batch must be positive");
        // Bodies first (key generation is the client's cost, not apikeyd's).
        std::vector<std::string> bodies;
        std::vector<std::string> sample;  // one raw key per batch
        std::size_t body_bytes = 0;
        for (long done = 0; done < import_keys;) {
            const long n = std::min(import_batch, import_keys - done);
            std::string body;
            body.reserve(static_cast<std::size_t>(n) * 190);
            for (long i = 0; i < n; ++i) {
                const std::string raw = apikey::generate_key();
                if (i == 0) sample.push_back(raw);
                body += "{\"key_sha256\":\"";
                body += apikey::to_hex(apikey::sha256(raw));
                body += "\",\"key_prefix\":\"";
                body.append(raw, 0, apikey::kKeyPrefixLength);
                body += "\",\"name\":\"imported-";
                body += std::to_string(done + i);
                body += (done + i) % 2 == 0 ? "\",\"permission\":\"read_write\"}\n"
                                            : "\",\"permission\":\"read_only\"}\n";
            }
            body_bytes += body.size();
            bodies.push_back(std::move(body));
            done += n;
        }
        bench::Client admin(admin_port);
        double slowest = 0;
        const auto t_import = Clock::now();
        for (const std::string &body : bodies) {
            const auto t = Clock::now();
            const auto r = admin.request("POST", keys_path + "/import", token, body);
            if (r.status != 201)
                die("import: " + std::to_string(r.status) + " " + r.body.substr(0, 2000));
            slowest = std::max(slowest, us_since(t) / 1e6);
        }
        const double import_secs = us_since(t_import) / 1e6;
        std::printf("IMPORT %ld %zu %.3f %zu %.3f\n", import_keys, bodies.size(), import_secs,
                    body_bytes, slowest);
        std::fflush(stdout);
        bench::Client nginx(nginx_port);
        const std::string url = "/api/v1/" + org + "/" + slug + "/Customer";
        for (const std::string &raw : sample)
            if (nginx.request("GET", url, raw).status != 200) die("imported key not admitted by nginx");
    }

    // 1. creates
    std::vector<Key> keys;
    std::vector<long long> latencies;
    std::mutex mu;
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&, c] {
            bench::Client admin(admin_port);
            std::vector<Key> mine;
            std::vector<long long> lat;
            for (int i = 0; i < per_client; ++i) {
                const auto t = Clock::now();
                const auto r = admin.request(
                    "POST", keys_path, token,
                    "{\"name\":\"bench-" + std::to_string(c) + "-" + std::to_string(i) +
                        "\",\"permission\":\"read_write\"}");
                lat.push_back(us_since(t));
                if (r.status != 201) die("key create: " + std::to_string(r.status) + " " + r.body);
                mine.push_back({bench::json_string(r.body, "id"), bench::json_string(r.body, "key")});
            }
            std::lock_guard<std::mutex> lock(mu);
            keys.insert(keys.end(), mine.begin(), mine.end());
            latencies.insert(latencies.end(), lat.begin(), lat.end());
        });
    }
    for (auto &t : threads) t.join();
    const double secs = us_since(t0) / 1e6;
    std::printf("CREATE %d %zu %.3f %lld %lld\n", clients, keys.size(), secs,
                percentile(latencies, 50), percentile(latencies, 99));
    std::fflush(stdout);

    // 2. revoke -> 401
    bench::Client admin(admin_port);
    bench::Client nginx(nginx_port);
    const std::string url = "/api/v1/" + org + "/" + slug + "/Customer";
    for (int i = 0; i < revokes && i < static_cast<int>(keys.size()); ++i) {
        const Key &k = keys[static_cast<std::size_t>(i)];
        if (nginx.request("GET", url, k.raw).status != 200) die("created key not admitted by nginx");
        const auto t = Clock::now();
        const auto r = admin.request("DELETE", keys_path + "/" + k.id, token);
        const long long delete_us = us_since(t);
        if (r.status != 200) die("revoke: " + std::to_string(r.status) + " " + r.body);
        const auto after = Clock::now();
        int requests = 0, status = 0;
        do {
            status = nginx.request("GET", url, k.raw).status;
            ++requests;
            if (us_since(after) > 10'000'000) die("revoke not enforced within 10 s");
        } while (status != 401);
        std::printf("REVOKE_E2E %lld %lld %d\n", delete_us, us_since(after), requests);
    }
    return 0;
}
