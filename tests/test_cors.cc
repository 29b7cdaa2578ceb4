#include "cors.h"

#include <boost/test/unit_test.hpp>

using namespace apikey;

BOOST_AUTO_TEST_SUITE(cors)

BOOST_AUTO_TEST_CASE(grant_table) {
    const char *list = "https://app.example.com,http://localhost:3000";
    struct Case {
        const char *allowed;
        const char *origin;
        CorsGrant grant;
    };
    const Case cases[] = {
        {"", "https://anything.test", CorsGrant::any_origin},
        {"", "", CorsGrant::none},
        {list, "https://app.example.com", CorsGrant::this_origin},
        {list, "HTTPS://APP.EXAMPLE.COM", CorsGrant::this_origin},
        {list, "http://localhost:3000", CorsGrant::this_origin},
        {list, "http://localhost:3001", CorsGrant::none},
        {list, "http://app.example.com", CorsGrant::none},
        {list, "https://app.example.com.evil.test", CorsGrant::none},
        {list, "https://app.example.co", CorsGrant::none},
        {list, "null", CorsGrant::none},
        {list, "", CorsGrant::none},
    };
    for (const auto &c : cases)
        BOOST_TEST((cors_grant(c.allowed, c.origin) == c.grant), c.allowed << " / " << c.origin);
}

BOOST_AUTO_TEST_CASE(echoable_header_lists) {
    BOOST_TEST(is_echoable_header_list("content-type, x-request-id"));
    BOOST_TEST(!is_echoable_header_list(""));
    BOOST_TEST(!is_echoable_header_list("x\r\nSet-Cookie: a"));
    BOOST_TEST(!is_echoable_header_list(std::string(2000, 'a')));
}

BOOST_AUTO_TEST_SUITE_END()
