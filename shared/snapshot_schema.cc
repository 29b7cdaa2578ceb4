#include "snapshot_schema.h"

#include "key_format.h"

#include <cstring>
#include <stdexcept>

namespace apikey::snapshot {
namespace {

constexpr std::uint8_t kKeyRecordVersion = 2;
constexpr std::uint8_t kWorkspaceRecordVersion = 1;
constexpr std::uint8_t kEntityRecordVersion = 1;
// Key record flags (byte 1).
constexpr std::uint8_t kReadWrite = 0x01;     // else read_only
constexpr std::uint8_t kRevoked = 0x02;       // else active
constexpr std::uint8_t kHasExpiry = 0x04;     // an i64 expires_at follows the prefix
constexpr std::uint8_t kHasRateLimit = 0x08;  // then u32 limit, u32 window
constexpr std::uint8_t kKnownKeyFlags = 0x0F;

// version, flags, id, workspace_id, the 4 prefix characters after "sk_live_", then the
// optional fields the flags announce. Most keys have neither: 38 bytes.
constexpr std::size_t kKeyPrefixStored = kKeyPrefixLength - kKeyScheme.size();
constexpr std::size_t kKeyRecordFixed = 2 + 16 + 16 + kKeyPrefixStored;
// version, id, max_expand_depth, then a string
constexpr std::size_t kWorkspaceRecordFixed = 1 + 16 + 1;
// version, public_access, max_expand_depth, presence flags, then five strings
constexpr std::size_t kEntityRecordFixed = 4;

enum EntityPresence : std::uint8_t {
    kHasDefaultExpand = 0x01,
    kHasDefaultFields = 0x02,
    kHasExpandable = 0x04,
    kHasFilterable = 0x08,
};

void put_u64(std::string &out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i) & 0xFF));
}

void put_u32(std::string &out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i) & 0xFF));
}

std::uint32_t get_u32(const unsigned char *p) noexcept {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

std::uint64_t get_u64(const unsigned char *p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

// Strings are a u16 length and the bytes. Throws on a string that cannot be stored.
void put_string(std::string &out, std::string_view s) {
    if (s.size() > 0xFFFF) throw std::length_error("snapshot string longer than 65535 bytes");
    out.push_back(static_cast<char>(s.size() & 0xFF));
    out.push_back(static_cast<char>(s.size() >> 8));
    out.append(s);
}

// Reads a string at `pos`, advancing it; false when the bytes run out.
bool get_string(std::string_view bytes, std::size_t &pos, std::string_view &out) noexcept {
    if (bytes.size() - pos < 2) return false;
    const auto *p = reinterpret_cast<const unsigned char *>(bytes.data() + pos);
    const std::size_t len = p[0] | static_cast<std::size_t>(p[1]) << 8;
    if (bytes.size() - pos - 2 < len) return false;
    out = bytes.substr(pos + 2, len);
    pos += 2 + len;
    return true;
}

}  // namespace

std::string_view to_string(PublicAccess a) noexcept {
    switch (a) {
    case PublicAccess::read_only: return "READ_ONLY";
    case PublicAccess::read_write: return "READ_WRITE";
    case PublicAccess::none: break;
    }
    return "NONE";
}

std::optional<PublicAccess> parse_public_access(std::string_view text) noexcept {
    if (text == "NONE") return PublicAccess::none;
    if (text == "READ_ONLY") return PublicAccess::read_only;
    if (text == "READ_WRITE") return PublicAccess::read_write;
    return std::nullopt;
}

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
    if (std::string_view(r.prefix.data(), kKeyScheme.size()) != kKeyScheme)
        throw std::invalid_argument("key prefix does not start with " + std::string(kKeyScheme));
    std::string out;
    out.reserve(kMaxKeyRecordSize);
    out.push_back(static_cast<char>(kKeyRecordVersion));
    out.push_back(static_cast<char>((r.permission == Permission::read_write ? kReadWrite : 0) |
                                    (r.status == KeyStatus::revoked ? kRevoked : 0) |
                                    (r.expires_at ? kHasExpiry : 0) |
                                    (r.rate_limit ? kHasRateLimit : 0)));
    out.append(reinterpret_cast<const char *>(r.id.bytes.data()), r.id.bytes.size());
    out.append(reinterpret_cast<const char *>(r.workspace_id.bytes.data()),
               r.workspace_id.bytes.size());
    out.append(r.prefix.data() + kKeyScheme.size(), kKeyPrefixStored);
    if (r.expires_at) put_u64(out, static_cast<std::uint64_t>(*r.expires_at));
    if (r.rate_limit) {
        put_u32(out, r.rate_limit->limit);
        put_u32(out, r.rate_limit->window_seconds);
    }
    return out;
}

