// Workspace and entity settings (seed 003): what an admin sets, how it is validated and
// normalised, how it is resolved into the snapshot's records, and its JSON shapes.
//
// Resolution (entity > workspace > system default) happens here, at publish time: the
// snapshot holds one resolved WorkspaceRecord per workspace and one resolved EntityRecord
// per configured entity, and nginx never walks a hierarchy. System defaults:
// maxExpandDepth 3, every origin, publicAccess NONE, no default expand or fields,
// everything expandable, filterable and visible.
//
// Lists (defaultExpand, defaultFields, expandableRelationships, filterableFields) are the
// seed's comma-separated strings; a JSON array of strings is accepted too. Both are
// normalised to one comma-separated string without spaces: items trimmed, empty items
// dropped, duplicates removed, order kept. After normalisation an empty defaultExpand or
// defaultFields is null (no default); an empty expandableRelationships or
// filterableFields stays "" (a whitelist that allows nothing).
#pragma once

#include "names.h"
#include "snapshot_schema.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace apikeyd {

using apikey::Uuid;
using apikey::snapshot::PublicAccess;

inline constexpr int kMaxExpandDepthLimit = 10;      // anything deeper is refused as absurd
inline constexpr std::size_t kMaxOrigins = 50;
inline constexpr std::size_t kMaxOriginLength = 300;
inline constexpr std::size_t kMaxListItems = 256;    // per list setting
inline constexpr std::size_t kMaxPathLength = 255;   // one relationship path
inline constexpr std::size_t kMaxPathSegments = 10;  // names in one relationship path
inline constexpr std::size_t kMaxColumns = 1000;     // keeps hidden_columns < 64 KiB
using apikey::kMaxIdentifierLength;

struct WorkspaceSettings {
    std::optional<int> max_expand_depth;
    std::optional<std::vector<std::string>> cors_origins;  // normalised; never empty
    // For the workspace's keys that have no rate_limit of their own.
    std::optional<apikey::snapshot::RateLimit> default_rate_limit;

    int effective_max_expand_depth() const {
        return max_expand_depth.value_or(apikey::snapshot::kDefaultMaxExpandDepth);
    }
    bool empty() const { return !max_expand_depth && !cors_origins && !default_rate_limit; }
    friend bool operator==(const WorkspaceSettings &a, const WorkspaceSettings &b) {
        return a.max_expand_depth == b.max_expand_depth && a.cors_origins == b.cors_origins &&
               a.default_rate_limit == b.default_rate_limit;
    }
    friend bool operator!=(const WorkspaceSettings &a, const WorkspaceSettings &b) {
        return !(a == b);
    }
};

struct ColumnSettings {
    bool api_visible = true;
    friend bool operator==(const ColumnSettings &a, const ColumnSettings &b) {
        return a.api_visible == b.api_visible;
    }
};

struct EntitySettings {
    std::optional<std::string> default_expand;  // normalised comma lists
    std::optional<int> max_expand_depth;
    std::optional<std::string> default_fields;
    std::optional<std::string> expandable;
    std::optional<std::string> filterable;
    std::optional<PublicAccess> public_access;
    std::optional<std::map<std::string, ColumnSettings>> columns;  // never empty

    bool empty() const {
        return !default_expand && !max_expand_depth && !default_fields && !expandable &&
               !filterable && !public_access && !columns;
    }
    // Columns with apiVisible false, comma-separated, in name order ("" when none).
    std::string hidden_columns() const;

    friend bool operator==(const EntitySettings &a, const EntitySettings &b) {
        return a.default_expand == b.default_expand && a.max_expand_depth == b.max_expand_depth &&
               a.default_fields == b.default_fields && a.expandable == b.expandable &&
               a.filterable == b.filterable && a.public_access == b.public_access &&
               a.columns == b.columns;
    }
    friend bool operator!=(const EntitySettings &a, const EntitySettings &b) { return !(a == b); }
};

// --- validation (ApiError 400: invalid_json, unknown_field, invalid_field) -------------

// A PUT body: the whole settings object; an omitted field is null (unset).
WorkspaceSettings parse_workspace_settings(std::string_view body);
EntitySettings parse_entity_settings(std::string_view body);
// The same from parsed JSON (used to decode the store's records).
WorkspaceSettings workspace_settings_from_json(const nlohmann::json &object);
EntitySettings entity_settings_from_json(const nlohmann::json &object);

// Entity and column names: [A-Za-z_][A-Za-z0-9_]{0,63} (shared/names.h; nginx -t checks
// a constant apikey_entity with the same rule).
using apikey::is_identifier;
// Dot-separated identifiers, at most kMaxPathSegments of them.
bool is_relationship_path(std::string_view text) noexcept;
// "scheme://host[:port]" with scheme http or https, a DNS name or IP literal, port
// 1..65535; nothing else (no path, query, fragment, userinfo, trailing slash). Returns
// the canonical form the browser sends in Origin: scheme and host lowercased, IPv6
// compressed, a default port (80 / 443) dropped. nullopt when invalid.
std::optional<std::string> normalise_origin(std::string_view text);

// --- resolution ------------------------------------------------------------------------

apikey::snapshot::WorkspaceRecord workspace_record(const Uuid &id, const WorkspaceSettings &ws);
apikey::snapshot::EntityRecord entity_record(const EntitySettings &entity,
                                             const WorkspaceSettings &workspace);

// --- JSON ------------------------------------------------------------------------------

// The settings as set, every field present (null when unset), in the documented order.
nlohmann::ordered_json settings_json(const WorkspaceSettings &settings);
nlohmann::ordered_json settings_json(const EntitySettings &settings);
// The API's answer: the settings as set plus "effective", the resolved values.
nlohmann::ordered_json workspace_settings_view(const WorkspaceSettings &settings);
nlohmann::ordered_json entity_settings_view(const EntitySettings &entity,
                                            const WorkspaceSettings &workspace);

}  // namespace apikeyd
