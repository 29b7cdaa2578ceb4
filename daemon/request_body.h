// Strict reading of JSON request bodies: the body must be one JSON object, no object in it
// may name a member twice, every field must be known, and each field is type- and
// value-checked by name. Failures throw
// ApiError carrying the 400 code (invalid_json / unknown_field / missing_field /
// invalid_field) and a message that names the field but never echoes a value.
#pragma once

#include "names.h"
#include "response.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>

namespace apikeyd {

class ApiError : public std::runtime_error {
public:
    ApiError(unsigned status, std::string_view code, const std::string &message)
        : std::runtime_error(message), status_(status), code_(code) {}
    unsigned status() const { return status_; }
    std::string_view code() const { return code_; }
    Response response() const { return error_response(status_, code_, what()); }

private:
    unsigned status_;
    std::string_view code_;  // one of the code:: constants (static storage)
};

// A member name given twice in one object of a body (invalid_json): the message says
// which, where a body's other parse failures say only that it is not JSON.
class DuplicateMember : public ApiError {
public:
    using ApiError::ApiError;
};

// Nesting deeper than this is refused before parsing (no recursion blow-up).
inline constexpr std::size_t kMaxJsonDepth = 32;

struct FieldSpec {
    std::string_view name;
};

class JsonObject {
public:
    // Parses `body` and checks every field against `fields`.
    JsonObject(std::string_view body, std::initializer_list<FieldSpec> fields);
    // The same checks on an already parsed value (which must be an object).
    JsonObject(nlohmann::json value, std::initializer_list<FieldSpec> fields);

    // nullptr when absent.
    const nlohmann::json *get(std::string_view field) const;

    // A required string; missing_field / invalid_field otherwise.
    std::string required_string(std::string_view field) const;

private:
    void check_fields(std::initializer_list<FieldSpec> fields) const;
    nlohmann::json object_;
};

[[noreturn]] void invalid_field(std::string_view field, std::string_view why);
[[noreturn]] void unknown_field(std::string_view field);

// `field "name"` when `field` looks like a field name, else `a field`: names are client
// input and only echoed when harmless.
std::string quoted_field(std::string_view field);

// Names: 1..max_chars characters (UTF-8 code points), no control characters, not only
// ASCII whitespace (refused as empty, like ""). Stored as given, untrimmed.
std::string checked_name(const std::string &value, std::string_view field,
                         std::size_t max_chars = 200);

// org and slug: shared/names.h (nginx's `nginx -t` checks a constant apikey_workspace
// with the same rule).
using apikey::is_valid_slug;

}  // namespace apikeyd
