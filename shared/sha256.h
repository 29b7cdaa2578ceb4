// SHA-256: the only form in which keys and admin tokens are stored. OpenSSL, except for
// messages of one block on CPUs with the SHA extensions (sha256_one_block.h).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace apikey {

using Digest = std::array<unsigned char, 32>;

// Returns false only if OpenSSL fails (out of memory); `out` is then unspecified.
bool sha256(std::string_view data, Digest &out) noexcept;

// Throwing convenience for the control plane.
Digest sha256(std::string_view data);

std::string to_hex(const Digest &digest);
// Accepts exactly 64 hex digits, either case.
std::optional<Digest> digest_from_hex(std::string_view hex) noexcept;

// Constant-time equality, for comparing secrets' digests.
bool digest_equal(const Digest &a, const Digest &b) noexcept;

}  // namespace apikey
