// SPDX-License-Identifier: GPL-3.0-or-later
// helper/offline: Argon2id hashes verify the right password only, malformed or oversized
// encodings are refused, the stored entry round-trips through CacheStore, the failure delay
// follows its schedule, and OfflineRecent spares a rehash only for the last hashed password.
#include <cstring>
#include <string>

#include "cache_store.hpp"
#include "fixture.hpp"
#include "offline.hpp"

#include "cmocka.hpp"

using namespace cvat::helper;
using cvat::Secret;
using cvat::proto::Role;
using cvat::test::TempDir;

namespace {

// Small costs keep the test fast; the defaults are checked once below.
constexpr OfflineParams kFast{1, 64, 1};

std::string hash_of(const char* pw, const OfflineParams& p = kFast) {
    auto h = offline_hash(Secret(pw), p);
    if (!h) fail_msg("offline_hash: %s", h.error().detail.c_str());
    return *h;
}

void test_hash_verify(void**) {
    const std::string h = hash_of("correct horse");
    assert_true(h.rfind("$argon2id$v=19$m=64,t=1,p=1$", 0) == 0);
    assert_true(offline_verify(h, Secret("correct horse")));
    assert_false(offline_verify(h, Secret("correct horsE")));
    assert_false(offline_verify(h, Secret("correct hors")));
    assert_false(offline_verify(h, Secret("")));
    // a fresh salt every time
    const std::string h2 = hash_of("correct horse");
    assert_string_not_equal(h.c_str(), h2.c_str());
    assert_true(offline_verify(h2, Secret("correct horse")));
    // a password with a NUL inside is hashed whole
    const std::string nul("a\0b", 3);
    auto hn = offline_hash(Secret(nul), kFast);
    assert_true(offline_verify(*hn, Secret(nul)));
    assert_false(offline_verify(*hn, Secret("a")));
    assert_false(offline_hash(Secret(""), kFast).has_value());
}

void test_default_params(void**) {
    const OfflineParams p;
    assert_int_equal(p.t_cost, 2);
    assert_int_equal(p.m_cost_kib, 19456);
    assert_int_equal(p.parallelism, 1);
    const std::string h = hash_of("pw", p);
    assert_true(h.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0) == 0);
    assert_true(offline_verify(h, Secret("pw")));
}

void test_malformed_encoded(void**) {
    const std::string good = hash_of("pw");
    const Secret pw("pw");
    assert_true(offline_verify(good, pw));
    assert_false(offline_verify("", pw));
    assert_false(offline_verify("$argon2id$", pw));
    assert_false(offline_verify("garbage", pw));
    assert_false(offline_verify(good.substr(0, good.size() - 5), pw));  // truncated hash
    assert_false(offline_verify(good + "AAAA", pw));
    std::string i_variant = good;
    i_variant.replace(0, 9, "$argon2i");  // another variant is not accepted
    assert_false(offline_verify(i_variant, pw));
    // the same parameters with another value are another hash
    std::string other_t = good;
    other_t.replace(other_t.find("t=1"), 3, "t=2");
    assert_false(offline_verify(other_t, pw));
    // costs a tampered row could use to exhaust the daemon are refused before hashing
    std::string huge = good;
    huge.replace(huge.find("m=64"), 4, "m=4294967295");
    assert_false(offline_verify(huge, pw));
    std::string slow = good;
    slow.replace(slow.find("t=1"), 3, "t=100000");
    assert_false(offline_verify(slow, pw));
    std::string wide = good;
    wide.replace(wide.find("p=1"), 3, "p=255");
    assert_false(offline_verify(wide, pw));
    std::string negative = good;
    negative.replace(negative.find("m=64"), 4, "m=-64");
    assert_false(offline_verify(negative, pw));
    std::string with_nul = good;
    with_nul[20] = '\0';
    assert_false(offline_verify(with_nul, pw));
    assert_false(offline_verify(std::string(10000, '$'), pw));
    // out-of-bounds costs are refused when hashing too
    assert_false(offline_hash(pw, OfflineParams{1, 8u * 1024 * 1024, 1}).has_value());
}

void test_delay_schedule(void**) {
    assert_int_equal(offline_delay(0), 0);
    assert_int_equal(offline_delay(1), 0);
    assert_int_equal(offline_delay(2), 0);
    assert_int_equal(offline_delay(3), 2);
    assert_int_equal(offline_delay(4), 4);
    assert_int_equal(offline_delay(5), 8);
    assert_int_equal(offline_delay(9), 128);
    assert_int_equal(offline_delay(10), 256);
    assert_int_equal(offline_delay(11), 300);
    assert_int_equal(offline_delay(100), 300);
    assert_int_equal(offline_delay(~0u), 300);
}

