#include "views.h"

#include "rate_limit.h"
#include "time_format.h"

namespace apikeyd {
namespace {

using json = nlohmann::ordered_json;

json time_or_null(const std::optional<std::int64_t> &t) {
    return t ? json(format_iso8601(*t)) : json(nullptr);
}

}  // namespace

json workspace_json(const Workspace &w) {
    json j;
    j["id"] = apikey::to_string(w.id);
    j["org"] = w.org;
    j["slug"] = w.slug;
    j["name"] = w.name;
    j["created_at"] = format_iso8601(w.created_at);
    j["updated_at"] = format_iso8601(w.updated_at);
    return j;
}

json key_json(const ApiKey &k, const std::string *raw_key) {
    json j;
    j["id"] = apikey::to_string(k.id);
    j["workspace_id"] = apikey::to_string(k.workspace_id);
    j["name"] = k.name;
    if (raw_key != nullptr) j["key"] = *raw_key;
    j["key_prefix"] = k.key_prefix;
    j["permission"] = apikey::snapshot::to_string(k.permission);
    j["status"] = apikey::snapshot::to_string(k.status);
    j["expires_at"] = time_or_null(k.expires_at);
    j["last_used_at"] = time_or_null(k.last_used_at);
    j["rate_limit"] = rate_limit_json(k.rate_limit);
    j["created_by"] = k.created_by;
    j["created_at"] = format_iso8601(k.created_at);
    j["updated_at"] = format_iso8601(k.updated_at);
    return j;
}

}  // namespace apikeyd
