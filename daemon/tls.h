// The admin API's TLS: a server context from the PEM files of `tls:` in the YAML.
#pragma once

#include "config.h"

#include <memory>

namespace boost::asio::ssl {
class context;
}

namespace apikeyd {

// TLS 1.2 or newer, no compression. Throws ConfigError naming tls.cert_file or
// tls.key_file when a file is missing, unreadable, not PEM, or the key does not match the
// certificate.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsFiles &files);

}  // namespace apikeyd
