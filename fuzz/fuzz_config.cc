// libFuzzer target: apikeyd's YAML config loader (daemon/config, parse_config). The only
// exception it may throw is ConfigError (anything else would escape main as a crash) with
// a readable message; a config it accepts has every required key with a usable value.
#include "../daemon/config.h"
#include "fuzz_check.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    try {
        const apikeyd::Config c = apikeyd::parse_config(text, "/etc/apikeyd");
        FUZZ_CHECK(!c.listen_host.empty() && c.listen_port != 0);
        FUZZ_CHECK(!c.data_dir.empty() && c.data_dir.front() == '/');
        FUZZ_CHECK(!c.snapshot_path.empty() && c.snapshot_path.front() == '/');
        FUZZ_CHECK(c.snapshot_path != c.data_dir);
        FUZZ_CHECK(!c.admin_tokens.empty());
        for (const auto &t : c.admin_tokens) FUZZ_CHECK(!t.name.empty() && t.name.size() <= 64);
        FUZZ_CHECK(c.max_body_bytes >= 1024);
        FUZZ_CHECK(c.usage_port != 0 || c.usage_host.empty());
        (void)c.listen_text();
    } catch (const apikeyd::ConfigError &e) {
        // A message is one line of printable ASCII, whatever bytes the input held.
        const std::string message = e.what();
        FUZZ_CHECK(!message.empty());
        for (const char ch : message) FUZZ_CHECK(ch >= 0x20 && ch < 0x7f);
    }
    return 0;
}
