// libFuzzer target: the key shape and checksum check (shared/key_format). A key that
// passes re-serialises to the same bytes (scheme + body + base62 CRC32 of the body), and
// a one-byte change of a well-formed key is never well-formed unless it still matches;
// cut_keys_to_prefix leaves nothing key-shaped in any text.
#include "fuzz_check.h"
#include "key_format.h"

#include <cstddef>
#include <cstdint>
#include <string>

using namespace apikey;

namespace {

bool base62(char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// What a well-formed key must be, computed independently of is_well_formed_key.
bool reference_well_formed(std::string_view t) {
    if (t.size() != kKeyLength || t.substr(0, kKeyScheme.size()) != kKeyScheme) return false;
    for (std::size_t i = kKeyScheme.size(); i < t.size(); ++i)
        if (!base62(t[i])) return false;
    std::string key(t.substr(0, kKeyLength - kKeyChecksumChars));
    char sum[kKeyChecksumChars];
    base62_encode_fixed(crc32(key), sum, kKeyChecksumChars);
    key.append(sum, kKeyChecksumChars);
    return key == t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string input(reinterpret_cast<const char *>(data), size);
    const bool ok = is_well_formed_key(input);
    FUZZ_CHECK(ok == reference_well_formed(input));
    // The cheap half, which decides what is hashed: never refuses a well-formed key.
    const bool looks = looks_like_key(input);
    FUZZ_CHECK(looks == (input.size() == kKeyLength &&
                         input.compare(0, kKeyScheme.size(), kKeyScheme) == 0));
    FUZZ_CHECK(!ok || looks);
    const std::string_view prefix = key_prefix(input);
    FUZZ_CHECK(prefix.size() == std::min(input.size(), kKeyPrefixLength));
    FUZZ_CHECK(fuzz::inside(prefix, input));

    // Cutting keys in arbitrary text (a logged request line): never longer, nothing
    // key-shaped left, and a second cut changes nothing.
    std::string cut = input;
    cut.resize(cut_keys_to_prefix(cut.data(), cut.size()));
    FUZZ_CHECK(cut.size() <= input.size());
    for (std::size_t at = cut.find(kKeyScheme); at != std::string::npos;
         at = cut.find(kKeyScheme, at + 1)) {
        std::size_t run = kKeyScheme.size();
        while (at + run < cut.size() && base62(cut[at + run])) ++run;
        FUZZ_CHECK(run < kKeyLength);
    }
    std::string again = cut;
    again.resize(cut_keys_to_prefix(again.data(), again.size()));
    FUZZ_CHECK(again == cut);

    // Any 32 base62 characters made from the input become a key that passes.
    std::string body(kKeyScheme);
    for (std::size_t i = 0; body.size() < kKeyScheme.size() + kKeyRandomChars; ++i) {
        const unsigned char b = i < size ? data[i] : static_cast<unsigned char>(i);
        body.push_back("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[b % 62]);
    }
    char sum[kKeyChecksumChars];
    base62_encode_fixed(crc32(body), sum, kKeyChecksumChars);
    std::string key = body + std::string(sum, kKeyChecksumChars);
    FUZZ_CHECK(key.size() == kKeyLength);
    FUZZ_CHECK(is_well_formed_key(key));
    // Change one checksum character: CRC32 in 6 base62 digits catches every such change.
    if (size > 0) {
        std::string bad = key;
        char &c = bad[kKeyLength - 1 - data[0] % kKeyChecksumChars];
        c = c == '0' ? '1' : '0';
        FUZZ_CHECK(!is_well_formed_key(bad));
    }
    return 0;
}
