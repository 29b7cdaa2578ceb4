// apikeyd's log: one line per event on stderr, "<UTC time> <level> <message>". Callers
// never pass a raw key, an admin token or a header value.
#pragma once

#include <string_view>

namespace apikeyd {

enum class LogLevel { info, warn, error };

void log(LogLevel level, std::string_view message);
inline void log_info(std::string_view m) { log(LogLevel::info, m); }
inline void log_warn(std::string_view m) { log(LogLevel::warn, m); }
inline void log_error(std::string_view m) { log(LogLevel::error, m); }

// Unit tests turn it off to keep their output readable.
void set_log_enabled(bool enabled);

}  // namespace apikeyd
