// apikeyd's YAML configuration: a good file loads with its defaults, and every kind of
// mistake is refused with a message naming the offending key.
#include "../daemon/config.h"
#include "temp_dir.h"

#include <boost/test/unit_test.hpp>

#include <fstream>
#include <string>

using apikeyd::Config;
using apikeyd::ConfigError;
using apikeyd::parse_config;

namespace {

const std::string kHash = "6f2c014d35c913bade57156ae7d84d634382689147680b19e34ff7651927dd1f";

std::string minimal(const std::string &extra = "") {
    return "listen: 127.0.0.1:8088\n"
           "data_dir: /var/lib/apikeyd\n"
           "snapshot_path: /var/lib/apikeyd-snapshot\n"
           "admin_tokens:\n"
           "  - name: ops\n"
           "    token_sha256: " + kHash + "\n" + extra;
}

// The message of the ConfigError parse_config throws, or "" when it does not throw.
std::string error_of(const std::string &yaml) {
    try {
        parse_config(yaml, "/etc/apikeyd");
    } catch (const ConfigError &e) {
        return e.what();
    }
    return "";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(daemon_config)

BOOST_AUTO_TEST_CASE(minimal_config_and_defaults) {
    const Config c = parse_config(minimal(), "/etc/apikeyd");
    BOOST_TEST(c.listen_host == "127.0.0.1");
    BOOST_TEST(c.listen_port == 8088);
    BOOST_TEST(c.data_dir == "/var/lib/apikeyd");
    BOOST_TEST(c.store_dir() == "/var/lib/apikeyd/store");
    BOOST_TEST(c.snapshot_path == "/var/lib/apikeyd-snapshot");
    BOOST_TEST(!c.snapshot_group.has_value());
    BOOST_REQUIRE_EQUAL(c.admin_tokens.size(), 1u);
    BOOST_TEST(c.admin_tokens[0].name == "ops");
    BOOST_TEST(apikey::to_hex(c.admin_tokens[0].sha256) == kHash);
    BOOST_TEST(c.max_body_bytes == 65536u);
    BOOST_TEST(c.max_import_body_bytes == std::size_t{512} << 20);
    BOOST_TEST(c.max_import_items == 1'000'000u);
    BOOST_TEST(c.store_map_size == std::size_t{1024} << 20);
    BOOST_TEST(c.snapshot_map_size == std::size_t{4096} << 20);
    BOOST_TEST(c.listen_text() == "127.0.0.1:8088");
}

BOOST_AUTO_TEST_CASE(import_limits) {
    const Config c = parse_config(minimal("max_import_body_bytes: 1048576\nmax_import_items: 5000\n"),
                                  "/etc/apikeyd");
    BOOST_TEST(c.max_import_body_bytes == 1048576u);
    BOOST_TEST(c.max_import_items == 5000u);
    BOOST_TEST(c.max_body_bytes == 65536u);  // the other routes keep theirs
}

BOOST_AUTO_TEST_CASE(every_key) {
    const Config c = parse_config(
        "listen: \"[::1]:9000\"\n"
        "data_dir: ../data/\n"
        "snapshot_path: snap\n"
        "snapshot_group: root\n"
        "max_body_bytes: 2048\n"
        "store_map_size_mb: 16\n"
        "snapshot_map_size_mb: 32\n"
        "admin_tokens:\n"
        "  - {name: ops, token_sha256: " + kHash + "}\n"
        "  - name: ci.bot\n"
        "    token_sha256: " + std::string(64, 'A') + "\n",
        "/etc/apikeyd");
    BOOST_TEST(c.listen_host == "::1");
    BOOST_TEST(c.listen_port == 9000);
    BOOST_TEST(c.listen_text() == "[::1]:9000");
    BOOST_TEST(c.data_dir == "/etc/data");             // relative to the config's directory
    BOOST_TEST(c.snapshot_path == "/etc/apikeyd/snap");
    BOOST_TEST(c.snapshot_group.has_value());
    BOOST_TEST(*c.snapshot_group == 0u);
    BOOST_TEST(c.max_body_bytes == 2048u);
    BOOST_TEST(c.store_map_size == std::size_t{16} << 20);
    BOOST_TEST(c.snapshot_map_size == std::size_t{32} << 20);
    BOOST_TEST(c.admin_tokens.size() == 2u);
    BOOST_TEST(c.admin_tokens[1].name == "ci.bot");
}

BOOST_AUTO_TEST_CASE(usage_listen_is_optional_and_checked_like_listen) {
    BOOST_TEST(parse_config(minimal(), "/").usage_port == 0u);  // absent: no usage received
    Config c = parse_config(minimal("usage_listen: 127.0.0.1:8089\n"), "/");
    BOOST_TEST(c.usage_host == "127.0.0.1");
    BOOST_TEST(c.usage_port == 8089u);
    c = parse_config(minimal("usage_listen: \"[::1]:8089\"\n"), "/");
    BOOST_TEST(c.usage_host == "::1");
    c = parse_config(minimal("usage_listen: localhost:8089\n"), "/");
    BOOST_TEST(c.usage_host == "127.0.0.1");
    for (const char *bad : {"usage_listen: 127.0.0.1\n", "usage_listen: 127.0.0.1:0\n",
                            "usage_listen: 127.0.0.1:70000\n", "usage_listen: example.com:1\n",
                            "usage_listen: 8089\n", "usage_listen: [a]\n",
                            "usage_listen: 127.0.0.1:1\nusage_listen: 127.0.0.1:2\n"}) {
        const std::string message = error_of(minimal(bad));
        BOOST_TEST_INFO(bad << " -> " << message);
        BOOST_TEST(message.find("usage_listen") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(localhost_means_loopback) {
    const Config c = parse_config(minimal().replace(8, 9, "localhost"), "/");
    BOOST_TEST(c.listen_host == "127.0.0.1");
}

BOOST_AUTO_TEST_CASE(bad_configs_name_the_key) {
    const std::string tokens = "admin_tokens:\n  - name: ops\n    token_sha256: " + kHash + "\n";
    const std::string paths = "data_dir: /d\nsnapshot_path: /s\n";
    const struct {
        const char *what;
        std::string yaml;
        const char *expected;  // must appear in the message
    } cases[] = {
        {"not YAML", "listen: [unclosed", "invalid YAML"},
        {"not a map", "- a\n- b\n", "map"},
        {"empty file", "", "map"},
        {"unknown key", minimal("colour: red\n"), "colour"},
        {"typo of a known key", minimal("max_body_byte: 5\n"), "max_body_byte"},
        {"duplicate key", minimal("listen: 127.0.0.1:1\n"), "listen"},
        {"listen missing", paths + tokens, "listen"},
        {"data_dir missing", "listen: 127.0.0.1:1\nsnapshot_path: /s\n" + tokens, "data_dir"},
        {"snapshot_path missing", "listen: 127.0.0.1:1\ndata_dir: /d\n" + tokens, "snapshot_path"},
        {"admin_tokens missing", "listen: 127.0.0.1:1\n" + paths, "admin_tokens"},
        {"listen without port", "listen: 127.0.0.1\n" + paths + tokens, "listen"},
        {"listen port 0", "listen: 127.0.0.1:0\n" + paths + tokens, "listen"},
        {"listen port too big", "listen: 127.0.0.1:70000\n" + paths + tokens, "listen"},
        {"listen host name", "listen: example.com:80\n" + paths + tokens, "listen"},
        {"listen v6 without brackets", "listen: \"::1:80\"\n" + paths + tokens, "listen"},
        {"listen a number", "listen: 8088\n" + paths + tokens, "listen"},
        {"listen a list", "listen: [a, b]\n" + paths + tokens, "listen"},
        {"data_dir a map", "listen: 127.0.0.1:1\ndata_dir: {a: b}\nsnapshot_path: /s\n" + tokens,
         "data_dir"},
        {"empty data_dir", "listen: 127.0.0.1:1\ndata_dir: \"\"\nsnapshot_path: /s\n" + tokens,
         "data_dir"},
        {"snapshot inside the store", "listen: 127.0.0.1:1\ndata_dir: /d\nsnapshot_path: /d/store\n" + tokens,
         "snapshot_path"},
        {"snapshot is data_dir", "listen: 127.0.0.1:1\ndata_dir: /d\nsnapshot_path: /d/\n" + tokens,
         "snapshot_path"},
        {"unknown group", minimal("snapshot_group: no-such-group-xyz\n"), "snapshot_group"},
        {"max_body_bytes text", minimal("max_body_bytes: lots\n"), "max_body_bytes"},
        {"max_body_bytes negative", minimal("max_body_bytes: -1\n"), "max_body_bytes"},
        {"max_body_bytes hex", minimal("max_body_bytes: 0x100\n"), "max_body_bytes"},
        {"max_body_bytes too small", minimal("max_body_bytes: 10\n"), "max_body_bytes"},
        {"max_body_bytes too big", minimal("max_body_bytes: 999999999999\n"), "max_body_bytes"},
        {"store_map_size_mb zero", minimal("store_map_size_mb: 0\n"), "store_map_size_mb"},
        {"max_import_body_bytes text", minimal("max_import_body_bytes: big\n"), "max_import_body_bytes"},
        {"max_import_body_bytes too big", minimal("max_import_body_bytes: 99999999999\n"),
         "max_import_body_bytes"},
        {"max_import_body_bytes below max_body_bytes",
         minimal("max_body_bytes: 65536\nmax_import_body_bytes: 2048\n"), "max_import_body_bytes"},
        {"max_import_items zero", minimal("max_import_items: 0\n"), "max_import_items"},
        {"max_import_items too many", minimal("max_import_items: 10000001\n"), "max_import_items"},
        {"snapshot_map_size_mb float", minimal("snapshot_map_size_mb: 1.5\n"), "snapshot_map_size_mb"},
        {"admin_tokens empty", "listen: 127.0.0.1:1\n" + paths + "admin_tokens: []\n", "admin_tokens"},
        {"admin_tokens a string", "listen: 127.0.0.1:1\n" + paths + "admin_tokens: abc\n", "admin_tokens"},
        {"token not a map", "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - abc\n", "admin_tokens[0]"},
        {"token without hash", "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - name: ops\n",
         "admin_tokens[0].token_sha256"},
        {"token without name",
         "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - token_sha256: " + kHash + "\n",
         "admin_tokens[0].name"},
        {"hash too short",
         "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - {name: ops, token_sha256: abc}\n",
         "admin_tokens[0].token_sha256"},
        {"hash not hex",
         "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - {name: ops, token_sha256: " +
             std::string(64, 'g') + "}\n",
         "admin_tokens[0].token_sha256"},
        {"unknown token field",
         "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - {name: ops, token: x, token_sha256: " +
             kHash + "}\n",
         "admin_tokens[0].token"},
        {"bad token name",
         "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - {name: \"a b\", token_sha256: " +
             kHash + "}\n",
         "admin_tokens[0].name"},
        {"duplicate token name",
         "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - {name: ops, token_sha256: " + kHash +
             "}\n  - {name: ops, token_sha256: " + std::string(64, 'a') + "}\n",
         "admin_tokens[1].name"},
        {"same token twice",
         "listen: 127.0.0.1:1\n" + paths + "admin_tokens:\n  - {name: ops, token_sha256: " + kHash +
             "}\n  - {name: other, token_sha256: " + kHash + "}\n",
         "admin_tokens[1].token_sha256"},
    };
    for (const auto &c : cases) {
        const std::string message = error_of(c.yaml);
        BOOST_TEST_INFO(c.what << ": \"" << message << "\"");
        BOOST_TEST(!message.empty());
        BOOST_TEST(message.find(c.expected) != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(a_pasted_token_is_not_echoed) {
    const std::string secret = "this-is-the-raw-admin-token-not-its-hash";
    const std::string message = error_of(
        "listen: 127.0.0.1:1\ndata_dir: /d\nsnapshot_path: /s\nadmin_tokens:\n"
        "  - {name: ops, token_sha256: " + secret + "}\n");
    BOOST_TEST(!message.empty());
    BOOST_TEST(message.find(secret) == std::string::npos);
}

// Found by fuzz_config: a key beginning with a NUL byte made a message that printed as
// nothing. Keys and values are shown with their odd bytes escaped, and long ones cut.
BOOST_AUTO_TEST_CASE(odd_bytes_in_keys_and_values_are_shown_escaped) {
    using namespace std::string_literals;
    struct Case {
        std::string yaml, expected;
    } const cases[] = {
        {"!m\0" "0.0.\x95n0.0.0:80r: "s, "\\x00"},
        {minimal("\x01" "bad: 1\n"), "\\x01bad: unknown key"},
        {minimal("caf\xc3\xa9: 1\n"), "caf\\xc3\\xa9: unknown key"},
        {minimal("max_connections: \"1\\t2\"\n"), "got \"1\\x092\""},
        {minimal(std::string(1000, 'k') + ": 1\n"), "kkk...: unknown key"},
    };
    for (const auto &c : cases) {
        const std::string message = error_of(c.yaml);
        BOOST_TEST_INFO(c.expected << " in \"" << message << "\"");
        BOOST_TEST(message.find(c.expected) != std::string::npos);
        BOOST_TEST(message.size() < 800u);
        for (const char ch : message) BOOST_TEST((ch >= 0x20 && ch < 0x7f));
    }
}

// Every ConfigError is made readable, not only those about a key: here one naming the
// file (load_config), whose path came from the command line.
BOOST_AUTO_TEST_CASE(a_file_path_in_a_message_is_shown_escaped) {
    try {
        apikeyd::load_config("/nonexistent/\x1b[31mred.yaml");
        BOOST_FAIL("a missing file loaded");
    } catch (const ConfigError &e) {
        BOOST_TEST(std::string(e.what()).find("/nonexistent/\\x1b[31mred.yaml") != std::string::npos,
                   e.what());
    }
}

BOOST_AUTO_TEST_CASE(a_nul_byte_in_a_path_is_refused) {
    using namespace std::string_literals;
    const std::string message = error_of(
        "listen: 127.0.0.1:1\ndata_dir: \"/d\\0/x\"\nsnapshot_path: /s\nadmin_tokens:\n"
        "  - {name: ops, token_sha256: " + kHash + "}\n");
    BOOST_TEST(message == "data_dir: must not contain a NUL byte");
}

BOOST_AUTO_TEST_CASE(load_config_from_file) {
    apikey::test::TempDir dir;
    const std::string path = dir.sub("apikeyd.yaml");
    std::ofstream(path) << "listen: 127.0.0.1:8088\ndata_dir: data\nsnapshot_path: snap\n"
                           "admin_tokens:\n  - {name: ops, token_sha256: " << kHash << "}\n";
    const Config c = apikeyd::load_config(path);
    BOOST_TEST(c.data_dir == dir.sub("data"));
    BOOST_TEST(c.snapshot_path == dir.sub("snap"));

    BOOST_CHECK_THROW(apikeyd::load_config(dir.sub("missing.yaml")), ConfigError);
    std::ofstream(path) << "listen: 127.0.0.1:8088\nbogus: 1\n";
    try {
        apikeyd::load_config(path);
        BOOST_FAIL("no error");
    } catch (const ConfigError &e) {
        const std::string what = e.what();
        BOOST_TEST(what.find(path) != std::string::npos);  // names the file
        BOOST_TEST(what.find("bogus") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(prepare_paths_creates_data_dir_and_checks) {
    apikey::test::TempDir dir;
    Config c = parse_config(minimal(), "/");
    c.data_dir = dir.sub("a/b/data");
    c.snapshot_path = dir.sub("x/y/snapshot");
    apikeyd::prepare_paths(c);
    BOOST_TEST(std::filesystem::is_directory(c.data_dir));
    const auto perms = std::filesystem::status(c.data_dir).permissions();
    BOOST_TEST(((perms & std::filesystem::perms::group_all) == std::filesystem::perms::none));
    BOOST_TEST(((perms & std::filesystem::perms::others_all) == std::filesystem::perms::none));

    // A file where a directory should be.
    std::ofstream(dir.sub("file")) << "x";
    c.data_dir = dir.sub("file");
    BOOST_CHECK_THROW(apikeyd::prepare_paths(c), ConfigError);
    c.data_dir = dir.sub("file/data");
    BOOST_CHECK_THROW(apikeyd::prepare_paths(c), ConfigError);
    c.data_dir = dir.sub("data2");
    c.snapshot_path = dir.sub("file/snapshot");
    try {
        apikeyd::prepare_paths(c);
        BOOST_FAIL("no error");
    } catch (const ConfigError &e) {
        BOOST_TEST(std::string(e.what()).find("snapshot_path") != std::string::npos);
    }
}

BOOST_AUTO_TEST_SUITE_END()
