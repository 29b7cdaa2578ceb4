// The admin API's rate-limit object, {"limit": N, "window_seconds": S}, shared by keys
// (rate_limit) and workspace settings (defaultRateLimit).
#pragma once

#include "snapshot_schema.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string_view>

namespace apikeyd {

using apikey::snapshot::RateLimit;

inline constexpr std::int64_t kMaxRateLimit = 1'000'000'000;
inline constexpr std::int64_t kMaxRateWindowSeconds = 86'400;

// null -> nullopt; anything but a valid object -> ApiError 400 naming `field`.
std::optional<RateLimit> parse_rate_limit(const nlohmann::json &value, std::string_view field);

nlohmann::ordered_json rate_limit_json(const std::optional<RateLimit> &limit);

}  // namespace apikeyd
