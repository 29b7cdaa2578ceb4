// The body of POST /api/v1/workspaces/{id}/api-keys/import (README "Importing keys"):
// NDJSON, one key object per line, each validated like a create's body plus the two
// fields a create generates itself:
//
//   {"key_sha256": "<64 hex digits: SHA-256 of the raw key>",   required
//    "key_prefix": "sk_live_XXXX",                             required (4 base62)
//    "name": "...",                                            required
//    "permission": "read_only" | "read_write",                 default read_only
//    "expires_at": "RFC 3339" | null,                          in the future
//    "rate_limit": {"limit": N, "window_seconds": S} | null}
//
// Lines are numbered from 1 as sent; empty (whitespace-only) lines are skipped, a
// trailing CR is ignored. Parsing collects every bad item (the count of all, the first
// kMaxListedImportErrors by line listed) instead of stopping at the first.
#pragma once

#include "records.h"
#include "request_body.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace apikeyd {

inline constexpr std::size_t kMaxListedImportErrors = 100;
inline constexpr std::size_t kMaxImportLineBytes = 4096;

struct ImportError {
    std::size_t line = 0;
    std::string_view code;  // a code:: constant
    std::string message;
};

// Every error counted, the first kMaxListedImportErrors (by line) kept.
class ImportErrors {
public:
    void add(std::size_t line, std::string_view code, std::string message);
    // Merges another phase's list; the listed ones stay the first by line.
    void merge(ImportErrors &&other);
    std::size_t count() const { return count_; }
    bool empty() const { return count_ == 0; }
    // Listed errors, sorted by line.
    const std::vector<ImportError> &listed() const { return listed_; }
    bool only_conflicts() const { return count_ == conflicts_; }

private:
    std::vector<ImportError> listed_;
    std::size_t count_ = 0;
    std::size_t conflicts_ = 0;
};

struct ParsedImport {
    std::vector<ApiKey> keys;        // the valid items, in line order
    std::vector<std::size_t> lines;  // keys[i]'s line number
    std::size_t items = 0;           // non-empty lines
    ImportErrors errors;             // bad items; duplicates within the batch included
};

// The fields a create and an import share (name, permission, expires_at, rate_limit),
// validated the same way. Throws ApiError (400).
void parse_key_fields(const JsonObject &object, std::int64_t now, ApiKey &key);

// Parses and validates every line. Key ids, status and timestamps are not set. Throws
// ApiError for the body as a whole: 413 beyond `max_items` items, 400 when it holds none.
ParsedImport parse_import(std::string_view body, std::int64_t now, std::size_t max_items);

// "sk_live_" + 4 base62 characters.
bool is_valid_key_prefix(std::string_view prefix) noexcept;

}  // namespace apikeyd