bool decode(std::string_view bytes, KeyRecord &out) noexcept {
    if (bytes.size() < kKeyRecordFixed) return false;
    const auto *p = reinterpret_cast<const unsigned char *>(bytes.data());
    const std::uint8_t flags = p[1];
    if (p[0] != kKeyRecordVersion || (flags & ~kKnownKeyFlags) != 0) return false;
    const std::size_t size = kKeyRecordFixed + (flags & kHasExpiry ? 8 : 0) +
                             (flags & kHasRateLimit ? 8 : 0);
    if (bytes.size() < size) return false;
    out.permission = flags & kReadWrite ? Permission::read_write : Permission::read_only;
    out.status = flags & kRevoked ? KeyStatus::revoked : KeyStatus::active;
    std::memcpy(out.id.bytes.data(), p + 2, 16);
    std::memcpy(out.workspace_id.bytes.data(), p + 18, 16);
    std::memcpy(out.prefix.data(), kKeyScheme.data(), kKeyScheme.size());
    std::memcpy(out.prefix.data() + kKeyScheme.size(), p + 34, kKeyPrefixStored);
    std::size_t pos = kKeyRecordFixed;
    if (flags & kHasExpiry) {
        out.expires_at = static_cast<std::int64_t>(get_u64(p + pos));
        pos += 8;
    } else {
        out.expires_at.reset();
    }
    if (flags & kHasRateLimit)
        out.rate_limit = RateLimit{get_u32(p + pos), get_u32(p + pos + 4)};
    else
        out.rate_limit.reset();
    return true;
}

unsigned key_bucket_bits_for(std::size_t keys) noexcept {
    unsigned bits = 12;
    while (bits < 20 && (keys >> bits) > 256) ++bits;
    return bits;
}

std::uint32_t key_bucket(const unsigned char *hash, unsigned bits) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | hash[i];
    return static_cast<std::uint32_t>(v >> (64 - bits));
}

std::string encode(const WorkspaceRecord &r) {
    std::string out;
    out.reserve(kWorkspaceRecordFixed + 2 + r.cors_origins.size());
    out.push_back(static_cast<char>(kWorkspaceRecordVersion));
    out.append(reinterpret_cast<const char *>(r.id.bytes.data()), r.id.bytes.size());
    out.push_back(static_cast<char>(r.max_expand_depth));
    put_string(out, r.cors_origins);
    return out;
}

bool decode(std::string_view bytes, WorkspaceView &out) noexcept {
    if (bytes.size() < kWorkspaceRecordFixed ||
        static_cast<unsigned char>(bytes[0]) != kWorkspaceRecordVersion)
        return false;
    std::memcpy(out.id.bytes.data(), bytes.data() + 1, 16);
    out.max_expand_depth = static_cast<std::uint8_t>(bytes[17]);
    std::size_t pos = kWorkspaceRecordFixed;
    return get_string(bytes, pos, out.cors_origins);
}

std::string encode(const EntityRecord &r) {
    std::string out;
    out.push_back(static_cast<char>(kEntityRecordVersion));
    out.push_back(static_cast<char>(r.public_access));
    out.push_back(static_cast<char>(r.max_expand_depth));
    out.push_back(static_cast<char>((r.default_expand ? kHasDefaultExpand : 0) |
                                    (r.default_fields ? kHasDefaultFields : 0) |
                                    (r.expandable ? kHasExpandable : 0) |
                                    (r.filterable ? kHasFilterable : 0)));
    put_string(out, r.default_expand.value_or(""));
    put_string(out, r.default_fields.value_or(""));
    put_string(out, r.expandable.value_or(""));
    put_string(out, r.filterable.value_or(""));
    put_string(out, r.hidden_columns);
    return out;
}

bool decode(std::string_view bytes, EntityView &out) noexcept {
    if (bytes.size() < kEntityRecordFixed) return false;
    const auto *p = reinterpret_cast<const unsigned char *>(bytes.data());
    if (p[0] != kEntityRecordVersion || p[1] > static_cast<std::uint8_t>(PublicAccess::read_write))
        return false;
    out.public_access = static_cast<PublicAccess>(p[1]);
    out.max_expand_depth = p[2];
    const std::uint8_t present = p[3];
    std::size_t pos = kEntityRecordFixed;
    std::string_view s;
    const struct {
        std::optional<std::string_view> &field;
        std::uint8_t flag;
    } optional_strings[] = {{out.default_expand, kHasDefaultExpand},
                            {out.default_fields, kHasDefaultFields},
                            {out.expandable, kHasExpandable},
                            {out.filterable, kHasFilterable}};
    for (const auto &o : optional_strings) {
        if (!get_string(bytes, pos, s)) return false;
        if (present & o.flag)
            o.field = s;
        else
            o.field.reset();
    }
    return get_string(bytes, pos, out.hidden_columns);
}

std::string entity_key(const Uuid &workspace, std::string_view entity) {
    std::string key(reinterpret_cast<const char *>(workspace.bytes.data()), workspace.bytes.size());
    key.append(entity);
    return key;
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
