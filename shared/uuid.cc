#include "uuid.h"

#include <openssl/rand.h>

#include <stdexcept>

namespace apikey {
namespace {

constexpr bool is_dash_position(std::size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

Uuid random_uuid() {
    Uuid id;
    if (RAND_bytes(id.bytes.data(), static_cast<int>(id.bytes.size())) != 1)
        throw std::runtime_error("RAND_bytes failed: no entropy for a new id");
    id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0F) | 0x40);  // version 4
    id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant
    return id;
}

void format_uuid(const Uuid &id, char *out) noexcept {
    static constexpr char kHex[] = "0123456789abcdef";
    std::size_t byte = 0;
    for (std::size_t i = 0; i < kUuidTextLength;) {
        if (is_dash_position(i)) {
            out[i++] = '-';
            continue;
        }
        out[i++] = kHex[id.bytes[byte] >> 4];
        out[i++] = kHex[id.bytes[byte] & 0xF];
        ++byte;
    }
}

std::string to_string(const Uuid &id) {
    std::string text(kUuidTextLength, '0');
    format_uuid(id, text.data());
    return text;
}

std::optional<Uuid> parse_uuid(std::string_view text) noexcept {
    if (text.size() != kUuidTextLength) return std::nullopt;
    Uuid id;
    std::size_t byte = 0;
    for (std::size_t i = 0; i < kUuidTextLength;) {
        if (is_dash_position(i)) {
            if (text[i++] != '-') return std::nullopt;
            continue;
        }
        const int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        id.bytes[byte++] = static_cast<std::uint8_t>(hi << 4 | lo);
        i += 2;
    }
    return id;
}

}  // namespace apikey
