// SPDX-License-Identifier: GPL-3.0-or-later
// Big directories on a real Samba AD DC (tests/fixtures/samba.sh; README "Samba AD DC"):
// LDAP_MATCHING_RULE_IN_CHAIN for nested_active_directory, AD range retrieval of a 3,000-member
// group (Samba answers explicit member;range=... requests; it never cuts a plain read), the
// referrals of a subtree search from the domain root ignored, objectSid in text in `explain`.
// Samba listens on the fixed ports 389/636: meson runs this program alone (is_parallel false).
#include "cmocka.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <security/pam_appl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.hpp"
#include "pam_driver.hpp"

using namespace cvat::test;

namespace {

// The DC from samba.sh, stopped by the script (by PID) when the program ends.
struct Dc {
    TempDir tmp;
    std::string dir;
    std::string env_text;
    std::string get(const std::string& key) const {
        for (std::size_t at = 0; at < env_text.size();) {
            std::size_t end = env_text.find('\n', at);
            if (end == std::string::npos) end = env_text.size();
            std::string line = env_text.substr(at, end - at);
            if (line.rfind(key + "=", 0) == 0) {
                std::string v = line.substr(key.size() + 1);
                if (v.size() >= 2 && (v.front() == '\'' || v.front() == '"')) v = v.substr(1, v.size() - 2);
                return v;
            }
            at = end + 1;
        }
        return {};
    }
    std::string script() const { return env_or("CVAT_FIXTURES", "tests/fixtures") + "/samba.sh"; }
    ~Dc() { run_program({"/bin/bash", script(), "stop", dir}, {}, 60); }
};
Dc* g = nullptr;
int counter = 0;

std::string users() { return "CN=Users," + g->get("AD_BASE"); }

// stdout and stderr of a shell command.
std::string run_output(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (p == nullptr) fail_msg("popen %s", cmd.c_str());
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    ::pclose(p);
    return out;
}

void expect_line(const std::string& out, const std::string& text) {
    if (!contains(out, text)) fail_msg("no \"%s\" in:\n%s", text.c_str(), out.c_str());
}

// ldapmodify over LDAPS as Administrator.
void modify_as_admin(const std::string& ldif) {
    std::string file = g->tmp.path() + "/change" + std::to_string(++counter) + ".ldif";
    write_file(file, ldif, 0600);
    std::string cmd = "LDAPTLS_CACERT=" + g->get("AD_CA_FILE") + " LDAPTLS_REQCERT=demand timeout 60 ldapmodify -x -H " +
                      g->get("AD_LDAPS_URI") + " -D '" + g->get("AD_ADMIN_DN") + "' -w '" + g->get("AD_ADMIN_PW") +
                      "' -f " + file;
    std::string out = run_output(cmd);
    if (out.find("ldap_") != std::string::npos && out.find("modifying") == std::string::npos)
        fail_msg("ldapmodify: %s", out.c_str());
}

struct Login {
    std::unique_ptr<Daemon> daemon;
    std::string dir;
    PamOutcome operator()(const std::string& user, const std::string& password) const {
        PamCall call;
        call.confdir = dir;
        call.user = user;
        call.answers = {password};
        call.module_args = "socket=" + daemon->socket() + " timeout=30";
        return pam_login(call);
    }
    std::string log() const { return read_file(daemon->log_path()); }
    std::string explain(const std::string& user) const {
        return run_output(env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + daemon->socket() + " explain " + user);
    }
};

// nested_active_directory against the DC over LDAPS, CVAT's AD example role groups.
Login start(const std::string& default_role, const std::string& extra,
            const std::string& user_base = "") {
    Login l;
    l.dir = g->tmp.path() + "/d" + std::to_string(++counter);
    ::mkdir(l.dir.c_str(), 0700);
    write_file(l.dir + "/bind_password", g->get("AD_BIND_PW") + "\n", 0600);
    const std::string u = users();
    std::string y = "helper:\n"
                    "  socket: @SOCKET@\n"
                    "  log_level: debug\n"
                    "  verdict_ttl: 0\n"
                    "  cache_dir: " + l.dir + "/cache\n"
                    "ldap:\n"
                    "  server_uri: [" + g->get("AD_LDAPS_URI") + "]\n"
                    "  tls: {ca_file: " + g->get("AD_CA_FILE") + ", require_cert: true}\n"
                    "  bind_dn: \"" + g->get("AD_BIND_DN") + "\"\n"
                    "  bind_password_file: " + l.dir + "/bind_password\n"
                    + cvat_ad_example(u, user_base) +
                    "  default_role: " + default_role + "\n"
                    "  connect_timeout: 5\n"
                    "  timeout: 20\n" + extra;
    l.daemon = std::make_unique<Daemon>(l.dir, y);
    return l;
}

void expect_role(const Login& l, const std::string& user, const std::string& password, const std::string& role) {
    auto o = l(user, password);
    if (o.authenticate != PAM_SUCCESS || o.acct_mgmt != PAM_SUCCESS)
        fail_msg("%s: PAM %d/%d (daemon log %s)", user.c_str(), o.authenticate, o.acct_mgmt, l.daemon->log_path().c_str());
    auto it = o.env.find("CVAT_ROLE");
    std::string got = it == o.env.end() ? "" : it->second;
    if (got != role)
        fail_msg("%s: CVAT_ROLE \"%s\", want \"%s\" (daemon log %s)", user.c_str(), got.c_str(), role.c_str(),
                 l.daemon->log_path().c_str());
}

// --- tests -----------------------------------------------------------------------------------

// nestor: Nest L1 -> L2 -> L3 -> CVAT Admins, found by one in-chain search; explain shows the
// SID in text.
void in_chain_and_sid(void**) {
    Login l = start("user", "");
    expect_role(l, "nestor", "Nestor-Passw0rd!", "admin");
    expect_role(l, "bob", "Bob-Passw0rd!", "user");
    expect_role(l, "nina", "Nina-Passw0rd!", "user");
    std::string out = l.explain("nestor");
    expect_line(out, "groups by LDAP_MATCHING_RULE_IN_CHAIN (Active Directory)");
    expect_line(out, "1.2.840.113556.1.4.1941");
    expect_line(out, "CN=Nest L3," + users() + " (member at some nesting level, in chain)");
    expect_line(out, "role: admin");
    expect_line(out, "objectSid: " + g->get("AD_DOMAIN_SID") + "-");
    expect_line(out, "objectGUID: ");
    expect_line(out, "immutable id: sid:" + g->get("AD_DOMAIN_SID") + "-");
    // A lower max_nesting asks for a depth bound in-chain cannot keep: the walk, which stops.
    Login shallow = start("user", "  max_nesting: 2\n");
    expect_role(shallow, "nestor", "Nestor-Passw0rd!", "worker");  // incomplete: not default_role
    out = shallow.explain("nestor");
    assert_false(contains(out, "LDAP_MATCHING_RULE_IN_CHAIN"));
}

// Big Group (3,000 members) in CVAT Workers, and Big Inner (nina) in Big Group.
void big_group_ranges(void**) {
    const std::string u = users();
    modify_as_admin("dn: CN=Big Inner," + u + "\nchangetype: add\nobjectClass: group\nsAMAccountName: Big Inner\n"
                    "member: CN=Nina Nogroup," + u + "\n\n"
                    "dn: CN=Big Group," + u + "\nchangetype: modify\nadd: member\nmember: CN=Big Inner," + u + "\n\n"
                    "dn: CN=CVAT Workers," + u + "\nchangetype: modify\nadd: member\nmember: CN=Big Group," + u + "\n\n");
    {
        Login l = start("none", "");
        expect_role(l, "big2999", "Big-Passw0rd!", "worker");  // in chain: Big Group -> CVAT Workers
        expect_role(l, "nina", "Nina-Passw0rd!", "worker");    // Big Inner -> Big Group -> CVAT Workers
    }
    {
        // max_groups 1 cuts the in-chain list: the role groups are asked from the top down,
        // which reads Big Group's 3,001 members in ranges (0-1499, 1500-2999, 3000-4499).
        Login l = start("none", "  max_groups: 1\n");
        expect_role(l, "nina", "Nina-Passw0rd!", "worker");
        expect_role(l, "big2999", "Big-Passw0rd!", "worker");
        std::string log = l.log();
        expect_line(log, "incomplete: more than max_groups 1 groups");
        expect_line(log, "range retrieval: CN=Big Group," + u + " member;range=1500-2999");
        expect_line(log, "role group check of CN=CVAT Workers," + u);
        std::string out = l.explain("nina");
        expect_line(out, "role group check of CN=CVAT Workers," + u + ": member (member of CN=Big Inner");
        expect_line(out, "role: worker");
    }
}

// user_search from the domain root: Samba adds a referral to CN=Configuration; never followed.
void referrals_ignored(void**) {
    Login l = start("user", "", g->get("AD_BASE"));
    expect_role(l, "alice", "Alice-Passw0rd!", "admin");
    expect_line(l.log(), "referral(s) ignored (referrals: false)");
}

int setup(void**) {
    g = new Dc;
    g->dir = g->tmp.path() + "/dc";
    int rc = run_program({"/bin/bash", g->script(), "start", g->dir}, {}, 600);
    if (rc != 0) fail_msg("samba.sh start failed (status %d)", rc);
    g->env_text = read_file(g->dir + "/env");
    if (pid_t pid = static_cast<pid_t>(std::atoi(g->get("SAMBA_PID").c_str())); pid > 0) track_pid(pid);
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

}  // namespace

int main() {
    if (::geteuid() != 0) {
        std::puts("1..0 # SKIP Samba binds 389/636: needs root");
        return 77;
    }
    if (std::system("command -v samba >/dev/null 2>&1 && command -v ldapmodify >/dev/null 2>&1") != 0) {
        std::puts("1..0 # SKIP samba or ldap-utils missing (scripts/install-deps.sh)");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_chain_and_sid),
        cmocka_unit_test(big_group_ranges),
        cmocka_unit_test(referrals_ignored),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
