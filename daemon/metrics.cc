#include "metrics.h"

#include "uuid.h"

#include <cstdio>

namespace apikeyd {
namespace {

// Route words a pattern may hold; anything else makes the request "other", so label
// values stay few whatever clients send.
bool is_route_word(std::string_view s) {
    for (std::string_view w : {"api", "v1", "workspaces", "api-keys", "settings", "entities",
                               "changes", "import", "healthz", "metrics"})
        if (s == w) return true;
    return false;
}

void append_number(std::string &out, double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.9g", v);
    out += buf;
}

}  // namespace

std::string Metrics::route_of(std::string_view target) {
    const std::string_view path = target.substr(0, target.find('?'));
    std::string route;
    std::size_t segments = 0;
    std::string_view rest = path;
    std::string_view previous;
    while (!rest.empty()) {
        if (rest.front() != '/') return "other";
        rest.remove_prefix(1);
        const std::size_t slash = rest.find('/');
        const std::string_view seg = rest.substr(0, slash);
        rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash);
        if (++segments > 8) return "other";
        route += '/';
        if (is_route_word(seg)) route.append(seg);
        else if (apikey::parse_uuid(seg)) route += "{id}";
        else if (previous == "entities") route += "{entity}";
        else return "other";
        previous = seg;
    }
    return route.empty() ? "other" : route;
}

void Metrics::count_request(std::string_view target, unsigned status) {
    ++requests_[{route_of(target), status}];
}

void Metrics::observe_publish(double seconds) {
    ++publishes_;
    publish_seconds_ += seconds;
    for (std::size_t i = 0; i < std::size(kBuckets); ++i)
        if (seconds <= kBuckets[i]) ++bucket_counts_[i];
}

std::string Metrics::render(const Gauges &g) const {
    std::string out;
    out += "# HELP apikeyd_http_requests_total Admin API requests by route pattern and status.\n"
           "# TYPE apikeyd_http_requests_total counter\n";
    for (const auto &[key, n] : requests_)
        out += "apikeyd_http_requests_total{route=\"" + key.first + "\",status=\"" +
               std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";

    const auto gauge = [&](const char *name, const char *help, std::uint64_t v) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" +
               name + " " + std::to_string(v) + "\n";
    };
    gauge("apikeyd_store_generation", "Generation of the authoritative store (one per change).",
          g.store_generation);
    gauge("apikeyd_snapshot_generation",
          "Generation of the published snapshot; 0 while publishing fails.",
          g.snapshot_generation);
    gauge("apikeyd_store_bytes", "Bytes used by the authoritative store (data.mdb pages in use).",
          g.store_bytes);
    gauge("apikeyd_workspaces", "Live workspaces in the store.", g.workspaces);
    gauge("apikeyd_api_keys", "API keys in the store, revoked ones included.", g.keys);
    gauge("apikeyd_healthy", "1 when /healthz answers 200, 0 when it answers 503.",
          g.healthy ? 1 : 0);

    out += "# HELP apikeyd_snapshot_publish_seconds Time to publish one change to the snapshot.\n"
           "# TYPE apikeyd_snapshot_publish_seconds histogram\n";
    for (std::size_t i = 0; i < std::size(kBuckets); ++i) {
        out += "apikeyd_snapshot_publish_seconds_bucket{le=\"";
        append_number(out, kBuckets[i]);
        out += "\"} " + std::to_string(bucket_counts_[i]) + "\n";
    }
    out += "apikeyd_snapshot_publish_seconds_bucket{le=\"+Inf\"} " + std::to_string(publishes_) +
           "\napikeyd_snapshot_publish_seconds_sum ";
    append_number(out, publish_seconds_);
    out += "\napikeyd_snapshot_publish_seconds_count " + std::to_string(publishes_) + "\n";

    const auto counter = [&](const char *name, const char *help, std::uint64_t v) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" +
               name + " " + std::to_string(v) + "\n";
    };
    counter("apikeyd_snapshot_publish_failures_total",
            "Snapshot publishes that failed (apikeyd retries them).", publish_failures_);
    if (g.usage != nullptr) {
        counter("apikeyd_usage_datagrams_total", "Usage reports received from nginx.",
                g.usage->datagrams);
        counter("apikeyd_usage_rejected_datagrams_total", "Datagrams that were not usage reports.",
                g.usage->rejected_datagrams);
        counter("apikeyd_usage_rejected_lines_total", "Malformed or future lines in usage reports.",
                g.usage->rejected_lines);
        counter("apikeyd_usage_unknown_keys_total", "Reported uses of key ids the store does not know.",
                g.usage->unknown_keys);
        counter("apikeyd_usage_keys_updated_total", "last_used_at values moved forward.",
                g.usage->keys_updated);
        counter("apikeyd_usage_writes_total", "Store transactions that recorded usage.",
                g.usage->writes);
        counter("apikeyd_usage_write_failures_total",
                "Usage writes that failed (kept and retried).", g.usage->write_failures);
    }
    return out;
}

}  // namespace apikeyd
