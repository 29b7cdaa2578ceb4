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
        // optional whitespace around the field value (nginx leaves tabs, and in HTTP/2
        // spaces too, in the value it hands over)
        {"\tBearer abc", AuthHeader::bearer, "abc"},
        {"Bearer abc\t", AuthHeader::bearer, "abc"},
        {" \t Bearer abc \t ", AuthHeader::bearer, "abc"},
        {"\tBearer\tabc", AuthHeader::wrong_scheme, ""},
        {"Bearer \t", AuthHeader::malformed, ""},
        {"Bearer\t", AuthHeader::malformed, ""},
        {"Bearer abc\tdef", AuthHeader::malformed, ""},
        {"\t", AuthHeader::wrong_scheme, ""},
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

BOOST_AUTO_TEST_CASE(usual_bearer_token_by_length) {
    struct Usual {
        const char *value;
        const char *token;  // "" : not the usual shape
    };
    const Usual cases[] = {
        {"Bearer sk_abc", "sk_abc"},
        {"bEARER sk_abc", "sk_abc"},
        {"Bearer sk_a,c", "sk_a,c"},  // not looked at past the prefix: the caller checks
        {"Bearer sk_abcd", ""},      // longer
        {"Bearer sk_ab", ""},        // shorter
        {"Bearer  sk_ab", ""},       // two spaces: the parser's case
        {"Bearer\tsk_abc", ""},
        {"Basic! sk_abc", ""},
        {"Bearer xk_abc", ""},
        {"", ""},
    };
    for (const auto &c : cases)
        BOOST_TEST(usual_bearer_token(c.value, 6, "sk_") == c.token, "value: " << c.value);
    BOOST_TEST(usual_bearer_token("Bearer ab", 2, "abc").empty());  // prefix longer than size
}

BOOST_AUTO_TEST_SUITE_END()
