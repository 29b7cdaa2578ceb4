// The admin API's rate-limit object, {"limit": N, "window_seconds": S}, shared by keys
// (rate_limit) and workspace settings (defaultRateLimit).
#pragma once

#include "apikey_capi.h"
#include "snapshot_schema.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string_view>

namespace apikeyd {

using apikey::snapshot::RateLimit;

inline constexpr std::int64_t kMaxRateLimit = APIKEY_MAX_RATE_LIMIT;
inline constexpr std::int64_t kMaxRateWindowSeconds = APIKEY_MAX_RATE_WINDOW;

// null -> nullopt; anything but a valid object -> ApiError 400 naming `field`.
std::optional<RateLimit> parse_rate_limit(const nlohmann::json &value, std::string_view field);

nlohmann::ordered_json rate_limit_json(const std::optional<RateLimit> &limit);

}  // namespace apikeyd
