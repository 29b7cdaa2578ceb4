#include "cli.h"

#include "authorization.h"
#include "config.h"
#include "daemon.h"
#include "sha256.h"

#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace apikeyd {
namespace {

constexpr const char *kUsage =
    "usage: apikeyd --config FILE [--check]\n"
    "       apikeyd hash-token < token-file\n"
    "\n"
    "  --config FILE  run the admin API daemon with this YAML configuration\n"
    "  --check        only validate the configuration, then exit\n"
    "  hash-token     read one admin token on stdin and print its SHA-256, the value for\n"
    "                 admin_tokens[].token_sha256 in the configuration\n"
    "  --help         this text\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n";

int usage_error(const std::string &message) {
    std::cerr << "apikeyd: " << message << "\n" << kUsage;
    return kExitUsage;
}

}  // namespace

int hash_token(std::istream &in, std::ostream &out, std::ostream &err) {
    std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // One trailing newline (echo, files) is not part of the token.
    if (!token.empty() && token.back() == '\n') token.pop_back();
    if (!token.empty() && token.back() == '\r') token.pop_back();
    if (token.empty()) {
        err << "apikeyd hash-token: no token on stdin\n";
        return kExitUsage;
    }
    // The token travels as "Authorization: Bearer <token>": it must be a b64token.
    const auto parsed = apikey::parse_authorization("Bearer " + token);
    if (parsed.status != apikey::AuthHeader::bearer || parsed.token.size() != token.size()) {
        err << "apikeyd hash-token: the token may only contain letters, digits and "
               "- . _ ~ + / (then = padding), so it can be sent as a Bearer token\n";
        return kExitUsage;
    }
    if (token.size() < 16)
        err << "apikeyd hash-token: warning: a token of " << token.size()
            << " characters is easy to guess; use 32 random bytes\n";
    out << apikey::to_hex(apikey::sha256(token)) << "\n";
    return 0;
}

int run_cli(int argc, char **argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) return usage_error("missing --config FILE");
    if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
        std::cout << kUsage;
        return 0;
    }
    if (args[0] == "hash-token") {
        if (args.size() != 1) return usage_error("hash-token takes no arguments");
        return hash_token(std::cin, std::cout, std::cerr);
    }

    std::string config_path;
    bool check_only = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string &a = args[i];
        if (a == "--config" || a == "-c") {
            if (i + 1 >= args.size()) return usage_error(a + " needs a FILE");
            config_path = args[++i];
        } else if (a.rfind("--config=", 0) == 0) {
            config_path = a.substr(9);
        } else if (a == "--check") {
            check_only = true;
        } else {
            return usage_error("unknown argument \"" + a + "\"");
        }
    }
    if (config_path.empty()) return usage_error("missing --config FILE");

    try {
        const Config config = load_config(config_path);
        if (check_only) {
            std::cout << "apikeyd: " << config_path << " is valid\n";
            return 0;
        }
        return run_daemon(config);
    } catch (const ConfigError &e) {
        std::cerr << "apikeyd: configuration error: " << e.what() << "\n";
        return kExitUsage;
    } catch (const std::exception &e) {
        std::cerr << "apikeyd: error: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace apikeyd
