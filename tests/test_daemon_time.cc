// ISO 8601 / RFC 3339 formatting and parsing of the admin API's timestamps.
#include "../daemon/time_format.h"

#include <boost/test/unit_test.hpp>

#include <optional>

using apikeyd::format_iso8601;
using apikeyd::parse_iso8601;

BOOST_AUTO_TEST_SUITE(daemon_time)

BOOST_AUTO_TEST_CASE(format_table) {
    const struct {
        std::int64_t t;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00Z"},
        {951782400, "2000-02-29T00:00:00Z"},    // leap day of a century leap year
        {1705311000, "2024-01-15T09:30:00Z"},
        {1800000000, "2027-01-15T08:00:00Z"},
        {-1, "1969-12-31T23:59:59Z"},
        {253402300799, "9999-12-31T23:59:59Z"},
        {253402300800 * 10, "9999-12-31T23:59:59Z"},  // clamped
    };
    for (const auto &c : cases) BOOST_TEST(format_iso8601(c.t) == c.text, c.t);
}

BOOST_AUTO_TEST_CASE(parse_accepts) {
    const struct {
        const char *text;
        std::int64_t t;
    } cases[] = {
        {"2024-01-15T09:30:00Z", 1705311000},
        {"2024-01-15t09:30:00z", 1705311000},            // RFC 3339 5.6: case-insensitive
        {"2024-01-15T09:30:00.999Z", 1705311000},        // fraction truncated
        {"2024-01-15T09:30:00.123456789Z", 1705311000},
        {"2024-01-15T11:30:00+02:00", 1705311000},
        {"2024-01-15T04:00:00-05:30", 1705311000},
        {"2024-01-15T09:30:00+00:00", 1705311000},
        {"2000-02-29T00:00:00Z", 951782400},
        {"1970-01-01T00:00:00Z", 0},
        {"2026-12-01T00:00:00Z", 1796083200},
        {"9999-12-31T23:59:59Z", 253402300799},          // the last instant shown as is
        {"9999-12-31T23:59:59.999Z", 253402300799},
        {"9999-12-31T23:59:59+00:00", 253402300799},
        {"9999-12-31T23:59:59+23:59", 253402300799 - 86340},
        {"0000-01-01T00:00:00Z", -62167219200},          // the first
        {"0000-01-01T00:00:00-00:00", -62167219200},
        {"0000-01-01T00:00:00-23:59", -62167219200 + 86340},
    };
    for (const auto &c : cases) {
        const auto t = parse_iso8601(c.text);
        BOOST_TEST_INFO(c.text);
        BOOST_TEST(t.has_value());
        if (t) BOOST_TEST(*t == c.t);
    }
}

BOOST_AUTO_TEST_CASE(parse_refuses) {
    for (const char *text : {
             "",
             "next tuesday",
             "2024-01-15",                  // no time
             "2024-01-15T09:30:00",         // no zone: ambiguous
             "2024-01-15 09:30:00Z",        // space separator
             "2024-1-15T09:30:00Z",
             "2024-13-01T00:00:00Z",
             "2024-00-01T00:00:00Z",
             "2023-02-29T00:00:00Z",        // not a leap year
             "1900-02-29T00:00:00Z",        // century, not a leap year
             "2024-04-31T00:00:00Z",
             "2024-01-15T24:00:00Z",
             "2024-01-15T09:60:00Z",
             "2024-01-15T09:30:60Z",        // leap seconds refused
             "2024-01-15T09:30:00.Z",
             "2024-01-15T09:30:00.1234567890Z",
             "2024-01-15T09:30:00+0200",    // RFC 3339 needs the colon
             "2024-01-15T09:30:00+24:00",
             "2024-01-15T09:30:00Zjunk",
             "2024-01-15T09:30:00Z ",
             "+2024-01-15T09:30:00Z",
             "２０２４-01-15T09:30:00Z",
             // Beyond what format_iso8601 shows unclamped: would not round-trip.
             "9999-12-31T23:59:59-23:59",
             "9999-12-31T23:59:59-00:01",
             "9999-12-31T23:00:00-01:00",
             "0000-01-01T00:00:00+00:01",
             "0000-01-01T23:58:59+23:59",
         }) {
        BOOST_TEST(!parse_iso8601(text).has_value(), '"' << text << '"');
    }
}

// Whatever parses formats back to the same instant, at both ends of the range too.
BOOST_AUTO_TEST_CASE(every_accepted_time_round_trips) {
    for (const char *date : {"9999-12-31T", "9999-12-30T", "0000-01-01T", "0000-01-02T"})
        for (const char *clock : {"00:00:00", "00:30:00", "23:29:59", "23:59:59"})
            for (const char *zone : {"Z", "+23:59", "-23:59", "+12:00", "-00:01", "+00:01"}) {
                const std::string text = std::string(date) + clock + zone;
                const auto t = parse_iso8601(text);
                if (!t) continue;
                const auto back = parse_iso8601(format_iso8601(*t));
                BOOST_TEST_INFO(text << " -> " << format_iso8601(*t));
                BOOST_TEST((back && *back == *t));
            }
}

BOOST_AUTO_TEST_CASE(round_trip) {
    for (std::int64_t t = -86400 * 400; t < 4102444800; t += 86400 * 37 + 3607) {
        const auto back = parse_iso8601(format_iso8601(t));
        BOOST_REQUIRE(back.has_value());
        BOOST_REQUIRE_EQUAL(*back, t);
    }
}

BOOST_AUTO_TEST_SUITE_END()
