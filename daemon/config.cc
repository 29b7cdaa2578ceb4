#include "config.h"

#include "tls.h"

#include <yaml-cpp/yaml.h>

#include <arpa/inet.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <tuple>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace apikeyd {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMinBodyBytes = 1024;
constexpr std::size_t kMaxBodyBytes = std::size_t{16} << 20;
constexpr std::size_t kMaxImportBodyBytes = std::size_t{4} << 30;
constexpr std::size_t kMaxImportItems = 10'000'000;
constexpr std::uint64_t kMaxMapSizeMb = std::uint64_t{1} << 20;  // 1 TiB of address space

// `text` with control bytes, NULs and non-ASCII shown as \xNN, cut after `limit` bytes.
// Printable text is left as it is, so a message made of one is unchanged.
std::string printable(const std::string &text, std::size_t limit) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (out.size() >= limit) return out + "...";
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

// No valid key is this long: a longer one is cut so that the reason stays in the message.
constexpr std::size_t kMaxKeyShown = 80;

[[noreturn]] void fail(const std::string &key, const std::string &why) {
    throw ConfigError((key.size() > kMaxKeyShown ? key.substr(0, kMaxKeyShown) + "..." : key) +
                      ": " + why);
}

std::string scalar(const YAML::Node &node, const std::string &key) {
    if (!node.IsScalar()) fail(key, "must be a string");
    const std::string value = node.Scalar();
    if (value.empty()) fail(key, "must not be empty");
    // Values are paths, addresses and names handed to C APIs, which would stop at a NUL.
    if (value.find('\0') != std::string::npos) fail(key, "must not contain a NUL byte");
    return value;
}

// Plain decimal digits only: yaml-cpp's as<unsigned> would accept "-1" or "0x10".
std::uint64_t unsigned_int(const YAML::Node &node, const std::string &key, std::uint64_t min,
                           std::uint64_t max) {
    if (!node.IsScalar()) fail(key, "must be an integer");
    const std::string &text = node.Scalar();
    if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos)
        fail(key, "must be a whole number, got \"" + text + "\"");
    const std::uint64_t value = std::stoull(text);
    if (value < min || value > max)
        fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                      ", got " + text);
    return value;
}

std::string absolute(const std::string &path, const std::string &base_dir) {
    fs::path p(path);
    if (p.is_relative()) p = fs::path(base_dir) / p;
    return p.lexically_normal().string();
}

std::string strip_trailing_slash(std::string path) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    return path;
}

// host:port for `key` ("listen", "usage_listen").
std::pair<std::string, std::uint16_t> parse_endpoint(const std::string &text, const std::string &key) {
    std::string host, port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            fail(key, "must be host:port ([v6-address]:port for IPv6), got \"" + text + "\"");
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        in6_addr a6{};
        if (::inet_pton(AF_INET6, host.c_str(), &a6) != 1)
            fail(key, "\"" + host + "\" is not an IPv6 address");
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos || text.find(':') != colon)
            fail(key, "must be host:port, got \"" + text + "\"");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        in_addr a4{};
        if (host == "localhost") {
            host = "127.0.0.1";
        } else if (::inet_pton(AF_INET, host.c_str(), &a4) != 1) {
            fail(key, "host must be an IP address or localhost (no name lookups), got \"" +
                          host + "\"");
        }
    }
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(port) < 1 || std::stoul(port) > 65535)
        fail(key, "port must be 1..65535, got \"" + port + "\"");
    return {host, static_cast<std::uint16_t>(std::stoul(port))};
}

void parse_group(const std::string &name, Config &config) {
    std::vector<char> buf(16384);
    group grp{};
    group *found = nullptr;
    int rc;
    while ((rc = ::getgrnam_r(name.c_str(), &grp, buf.data(), buf.size(), &found)) == ERANGE &&
           buf.size() < (std::size_t{1} << 22))
        buf.resize(buf.size() * 2);
    if (rc != 0) fail("snapshot_group", "cannot look up group \"" + name + "\": " + std::strerror(rc));
    if (found == nullptr) fail("snapshot_group", "no such group \"" + name + "\"");
    config.snapshot_group = grp.gr_gid;
    config.snapshot_group_name = name;
}

