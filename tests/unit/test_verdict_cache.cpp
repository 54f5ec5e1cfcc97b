// SPDX-License-Identifier: GPL-3.0-or-later
// helper/verdict_cache: a hit needs the same backend, service, user and password within the
// TTL; only ok verdicts are kept; failures clear the user; the size is bounded (oldest out);
// concurrent use is safe.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "verdict_cache.hpp"

#include "cmocka.hpp"

using cvat::Secret;
using cvat::helper::VerdictCache;
using cvat::proto::Role;
using cvat::proto::Status;
using cvat::proto::Verdict;

namespace {

constexpr std::int64_t kTtl = 30000;

Verdict ok_verdict(const std::string& user) {
    Verdict v;
    v.status = Status::ok;
    v.user = user;
    v.role = Role::admin;
    v.attributes = {{"email", user + "@example.com"}};
    return v;
}

bool hit(VerdictCache& c, const char* backend, const char* service, const char* user, const char* pw,
         std::int64_t now) {
    return c.find(backend, service, user, Secret(pw), now, kTtl).has_value();
}

void test_hit_returns_verdict(void**) {
    VerdictCache c;
    c.remember("ldap", "nginx", "alice", Secret("s3cret"), ok_verdict("alice"), 1000);
    auto v = c.find("ldap", "nginx", "alice", Secret("s3cret"), 1500, kTtl);
    assert_true(v.has_value());
    assert_int_equal(static_cast<int>(v->status), static_cast<int>(Status::ok));
    assert_string_equal(v->user.c_str(), "alice");
    assert_int_equal(static_cast<int>(v->role), static_cast<int>(Role::admin));
    assert_string_equal(std::string(v->attribute("email")).c_str(), "alice@example.com");
}

void test_each_field_must_match(void**) {
    VerdictCache c;
    c.remember("ldap", "nginx", "alice", Secret("s3cret"), ok_verdict("alice"), 1000);
    assert_false(hit(c, "ldap", "nginx", "alice", "s3cret!", 1001));   // password
    assert_false(hit(c, "ldap", "nginx", "alice", "S3cret", 1001));
    assert_false(hit(c, "ldap", "nginx", "alice", "", 1001));
    assert_false(hit(c, "ldap", "nginx", "bob", "s3cret", 1001));      // user
    assert_false(hit(c, "ldap", "nginx", "Alice", "s3cret", 1001));
    assert_false(hit(c, "ldap", "sshd", "alice", "s3cret", 1001));     // service
    assert_false(hit(c, "okta", "nginx", "alice", "s3cret", 1001));    // backend
    // the same bytes split differently over service and user are another slot
    c.remember("ldap", "nginxa", "lice", Secret("s3cret"), ok_verdict("lice"), 1000);
    assert_true(hit(c, "ldap", "nginx", "alice", "s3cret", 1001));     // the first is still there
    assert_true(hit(c, "ldap", "nginxa", "lice", "s3cret", 1001));
}

void test_expiry(void**) {
    VerdictCache c;
    c.remember("ldap", "nginx", "alice", Secret("pw"), ok_verdict("alice"), 1000);
    assert_true(hit(c, "ldap", "nginx", "alice", "pw", 1000 + kTtl - 1));
    assert_false(hit(c, "ldap", "nginx", "alice", "pw", 1000 + kTtl));
    assert_int_equal(c.size(), 0);  // the expired slot was dropped
    c.remember("ldap", "nginx", "alice", Secret("pw"), ok_verdict("alice"), 5000);
    assert_false(hit(c, "ldap", "nginx", "alice", "pw", 4999));  // clock went back
    c.remember("ldap", "nginx", "alice", Secret("pw"), ok_verdict("alice"), 5000);
    assert_false(c.find("ldap", "nginx", "alice", Secret("pw"), 5000, 0).has_value());  // ttl 0: off
}

void test_only_ok_stored(void**) {
    VerdictCache c;
    for (auto s : {Status::auth_err, Status::unavailable, Status::perm_denied, Status::internal,
                   Status::new_authtok_reqd}) {
        Verdict v = ok_verdict("alice");
        v.status = s;
        c.remember("ldap", "nginx", "alice", Secret("pw"), v, 1000);
        assert_false(hit(c, "ldap", "nginx", "alice", "pw", 1001));
    }
    assert_int_equal(c.size(), 0);
}

void test_new_password_replaces(void**) {
    VerdictCache c;
    c.remember("ldap", "nginx", "alice", Secret("old"), ok_verdict("alice"), 1000);
    c.remember("ldap", "nginx", "alice", Secret("new"), ok_verdict("alice"), 2000);
    assert_false(hit(c, "ldap", "nginx", "alice", "old", 2001));
    assert_true(hit(c, "ldap", "nginx", "alice", "new", 2001));
    assert_int_equal(c.size(), 1);
}

void test_forget_user(void**) {
    VerdictCache c;
    c.remember("ldap", "nginx", "alice", Secret("pw"), ok_verdict("alice"), 1000);
    c.remember("ldap", "sshd", "alice", Secret("pw"), ok_verdict("alice"), 1000);
    c.remember("okta", "nginx", "alice", Secret("pw"), ok_verdict("alice"), 1000);
    c.remember("ldap", "nginx", "alice2", Secret("pw"), ok_verdict("alice2"), 1000);
    c.remember("ldap", "nginx", "alic", Secret("pw"), ok_verdict("alic"), 1000);
    c.forget_user("alice");
    assert_false(hit(c, "ldap", "nginx", "alice", "pw", 1001));
    assert_false(hit(c, "ldap", "sshd", "alice", "pw", 1001));
    assert_false(hit(c, "okta", "nginx", "alice", "pw", 1001));
    assert_true(hit(c, "ldap", "nginx", "alice2", "pw", 1001));  // neighbours in the order stay
    assert_true(hit(c, "ldap", "nginx", "alic", "pw", 1001));
    c.clear();
    assert_int_equal(c.size(), 0);
    assert_false(hit(c, "ldap", "nginx", "alice2", "pw", 1001));
}

void test_bounded_oldest_out(void**) {
    VerdictCache c(3);
    for (int i = 0; i < 3; ++i) {
        const std::string u = "u" + std::to_string(i);
        c.remember("ldap", "nginx", u, Secret("pw"), ok_verdict(u), 1000 + i);
    }
    c.remember("ldap", "nginx", "u0", Secret("pw"), ok_verdict("u0"), 1010);  // refreshed: now youngest
    c.remember("ldap", "nginx", "u3", Secret("pw"), ok_verdict("u3"), 1011);  // evicts u1
    assert_int_equal(c.size(), 3);
    assert_false(hit(c, "ldap", "nginx", "u1", "pw", 1012));
    assert_true(hit(c, "ldap", "nginx", "u0", "pw", 1012));
    assert_true(hit(c, "ldap", "nginx", "u2", "pw", 1012));
    assert_true(hit(c, "ldap", "nginx", "u3", "pw", 1012));
    for (int i = 0; i < 100; ++i) {
        const std::string u = "x" + std::to_string(i);
        c.remember("ldap", "nginx", u, Secret("pw"), ok_verdict(u), 2000 + i);
    }
    assert_int_equal(c.size(), 3);
    VerdictCache off(0);
    off.remember("ldap", "nginx", "a", Secret("pw"), ok_verdict("a"), 1);
    assert_int_equal(off.size(), 0);
}

void test_two_caches_do_not_share_keys(void**) {
    // Each cache has its own random key; nothing to compare directly, but both must work.
    VerdictCache a, b;
    a.remember("ldap", "nginx", "alice", Secret("pw"), ok_verdict("alice"), 1);
    assert_true(hit(a, "ldap", "nginx", "alice", "pw", 2));
    assert_false(hit(b, "ldap", "nginx", "alice", "pw", 2));
}

void test_concurrent(void**) {
    VerdictCache c(64);
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 2000; ++i) {
                const std::string u = "u" + std::to_string((t * 7 + i) % 100);
                const std::string pw = "pw-" + u;
                c.remember("ldap", "nginx", u, Secret(pw), ok_verdict(u), i);
                auto v = c.find("ldap", "nginx", u, Secret(pw), i, kTtl);
                if (v && v->user != u) ++bad;
                if (c.find("ldap", "nginx", u, Secret("wrong"), i, kTtl)) ++bad;
                if (i % 97 == 0) c.forget_user(u);
                if (c.size() > 64) ++bad;
            }
        });
    }
    for (auto& th : threads) th.join();
    assert_int_equal(bad.load(), 0);
    assert_true(c.size() <= 64);
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_returns_verdict),
        cmocka_unit_test(test_each_field_must_match),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_only_ok_stored),
        cmocka_unit_test(test_new_password_replaces),
        cmocka_unit_test(test_forget_user),
        cmocka_unit_test(test_bounded_oldest_out),
        cmocka_unit_test(test_two_caches_do_not_share_keys),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
