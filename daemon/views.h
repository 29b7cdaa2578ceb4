// The admin API's JSON shapes of workspaces and keys, in one place: the API answers with
// them and the change feed records them as each change's "object", so a feed entry shows
// an object exactly as the API does. A key's view never holds its hash; the raw key only
// in the create response.
#pragma once

#include "records.h"

#include <nlohmann/json.hpp>

#include <string>

namespace apikeyd {

nlohmann::ordered_json workspace_json(const Workspace &workspace);
nlohmann::ordered_json key_json(const ApiKey &key, const std::string *raw_key = nullptr);

}  // namespace apikeyd
