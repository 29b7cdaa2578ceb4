#include "tls.h"

#include <boost/asio/ssl/context.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace apikeyd {
namespace {

[[noreturn]] void fail(const std::string &key, const std::string &why) {
    throw ConfigError(key + ": " + why);
}

// OpenSSL's reason for the last failure, and an empty error queue afterwards.
std::string openssl_reason() {
    std::string reason;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (reason.empty()) reason = buf;
    }
    return reason.empty() ? "unknown error" : reason;
}

void check_readable(const std::string &key, const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(key, "cannot read " + path + ": " + std::strerror(errno));
    char c;
    if (!in.get(c)) fail(key, path + " is empty");
}

}  // namespace

std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsFiles &files) {
    namespace ssl = boost::asio::ssl;
    check_readable("tls.cert_file", files.cert_file);
    check_readable("tls.key_file", files.key_file);
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX *native = ctx->native_handle();
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_compression |
                     ssl::context::single_dh_use);
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    // An encrypted key would make OpenSSL prompt on the terminal: refuse it instead.
    SSL_CTX_set_default_passwd_cb(native, [](char *, int, int, void *) { return 0; });
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(native, files.cert_file.c_str()) != 1)
        fail("tls.cert_file", files.cert_file + " is not a PEM certificate (" + openssl_reason() + ")");
    if (SSL_CTX_use_PrivateKey_file(native, files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        // OpenSSL checks the key against the certificate while loading it.
        const bool mismatch = ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH;
        fail("tls.key_file", files.key_file +
                                 (mismatch ? " does not match the certificate in " + files.cert_file
                                           : std::string(" is not a PEM private key")) +
                                 " (" + openssl_reason() + ")");
    }
    if (SSL_CTX_check_private_key(native) != 1)
        fail("tls.key_file", files.key_file + " does not match the certificate in " +
                                 files.cert_file + " (" + openssl_reason() + ")");
    return ctx;
}

}  // namespace apikeyd
