// Microbenchmark of the request decision over a generated snapshot (bench/gen_snapshot).
//
//   decision_bench --snapshot DIR --valid FILE --unknown FILE [Google Benchmark flags]
//
// authenticate/*: apikey::authenticate on one open read view: Authorization parse, key
//   shape + CRC32 checksum, SHA-256, B-tree lookup, record decode, checks. Keys are taken
//   in a shuffled order from the sample file (spread over the whole snapshot), so lookups
//   touch pages all over the map, as real traffic does.
// request/*: what the module does per request through the C API: renew the read
//   transaction (Reader::view, which also reads the meta records), then apikey::decide
//   (workspace + entity lookup, authenticate, query policy), then end the transaction.
// parts/*: the pieces alone, to see where the time goes.
// *_hot1k: only the first 1,000 keys of the shuffled sample, a working set that stays in
//   the CPU caches (skewed real traffic) instead of pages all over a 1M-key map.
#include "authorization.h"
#include "decision.h"
#include "key_format.h"
#include "sha256.h"
#include "snapshot_reader.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace apikey;

std::unique_ptr<snapshot::Reader> g_reader;
std::optional<Uuid> g_workspace;
// "Bearer <key>" header values in shuffled order, in one contiguous array of fixed slots
// walked sequentially: the hardware prefetcher keeps the current header in the cache, as
// it is in nginx, which has just parsed it. (Separately allocated strings in random
// order would add a cache and TLB miss per call that nginx does not have.)
class Headers {
public:
    static constexpr std::size_t kSlot = 64;
    void push_back(std::string_view h) {
        if (h.size() > kSlot) {
            std::fprintf(stderr, "decision_bench: header longer than %zu bytes\n", kSlot);
            std::exit(2);
        }
        const std::size_t at = bytes_.size();
        bytes_.resize(at + kSlot);
        std::memcpy(bytes_.data() + at, h.data(), h.size());
        sizes_.push_back(static_cast<std::uint8_t>(h.size()));
    }
    std::string_view operator[](std::size_t i) const { return {bytes_.data() + i * kSlot, sizes_[i]}; }
    std::size_t size() const { return sizes_.size(); }
    bool empty() const { return sizes_.empty(); }

private:
    std::vector<char> bytes_;
    std::vector<std::uint8_t> sizes_;
};

Headers g_valid, g_unknown, g_malformed;
const RequestFacts kFacts{false, 1700000000};
constexpr std::string_view kWorkspacePath = "acme-corp/sales";

Headers read_keys(const std::string &path) {
    std::ifstream in(path);
    if (!in) {
        std::fprintf(stderr, "decision_bench: cannot read %s\n", path.c_str());
        std::exit(2);
    }
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back("Bearer " + line);
    if (out.empty()) {
        std::fprintf(stderr, "decision_bench: no keys in %s\n", path.c_str());
        std::exit(2);
    }
    std::shuffle(out.begin(), out.end(), std::mt19937_64(42));
    Headers headers;
    for (const std::string &h : out) headers.push_back(h);
    return headers;
}

// Same key with its last checksum character changed: the checksum check fails only after
// the whole CRC32, the most expensive way to be malformed.
Headers make_malformed(const Headers &valid) {
    Headers out;
    for (std::size_t i = 0; i < valid.size(); ++i) {
        std::string s(valid[i]);
        s.back() = s.back() == 'A' ? 'B' : 'A';
        out.push_back(s);
    }
    return out;
}

void run_authenticate(benchmark::State &state, const Headers &headers,
                      Code expected) {
    auto view = g_reader->view();
    if (!view.ok()) {
        state.SkipWithError("no snapshot view");
        return;
    }
    std::size_t i = 0;
    for (auto _ : state) {
        const AuthResult r = authenticate(view, headers[i], g_workspace, kFacts);
        benchmark::DoNotOptimize(r);
        if (r.code != expected) {
            state.SkipWithError("unexpected decision");
            break;
        }
        if (++i == headers.size()) i = 0;
    }
}

void BM_authenticate_valid(benchmark::State &s) { run_authenticate(s, g_valid, Code::ok); }
// The same with only 1,000 distinct keys: their pages stay in the CPU caches, as with
// real traffic, where a few keys make most requests.
void BM_authenticate_valid_hot(benchmark::State &s) {
    static const Headers hot = [] {
        Headers h;
        for (std::size_t i = 0; i < std::min<std::size_t>(1000, g_valid.size()); ++i)
            h.push_back(g_valid[i]);
        return h;
    }();
    run_authenticate(s, hot, Code::ok);
}
void BM_authenticate_unknown(benchmark::State &s) {
    run_authenticate(s, g_unknown, Code::unknown_key);
}
void BM_authenticate_malformed(benchmark::State &s) {
    run_authenticate(s, g_malformed, Code::malformed_key);
}

