// SPDX-License-Identifier: GPL-3.0-or-later
// A real Active Directory: Samba 4.17's AD DC (tests/fixtures/samba.sh; users, passwords and
// states in tests/fixtures/README.md, "Samba AD DC") behind the whole real path, libpam →
// pam_cvat.so → cvat-authd → LDAPS. CVAT's AD example (sAMAccountName, nested groups) gives
// the roles; disabled, locked, expired and must-change accounts give their PAM codes and words;
// a password change over LDAPS works, the old password then fails.
//
// One DC for the whole program (started in the group setup): Samba listens on the fixed ports
// 389/636, so this is the only Samba test program, and meson runs it alone (is_parallel false).
// Needs root (those ports); skips (77) otherwise.
#include "cmocka.hpp"

#include <cctype>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <security/pam_appl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.hpp"
#include "pam_driver.hpp"
#include "pam_expect.hpp"

using namespace cvat::test;

namespace {

struct World {
    TempDir tmp;
    std::string dc_dir;
    std::map<std::string, std::string> env;  // the DC's DIR/env
    bool dc_running = false;
    std::unique_ptr<Daemon> daemon;          // over LDAPS
    std::string dir;
    int counter = 0;
};
World* g = nullptr;

std::string samba_sh() { return env_or("CVAT_FIXTURES", "tests/fixtures") + "/samba.sh"; }

// DIR/env: KEY=VALUE lines, values maybe in single quotes.
std::map<std::string, std::string> read_env(const std::string& path) {
    std::map<std::string, std::string> out;
    std::string text = read_file(path);
    std::size_t at = 0;
    while (at < text.size()) {
        std::size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(at, end - at);
        at = end + 1;
        auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        std::string value = line.substr(eq + 1);
        if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') value = value.substr(1, value.size() - 2);
        out[line.substr(0, eq)] = value;
    }
    return out;
}

std::string dc(const char* key) {
    auto it = g->env.find(key);
    if (it == g->env.end()) fail_msg("the DC's env has no %s", key);
    return it->second;
}

// samba-tool on the running DC (password settings), bounded.
void samba_tool(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/bin/bash", samba_sh(), "samba-tool", g->dc_dir};
    argv.insert(argv.end(), args.begin(), args.end());
    if (run_program(argv, {}, 60) != 0) fail_msg("samba-tool failed");
}

// CVAT's AD example, as conf/auth_config.ad.yml has it, against the DC. verdict_ttl 30:
// a changed password must also leave the web-server cache.
std::string config(const std::string& dir, const std::string& uri) {
    write_file(dir + "/bind_password", dc("AD_BIND_PW") + "\n", 0600);
    const std::string u = "CN=Users," + dc("AD_BASE");
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n"
           "  verdict_ttl: 30\n"
           "ldap:\n"
           "  server_uri: [" + uri + "]\n"
           "  tls: {ca_file: " + dc("AD_CA_FILE") + ", require_cert: true}\n"
           "  referrals: false\n"
           "  bind_dn: \"" + dc("AD_BIND_DN") + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           + cvat_ad_example(u) +
           "  default_role: user\n";
}

std::string fresh_dir(const std::string& name) {
    std::string d = g->tmp.path() + "/" + name + std::to_string(++g->counter);
    ::mkdir(d.c_str(), 0700);
    return d;
}

int setup(void**) {
    g = new World;
    g->dc_dir = g->tmp.path() + "/dc";
    if (run_program({"/bin/bash", samba_sh(), "start", g->dc_dir}, {}, 300) != 0) {
        std::printf("Bail out! samba.sh start failed (is another Samba DC using 127.0.0.1:389?)\n");
        return -1;
    }
    g->dc_running = true;
    g->env = read_env(g->dc_dir + "/env");
    if (auto it = g->env.find("SAMBA_PID"); it != g->env.end()) track_pid(static_cast<pid_t>(std::stol(it->second)));
    g->dir = fresh_dir("ldaps");
    g->daemon = std::make_unique<Daemon>(g->dir, config(g->dir, dc("AD_LDAPS_URI")));
    return 0;
}

int teardown(void**) {
    if (g == nullptr) return 0;
    g->daemon.reset();
    if (g->dc_running) {
        (void)run_program({"/bin/bash", samba_sh(), "stop", g->dc_dir}, {}, 60);
        if (auto it = g->env.find("SAMBA_PID"); it != g->env.end()) untrack_pid(static_cast<pid_t>(std::stol(it->second)));
    }
    delete g;
    g = nullptr;
    return 0;
}

PamCall call_for(const Daemon& d, const std::string& user, std::vector<std::string> answers) {
    PamCall c;
    c.confdir = g->dir + "/pam";
    c.user = user;
    c.answers = std::move(answers);
    c.module_args = "socket=" + d.socket() + " timeout=30";
    return c;
}

PamOutcome login(const std::string& user, const std::string& password) {
    return pam_login(call_for(*g->daemon, user, {password}));
}

PamOutcome account_only(const std::string& user) {
    PamCall c = call_for(*g->daemon, user, {});
    c.account_only = true;
    return pam_login(c);
}

PamOutcome passwd(const Daemon& d, const std::string& user, const std::string& old_pw, const std::string& new_pw) {
    PamCall c = call_for(d, user, {old_pw, new_pw, new_pw});
    c.change_only = true;
    return pam_login(c);
}

void expect_pam(const std::string& what, int got, int want) {
    cvat::test::expect_pam(what, got, want, "daemon log " + g->daemon->log_path());
}

std::string env_of(const PamOutcome& o, const char* key) {
    auto it = o.env.find(key);
    return it == o.env.end() ? "" : it->second;
}

// --- logins and roles ----------------------------------------------------------------------

void roles(void**) {
    const std::pair<const char*, const char*> users[] = {
        {"alice", "admin"}, {"bob", "user"}, {"walter", "worker"},
        {"dora", "admin"},    // CVAT Admins and CVAT Workers: highest wins
        {"nestor", "admin"},  // Nest L1 → Nest L2 → Nest L3 → CVAT Admins
        {"nina", "user"},     // in no role group: default_role
    };
    for (const auto& [user, role] : users) {
        std::string pw = std::string(user) + "-Passw0rd!";
        pw[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(pw[0])));
        auto o = login(user, pw);
        expect_pam(std::string(user) + " logs in", o.authenticate, PAM_SUCCESS);
        expect_pam(std::string(user) + " account", o.acct_mgmt, PAM_SUCCESS);
        if (env_of(o, "CVAT_ROLE") != role)
            fail_msg("%s: CVAT_ROLE \"%s\", want \"%s\"", user, env_of(o, "CVAT_ROLE").c_str(), role);
    }
    expect_pam("bob, wrong password", login("bob", "Wrong-Passw0rd!").authenticate, PAM_AUTH_ERR);
    expect_pam("nobody", login("nobody", "Nobody-Passw0rd!").authenticate, PAM_USER_UNKNOWN);
}

