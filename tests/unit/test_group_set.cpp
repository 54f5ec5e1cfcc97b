// SPDX-License-Identifier: GPL-3.0-or-later
// The group mirror's copy and the feed's messages (helper/group_mirror.hpp): the indexes a
// login asks (member DNs compared normalised, memberUid exactly, gidNumber as a number), a
// replaced or removed group leaving nothing behind, the byte bound, when a copy is believed,
// and RFC 4533 values well-formed, cut short, mistagged and oversized.
// Project headers before cmocka.h: cmocka defines a `fail` macro that clashes with cvat::fail.
#include "group_mirror.hpp"

#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <ldap.h>

using namespace cvat::helper;

namespace {

const std::string kUuidA(16, 'a'), kUuidB(16, 'b'), kUuidC(16, 'c');

MirrorEntry group(const std::string& dn, std::vector<std::string> member, std::vector<std::string> uids = {},
                  std::string gid = {}) {
    return MirrorEntry{dn, std::move(member), std::move(uids), std::move(gid)};
}

std::vector<std::string> dns(const std::vector<const GroupSet::Group*>& gs) {
    std::vector<std::string> out;
    for (const auto* g : gs) out.push_back(g->dn);
    std::sort(out.begin(), out.end());
    return out;
}

void test_member_index_normalised(void**) {
    GroupSet set(1 << 20);
    assert_true(set.put(kUuidA, group("cn=Admins,dc=x", {"uid=Alice, ou=People,dc=X", "uid=bob,ou=people,dc=x"})).has_value());
    assert_true(set.put(kUuidB, group("cn=Ops,dc=x", {"UID=alice,OU=people,DC=x", "cn=not a dn"})).has_value());
    // As distinguishedNameMatch: spelling of types, case of values, spaces after commas.
    auto alice = dns(set.with_member("uid=alice,ou=people,dc=x"));
    assert_int_equal(alice.size(), 2);
    assert_string_equal(alice[0].c_str(), "cn=Admins,dc=x");
    assert_string_equal(alice[1].c_str(), "cn=Ops,dc=x");
    assert_int_equal(set.with_member("uid=bob,ou=people,dc=x").size(), 1);
    assert_int_equal(set.with_member("uid=carol,ou=people,dc=x").size(), 0);
    // The group's own key is normalised too: what the nested walk asks next.
    assert_int_equal(set.with_member(set.with_member("uid=bob,ou=people,dc=x")[0]->key).size(), 0);
    assert_int_equal(set.size(), 2);
}

// A modify replaces the whole group: values it no longer has are gone from every index.
void test_replace_and_erase(void**) {
    GroupSet set(1 << 20);
    assert_true(set.put(kUuidA, group("cn=g,dc=x", {"uid=a,dc=x", "uid=b,dc=x"}, {"a"}, "1000")).has_value());
    const std::size_t bytes_two = set.bytes();
    assert_true(set.put(kUuidA, group("cn=g2,dc=x", {"uid=b,dc=x"}, {"b"}, "1001")).has_value());
    assert_int_equal(set.size(), 1);
    assert_true(set.bytes() < bytes_two);
    assert_int_equal(set.with_member("uid=a,dc=x").size(), 0);
    assert_int_equal(set.with_uid_or_gid("a", 1000).size(), 0);
    assert_string_equal(set.with_member("uid=b,dc=x")[0]->dn.c_str(), "cn=g2,dc=x");
    assert_string_equal(set.find(kUuidA)->dn.c_str(), "cn=g2,dc=x");
    assert_true(set.erase(kUuidA));
    assert_false(set.erase(kUuidA));
    assert_null(set.find(kUuidA));
    assert_int_equal(set.with_member("uid=b,dc=x").size(), 0);
    assert_int_equal(set.with_uid_or_gid("b", 1001).size(), 0);
    assert_int_equal(set.bytes(), 0);
}

// posixGroup: memberUid exactly (caseExactIA5Match), gidNumber as an integer, each group once.
void test_uid_and_gid(void**) {
    GroupSet set(1 << 20);
    assert_true(set.put(kUuidA, group("cn=devs,dc=x", {}, {"alice", "bob"}, "2000")).has_value());
    assert_true(set.put(kUuidB, group("cn=alice,dc=x", {}, {"alice"}, "3000")).has_value());
    assert_true(set.put(kUuidC, group("cn=odd,dc=x", {}, {}, "+4000")).has_value());
    assert_int_equal(set.with_uid_or_gid("alice", std::nullopt).size(), 2);
    assert_int_equal(set.with_uid_or_gid("Alice", std::nullopt).size(), 0);
    assert_int_equal(set.with_uid_or_gid("carol", 2000).size(), 1);
    assert_int_equal(set.with_uid_or_gid("alice", 3000).size(), 2);  // by both: listed once
    assert_int_equal(set.with_uid_or_gid("carol", 4000).size(), 0);  // "+4000" is no integer
    // caseExactIA5Match's insignificant spaces: at either end and repeated.
    assert_true(set.put(kUuidC, group("cn=spaced,dc=x", {}, {" dora  lee "})).has_value());
    assert_int_equal(set.with_uid_or_gid("dora lee", std::nullopt).size(), 1);
    assert_int_equal(set.with_uid_or_gid("  dora lee", std::nullopt).size(), 1);
    assert_int_equal(set.with_uid_or_gid("doralee", std::nullopt).size(), 0);
}

// Past the byte bound a put is refused and the copy stays as it was.
void test_byte_bound(void**) {
    GroupSet set(4096);
    assert_true(set.put(kUuidA, group("cn=small,dc=x", {"uid=a,dc=x"})).has_value());
    const std::size_t before = set.bytes();
    std::vector<std::string> many;
    for (int i = 0; i < 200; ++i) many.push_back("uid=user" + std::to_string(i) + ",dc=x");
    auto r = set.put(kUuidB, group("cn=big,dc=x", many));
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(cvat::ErrorCode::too_large));
    assert_int_equal(set.size(), 1);
    assert_int_equal(set.bytes(), before);
    // Replacing the small group with the big one is refused too, and keeps the small one.
    assert_false(set.put(kUuidA, group("cn=big,dc=x", many)).has_value());
    assert_int_equal(set.with_member("uid=a,dc=x").size(), 1);
    // A DN that does not parse is refused.
    assert_false(set.put(kUuidC, group("not a dn", {})).has_value());
}

