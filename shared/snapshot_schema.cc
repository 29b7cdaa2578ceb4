#include "snapshot_schema.h"

#include <cstring>

namespace apikey::snapshot {
namespace {

constexpr std::uint8_t kKeyRecordVersion = 1;
constexpr std::uint8_t kWorkspaceRecordVersion = 1;
constexpr std::uint8_t kHasExpiry = 0x01;

// version, permission, status, flags, expires_at, id, workspace_id, prefix
constexpr std::size_t kKeyRecordSize = 4 + 8 + 16 + 16 + 12;
constexpr std::size_t kWorkspaceRecordSize = 1 + 16;

void put_u64(std::string &out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i) & 0xFF));
}

std::uint64_t get_u64(const unsigned char *p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

}  // namespace

std::string_view to_string(Permission p) noexcept {
    return p == Permission::read_write ? "read_write" : "read_only";
}

std::optional<Permission> parse_permission(std::string_view text) noexcept {
    if (text == "read_write") return Permission::read_write;
    if (text == "read_only") return Permission::read_only;
    return std::nullopt;
}

std::string_view to_string(KeyStatus s) noexcept {
    return s == KeyStatus::revoked ? "revoked" : "active";
}

std::string encode(const KeyRecord &r) {
    std::string out;
    out.reserve(kKeyRecordSize);
    out.push_back(static_cast<char>(kKeyRecordVersion));
    out.push_back(static_cast<char>(r.permission));
    out.push_back(static_cast<char>(r.status));
    out.push_back(static_cast<char>(r.expires_at ? kHasExpiry : 0));
    put_u64(out, static_cast<std::uint64_t>(r.expires_at.value_or(0)));
    out.append(reinterpret_cast<const char *>(r.id.bytes.data()), r.id.bytes.size());
    out.append(reinterpret_cast<const char *>(r.workspace_id.bytes.data()),
               r.workspace_id.bytes.size());
    out.append(r.prefix.data(), r.prefix.size());
    return out;
}

bool decode(std::string_view bytes, KeyRecord &out) noexcept {
    if (bytes.size() < kKeyRecordSize) return false;
    const auto *p = reinterpret_cast<const unsigned char *>(bytes.data());
    if (p[0] != kKeyRecordVersion) return false;
    if (p[1] != static_cast<std::uint8_t>(Permission::read_only) &&
        p[1] != static_cast<std::uint8_t>(Permission::read_write))
        return false;
    if (p[2] != static_cast<std::uint8_t>(KeyStatus::active) &&
        p[2] != static_cast<std::uint8_t>(KeyStatus::revoked))
        return false;
    out.permission = static_cast<Permission>(p[1]);
    out.status = static_cast<KeyStatus>(p[2]);
    if (p[3] & kHasExpiry)
        out.expires_at = static_cast<std::int64_t>(get_u64(p + 4));
    else
        out.expires_at.reset();
    std::memcpy(out.id.bytes.data(), p + 12, 16);
    std::memcpy(out.workspace_id.bytes.data(), p + 28, 16);
    std::memcpy(out.prefix.data(), p + 44, out.prefix.size());
    return true;
}

std::string encode(const WorkspaceRecord &r) {
    std::string out;
    out.reserve(kWorkspaceRecordSize);
    out.push_back(static_cast<char>(kWorkspaceRecordVersion));
    out.append(reinterpret_cast<const char *>(r.id.bytes.data()), r.id.bytes.size());
    return out;
}

bool decode(std::string_view bytes, WorkspaceRecord &out) noexcept {
    if (bytes.size() < kWorkspaceRecordSize ||
        static_cast<unsigned char>(bytes[0]) != kWorkspaceRecordVersion)
        return false;
    std::memcpy(out.id.bytes.data(), bytes.data() + 1, 16);
    return true;
}

std::string encode_u64(std::uint64_t value) {
    std::string out;
    put_u64(out, value);
    return out;
}

bool decode_u64(std::string_view bytes, std::uint64_t &out) noexcept {
    if (bytes.size() != 8) return false;
    out = get_u64(reinterpret_cast<const unsigned char *>(bytes.data()));
    return true;
}

std::string workspace_path(std::string_view org, std::string_view slug) {
    std::string path;
    path.reserve(org.size() + 1 + slug.size());
    path.append(org).append("/").append(slug);
    return path;
}

}  // namespace apikey::snapshot
