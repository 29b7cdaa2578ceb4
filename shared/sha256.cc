#include "sha256.h"

#include "sha256_one_block.h"

#include <cstdint>
#include <cstring>

// The low-level SHA256_* functions are deprecated in OpenSSL 3 but still the same
// assembly EVP ends in (SHA-NI where the CPU has it), without EVP's per-call provider
// dispatch and context bookkeeping: on a 46-byte key that overhead is most of the cost.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>

#include <stdexcept>

namespace apikey {
namespace {

#if OPENSSL_VERSION_MAJOR >= 4
// Fetched once per process: an implicit fetch on every call costs a provider lookup.
const EVP_MD *sha256_md() noexcept {
    static const EVP_MD *md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}
#endif

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

bool sha256(std::string_view data, Digest &out) noexcept {
    if (sha256_one_block(data, out.data())) return true;
#if OPENSSL_VERSION_MAJOR < 4
    SHA256_CTX ctx;
    return SHA256_Init(&ctx) == 1 && SHA256_Update(&ctx, data.data(), data.size()) == 1 &&
           SHA256_Final(out.data(), &ctx) == 1;
#else
    // One context per thread, reused: EVP_Digest would allocate and free one per call,
    // on the request path.
    static thread_local EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = sha256_md();
    unsigned int len = 0;
    return md != nullptr && ctx != nullptr && EVP_DigestInit_ex(ctx, md, nullptr) == 1 &&
           EVP_DigestUpdate(ctx, data.data(), data.size()) == 1 &&
           EVP_DigestFinal_ex(ctx, out.data(), &len) == 1 && len == out.size();
#endif
}

Digest sha256(std::string_view data) {
    Digest out{};
    if (!sha256(data, out)) throw std::runtime_error("SHA-256 failed in OpenSSL");
    return out;
}

std::string to_hex(const Digest &digest) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex(digest.size() * 2, '0');
    for (std::size_t i = 0; i < digest.size(); ++i) {
        hex[2 * i] = kHex[digest[i] >> 4];
        hex[2 * i + 1] = kHex[digest[i] & 0xF];
    }
    return hex;
}

std::optional<Digest> digest_from_hex(std::string_view hex) noexcept {
    Digest out{};
    if (hex.size() != out.size() * 2) return std::nullopt;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return out;
}

bool digest_equal(const Digest &a, const Digest &b) noexcept {
    // Four 64-bit words OR-ed together: no early exit, and a few instructions (every key
    // lookup compares one or two; CRYPTO_memcmp's byte loop cost ~50 ns there).
    std::uint64_t x[4], y[4], diff = 0;
    std::memcpy(x, a.data(), sizeof x);
    std::memcpy(y, b.data(), sizeof y);
    for (int i = 0; i < 4; ++i) diff |= x[i] ^ y[i];
    return diff == 0;
}

}  // namespace apikey
