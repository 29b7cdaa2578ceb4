#include "apikey_capi.h"
#include "authorization.h"
#include "decision.h"
#include "key_format.h"
#include "sha256.h"
#include "snapshot_writer.h"
#include "temp_dir.h"

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <cstring>
#include <new>
#include <memory>
#include <vector>

using namespace apikey;
using namespace apikey::snapshot;

// Counts this thread's calls of operator new, to check that the request path allocates
// nothing on the heap (replacing the global operator new is what the standard allows).
namespace {
thread_local std::size_t g_heap_allocations = 0;
}  // namespace

// Every non-aligned form is replaced, so that each pairs malloc with free: replacing only
// some leaves e.g. the nothrow new (std::stable_sort's buffer) to the sanitizer's
// allocator while our delete frees it (alloc-dealloc-mismatch under ASan).
void *operator new(std::size_t size) {
    ++g_heap_allocations;
    if (void *p = std::malloc(size != 0 ? size : 1)) return p;
    throw std::bad_alloc();
}
void *operator new[](std::size_t size) { return operator new(size); }
void *operator new(std::size_t size, const std::nothrow_t &) noexcept {
    ++g_heap_allocations;
    return std::malloc(size != 0 ? size : 1);
}
void *operator new[](std::size_t size, const std::nothrow_t &tag) noexcept {
    return operator new(size, tag);
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete[](void *p, std::size_t) noexcept { std::free(p); }
void operator delete(void *p, const std::nothrow_t &) noexcept { std::free(p); }
void operator delete[](void *p, const std::nothrow_t &) noexcept { std::free(p); }

namespace {

constexpr std::int64_t kNow = 1'800'000'000;

KeyRecord active_key(Permission permission, const Uuid &workspace) {
    KeyRecord r;
    r.id = random_uuid();
    r.workspace_id = workspace;
    r.permission = permission;
    std::memcpy(r.prefix.data(), "sk_live_Test", 12);
    return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(decision)

BOOST_AUTO_TEST_CASE(decide_key_table) {
    const Uuid ws = random_uuid(), other = random_uuid();
    struct Case {
        const char *what;
        Permission permission;
        KeyStatus status;
        std::optional<std::int64_t> expires_at;
        std::optional<Uuid> location;
        bool mutating;
        Code expected;
    };
    const Case cases[] = {
        {"rw read", Permission::read_write, KeyStatus::active, {}, ws, false, Code::ok},
        {"rw write", Permission::read_write, KeyStatus::active, {}, ws, true, Code::ok},
        {"ro read", Permission::read_only, KeyStatus::active, {}, ws, false, Code::ok},
        {"ro write", Permission::read_only, KeyStatus::active, {}, ws, true, Code::read_only_key},
        {"revoked", Permission::read_write, KeyStatus::revoked, {}, ws, false, Code::key_revoked},
        {"expired now", Permission::read_write, KeyStatus::active, kNow, ws, false, Code::key_expired},
        {"expired before", Permission::read_write, KeyStatus::active, kNow - 1, ws, false, Code::key_expired},
        {"expires later", Permission::read_write, KeyStatus::active, kNow + 1, ws, false, Code::ok},
        {"other workspace", Permission::read_write, KeyStatus::active, {}, other, false, Code::wrong_workspace},
        {"unknown workspace", Permission::read_write, KeyStatus::active, {}, std::nullopt, false, Code::wrong_workspace},
        {"ro other workspace write", Permission::read_only, KeyStatus::active, {}, other, true, Code::wrong_workspace},
    };
    for (const auto &c : cases) {
        KeyRecord key = active_key(c.permission, ws);
        key.status = c.status;
        key.expires_at = c.expires_at;
        const Code got = decide_key(key, c.location, RequestFacts{c.mutating, kNow});
        BOOST_TEST((got == c.expected), c.what << ": got " << code_name(got));
    }
}

BOOST_AUTO_TEST_CASE(statuses_and_names_are_stable) {
    BOOST_TEST(http_status(Code::ok) == 200);
    BOOST_TEST(http_status(Code::missing_credentials) == 401);
    BOOST_TEST(http_status(Code::wrong_workspace) == 401);
    BOOST_TEST(http_status(Code::read_only_key) == 403);
    BOOST_TEST(http_status(Code::snapshot_unavailable) == 503);
    BOOST_TEST(code_name(Code::key_revoked) == "key_revoked");
    // Messages go into JSON bodies verbatim: nothing in them may need escaping.
    for (int c = 0; c <= static_cast<int>(kLastCode); ++c)
        for (char ch : code_message(static_cast<Code>(c)))
            BOOST_TEST((ch != '"' && ch != '\\' && static_cast<unsigned char>(ch) >= 0x20));
}

struct SnapshotFixture {
    test::TempDir dir;
    Writer writer{test::writer_options(dir.sub("snap"))};
    Uuid sales = random_uuid(), inventory = random_uuid();
    std::string rw_key = generate_key(), ro_key = generate_key();
    std::unique_ptr<Reader> reader;

    SnapshotFixture() {
        writer.publish(1, [&](Batch &b) {
            b.put_workspace("acme-corp/sales", WorkspaceRecord{sales});
            b.put_workspace("acme-corp/inventory", WorkspaceRecord{inventory});
            b.put_key(sha256(rw_key), active_key(Permission::read_write, sales));
            b.put_key(sha256(ro_key), active_key(Permission::read_only, sales));
        });
        std::string error;
        reader = Reader::open(dir.sub("snap"), error);
        BOOST_REQUIRE_MESSAGE(reader, error);
    }

    // `early`: the key presented (and its entry prefetched) before the view, as the
    // module does in its post-read phase; else decide() presents it.
    Code run(std::optional<std::string> header, std::string_view workspace, bool mutating,
             bool early = false) {
        PresentedKey presented;
        if (header && early) presented = present_key(*header, reader.get());
        auto view = reader->view();
        Request request;
        if (header) request.authorization = *header;
        if (header && early) request.presented = &presented;
        request.workspace_path = workspace;
        request.facts = RequestFacts{mutating, kNow};
        return decide(view, request).code;
    }
};

BOOST_FIXTURE_TEST_CASE(authenticate_end_to_end, SnapshotFixture) {
    std::string flipped = rw_key;
    flipped[20] = flipped[20] == 'a' ? 'b' : 'a';
    const std::string unknown = generate_key();
    struct Case {
        std::optional<std::string> header;
        const char *workspace;
        bool mutating;
        Code expected;
    };
    const Case cases[] = {
        {"Bearer " + rw_key, "acme-corp/sales", true, Code::ok},
        {"bearer " + rw_key, "acme-corp/sales", false, Code::ok},
        {"Bearer " + ro_key, "acme-corp/sales", false, Code::ok},
        {"Bearer " + ro_key, "acme-corp/sales", true, Code::read_only_key},
        {std::nullopt, "acme-corp/sales", false, Code::missing_credentials},
        {"Basic abc", "acme-corp/sales", false, Code::invalid_authorization},
        {"Bearer ", "acme-corp/sales", false, Code::invalid_authorization},
        {"Bearer " + flipped, "acme-corp/sales", false, Code::malformed_key},
        {"Bearer " + std::string(10240, 'a'), "acme-corp/sales", false, Code::malformed_key},
        {"Bearer " + unknown, "acme-corp/sales", false, Code::unknown_key},
        {"Bearer " + rw_key, "acme-corp/inventory", false, Code::wrong_workspace},
        {"Bearer " + rw_key, "acme-corp/nowhere", false, Code::wrong_workspace},
        {"Bearer " + rw_key, "", false, Code::wrong_workspace},
    };
    for (const bool early : {false, true}) {
        for (const auto &c : cases) {
            const Code got = run(c.header, c.workspace, c.mutating, early);
            BOOST_TEST((got == c.expected), c.header.value_or("<none>").substr(0, 60)
                                                << " on " << c.workspace << (early ? " (early)" : "")
                                                << ": got " << code_name(got));
        }
    }
}

// present_key splits "Bearer <key>" by its length and leaves the character checks to the
// checksum; its code must be what the parser and the key checks give, for every header of
// that length and every other: each byte of a usual header replaced (by bytes the parser
// and the checksum treat differently), dropped and doubled.
BOOST_AUTO_TEST_CASE(present_key_agrees_with_the_parser) {
    const auto reference = [](std::string_view header) {
        const BearerToken bearer = parse_authorization(header);
        if (bearer.status != AuthHeader::bearer) return Code::invalid_authorization;
        return is_well_formed_key(bearer.token) ? Code::ok : Code::malformed_key;
    };
    const std::string usual = "Bearer " + generate_key();
    std::vector<std::string> headers{usual, "BeArEr " + usual.substr(7)};
    const char replacements[] = {'\0', '\t', ' ', ',', '=', '"', '+', '/', '-', '.', '~', '_',
                                 'a', 'Z', '0', '\x7F', '\x80', '\xFF'};
    for (std::size_t i = 0; i < usual.size(); ++i) {
        for (char c : replacements) {
            std::string h = usual;
            h[i] = c;
            headers.push_back(h);
        }
        headers.push_back(usual.substr(0, i) + usual.substr(i + 1));
        headers.push_back(usual.substr(0, i + 1) + usual.substr(i));
    }
    int ok = 0, malformed = 0, invalid = 0;
    for (const auto &h : headers) {
        const PresentedKey key = present_key(h);
        const Code expected = reference(h);
        BOOST_TEST((key.code == expected), h << ": got " << code_name(key.code) << ", expected "
                                               << code_name(expected));
        if (expected == Code::ok) BOOST_TEST((key.hash == sha256(parse_authorization(h).token)));
        ok += expected == Code::ok;
        malformed += expected == Code::malformed_key;
        invalid += expected == Code::invalid_authorization;
    }
    // All three outcomes occur: the cases reach every branch.
    BOOST_TEST(ok > 0);
    BOOST_TEST(malformed > 0);
    BOOST_TEST(invalid > 0);
}

BOOST_FIXTURE_TEST_CASE(authenticate_reports_the_key_found, SnapshotFixture) {
    auto view = reader->view();
    const std::string header = "Bearer " + ro_key;
    const AuthResult r = authenticate(view, header, sales, RequestFacts{true, kNow});
    BOOST_TEST((r.code == Code::read_only_key));
    BOOST_TEST(r.key_found);
    BOOST_TEST((r.key.workspace_id == sales));
    BOOST_TEST((r.key.permission == Permission::read_only));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(request_decision)

// Memory for decide(), as nginx's request pool would give it: kept until the test ends.
// malloc, not new, so that it does not count as the request path's own heap use.
struct TestAllocator {
    std::vector<void *> blocks;
    std::size_t calls = 0;
    TestAllocator() { blocks.reserve(4096); }
    ~TestAllocator() {
        for (void *p : blocks) std::free(p);
    }
    TestAllocator(const TestAllocator &) = delete;
    TestAllocator &operator=(const TestAllocator &) = delete;
    static void *allocate(void *self, std::size_t size) {
        auto *a = static_cast<TestAllocator *>(self);
        ++a->calls;
        if (a->blocks.size() == a->blocks.capacity()) return nullptr;
        a->blocks.push_back(std::malloc(size));
        return a->blocks.back();
    }
    Allocator get() { return Allocator{&TestAllocator::allocate, this}; }
};

struct SettingsFixture {
    test::TempDir dir;
    TestAllocator memory;
    Writer writer{test::writer_options(dir.sub("snap"))};
    Uuid ws = random_uuid();
    std::string ro_key = generate_key();
    std::unique_ptr<Reader> reader;

    SettingsFixture() {
        writer.publish(1, [&](Batch &b) {
            b.put_workspace("acme-corp/sales", WorkspaceRecord{ws, 2, "https://app.example.com"});
            b.put_key(sha256(ro_key), active_key(Permission::read_only, ws));
            EntityRecord catalog;
            catalog.public_access = PublicAccess::read_only;
            catalog.max_expand_depth = 1;
            catalog.hidden_columns = "cost";
            b.put_entity(ws, "Catalog", catalog);
            EntityRecord forms;
            forms.public_access = PublicAccess::read_write;
            forms.expandable = "owner";
            b.put_entity(ws, "Form", forms);
        });
        std::string error;
        reader = Reader::open(dir.sub("snap"), error);
        BOOST_REQUIRE_MESSAGE(reader, error);
    }

    Decision run(const char *entity, bool mutating, std::optional<std::string> header = {},
                 const char *query = "", std::optional<std::string_view> origin = {},
                 bool preflight = false) {
        auto view = reader->view();
        BOOST_REQUIRE(view.ok());
        Request r;
        if (header) r.authorization = *header;
        r.workspace_path = "acme-corp/sales";
        r.entity = entity;
        r.query = query;
        r.origin = origin;
        r.preflight = preflight;
        r.facts = RequestFacts{mutating, kNow};
        r.alloc = memory.get();
        Decision d = decide(view, r);
        d.query.offender = {};  // may be a view into the map: gone with the transaction
        return d;
    }
};

BOOST_FIXTURE_TEST_CASE(public_access_table, SettingsFixture) {
    struct Case {
        const char *entity;
        bool mutating;
        Code expected;
    };
    const Case cases[] = {
        {"Order", false, Code::missing_credentials},   // no record: NONE
        {"Order", true, Code::missing_credentials},
        {"Catalog", false, Code::public_access},       // READ_ONLY
        {"Catalog", true, Code::missing_credentials},
        {"Form", false, Code::public_access},          // READ_WRITE
        {"Form", true, Code::public_access},
    };
    for (const auto &c : cases) {
        const Code got = run(c.entity, c.mutating).code;
        BOOST_TEST((got == c.expected), c.entity << " mutating=" << c.mutating << ": "
                                                 << code_name(got));
    }
}

BOOST_FIXTURE_TEST_CASE(a_key_on_a_public_entity_is_still_checked, SettingsFixture) {
    BOOST_TEST((run("Form", true, "Bearer " + ro_key).code == Code::read_only_key));
    BOOST_TEST((run("Form", false, "Bearer " + generate_key()).code == Code::unknown_key));
    BOOST_TEST((run("Form", false, "Bearer " + ro_key).code == Code::ok));
}

BOOST_FIXTURE_TEST_CASE(cors_grants_and_preflights, SettingsFixture) {
    const std::string_view allowed = "https://app.example.com", other = "https://evil.test";
    BOOST_TEST((run("Order", false, {}, "", allowed, true).code == Code::cors_preflight));
    BOOST_TEST((run("Order", false, {}, "", other, true).code == Code::cors_origin_not_allowed));
    // The grant rides along with rejections too.
    const Decision rejected = run("Order", false, {}, "", allowed);
    BOOST_TEST((rejected.code == Code::missing_credentials));
    BOOST_TEST((rejected.cors == CorsGrant::this_origin));
    BOOST_TEST((run("Order", false, {}, "", other).cors == CorsGrant::none));
}

BOOST_FIXTURE_TEST_CASE(query_policy_uses_resolved_entity_settings, SettingsFixture) {
    const Decision catalog = run("Catalog", false, {}, "expand=a.b.c&fields=name,cost");
    BOOST_TEST((catalog.code == Code::public_access));
    BOOST_TEST(catalog.query.expand == "a");  // entity depth 1
    BOOST_TEST(catalog.query.fields == "id,name");
    const Decision order = run("Order", false, "Bearer " + ro_key, "expand=a.b.c");
    BOOST_TEST(order.query.expand == "a.b");  // workspace depth 2
    const Decision form = run("Form", false, {}, "expand=secrets");
    BOOST_TEST((form.code == Code::expand_not_allowed));
    // Unauthenticated requests never learn about the policy.
    BOOST_TEST((run("Order", false, {}, "expand=%zz").code == Code::missing_credentials));
}

BOOST_FIXTURE_TEST_CASE(results_live_in_the_requests_memory, SettingsFixture) {
    // Hidden columns and effective lists outlive the transaction: they were copied.
    const Decision catalog = run("Catalog", false, {}, "fields=name");
    BOOST_TEST((catalog.code == Code::public_access));
    BOOST_TEST(catalog.hidden_columns == "cost");
    BOOST_TEST(catalog.query.fields == "id,name");
    BOOST_TEST(memory.calls == 1u);  // one block per admitted request
    // Nothing to hand back: no memory taken.
    memory.calls = 0;
    BOOST_TEST((run("Form", false).code == Code::public_access));
    BOOST_TEST((run("Order", false).code == Code::missing_credentials));
    BOOST_TEST(memory.calls == 0u);
}

BOOST_FIXTURE_TEST_CASE(no_memory_is_a_503_never_an_unchecked_admission, SettingsFixture) {
    auto view = reader->view();
    Request r;
    r.workspace_path = "acme-corp/sales";
    r.entity = "Form";
    r.query = "expand=secrets";
    r.facts = RequestFacts{false, kNow};
    BOOST_TEST((decide(view, r).code == Code::snapshot_unavailable));  // no allocator
    r.query = "";
    BOOST_TEST((decide(view, r).code == Code::public_access));  // nothing to allocate
}

BOOST_FIXTURE_TEST_CASE(vary_on_origin_for_known_workspaces, SettingsFixture) {
    BOOST_TEST(run("Order", false).cors_vary);
    BOOST_TEST(run("Order", false, {}, "", std::string_view("https://evil.test")).cors_vary);
    auto view = reader->view();
    Request r;
    r.workspace_path = "acme-corp/nowhere";
    r.origin = "https://app.example.com";
    const Decision unknown = decide(view, r);
    BOOST_TEST(!unknown.cors_vary);
    BOOST_TEST((unknown.cors == CorsGrant::none));
}

BOOST_FIXTURE_TEST_CASE(the_request_path_never_touches_the_heap, SettingsFixture) {
    // Settings with every list, a long query: everything goes to the request's memory.
    writer.publish(2, [&](Batch &b) {
        EntityRecord orders;
        orders.public_access = PublicAccess::read_only;
        orders.default_expand = "customer,items.product";
        orders.default_fields = "name,email,ssn";
        orders.expandable = "customer,items";
        orders.filterable = "name,email";
        orders.hidden_columns = "ssn,notes";
        b.put_entity(ws, "Orders", orders);
    });
    const std::string key = "Bearer " + ro_key;
    std::string long_query = "expand=customer.address.country,items.product.vendor&fields=ssn";
    for (int i = 0; i < 60; ++i) long_query += ",field_" + std::to_string(i);
    long_query += "&filter[name]=" + std::string(500, 'x') + "&page=2";
    struct Case {
        std::optional<std::string_view> authorization;
        const char *query;
        bool preflight;
        Code expected;
        const char *raw_path = "";  // as the module passes it: set when it may differ
    };
    const char *ambiguous = "/api/v1/acme-corp/inventory/Secret/1%2F..%2F..%2F..%2Fsales%2FOrders";
    const Case cases[] = {
        {std::nullopt, "", false, Code::public_access},
        {std::nullopt, "", true, Code::cors_preflight},
        {std::nullopt, long_query.c_str(), false, Code::public_access},
        {std::string_view(key), long_query.c_str(), false, Code::ok},
        {std::string_view(key), "expand=orders", false, Code::expand_not_allowed},
        {std::nullopt, "filter[ssn]=1", false, Code::filter_not_allowed},
        {std::nullopt, "x=%zz", false, Code::invalid_query},
        {std::string_view("Bearer nope"), "", false, Code::malformed_key},
        {std::string_view(key), "", false, Code::ambiguous_path, ambiguous},
        {std::nullopt, "", false, Code::ambiguous_path, ambiguous},
        {std::nullopt, "", true, Code::ambiguous_path, "/api/v1/acme-corp/sales/./Orders"},
        {std::string_view(key), "", false, Code::ok, "/api/v1/acme-corp/sales/Orders/a%20b"},
    };
    apikey_reader_t *capi = nullptr;
    {
        char err[256];
        capi = apikey_reader_open(dir.sub("snap").c_str(), err, sizeof(err));
        BOOST_REQUIRE_MESSAGE(capi != nullptr, err);
    }
    for (const auto &c : cases) {
        auto view = reader->view();
        Request r;
        r.authorization = c.authorization;
        r.workspace_path = "acme-corp/sales";
        r.entity = "Orders";
        r.query = c.query;
        r.raw_path = c.raw_path;
        r.origin = "https://app.example.com";
        r.preflight = c.preflight;
        r.facts = RequestFacts{false, kNow};
        r.alloc = memory.get();
        const std::size_t before = g_heap_allocations;
        const Decision d = decide(view, r);
        const std::size_t during = g_heap_allocations - before;
        BOOST_TEST((d.code == c.expected), c.query << ": " << code_name(d.code));
        BOOST_TEST(during == 0u, c.query << ": " << during << " heap allocations in decide()");
        // Every answer for the workspace, ambiguous_path included, carries its CORS grant.
        BOOST_TEST((d.cors == CorsGrant::this_origin), c.query << ": " << code_name(d.code));
        BOOST_TEST(d.cors_vary, c.query << ": " << code_name(d.code));

        // The C API the module calls, with a pool-like allocator.
        apikey_request_t req{};
        if (c.authorization) req.authorization = {c.authorization->data(), c.authorization->size()};
        req.workspace = {"acme-corp/sales", 15};
        req.entity = {"Orders", 6};
        req.args = {c.query, std::strlen(c.query)};
        if (*c.raw_path != '\0') req.raw_path = {c.raw_path, std::strlen(c.raw_path)};
        req.origin = {"https://app.example.com", 23};
        req.preflight = c.preflight;
        req.now = kNow;
        req.alloc = &TestAllocator::allocate;
        req.alloc_ctx = &memory;
        apikey_result_t result;
        apikey_presented_key_t presented;
        const std::size_t capi_before = g_heap_allocations;
        if (c.authorization) {  // as the module: presented in the post-read phase
            apikey_present_key(capi, req.authorization.data, req.authorization.len, &presented);
            req.presented = &presented;
        }
        apikey_authenticate(capi, &req, &result);
        const std::size_t capi_news = g_heap_allocations - capi_before;
        BOOST_TEST(result.code == static_cast<int>(c.expected));
        BOOST_TEST(capi_news == 0u, c.query << ": " << capi_news << " in the C API's calls");
    }
    apikey_reader_close(capi);
}

BOOST_AUTO_TEST_CASE(rejection_messages) {
    char out[kMaxRejectionMessage];
    auto message = [&](Code code, std::string_view offender) {
        return std::string(out, rejection_message(code, offender, out));
    };
    BOOST_TEST(message(Code::expand_not_allowed, "secrets") ==
               "The relationship 'secrets' may not be expanded on this entity");
    BOOST_TEST(message(Code::filter_not_allowed, "ssn") ==
               "The field 'ssn' may not be filtered on for this entity");
    BOOST_TEST(message(Code::invalid_query, "x") == "The query string is malformed near 'x'");
    BOOST_TEST(message(Code::unknown_key, "ignored") == std::string(code_message(Code::unknown_key)));
    // Printable ASCII only; quotes and backslashes are left for the JSON writer.
    BOOST_TEST(message(Code::filter_not_allowed, "a\"b\\c\x01\xff") ==
               "The field 'a\"b\\c?" "?' may not be filtered on for this entity");
    // A key put in the query is not echoed whole.
    const std::string key = generate_key();
    BOOST_TEST(message(Code::expand_not_allowed, key) ==
               "The relationship '" + key.substr(0, 12) + "...' may not be expanded on this entity");
    // The longest offender, with the longest wording, fits.
    const std::string longest(kMaxOffender * 2, '"');
    for (Code c : {Code::invalid_query, Code::expand_not_allowed, Code::filter_not_allowed})
        BOOST_TEST(message(c, longest).size() <= kMaxRejectionMessage);
    for (int c = 0; c <= static_cast<int>(kLastCode); ++c)
        BOOST_TEST(code_message(static_cast<Code>(c)).size() <= kMaxRejectionMessage);
}

BOOST_AUTO_TEST_SUITE_END()
