#include "key_format.h"

#include <boost/test/unit_test.hpp>

#include <set>
#include <string>

using namespace apikey;

BOOST_AUTO_TEST_SUITE(key_format)

BOOST_AUTO_TEST_CASE(crc32_matches_the_standard_check_value) {
    // The CRC-32/ISO-HDLC check value, as zlib computes it.
    BOOST_TEST(crc32("123456789") == 0xCBF43926u);
    BOOST_TEST(crc32("") == 0u);
}

BOOST_AUTO_TEST_CASE(base62_is_fixed_width_most_significant_first) {
    char out[6];
    base62_encode_fixed(0, out, 6);
    BOOST_TEST(std::string(out, 6) == "000000");
    base62_encode_fixed(61, out, 6);
    BOOST_TEST(std::string(out, 6) == "00000z");
    base62_encode_fixed(62, out, 6);
    BOOST_TEST(std::string(out, 6) == "000010");
    base62_encode_fixed(0xFFFFFFFFu, out, 6);
    BOOST_TEST(std::string(out, 6) == "4gfFC3");
}

BOOST_AUTO_TEST_CASE(generated_keys_have_the_documented_shape) {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        const std::string key = generate_key();
        BOOST_TEST(key.size() == kKeyLength);
        BOOST_TEST(key.substr(0, 8) == "sk_live_");
        BOOST_TEST(is_well_formed_key(key));
        BOOST_TEST(key_prefix(key) == key.substr(0, 12));
        seen.insert(key);
    }
    BOOST_TEST(seen.size() == 1000u);
}

BOOST_AUTO_TEST_CASE(random_part_uses_the_whole_alphabet) {
    std::set<char> chars;
    for (int i = 0; i < 200; ++i) {
        const std::string key = generate_key();
        chars.insert(key.begin() + 8, key.begin() + 40);
    }
    BOOST_TEST(chars.size() == 62u);
}

BOOST_AUTO_TEST_CASE(every_single_character_change_is_rejected) {
    const std::string key = generate_key();
    for (std::size_t i = 0; i < key.size(); ++i) {
        std::string bad = key;
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        BOOST_TEST(!is_well_formed_key(bad), "changed position " << i);
    }
}

BOOST_AUTO_TEST_CASE(wrong_shapes_are_rejected) {
    const std::string key = generate_key();
    const std::string cases[] = {
        "",
        key.substr(0, kKeyLength - 1),
        key + "a",
        "sk_test_" + key.substr(8),
        "SK_LIVE_" + key.substr(8),
        key.substr(0, 20) + "-" + key.substr(21),
        key.substr(0, 20) + "\xC3" + key.substr(21),
        std::string(kKeyLength, 'a'),
        std::string(10000, 'a'),
    };
    for (const auto &c : cases) BOOST_TEST(!is_well_formed_key(c), "accepted: " << c.substr(0, 60));
}

// The cheap half decides what is worth hashing: length and scheme only, so a key with a
// typo passes it (its checksum refuses it) and everything of another length or scheme
// does not.
BOOST_AUTO_TEST_CASE(looks_like_key_checks_length_and_scheme_only) {
    const std::string key = generate_key();
    std::string typo = key;
    typo[20] = typo[20] == 'a' ? 'b' : 'a';
    BOOST_TEST(looks_like_key(key));
    BOOST_TEST(looks_like_key(typo));
    BOOST_TEST(looks_like_key("sk_live_" + std::string(kKeyLength - 8, '-')));
    for (const std::string &c : {std::string(), key.substr(0, kKeyLength - 1), key + "a",
                                 "sk_test_" + key.substr(8), "SK_LIVE_" + key.substr(8)})
        BOOST_TEST(!looks_like_key(c), "passed: " << c);
}

BOOST_AUTO_TEST_CASE(checksum_is_crc32_of_everything_before_it) {
    const std::string key = generate_key();
    char expected[6];
    base62_encode_fixed(crc32(key.substr(0, 40)), expected, 6);
    BOOST_TEST(key.substr(40) == std::string(expected, 6));
}

BOOST_AUTO_TEST_CASE(keys_in_text_are_cut_to_their_prefix) {
    const std::string k = generate_key(), k2 = generate_key();
    const std::string p = k.substr(0, 12) + "...", p2 = k2.substr(0, 12) + "...";
    std::string short_key = k.substr(0, 45), bad_char = k;
    bad_char[30] = '-';
    struct Case {
        std::string text, expected;
    };
    const Case cases[] = {
        {"", ""},
        {"GET /x HTTP/1.1", "GET /x HTTP/1.1"},
        {k, p},
        {"GET /x?api_key=" + k + " HTTP/1.1", "GET /x?api_key=" + p + " HTTP/1.1"},
        {"GET /" + k + "/" + k2 + "?a=" + k + " HTTP/1.1",
         "GET /" + p + "/" + p2 + "?a=" + p + " HTTP/1.1"},
        {k + k2, p + p2},
        {k + "xyz", p + "xyz"},  // as the access log's map: no boundary after the key
        {short_key, short_key},
        {bad_char, bad_char},
        {"sk_live_", "sk_live_"},
        {"sk-live_" + k.substr(8), "sk-live_" + k.substr(8)},
    };
    for (const auto &c : cases) {
        std::string text = c.text;
        text.resize(cut_keys_to_prefix(text.data(), text.size()));
        BOOST_TEST(text == c.expected);
    }
}

BOOST_AUTO_TEST_SUITE_END()
