// Writes a data-plane snapshot with N keys for workspace acme-corp/sales, through the same
// snapshot::Writer apikeyd uses, and the raw keys the load generator needs. The snapshot
// is what nginx reads, so for the data plane it is the same thing as apikeyd's.
//
//   gen_snapshot --dir DIR [--keys N] [--batch B] [--valid-out FILE] [--valid-sample S]
//                [--unknown-out FILE] [--unknown-count U] [--group NAME]
//
// By default (--batch 0) everything is one full rebuild, exactly what apikeyd publishes at
// start, after a bulk import or whenever the snapshot is stale or of another format: one
// write transaction, clear_all(), the workspaces, then every key (the Writer writes them
// in hash order with MDB_APPEND: dense pages). --batch B > 0 instead adds the keys in
// publishes of B keys after a rebuild with the workspaces only, as a stream of key
// creations would: random-order inserts, pages about 2/3 full and the freed pages of
// every copy-on-write left in the file. Half the keys are read_only, half read_write, none
// expires. --valid-out gets S keys spread evenly over all of them; --unknown-out gets U
// well-formed keys that are not in the snapshot (the 401 path).
#include "key_format.h"
#include "sha256.h"
#include "snapshot_schema.h"
#include "snapshot_writer.h"
#include "uuid.h"

#include <grp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace apikey;

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr,
                 "gen_snapshot: %s\nusage: gen_snapshot --dir DIR [--keys N] [--batch B] "
                 "[--valid-out FILE] [--valid-sample S] [--unknown-out FILE] "
                 "[--unknown-count U] [--group NAME]\n",
                 why);
    std::exit(2);
}

std::uint64_t parse_count(const char *s) {
    char *end = nullptr;
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (end == s || *end != '\0') usage("not a number");
    return v;
}

}  // namespace

int main(int argc, char **argv) {
    std::string dir, valid_out, unknown_out;
    std::uint64_t keys = 1000000, batch = 0, valid_sample = 100000, unknown_count = 10000;
    std::optional<gid_t> snapshot_group;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) usage("missing value");
        const char *v = argv[++i];
        if (a == "--dir") dir = v;
        else if (a == "--keys") keys = parse_count(v);
        else if (a == "--batch") batch = parse_count(v);
        else if (a == "--valid-out") valid_out = v;
        else if (a == "--valid-sample") valid_sample = parse_count(v);
        else if (a == "--unknown-out") unknown_out = v;
        else if (a == "--unknown-count") unknown_count = parse_count(v);
        else if (a == "--group") {
            const struct group *g = ::getgrnam(v);
            if (g == nullptr) usage("unknown group");
            snapshot_group = g->gr_gid;
        } else usage("unknown option");
    }
    if (dir.empty()) usage("--dir is required");
    if (valid_sample > keys) valid_sample = keys;

    try {
        const auto t0 = std::chrono::steady_clock::now();
        snapshot::WriterOptions options;
        options.dir = dir;
        options.group = snapshot_group;
        snapshot::Writer writer(options);
        std::uint64_t generation = writer.generation();

        const Uuid workspace_id = random_uuid();
        auto put_workspaces = [&](snapshot::Batch &b) {
            snapshot::WorkspaceRecord w;
            w.id = workspace_id;
            b.put_workspace(snapshot::workspace_path("acme-corp", "sales"), w);
            // A second workspace, so a wrong-workspace key exists in the data set's shape.
            snapshot::WorkspaceRecord other;
            other.id = random_uuid();
            b.put_workspace(snapshot::workspace_path("acme-corp", "inventory"), other);
        };

        std::ofstream valid;
        if (!valid_out.empty()) {
            valid.open(valid_out, std::ios::trunc);
            if (!valid) usage("cannot write --valid-out");
        }
        // Every `stride`-th key goes to the sample, so it spans the whole key set.
        const std::uint64_t stride = valid_sample ? keys / valid_sample : 0;
        std::uint64_t written = 0, sampled = 0;
        std::vector<std::string> pending;
        auto put_keys = [&](snapshot::Batch &b, std::uint64_t n) {
            for (std::uint64_t i = 0; i < n; ++i, ++written) {
                const std::string key = generate_key();
                snapshot::KeyRecord r;
                r.id = random_uuid();
                r.workspace_id = workspace_id;
                r.permission = written % 2 ? snapshot::Permission::read_write
                                           : snapshot::Permission::read_only;
                r.status = snapshot::KeyStatus::active;
                std::memcpy(r.prefix.data(), key.data(), kKeyPrefixLength);
                b.put_key(sha256(key), r);
                if (stride && written % stride == 0 && sampled < valid_sample) {
                    pending.push_back(key);
                    ++sampled;
                }
            }
        };
        // Only keys of committed publishes are written out.
        auto write_pending = [&] {
            if (valid)
                for (const std::string &k : pending) valid << k << '\n';
            pending.clear();
        };
        writer.publish(++generation, [&](snapshot::Batch &b) {
            b.clear_all();
            put_workspaces(b);
            if (batch == 0) put_keys(b, keys);
        });
        write_pending();
        while (written < keys) {
            const std::uint64_t n = std::min(batch, keys - written);
            writer.publish(++generation, [&](snapshot::Batch &b) { put_keys(b, n); });
            write_pending();
        }
        if (valid && !valid.flush()) usage("write failed: --valid-out");

        if (!unknown_out.empty()) {
            std::ofstream unknown(unknown_out, std::ios::trunc);
            for (std::uint64_t i = 0; i < unknown_count; ++i) unknown << generate_key() << '\n';
            if (!unknown.flush()) usage("write failed: --unknown-out");
        }
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("gen_snapshot: %llu keys in %.1f s (%.0f keys/s), %llu sampled, "
                    "generation %llu\n",
                    static_cast<unsigned long long>(written), secs, written / secs,
                    static_cast<unsigned long long>(sampled),
                    static_cast<unsigned long long>(generation));
    } catch (const std::exception &e) {
        std::fprintf(stderr, "gen_snapshot: %s\n", e.what());
        return 1;
    }
    return 0;
}