void run_request(benchmark::State &state, const Headers &headers,
                 Code expected) {
    std::size_t i = 0;
    Request req;
    req.workspace_path = kWorkspacePath;
    req.entity = "Customer";
    req.facts = kFacts;
    for (auto _ : state) {
        const auto view = g_reader->view();
        req.authorization = headers[i];
        const Decision d = decide(view, req);
        benchmark::DoNotOptimize(d);
        if (d.code != expected) {
            state.SkipWithError("unexpected decision");
            break;
        }
        if (++i == headers.size()) i = 0;
    }
}

void BM_request_valid(benchmark::State &s) { run_request(s, g_valid, Code::ok); }
void BM_request_unknown(benchmark::State &s) { run_request(s, g_unknown, Code::unknown_key); }

void BM_parts_view(benchmark::State &state) {
    for (auto _ : state) {
        const auto view = g_reader->view();
        benchmark::DoNotOptimize(view.generation());
    }
}

void BM_parts_parse(benchmark::State &state) {
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(parse_authorization(g_valid[i]));
        if (++i == g_valid.size()) i = 0;
    }
}

void BM_parts_checksum(benchmark::State &state) {
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(is_well_formed_key(g_valid[i].substr(7)));
        if (++i == g_valid.size()) i = 0;
    }
}

void BM_parts_sha256(benchmark::State &state) {
    std::size_t i = 0;
    Digest d;
    for (auto _ : state) {
        benchmark::DoNotOptimize(sha256(g_valid[i].substr(7), d));
        if (++i == g_valid.size()) i = 0;
    }
}

void run_lookup(benchmark::State &state, std::size_t keys) {
    std::vector<Digest> hashes;
    for (std::size_t i = 0; i < std::min(keys, g_valid.size()); ++i)
        hashes.push_back(sha256(g_valid[i].substr(7)));
    auto view = g_reader->view();
    std::size_t i = 0;
    snapshot::KeyRecord rec;
    for (auto _ : state) {
        benchmark::DoNotOptimize(view.find_key(hashes[i], rec));
        if (++i == hashes.size()) i = 0;
    }
}
void BM_parts_lookup(benchmark::State &state) { run_lookup(state, g_valid.size()); }
void BM_parts_lookup_hot(benchmark::State &state) { run_lookup(state, 1000); }

}  // namespace

int main(int argc, char **argv) {
    benchmark::Initialize(&argc, argv);
    std::string dir, valid, unknown;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--snapshot") dir = argv[i + 1];
        else if (a == "--valid") valid = argv[i + 1];
        else if (a == "--unknown") unknown = argv[i + 1];
        else {
            std::fprintf(stderr, "decision_bench: unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if (dir.empty() || valid.empty() || unknown.empty()) {
        std::fprintf(stderr, "usage: decision_bench --snapshot DIR --valid FILE --unknown FILE "
                             "[--benchmark_...]\n");
        return 2;
    }
    std::string error;
    g_reader = snapshot::Reader::open(dir, error);
    if (!g_reader) {
        std::fprintf(stderr, "decision_bench: %s\n", error.c_str());
        return 1;
    }
    {
        auto view = g_reader->view();
        snapshot::WorkspaceView w;
        if (view.find_workspace(kWorkspacePath, w) != snapshot::Lookup::found) {
            std::fprintf(stderr, "decision_bench: no workspace %s in the snapshot\n",
                         std::string(kWorkspacePath).c_str());
            return 1;
        }
        g_workspace = w.id;
    }
    g_valid = read_keys(valid);
    g_unknown = read_keys(unknown);
    g_malformed = make_malformed(g_valid);

    benchmark::RegisterBenchmark("authenticate/valid", BM_authenticate_valid);
    benchmark::RegisterBenchmark("authenticate/valid_hot1k", BM_authenticate_valid_hot);
    benchmark::RegisterBenchmark("authenticate/unknown", BM_authenticate_unknown);
    benchmark::RegisterBenchmark("authenticate/malformed", BM_authenticate_malformed);
    benchmark::RegisterBenchmark("request/valid", BM_request_valid);
    benchmark::RegisterBenchmark("request/unknown", BM_request_unknown);
    benchmark::RegisterBenchmark("parts/view_renew", BM_parts_view);
    benchmark::RegisterBenchmark("parts/parse_header", BM_parts_parse);
    benchmark::RegisterBenchmark("parts/checksum", BM_parts_checksum);
    benchmark::RegisterBenchmark("parts/sha256", BM_parts_sha256);
    benchmark::RegisterBenchmark("parts/lookup", BM_parts_lookup);
    benchmark::RegisterBenchmark("parts/lookup_hot1k", BM_parts_lookup_hot);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    g_reader.reset();
    return 0;
}
