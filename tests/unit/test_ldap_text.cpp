// SPDX-License-Identifier: GPL-3.0-or-later
// RFC 4515 filter escaping and RFC 4514 DN normalisation, with hostile input.
// Project headers before cmocka.h: cmocka defines a `fail` macro that clashes with cvat::fail.
#include "ldap_text.hpp"

#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}

#include <string>
#include <string_view>

using cvat::helper::escape_dn_value;
using cvat::helper::escape_filter_value;
using cvat::helper::expand_user_filter;
using cvat::helper::normalize_dn;

namespace {

void expect_str(const std::string& got, std::string_view want) {
    if (got != want) fail_msg("got \"%s\", want \"%.*s\"", got.c_str(), static_cast<int>(want.size()), want.data());
}

std::string norm(std::string_view dn) {
    auto r = normalize_dn(dn);
    if (!r) fail_msg("normalize_dn(\"%.*s\") failed: %s", static_cast<int>(dn.size()), dn.data(),
                     r.error().detail.c_str());
    return *r;
}

void expect_same_dn(std::string_view a, std::string_view b) {
    std::string na = norm(a), nb = norm(b);
    if (na != nb)
        fail_msg("\"%.*s\" -> \"%s\" differs from \"%.*s\" -> \"%s\"", static_cast<int>(a.size()),
                 a.data(), na.c_str(), static_cast<int>(b.size()), b.data(), nb.c_str());
}

void expect_different_dn(std::string_view a, std::string_view b) {
    if (norm(a) == norm(b))
        fail_msg("\"%.*s\" and \"%.*s\" normalise equal", static_cast<int>(a.size()), a.data(),
                 static_cast<int>(b.size()), b.data());
}

void expect_broken_dn(std::string_view dn) {
    auto r = normalize_dn(dn);
    if (r) fail_msg("broken DN \"%.*s\" accepted as \"%s\"", static_cast<int>(dn.size()), dn.data(), r->c_str());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(cvat::ErrorCode::invalid_argument));
}

// True when `filter` has no unescaped *, ( or ) inside the value slot and no raw control byte.
bool value_is_inert(std::string_view escaped) {
    for (char c : escaped) {
        auto u = static_cast<unsigned char>(c);
        if (c == '*' || c == '(' || c == ')' || u < 0x20 || u >= 0x7f) return false;
    }
    // every backslash starts a two-digit lower-case hex escape
    auto hex = [](char h) { return (h >= '0' && h <= '9') || (h >= 'a' && h <= 'f'); };
    for (std::size_t i = 0; i < escaped.size(); ++i) {
        if (escaped[i] != '\\') continue;
        if (i + 2 >= escaped.size() || !hex(escaped[i + 1]) || !hex(escaped[i + 2])) return false;
        i += 2;
    }
    return true;
}

// --- filter escaping -------------------------------------------------------------------

void test_filter_plain(void**) {
    expect_str(escape_filter_value("alice"), "alice");
    expect_str(escape_filter_value("j.smith-2_x@example.com"), "j.smith-2_x@example.com");
    expect_str(escape_filter_value(""), "");
}

void test_filter_specials(void**) {
    expect_str(escape_filter_value("*"), "\\2a");
    expect_str(escape_filter_value("("), "\\28");
    expect_str(escape_filter_value(")"), "\\29");
    expect_str(escape_filter_value("\\"), "\\5c");
    expect_str(escape_filter_value(")(uid=*"), "\\29\\28uid=\\2a");
    expect_str(escape_filter_value("*)(|(objectClass=*"), "\\2a\\29\\28|\\28objectClass=\\2a");
}

void test_filter_nul_and_controls(void**) {
    expect_str(escape_filter_value(std::string_view("a\0b", 3)), "a\\00b");
    expect_str(escape_filter_value("\n\t\x1f\x7f"), "\\0a\\09\\1f\\7f");
}

