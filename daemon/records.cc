#include "records.h"

#include "key_format.h"
#include "request_body.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

namespace apikeyd {
namespace {

using nlohmann::json;

// Record layout version, stored in every record as "v".
constexpr int kRecordVersion = 1;

json optional_time(const std::optional<std::int64_t> &t) {
    return t ? json(*t) : json(nullptr);
}

std::optional<std::int64_t> get_optional_time(const json &j, const char *field) {
    const json &v = j.at(field);
    if (v.is_null()) return std::nullopt;
    return v.get<std::int64_t>();
}

Uuid get_uuid(const json &j, const char *field) {
    const auto id = apikey::parse_uuid(j.at(field).get<std::string>());
    if (!id) throw CorruptRecord(std::string("bad uuid in field ") + field);
    return *id;
}

template <typename F>
auto decode_with(std::string_view bytes, const char *what, F &&f) {
    try {
        const json j = json::parse(bytes);
        if (j.at("v").get<int>() != kRecordVersion)
            throw CorruptRecord(std::string(what) + " record of an unknown version");
        return f(j);
    } catch (const json::exception &e) {
        throw CorruptRecord(std::string("undecodable ") + what + " record: " + e.what());
    } catch (const ApiError &e) {  // settings are stored in their API shape, re-validated
        throw CorruptRecord(std::string("invalid settings in a ") + what + " record: " + e.what());
    }
}

}  // namespace

apikey::snapshot::KeyRecord ApiKey::snapshot_record(
    const std::optional<apikey::snapshot::RateLimit> &workspace_default) const {
    apikey::snapshot::KeyRecord r;
    r.id = id;
    r.workspace_id = workspace_id;
    r.permission = permission;
    r.status = status;
    r.expires_at = expires_at;
    r.rate_limit = rate_limit ? rate_limit : workspace_default;
    std::memset(r.prefix.data(), 0, r.prefix.size());
    std::memcpy(r.prefix.data(), key_prefix.data(), std::min(key_prefix.size(), r.prefix.size()));
    return r;
}

std::string encode(const Workspace &w) {
    return json{{"v", kRecordVersion},
                {"id", apikey::to_string(w.id)},
                {"org", w.org},
                {"slug", w.slug},
                {"name", w.name},
                {"created_at", w.created_at},
                {"updated_at", w.updated_at},
                {"seq", w.seq},
                {"settings", json(settings_json(w.settings))}}
        .dump();
}

std::string encode(const EntitySettings &s) {
    return json{{"v", kRecordVersion}, {"settings", json(settings_json(s))}}.dump();
}

EntitySettings decode_entity_settings(std::string_view bytes) {
    return decode_with(bytes, "entity settings",
                       [](const json &j) { return entity_settings_from_json(j.at("settings")); });
}

std::string encode(const ApiKey &k) {
    return json{{"v", kRecordVersion},
                {"id", apikey::to_string(k.id)},
                {"workspace_id", apikey::to_string(k.workspace_id)},
                {"name", k.name},
                {"key_prefix", k.key_prefix},
                {"key_sha256", apikey::to_hex(k.key_sha256)},
                {"permission", apikey::snapshot::to_string(k.permission)},
                {"status", apikey::snapshot::to_string(k.status)},
                {"expires_at", optional_time(k.expires_at)},
                {"last_used_at", optional_time(k.last_used_at)},
                {"rate_limit", k.rate_limit ? json{{"limit", k.rate_limit->limit},
                                                   {"window_seconds", k.rate_limit->window_seconds}}
                                            : json(nullptr)},
                {"created_by", k.created_by},
                {"created_at", k.created_at},
                {"updated_at", k.updated_at},
                {"seq", k.seq}}
        .dump();
}

Workspace decode_workspace(std::string_view bytes) {
    return decode_with(bytes, "workspace", [](const json &j) {
        Workspace w;
        w.id = get_uuid(j, "id");
        w.org = j.at("org").get<std::string>();
        w.slug = j.at("slug").get<std::string>();
        w.name = j.at("name").get<std::string>();
        w.created_at = j.at("created_at").get<std::int64_t>();
        w.updated_at = j.at("updated_at").get<std::int64_t>();
        w.seq = j.at("seq").get<std::uint64_t>();
        // Absent in records written before settings existed: nothing set.
        if (const auto it = j.find("settings"); it != j.end())
            w.settings = workspace_settings_from_json(*it);
        return w;
    });
}

ApiKey decode_key(std::string_view bytes) {
    return decode_with(bytes, "key", [](const json &j) {
        ApiKey k;
        k.id = get_uuid(j, "id");
        k.workspace_id = get_uuid(j, "workspace_id");
        k.name = j.at("name").get<std::string>();
        k.key_prefix = j.at("key_prefix").get<std::string>();
        if (k.key_prefix.size() != apikey::kKeyPrefixLength) throw CorruptRecord("bad key_prefix");
        const auto digest = apikey::digest_from_hex(j.at("key_sha256").get<std::string>());
        if (!digest) throw CorruptRecord("bad key_sha256");
        k.key_sha256 = *digest;
        const auto permission =
            apikey::snapshot::parse_permission(j.at("permission").get<std::string>());
        if (!permission) throw CorruptRecord("bad permission");
        k.permission = *permission;
        const std::string status = j.at("status").get<std::string>();
        if (status == "active") k.status = KeyStatus::active;
        else if (status == "revoked") k.status = KeyStatus::revoked;
        else throw CorruptRecord("bad status");
        k.expires_at = get_optional_time(j, "expires_at");
        k.last_used_at = get_optional_time(j, "last_used_at");
        // Absent in records written before rate limits existed: none.
        if (const auto it = j.find("rate_limit"); it != j.end() && !it->is_null())
            k.rate_limit = apikey::snapshot::RateLimit{it->at("limit").get<std::uint32_t>(),
                                                       it->at("window_seconds").get<std::uint32_t>()};
        k.created_by = j.at("created_by").get<std::string>();
        k.created_at = j.at("created_at").get<std::int64_t>();
        k.updated_at = j.at("updated_at").get<std::int64_t>();
        k.seq = j.at("seq").get<std::uint64_t>();
        return k;
    });
}

}  // namespace apikeyd
