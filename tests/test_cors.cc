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
        {list, "https://app.example.com/", CorsGrant::none},
        {list, "https://app.example.com:443", CorsGrant::none},  // browsers drop it
        {list, "https://app.example.com:8443", CorsGrant::none},
        {list, "https://APP.example.com", CorsGrant::this_origin},
        {list, "Http://LocalHost:3000", CorsGrant::this_origin},
        {list, "http://localhost", CorsGrant::none},
        {list, "https://app", CorsGrant::none},
        {list, "https://app.example.com,http://localhost:3000", CorsGrant::none},
        {"null", "null", CorsGrant::none},  // never stored; never matched either
        {"", "null", CorsGrant::any_origin},  // "*" is safe for an opaque origin
        {"https://a.test", "https://a.test", CorsGrant::this_origin},
    };
    for (const auto &c : cases)
        BOOST_TEST((cors_grant(c.allowed, c.origin) == c.grant), c.allowed << " / " << c.origin);
}

BOOST_AUTO_TEST_CASE(echoable_header_lists) {
    BOOST_TEST(is_echoable_header_list("content-type, x-request-id"));
    BOOST_TEST(!is_echoable_header_list(""));
    BOOST_TEST(!is_echoable_header_list("x\r\nSet-Cookie: a"));
    BOOST_TEST(!is_echoable_header_list(std::string(2000, 'a')));
    BOOST_TEST(is_echoable_header_list("authorization,content-type"));
    BOOST_TEST(!is_echoable_header_list("x-a; x-b"));
    BOOST_TEST(!is_echoable_header_list("x-a:1"));
    BOOST_TEST(!is_echoable_header_list("x-\xc3\xa9"));
    BOOST_TEST(!is_echoable_header_list("a\tb"));
}

BOOST_AUTO_TEST_SUITE_END()
