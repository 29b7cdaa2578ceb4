#include "key_import.h"

#include "key_format.h"
#include "rate_limit.h"
#include "time_format.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

namespace apikeyd {

void ImportErrors::add(std::size_t line, std::string_view code, std::string message) {
    ++count_;
    if (code == code::conflict) ++conflicts_;
    if (listed_.size() < kMaxListedImportErrors) listed_.push_back({line, code, std::move(message)});
}

void ImportErrors::merge(ImportErrors &&other) {
    count_ += other.count_;
    conflicts_ += other.conflicts_;
    for (ImportError &e : other.listed_) listed_.push_back(std::move(e));
    std::stable_sort(listed_.begin(), listed_.end(),
                     [](const ImportError &a, const ImportError &b) { return a.line < b.line; });
    if (listed_.size() > kMaxListedImportErrors) listed_.resize(kMaxListedImportErrors);
}

bool is_valid_key_prefix(std::string_view prefix) noexcept {
    if (prefix.size() != apikey::kKeyPrefixLength || prefix.substr(0, apikey::kKeyScheme.size()) != apikey::kKeyScheme)
        return false;
    for (const char c : prefix.substr(apikey::kKeyScheme.size()))
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    return true;
}

void parse_key_fields(const JsonObject &object, std::int64_t now, ApiKey &k) {
    k.name = checked_name(object.required_string("name"), "name");
    // Least privilege: a key is read_only unless asked otherwise.
    k.permission = Permission::read_only;
    if (const auto *p = object.get("permission")) {
        const auto permission =
            p->is_string() ? apikey::snapshot::parse_permission(p->get<std::string>()) : std::nullopt;
        if (!permission) invalid_field("permission", "must be \"read_only\" or \"read_write\"");
        k.permission = *permission;
    }
    if (const auto *e = object.get("expires_at"); e != nullptr && !e->is_null()) {
        if (!e->is_string())
            invalid_field("expires_at", "must be an RFC 3339 date-time string or null");
        k.expires_at = parse_iso8601(e->get<std::string>());
        if (!k.expires_at)
            invalid_field("expires_at",
                          "must be an RFC 3339 date-time such as 2026-12-01T00:00:00Z");
        if (*k.expires_at <= now) invalid_field("expires_at", "must be in the future");
    }
    if (const auto *limit = object.get("rate_limit")) k.rate_limit = parse_rate_limit(*limit, "rate_limit");
}

namespace {

bool blank(std::string_view line) {
    for (const char c : line)
        if (c != ' ' && c != '\t' && c != '\r') return false;
    return true;
}

ApiKey parse_item(std::string_view line, std::int64_t now) {
    if (line.size() > kMaxImportLineBytes)
        throw ApiError(400, code::invalid_json,
                       "the line is longer than " + std::to_string(kMaxImportLineBytes) + " bytes");
    std::optional<JsonObject> parsed;
    try {
        parsed.emplace(line, std::initializer_list<FieldSpec>{{"key_sha256"},
                                                              {"key_prefix"},
                                                              {"name"},
                                                              {"permission"},
                                                              {"expires_at"},
                                                              {"rate_limit"}});
    } catch (const DuplicateMember &) {
        throw;  // its message says more than "not a JSON object"
    } catch (const ApiError &e) {
        if (e.code() != code::invalid_json) throw;
        throw ApiError(400, code::invalid_json,
                       "the line is not a JSON object (one object per line, nested at most " +
                           std::to_string(kMaxJsonDepth) + " deep)");
    }
    const JsonObject &object = *parsed;
    ApiKey k;
    const std::string hash = object.required_string("key_sha256");
    const auto digest = apikey::digest_from_hex(hash);
    if (!digest)
        invalid_field("key_sha256", "must be 64 hexadecimal digits: the SHA-256 of the raw key");
    k.key_sha256 = *digest;
    k.key_prefix = object.required_string("key_prefix");
    if (!is_valid_key_prefix(k.key_prefix))
        invalid_field("key_prefix", "must be \"sk_live_\" followed by the key's next 4 characters "
                                    "(letters and digits)");
    parse_key_fields(object, now, k);
    return k;
}

}  // namespace

ParsedImport parse_import(std::string_view body, std::int64_t now, std::size_t max_items) {
    ParsedImport out;
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < body.size()) {
        const std::size_t nl = body.find('\n', pos);
        const std::size_t end = nl == std::string_view::npos ? body.size() : nl;
        std::string_view line = body.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        if (blank(line)) continue;
        if (++out.items > max_items)
            throw ApiError(413, code::payload_too_large,
                           "more than " + std::to_string(max_items) +
                               " keys in one import (max_import_items); split it into batches");
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        try {
            out.keys.push_back(parse_item(line, now));
            out.lines.push_back(line_no);
        } catch (const ApiError &e) {
            out.errors.add(line_no, e.code(), e.what());
        }
    }
    if (out.items == 0)
        throw ApiError(400, code::invalid_json,
                       "the body holds no keys: send one JSON object per line (NDJSON)");

    // The same hash twice in the batch: every later occurrence is a conflict.
    std::vector<std::uint32_t> order(out.keys.size());
    for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
        const int c = std::memcmp(out.keys[a].key_sha256.data(), out.keys[b].key_sha256.data(), 32);
        return c != 0 ? c < 0 : a < b;
    });
    std::vector<std::pair<std::size_t, std::size_t>> duplicates;  // (line, first line)
    for (std::size_t i = 1, first = 0; i < order.size(); ++i) {
        if (out.keys[order[i]].key_sha256 != out.keys[order[first]].key_sha256) first = i;
        else duplicates.emplace_back(out.lines[order[i]], out.lines[order[first]]);
    }
    if (!duplicates.empty()) {
        std::sort(duplicates.begin(), duplicates.end());
        ImportErrors dup;
        for (const auto &[line, first] : duplicates)
            dup.add(line, code::conflict,
                    "key_sha256 is the same as on line " + std::to_string(first) + " of this import");
        out.errors.merge(std::move(dup));
    }
    return out;
}

}  // namespace apikeyd
