// SPDX-License-Identifier: GPL-3.0-or-later
// Password policy and password change through the whole real path: libpam → pam_cvat.so →
// cvat-authd → slapd with the ppolicy overlay (tests/fixtures/slapd.sh, tree `ppolicy`: users
// in each policy state, see README.md there). Each state's PAM code and words, the change
// conversation (passwd-style and after an expired login), the server's reasons for refusing a
// new password, and the verdict cache forgetting the old password after a change.
#include "cmocka.hpp"

#include <memory>
#include <string>
#include <vector>

#include <security/pam_appl.h>
#include <sys/stat.h>

#include "fixture.hpp"
#include "pam_driver.hpp"
#include "pam_expect.hpp"

using namespace cvat::test;

namespace {

const char* kBase = "dc=pp,dc=example,dc=test";

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> slapd;
    std::unique_ptr<Daemon> daemon;
    std::string dir;
};
World* g = nullptr;

// verdict_ttl 30: a web server's cache is on, so "the old password no longer works" also
// proves the change cleared it; offline logins are on, for offline_hash_dropped. A user in an email domain goes to an IdP (never contacted).
std::string config(const std::string& dir) {
    write_file(dir + "/bind_password", "Bind-Secret-3\n", 0600);
    const std::string b = kBase;
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n"
           "  verdict_ttl: 30\n"
           "  offline: {enabled: true, max_age: 1h}\n"
           "ldap:\n"
           "  server_uri: [" + g->slapd->ldaps_uri() + "]\n"
           "  tls: {ca_file: " + g->slapd->ca_file() + ", require_cert: true}\n"
           "  bind_dn: \"uid=cvat_bind,ou=system," + b + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           "  user_search: {base: \"ou=people," + b + "\", scope: onelevel, filter: \"(uid=%(user)s)\"}\n"
           "  group_search: {base: \"ou=groups," + b + "\", scope: subtree, filter: \"(objectClass=groupOfNames)\"}\n"
           "  group_type: group_of_names\n"
           "  user_attr_map: {user_name: uid}\n"
           "  role_groups: {user: [\"cn=cvat-users,ou=groups," + b + "\"]}\n"
           "  default_role: none\n"
           "sso:\n"
           "  enabled: true\n"
           "  selection_mode: email_address\n"
           "  identity_providers:\n"
           "    - {id: corp, protocol: OIDC, name: Corp SSO, server_url: \"https://127.0.0.1:9/\",\n"
           "       client_id: cvat, client_secret: s3cret, email_domain: corp.test}\n";
}

