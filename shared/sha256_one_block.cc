#include "sha256_one_block.h"

#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define APIKEY_SHA_NI 1
#endif

namespace apikey {

#if APIKEY_SHA_NI
namespace {

alignas(16) constexpr std::uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

bool cpu_has_sha_ni() noexcept {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool ssse3 = c & bit_SSSE3, sse41 = c & bit_SSE4_1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return ssse3 && sse41 && (b & bit_SHA);
}

// One 64-byte block compressed from the initial state: the SHA extensions' two-rounds
// instruction over four message words at a time, the schedule by sha256msg1/msg2.
// The state lives as ABEF / CDGH, the order the instructions want.
__attribute__((target("sha,sse4.1,ssse3"))) void compress_initial(const unsigned char *block,
                                                                   unsigned char *out) noexcept {
    // Reverses the bytes of each 32-bit word: SHA-256 words are big-endian.
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    // H0..H7 of FIPS 180-4, as ABEF and CDGH.
    const __m128i abef0 = _mm_set_epi32(0x6a09e667, 0xbb67ae85, 0x510e527f, 0x9b05688c);
    const __m128i cdgh0 = _mm_set_epi32(0x3c6ef372, 0xa54ff53a, 0x1f83d9ab, 0x5be0cd19);
    __m128i abef = abef0, cdgh = cdgh0;
    __m128i w[4];
    for (int i = 0; i < 4; ++i)
        w[i] = _mm_shuffle_epi8(
            _mm_loadu_si128(reinterpret_cast<const __m128i *>(block + 16 * i)), byte_swap);
    // Unrolled, so that the four message groups stay in registers.
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
        const __m128i current = w[g & 3];
        __m128i wk = _mm_add_epi32(current,
                                   _mm_load_si128(reinterpret_cast<const __m128i *>(kRound + 4 * g)));
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
        wk = _mm_shuffle_epi32(wk, 0x0E);
        abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
        if (g < 12) {  // words 4(g+4) .. 4(g+4)+3 replace the group just used
            const __m128i next = w[(g + 1) & 3], later = w[(g + 2) & 3], last = w[(g + 3) & 3];
            __m128i x = _mm_sha256msg1_epu32(current, next);
            x = _mm_add_epi32(x, _mm_alignr_epi8(last, later, 4));
            w[g & 3] = _mm_sha256msg2_epu32(x, last);
        }
    }
    abef = _mm_add_epi32(abef, abef0);
    cdgh = _mm_add_epi32(cdgh, cdgh0);
    // Back to A..H, each word big-endian.
    const __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    const __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    const __m128i dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    const __m128i hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(out), _mm_shuffle_epi8(dcba, byte_swap));
    _mm_storeu_si128(reinterpret_cast<__m128i *>(out + 16), _mm_shuffle_epi8(hgfe, byte_swap));
}

}  // namespace

bool sha256_one_block_available() noexcept {
    static const bool available = cpu_has_sha_ni();
    return available;
}

bool sha256_one_block(std::string_view data, unsigned char *out) noexcept {
    if (data.size() > kSha256OneBlockMax || !sha256_one_block_available()) return false;
    // The message, 0x80, zeros, and its length in bits as a big-endian 64-bit number.
    alignas(16) unsigned char block[64] = {};
    if (!data.empty()) std::memcpy(block, data.data(), data.size());  // data() may be null
    block[data.size()] = 0x80;
    const std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
    for (int i = 0; i < 8; ++i) block[63 - i] = static_cast<unsigned char>(bits >> (8 * i));
    compress_initial(block, out);
    return true;
}

#else

bool sha256_one_block_available() noexcept { return false; }
bool sha256_one_block(std::string_view, unsigned char *) noexcept { return false; }

#endif

}  // namespace apikey
