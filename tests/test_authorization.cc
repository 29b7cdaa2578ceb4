#include "authorization.h"

#include <boost/test/unit_test.hpp>

#include <string>

using namespace apikey;

BOOST_AUTO_TEST_SUITE(authorization)

struct Case {
    const char *value;
    AuthHeader status;
    const char *token;
};

BOOST_AUTO_TEST_CASE(table) {
    const std::string big(10000, 'a');
    const Case cases[] = {
        {"Bearer abc", AuthHeader::bearer, "abc"},
        {"bearer abc", AuthHeader::bearer, "abc"},
        {"BEARER abc", AuthHeader::bearer, "abc"},
        {"Bearer    abc", AuthHeader::bearer, "abc"},
        {"Bearer abc  ", AuthHeader::bearer, "abc"},
        {"Bearer a-._~+/b==", AuthHeader::bearer, "a-._~+/b=="},
        {"Bearer", AuthHeader::malformed, ""},
        {"Bearer ", AuthHeader::malformed, ""},
        {"Bearer abc def", AuthHeader::malformed, ""},
        {"Bearer abc,def", AuthHeader::malformed, ""},
        {"Bearer ab=c", AuthHeader::malformed, ""},
        {"Bearer \xC3\xA9t\xC3\xA9", AuthHeader::malformed, ""},
        {"Bearer\tabc", AuthHeader::wrong_scheme, ""},
        {"Basic dXNlcjpwYXNz", AuthHeader::wrong_scheme, ""},
        {"Bearerabc", AuthHeader::wrong_scheme, ""},
        {"", AuthHeader::wrong_scheme, ""},
        {"abc", AuthHeader::wrong_scheme, ""},
    };
    for (const auto &c : cases) {
        const BearerToken t = parse_authorization(c.value);
        BOOST_TEST((t.status == c.status), "value: " << c.value);
        if (c.status == AuthHeader::bearer) BOOST_TEST(t.token == c.token);
    }
    const BearerToken t = parse_authorization("Bearer " + big);
    BOOST_TEST((t.status == AuthHeader::bearer));
    BOOST_TEST(t.token.size() == big.size());
}

BOOST_AUTO_TEST_SUITE_END()
