// SPDX-License-Identifier: GPL-3.0-or-later
// Role resolution: admin > user > worker, normalised DN comparison, default_role.
// Project headers before cmocka.h: cmocka defines a `fail` macro that clashes with cvat::fail.
#include "roles.hpp"

#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}

#include <array>
#include <string>
#include <vector>

using cvat::helper::resolve_role;
using cvat::helper::RoleDecision;
using cvat::proto::Role;

namespace {

using RoleGroups = std::array<std::vector<std::string>, 4>;

RoleGroups ad_role_groups() {
    RoleGroups g;
    g[static_cast<int>(Role::admin)] = {"CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com"};
    g[static_cast<int>(Role::user)] = {"CN=CVAT Users,CN=Users,DC=ad,DC=example,DC=com"};
    g[static_cast<int>(Role::worker)] = {"CN=CVAT Workers,CN=Users,DC=ad,DC=example,DC=com",
                                         "cn=Annotators,ou=Contractors,dc=ad,dc=example,dc=com"};
    return g;
}

void expect_role(const RoleDecision& d, Role want, bool from_default) {
    if (d.role != want)
        fail_msg("role %s, want %s", cvat::proto::role_name(d.role), cvat::proto::role_name(want));
    assert_int_equal(d.from_default, from_default);
}

void test_single_roles(void**) {
    auto g = ad_role_groups();
    auto d = resolve_role({"CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com"}, g, Role::user);
    expect_role(d, Role::admin, false);
    assert_int_equal(d.matches.size(), 1);
    assert_string_equal(d.matches[0].group.c_str(), "CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com");

    d = resolve_role({"CN=CVAT Users,CN=Users,DC=ad,DC=example,DC=com"}, g, Role::worker);
    expect_role(d, Role::user, false);
    d = resolve_role({"CN=CVAT Workers,CN=Users,DC=ad,DC=example,DC=com"}, g, Role::admin);
    expect_role(d, Role::worker, false);
    d = resolve_role({"cn=annotators,ou=contractors,dc=ad,dc=example,dc=com"}, g, Role::user);
    expect_role(d, Role::worker, false);
}

void test_highest_wins(void**) {
    auto g = ad_role_groups();
    // order of the user's groups does not matter
    auto d = resolve_role({"CN=CVAT Workers,CN=Users,DC=ad,DC=example,DC=com",
                           "CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com"},
                          g, Role::user);
    expect_role(d, Role::admin, false);
    assert_int_equal(d.matches.size(), 2);
    d = resolve_role({"CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com",
                      "CN=CVAT Workers,CN=Users,DC=ad,DC=example,DC=com"},
                     g, Role::user);
    expect_role(d, Role::admin, false);
    d = resolve_role({"CN=CVAT Workers,CN=Users,DC=ad,DC=example,DC=com",
                      "CN=CVAT Users,CN=Users,DC=ad,DC=example,DC=com", "CN=Other,DC=x"},
                     g, Role::admin);
    expect_role(d, Role::user, false);
}

void test_normalised_compare(void**) {
    auto g = ad_role_groups();
    // as OpenLDAP or AD may return it: other case, spacing, hex escapes
    auto d = resolve_role({"cn=cvat admins, cn=users, dc=AD, dc=Example, dc=COM"}, g, Role::worker);
    expect_role(d, Role::admin, false);
    d = resolve_role({"cn=CVAT\\20Admins,cn=Users,dc=ad,dc=example,dc=com"}, g, Role::worker);
    expect_role(d, Role::admin, false);
    d = resolve_role({"2.5.4.3=CVAT Admins,cn=Users,dc=ad,dc=example,dc=com"}, g, Role::worker);
    expect_role(d, Role::admin, false);
    // near misses are no match
    d = resolve_role({"CN=CVAT Admins2,CN=Users,DC=ad,DC=example,DC=com",
                      "CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=org",
                      "CN=CVAT Admins,DC=ad,DC=example,DC=com", "CN=CVATAdmins,CN=Users,DC=ad,DC=example,DC=com"},
                     g, Role::worker);
    expect_role(d, Role::worker, true);
    assert_int_equal(d.matches.size(), 0);
}

void test_default_role(void**) {
    auto g = ad_role_groups();
    auto d = resolve_role({}, g, Role::user);
    expect_role(d, Role::user, true);
    d = resolve_role({"CN=Domain Users,CN=Users,DC=ad,DC=example,DC=com"}, g, Role::worker);
    expect_role(d, Role::worker, true);
    d = resolve_role({"CN=Domain Users,CN=Users,DC=ad,DC=example,DC=com"}, g, Role::none);
    expect_role(d, Role::none, true);
    assert_int_equal(d.matches.size(), 0);
    // a match never falls back to the default, even a higher one
    d = resolve_role({"CN=CVAT Workers,CN=Users,DC=ad,DC=example,DC=com"}, g, Role::admin);
    expect_role(d, Role::worker, false);
}

void test_broken_dns_never_match(void**) {
    RoleGroups g;
    g[static_cast<int>(Role::admin)] = {"this is not a dn", ""};
    g[static_cast<int>(Role::user)] = {"CN=CVAT Users,DC=x"};
    auto d = resolve_role({"this is not a dn", "", "cn=a,"}, g, Role::none);
    expect_role(d, Role::none, true);
    d = resolve_role({"this is not a dn", "cn=cvat users,dc=x"}, g, Role::none);
    expect_role(d, Role::user, false);
}

void test_none_slot_ignored(void**) {
    // role_groups[none] is not a role: a user in it gets the default
    RoleGroups g;
    g[static_cast<int>(Role::none)] = {"CN=Nobody,DC=x"};
    auto d = resolve_role({"CN=Nobody,DC=x"}, g, Role::worker);
    expect_role(d, Role::worker, true);
}

void test_same_group_several_roles(void**) {
    // a DN listed for two roles gives the higher
    RoleGroups g;
    g[static_cast<int>(Role::worker)] = {"CN=Staff,DC=x"};
    g[static_cast<int>(Role::user)] = {"cn=staff,dc=x"};
    auto d = resolve_role({"CN=Staff,DC=x"}, g, Role::none);
    expect_role(d, Role::user, false);
    assert_int_equal(d.matches.size(), 2);
    assert_int_equal(static_cast<int>(d.matches[0].role), static_cast<int>(Role::user));
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_roles),
        cmocka_unit_test(test_highest_wins),
        cmocka_unit_test(test_normalised_compare),
        cmocka_unit_test(test_default_role),
        cmocka_unit_test(test_broken_dns_never_match),
        cmocka_unit_test(test_none_slot_ignored),
        cmocka_unit_test(test_same_group_several_roles),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
