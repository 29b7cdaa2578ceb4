#include "log.h"

#include "time_format.h"

#include <atomic>
#include <cstdio>
#include <string>

namespace apikeyd {
namespace {

std::atomic<bool> g_enabled{true};

std::string_view level_name(LogLevel level) {
    switch (level) {
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    }
    return "info";
}

}  // namespace

void log(LogLevel level, std::string_view message) {
    if (!g_enabled.load(std::memory_order_relaxed)) return;
    std::string line = format_iso8601(unix_now());
    line += ' ';
    line += level_name(level);
    line += ' ';
    // One line per event, whatever the message holds.
    for (const char c : message) line += (c == '\n' || c == '\r') ? ' ' : c;
    line += '\n';
    // A single write: lines of concurrent writers (none today) would not interleave.
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

void set_log_enabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }

}  // namespace apikeyd