// --- account states: the bind diagnostics (data 533/775/701/773) and the account phase -------

void account_states(void**) {
    auto o = login("dave", "Dave-Passw0rd!");
    expect_pam("dave (disabled)", o.authenticate, PAM_PERM_DENIED);
    expect_said("dave", o, "account disabled");
    o = login("lena", "Lena-Passw0rd!");
    expect_pam("lena (locked)", o.authenticate, PAM_PERM_DENIED);
    expect_said("lena", o, "account locked");
    o = login("exa", "Exa-Passw0rd!");
    expect_pam("exa (expired account)", o.authenticate, PAM_ACCT_EXPIRED);
    expect_said("exa", o, "account expired");
    o = login("mustchange", "Mustchange-Passw0rd!");
    expect_pam("mustchange (pwdLastSet 0): authenticate", o.authenticate, PAM_SUCCESS);
    expect_pam("mustchange: account", o.acct_mgmt, PAM_NEW_AUTHTOK_REQD);
    expect_pam("mustchange, wrong password", login("mustchange", "Wrong-Passw0rd!").authenticate, PAM_AUTH_ERR);

    // The account phase alone (sshd after a public key): the entry's attributes decide.
    o = account_only("dave");
    expect_pam("dave, account phase", o.acct_mgmt, PAM_PERM_DENIED);
    o = account_only("lena");
    expect_pam("lena, account phase (lockoutTime)", o.acct_mgmt, PAM_PERM_DENIED);
    expect_said("lena, account phase", o, "account locked");
    o = account_only("exa");
    expect_pam("exa, account phase (accountExpires)", o.acct_mgmt, PAM_ACCT_EXPIRED);
    o = account_only("mustchange");
    expect_pam("mustchange, account phase (pwdLastSet 0)", o.acct_mgmt, PAM_NEW_AUTHTOK_REQD);
    o = account_only("bob");
    expect_pam("bob, account phase", o.acct_mgmt, PAM_SUCCESS);
}