void test_filter_utf8(void**) {
    // "José" and "名前": every byte >= 0x80 becomes a lower-case hex pair
    expect_str(escape_filter_value("Jos\xc3\xa9"), "Jos\\c3\\a9");
    expect_str(escape_filter_value("\xe5\x90\x8d\xe5\x89\x8d"), "\\e5\\90\\8d\\e5\\89\\8d");
}

void test_filter_long_hostile(void**) {
    std::string name(10 * 1024, 'a');
    for (std::size_t i = 0; i < name.size(); i += 7) name[i] = ")(*\\"[i % 4];
    name[5000] = '\0';
    std::string out = escape_filter_value(name);
    assert_true(out.size() > name.size());
    assert_true(value_is_inert(out));
}

void test_filter_every_byte(void**) {
    for (int b = 0; b < 256; ++b) {
        char c = static_cast<char>(b);
        std::string out = escape_filter_value(std::string_view(&c, 1));
        if (!value_is_inert(out)) fail_msg("byte 0x%02x escaped to unsafe \"%s\"", b, out.c_str());
    }
}

void test_expand_user_filter(void**) {
    auto r = expand_user_filter("(sAMAccountName=%(user)s)", "alice");
    assert_true(r.has_value());
    expect_str(*r, "(sAMAccountName=alice)");

    r = expand_user_filter("(&(objectClass=user)(sAMAccountName=%(user)s))", ")(uid=*");
    assert_true(r.has_value());
    expect_str(*r, "(&(objectClass=user)(sAMAccountName=\\29\\28uid=\\2a))");

    r = expand_user_filter("(|(uid=%(user)s)(mail=%(user)s))", "*");
    assert_true(r.has_value());
    expect_str(*r, "(|(uid=\\2a)(mail=\\2a))");

    r = expand_user_filter("(uid=%(user)s)", std::string_view("x\0y", 3));
    assert_true(r.has_value());
    expect_str(*r, "(uid=x\\00y)");

    // %% is a literal percent (python %-formatting), as Django applies the template
    r = expand_user_filter("(&(description=100%%)(uid=%(user)s))", "a");
    assert_true(r.has_value());
    expect_str(*r, "(&(description=100%)(uid=a))");
}

void test_expand_user_filter_refuses(void**) {
    auto r = expand_user_filter("(uid=alice)", "x");
    assert_false(r.has_value());
    r = expand_user_filter("(uid=%s)", "x");
    assert_false(r.has_value());
    r = expand_user_filter("(uid=%(username)s)", "x");
    assert_false(r.has_value());
    r = expand_user_filter("(uid=%(user)s%)", "x");
    assert_false(r.has_value());
    r = expand_user_filter("", "x");
    assert_false(r.has_value());
}

// --- DN escaping -----------------------------------------------------------------------

void test_escape_dn_value(void**) {
    expect_str(escape_dn_value("CVAT Admins"), "CVAT Admins");
    expect_str(escape_dn_value("Smith, John"), "Smith\\, John");
    expect_str(escape_dn_value("a+b=c"), "a\\+b\\=c");
    expect_str(escape_dn_value("\"q\";<x>\\"), "\\\"q\\\"\\;\\<x\\>\\\\");
    expect_str(escape_dn_value("#hash"), "\\#hash");
    expect_str(escape_dn_value("mid#hash"), "mid#hash");
    expect_str(escape_dn_value(" lead"), "\\ lead");
    expect_str(escape_dn_value("trail "), "trail\\ ");
    expect_str(escape_dn_value(" "), "\\ ");
    expect_str(escape_dn_value(std::string_view("n\0l", 3)), "n\\00l");
    expect_str(escape_dn_value("Jos\xc3\xa9"), "Jos\xc3\xa9");
}

