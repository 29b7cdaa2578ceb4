// libFuzzer target: the snapshot record decoders (shared/snapshot_schema) fed corrupted
// bytes, as nginx workers would read them from a damaged or foreign snapshot. Input byte
// 0 picks the decoder (key, workspace, entity, u64, key bucket), the rest is the record;
// for a key bucket, its first 32 bytes are the hash looked up.
//
// Invariants: decode never reads past its input (the record is an exact-size heap copy:
// ASan), the views it returns lie inside the input, and what it accepts survives
// encode -> decode unchanged; a key bucket the writer edits is whole again and holds the
// edit.
#include "fuzz_check.h"
#include "key_bucket.h"
#include "snapshot_schema.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace apikey::snapshot;

namespace {

std::optional<std::string> own(const std::optional<std::string_view> &v) {
    return v ? std::optional<std::string>(std::string(*v)) : std::nullopt;
}

bool same(const EntityView &a, const EntityView &b) {
    return a.public_access == b.public_access && a.max_expand_depth == b.max_expand_depth &&
           a.default_expand == b.default_expand && a.default_fields == b.default_fields &&
           a.expandable == b.expandable && a.filterable == b.filterable &&
           a.hidden_columns == b.hidden_columns;
}

void key_record(std::string_view bytes) {
    KeyRecord r;
    if (!decode(bytes, r)) return;
    FUZZ_CHECK(r.permission == Permission::read_only || r.permission == Permission::read_write);
    FUZZ_CHECK(r.status == KeyStatus::active || r.status == KeyStatus::revoked);
    const std::string again = encode(r);
    KeyRecord r2;
    FUZZ_CHECK(decode(again, r2));
    FUZZ_CHECK(r2.id == r.id && r2.workspace_id == r.workspace_id);
    FUZZ_CHECK(r2.permission == r.permission && r2.status == r.status);
    FUZZ_CHECK(r2.expires_at == r.expires_at && r2.rate_limit == r.rate_limit);
    FUZZ_CHECK(r2.prefix == r.prefix);
    FUZZ_CHECK(encode(r2) == again);
}

void workspace_record(std::string_view bytes) {
    WorkspaceView v;
    if (!decode(bytes, v)) return;
    FUZZ_CHECK(fuzz::inside(v.cors_origins, bytes));
    const std::string again = encode(WorkspaceRecord{v.id, v.max_expand_depth, std::string(v.cors_origins)});
    WorkspaceView v2;
    FUZZ_CHECK(decode(again, v2));
    FUZZ_CHECK(v2.id == v.id && v2.max_expand_depth == v.max_expand_depth &&
               v2.cors_origins == v.cors_origins);
}

void entity_record(std::string_view bytes) {
    EntityView v;
    if (!decode(bytes, v)) return;
    FUZZ_CHECK(static_cast<std::uint8_t>(v.public_access) <= 2);
    for (const auto *o : {&v.default_expand, &v.default_fields, &v.expandable, &v.filterable})
        if (*o) FUZZ_CHECK(fuzz::inside(**o, bytes));
    FUZZ_CHECK(fuzz::inside(v.hidden_columns, bytes));
    EntityRecord r;
    r.public_access = v.public_access;
    r.max_expand_depth = v.max_expand_depth;
    r.default_expand = own(v.default_expand);
    r.default_fields = own(v.default_fields);
    r.expandable = own(v.expandable);
    r.filterable = own(v.filterable);
    r.hidden_columns = std::string(v.hidden_columns);
    const std::string again = encode(r);
    EntityView v2;
    FUZZ_CHECK(decode(again, v2));
    FUZZ_CHECK(same(v, v2));
}

void u64_record(std::string_view bytes) {
    std::uint64_t n = 0;
    if (!decode_u64(bytes, n)) {
        FUZZ_CHECK(bytes.size() != 8);
        return;
    }
    FUZZ_CHECK(encode_u64(n) == bytes);
}

void key_bucket(std::string_view bytes) {
    if (bytes.size() < 32) return;
    apikey::Digest hash;
    std::memcpy(hash.data(), bytes.data(), 32);
    const std::string_view bucket = bytes.substr(32);
    std::string_view record;
    if (find_in_bucket(bucket, hash, record) == BucketLookup::found)
        FUZZ_CHECK(fuzz::inside(record, bucket));
    std::vector<BucketEntry> entries;
    bucket_entries(bucket, entries);
    // What apikeyd's next publish into this bucket writes.
    const std::string edited = edit_bucket(bucket, {BucketEntry::make(hash, "edit")});
    FUZZ_CHECK(find_in_bucket(edited, hash, record) == BucketLookup::found && record.substr(0, 4) == "edit");
    std::vector<BucketEntry> after;
    FUZZ_CHECK(bucket_entries(edited, after));
    for (const auto &e : after)
        FUZZ_CHECK(find_in_bucket(edited, e.hash, record) == BucketLookup::found &&
                   record == std::string_view(e.record.data(), e.record.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size == 0) return 0;
    // An exact-size copy of the record: one byte read past it is a heap overflow.
    const std::size_t n = size - 1;
    std::unique_ptr<char[]> record(new char[n ? n : 1]);
    if (n) std::memcpy(record.get(), data + 1, n);
    const std::string_view bytes(record.get(), n);
    switch (data[0] % 5) {
    case 0: key_record(bytes); break;
    case 1: workspace_record(bytes); break;
    case 2: entity_record(bytes); break;
    case 3: u64_record(bytes); break;
    case 4: key_bucket(bytes); break;
    }
    return 0;
}
