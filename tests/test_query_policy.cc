#include "query_policy.h"

#include <boost/test/unit_test.hpp>

using namespace apikey;
using snapshot::EntityView;

namespace {

EntityView restricted() {
    EntityView e;
    e.max_expand_depth = 2;
    e.default_expand = "customer,items.product";
    e.default_fields = "name,email,ssn";
    e.expandable = "customer,items";
    e.filterable = "name,email,ssn";
    e.hidden_columns = "ssn,notes";
    return e;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(query_policy)

BOOST_AUTO_TEST_CASE(table) {
    struct Case {
        const char *query;
        QueryStatus status;
        const char *expand_or_offender;
        const char *fields;
    };
    const Case cases[] = {
        // defaults only when the parameter is absent
        {"", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"expand=", QueryStatus::ok, "", "id,name,email"},
        {"expand=customer", QueryStatus::ok, "customer", "id,name,email"},
        // truncation at the depth, duplicates removed, order kept
        {"expand=items.product.vendor,customer.address", QueryStatus::ok,
         "items.product,customer.address", "id,name,email"},
        {"expand=customer.a.b&expand=customer.a.c", QueryStatus::ok, "customer.a", "id,name,email"},
        {"expand=customer,%20items", QueryStatus::ok, "customer,items", "id,name,email"},
        // whitelist on the first segment
        {"expand=orders", QueryStatus::expand_not_allowed, "orders", ""},
        {"expand=customer,orders.lines", QueryStatus::expand_not_allowed, "orders", ""},
        {"expand=cust$omer", QueryStatus::invalid_query, "cust$omer", ""},
        {"expand=a..b", QueryStatus::invalid_query, "a..b", ""},
        // fields: hidden removed even when asked, id kept
        {"fields=name,ssn", QueryStatus::ok, "customer,items.product", "id,name"},
        {"fields=id,notes", QueryStatus::ok, "customer,items.product", "id"},
        {"fields=ssn", QueryStatus::ok, "customer,items.product", "id"},
        {"fields=", QueryStatus::ok, "customer,items.product", ""},
        {"fields=na%6De", QueryStatus::ok, "customer,items.product", "id,name"},
        // filters: whitelist, hidden columns, encoded names
        {"filter[name]=bob", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"filter%5Bname%5D=bob", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"filter[status]=x", QueryStatus::filter_not_allowed, "status", ""},
        {"filter%5Bstatus%5D=x", QueryStatus::filter_not_allowed, "status", ""},
        {"filter[ssn]=1", QueryStatus::filter_not_allowed, "ssn", ""},
        {"filter[]=1", QueryStatus::invalid_query, "filter[]", ""},
        {"filter[name=1", QueryStatus::invalid_query, "filter[name", ""},
        // garbage
        {"expand=%zz", QueryStatus::invalid_query, "expand", ""},
        {"a=%4", QueryStatus::invalid_query, "a", ""},
        {"&&&", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"other=1&page=2", QueryStatus::ok, "customer,items.product", "id,name,email"},
    };
    const EntityView entity = restricted();
    for (const auto &c : cases) {
        const QueryOutcome out = apply_query_policy(c.query, entity);
        BOOST_TEST((out.status == c.status), "query: " << c.query);
        if (c.status == QueryStatus::ok) {
            BOOST_TEST(out.expand == c.expand_or_offender, "query: " << c.query);
            BOOST_TEST(out.fields == c.fields, "query: " << c.query);
        } else {
            BOOST_TEST(out.offender == c.expand_or_offender, "query: " << c.query);
        }
    }
}

BOOST_AUTO_TEST_CASE(unrestricted_entity_passes_everything_through) {
    EntityView open;  // system defaults: depth 3, no lists
    const QueryOutcome out =
        apply_query_policy("expand=a.b.c.d,e&filter[anything]=1&fields=x", open);
    BOOST_TEST((out.status == QueryStatus::ok));
    BOOST_TEST(out.expand == "a.b.c,e");
    BOOST_TEST(out.fields == "id,x");
}

BOOST_AUTO_TEST_CASE(depth_zero_expands_nothing) {
    EntityView e;
    e.max_expand_depth = 0;
    BOOST_TEST(apply_query_policy("expand=a.b", e).expand == "");
    e.max_expand_depth = 1;
    BOOST_TEST(apply_query_policy("expand=a.b,a.c", e).expand == "a");
}

BOOST_AUTO_TEST_CASE(default_expand_is_not_checked_against_the_whitelist) {
    EntityView e;
    e.default_expand = "audit";
    e.expandable = "customer";
    BOOST_TEST(apply_query_policy("", e).expand == "audit");
}

BOOST_AUTO_TEST_CASE(offender_is_bounded) {
    EntityView e;
    e.expandable = "customer";
    const std::string long_name(500, 'x');
    const QueryOutcome out = apply_query_policy("expand=" + long_name, e);
    BOOST_TEST((out.status == QueryStatus::invalid_query));
    BOOST_TEST(out.offender.size() <= 64u);
}

BOOST_AUTO_TEST_SUITE_END()
