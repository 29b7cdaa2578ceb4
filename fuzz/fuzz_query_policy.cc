// libFuzzer target: the expand/filter/fields query parser (shared/query_policy), with the
// entity's settings taken from the input too. Input: the query string, then up to six
// '\n'-separated parts: a control line (byte 0: public access, byte 1: max depth, byte 2:
// which optional lists are present), default_expand, default_fields, expandable,
// filterable, hidden_columns.
//
// Invariants: memory of exactly query_policy_memory() bytes is always enough (never
// no_memory) and nothing is written past it (ASan); results are views into the caller's
// memory, the query or the settings; offenders are at most kMaxOffender bytes; every
// effective expand path has at most max_expand_depth segments; effective fields never
// name a hidden column (in any case) except the primary key "id"; the same input gives
// the same answer.
#include "fuzz_check.h"
#include "query_policy.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace apikey;

namespace {

std::vector<std::string_view> split_items(std::string_view list) {
    std::vector<std::string_view> out;
    while (true) {
        const std::size_t comma = list.find(',');
        out.push_back(list.substr(0, comma));
        if (comma == std::string_view::npos) return out;
        list.remove_prefix(comma + 1);
    }
}

bool listed(std::string_view list, std::string_view item) {
    for (auto i : split_items(list))
        if (i == item) return true;
    return false;
}

bool listed_ignoring_case(std::string_view list, std::string_view item) {
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
    for (auto i : split_items(list)) {
        bool same = i.size() == item.size();
        for (std::size_t k = 0; same && k < i.size(); ++k) same = lower(i[k]) == lower(item[k]);
        if (same) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string input(reinterpret_cast<const char *>(data), size);
    std::vector<std::string_view> parts;
    std::string_view rest(input);
    for (int i = 0; i < 6; ++i) {
        const std::size_t nl = rest.find('\n');
        parts.push_back(rest.substr(0, nl));
        if (nl == std::string_view::npos) {
            rest = {};
            break;
        }
        rest.remove_prefix(nl + 1);
    }
    if (!rest.empty()) parts.push_back(rest);
    const std::string_view query = parts[0];
    const std::string_view control = parts.size() > 1 ? parts[1] : std::string_view{};
    auto byte = [&](std::size_t i) -> std::uint8_t {
        return i < control.size() ? static_cast<std::uint8_t>(control[i]) : 0;
    };
    snapshot::EntityView entity;
    entity.public_access = static_cast<snapshot::PublicAccess>(byte(0) % 3);
    entity.max_expand_depth = control.size() > 1 ? byte(1) % 12 : snapshot::kDefaultMaxExpandDepth;
    const std::uint8_t present = control.size() > 2 ? byte(2) : 0x0F;
    auto part = [&](std::size_t i) { return i < parts.size() ? parts[i] : std::string_view{}; };
    if (present & 1) entity.default_expand = part(2);
    if (present & 2) entity.default_fields = part(3);
    if (present & 4) entity.expandable = part(4);
    if (present & 8) entity.filterable = part(5);
    entity.hidden_columns = part(6);

    const std::size_t need = query_policy_memory(query, entity);
    // Exactly `need` bytes on the heap: a write past them is an ASan report.
    std::unique_ptr<char[]> memory(need ? new char[need] : nullptr);
    const QueryOutcome out = apply_query_policy(query, entity, memory.get(), need);
    FUZZ_CHECK(out.status != QueryStatus::no_memory);
    const std::string_view mem(memory.get(), need);

    auto from_input = [&](std::string_view v) { return fuzz::inside(v, input) || fuzz::inside(v, mem); };
    if (out.status != QueryStatus::ok) {
        FUZZ_CHECK(out.offender.size() <= kMaxOffender);
        FUZZ_CHECK(from_input(out.offender));
        FUZZ_CHECK(out.expand.empty() && out.fields.empty());
    } else {
        FUZZ_CHECK(fuzz::inside(out.expand, mem));
        FUZZ_CHECK(fuzz::inside(out.fields, mem));
        if (!out.expand.empty()) {
            for (auto path : split_items(out.expand)) {
                FUZZ_CHECK(!path.empty());
                std::size_t segments = 1;
                for (char c : path) segments += c == '.';
                FUZZ_CHECK(segments <= entity.max_expand_depth);
            }
        }
        if (!out.fields.empty()) {
            for (auto f : split_items(out.fields)) {
                FUZZ_CHECK(!f.empty());
                FUZZ_CHECK(f == "id" || !listed_ignoring_case(entity.hidden_columns, f));
            }
            FUZZ_CHECK(listed(out.fields, "id"));
        }
    }

    // Deterministic: a second run on fresh memory gives the same answer.
    std::unique_ptr<char[]> again(need ? new char[need] : nullptr);
    const QueryOutcome out2 = apply_query_policy(query, entity, again.get(), need);
    FUZZ_CHECK(out2.status == out.status);
    FUZZ_CHECK(out2.offender == out.offender);
    FUZZ_CHECK(out2.expand == out.expand && out2.fields == out.fields);
    // Too little memory is refused, never overrun.
    if (need > 0) {
        std::unique_ptr<char[]> small(new char[need - 1]);
        const QueryOutcome tight = apply_query_policy(query, entity, small.get(), need - 1);
        FUZZ_CHECK(tight.status == QueryStatus::no_memory);
    }
    return 0;
}
