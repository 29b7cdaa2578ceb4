#include "request_path.h"

#include <boost/test/unit_test.hpp>

using namespace apikey;

BOOST_AUTO_TEST_SUITE(request_path)

BOOST_AUTO_TEST_CASE(ambiguous_table) {
    struct Case {
        const char *path;
        bool ambiguous;
    };
    const Case cases[] = {
        {"", false},
        {"/", false},
        {"/api/v1/acme-corp/sales/Customer", false},
        {"/api/v1/acme-corp/sales/Customer/", false},
        {"/api/v1/acme-corp/sales/Customer/a%20b", false},
        {"/api/v1/acme-corp/sales/Customer/%41%42", false},
        {"/api/v1/acme-corp/sales/.well-known", false},
        {"/api/v1/acme-corp/sales/...", false},
        {"/api/v1/acme-corp/sales/a.b/..c/c..", false},
        {"/api/v1/acme-corp/sales/%2e%2e%2e", false},
        {"/api/v1/acme-corp/sales/%2", false},
        {"/api/v1/acme-corp/sales/%", false},
        {"/api/v1//acme-corp/sales/Customer", false},  // merged, same segments in order
        {"/api/v1/acme-corp/inventory/Customer/1%2F..%2F..%2F..%2Fsales%2Fpub", true},
        {"/api/v1/acme-corp/sales/Customer/a%2fb", true},
        {"/api/v1/acme-corp/sales%2FCustomer/x", true},
        {"/api/v1/acme-corp/inventory/../sales/pub", true},
        {"/api/v1/acme-corp/sales/./Customer", true},
        {"/api/v1/acme-corp/sales/Customer/..", true},
        {"/api/v1/acme-corp/sales/Customer/.", true},
        {"/api/v1/acme-corp/inventory/%2e%2e/sales/pub", true},
        {"/api/v1/acme-corp/inventory/%2E./sales/pub", true},
        {"/api/v1/acme-corp/inventory/.%2e/sales/pub", true},
        {"/api/v1/acme-corp/sales/%2e/Customer", true},
        {"..", true},
        {"/..", true},
    };
    for (const auto &c : cases)
        BOOST_TEST(ambiguous_path(c.path) == c.ambiguous, c.path);
}

BOOST_AUTO_TEST_SUITE_END()
