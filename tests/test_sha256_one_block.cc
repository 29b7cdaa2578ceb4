#include "sha256.h"
#include "sha256_one_block.h"

#include <boost/test/unit_test.hpp>

#include <openssl/evp.h>

#include <random>
#include <string>

using namespace apikey;

namespace {

Digest openssl_sha256(std::string_view data) {
    Digest d{};
    unsigned int len = 0;
    BOOST_REQUIRE(EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr) == 1);
    return d;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sha256_one_block_suite)

// Every length the one-block path takes (0..55 bytes; a key is 46) and the first ones it
// leaves to OpenSSL, random bytes, against OpenSSL's EVP: a wrong round, schedule or
// padding byte changes every digest. (Known vectors: test_sha256.cc, through sha256().)
BOOST_AUTO_TEST_CASE(matches_openssl_for_every_length) {
    if (!sha256_one_block_available())
        BOOST_TEST_MESSAGE("this CPU has no SHA extensions: only the OpenSSL path is checked");
    std::mt19937 rng(20261206);
    for (std::size_t len = 0; len <= 64; ++len) {
        for (int round = 0; round < 50; ++round) {
            std::string data(len, '\0');
            for (auto &c : data) c = static_cast<char>(rng());
            Digest fast{};
            const bool took = sha256_one_block(data, fast.data());
            BOOST_TEST(took == (len <= kSha256OneBlockMax && sha256_one_block_available()),
                       "length " << len);
            if (took) BOOST_TEST(to_hex(fast) == to_hex(openssl_sha256(data)), "length " << len);
            BOOST_TEST(to_hex(sha256(data)) == to_hex(openssl_sha256(data)), "length " << len);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
