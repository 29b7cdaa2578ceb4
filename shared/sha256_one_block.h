// SHA-256 of a message that fits one block (at most 55 bytes: an API key is 46), computed
// with the x86 SHA extensions. On the request path this replaces OpenSSL's
// SHA256_Init/Update/Final, whose context handling and final cleanse cost more than the
// one block's compression. sha256() in sha256.h uses it when it can and OpenSSL otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace apikey {

inline constexpr std::size_t kSha256OneBlockMax = 55;

// True when this CPU has the SHA extensions (with SSSE3 and SSE4.1); checked once.
bool sha256_one_block_available() noexcept;

// Writes the 32-byte digest of `data` to `out` and returns true; returns false without
// writing when `data` is longer than kSha256OneBlockMax or the CPU lacks the extensions.
bool sha256_one_block(std::string_view data, unsigned char *out) noexcept;

}  // namespace apikey