void test_escape_dn_value_roundtrip(void**) {
    const std::string_view values[] = {"Smith, John", "a+b", " x ", "#1", "\\", "q\"", "<>;=",
                                       std::string_view("z\0z", 3), "Jos\xc3\xa9"};
    for (std::string_view v : values) {
        std::string dn = "cn=" + escape_dn_value(v) + ",dc=example";
        auto r = normalize_dn(dn);
        if (!r) fail_msg("escaped value gave unparsable DN \"%s\"", dn.c_str());
        // Exactly two RDNs: the escaped value never adds a separator
        std::string s = *r;
        std::size_t unescaped_commas = 0;
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] == '\\') {
                ++i;
                continue;
            }
            if (s[i] == ',') ++unescaped_commas;
        }
        assert_int_equal(unescaped_commas, 1);
    }
}

// --- DN normalisation ------------------------------------------------------------------

void test_normalize_basic(void**) {
    expect_str(norm("CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com"),
               "cn=cvat admins,cn=users,dc=ad,dc=example,dc=com");
    expect_str(norm(""), "");
    expect_str(norm("uid=alice"), "uid=alice");
}

void test_normalize_case_and_spacing(void**) {
    expect_same_dn("CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com",
                   "cn=cvat admins,cn=users,dc=ad,dc=example,dc=com");
    expect_same_dn("CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com",
                   "  cn = CVAT Admins , cn=Users ,dc=ad,  DC =example,dc=com  ");
    expect_same_dn("cn=CVAT  Admins,dc=x", "cn=CVAT Admins,dc=x");  // RFC 4518 space folding
    expect_different_dn("cn=CVAT Admins,dc=x", "cn=CVATAdmins,dc=x");
    expect_different_dn("cn=CVAT Admins,dc=x", "cn=CVAT Users,dc=x");
    expect_different_dn("cn=a,dc=x", "cn=a,dc=y");
    expect_different_dn("cn=a,dc=x", "ou=a,dc=x");
    expect_different_dn("cn=a,dc=x", "cn=a,dc=x,dc=z");
}

void test_normalize_escapes(void**) {
    // \, and \2c are the same comma; a hex escape equals the literal character
    expect_same_dn("CN=Smith\\, John,DC=x", "cn=smith\\2c john,dc=x");
    expect_same_dn("CN=Smith\\, John,DC=x", "cn=SMITH\\2C JOHN,dc=x");
    expect_same_dn("cn=CVAT\\20Admins,dc=x", "cn=CVAT Admins,dc=x");
    expect_same_dn("cn=\\41dmins,dc=x", "cn=Admins,dc=x");
    expect_same_dn("cn=Jos\\c3\\a9,dc=x", "cn=Jos\xc3\xa9,dc=x");
    expect_same_dn("cn=a\\+b,dc=x", "cn=a\\2bb,dc=x");
    expect_same_dn("cn=\\#1,dc=x", "cn=\\231,dc=x");
    expect_same_dn("cn=x\\=y,dc=x", "cn=x=y,dc=x");
    expect_same_dn("cn=\\\"q\\\",dc=x", "cn=\\22q\\22,dc=x");
    // an escaped comma is not a separator
    expect_different_dn("cn=Smith\\, John,dc=x", "cn=Smith,cn=John,dc=x");
    // an escaped plus is not a multi-valued RDN
    expect_different_dn("cn=a\\+uid=b,dc=x", "cn=a+uid=b,dc=x");
    expect_str(norm("CN=Smith\\, John,DC=x"), "cn=smith\\, john,dc=x");
    expect_str(norm("cn=a\\00b"), "cn=a\\00b");
}

void test_normalize_multivalued(void**) {
    expect_same_dn("cn=John+uid=jsmith,dc=x", "uid=jsmith+cn=John,dc=x");
    expect_same_dn("CN=John + UID=jsmith,dc=x", "uid=JSMITH+cn=john,dc=x");
    expect_str(norm("uid=b+cn=a,dc=x"), "cn=a+uid=b,dc=x");
    expect_different_dn("cn=John+uid=jsmith,dc=x", "cn=John,uid=jsmith,dc=x");
}