bool valid_token_name(const std::string &name) {
    if (name.empty() || name.size() > 64) return false;
    for (const char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '@')
            return false;
    return true;
}

void parse_admin_tokens(const YAML::Node &node, Config &config) {
    const std::string key = "admin_tokens";
    if (!node.IsSequence() || node.size() == 0)
        fail(key, "must be a non-empty list of {name, token_sha256}");
    std::set<std::string> names;
    std::set<apikey::Digest> hashes;
    for (std::size_t i = 0; i < node.size(); ++i) {
        const std::string item_key = key + "[" + std::to_string(i) + "]";
        const YAML::Node item = node[i];
        if (!item.IsMap()) fail(item_key, "must be a map with name and token_sha256");
        AdminToken token;
        bool have_name = false, have_hash = false;
        for (const auto &kv : item) {
            const std::string field = kv.first.IsScalar() ? kv.first.Scalar() : "?";
            const std::string field_key = item_key + "." + field;
            if (field == "name") {
                if (have_name) fail(field_key, "appears twice");
                token.name = scalar(kv.second, field_key);
                if (!valid_token_name(token.name))
                    fail(field_key, "must be 1-64 characters of letters, digits, - _ . @");
                have_name = true;
            } else if (field == "token_sha256") {
                if (have_hash) fail(field_key, "appears twice");
                // Never echo the value: an operator may have pasted the token itself.
                const auto digest = apikey::digest_from_hex(
                    kv.second.IsScalar() ? kv.second.Scalar() : std::string());
                if (!digest)
                    fail(field_key, "must be 64 hex digits, the SHA-256 of the token "
                                    "(apikeyd hash-token < token-file)");
                token.sha256 = *digest;
                have_hash = true;
            } else {
                fail(field_key, "unknown key (expected name, token_sha256)");
            }
        }
        if (!have_name) fail(item_key + ".name", "is required");
        if (!have_hash) fail(item_key + ".token_sha256", "is required");
        if (!names.insert(token.name).second)
            fail(item_key + ".name", "\"" + token.name + "\" is used twice");
        if (!hashes.insert(token.sha256).second)
            fail(item_key + ".token_sha256", "the same token is configured twice");
        config.admin_tokens.push_back(std::move(token));
    }
}

void parse_tls(const YAML::Node &node, const std::string &base_dir, Config &config) {
    if (!node.IsMap()) fail("tls", "must be a map with cert_file and key_file");
    TlsFiles files;
    for (const auto &kv : node) {
        const std::string field = kv.first.IsScalar() ? kv.first.Scalar() : "?";
        const std::string key = "tls." + field;
        if (field == "cert_file") {
            if (!files.cert_file.empty()) fail(key, "appears twice");
            files.cert_file = absolute(scalar(kv.second, key), base_dir);
        } else if (field == "key_file") {
            if (!files.key_file.empty()) fail(key, "appears twice");
            files.key_file = absolute(scalar(kv.second, key), base_dir);
        } else {
            fail(key, "unknown key (expected cert_file, key_file)");
        }
    }
    if (files.cert_file.empty()) fail("tls.cert_file", "is required (PEM certificate chain)");
    if (files.key_file.empty()) fail("tls.key_file", "is required (PEM private key)");
    config.tls = files;
}

void parse_auth_limit(const YAML::Node &node, Config &config) {
    if (!node.IsMap()) fail("auth_rate_limit", "must be a map with max_failures and window_seconds");
    for (const auto &kv : node) {
        const std::string field = kv.first.IsScalar() ? kv.first.Scalar() : "?";
        const std::string key = "auth_rate_limit." + field;
        if (field == "max_failures")
            config.auth_limit.max_failures =
                static_cast<std::uint32_t>(unsigned_int(kv.second, key, 0, 1000000));
        else if (field == "window_seconds")
            config.auth_limit.window_seconds =
                static_cast<std::uint32_t>(unsigned_int(kv.second, key, 1, 86400));
        else
            fail(key, "unknown key (expected max_failures, window_seconds)");
    }
}

