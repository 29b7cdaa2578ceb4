#include "time_format.h"

#include <chrono>
#include <cstdio>

namespace apikeyd {
namespace {

// Howard Hinnant's civil-calendar algorithms: exact for the proleptic Gregorian calendar,
// independent of the process time zone (unlike mktime) and of timegm's availability.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t &y, unsigned &m, unsigned &d) noexcept {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
}

bool is_leap(std::int64_t y) noexcept { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(std::int64_t y, unsigned m) noexcept {
    static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// Reads exactly `n` decimal digits at `pos`, advancing it.
bool digits(std::string_view s, std::size_t &pos, std::size_t n, unsigned &out) noexcept {
    if (pos + n > s.size()) return false;
    unsigned v = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = s[pos + i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    pos += n;
    out = v;
    return true;
}

bool expect(std::string_view s, std::size_t &pos, char a, char b = '\0') noexcept {
    if (pos >= s.size() || (s[pos] != a && (b == '\0' || s[pos] != b))) return false;
    ++pos;
    return true;
}

// The clamp of format_iso8601: 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
constexpr std::int64_t kMinTime = -62167219200;
constexpr std::int64_t kMaxTime = 253402300799;

}  // namespace

std::string format_iso8601(std::int64_t t) {
    if (t < kMinTime) t = kMinTime;
    if (t > kMaxTime) t = kMaxTime;
    std::int64_t days = t / 86400, secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        --days;
    }
    std::int64_t y;
    unsigned m, d;
    civil_from_days(days, y, m, d);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ",
                  static_cast<long long>(y), m, d, static_cast<long long>(secs / 3600),
                  static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
    return buf;
}

std::optional<std::int64_t> parse_iso8601(std::string_view s) noexcept {
    std::size_t pos = 0;
    unsigned year, month, day, hour, minute, second;
    if (!digits(s, pos, 4, year) || !expect(s, pos, '-') || !digits(s, pos, 2, month) ||
        !expect(s, pos, '-') || !digits(s, pos, 2, day) || !expect(s, pos, 'T', 't') ||
        !digits(s, pos, 2, hour) || !expect(s, pos, ':') || !digits(s, pos, 2, minute) ||
        !expect(s, pos, ':') || !digits(s, pos, 2, second))
        return std::nullopt;
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 59)
        return std::nullopt;

    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
        if (pos == start || pos - start > 9) return std::nullopt;  // at most nanoseconds
    }

    std::int64_t offset = 0;  // seconds east of UTC
    if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
        ++pos;
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
        const bool east = s[pos] == '+';
        ++pos;
        unsigned oh, om;
        if (!digits(s, pos, 2, oh) || !expect(s, pos, ':') || !digits(s, pos, 2, om) ||
            oh > 23 || om > 59)
            return std::nullopt;
        offset = (east ? 1 : -1) * static_cast<std::int64_t>(oh * 3600 + om * 60);
    } else {
        return std::nullopt;  // a time without a zone is ambiguous
    }
    if (pos != s.size()) return std::nullopt;

    const std::int64_t t =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    // An offset can carry 9999-12-31 past the last instant format_iso8601 shows (and
    // 0000-01-01 before the first): such a time would be stored as given but shown
    // clamped, so what is accepted would not come back as it is.
    if (t < kMinTime || t > kMaxTime) return std::nullopt;
    return t;
}

std::int64_t unix_now() noexcept {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace apikeyd
