// SPDX-License-Identifier: GPL-3.0-or-later
// password_policy: the ppolicy response control and AD's account attributes turned into
// statuses and words, AD's unicodePwd encoding, AD's refusals of a password change.
#include "cmocka.hpp"

#include <ldap.h>

#include <string>

#include "password_policy.hpp"

using namespace cvat;
using namespace cvat::helper;
using proto::Status;

namespace {

// 2026-01-01T00:00:00Z
constexpr std::int64_t kNow = 1767225600;
// The same instant as a FILETIME (100 ns since 1601).
std::string filetime(std::int64_t unix_s) { return std::to_string((unix_s + 11644473600LL) * 10000000LL); }

void policy_on_binds(void**) {
    PolicyResponse none;
    assert_int_equal(static_cast<int>(bind_policy_verdict(true, none)->status), static_cast<int>(Status::ok));
    assert_false(bind_policy_verdict(false, none).has_value());

    PolicyResponse p;
    p.present = true;
    p.expire_s = 3 * 86400 + 3600;
    auto v = bind_policy_verdict(true, p);
    assert_int_equal(static_cast<int>(v->status), static_cast<int>(Status::ok));
    assert_string_equal(v->message.c_str(), "your password expires in 3 days");
    p.expire_s = 7200;
    assert_string_equal(bind_policy_verdict(true, p)->message.c_str(), "your password expires in 2 hours");
    p.expire_s = 30;
    assert_string_equal(bind_policy_verdict(true, p)->message.c_str(), "your password expires in 1 minute");

    PolicyResponse grace;
    grace.present = true;
    grace.grace = 2;
    assert_true(bind_policy_verdict(true, grace)->message.find("grace logins left: 2") != std::string::npos);

    PolicyResponse reset;
    reset.present = true;
    reset.error = PP_changeAfterReset;
    assert_int_equal(static_cast<int>(bind_policy_verdict(true, reset)->status),
                     static_cast<int>(Status::new_authtok_reqd));

    PolicyResponse locked;
    locked.present = true;
    locked.error = PP_accountLocked;
    v = bind_policy_verdict(false, locked);
    assert_int_equal(static_cast<int>(v->status), static_cast<int>(Status::perm_denied));
    assert_string_equal(v->message.c_str(), "account locked");

    PolicyResponse expired;
    expired.present = true;
    expired.error = PP_passwordExpired;
    assert_int_equal(static_cast<int>(bind_policy_verdict(false, expired)->status),
                     static_cast<int>(Status::new_authtok_reqd));

    // A failed bind with an unrelated control: the bind's own error decides.
    PolicyResponse other;
    other.present = true;
    other.grace = 1;
    assert_false(bind_policy_verdict(false, other).has_value());

    assert_true(policy_error_words(PP_passwordTooShort).find("too short") != std::string::npos);
    assert_true(policy_error_words(PP_passwordInHistory).find("used recently") != std::string::npos);
    assert_true(policy_error_words(PP_passwordTooYoung).find("too recently") != std::string::npos);
    assert_true(policy_error_words(-1).empty());
}

Status state(const AttrMap& a) { return directory_account_state(a, kNow).status; }

void account_attributes(void**) {
    assert_int_equal(static_cast<int>(state({})), static_cast<int>(Status::ok));
    // accountExpires: 0 and 0x7FFFFFFFFFFFFFFF mean never; a past time expired; a future one not.
    assert_int_equal(static_cast<int>(state({{"accountexpires", {"0"}}})), static_cast<int>(Status::ok));
    assert_int_equal(static_cast<int>(state({{"accountexpires", {"9223372036854775807"}}})),
                     static_cast<int>(Status::ok));
    assert_int_equal(static_cast<int>(state({{"accountexpires", {filetime(kNow - 1)}}})),
                     static_cast<int>(Status::acct_expired));
    assert_int_equal(static_cast<int>(state({{"accountexpires", {filetime(kNow + 86400)}}})),
                     static_cast<int>(Status::ok));
    // lockoutTime: non-zero is locked; 0 is not; unreadable is not proven unlocked.
    assert_int_equal(static_cast<int>(state({{"lockouttime", {"0"}}})), static_cast<int>(Status::ok));
    assert_int_equal(static_cast<int>(state({{"lockouttime", {"133000000000000000"}}})),
                     static_cast<int>(Status::perm_denied));
    assert_int_equal(static_cast<int>(state({{"lockouttime", {"x"}}})), static_cast<int>(Status::perm_denied));
    // pwdLastSet 0: must change, unless the password never expires.
    assert_int_equal(static_cast<int>(state({{"pwdlastset", {"0"}}})), static_cast<int>(Status::new_authtok_reqd));
    assert_int_equal(static_cast<int>(state({{"pwdlastset", {"0"}}, {"useraccountcontrol", {"66048"}}})),
                     static_cast<int>(Status::ok));
    assert_int_equal(static_cast<int>(state({{"pwdlastset", {"133000000000000000"}}})), static_cast<int>(Status::ok));
    // OpenLDAP ppolicy.
    assert_int_equal(static_cast<int>(state({{"pwdaccountlockedtime", {"000001010000Z"}}})),
                     static_cast<int>(Status::perm_denied));
    assert_int_equal(static_cast<int>(state({{"pwdreset", {"TRUE"}}})), static_cast<int>(Status::new_authtok_reqd));
    assert_int_equal(static_cast<int>(state({{"pwdreset", {"FALSE"}}})), static_cast<int>(Status::ok));
    // Refusals come before "must change".
    assert_int_equal(static_cast<int>(state({{"pwdreset", {"TRUE"}}, {"lockouttime", {"1"}}})),
                     static_cast<int>(Status::perm_denied));
}

void unicode_pwd(void**) {
    auto v = ad_unicode_pwd("ab");
    assert_true(v.has_value());
    const std::string want("\"\0a\0b\0\"\0", 8);
    assert_int_equal(v->size(), want.size());
    assert_memory_equal(v->c_str(), want.data(), want.size());
    // ä (U+00E4) and 😀 (U+1F600, a surrogate pair).
    v = ad_unicode_pwd("\xc3\xa4\xf0\x9f\x98\x80");
    const std::string want2("\"\0\xe4\0\x3d\xd8\x00\xde\"\0", 10);
    assert_int_equal(v->size(), want2.size());
    assert_memory_equal(v->c_str(), want2.data(), want2.size());
    assert_false(ad_unicode_pwd("\xc3").has_value());          // truncated
    assert_false(ad_unicode_pwd("\xc0\xaf").has_value());      // overlong
    assert_false(ad_unicode_pwd("\xed\xa0\x80").has_value());  // a surrogate
    assert_false(ad_unicode_pwd(std::string_view("a\0b", 3)).has_value());
}

void ad_refusals(void**) {
    auto v = ad_change_refusal(LDAP_CONSTRAINT_VIOLATION,
                               "00000056: Constraint violation - check_password_restrictions: The old password "
                               "specified doesn't match!");
    assert_int_equal(static_cast<int>(v.status), static_cast<int>(Status::auth_err));
    v = ad_change_refusal(LDAP_CONSTRAINT_VIOLATION,
                          "0000052D: Constraint violation - check_password_restrictions: the password is too short.");
    assert_int_equal(static_cast<int>(v.status), static_cast<int>(Status::authtok_err));
    assert_true(v.message.find("password policy") != std::string::npos);
    assert_true(v.message.find("too short") != std::string::npos);
    v = ad_change_refusal(LDAP_INSUFFICIENT_ACCESS, "00002098: ...");
    assert_int_equal(static_cast<int>(v.status), static_cast<int>(Status::authtok_err));
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(policy_on_binds),
        cmocka_unit_test(account_attributes),
        cmocka_unit_test(unicode_pwd),
        cmocka_unit_test(ad_refusals),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
