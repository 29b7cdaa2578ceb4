#include "key_bucket.h"
#include "sha256.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using namespace apikey;
using namespace apikey::snapshot;

namespace {

// Records of the three key record shapes (38, 46, 54 bytes), distinct bytes.
std::string record_of(std::size_t i) { return std::string(38 + 8 * (i % 3), static_cast<char>('a' + i % 26)); }

std::vector<BucketEntry> make_entries(std::size_t n, const std::string &seed) {
    std::vector<BucketEntry> entries;
    for (std::size_t i = 0; i < n; ++i)
        entries.push_back(BucketEntry::make(sha256(seed + std::to_string(i)), record_of(i)));
    return entries;
}

// edit_bucket's contract: edits stably sorted by hash.
std::string edit(std::string_view bucket, std::vector<BucketEntry> edits) {
    std::stable_sort(edits.begin(), edits.end(), hash_order);
    return edit_bucket(bucket, edits);
}

// A record as a bucket holds it.
std::string padded(const std::string &record) {
    return record + std::string(kBucketRecordSize - record.size(), '\0');
}

BucketLookup find(std::string_view bucket, const Digest &hash, std::string &record) {
    std::string_view r;
    const BucketLookup result = find_in_bucket(bucket, hash, r);
    record.assign(r);
    return result;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(key_bucket)

BOOST_DATA_TEST_CASE(every_entry_is_found_and_no_other,
                     boost::unit_test::data::make<std::size_t>({1, 2, 3, 7, 100, 384, 385, 3000}), n) {
    const auto entries = make_entries(n, "in");
    const std::string bucket = edit({}, entries);
    std::string record;
    for (std::size_t i = 0; i < n; ++i) {
        BOOST_REQUIRE((find(bucket, entries[i].hash, record) == BucketLookup::found));
        BOOST_TEST(record == padded(record_of(i)));
    }
    for (const auto &e : make_entries(1000, "out"))
        BOOST_TEST((find(bucket, e.hash, record) == BucketLookup::absent));

    std::vector<BucketEntry> listed;
    BOOST_TEST(bucket_entries(bucket, listed));
    BOOST_TEST(listed.size() == entries.size());
}

BOOST_DATA_TEST_CASE(at_most_three_quarters_of_the_entries_are_used,
                     boost::unit_test::data::make<std::size_t>({1, 2, 3, 6, 7, 23, 244, 384, 385}), n) {
    const std::string bucket = edit({}, make_entries(n, "load"));
    BOOST_REQUIRE(bucket.size() % kBucketEntrySize == 0);
    const std::size_t count = bucket.size() / kBucketEntrySize;
    BOOST_TEST(n * 4 <= count * 3);
    if (bucket.size() <= 2048)
        BOOST_TEST((count - 1) * 3 < n * 4);  // and no more than that needs
    else  // in overflow pages: filled up to the last one's end, and not a page more
        BOOST_TEST((bucket.size() + 16 + kBucketEntrySize > (bucket.size() + 16 + 4095) / 4096 * 4096));
}

BOOST_AUTO_TEST_CASE(edits_put_replace_and_delete_and_the_bytes_do_not_depend_on_history) {
    const auto entries = make_entries(50, "edit");
    std::string forward, backward, one_by_one;
    forward = edit({}, entries);
    backward = edit({}, std::vector<BucketEntry>(entries.rbegin(), entries.rend()));
    for (const auto &e : entries) one_by_one = edit(one_by_one, {e});
    BOOST_TEST(forward == backward);
    BOOST_TEST(forward == one_by_one);

    std::string record;
    const std::string replaced = edit(forward, {BucketEntry::make(entries[7].hash, std::string(46, 'R'))});
    BOOST_REQUIRE((find(replaced, entries[7].hash, record) == BucketLookup::found));
    BOOST_TEST(record == padded(std::string(46, 'R')));
    std::vector<BucketEntry> listed;
    BOOST_TEST(bucket_entries(replaced, listed));
    BOOST_TEST(listed.size() == 50u);

    const std::string removed = edit(replaced, {BucketEntry::make(entries[7].hash, {})});
    BOOST_TEST((find(removed, entries[7].hash, record) == BucketLookup::absent));
    BOOST_TEST((find(removed, entries[8].hash, record) == BucketLookup::found));
    BOOST_TEST(edit(edit({}, {entries[0]}), {BucketEntry::make(entries[0].hash, {})}).empty());
}

BOOST_AUTO_TEST_CASE(of_several_edits_of_one_key_the_last_wins) {
    const Digest h = sha256("k");
    std::string record;
    // put, delete -> absent; delete, put -> present; put, put -> the second.
    BOOST_TEST((find(edit({}, {BucketEntry::make(h, "\x02one"), BucketEntry::make(h, {})}), h, record) ==
                BucketLookup::corrupt));  // no key left: no bucket at all
    BOOST_TEST(edit({}, {BucketEntry::make(h, "\x02one"), BucketEntry::make(h, {})}).empty());
    const std::string present = edit({}, {BucketEntry::make(h, {}), BucketEntry::make(h, "\x02two")});
    BOOST_REQUIRE((find(present, h, record) == BucketLookup::found));
    BOOST_TEST(record == padded("\x02two"));
    const std::string second = edit(present, {BucketEntry::make(h, "\x02three"), BucketEntry::make(h, "\x02four")});
    BOOST_REQUIRE((find(second, h, record) == BucketLookup::found));
    BOOST_TEST(record == padded("\x02four"));
}

BOOST_AUTO_TEST_CASE(hashes_with_the_same_probe_start_are_told_apart) {
    // Bytes 8..11 pick the first entry probed: these differ only after them, in byte 31.
    std::vector<BucketEntry> entries;
    for (int i = 0; i < 6; ++i) {
        Digest h = sha256("same");
        h[31] = static_cast<unsigned char>(i);
        entries.push_back(BucketEntry::make(h, record_of(i)));
    }
    const std::string bucket = edit({}, entries);
    std::string record;
    for (int i = 0; i < 6; ++i) {
        BOOST_REQUIRE((find(bucket, entries[i].hash, record) == BucketLookup::found));
        BOOST_TEST(record == padded(record_of(i)));
    }
    Digest other = entries[0].hash;
    other[31] = 99;
    BOOST_TEST((find(bucket, other, record) == BucketLookup::absent));
}

BOOST_AUTO_TEST_CASE(a_bucket_whose_size_is_not_whole_entries_is_corrupt) {
    const auto entries = make_entries(3, "dmg");
    const std::string good = edit({}, entries);
    for (const std::string &bad : {std::string(), good.substr(0, kBucketEntrySize - 1),
                                   good.substr(0, good.size() - 1), good + "x"}) {
        BOOST_TEST_CONTEXT(bad.size() << " bytes") {
            // An exact-size heap copy, so that a read past the end shows under ASan.
            std::vector<char> copy(bad.begin(), bad.end());
            const std::string_view bytes(copy.data(), copy.size());
            std::string_view record;
            for (const auto &e : entries)
                BOOST_TEST((find_in_bucket(bytes, e.hash, record) == BucketLookup::corrupt));
            std::vector<BucketEntry> listed;
            BOOST_TEST((!bucket_entries(bytes, listed) || bytes.empty()));
            // The writer rebuilds from what could be read: the result is whole again.
            const std::string rebuilt = edit(bytes, {entries[0]});
            std::string found;
            BOOST_TEST((find(rebuilt, entries[0].hash, found) == BucketLookup::found));
            listed.clear();
            BOOST_TEST(bucket_entries(rebuilt, listed));
        }
    }
}

BOOST_AUTO_TEST_CASE(a_bucket_without_an_empty_entry_ends_the_probe) {
    // Two entries, both taken (a damaged bucket: the writer leaves a quarter empty).
    const auto entries = make_entries(2, "full");
    std::string bucket;
    for (const auto &e : entries)
        bucket.append(e.hash.begin(), e.hash.end()).append(e.record.begin(), e.record.end());
    std::string record;
    BOOST_TEST((find(bucket, sha256("not there"), record) == BucketLookup::absent));
    BOOST_TEST((find(bucket, entries[1].hash, record) == BucketLookup::found));
}

BOOST_AUTO_TEST_CASE(records_that_cannot_be_stored_are_refused) {
    for (const std::string &record : {std::string(57, 'x'), std::string(38, '\0')})
        BOOST_CHECK_THROW(BucketEntry::make(sha256("r"), record), std::length_error);
    BOOST_TEST(BucketEntry::make(sha256("r"), {}).removes());
    BOOST_TEST(!BucketEntry::make(sha256("r"), std::string(56, 'x')).removes());
}

BOOST_AUTO_TEST_SUITE_END()