// --- password change -----------------------------------------------------------------------

void change_over_ldaps(void**) {
    expect_pam("walter, cached before the change", login("walter", "Walter-Passw0rd!").authenticate, PAM_SUCCESS);
    auto o = passwd(*g->daemon, "walter", "Wrong-Passw0rd!", "Walter-Newpass1!");
    expect_pam("walter, wrong current password", o.chauthtok, PAM_AUTH_ERR);
    o = passwd(*g->daemon, "walter", "Walter-Passw0rd!", "Walter-Newpass1!");
    expect_pam("walter changes his password", o.chauthtok, PAM_SUCCESS);
    expect_said("walter", o, "password changed");
    o = login("walter", "Walter-Newpass1!");
    expect_pam("walter, new password", o.authenticate, PAM_SUCCESS);
    if (env_of(o, "CVAT_ROLE") != "worker") fail_msg("walter's role after the change: %s", env_of(o, "CVAT_ROLE").c_str());
    expect_pam("walter, old password", login("walter", "Walter-Passw0rd!").authenticate, PAM_AUTH_ERR);
    const std::string log = read_file(g->daemon->log_path());
    if (!contains(log, "changed (unicodePwd)")) fail_msg("AD was not recognised: %s", g->daemon->log_path().c_str());
    for (const char* pw : {"Walter-Passw0rd!", "Walter-Newpass1!"})
        if (contains(log, pw)) fail_msg("the daemon log holds a password (%s)", pw);
}

// pwdLastSet 0 (data 773): the user cannot bind, so the service account performs the change
// (AD grants User-Change-Password to Everyone; the old value deleted is the proof).
void must_change_flow(void**) {
    PamCall c = call_for(*g->daemon, "mustchange",
                         {"Mustchange-Passw0rd!", "Mustchange-Passw0rd!", "Mustchange-New1!", "Mustchange-New1!"});
    c.change_expired = true;
    auto o = pam_login(c);
    expect_pam("mustchange: account", o.acct_mgmt, PAM_NEW_AUTHTOK_REQD);
    expect_pam("mustchange changes the password", o.chauthtok, PAM_SUCCESS);
    o = login("mustchange", "Mustchange-New1!");
    expect_pam("mustchange, new password", o.authenticate, PAM_SUCCESS);
    expect_pam("mustchange, new password: account", o.acct_mgmt, PAM_SUCCESS);
    expect_pam("mustchange, old password", login("mustchange", "Mustchange-Passw0rd!").authenticate, PAM_AUTH_ERR);
}

// The domain's policy refuses a short password: AD's 0000052D reaches the user in words.
void policy_refusal(void**) {
    samba_tool({"domain", "passwordsettings", "set", "--min-pwd-length=14"});
    auto o = passwd(*g->daemon, "bob", "Bob-Passw0rd!", "Bob-Short1!");
    samba_tool({"domain", "passwordsettings", "set", "--min-pwd-length=1"});
    expect_pam("bob, too short for the domain", o.chauthtok, PAM_AUTHTOK_ERR);
    expect_said("bob, too short", o, "password policy");
    expect_said("bob, too short", o, "too short");
    expect_pam("bob unchanged", login("bob", "Bob-Passw0rd!").authenticate, PAM_SUCCESS);
}

// Over plain ldap:// (allowed here for logins: loopback) the change is refused: AD's
// unicodePwd must never travel in clear text.
void refused_without_tls(void**) {
    std::string dir = fresh_dir("plain");
    Daemon plain(dir, config(dir, dc("AD_LDAP_URI")));
    auto o = passwd(plain, "nina", "Nina-Passw0rd!", "Nina-Newpass1!");
    expect_pam("nina over ldap://", o.chauthtok, PAM_AUTHTOK_ERR);
    expect_said("nina over ldap://", o, "encrypted connection");
    expect_pam("nina unchanged", login("nina", "Nina-Passw0rd!").authenticate, PAM_SUCCESS);
}

}  // namespace

int main() {
    if (::geteuid() != 0) {
        std::printf("1..0 # SKIP Samba's AD DC listens on 389/636: needs root\n");
        return 77;
    }
    require_program("samba");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roles),
        cmocka_unit_test(account_states),
        cmocka_unit_test(change_over_ldaps),
        cmocka_unit_test(must_change_flow),
        cmocka_unit_test(policy_refusal),
        cmocka_unit_test(refused_without_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
