// apikeyd's YAML configuration. Loading is strict: an unknown key, a value of the wrong
// type or out of range refuses to start with a message that names the key, because a
// typo in a security component's config must not silently mean "default".
#pragma once

#include "auth_limiter.h"
#include "sha256.h"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace apikeyd {

// A configuration mistake. Its message quotes the operator's bytes, so it is made one line
// of printable ASCII whatever they were (others shown as \xNN, anything past 1 KiB cut):
// it goes to a terminal or a log as is.
class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(const std::string &message);
};

struct AdminToken {
    std::string name;  // the actor: logged and stored as created_by
    apikey::Digest sha256{};
};

// PEM files of the admin API's TLS certificate (chain) and private key.
struct TlsFiles {
    std::string cert_file;  // absolute
    std::string key_file;   // absolute
};

struct Config {
    std::string listen_host;     // IP literal (IPv6 without brackets); "localhost" -> 127.0.0.1
    std::uint16_t listen_port = 0;
    // Where nginx's usage reports arrive (UDP); none when usage_port is 0.
    std::string usage_host;
    std::uint16_t usage_port = 0;
    std::string data_dir;        // absolute; the store lives in data_dir/store
    std::string snapshot_path;   // absolute; directory of the published LMDB snapshot
    std::optional<gid_t> snapshot_group;
    std::string snapshot_group_name;
    std::vector<AdminToken> admin_tokens;
    std::size_t max_body_bytes = 65536;
    std::size_t max_connections = 512;  // admin API connections at once
    std::uint32_t header_timeout_seconds = 10;   // headers (and TLS handshake, idle wait)
    std::uint32_t request_timeout_seconds = 30;  // the whole request, body included
    // POST .../api-keys/import only (every other route keeps max_body_bytes).
    std::size_t max_import_body_bytes = std::size_t{512} << 20;
    std::size_t max_import_items = 1'000'000;
    std::size_t store_map_size = std::size_t{1024} << 20;
    std::size_t snapshot_map_size = std::size_t{4096} << 20;
    // Required to listen on anything but loopback; optional on loopback.
    std::optional<TlsFiles> tls;
    AuthLimitOptions auth_limit;  // auth_rate_limit: failed admin authentications

    std::string store_dir() const { return data_dir + "/store"; }
    std::string listen_text() const;  // "host:port", IPv6 hosts in brackets
};

// Parses YAML text. Relative paths are resolved against `base_dir` (absolute).
// Throws ConfigError.
Config parse_config(const std::string &yaml_text, const std::string &base_dir);

// Reads and parses a file; relative paths are relative to the file's directory. Also
// loads the TLS certificate and key when configured (missing, unreadable or not PEM,
// or a key that does not match the certificate: ConfigError naming the key).
// Throws ConfigError (also when the file cannot be read).
Config load_config(const std::string &path);

// Creates data_dir (0700) when missing and checks that it and the snapshot's parent are
// writable directories, and that this process may give files to snapshot_group (root or
// a member), so that a wrong path or group is reported by name before anything opens.
// Throws ConfigError.
void prepare_paths(const Config &config);

// 127.0.0.0/8 or ::1.
bool is_loopback_host(const std::string &host);

}  // namespace apikeyd