// A copy is believed from install() to down(), and only while the feed was heard lately.
void test_believed(void**) {
    GroupMirror m(std::chrono::milliseconds(500));
    assert_false(m.view().has_value());
    auto set = std::make_unique<GroupSet>(1 << 20);
    assert_true(set->put(kUuidA, group("cn=g,dc=x", {"uid=a,dc=x"})).has_value());
    m.install(std::move(set), "ldap://one");
    {
        auto v = m.view();
        assert_true(v.has_value());
        assert_string_equal(v->source().c_str(), "ldap://one");
        assert_int_equal(v->groups().with_member("uid=a,dc=x").size(), 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    assert_false(m.view().has_value());  // silent too long
    m.heard();
    assert_true(m.view().has_value());
    // A change the copy cannot take drops it.
    assert_false(m.update([](GroupSet&) { return false; }));
    assert_false(m.view().has_value());
    assert_false(m.held());
    m.install(std::make_unique<GroupSet>(1 << 20), "ldap://two");
    assert_true(m.update([](GroupSet&) { return true; }));
    m.down();
    assert_false(m.view().has_value());
    assert_false(m.update([](GroupSet&) { return true; }));
}

// BER built with liblber, as a server would send it.
template <typename... Args>
std::string ber(const char* fmt, Args... args) {
    BerElement* b = ber_alloc_t(LBER_USE_DER);
    assert_int_not_equal(ber_printf(b, fmt, args...), -1);
    berval bv{};
    assert_int_equal(ber_flatten2(b, &bv, 0), 0);
    std::string out(bv.bv_val, bv.bv_len);
    ber_free(b, 1);
    return out;
}

berval bv(std::string& s) { return berval{s.size(), s.data()}; }

void test_sync_request(void**) {
    auto v = sync_request_value();
    assert_true(v.has_value());
    // SEQUENCE { ENUMERATED 3 }: refreshAndPersist, no cookie, reloadHint left at its default.
    const std::string want("\x30\x03\x0a\x01\x03", 5);
    assert_memory_equal(v->data(), want.data(), want.size());
    assert_int_equal(v->size(), want.size());
}

void test_sync_state(void**) {
    berval uuid{16, const_cast<char*>(kUuidB.data())};
    std::string ok = ber("{eO}", static_cast<ber_int_t>(LDAP_SYNC_MODIFY), &uuid);
    berval v = bv(ok);
    auto st = parse_sync_state(v);
    assert_true(st.has_value());
    assert_int_equal(st->state, LDAP_SYNC_MODIFY);
    assert_true(st->uuid == kUuidB);

    berval cookie{3, const_cast<char*>("c=1")};
    std::string with_cookie = ber("{eOO}", static_cast<ber_int_t>(LDAP_SYNC_ADD), &uuid, &cookie);
    v = bv(with_cookie);
    assert_true(parse_sync_state(v).has_value());

    berval short_uuid{15, const_cast<char*>(kUuidB.data())};
    std::string bad_len = ber("{eO}", static_cast<ber_int_t>(LDAP_SYNC_ADD), &short_uuid);
    v = bv(bad_len);
    assert_false(parse_sync_state(v).has_value());

    std::string bad_state = ber("{eO}", static_cast<ber_int_t>(7), &uuid);
    v = bv(bad_state);
    assert_false(parse_sync_state(v).has_value());

    // Every prefix of a good value is refused, never read past its end.
    for (std::size_t n = 0; n < ok.size(); ++n) {
        std::string cut = ok.substr(0, n);
        berval c = bv(cut);
        assert_false(parse_sync_state(c).has_value());
    }
    std::string junk = "\xff\xff\xff\xff";
    v = bv(junk);
    assert_false(parse_sync_state(v).has_value());
}

void test_sync_info(void**) {
    berval cookie{3, const_cast<char*>("c=1")};
    std::string nc = ber("tO", static_cast<ber_tag_t>(LDAP_TAG_SYNC_NEW_COOKIE), &cookie);
    berval v = bv(nc);
    auto info = parse_sync_info(v, 10);
    assert_true(info.has_value());
    assert_int_equal(static_cast<int>(info->kind), static_cast<int>(SyncInfo::Kind::new_cookie));

    // refreshDelete with the default refreshDone (TRUE), refreshPresent with FALSE.
    std::string del = ber("t{O}", static_cast<ber_tag_t>(LDAP_TAG_SYNC_REFRESH_DELETE), &cookie);
    v = bv(del);
    info = parse_sync_info(v, 10);
    assert_true(info.has_value());
    assert_int_equal(static_cast<int>(info->kind), static_cast<int>(SyncInfo::Kind::refresh_delete));
    assert_true(info->refresh_done);
    std::string pres = ber("t{b}", static_cast<ber_tag_t>(LDAP_TAG_SYNC_REFRESH_PRESENT), static_cast<ber_int_t>(0));
    v = bv(pres);
    info = parse_sync_info(v, 10);
    assert_true(info.has_value());
    assert_int_equal(static_cast<int>(info->kind), static_cast<int>(SyncInfo::Kind::refresh_present));
    assert_false(info->refresh_done);

    // syncIdSet: refreshDeletes TRUE and two UUIDs.
    berval a{16, const_cast<char*>(kUuidA.data())}, b{16, const_cast<char*>(kUuidB.data())};
    berval set[] = {a, b, {0, nullptr}};
    std::string ids = ber("t{b[W]}", static_cast<ber_tag_t>(LDAP_TAG_SYNC_ID_SET), static_cast<ber_int_t>(1),
                          static_cast<BerVarray>(set));
    v = bv(ids);
    info = parse_sync_info(v, 10);
    assert_true(info.has_value());
    assert_int_equal(static_cast<int>(info->kind), static_cast<int>(SyncInfo::Kind::id_set));
    assert_true(info->refresh_deletes);
    assert_int_equal(info->uuids.size(), 2);
    assert_true(info->uuids[0] == kUuidA);
    assert_true(info->uuids[1] == kUuidB);
    // More UUIDs than allowed: refused.
    assert_false(parse_sync_info(v, 1).has_value());
    // A UUID of the wrong length: refused.
    berval odd[] = {a, {5, const_cast<char*>("short")}, {0, nullptr}};
    std::string bad = ber("t{[W]}", static_cast<ber_tag_t>(LDAP_TAG_SYNC_ID_SET), static_cast<BerVarray>(odd));
    v = bv(bad);
    assert_false(parse_sync_info(v, 10).has_value());
    // Cut short anywhere: refused.
    for (std::size_t n = 0; n < ids.size(); ++n) {
        std::string cut = ids.substr(0, n);
        berval c = bv(cut);
        assert_false(parse_sync_info(c, 10).has_value());
    }
    // An unknown choice: refused.
    std::string other = ber("tO", static_cast<ber_tag_t>(0x84), &cookie);
    v = bv(other);
    assert_false(parse_sync_info(v, 10).has_value());
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_index_normalised),
        cmocka_unit_test(test_replace_and_erase),
        cmocka_unit_test(test_uid_and_gid),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_believed),
        cmocka_unit_test(test_sync_request),
        cmocka_unit_test(test_sync_state),
        cmocka_unit_test(test_sync_info),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