// chown() to a group takes root or membership in it. Checked by name before anything is
// created, instead of the first publish ending the start in "chown ...: Operation not
// permitted". Not at --check, which may run as another user than apikeyd's.
void check_group_member(const Config &config) {
    if (!config.snapshot_group || ::geteuid() == 0 || ::getegid() == *config.snapshot_group)
        return;
    const int n = ::getgroups(0, nullptr);
    std::vector<gid_t> groups(n > 0 ? static_cast<std::size_t>(n) : 0);
    if (n > 0 && ::getgroups(n, groups.data()) == n &&
        std::find(groups.begin(), groups.end(), *config.snapshot_group) != groups.end())
        return;
    fail("snapshot_group", "apikeyd runs as uid " + std::to_string(::geteuid()) +
                               ", which is not a member of group \"" +
                               config.snapshot_group_name +
                               "\", so it cannot give the snapshot to it: add its user to "
                               "the group, or leave snapshot_group out");
}

void check_writable_dir(const std::string &key, const std::string &dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
        fail(key, dir + ": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode)) fail(key, dir + " is not a directory");
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
        fail(key, dir + " is not writable: " + std::strerror(errno));
}

}  // namespace

ConfigError::ConfigError(const std::string &message)
    : std::runtime_error(printable(message, 1024)) {}

std::string Config::listen_text() const {
    const bool v6 = listen_host.find(':') != std::string::npos;
    return (v6 ? "[" + listen_host + "]" : listen_host) + ":" + std::to_string(listen_port);
}

Config parse_config(const std::string &yaml_text, const std::string &base_dir) {
    YAML::Node root;
    try {
        root = YAML::Load(yaml_text);
    } catch (const YAML::Exception &e) {
        throw ConfigError(std::string("invalid YAML: ") + e.what());
    }
    if (!root.IsMap()) throw ConfigError("the configuration must be a YAML map of keys");

    Config config;
    std::set<std::string> seen;
    bool have_listen = false, have_data = false, have_snapshot = false, have_tokens = false;
    for (const auto &kv : root) {
        if (!kv.first.IsScalar()) throw ConfigError("configuration keys must be strings");
        const std::string key = kv.first.Scalar();
        const YAML::Node &value = kv.second;
        if (!seen.insert(key).second) fail(key, "appears twice");
        try {
            if (key == "listen") {
                std::tie(config.listen_host, config.listen_port) =
                    parse_endpoint(scalar(value, key), key);
                have_listen = true;
            } else if (key == "usage_listen") {
                std::tie(config.usage_host, config.usage_port) =
                    parse_endpoint(scalar(value, key), key);
            } else if (key == "data_dir") {
                config.data_dir = strip_trailing_slash(absolute(scalar(value, key), base_dir));
                have_data = true;
            } else if (key == "snapshot_path") {
                config.snapshot_path = strip_trailing_slash(absolute(scalar(value, key), base_dir));
                have_snapshot = true;
            } else if (key == "snapshot_group") {
                parse_group(scalar(value, key), config);
            } else if (key == "admin_tokens") {
                parse_admin_tokens(value, config);
                have_tokens = true;
            } else if (key == "max_body_bytes") {
                config.max_body_bytes = unsigned_int(value, key, kMinBodyBytes, kMaxBodyBytes);
            } else if (key == "max_import_body_bytes") {
                config.max_import_body_bytes =
                    unsigned_int(value, key, kMinBodyBytes, kMaxImportBodyBytes);
            } else if (key == "max_import_items") {
                config.max_import_items = unsigned_int(value, key, 1, kMaxImportItems);
            } else if (key == "store_map_size_mb") {
                config.store_map_size = unsigned_int(value, key, 1, kMaxMapSizeMb) << 20;
            } else if (key == "snapshot_map_size_mb") {
                config.snapshot_map_size = unsigned_int(value, key, 1, kMaxMapSizeMb) << 20;
            } else if (key == "max_connections") {
                config.max_connections = unsigned_int(value, key, 1, 100000);
            } else if (key == "header_timeout_seconds") {
                config.header_timeout_seconds = static_cast<std::uint32_t>(unsigned_int(value, key, 1, 3600));
            } else if (key == "request_timeout_seconds") {
                config.request_timeout_seconds = static_cast<std::uint32_t>(unsigned_int(value, key, 1, 3600));
            } else if (key == "tls") {
                parse_tls(value, base_dir, config);
            } else if (key == "auth_rate_limit") {
                parse_auth_limit(value, config);
            } else {
                fail(key, "unknown key (known: listen, usage_listen, data_dir, snapshot_path, snapshot_group, "
                          "admin_tokens, max_body_bytes, max_import_body_bytes, max_import_items, "
                          "store_map_size_mb, snapshot_map_size_mb, max_connections, "
                          "header_timeout_seconds, request_timeout_seconds, tls, auth_rate_limit)");
            }
        } catch (const YAML::Exception &e) {
            fail(key, std::string("invalid value: ") + e.what());
        }
    }
    if (!have_listen) fail("listen", "is required (host:port)");
    if (!have_data) fail("data_dir", "is required");
    if (!have_snapshot) fail("snapshot_path", "is required");
    if (!have_tokens) fail("admin_tokens", "is required");
    // Admin tokens and fresh raw keys cross this port: in clear text only on loopback.
    if (!config.tls && !is_loopback_host(config.listen_host))
        fail("listen", config.listen_text() +
                           " is not a loopback address: apikeyd serves the admin API beyond "
                           "loopback only over TLS (add tls: {cert_file, key_file}, or listen "
                           "on 127.0.0.1)");
    if (config.max_import_body_bytes < config.max_body_bytes)
        fail("max_import_body_bytes", "must be at least max_body_bytes (" +
                                          std::to_string(config.max_body_bytes) + ")");

    // The snapshot is opened by nginx and may be made group-readable: it must not share a
    // directory with the private store.
    const fs::path data(config.data_dir), snap(config.snapshot_path), store(config.store_dir());
    auto inside = [](const fs::path &child, const fs::path &parent) {
        const auto rel = child.lexically_relative(parent);
        return !rel.empty() && *rel.begin() != "..";
    };
    if (snap == data) fail("snapshot_path", "must not be data_dir itself");
    if (inside(snap, store) || inside(store, snap))
        fail("snapshot_path", "must not be or contain data_dir/store");
    return config;
}

