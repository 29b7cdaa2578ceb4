// apikeyd's own metrics, rendered in the Prometheus text format (version 0.0.4) for
// GET /metrics. Counters live for the process; gauges are read when rendered.
#pragma once

#include "usage_receiver.h"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace apikeyd {

struct Gauges {
    std::uint64_t store_generation = 0;
    std::uint64_t snapshot_generation = 0;  // 0 while a publish is failing
    std::uint64_t store_bytes = 0;
    std::uint64_t workspaces = 0;           // live
    std::uint64_t keys = 0;                 // stored (revoked ones included)
    bool healthy = true;                    // what /healthz says
    const UsageCounters *usage = nullptr;   // null without usage_listen
};

class Metrics {
public:
    // `target` is the request target; it is reduced to a route pattern (ids -> {id}).
    void count_request(std::string_view target, unsigned status);
    void observe_publish(double seconds);
    void count_publish_failure() { ++publish_failures_; }
    std::string render(const Gauges &gauges) const;

    // "/api/v1/workspaces/{id}/api-keys" and the like; "other" for anything else.
    static std::string route_of(std::string_view target);

private:
    std::map<std::pair<std::string, unsigned>, std::uint64_t> requests_;
    std::uint64_t publishes_ = 0;
    std::uint64_t publish_failures_ = 0;
    double publish_seconds_ = 0;
    // Cumulative histogram buckets of publish latency, in seconds.
    static constexpr double kBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
    std::uint64_t bucket_counts_[std::size(kBuckets)] = {};
};

}  // namespace apikeyd
