#include "key_format.h"

#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace apikey {
namespace {

constexpr std::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

constexpr std::array<std::uint32_t, 256> make_crc_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}
constexpr auto kCrcTable = make_crc_table();

bool is_base62(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

}  // namespace

std::uint32_t crc32(std::string_view data) noexcept {
    std::uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : data) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

void base62_encode_fixed(std::uint64_t value, char *out, std::size_t width) noexcept {
    for (std::size_t i = width; i-- > 0;) {
        out[i] = kBase62[value % 62];
        value /= 62;
    }
}

std::string generate_key() {
    std::string key(kKeyScheme);
    key.reserve(kKeyLength);
    // Rejection sampling keeps every base62 character equally likely:
    // 248 = 4 * 62 is the largest multiple of 62 that fits in a byte.
    std::array<unsigned char, 64> buf{};
    while (key.size() < kKeyScheme.size() + kKeyRandomChars) {
        if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1)
            throw std::runtime_error("RAND_bytes failed: no entropy for a new key");
        for (unsigned char b : buf) {
            if (b >= 248) continue;
            key.push_back(kBase62[b % 62]);
            if (key.size() == kKeyScheme.size() + kKeyRandomChars) break;
        }
    }
    char checksum[kKeyChecksumChars];
    base62_encode_fixed(crc32(key), checksum, kKeyChecksumChars);
    key.append(checksum, kKeyChecksumChars);
    return key;
}

bool is_well_formed_key(std::string_view token) noexcept {
    if (token.size() != kKeyLength || token.substr(0, kKeyScheme.size()) != kKeyScheme)
        return false;
    for (std::size_t i = kKeyScheme.size(); i < kKeyLength; ++i)
        if (!is_base62(token[i])) return false;
    const std::size_t body = kKeyLength - kKeyChecksumChars;
    char expected[kKeyChecksumChars];
    base62_encode_fixed(crc32(token.substr(0, body)), expected, kKeyChecksumChars);
    return token.substr(body) == std::string_view(expected, kKeyChecksumChars);
}

std::string_view key_prefix(std::string_view key) noexcept {
    return key.substr(0, kKeyPrefixLength);
}

}  // namespace apikey
