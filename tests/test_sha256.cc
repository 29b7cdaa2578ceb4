#include "sha256.h"

#include <boost/test/unit_test.hpp>

using namespace apikey;

BOOST_AUTO_TEST_SUITE(sha256_digest)

BOOST_AUTO_TEST_CASE(known_vectors) {
    for (const std::string_view empty : {std::string_view(""), std::string_view()})
        BOOST_TEST(to_hex(sha256(empty)) ==
                   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    BOOST_TEST(to_hex(sha256("abc")) ==
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

BOOST_AUTO_TEST_CASE(hex_round_trip_and_rejects) {
    const Digest d = sha256("x");
    const auto back = digest_from_hex(to_hex(d));
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST(digest_equal(*back, d));

    std::string upper = to_hex(d);
    for (auto &c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    BOOST_TEST(digest_from_hex(upper).has_value());

    BOOST_TEST(!digest_from_hex("").has_value());
    BOOST_TEST(!digest_from_hex(to_hex(d).substr(1)).has_value());
    BOOST_TEST(!digest_from_hex(std::string(64, 'g')).has_value());
}

BOOST_AUTO_TEST_CASE(digest_equal_compares_every_byte) {
    Digest a = sha256("a"), b = a;
    BOOST_TEST(digest_equal(a, b));
    b[31] ^= 1;
    BOOST_TEST(!digest_equal(a, b));
}

BOOST_AUTO_TEST_SUITE_END()