void test_normalize_types(void**) {
    expect_same_dn("commonName=a,domainComponent=x", "cn=a,dc=x");
    expect_same_dn("2.5.4.3=a,0.9.2342.19200300.100.1.25=x", "cn=a,dc=x");
    expect_same_dn("userid=alice,ou=people", "UID=alice,organizationalUnitName=people");
    expect_str(norm("1.3.6.1.4.1.55555.1=v"), "1.3.6.1.4.1.55555.1=v");
    expect_str(norm("sAMAccountName=V"), "samaccountname=v");
}

void test_normalize_hexstring(void**) {
    expect_str(norm("1.3.6.1.4.1.1466.0=#04024869,O=Test"), "1.3.6.1.4.1.1466.0=#04024869,o=test");
    expect_same_dn("cn=#04024869,dc=x", "cn=#04024869 ,dc=x");
    expect_same_dn("cn=#04024869,dc=x", "CN=#04024869,dc=x");
    expect_same_dn("cn=#0402ABCD,dc=x", "cn=#0402abcd,dc=x");
    // an escaped '#' is a string value, not a BER value
    expect_different_dn("cn=#0402,dc=x", "cn=\\#0402,dc=x");
}

void test_normalize_broken(void**) {
    expect_broken_dn("cn");
    expect_broken_dn("cn=a,");
    expect_broken_dn(",cn=a");
    expect_broken_dn("cn=a,,dc=x");
    expect_broken_dn("=a");
    expect_broken_dn("cn=a+");
    expect_broken_dn("cn=a\\");
    expect_broken_dn("cn=a\\4");
    expect_broken_dn("cn=a\\zz");
    expect_broken_dn("cn=a\\4g");
    expect_broken_dn("cn=a\"b");
    expect_broken_dn("cn=a;dc=x");
    expect_broken_dn("cn=<a>");
    expect_broken_dn(std::string_view("cn=a\0b", 6));
    expect_broken_dn("c n=a");
    expect_broken_dn("1cn=a");
    expect_broken_dn("2.5..4=a");
    expect_broken_dn("2.5.4.=a");
    expect_broken_dn("25=a");
    expect_broken_dn("cn=#");
    expect_broken_dn("cn=#abc");
    expect_broken_dn("cn=#zz");
    expect_broken_dn("cn=#0402 x");
    expect_broken_dn("*");
    expect_broken_dn(")(uid=*");
    // filter metacharacters are ordinary in a DN value (RFC 4514 §3)
    expect_str(norm("cn=a,dc=x)(uid=*"), "cn=a,dc=x)(uid\\=*");
}

void test_normalize_hostile_long(void**) {
    std::string big = "cn=" + std::string(10 * 1024, 'A') + ",dc=x";
    expect_str(norm(big), "cn=" + std::string(10 * 1024, 'a') + ",dc=x");
    std::string many;
    for (int i = 0; i < 2000; ++i) many += "cn=a+";
    many += "cn=b";
    assert_true(normalize_dn(many).has_value());
    std::string slashes(10 * 1024 + 1, '\\');  // odd: the last one escapes 'x'
    expect_broken_dn("cn=" + slashes + "x");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_plain),
        cmocka_unit_test(test_filter_specials),
        cmocka_unit_test(test_filter_nul_and_controls),
        cmocka_unit_test(test_filter_utf8),
        cmocka_unit_test(test_filter_long_hostile),
        cmocka_unit_test(test_filter_every_byte),
        cmocka_unit_test(test_expand_user_filter),
        cmocka_unit_test(test_expand_user_filter_refuses),
        cmocka_unit_test(test_escape_dn_value),
        cmocka_unit_test(test_escape_dn_value_roundtrip),
        cmocka_unit_test(test_normalize_basic),
        cmocka_unit_test(test_normalize_case_and_spacing),
        cmocka_unit_test(test_normalize_escapes),
        cmocka_unit_test(test_normalize_multivalued),
        cmocka_unit_test(test_normalize_types),
        cmocka_unit_test(test_normalize_hexstring),
        cmocka_unit_test(test_normalize_broken),
        cmocka_unit_test(test_normalize_hostile_long),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
