#include "rate_limit.h"

#include "request_body.h"

#include <string>

namespace apikeyd {

std::optional<RateLimit> parse_rate_limit(const nlohmann::json &value, std::string_view field) {
    const std::string name(field);
    if (value.is_null()) return std::nullopt;
    if (!value.is_object())
        invalid_field(name, "must be {\"limit\": N, \"window_seconds\": S} or null");
    const JsonObject object(value, {{"limit"}, {"window_seconds"}});
    const auto bounded = [&](std::string_view member, std::int64_t max) {
        const std::string path = name + "." + std::string(member);
        const nlohmann::json *v = object.get(member);
        if (v == nullptr) throw ApiError(400, code::missing_field, quoted_field(path) + " is required");
        if (!v->is_number_integer() || v->get<std::int64_t>() < 1 || v->get<std::int64_t>() > max)
            invalid_field(path, "must be an integer from 1 to " + std::to_string(max));
        return static_cast<std::uint32_t>(v->get<std::int64_t>());
    };
    return RateLimit{bounded("limit", kMaxRateLimit),
                     bounded("window_seconds", kMaxRateWindowSeconds)};
}

nlohmann::ordered_json rate_limit_json(const std::optional<RateLimit> &limit) {
    if (!limit) return nullptr;
    return nlohmann::ordered_json{{"limit", limit->limit}, {"window_seconds", limit->window_seconds}};
}

}  // namespace apikeyd
