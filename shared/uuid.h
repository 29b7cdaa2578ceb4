// RFC 4122 version-4 UUIDs: ids of workspaces and keys, 16 bytes in the snapshot.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace apikey {

struct Uuid {
    std::array<std::uint8_t, 16> bytes{};
    friend bool operator==(const Uuid &a, const Uuid &b) { return a.bytes == b.bytes; }
    friend bool operator!=(const Uuid &a, const Uuid &b) { return !(a == b); }
};

inline constexpr std::size_t kUuidTextLength = 36;

// Throws std::runtime_error if the CSPRNG fails.
Uuid random_uuid();

// Writes exactly kUuidTextLength lowercase characters (no terminator).
void format_uuid(const Uuid &id, char *out) noexcept;
std::string to_string(const Uuid &id);

// Canonical 8-4-4-4-12 hex form, either case.
std::optional<Uuid> parse_uuid(std::string_view text) noexcept;

}  // namespace apikey
