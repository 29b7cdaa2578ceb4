#include "key_format.h"

#include <openssl/rand.h>

#include <array>
#include <cstring>
#include <stdexcept>

namespace apikey {
namespace {

constexpr std::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// CRC-32 (IEEE, reflected) by slicing-by-8: eight bytes per step through eight tables
// instead of one dependent table lookup per byte.
using CrcTables = std::array<std::array<std::uint32_t, 256>, 8>;
constexpr CrcTables make_crc_tables() {
    CrcTables t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[0][i] = c;
    }
    for (std::size_t k = 1; k < 8; ++k)
        for (std::size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
    return t;
}
constexpr CrcTables kCrc = make_crc_tables();

constexpr std::uint32_t byte_at(std::string_view s, std::size_t i) noexcept {
    return static_cast<unsigned char>(s[i]);
}

constexpr std::uint32_t load_le32(std::string_view s, std::size_t i) noexcept {
    return byte_at(s, i) | byte_at(s, i + 1) << 8 | byte_at(s, i + 2) << 16 |
           byte_at(s, i + 3) << 24;
}

// A base62 character's digit value, kNotBase62 for every other byte: one table lookup
// classifies and decodes, without branches.
constexpr std::uint8_t kNotBase62 = 0x80;
constexpr std::array<std::uint8_t, 256> make_base62_values() {
    std::array<std::uint8_t, 256> t{};
    for (auto &v : t) v = kNotBase62;
    for (std::size_t i = 0; i < kBase62.size(); ++i)
        t[static_cast<unsigned char>(kBase62[i])] = static_cast<std::uint8_t>(i);
    return t;
}
constexpr auto kBase62Value = make_base62_values();

// The CRC register after `data`, from register `c` (before the final inversion).
// constexpr: the register after the scheme every key starts with is computed once, here.
constexpr std::uint32_t crc_update(std::uint32_t c, std::string_view data) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= data.size(); i += 8) {
        const std::uint32_t one = load_le32(data, i) ^ c, two = load_le32(data, i + 4);
        c = kCrc[7][one & 0xFF] ^ kCrc[6][(one >> 8) & 0xFF] ^ kCrc[5][(one >> 16) & 0xFF] ^
            kCrc[4][one >> 24] ^ kCrc[3][two & 0xFF] ^ kCrc[2][(two >> 8) & 0xFF] ^
            kCrc[1][(two >> 16) & 0xFF] ^ kCrc[0][two >> 24];
    }
    for (; i < data.size(); ++i) c = kCrc[0][(c ^ byte_at(data, i)) & 0xFF] ^ (c >> 8);
    return c;
}

constexpr std::uint32_t kCrcAfterScheme = crc_update(0xFFFFFFFFu, kKeyScheme);

}  // namespace

std::uint32_t crc32(std::string_view data) noexcept {
    return crc_update(0xFFFFFFFFu, data) ^ 0xFFFFFFFFu;
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

bool looks_like_key(std::string_view token) noexcept {
    return token.size() == kKeyLength && token.substr(0, kKeyScheme.size()) == kKeyScheme;
}

bool is_well_formed_key(std::string_view token) noexcept {
    if (!looks_like_key(token)) return false;
    const auto *p = reinterpret_cast<const unsigned char *>(token.data());
    std::uint8_t bad = 0;
    for (std::size_t i = kKeyScheme.size(); i < kKeyLength; ++i) bad |= kBase62Value[p[i]];
    if (bad & kNotBase62) return false;
    // The checksum characters as a number: equal to the CRC only when they are its
    // canonical 6-digit encoding (62^6 > 2^32, so no other digits give the same value).
    const std::size_t body = kKeyLength - kKeyChecksumChars;
    std::uint64_t checksum = 0;
    for (std::size_t i = body; i < kKeyLength; ++i) checksum = checksum * 62 + kBase62Value[p[i]];
    const std::string_view after_scheme = token.substr(kKeyScheme.size(), body - kKeyScheme.size());
    return checksum == (crc_update(kCrcAfterScheme, after_scheme) ^ 0xFFFFFFFFu);
}

std::string_view key_prefix(std::string_view key) noexcept {
    return key.substr(0, kKeyPrefixLength);
}

std::size_t cut_keys_to_prefix(char *text, std::size_t len) noexcept {
    constexpr std::string_view kCut = "...";
    const auto *u = reinterpret_cast<const unsigned char *>(text);
    std::size_t in = 0, out = 0;
    while (in < len) {
        bool key = len - in >= kKeyLength &&
                   std::string_view(text + in, kKeyScheme.size()) == kKeyScheme;
        for (std::size_t i = kKeyScheme.size(); key && i < kKeyLength; ++i)
            key = !(kBase62Value[u[in + i]] & kNotBase62);
        if (!key) {
            text[out++] = text[in++];
            continue;
        }
        std::memmove(text + out, text + in, kKeyPrefixLength);  // out <= in
        out += kKeyPrefixLength;
        std::memcpy(text + out, kCut.data(), kCut.size());
        out += kCut.size();
        in += kKeyLength;
    }
    return out;
}

}  // namespace apikey
