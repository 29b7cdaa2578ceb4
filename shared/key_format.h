// API key format: "sk_live_" + 32 base62 random chars + 6 base62 chars of CRC32.
// The checksum lets both planes reject typos and garbage before any lookup.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace apikey {

inline constexpr std::string_view kKeyScheme = "sk_live_";
inline constexpr std::size_t kKeyRandomChars = 32;
inline constexpr std::size_t kKeyChecksumChars = 6;
inline constexpr std::size_t kKeyLength =
    kKeyScheme.size() + kKeyRandomChars + kKeyChecksumChars;
// `sk_live_` plus four random characters: enough to tell keys apart in a list.
inline constexpr std::size_t kKeyPrefixLength = 12;

// A new key from OpenSSL's CSPRNG. Throws std::runtime_error if RAND_bytes fails.
std::string generate_key();

// A key's length and scheme: the cheap half of the shape check, what makes a token
// worth hashing. Safe on any bytes.
bool looks_like_key(std::string_view token) noexcept;

// Shape and checksum check; no allocation, safe on any bytes.
bool is_well_formed_key(std::string_view token) noexcept;

// The part of a key that is stored and shown: its first kKeyPrefixLength characters.
std::string_view key_prefix(std::string_view key) noexcept;

// `text` (any bytes) with every key-shaped run ("sk_live_" and 38 base62 characters,
// checksum or not) cut to its prefix and "...", in place, as the access log's map in
// conf.example does: for text that is logged or echoed and may hold a key a client put
// where it does not belong (a query string, a request line). Returns the new length,
// never more than `len`.
std::size_t cut_keys_to_prefix(char *text, std::size_t len) noexcept;

std::uint32_t crc32(std::string_view data) noexcept;

// `value` in base62, most significant digit first, left-padded with '0' to `width`.
// Writes exactly `width` characters to `out`.
void base62_encode_fixed(std::uint64_t value, char *out, std::size_t width) noexcept;

}  // namespace apikey
