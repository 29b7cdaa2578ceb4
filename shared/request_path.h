// Whether the path a client sent can mean one thing to the module and another to the
// upstream. nginx matches locations on the path it normalised: "%2F" decoded into a
// separator, "." and ".." segments (also spelled "%2e") resolved. `proxy_pass` without a
// URI part passes the path as the client sent it. So for
//   DELETE /api/v1/acme-corp/inventory/Customer/1%2F..%2F..%2F..%2Fsales%2Fpub
// the location's captures say acme-corp/sales, entity pub (public), while an upstream
// that splits the raw path on '/' sees inventory/Customer: the module would decide for
// one workspace and entity and the upstream act on another.
#pragma once

#include <string_view>

namespace apikey {

// True when `path` (the raw path, without the query) has an encoded slash ("%2F",
// "%2f") or a dot segment ("." or "..", each dot also as "%2e" / "%2E"): the two things
// nginx's normalisation turns into a different path. Other escapes ("%20") and names
// that merely start with a dot (".well-known") are unambiguous.
bool ambiguous_path(std::string_view path) noexcept;

}  // namespace apikey