Config load_config(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError("cannot read " + path + ": " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw ConfigError("cannot read " + path);
    std::error_code ec;
    fs::path base = fs::absolute(path, ec).parent_path();
    if (ec) throw ConfigError("cannot resolve " + path + ": " + ec.message());
    try {
        Config config = parse_config(text.str(), base.string());
        if (config.tls) make_tls_context(*config.tls);  // throws ConfigError
        return config;
    } catch (const ConfigError &e) {
        throw ConfigError(path + ": " + e.what());
    }
}

bool is_loopback_host(const std::string &host) {
    in_addr a4{};
    if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    in6_addr a6{};
    return ::inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

void prepare_paths(const Config &config) {
    check_group_member(config);
    std::error_code ec;
    if (!fs::exists(config.data_dir, ec)) {
        const auto parent = fs::path(config.data_dir).parent_path();
        fs::create_directories(parent, ec);
        if (ec) fail("data_dir", "cannot create " + parent.string() + ": " + ec.message());
        if (::mkdir(config.data_dir.c_str(), 0700) != 0 && errno != EEXIST)
            fail("data_dir", "cannot create " + config.data_dir + ": " + std::strerror(errno));
    }
    check_writable_dir("data_dir", config.data_dir);

    // The snapshot directory itself is created by the snapshot writer; its nearest
    // existing ancestor must let us do that.
    fs::path probe = config.snapshot_path;
    while (!fs::exists(probe, ec) && probe.has_parent_path() && probe != probe.parent_path())
        probe = probe.parent_path();
    check_writable_dir("snapshot_path", probe.string());
}

}  // namespace apikeyd