int setup(void**) {
    g = new World;
    g->slapd = std::make_unique<Slapd>(g->tmp.path() + "/slapd", "ppolicy", true);
    g->dir = g->tmp.path() + "/d";
    ::mkdir(g->dir.c_str(), 0700);
    g->daemon = std::make_unique<Daemon>(g->dir, config(g->dir));
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

PamCall call_for(const std::string& user, std::vector<std::string> answers, const std::string& args = "") {
    PamCall c;
    c.confdir = g->dir + "/pam";
    c.user = user;
    c.answers = std::move(answers);
    c.module_args = "socket=" + g->daemon->socket() + " timeout=30 " + args;
    return c;
}

PamOutcome login(const std::string& user, const std::string& password) {
    return pam_login(call_for(user, {password}));
}

// passwd(1): pam_chauthtok alone; the conversation answers current, new, new again.
PamOutcome passwd(const std::string& user, const std::string& old_pw, const std::string& new_pw,
                  const std::string& args = "") {
    PamCall c = call_for(user, {old_pw, new_pw, new_pw}, args);
    c.change_only = true;
    return pam_login(c);
}

void expect_pam(const std::string& what, int got, int want) {
    cvat::test::expect_pam(what, got, want, "daemon log " + g->daemon->log_path());
}

// --- states --------------------------------------------------------------------------------

void plain_user(void**) {
    auto o = login("pat", "pat-Passw0rd");
    expect_pam("pat", o.authenticate, PAM_SUCCESS);
    expect_pam("pat account", o.acct_mgmt, PAM_SUCCESS);
    if (contains(all_messages(o), "expire")) fail_msg("pat warned: %s", all_messages(o).c_str());
}

void expiring_soon_warns(void**) {
    auto o = login("ewan", "ewan-Passw0rd");
    expect_pam("ewan", o.authenticate, PAM_SUCCESS);
    expect_pam("ewan account", o.acct_mgmt, PAM_SUCCESS);
    expect_said("ewan", o, "your password expires in 3 days");
}

void expired_with_grace(void**) {
    auto o = login("gail", "gail-Passw0rd");
    expect_pam("gail", o.authenticate, PAM_SUCCESS);
    expect_pam("gail account", o.acct_mgmt, PAM_SUCCESS);
    expect_said("gail", o, "grace logins left: 1");
    // The last grace login changes the password.
    o = passwd("gail", "gail-Passw0rd", "gail-Newpass1");
    expect_pam("gail changes her password with the last grace login", o.chauthtok, PAM_SUCCESS);
    o = login("gail", "gail-Newpass1");
    expect_pam("gail with the new password", o.authenticate, PAM_SUCCESS);
    if (contains(all_messages(o), "grace")) fail_msg("gail still warned: %s", all_messages(o).c_str());
}

void expired_without_grace(void**) {
    PamCall c = call_for("xena", {"xena-Passw0rd", "xena-Passw0rd", "xena-Newpass1", "xena-Newpass1"});
    c.change_expired = true;
    auto o = pam_login(c);
    expect_pam("xena (authenticate records the expiry)", o.authenticate, PAM_SUCCESS);
    expect_pam("xena account", o.acct_mgmt, PAM_NEW_AUTHTOK_REQD);
    expect_said("xena", o, "expired");
    // ppolicy refuses every bind of an expired password without grace logins.
    expect_pam("xena's change", o.chauthtok, PAM_AUTHTOK_ERR);
    expect_said("xena's change", o, "no grace logins are left");
    expect_pam("xena, wrong password", login("xena", "nope-Passw0rd").authenticate, PAM_AUTH_ERR);
}

void locked(void**) {
    auto o = login("lock", "lock-Passw0rd");
    expect_pam("lock", o.authenticate, PAM_PERM_DENIED);
    expect_said("lock", o, "account locked");
    // The account phase alone (no password: sshd with a key) reads pwdAccountLockedTime.
    PamCall c = call_for("lock", {});
    c.account_only = true;
    o = pam_login(c);
    expect_pam("lock, account phase alone", o.acct_mgmt, PAM_PERM_DENIED);
    expect_said("lock, account phase alone", o, "account locked");
}

void lockout_after_failures(void**) {
    for (int i = 0; i < 3; ++i)
        expect_pam("lou, wrong password", login("lou", "wrong-Passw0rd").authenticate, PAM_AUTH_ERR);
    auto o = login("lou", "lou-Passw0rd");
    expect_pam("lou after 3 failures", o.authenticate, PAM_PERM_DENIED);
    expect_said("lou", o, "account locked");
}

void reset_must_change(void**) {
    // login(1)/sshd: authenticate, account says the password must change, then chauthtok with
    // PAM_CHANGE_EXPIRED_AUTHTOK asks the current password and the new one twice.
    PamCall alone = call_for("rita", {});
    alone.account_only = true;  // pwdReset read without a password
    auto o = pam_login(alone);
    expect_pam("rita, account phase alone", o.acct_mgmt, PAM_NEW_AUTHTOK_REQD);
    expect_said("rita, account phase alone", o, "your password was reset");

    PamCall c = call_for("rita", {"rita-Passw0rd", "rita-Passw0rd", "rita-Newpass1", "rita-Newpass1"});
    c.change_expired = true;
    o = pam_login(c);
    expect_pam("rita", o.authenticate, PAM_SUCCESS);
    expect_pam("rita account", o.acct_mgmt, PAM_NEW_AUTHTOK_REQD);
    expect_said("rita", o, "reset");
    expect_pam("rita's change", o.chauthtok, PAM_SUCCESS);
    expect_said("rita's change", o, "New password: ");
    o = login("rita", "rita-Newpass1");
    expect_pam("rita, new password", o.authenticate, PAM_SUCCESS);
    expect_pam("rita, new password, account", o.acct_mgmt, PAM_SUCCESS);
    expect_pam("rita, old password", login("rita", "rita-Passw0rd").authenticate, PAM_AUTH_ERR);
}

// --- the change conversation ---------------------------------------------------------------

void change_refusals_and_success(void**) {
    // Cached by the web-server verdict cache (verdict_ttl 30) before the change.
    expect_pam("paul", login("paul", "paul-Passw0rd").authenticate, PAM_SUCCESS);

    auto o = passwd("paul", "paul-Passw0rd", "short1");
    expect_pam("too short", o.chauthtok, PAM_AUTHTOK_ERR);
    expect_said("too short", o, "too short");

    o = passwd("paul", "wrong-Passw0rd", "paul-Newpass1");
    expect_pam("wrong current password", o.chauthtok, PAM_AUTH_ERR);

    o = passwd("paul", "paul-Passw0rd", "");
    expect_pam("empty new password", o.chauthtok, PAM_AUTHTOK_ERR);

    PamCall mismatch = call_for("paul", {"paul-Passw0rd", "paul-Newpass1", "paul-Other1"});
    mismatch.change_only = true;
    o = pam_login(mismatch);
    expect_pam("retyped differently", o.chauthtok, PAM_TRY_AGAIN);

    o = passwd("paul", "paul-Passw0rd", "paul-Newpass1");
    expect_pam("paul's change", o.chauthtok, PAM_SUCCESS);
    expect_said("paul's change", o, "Current password: ");
    expect_said("paul's change", o, "Retype new password: ");
    expect_said("paul's change", o, "password changed");

    expect_pam("paul, new password", login("paul", "paul-Newpass1").authenticate, PAM_SUCCESS);
    expect_pam("paul, old password (was cached)", login("paul", "paul-Passw0rd").authenticate, PAM_AUTH_ERR);

    o = passwd("paul", "paul-Newpass1", "paul-Passw0rd");
    expect_pam("back to a password in history", o.chauthtok, PAM_AUTHTOK_ERR);
    expect_said("in history", o, "used recently");

    o = passwd("paul", "paul-Newpass1", "paul-Newpass2");
    expect_pam("paul's second change", o.chauthtok, PAM_SUCCESS);
    expect_pam("paul, newest password", login("paul", "paul-Newpass2").authenticate, PAM_SUCCESS);
    // The daemon logs at debug level; no password of the changes may appear.
    const std::string log = read_file(g->daemon->log_path());
    for (const char* pw : {"paul-Passw0rd", "paul-Newpass1", "paul-Newpass2", "short1"})
        if (contains(log, pw)) fail_msg("the daemon log holds a password (%s)", pw);
    if (!contains(log, "changed (RFC 3062)")) fail_msg("no change logged in %s", g->daemon->log_path().c_str());
}

// use_first_pass / use_authtok as in pam_unix: without a token from an earlier module the
// module fails instead of prompting.
void stacked_tokens(void**) {
    PamCall c = call_for("pat", {"pat-Passw0rd", "x", "x"}, "use_first_pass");
    c.change_only = true;
    auto o = pam_login(c);
    expect_pam("use_first_pass, no current password stacked", o.chauthtok, PAM_AUTHTOK_RECOVERY_ERR);
    if (!o.messages.empty()) fail_msg("use_first_pass prompted: %s", all_messages(o).c_str());

    c = call_for("pat", {"pat-Passw0rd", "x", "x"}, "use_authtok");
    c.change_only = true;
    o = pam_login(c);
    expect_pam("use_authtok, no new password stacked", o.chauthtok, PAM_AUTHTOK_ERR);
    if (contains(all_messages(o), "New password")) fail_msg("use_authtok prompted: %s", all_messages(o).c_str());
    expect_pam("pat unchanged", login("pat", "pat-Passw0rd").authenticate, PAM_SUCCESS);
}

void idp_user_is_told_where(void**) {
    auto o = passwd("ann@corp.test", "old-Passw0rd", "new-Passw0rd");
    expect_pam("an IdP's user", o.chauthtok, PAM_AUTHTOK_ERR);
    expect_said("an IdP's user", o, "change it at https://127.0.0.1:9");
}

// A change drops the offline hash: with the directory down right after it, the old password
// logs nobody in (without the drop it would, offline).
void offline_hash_dropped(void**) {
    // Another PAM service: the web-server verdict cache (per service) does not answer.
    auto offline_login = [](const std::string& password) {
        PamCall c = call_for("pat", {password});
        c.service = "cvat-offline";
        return pam_login(c);
    };
    expect_pam("pat online (stores the offline hash)", login("pat", "pat-Passw0rd").authenticate, PAM_SUCCESS);
    g->slapd->stop();
    auto o = offline_login("pat-Passw0rd");
    g->slapd->restart();
    expect_pam("pat offline before the change", o.authenticate, PAM_SUCCESS);
    expect_said("pat offline", o, "offline");

    o = passwd("pat", "pat-Passw0rd", "pat-Newpass1");
    expect_pam("pat's change", o.chauthtok, PAM_SUCCESS);
    g->slapd->stop();
    o = offline_login("pat-Passw0rd");
    g->slapd->restart();
    expect_pam("pat's old password offline after the change", o.authenticate, PAM_AUTHINFO_UNAVAIL);
}

}  // namespace

int main() {
    require_program("slapd");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_user),
        cmocka_unit_test(expiring_soon_warns),
        cmocka_unit_test(expired_with_grace),
        cmocka_unit_test(expired_without_grace),
        cmocka_unit_test(locked),
        cmocka_unit_test(lockout_after_failures),
        cmocka_unit_test(reset_must_change),
        cmocka_unit_test(change_refusals_and_success),
        cmocka_unit_test(stacked_tokens),
        cmocka_unit_test(idp_user_is_told_where),
        cmocka_unit_test(offline_hash_dropped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
