// shared/names.h: the names apikeyd's admin API accepts, which nginx -t also applies to a
// constant apikey_workspace / apikey_entity (through apikey_capi.h).
#include "apikey_capi.h"
#include "names.h"

#include <boost/test/unit_test.hpp>

#include <string>

using namespace apikey;

namespace {

bool workspace_ok(const std::string &s) { return apikey_workspace_is_valid(s.data(), s.size()) == 1; }
bool entity_ok(const std::string &s) { return apikey_entity_is_valid(s.data(), s.size()) == 1; }

}  // namespace

BOOST_AUTO_TEST_SUITE(names)

BOOST_AUTO_TEST_CASE(slugs_and_workspace_paths) {
    for (const char *good : {"a", "0", "acme-corp", "a-b-c", "9lives"})
        BOOST_TEST(is_valid_slug(good), good);
    BOOST_TEST(is_valid_slug(std::string(63, 'a')));
    for (const char *bad : {"", "-a", "a-", "A", "acme_corp", "a.b", "a b", "a/b", "é"})
        BOOST_TEST(!is_valid_slug(bad), bad);
    BOOST_TEST(!is_valid_slug(std::string(64, 'a')));

    for (const char *good : {"acme-corp/sales", "a/b", "0/9"})
        BOOST_TEST(workspace_ok(good), good);
    BOOST_TEST(workspace_ok(std::string(63, 'o') + "/" + std::string(63, 's')));
    for (const char *bad : {"", "/", "acme", "acme/", "/sales", "ACME/Sales", "acme/Sales",
                            "acme/sales/x", "acme//sales", "-acme/sales", "acme/sales-"})
        BOOST_TEST(!workspace_ok(bad), bad);
    BOOST_TEST(!workspace_ok(std::string(64, 'o') + "/sales"));
    BOOST_TEST(!workspace_ok(std::string("acme\0/sales", 11)));
}

BOOST_AUTO_TEST_CASE(entity_names) {
    for (const char *good : {"a", "A", "_", "orders", "Order_Items2", "_x9"})
        BOOST_TEST(entity_ok(good), good);
    BOOST_TEST(entity_ok(std::string(kMaxIdentifierLength, 'x')));
    for (const char *bad : {"", "9a", "bad-name", "a.b", "a b", "caf\xc3\xa9", "a/b", "a%20"})
        BOOST_TEST(!entity_ok(bad), bad);
    BOOST_TEST(!entity_ok(std::string(kMaxIdentifierLength + 1, 'x')));
    BOOST_TEST(!entity_ok(std::string("a\0b", 3)));
}

BOOST_AUTO_TEST_SUITE_END()
