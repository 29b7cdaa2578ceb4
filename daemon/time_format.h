// ISO 8601 / RFC 3339 timestamps of the admin API. The daemon keeps every time as unix
// seconds (what the snapshot's expiry check uses) and only formats at the edge.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace apikeyd {

// "YYYY-MM-DDTHH:MM:SSZ" in UTC. Years outside 0000..9999 are clamped to that range.
std::string format_iso8601(std::int64_t unix_seconds);

// RFC 3339 date-time: "2026-12-01T00:00:00Z", optional fractional seconds (truncated:
// an expiry never ends up later than asked), "Z" or a "+hh:mm"/"-hh:mm" offset. "T"/"Z"
// may be lowercase (RFC 3339 5.6). Dates are range-checked (no February 30th); leap
// seconds (:60) are refused, and so is an instant outside what format_iso8601 shows
// unclamped (0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, which an offset can cross):
// every accepted time formats back to the same instant. nullopt for anything else.
std::optional<std::int64_t> parse_iso8601(std::string_view text) noexcept;

// Current wall-clock time in unix seconds.
std::int64_t unix_now() noexcept;

}  // namespace apikeyd
