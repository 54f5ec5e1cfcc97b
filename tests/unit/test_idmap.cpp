// SPDX-License-Identifier: GPL-3.0-or-later
// helper/idmap and CacheStore::assign_id: candidates are a fixed function of the immutable id
// (hard-coded values catch any change of H), stay in range, collisions resolve the same way
// every time and are recorded, reserved ids are skipped; AD SID/GUID bytes print as AD does.
#include <algorithm>
#include <string>
#include <vector>

#include "cache_store.hpp"
#include "fixture.hpp"
#include "idmap.hpp"

#include "cmocka.hpp"

using namespace cvat::helper;
using cvat::test::TempDir;

namespace {

constexpr IdRange kRange{200000, 2000200000};

std::string bytes(std::initializer_list<unsigned> v) {
    std::string out;
    for (unsigned b : v) out += static_cast<char>(b);
    return out;
}

std::string hex_bytes(std::string_view hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
    return out;
}

std::unique_ptr<CacheStore> open_store(const TempDir& dir) {
    auto s = CacheStore::open(dir.path());
    if (!s) fail_msg("open: %s", s.error().detail.c_str());
    return std::move(*s);
}

// Values computed once with Python's hashlib (first 8 bytes of SHA-256, big-endian).
void test_known_candidates(void**) {
    const std::string sid = "sid:S-1-5-21-1004336348-1177238915-682003330-1104";
    assert_int_equal(id_candidate(sid, 0, kRange), 1456013127u);
    assert_int_equal(id_candidate(sid, 1, kRange), 1938588872u);
    assert_int_equal(id_candidate(sid, 2, kRange), 123598536u);
    const std::string oidc = "oidc:https://login.example.com/ 248289761001";
    assert_int_equal(id_candidate(oidc, 0, kRange), 888020172u);
    assert_int_equal(id_candidate(oidc, 1, kRange), 1533657772u);
    assert_int_equal(id_candidate("uuid:9b1d1c3e-2f44-4f7e-9d6a-3c1b2f0e8a11", 0, kRange), 396809109u);
    // the full 32-bit range (width 2^32) does not overflow
    assert_int_equal(id_candidate(sid, 0, IdRange{0, 0xffffffffu}), 159313143u);
    assert_int_equal(id_candidate("uuid:9b1d1c3e-2f44-4f7e-9d6a-3c1b2f0e8a11", 0, IdRange{0, 0xffffffffu}), 3387709087u);
}

void test_range_bounds(void**) {
    for (unsigned k = 0; k < 200; ++k) {
        const std::string id = "guid:" + std::to_string(k);
        const auto c = id_candidate(id, k, IdRange{1000, 1009});
        assert_true(c >= 1000 && c <= 1009);
        assert_int_equal(id_candidate(id, k, IdRange{4242, 4242}), 4242);
        assert_int_equal(id_candidate(id, k, IdRange{0xffffffffu, 0xffffffffu}), 0xffffffffu);
    }
    // over a small range every value shows up: the candidates are not stuck on one
    std::vector<bool> seen(10);
    for (unsigned k = 0; k < 200; ++k) seen[id_candidate("dn:cn=x", k, IdRange{1000, 1009}) - 1000] = true;
    assert_true(std::all_of(seen.begin(), seen.end(), [](bool b) { return b; }));
    assert_int_equal(id_candidate("x", 0, IdRange{10, 5}), 10);  // malformed range: min
}

void test_assign_records_and_is_stable(void**) {
    TempDir dir;
    const std::string sid = "sid:S-1-5-21-1004336348-1177238915-682003330-1104";
    {
        auto s = open_store(dir);
        auto id = s->assign_id(sid, kRange, {});
        assert_true(id.has_value());
        assert_int_equal(*id, 1456013127u);
        auto again = s->assign_id(sid, IdRange{1, 10}, {});  // recorded id wins over a new range
        assert_int_equal(*again, 1456013127u);
    }
    auto s = open_store(dir);  // survives a reopen
    assert_int_equal(**s->recorded_id(sid), 1456013127u);
    assert_string_equal(s->id_holder(1456013127u)->value().c_str(), sid.c_str());
    assert_false(s->id_holder(1456013128u)->has_value());
    assert_false(s->recorded_id("sid:unknown")->has_value());
    // flush keeps the map
    assert_true(s->flush().has_value());
    assert_int_equal(**s->recorded_id(sid), 1456013127u);
    assert_false(s->assign_id("", kRange, {}).has_value());
    assert_false(s->assign_id("x", IdRange{10, 5}, {}).has_value());
}

void test_collisions_deterministic(void**) {
    // Two-value range: the second id must take the value the first did not, the same way in
    // two independent stores, and the skipped candidate is recorded with its holder.
    constexpr IdRange tiny{5000, 5001};
    std::vector<std::uint32_t> first_ids;
    std::vector<std::vector<IdCollision>> collisions;
    for (int run = 0; run < 2; ++run) {
        TempDir dir;
        auto s = open_store(dir);
        auto a = s->assign_id("uuid:a", tiny, {});
        assert_true(a.has_value());
        assert_int_equal(*a, id_candidate("uuid:a", 0, tiny));
        // find an id whose first candidate collides with a
        std::string b;
        for (int i = 0; b.empty(); ++i)
            if (id_candidate("uuid:b" + std::to_string(i), 0, tiny) == *a) b = "uuid:b" + std::to_string(i);
        auto bid = s->assign_id(b, tiny, {});
        assert_true(bid.has_value());
        assert_int_not_equal(*bid, *a);
        first_ids.push_back(*bid);
        auto c = s->id_collisions(100);
        assert_true(c.has_value());
        assert_true(!c->empty());
        assert_string_equal(c->front().immutable_id.c_str(), b.c_str());
        assert_int_equal(c->front().k, 0);
        assert_int_equal(c->front().id, *a);
        assert_string_equal(c->front().holder.c_str(), "uuid:a");
        collisions.push_back(*c);
        // the range is now full: a third id fails after the bounded number of candidates
        auto full = s->assign_id("uuid:c", tiny, {});
        assert_false(full.has_value());
        assert_int_equal(static_cast<int>(full.error().code), static_cast<int>(cvat::ErrorCode::too_large));
    }
    assert_int_equal(first_ids[0], first_ids[1]);
    assert_int_equal(collisions[0].size(), collisions[1].size());
}

void test_reserved_skipped(void**) {
    TempDir dir;
    auto s = open_store(dir);
    const std::string id = "ipa:3c5e1d2a-0000-4000-8000-000000000001";
    const std::uint32_t first = id_candidate(id, 0, kRange);
    const std::uint32_t second = id_candidate(id, 1, kRange);
    auto got = s->assign_id(id, kRange, {first});
    assert_true(got.has_value());
    assert_int_equal(*got, second);
    auto c = s->id_collisions(10);
    assert_int_equal(c->size(), 1);
    assert_string_equal(c->front().holder.c_str(), "reserved");
    assert_int_equal(c->front().id, first);
    // a reserved value is never handed out, even when it is the only one left
    auto none = s->assign_id("uuid:z", IdRange{7, 7}, {7});
    assert_false(none.has_value());
}

void test_sid_text(void**) {
    // S-1-5-21-1004336348-1177238915-682003330-512 (Domain Admins), bytes from struct.pack
    auto t = sid_to_text(hex_bytes("010500000000000515000000dcf4dc3b833d2b46828ba62800020000"));
    assert_true(t.has_value());
    assert_string_equal(t->c_str(), "S-1-5-21-1004336348-1177238915-682003330-512");
    // BUILTIN\Administrators, MS-DTYP §2.4.2.4
    t = sid_to_text(bytes({1, 2, 0, 0, 0, 0, 0, 5, 0x20, 0, 0, 0, 0x20, 2, 0, 0}));
    assert_string_equal(t->c_str(), "S-1-5-32-544");
    // Everyone: one sub-authority, authority 1
    assert_string_equal(sid_to_text(bytes({1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}))->c_str(), "S-1-1-0");
    // zero sub-authorities is well-formed
    assert_string_equal(sid_to_text(bytes({1, 0, 0, 0, 0, 0, 0, 5}))->c_str(), "S-1-5");
    // an authority of 2^32 or more prints in hex
    assert_string_equal(sid_to_text(bytes({1, 0, 0, 1, 0, 0, 0, 0}))->c_str(), "S-1-0x000100000000");
    // sub-authorities are unsigned 32-bit
    assert_string_equal(sid_to_text(bytes({1, 1, 0, 0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff}))->c_str(), "S-1-5-4294967295");
}

void test_sid_malformed(void**) {
    const std::string good = hex_bytes("010500000000000515000000dcf4dc3b833d2b46828ba62800020000");
    assert_false(sid_to_text("").has_value());
    assert_false(sid_to_text(good.substr(0, 7)).has_value());            // shorter than the header
    assert_false(sid_to_text(good.substr(0, good.size() - 1)).has_value());  // truncated
    assert_false(sid_to_text(good + '\0').has_value());                   // trailing byte
    std::string rev2 = good;
    rev2[0] = 2;
    assert_false(sid_to_text(rev2).has_value());
    std::string many = bytes({1, 16, 0, 0, 0, 0, 0, 5});                   // 16 > 15 sub-authorities
    many += std::string(64, '\1');
    assert_false(sid_to_text(many).has_value());
    std::string lying = good;
    lying[1] = 4;  // count says 4, bytes hold 5
    assert_false(sid_to_text(lying).has_value());
}

void test_guid_text(void**) {
    // RFC 4122's example GUID in Microsoft's byte order (Data1..3 little-endian)
    auto t = guid_to_text(hex_bytes("e004253f894fd3119a0c0305e82c3301"));
    assert_true(t.has_value());
    assert_string_equal(t->c_str(), "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
    assert_string_equal(guid_to_text(std::string(16, '\0'))->c_str(), "00000000-0000-0000-0000-000000000000");
    assert_string_equal(guid_to_text(std::string(16, '\xff'))->c_str(), "ffffffff-ffff-ffff-ffff-ffffffffffff");
    assert_false(guid_to_text(std::string(15, 'a')).has_value());
    assert_false(guid_to_text(std::string(17, 'a')).has_value());
    assert_false(guid_to_text("").has_value());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_candidates),
        cmocka_unit_test(test_range_bounds),
        cmocka_unit_test(test_assign_records_and_is_stable),
        cmocka_unit_test(test_collisions_deterministic),
        cmocka_unit_test(test_reserved_skipped),
        cmocka_unit_test(test_sid_text),
        cmocka_unit_test(test_sid_malformed),
        cmocka_unit_test(test_guid_text),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
