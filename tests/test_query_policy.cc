#include "query_policy.h"

#include <boost/test/unit_test.hpp>

#include <random>
#include <string>
#include <vector>

using namespace apikey;
using snapshot::EntityView;

namespace {

constexpr char kGuard = '\x5a';

struct Result {
    QueryStatus status;
    std::string offender, expand, fields;
};

// Runs the policy in exactly the memory it asks for, followed by guard bytes that must
// stay untouched.
Result run(std::string_view query, const EntityView &entity) {
    const std::size_t need = query_policy_memory(query, entity);
    std::vector<char> memory(need + 32, kGuard);
    const QueryOutcome out =
        apply_query_policy(query, entity, need != 0 ? memory.data() : nullptr, need);
    for (std::size_t i = need; i < memory.size(); ++i)
        BOOST_TEST_REQUIRE(memory[i] == kGuard, "wrote past its memory for: " << query);
    return {out.status, std::string(out.offender), std::string(out.expand),
            std::string(out.fields)};
}

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

const char *status_name(QueryStatus s) {
    switch (s) {
    case QueryStatus::ok: return "ok";
    case QueryStatus::invalid_query: return "invalid_query";
    case QueryStatus::expand_not_allowed: return "expand_not_allowed";
    case QueryStatus::filter_not_allowed: return "filter_not_allowed";
    case QueryStatus::no_memory: return "no_memory";
    }
    return "?";
}

// Runs `query` and checks that it gets `status` (a failure says what it got instead);
// true when it did, for the caller to check the rest of `out`.
bool run_expecting(std::string_view query, const EntityView &entity, QueryStatus status,
                   Result &out) {
    out = run(query, entity);
    BOOST_TEST((out.status == status),
               "query: " << query << ": got " << status_name(out.status) << " " << out.offender);
    return out.status == status;
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
        {"expand", QueryStatus::ok, "", "id,name,email"},
        {"expand=&expand=", QueryStatus::ok, "", "id,name,email"},
        {"expand=customer", QueryStatus::ok, "customer", "id,name,email"},
        {"Expand=customer", QueryStatus::ok, "customer,items.product", "id,name,email"},
        // truncation at the depth (2 here), duplicates removed, order kept
        {"expand=items.product.vendor,customer.address", QueryStatus::ok,
         "items.product,customer.address", "id,name,email"},
        {"expand=customer.a.b&expand=customer.a.c", QueryStatus::ok, "customer.a",
         "id,name,email"},
        {"expand=customer,items,customer", QueryStatus::ok, "customer,items", "id,name,email"},
        // repeated parameters are joined, in order
        {"expand=items&page=2&expand=customer", QueryStatus::ok, "items,customer",
         "id,name,email"},
        {"fields=email&fields=name", QueryStatus::ok, "customer,items.product", "id,email,name"},
        // percent-decoding of names and values, '+' is a space, spaces trimmed
        {"expand=customer,%20items", QueryStatus::ok, "customer,items", "id,name,email"},
        {"expand=customer,+items+", QueryStatus::ok, "customer,items", "id,name,email"},
        {"expand=customer%2Citems", QueryStatus::ok, "customer,items", "id,name,email"},
        {"%65xpand=items", QueryStatus::ok, "items", "id,name,email"},
        {"expand=items%2eproduct", QueryStatus::ok, "items.product", "id,name,email"},
        {"expand=items%2Eproduct%2Evendor", QueryStatus::ok, "items.product", "id,name,email"},
        // whitelist on the first segment
        {"expand=orders", QueryStatus::expand_not_allowed, "orders", ""},
        {"expand=customer,orders.lines", QueryStatus::expand_not_allowed, "orders", ""},
        {"expand=customer&expand=orders", QueryStatus::expand_not_allowed, "orders", ""},
        {"expand=Customer", QueryStatus::expand_not_allowed, "Customer", ""},
        {"expand=%6Frders", QueryStatus::expand_not_allowed, "orders", ""},
        // bad paths
        {"expand=cust$omer", QueryStatus::invalid_query, "cust$omer", ""},
        {"expand=a..b", QueryStatus::invalid_query, "a..b", ""},
        {"expand=.a", QueryStatus::invalid_query, ".a", ""},
        {"expand=a.", QueryStatus::invalid_query, "a.", ""},
        {"expand=1a", QueryStatus::invalid_query, "1a", ""},
        {"expand=a%22b", QueryStatus::invalid_query, "a\"b", ""},
        // fields: hidden removed even when asked, id kept (put first when missing)
        {"fields=name,ssn", QueryStatus::ok, "customer,items.product", "id,name"},
        {"fields=name,id", QueryStatus::ok, "customer,items.product", "name,id"},
        {"fields=id,notes", QueryStatus::ok, "customer,items.product", "id"},
        {"fields=ssn", QueryStatus::ok, "customer,items.product", "id"},
        {"fields=ssn,notes,ssn", QueryStatus::ok, "customer,items.product", "id"},
        {"fields=", QueryStatus::ok, "customer,items.product", ""},
        {"fields=,", QueryStatus::ok, "customer,items.product", ""},
        {"fields=na%6De", QueryStatus::ok, "customer,items.product", "id,name"},
        {"fields=name,name", QueryStatus::ok, "customer,items.product", "id,name"},
        {"fields=na-me", QueryStatus::invalid_query, "na-me", ""},
        // filters: whitelist, hidden columns, encoded names, one operator
        {"filter[name]=bob", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"filter[name]=", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"filter[name]", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"filter%5Bname%5D=bob", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"filter[name][like]=b%25", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"filter[status]=x", QueryStatus::filter_not_allowed, "status", ""},
        {"filter%5Bstatus%5D=x", QueryStatus::filter_not_allowed, "status", ""},
        {"filter[status][gte]=1", QueryStatus::filter_not_allowed, "status", ""},
        {"filter[name]=a&filter[status]=b", QueryStatus::filter_not_allowed, "status", ""},
        {"filter[ssn]=1", QueryStatus::filter_not_allowed, "ssn", ""},
        {"filter[]=1", QueryStatus::invalid_query, "filter[]", ""},
        {"filter[name=1", QueryStatus::invalid_query, "filter[name", ""},
        {"filter[name]x=1", QueryStatus::invalid_query, "filter[name]x", ""},
        {"filter[name][]=1", QueryStatus::invalid_query, "filter[name][]", ""},
        {"filter[name][a][b]=1", QueryStatus::invalid_query, "filter[name][a][b]", ""},
        {"filter[na me]=1", QueryStatus::invalid_query, "filter[na me]", ""},
        {"filter=name", QueryStatus::ok, "customer,items.product", "id,name,email"},
        // garbage: a broken escape anywhere wins, and names the raw parameter
        {"expand=%zz", QueryStatus::invalid_query, "expand", ""},
        {"a=%4", QueryStatus::invalid_query, "a", ""},
        {"a=%", QueryStatus::invalid_query, "a", ""},
        {"%=1", QueryStatus::invalid_query, "%", ""},
        {"filter[status]=1&x=%G0", QueryStatus::invalid_query, "x", ""},
        {"expand=orders&x=%", QueryStatus::invalid_query, "x", ""},
        {"&&&", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"=&=x&", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"other=1&page=2", QueryStatus::ok, "customer,items.product", "id,name,email"},
        {"q=%00%ff", QueryStatus::ok, "customer,items.product", "id,name,email"},
        // filters are refused before expand
        {"expand=orders&filter[status]=1", QueryStatus::filter_not_allowed, "status", ""},
    };
    const EntityView entity = restricted();
    for (const auto &c : cases) {
        Result out;
        if (!run_expecting(c.query, entity, c.status, out)) continue;
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
    const Result out = run("expand=a.b.c.d,e&filter[anything]=1&fields=x", open);
    BOOST_TEST((out.status == QueryStatus::ok));
    BOOST_TEST(out.expand == "a.b.c,e");
    BOOST_TEST(out.fields == "id,x");
    const Result nothing = run("", open);
    BOOST_TEST((nothing.status == QueryStatus::ok));
    BOOST_TEST(nothing.expand == "");
    BOOST_TEST(nothing.fields == "");
    BOOST_TEST(query_policy_memory("", open) == 0u);
}

BOOST_AUTO_TEST_CASE(truncation_at_each_depth) {
    struct Case {
        unsigned depth;
        const char *expand;
    };
    const Case cases[] = {
        {0, ""},
        {1, "a,x"},
        {2, "a.b,a.c,x.y"},
        {3, "a.b.c,a.c,x.y"},
        {10, "a.b.c.d,a.c,x.y"},
    };
    for (const auto &c : cases) {
        EntityView e;
        e.max_expand_depth = static_cast<std::uint8_t>(c.depth);
        const Result out = run("expand=a.b.c.d,a.c,x.y", e);
        BOOST_TEST((out.status == QueryStatus::ok));
        BOOST_TEST(out.expand == c.expand, "depth " << c.depth);
        // the default is cut the same way
        e.default_expand = "a.b.c.d,a.c,x.y";
        BOOST_TEST(run("", e).expand == c.expand, "default at depth " << c.depth);
    }
}

BOOST_AUTO_TEST_CASE(depth_zero_still_checks_the_whitelist) {
    EntityView e;
    e.max_expand_depth = 0;
    e.expandable = "customer";
    BOOST_TEST((run("expand=orders", e).status == QueryStatus::expand_not_allowed));
    BOOST_TEST((run("expand=customer.address", e).status == QueryStatus::ok));
}

BOOST_AUTO_TEST_CASE(empty_whitelists_allow_nothing) {
    EntityView e;
    e.expandable = "";
    e.filterable = "";
    BOOST_TEST((run("expand=a", e).status == QueryStatus::expand_not_allowed));
    BOOST_TEST((run("filter[a]=1", e).status == QueryStatus::filter_not_allowed));
    BOOST_TEST((run("expand=&fields=a", e).status == QueryStatus::ok));
}

BOOST_AUTO_TEST_CASE(hidden_columns_without_a_filter_whitelist) {
    EntityView e;
    e.hidden_columns = "ssn";
    BOOST_TEST((run("filter[ssn]=1", e).status == QueryStatus::filter_not_allowed));
    BOOST_TEST((run("filter%5Bssn%5D%5Beq%5D=1", e).status == QueryStatus::filter_not_allowed));
    BOOST_TEST((run("filter[name]=1", e).status == QueryStatus::ok));
    BOOST_TEST(run("fields=ssn,name", e).fields == "id,name");
    // `id` is always kept, even if a record listed it as hidden
    e.hidden_columns = "id,ssn";
    BOOST_TEST(run("fields=id,ssn", e).fields == "id");
}

// Upstreams read filters from the raw query with their own parser, and many are more
// lenient than "&"-separated name=value pairs: Rack 2 and Perl's URI split on ';' too,
// PHP drops a name's leading spaces, Rack and qs skip leading brackets, Rack reads a ']'
// after the first name like a '['. Each of these is a filter to such an upstream: it
// is checked, or refused as malformed, never passed on unchecked.
BOOST_AUTO_TEST_CASE(filters_as_lenient_parsers_read_them) {
    struct Case {
        const char *query;
        QueryStatus status;
        const char *offender;
    };
    const Case cases[] = {
        {"a=1;filter[ssn]=1", QueryStatus::filter_not_allowed, "ssn"},
        {"a=1;filter[status]=1", QueryStatus::filter_not_allowed, "status"},
        {"a=1;+filter[ssn]=1", QueryStatus::invalid_query, " filter[ssn]"},
        {"a=1;%20filter[status]=1", QueryStatus::invalid_query, " filter[status]"},
        {"a=1;filter%5Bssn%5D=1", QueryStatus::filter_not_allowed, "ssn"},
        {"%20filter[ssn]=1", QueryStatus::invalid_query, " filter[ssn]"},
        {"+filter[status]=1", QueryStatus::invalid_query, " filter[status]"},
        {"[filter][ssn]=1", QueryStatus::invalid_query, "[filter][ssn]"},
        {"%5Bfilter%5D%5Bssn%5D=1", QueryStatus::invalid_query, "[filter][ssn]"},
        {"]filter[ssn]=1", QueryStatus::invalid_query, "]filter[ssn]"},
        {"filter]ssn]=1", QueryStatus::invalid_query, "filter]ssn]"},
        {"filter]ssn=1", QueryStatus::invalid_query, "filter]ssn"},
        {"[filter]=1", QueryStatus::invalid_query, "[filter]"},
        // allowed filters still pass, whatever separates them
        {"a=1;filter[name]=bob", QueryStatus::ok, ""},
        {"filter[name]=a;b", QueryStatus::ok, ""},
        {"filter[name]=a%3Bfilter[ssn]=1", QueryStatus::ok, ""},  // an encoded ';' is data
        // not filters to anyone
        {"a=1;filter=ssn", QueryStatus::ok, ""},
        {"x[filter][ssn]=1", QueryStatus::ok, ""},
        {"filters[ssn]=1", QueryStatus::ok, ""},
        {"filter_ssn=1", QueryStatus::ok, ""},
        {"q=a;b;c", QueryStatus::ok, ""},
    };
    const EntityView entity = restricted();
    for (const auto &c : cases) {
        Result out;
        if (run_expecting(c.query, entity, c.status, out) && c.status != QueryStatus::ok)
            BOOST_TEST(out.offender == c.offender, "query: " << c.query);
    }
}

// A hidden column is hidden whatever the case it is asked in: an upstream whose database
// folds names (PostgreSQL unquoted, MySQL) would answer "SSN" with the column "ssn".
BOOST_AUTO_TEST_CASE(hidden_columns_match_in_any_case) {
    EntityView e;
    e.hidden_columns = "notes,ssn";
    BOOST_TEST((run("filter[SSN]=1", e).status == QueryStatus::filter_not_allowed));
    BOOST_TEST(run("filter[SSN]=1", e).offender == "SSN");
    BOOST_TEST((run("filter[Notes][eq]=x", e).status == QueryStatus::filter_not_allowed));
    BOOST_TEST(run("fields=SSN,name,sSn,NOTES", e).fields == "id,name");
    BOOST_TEST(run("fields=ssns,sn", e).fields == "id,ssns,sn");  // whole names only
    e.default_fields = "name,Ssn";
    BOOST_TEST(run("", e).fields == "id,name");
}

// expandableRelationships may hold dot paths (apikeyd accepts "items.product"): a
// requested path is allowed when a listed path is a prefix of it, segment by segment
// ("items" allows "items.product.vendor"), or it is a prefix of a listed path ("items"
// is on the way to "items.product").
BOOST_AUTO_TEST_CASE(whitelist_of_dot_paths) {
    struct Case {
        const char *expandable;
        const char *query;
        QueryStatus status;
        const char *expand_or_offender;
    };
    const Case cases[] = {
        {"items.product", "expand=items.product", QueryStatus::ok, "items.product"},
        {"items.product", "expand=items", QueryStatus::ok, "items"},
        {"items.product", "expand=items.product.vendor", QueryStatus::ok, "items.product.vendor"},
        {"items.product", "expand=items.supplier", QueryStatus::expand_not_allowed, "items.supplier"},
        {"items.product", "expand=items.supplier.x", QueryStatus::expand_not_allowed,
         "items.supplier"},
        {"items.product", "expand=item", QueryStatus::expand_not_allowed, "item"},
        {"items.product", "expand=items.productx", QueryStatus::expand_not_allowed,
         "items.productx"},
        {"items.product", "expand=orders", QueryStatus::expand_not_allowed, "orders"},
        {"customer,items.product,items.price", "expand=items.price,customer.address",
         QueryStatus::ok, "items.price,customer.address"},
        {"a.b.c", "expand=a.b.d", QueryStatus::expand_not_allowed, "a.b.d"},
        {"a.b.c", "expand=a.b", QueryStatus::ok, "a.b"},
        {"a.b.c,a.x", "expand=a.x.y.z", QueryStatus::ok, "a.x.y.z"},
        // single names: the first segment decides, as before
        {"customer", "expand=customer.address.country", QueryStatus::ok, "customer.address.country"},
        {"customer", "expand=customers", QueryStatus::expand_not_allowed, "customers"},
    };
    for (const auto &c : cases) {
        EntityView e;
        e.max_expand_depth = 10;
        e.expandable = c.expandable;
        Result out;
        if (!run_expecting(c.query, e, c.status, out)) continue;
        BOOST_TEST((c.status == QueryStatus::ok ? out.expand : out.offender) ==
                       c.expand_or_offender,
                   c.expandable << " / " << c.query);
    }
}

BOOST_AUTO_TEST_CASE(default_fields_only_when_absent) {
    EntityView e;
    e.default_fields = "name,email";
    BOOST_TEST(run("", e).fields == "id,name,email");
    BOOST_TEST(run("fields=email", e).fields == "id,email");
    BOOST_TEST(run("fields=", e).fields == "");  // asked for nothing in particular: all
}

BOOST_AUTO_TEST_CASE(default_expand_is_not_checked_against_the_whitelist) {
    EntityView e;
    e.default_expand = "audit";
    e.expandable = "customer";
    BOOST_TEST(run("", e).expand == "audit");
    BOOST_TEST((run("expand=audit", e).status == QueryStatus::expand_not_allowed));
}

BOOST_AUTO_TEST_CASE(offender_is_bounded) {
    EntityView e;
    e.expandable = "customer";
    const std::string long_name(500, 'x');
    const Result out = run("expand=" + long_name, e);
    BOOST_TEST((out.status == QueryStatus::invalid_query));
    BOOST_TEST(out.offender.size() <= kMaxOffender);
    const Result broken = run(long_name + "=%", e);
    BOOST_TEST((broken.status == QueryStatus::invalid_query));
    BOOST_TEST(broken.offender.size() == kMaxOffender);
}

BOOST_AUTO_TEST_CASE(too_little_memory_is_refused_not_overrun) {
    const EntityView e = restricted();
    const std::string query = "expand=customer&fields=name";
    const std::size_t need = query_policy_memory(query, e);
    std::vector<char> memory(need, kGuard);
    BOOST_TEST((apply_query_policy(query, e, memory.data(), need - 1).status ==
                QueryStatus::no_memory));
    BOOST_TEST((apply_query_policy(query, e, nullptr, 0).status == QueryStatus::no_memory));
}

// Random queries over a small alphabet: the policy never writes outside the memory it
// asked for and never runs out of it.
BOOST_AUTO_TEST_CASE(memory_bound_holds_for_random_queries) {
    const char *pieces[] = {"expand", "fields", "filter[", "]", "[", "=", "&", ",", ".",
                            "a", "b", "id", "ssn", "customer", "items", "%2C", "%2E", "+",
                            " ", "%", "%4", "x"};
    std::mt19937 rng(12345);
    const EntityView entities[] = {EntityView{}, restricted()};
    for (int i = 0; i < 20000; ++i) {
        std::string query;
        const int n = static_cast<int>(rng() % 24);
        for (int j = 0; j < n; ++j) query += pieces[rng() % (sizeof(pieces) / sizeof(*pieces))];
        for (const auto &e : entities) {
            const Result out = run(query, e);
            BOOST_TEST_REQUIRE((out.status != QueryStatus::no_memory), query);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