void test_stored_entry(void**) {
    TempDir dir;
    auto opened = CacheStore::open(dir.path());
    assert_true(opened.has_value());
    auto& s = *opened;
    OfflineEntry e;
    e.name = "alice";
    e.backend = "ldap";
    e.hash = hash_of("pw");
    e.role = Role::user;
    e.email = "alice@example.com";
    e.first_name = "Alice";
    e.last_name = "Liddell";
    e.stored_at = 1700000000;
    e.failures = 7;        // put_offline resets these
    e.next_try_at = 99;
    assert_true(s->put_offline(e).has_value());
    auto got = s->offline("alice");
    assert_true(got.has_value() && got->has_value());
    const OfflineEntry& g = **got;
    assert_string_equal(g.name.c_str(), "alice");
    assert_string_equal(g.backend.c_str(), "ldap");
    assert_string_equal(g.hash.c_str(), e.hash.c_str());
    assert_int_equal(static_cast<int>(g.role), static_cast<int>(Role::user));
    assert_string_equal(g.email.c_str(), "alice@example.com");
    assert_string_equal(g.first_name.c_str(), "Alice");
    assert_string_equal(g.last_name.c_str(), "Liddell");
    assert_int_equal(g.stored_at, 1700000000);
    assert_int_equal(g.failures, 0);
    assert_int_equal(g.next_try_at, 0);
    assert_true(offline_verify(g.hash, Secret("pw")));
    assert_false(s->offline("bob")->has_value());

    // failures: the delay schedule applied from `now`
    const std::int64_t now = 1700001000;
    for (unsigned n = 1; n <= 12; ++n) {
        assert_true(s->offline_failure("alice", now).has_value());
        auto f = **s->offline("alice");
        assert_int_equal(f.failures, n);
        assert_int_equal(f.next_try_at, now + offline_delay(n));
    }
    assert_int_equal((**s->offline("alice")).next_try_at, now + 300);
    assert_true(s->offline_success("alice").has_value());
    assert_int_equal((**s->offline("alice")).failures, 0);
    assert_int_equal((**s->offline("alice")).next_try_at, 0);
    // a new online login resets the counter too
    assert_true(s->offline_failure("alice", now).has_value());
    assert_true(s->offline_failure("alice", now).has_value());
    assert_true(s->put_offline(e).has_value());
    assert_int_equal((**s->offline("alice")).failures, 0);
    // failure for an unknown user creates nothing
    assert_true(s->offline_failure("bob", now).has_value());
    assert_false(s->offline("bob")->has_value());
    assert_true(s->drop_offline("alice").has_value());
    assert_false(s->offline("alice")->has_value());
    OfflineEntry nameless;
    assert_false(s->put_offline(nameless).has_value());
}

void test_needs_rehash(void**) {
    OfflineRecent r;
    assert_true(r.needs_rehash("alice", Secret("pw")));
    r.hashed("alice", Secret("pw"));
    assert_false(r.needs_rehash("alice", Secret("pw")));
    assert_true(r.needs_rehash("alice", Secret("pw2")));
    assert_true(r.needs_rehash("bob", Secret("pw")));
    r.hashed("alice", Secret("pw2"));                    // only the last password counts
    assert_true(r.needs_rehash("alice", Secret("pw")));
    assert_false(r.needs_rehash("alice", Secret("pw2")));
    r.forget("alice");
    assert_true(r.needs_rehash("alice", Secret("pw2")));
    r.hashed("alice", Secret("pw"));
    r.clear();
    assert_true(r.needs_rehash("alice", Secret("pw")));
    // bounded: when full it starts over rather than growing
    OfflineRecent small(2);
    small.hashed("a", Secret("1"));
    small.hashed("b", Secret("1"));
    small.hashed("a", Secret("2"));  // an existing user does not reset it
    assert_false(small.needs_rehash("b", Secret("1")));
    small.hashed("c", Secret("1"));
    assert_true(small.needs_rehash("a", Secret("2")));
    assert_false(small.needs_rehash("c", Secret("1")));
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify),
        cmocka_unit_test(test_default_params),
        cmocka_unit_test(test_malformed_encoded),
        cmocka_unit_test(test_delay_schedule),
        cmocka_unit_test(test_stored_entry),
        cmocka_unit_test(test_needs_rehash),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
