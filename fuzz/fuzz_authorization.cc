// libFuzzer target: the Authorization header value (shared/authorization) and the key
// shape check run on the token it yields (what the module does on every request), and
// the usual header's shortcut past the parser (usual_bearer_token).
#include "authorization.h"
#include "fuzz_check.h"
#include "key_format.h"

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string value(reinterpret_cast<const char *>(data), size);
    const std::string_view header(value);
    const apikey::BearerToken t = apikey::parse_authorization(header);
    if (t.status == apikey::AuthHeader::bearer) {
        FUZZ_CHECK(!t.token.empty());
        FUZZ_CHECK(fuzz::inside(t.token, header));
        // The token is one b64token: no space, tab or control byte in it.
        for (unsigned char c : t.token) FUZZ_CHECK(c > 0x20 && c < 0x7F);
        // "Bearer" + at least one SP before it, case-insensitively, after optional
        // whitespace (SP, HTAB) around the value.
        std::string_view trimmed = header;
        while (!trimmed.empty() && (trimmed.front() == ' ' || trimmed.front() == '\t'))
            trimmed.remove_prefix(1);
        FUZZ_CHECK(trimmed.size() >= 7 + t.token.size());
        std::string scheme(trimmed.substr(0, 6));
        for (char &c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        FUZZ_CHECK(scheme == "bearer");
        // The same header parses to the same token again.
        const std::string again(header);
        const apikey::BearerToken u = apikey::parse_authorization(again);
        FUZZ_CHECK(u.status == apikey::AuthHeader::bearer && u.token == t.token);
        (void)apikey::is_well_formed_key(t.token);
    } else {
        FUZZ_CHECK(t.token.empty());
    }
    // The usual header's shortcut: where it yields a well-formed key, the parser yields
    // that same token.
    const std::string_view usual =
        apikey::usual_bearer_token(header, apikey::kKeyLength, apikey::kKeyScheme);
    if (!usual.empty()) {
        FUZZ_CHECK(fuzz::inside(usual, header) && usual.size() == apikey::kKeyLength);
        if (apikey::is_well_formed_key(usual))
            FUZZ_CHECK(t.status == apikey::AuthHeader::bearer && t.token == usual);
    }
    return 0;
}
