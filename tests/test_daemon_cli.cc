// `apikeyd hash-token`: what operators put into admin_tokens[].token_sha256.
#include "../daemon/cli.h"
#include "sha256.h"

#include <boost/test/unit_test.hpp>

#include <sstream>

BOOST_AUTO_TEST_SUITE(daemon_cli)

BOOST_AUTO_TEST_CASE(hash_token_prints_the_sha256_hex) {
    const std::string token = "change-me-example-admin-token";
    for (const std::string &input : {token, token + "\n", token + "\r\n"}) {
        std::istringstream in(input);
        std::ostringstream out, err;
        BOOST_TEST(apikeyd::hash_token(in, out, err) == 0);
        // The value conf.example/apikeyd.yaml documents for this example token.
        BOOST_TEST(out.str() ==
                   "6f2c014d35c913bade57156ae7d84d634382689147680b19e34ff7651927dd1f\n");
        BOOST_TEST(out.str() == apikey::to_hex(apikey::sha256(token)) + "\n");
        BOOST_TEST(err.str().empty());
    }
}

BOOST_AUTO_TEST_CASE(hash_token_refuses_what_cannot_be_a_bearer_token) {
    for (const char *input : {"", "\n", "two words", "tab\there", "a,b", "line1\nline2"}) {
        std::istringstream in(input);
        std::ostringstream out, err;
        BOOST_TEST(apikeyd::hash_token(in, out, err) == apikeyd::kExitUsage, '"' << input << '"');
        BOOST_TEST(out.str().empty());
        BOOST_TEST(!err.str().empty());
    }
    std::istringstream in("short");
    std::ostringstream out, err;
    BOOST_TEST(apikeyd::hash_token(in, out, err) == 0);
    BOOST_TEST(err.str().find("warning") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
