// SPDX-License-Identifier: GPL-3.0-or-later
// LDAP logins through the whole real path: libpam → pam_cvat.so → cvat-authd → slapd
// (tests/fixtures: an AD-shaped and a FreeIPA-shaped tree, users in README.md there).
// Covers roles per group_type (nesting three deep, a cycle), passwords right, wrong and empty,
// hostile user names (checked against what slapd logged), disabled accounts, default_role,
// require_role, an unreachable directory, failover past a dead port and past a server that
// accepts TCP but never answers, LDAPS and StartTLS with the right and a wrong CA.
#include "cmocka.hpp"

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.hpp"
#include "pam_driver.hpp"

using namespace cvat::test;

namespace {

// Seconds (the config's unit). A dead server must cost about kConnectTimeout, never
// kOpTimeout: the two differ enough that a wrong wait shows in the timings below.
constexpr double kConnectTimeout = 1.0;
constexpr double kOpTimeout = 6.0;
// Slack for a PAM transaction on a loaded CI machine (search + bind + group searches).
constexpr double kSlack = 1.0;

const char* kAdBase = "dc=ad,dc=example,dc=test";
const char* kIpaBase = "dc=ipa,dc=example,dc=test";

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> ad;   // with TLS, slapd logs every operation (SLAPD_DEBUG=stats)
    std::unique_ptr<Slapd> ipa;  // with TLS
};
World* g = nullptr;

std::string fresh_dir(const std::string& name) { return g->tmp.fresh(name); }


std::string env_of(const PamOutcome& o, const char* key) {
    auto it = o.env.find(key);
    return it == o.env.end() ? "" : it->second;
}

// What the test asks of the ldap: section.
struct LdapSpec {
    bool ipa = false;
    std::string uris;                    // YAML list items, default: the tree's ldaps:// URI
    std::string group_type = "nested_active_directory";
    std::string default_role = "user";
    std::string bind_password;           // default: the fixture's
    bool start_tls = false;
    std::string ca_file;                 // default: the fixture's CA
    std::string extra;                   // more ldap: keys, each "  key: value\n"
};

// auth_config.yml for `spec`, written by Daemon into `dir`. The role group DNs are spelled
// unlike slapd spells them (case, spaces after commas): matching needs DN normalisation.
std::string config(const std::string& dir, const LdapSpec& spec) {
    const Slapd& s = spec.ipa ? *g->ipa : *g->ad;
    std::string pw = !spec.bind_password.empty() ? spec.bind_password
                                                 : (spec.ipa ? "Bind-Secret-2" : "Bind-Secret-1");
    write_file(dir + "/bind_password", pw + "\n", 0600);
    std::string uris = spec.uris.empty() ? s.ldaps_uri() : spec.uris;
    std::string ca = spec.ca_file.empty() ? s.ca_file() : spec.ca_file;
    // verdict_ttl 0: every login here must reach the directory (the cache is test_nss's).
    std::string y = "helper:\n"
                    "  socket: @SOCKET@\n"
                    "  log_level: debug\n"
                    "  verdict_ttl: 0\n"
                    "ldap:\n"
                    "  server_uri: [" + uris + "]\n"
                    "  tls: {ca_file: " + ca + ", require_cert: true}\n"
                    "  bind_password_file: " + dir + "/bind_password\n"
                    "  group_type: " + spec.group_type + "\n"
                    "  default_role: " + spec.default_role + "\n"
                    "  connect_timeout: " + std::to_string(kConnectTimeout) + "\n"
                    "  timeout: " + std::to_string(kOpTimeout) + "\n";
    if (spec.start_tls) y += "  start_tls: true\n";
    if (!spec.ipa) {
        std::string u = std::string("CN=Users,") + kAdBase;
        y += "  bind_dn: \"CN=cvat_bind," + u + "\"\n"
             "  user_search: {base: \"" + u + "\", scope: subtree, filter: \"(sAMAccountName=%(user)s)\"}\n"
             "  group_search: {base: \"" + u + "\", scope: subtree, filter: \"(objectClass=group)\"}\n"
             "  user_attr_map: {user_name: sAMAccountName, first_name: givenName, last_name: sn, email: mail}\n"
             "  role_groups:\n"
             "    admin: [\"CN=CVAT Admins, CN=Users, DC=AD, DC=Example, DC=Test\"]\n"
             "    user: [\"cn=cvat users,cn=users,dc=ad,dc=example,dc=test\"]\n"
             "    worker: [\"CN=CVAT\\\\20Workers,CN=Users,DC=ad,DC=example,DC=test\"]\n";
    } else {
        bool posix = spec.group_type == "posix_group";
        std::string groups = std::string(posix ? "cn=groups,cn=compat," : "cn=groups,cn=accounts,") + kIpaBase;
        y += std::string("  bind_dn: \"uid=cvat_bind,cn=sysaccounts,cn=etc,") + kIpaBase + "\"\n"
             "  user_search: {base: \"cn=users,cn=accounts," + kIpaBase + "\", scope: onelevel, filter: \"(&(objectClass=posixAccount)(uid=%(user)s))\"}\n"
             "  group_search: {base: \"" + groups + "\", scope: subtree, filter: \"(objectClass=" +
             (posix ? "posixGroup" : "groupOfNames") + ")\"}\n"
             "  user_attr_map: {user_name: uid}\n"
             "  role_groups:\n"
             "    admin: [\"CN=cvat-admins," + groups + "\"]\n"
             "    user: [\"cn=CVAT-Users, " + groups + "\"]\n"
             "    worker: [\"cn=cvat-workers," + groups + "\"]\n";
    }
    return y + spec.extra;
}

struct Login {
    std::unique_ptr<Daemon> daemon;
    std::string dir;

    PamOutcome operator()(const std::string& user, const std::string& password,
                          const std::string& args = "") const {
        PamCall call;
        call.confdir = dir;
        call.user = user;
        call.answers = {password};
        call.module_args = "socket=" + daemon->socket() + " timeout=30 " + args;
        return pam_login(call);
    }
};

Login start(const std::string& name, const LdapSpec& spec) {
    Login l;
    l.dir = fresh_dir(name);
    l.daemon = std::make_unique<Daemon>(l.dir, config(l.dir, spec));
    return l;
}

void expect_pam(const char* what, int got, int want) {
    if (got != want)
        fail_msg("%s: PAM code %d (%s), want %d (%s)", what, got, pam_strerror(nullptr, got), want,
                 pam_strerror(nullptr, want));
}

// A successful login: auth and account pass, PAM_USER and CVAT_ROLE as given.
void expect_role(const Login& l, const std::string& user, const std::string& password,
                 const std::string& pam_user, const std::string& role) {
    auto o = l(user, password);
    std::string what = user + " logs in";
    expect_pam(what.c_str(), o.authenticate, PAM_SUCCESS);
    expect_pam((user + " account").c_str(), o.acct_mgmt, PAM_SUCCESS);
    if (o.pam_user != pam_user)
        fail_msg("%s: PAM_USER \"%s\", want \"%s\"", user.c_str(), o.pam_user.c_str(), pam_user.c_str());
    if (env_of(o, "CVAT_ROLE") != role)
        fail_msg("%s: CVAT_ROLE \"%s\", want \"%s\" (daemon log %s)", user.c_str(), env_of(o, "CVAT_ROLE").c_str(),
                 role.c_str(), l.daemon->log_path().c_str());
}

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
    return n;
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string ad_slapd_log() { return read_file(g->tmp.path() + "/ad/slapd.log"); }

// slapd logs a search filter with its values normalised (case folded, hex escapes upper-case):
// compare without case.
bool slapd_saw_filter(const std::string& log, const std::string& filter) {
    return contains(lower(log), lower("filter=\"" + filter + "\""));
}

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


// --- setup ---------------------------------------------------------------------------------

int setup(void**) {
    g = new World;
    ::setenv("SLAPD_DEBUG", "stats", 1);  // the AD slapd logs each search filter and bind
    g->ad = std::make_unique<Slapd>(g->tmp.path() + "/ad", "ad", true);
    ::unsetenv("SLAPD_DEBUG");
    g->ipa = std::make_unique<Slapd>(g->tmp.path() + "/ipa", "ipa", true);
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

// --- AD tree -------------------------------------------------------------------------------

// Every AD user's role under nested_active_directory over LDAPS: direct groups, highest wins,
// nesting three deep, a cycle, DNs with an escaped comma and filter metacharacters, the
// default role, the canonical name from sAMAccountName, and the exported attributes.
void ad_nested_roles(void**) {
    Login l = start("adnested", {});
    expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");
    expect_role(l, "bob", "b0b-p\xc3\xa4ssw0rd ok", "bob", "user");
    expect_role(l, "walter", "walter-Passw0rd", "walter", "worker");
    expect_role(l, "dora", "dora-Passw0rd", "dora", "admin");       // worker + admin
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin"); // user → L1 → L2 → admins
    expect_role(l, "cyril", "cyril-Passw0rd", "cyril", "worker");   // A ↔ B → workers
    expect_role(l, "jsmith", "jsmith-Passw0rd", "jsmith", "worker");
    expect_role(l, "eve", "eve-Passw0rd", "eve", "user");
    expect_role(l, "nina", "nina-Passw0rd", "nina", "user");        // default_role
    expect_role(l, "ALICE", "alice-Passw0rd", "alice", "admin");    // canonical name

    auto o = l("alice", "alice-Passw0rd");
    assert_string_equal(env_of(o, "CVAT_EMAIL").c_str(), "alice@ad.example.test");
    assert_string_equal(env_of(o, "CVAT_FIRST_NAME").c_str(), "Alice");
    assert_string_equal(env_of(o, "CVAT_LAST_NAME").c_str(), "Admin");
    assert_string_equal(env_of(o, "CVAT_IDP").c_str(), "ldap");
}

// Without nesting, the nested and cycle users are only in groups that carry no role.
void ad_flat_and_member_of(void**) {
    for (const char* type : {"active_directory", "member_of"}) {
        LdapSpec spec;
        spec.group_type = type;
        spec.default_role = "worker";
        Login l = start(type, spec);
        expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");
        expect_role(l, "dora", "dora-Passw0rd", "dora", "admin");
        expect_role(l, "bob", "b0b-p\xc3\xa4ssw0rd ok", "bob", "user");
        expect_role(l, "jsmith", "jsmith-Passw0rd", "jsmith", "worker");
        expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "worker");  // default, not admin
        expect_role(l, "cyril", "cyril-Passw0rd", "cyril", "worker");
    }
    // With default_role user the flat walk shows the difference for cyril too.
    LdapSpec spec;
    spec.group_type = "active_directory";
    Login l = start("adflat", spec);
    expect_role(l, "cyril", "cyril-Passw0rd", "cyril", "user");
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "user");
}

// Wrong password, empty password (refused before any bind reaches slapd), unknown user.
void ad_passwords(void**) {
    Login l = start("adpw", {});
    auto o = l("alice", "alice-Passw0rd-not");
    expect_pam("wrong password", o.authenticate, PAM_AUTH_ERR);
    o = l("alice", "ALICE-PASSW0RD");
    expect_pam("password in other case", o.authenticate, PAM_AUTH_ERR);
    o = l("bob", "b0b-passw0rd ok");  // the ASCII look-alike of bob's UTF-8 password
    expect_pam("look-alike password", o.authenticate, PAM_AUTH_ERR);

    const std::string alice_bind = "BIND dn=\"cn=Alice Admin,cn=Users,dc=ad,dc=example,dc=test\" method=128";
    std::size_t binds_before = count(ad_slapd_log(), alice_bind);
    o = l("alice", "");
    expect_pam("empty password", o.authenticate, PAM_AUTH_ERR);
    assert_true(env_of(o, "CVAT_ROLE").empty());
    assert_int_equal(count(ad_slapd_log(), alice_bind), binds_before);

    // method=auto lets an empty answer through pam_cvat (it may mean "device login"): the
    // daemon's LDAP backend must refuse it itself, again without a bind.
    o = l("alice", "", "method=auto");
    expect_pam("empty password, method=auto", o.authenticate, PAM_AUTH_ERR);
    assert_int_equal(count(ad_slapd_log(), alice_bind), binds_before);

    o = l("nosuchuser", "whatever");
    expect_pam("unknown user", o.authenticate, PAM_USER_UNKNOWN);
    // An account without a password in the directory is not a way in either.
    o = l("cvat_bind", "");
    expect_pam("bind account, empty password", o.authenticate, PAM_AUTH_ERR);
}

// Hostile names never widen the search: each is refused, and slapd saw only escaped filters.
void ad_hostile_names(void**) {
    Login l = start("adhostile", {});
    struct Case {
        std::string name;
        std::string escaped;  // as slapd logs the filter value; empty: must not reach slapd
    };
    const Case cases[] = {
        {"*", "(sAMAccountName=\\2A)"},
        {"al*", "(sAMAccountName=al\\2A)"},
        {")(uid=*", "(sAMAccountName=\\29\\28uid=\\2A)"},
        {"*)(sAMAccountName=alice", "(sAMAccountName=\\2A\\29\\28sAMAccountName=alice)"},
        {"alice)(|(sAMAccountName=*", "(sAMAccountName=alice\\29\\28|\\28sAMAccountName=\\2A)"},
        {"\\", "(sAMAccountName=\\5C)"},
        {"(", "(sAMAccountName=\\28)"},
        {"alice\\2a", "(sAMAccountName=alice\\5C2a)"},
        {"j\xc3\xb6rg", "(sAMAccountName=j\\C3\\B6rg)"},
        {std::string(10 * 1024, 'a'), ""},
        {std::string(200, '*'), ""},
    };
    for (const Case& c : cases) {
        auto o = l(c.name, "alice-Passw0rd");
        if (o.authenticate == PAM_SUCCESS)
            fail_msg("hostile name \"%.40s\" logged in as \"%s\"", c.name.c_str(), o.pam_user.c_str());
        expect_pam(("hostile name " + c.name.substr(0, 40)).c_str(), o.authenticate, PAM_USER_UNKNOWN);
        std::string log = ad_slapd_log();
        if (!c.escaped.empty() && !slapd_saw_filter(log, c.escaped))
            fail_msg("slapd never saw the escaped filter %s for \"%.40s\"", c.escaped.c_str(), c.name.c_str());
    }
    // 200 stars: without escaping this would be a valid wildcard filter; it never got there.
    std::string log = lower(ad_slapd_log());
    assert_false(contains(log, "(samaccountname=*)"));
    assert_false(contains(log, "(samaccountname=al*)"));
    assert_false(contains(log, "samaccountname=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));

    // A NUL byte cannot cross the PAM API (C strings): libpam cuts the name there, so the part
    // after it never reaches the directory. "nosuch\0alice" must not become alice.
    auto o = l(std::string("nosuch\0alice", 12), "alice-Passw0rd");
    expect_pam("name with NUL", o.authenticate, PAM_USER_UNKNOWN);
    assert_true(o.pam_user != "alice");
    assert_true(slapd_saw_filter(ad_slapd_log(), "(sAMAccountName=nosuch)"));
}

// A disabled account: refused after the password is proven, and a wrong password still says
// only "wrong password" (the flag is no oracle).
void ad_disabled(void**) {
    Login l = start("addisabled", {});
    auto o = l("dave", "dave-Passw0rd");
    expect_pam("disabled, right password", o.authenticate, PAM_PERM_DENIED);
    assert_true(o.env.count("CVAT_ROLE") == 0 || env_of(o, "CVAT_ROLE").empty());
    o = l("dave", "wrong");
    expect_pam("disabled, wrong password", o.authenticate, PAM_AUTH_ERR);
}

// default_role none refuses users in no role group; others are unaffected.
void ad_default_role_none(void**) {
    LdapSpec spec;
    spec.default_role = "none";
    Login l = start("adnone", spec);
    auto o = l("nina", "nina-Passw0rd");
    expect_pam("no role group, default none", o.authenticate, PAM_PERM_DENIED);
    expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin");
    // Not a role source: with a flat walk nestor is in no role group either.
    spec.group_type = "active_directory";
    Login flat = start("adnoneflat", spec);
    o = flat("nestor", "nestor-Passw0rd");
    expect_pam("nested user, flat walk, default none", o.authenticate, PAM_PERM_DENIED);
}

// require_role=admin (an admin-only location): workers and users pass auth, fail account.
void ad_require_role(void**) {
    Login l = start("adrequire", {});
    for (const char* u : {"walter", "bob", "nina"}) {
        std::string pw = std::string(u) == "bob" ? "b0b-p\xc3\xa4ssw0rd ok" : std::string(u) + "-Passw0rd";
        auto o = l(u, pw, "require_role=admin");
        expect_pam((std::string(u) + " auth").c_str(), o.authenticate, PAM_SUCCESS);
        expect_pam((std::string(u) + " account, require_role=admin").c_str(), o.acct_mgmt, PAM_PERM_DENIED);
    }
    for (const char* u : {"alice", "dora", "nestor"}) {
        auto o = l(u, std::string(u) + "-Passw0rd", "require_role=admin");
        expect_pam((std::string(u) + " account, require_role=admin").c_str(), o.acct_mgmt, PAM_SUCCESS);
    }
    auto o = l("walter", "walter-Passw0rd", "require_role=worker");
    expect_pam("walter, require_role=worker", o.acct_mgmt, PAM_SUCCESS);
    o = l("bob", "b0b-p\xc3\xa4ssw0rd ok", "require_role=worker");
    expect_pam("bob (user), require_role=worker", o.acct_mgmt, PAM_SUCCESS);
}

// A wrong service password is a configuration problem: unavailable, not the user's fault.
void ad_bad_service_password(void**) {
    LdapSpec spec;
    spec.bind_password = "not-the-bind-password";
    Login l = start("adbadbind", spec);
    auto o = l("alice", "alice-Passw0rd");
    expect_pam("service bind refused", o.authenticate, PAM_AUTHINFO_UNAVAIL);
    assert_true(contains(read_file(l.daemon->log_path()), "failed: invalid credentials"));
}

// A filter that matches two entries is ambiguous: refused as unknown, as django-auth-ldap does.
void ad_ambiguous_filter(void**) {
    LdapSpec spec;
    Login l = start("adplain", spec);
    // Swap the user filter for one that also matches every disabled account.
    std::string dir = fresh_dir("adambig");
    std::string yaml = config(dir, spec);
    const std::string from = "filter: \"(sAMAccountName=%(user)s)\"";
    yaml.replace(yaml.find(from), from.size(),
                 "filter: \"(&(objectClass=user)(|(sAMAccountName=%(user)s)(userAccountControl=514)))\"");
    Login ambiguous;
    ambiguous.dir = dir;
    ambiguous.daemon = std::make_unique<Daemon>(dir, yaml);
    auto o = ambiguous("alice", "alice-Passw0rd");  // alice and dave match
    expect_pam("ambiguous filter", o.authenticate, PAM_USER_UNKNOWN);
    assert_true(contains(read_file(ambiguous.daemon->log_path()), "ambiguous"));
    // The same filter with a name that matches only dave's entry is not ambiguous.
    o = ambiguous("dave", "dave-Passw0rd");
    expect_pam("one match (disabled)", o.authenticate, PAM_PERM_DENIED);
    // And the plain filter still logs alice in.
    expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");
}

// max_nesting bounds the walk: nestor's admin group is two levels above his direct group. A
// walk cut short never hands out default_role (a group not seen might be a worker group):
// without a matched role the user is a worker.
void ad_max_nesting(void**) {
    LdapSpec spec;
    spec.extra = "  max_nesting: 1\n";
    Login l = start("adnest1", spec);
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "worker");
    expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");  // direct: unaffected
    expect_role(l, "nina", "nina-Passw0rd", "nina", "user");      // complete walk: default_role
    assert_true(contains(read_file(l.daemon->log_path()), "incomplete: groups nest deeper than max_nesting 1"));
    spec.extra = "  max_nesting: 2\n";
    Login l2 = start("adnest2", spec);
    expect_role(l2, "nestor", "nestor-Passw0rd", "nestor", "admin");
    expect_role(l2, "cyril", "cyril-Passw0rd", "cyril", "worker");
}

// Users in 600 groups: more than one answer may hold (slapd, like AD, sends at most 500 per
// search and only paging gets the rest). bob's Bulk 0599 is a member of CVAT Admins: paged
// searches and batched nested queries must find it. nina is in all the others, none of which
// leads to a role group.
void many_groups(void**) {
    require_program("ldapmodify");
    Slapd bulk(g->tmp.path() + "/bulk", "ad", true);
    std::string ldif;
    const std::string u = std::string(",CN=Users,") + kAdBase;
    for (int i = 0; i < 600; ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "Bulk %04d", i);
        ldif += "dn: CN=" + std::string(name) + u + "\nobjectClass: group\ncn: " + name + "\nmember: CN=Bob User" + u +
                (i < 599 ? "\nmember: CN=Nina Nogroup" + u : std::string()) + "\n\n";
    }
    ldif += "dn: CN=CVAT Admins" + u + "\nchangetype: modify\nadd: member\nmember: CN=Bulk 0599" + u + "\n\n";
    std::string file = g->tmp.path() + "/bulk.ldif";
    write_file(file, ldif, 0600);
    std::string cmd = "ldapmodify -a -x -H " + bulk.uri() + " -D " + bulk.get("LDAP_ADMIN_DN") + " -w " +
                      bulk.get("LDAP_ADMIN_PW") + " -f " + file + " >/dev/null";
    if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify of 600 groups failed");

    for (const char* type : {"nested_active_directory", "active_directory"}) {
        LdapSpec spec;
        spec.uris = bulk.ldaps_uri();
        spec.ca_file = bulk.ca_file();
        spec.group_type = type;
        Login l = start("bulk", spec);
        bool nested = std::string(type) == "nested_active_directory";
        // nested: admin through Bulk 0599; flat: bob's own CVAT Users among 602 groups
        expect_role(l, "bob", "b0b-p\xc3\xa4ssw0rd ok", "bob", nested ? "admin" : "user");
        expect_role(l, "nina", "nina-Passw0rd", "nina", "user");  // complete list: default_role
        assert_false(contains(read_file(l.daemon->log_path()), "incomplete"));
    }
    // max_groups cuts the list; the role groups are then asked from the top down: bob is
    // found in CVAT Admins through Bulk 0599, nina in no role group (so default_role stands).
    LdapSpec spec;
    spec.uris = bulk.ldaps_uri();
    spec.ca_file = bulk.ca_file();
    spec.extra = "  max_groups: 550\n";
    Login capped = start("bulkcap", spec);
    expect_role(capped, "bob", "b0b-p\xc3\xa4ssw0rd ok", "bob", "admin");
    expect_role(capped, "nina", "nina-Passw0rd", "nina", "user");
    std::string log = read_file(capped.daemon->log_path());
    assert_true(contains(log, "incomplete: more than max_groups 550 groups"));
    assert_true(contains(log, "role group check of CN=CVAT Admins"));
}


// --- big directories: 5,000 groups, a group of 20,000 members, a strict size limit -----------

// bob and nina in 5,000 groups (Big 0001..5000; nina not in Big 4995), Big 4995 and Huge (walter
// and 20,000 members more) in Big Admins. Role groups: admin Big Admins, user CVAT Users,
// worker Big 4990 (created near the end, so a cut list misses it). One ldapmodify.
void load_big_tree(const Slapd& s) {
    const std::string u = std::string(",CN=Users,") + kAdBase;
    std::string ldif;
    ldif.reserve(3u << 20);
    char name[32];
    for (int i = 1; i <= 5000; ++i) {
        std::snprintf(name, sizeof(name), "Big %04d", i);
        ldif += "dn: CN=" + std::string(name) + u + "\nobjectClass: group\ncn: " + name + "\nmember: CN=Bob User" + u +
                "\n" + (i != 4995 ? "member: CN=Nina Nogroup" + u + "\n" : std::string()) + "\n";
    }
    ldif += "dn: CN=Huge" + u + "\nobjectClass: group\ncn: Huge\nmember: CN=Walter Worker" + u + "\n";
    for (int i = 1; i <= 20000; ++i) {
        std::snprintf(name, sizeof(name), "Ghost %05d", i);
        ldif += "member: CN=" + std::string(name) + u + "\n";
    }
    ldif += "\ndn: CN=Big Admins" + u + "\nobjectClass: group\ncn: Big Admins\nmember: CN=Big 4995" + u +
            "\nmember: CN=Huge" + u + "\n\n";
    std::string file = s.get("LDAP_PORT") + "-big.ldif";
    file = g->tmp.path() + "/" + file;
    write_file(file, ldif, 0600);
    std::string cmd = "ldapmodify -a -x -H " + s.uri() + " -D " + s.get("LDAP_ADMIN_DN") + " -w " +
                      s.get("LDAP_ADMIN_PW") + " -f " + file + " >/dev/null";
    if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify of 5,000 groups and a 20,000-member group failed");
}

// config() for the big tree: its own role groups.
Login start_big(const std::string& name, const Slapd& s, const std::string& type, const std::string& default_role,
                const std::string& extra) {
    LdapSpec spec;
    spec.uris = s.ldaps_uri();
    spec.ca_file = s.ca_file();
    spec.group_type = type;
    spec.default_role = default_role;
    Login l;
    l.dir = fresh_dir(name);
    std::string y = config(l.dir, spec);
    const std::string u = std::string("CN=Users,") + kAdBase;
    y.erase(y.find("  role_groups:\n"));
    y += "  role_groups:\n"
         "    admin: [\"CN=Big Admins," + u + "\"]\n"
         "    user: [\"CN=CVAT Users," + u + "\"]\n"
         "    worker: [\"CN=Big 4990," + u + "\"]\n" + extra;
    l.daemon = std::make_unique<Daemon>(l.dir, y);
    return l;
}

const char* kBobPw = "b0b-p\xc3\xa4ssw0rd ok";

// A server whose size limit lets paged searches through (as AD): every group is found.
void five_thousand_groups(void**) {
    require_program("ldapmodify");
    Slapd big(g->tmp.path() + "/big", "ad", true);
    load_big_tree(big);
    {
        Login l = start_big("bignest", big, "nested_active_directory", "user", "  max_groups: 8192\n");
        expect_role(l, "bob", kBobPw, "bob", "admin");        // Big 4995 -> Big Admins
        expect_role(l, "nina", "nina-Passw0rd", "nina", "worker");  // Big 4990, the 4,990th group
        expect_role(l, "walter", "walter-Passw0rd", "walter", "admin");  // Huge (20,001) -> Big Admins
        assert_false(contains(read_file(l.daemon->log_path()), "incomplete"));
    }
    {
        Login l = start_big("bigflat", big, "active_directory", "user", "  max_groups: 8192\n");
        expect_role(l, "bob", kBobPw, "bob", "user");
        expect_role(l, "nina", "nina-Passw0rd", "nina", "worker");
        expect_role(l, "walter", "walter-Passw0rd", "walter", "user");  // no role group: default_role
        assert_false(contains(read_file(l.daemon->log_path()), "incomplete"));
    }
    {
        // The default max_groups (4096) cuts the list; the role groups asked from the top down
        // still give the right role, and say so.
        Login l = start_big("bigcap", big, "nested_active_directory", "none", "");
        expect_role(l, "bob", kBobPw, "bob", "admin");
        expect_role(l, "nina", "nina-Passw0rd", "nina", "worker");
        std::string log = read_file(l.daemon->log_path());
        assert_true(contains(log, "incomplete: more than max_groups 4096 groups"));
        assert_true(contains(log, "role group check of CN=Big Admins"));
    }
}

// slapd with a plain "sizelimit 500": paged searches end after 500 entries too. The group
// list is incomplete (said, never taken for complete) and the role comes from the role groups.
void strict_size_limit(void**) {
    require_program("ldapmodify");
    ::setenv("SLAPD_SIZELIMIT", "500", 1);
    Slapd strict(g->tmp.path() + "/strict", "ad", true);
    ::unsetenv("SLAPD_SIZELIMIT");
    assert_true(contains(read_file(g->tmp.path() + "/strict/slapd.conf"), "\nsizelimit 500\n"));
    load_big_tree(strict);
    {
        Login l = start_big("strictnest", strict, "nested_active_directory", "none", "  max_groups: 8192\n");
        expect_role(l, "bob", kBobPw, "bob", "admin");
        // nina: not under Big Admins (its 20,000-member Huge read whole), worker by Big 4990
        expect_role(l, "nina", "nina-Passw0rd", "nina", "worker");
        expect_role(l, "walter", "walter-Passw0rd", "walter", "admin");
        std::string log = read_file(l.daemon->log_path());
        assert_true(contains(log, "size limit cut a group search after 500 entries"));
        assert_true(contains(log, "role group check of CN=Big Admins"));
    }
    {
        // Flat: nina's first 500 groups hold no role group; without the check default_role
        // none would refuse her.
        Login l = start_big("strictflat", strict, "active_directory", "none", "  max_groups: 8192\n");
        expect_role(l, "nina", "nina-Passw0rd", "nina", "worker");
        expect_role(l, "bob", kBobPw, "bob", "user");
    }
}

// --- transport: TLS, failover, outage --------------------------------------------------------

void tls_modes(void**) {
    {
        Login l = start("ldaps", {});  // ldaps:// with the fixture's CA
        expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");
    }
    {
        LdapSpec spec;
        spec.uris = g->ad->uri();
        spec.start_tls = true;
        Login l = start("starttls", spec);
        expect_role(l, "walter", "walter-Passw0rd", "walter", "worker");
    }
    for (bool start_tls : {false, true}) {
        LdapSpec spec;
        spec.ca_file = g->ad->get("WRONG_CA_FILE");
        spec.start_tls = start_tls;
        if (start_tls) spec.uris = g->ad->uri();
        Login l = start("wrongca", spec);
        auto o = l("alice", "alice-Passw0rd");
        expect_pam(start_tls ? "StartTLS, wrong CA" : "LDAPS, wrong CA", o.authenticate, PAM_AUTHINFO_UNAVAIL);
        if (o.seconds > kConnectTimeout + kSlack) fail_msg("a TLS refusal took %.2f s", o.seconds);
    }
}

// First server dead (nothing listening, or listening and silent): the second one answers
// within the connect timeout, and the next login does not wait for the dead one again.
void failover(void**) {
    SilentServer silent;
    const int dead_port = free_tcp_port();
    struct Case {
        const char* what;
        std::string first;
        bool start_tls;
    };
    const Case cases[] = {
        {"nothing listening", "ldaps://127.0.0.1:" + std::to_string(dead_port), false},
        {"silent ldaps://", "ldaps://127.0.0.1:" + std::to_string(silent.port()), false},
        {"silent ldap:// with StartTLS", "ldap://127.0.0.1:" + std::to_string(silent.port()), true},
    };
    for (const Case& c : cases) {
        LdapSpec spec;
        spec.start_tls = c.start_tls;
        spec.uris = c.first + ", " + (c.start_tls ? g->ad->uri() : g->ad->ldaps_uri());
        Login l = start("failover", spec);
        auto o = l("alice", "alice-Passw0rd");
        expect_pam(c.what, o.authenticate, PAM_SUCCESS);
        assert_string_equal(env_of(o, "CVAT_ROLE").c_str(), "admin");
        if (o.seconds > kConnectTimeout + kSlack)
            fail_msg("%s: first login took %.2f s (connect timeout %.1f s)", c.what, o.seconds, kConnectTimeout);
        o = l("walter", "walter-Passw0rd");
        expect_pam(c.what, o.authenticate, PAM_SUCCESS);
        if (o.seconds > 0.5 * kConnectTimeout)
            fail_msg("%s: second login took %.2f s: the dead server was tried again", c.what, o.seconds);
    }
    // Only dead servers: unavailable, within one connect timeout per server.
    LdapSpec spec;
    spec.uris = "ldaps://127.0.0.1:" + std::to_string(dead_port) + ", ldaps://127.0.0.1:" +
                std::to_string(silent.port());
    Login l = start("alldead", spec);
    auto o = l("alice", "alice-Passw0rd");
    expect_pam("all servers dead", o.authenticate, PAM_AUTHINFO_UNAVAIL);
    if (o.seconds > 2 * kConnectTimeout + kSlack) fail_msg("all servers dead: %.2f s", o.seconds);
}

// slapd stops: PAM_AUTHINFO_UNAVAIL at once (pooled connections notice); slapd comes back on
// the same port: logins work again without restarting the daemon.
void outage_and_recovery(void**) {
    Slapd own(g->tmp.path() + "/own", "ad", true);
    LdapSpec spec;
    spec.uris = own.ldaps_uri();
    spec.ca_file = own.ca_file();
    Login l = start("outage", spec);
    expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");

    own.stop();
    auto o = l("alice", "alice-Passw0rd");
    expect_pam("slapd stopped", o.authenticate, PAM_AUTHINFO_UNAVAIL);
    if (o.seconds > kConnectTimeout + kSlack) fail_msg("slapd stopped: answer took %.2f s", o.seconds);
    o = l("bob", "b0b-p\xc3\xa4ssw0rd ok");
    expect_pam("slapd still stopped", o.authenticate, PAM_AUTHINFO_UNAVAIL);

    own.restart();
    expect_role(l, "alice", "alice-Passw0rd", "alice", "admin");
    expect_role(l, "walter", "walter-Passw0rd", "walter", "worker");
}

// A private "ad" tree whose slapd logs every operation (SLAPD_DEBUG=stats) in `log`.
struct LoggingSlapd {
    explicit LoggingSlapd(const std::string& name) : log(g->tmp.path() + "/" + name + "/slapd.log") {
        ::setenv("SLAPD_DEBUG", "stats", 1);
        slapd = std::make_unique<Slapd>(g->tmp.path() + "/" + name, "ad", true);
        ::unsetenv("SLAPD_DEBUG");
    }
    // The group searches it answered for the member CN=<cn>,CN=Users,<base>.
    std::size_t member_searches(const std::string& cn) const {
        return count(lower(read_file(log)), lower("(member=" + cn + ",cn=Users," + kAdBase + ")"));
    }
    std::string log;
    std::unique_ptr<Slapd> slapd;
};

// ldap.group_cache_ttl: the groups above a user's direct groups are kept for the TTL (one group
// search per login instead of the whole walk); the direct groups are asked at every login; a
// change higher up shows after the TTL, at once after `cvat-authctl cache expire`, and at once
// with group_cache_ttl 0. Counted in slapd's own log of the searches it answered.
void nested_group_cache(void**) {
    require_program("ldapmodify");
    LoggingSlapd logged("gcache");
    Slapd& own = *logged.slapd;
    const std::string u = std::string(",cn=Users,") + kAdBase;
    const std::string& log = logged.log;
    auto searches = [&](const std::string& cn) { return logged.member_searches(cn); };
    auto modify = [&](const char* op) {
        const std::string file = g->tmp.path() + "/gcache.ldif";
        write_file(file, "dn: CN=CVAT Admins" + u + "\nchangetype: modify\n" + op + ": member\nmember: CN=Nest L2" + u + "\n",
                   0600);
        const std::string cmd = "ldapmodify -x -H " + own.uri() + " -D " + own.get("LDAP_ADMIN_DN") + " -w " +
                                own.get("LDAP_ADMIN_PW") + " -f " + file + " >/dev/null";
        if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify %s failed", op);
    };
    LdapSpec spec;
    spec.uris = own.ldaps_uri();
    spec.ca_file = own.ca_file();
    spec.extra = "  group_cache_ttl: 3\n";
    Login l = start("gcache", spec);
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin");
    const std::size_t direct = searches("cn=Nestor Nested"), upper = searches("cn=Nest L1");
    if (direct == 0 || upper == 0) fail_msg("slapd logged no group search for nestor (%s)", log.c_str());
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin");
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin");
    if (searches("cn=Nestor Nested") < direct + 2) fail_msg("the direct groups were not asked at each login");
    if (searches("cn=Nest L1") != upper) fail_msg("the groups above Nest L1 were asked again within the TTL");

    // Nest L2 leaves CVAT Admins: within the TTL nestor keeps admin, after it he is a user.
    modify("delete");
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin");
    ::usleep(3300 * 1000);
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "user");
    if (searches("cn=Nest L1") != upper + 1) fail_msg("after the TTL the walk was not asked again");

    // Back in: cvat-authctl cache expire drops the cached graph at once.
    modify("add");
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "user");
    const std::string ctl = env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + l.daemon->socket() + " ";
    expect_line(run_output(ctl + "cache expire nestor"), "expired ");
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin");

    // group_cache_ttl 0: every login walks, a change shows at the next login.
    spec.extra = "  group_cache_ttl: 0\n";
    Login l0 = start("gcache0", spec);
    expect_role(l0, "nestor", "nestor-Passw0rd", "nestor", "admin");
    const std::size_t before = searches("cn=Nest L1");
    modify("delete");
    expect_role(l0, "nestor", "nestor-Passw0rd", "nestor", "user");
    if (searches("cn=Nest L1") != before + 1) fail_msg("group_cache_ttl 0 did not walk at every login");
}

// The group graph cache keeps the set of every level a walk went through, not only the direct
// groups': after nestor's walk (Nest L1, Nest L2, CVAT Admins), the first login of a user in
// another group under Nest L2 asks only for that group's parents. An entry is not used where it
// would reach deeper than max_nesting allows from there: walter, two levels further down, gets
// the role the walk without any cache gives him.
void nested_group_cache_levels(void**) {
    require_program("ldapmodify");
    LoggingSlapd logged("glevels");
    Slapd& own = *logged.slapd;
    const std::string& log = logged.log;
    auto searches = [&](const std::string& cn) { return logged.member_searches(cn); };
    const std::string U = std::string("CN=Users,") + kAdBase;
    const std::string file = g->tmp.path() + "/glevels.ldif";
    write_file(file,
               "dn: CN=Nest Side," + U + "\nchangetype: add\nobjectClass: group\ncn: Nest Side\nmember: CN=Nina Nogroup," +
                   U + "\n\ndn: CN=Nest L2," + U + "\nchangetype: modify\nadd: member\nmember: CN=Nest Side," + U +
                   "\n\ndn: CN=Deep 1," + U + "\nchangetype: add\nobjectClass: group\ncn: Deep 1\nmember: CN=Walter Worker," +
                   U + "\n\ndn: CN=Deep 0," + U + "\nchangetype: add\nobjectClass: group\ncn: Deep 0\nmember: CN=Deep 1," +
                   U + "\n\ndn: CN=Nest L1," + U + "\nchangetype: modify\nadd: member\nmember: CN=Deep 0," + U + "\n",
               0600);
    const std::string cmd = "ldapmodify -x -H " + own.uri() + " -D " + own.get("LDAP_ADMIN_DN") + " -w " +
                            own.get("LDAP_ADMIN_PW") + " -f " + file + " >/dev/null";
    if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify failed");

    LdapSpec spec;
    spec.uris = own.ldaps_uri();
    spec.ca_file = own.ca_file();
    spec.extra = "  group_cache_ttl: 600\n  max_nesting: 3\n";
    Login l = start("glevels", spec);
    expect_role(l, "nestor", "nestor-Passw0rd", "nestor", "admin");  // Nest L1, L2 (1), CVAT Admins (2)
    if (contains(read_file(l.daemon->log_path()), "incomplete")) fail_msg("nestor's walk was cut short");
    const std::size_t above_l2 = searches("cn=Nest L2");
    if (above_l2 == 0) fail_msg("slapd logged no search above Nest L2 (%s)", log.c_str());
    expect_role(l, "nina", "nina-Passw0rd", "nina", "admin");  // Nest Side, Nest L2 (1), CVAT Admins (2)
    if (searches("cn=Nest Side") == 0) fail_msg("Nest Side's parents were not asked");
    if (searches("cn=Nest L2") != above_l2) fail_msg("the groups above Nest L2 were asked again within the TTL");

    // walter: Deep 1, Deep 0 (1), Nest L1 (2), Nest L2 (3), CVAT Admins (4): past max_nesting 3.
    spec.extra = "  group_cache_ttl: 0\n  max_nesting: 3\n";
    Login live = start("glevels0", spec);
    const std::string role = env_of(live("walter", "walter-Passw0rd"), "CVAT_ROLE");
    if (role.empty() || role == "admin") fail_msg("without the cache walter is '%s'", role.c_str());
    const std::size_t above_l1 = searches("cn=Nest L1");
    expect_role(l, "walter", "walter-Passw0rd", "walter", role.c_str());
    if (searches("cn=Nest L1") != above_l1 + 1) fail_msg("nestor's entry for Nest L1 was used two levels deeper");

    // An entry built on another expires with it: nina's, made 1.2 s into the life of the Nest
    // L2 entry nestor's walk left, ends when that one does, so a change above Nest L2 reaches her
    // within group_cache_ttl of when it was read from the directory.
    spec.extra = "  group_cache_ttl: 2\n  max_nesting: 3\n";
    Login lt = start("glevelst", spec);
    auto modify_admins = [&](const char* op) {
        write_file(file, "dn: CN=CVAT Admins," + U + "\nchangetype: modify\n" + op + ": member\nmember: CN=Nest L2," + U + "\n",
                   0600);
        if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify %s failed", op);
    };
    const auto t0 = std::chrono::steady_clock::now();
    expect_role(lt, "nestor", "nestor-Passw0rd", "nestor", "admin");
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(1200));
    expect_role(lt, "nina", "nina-Passw0rd", "nina", "admin");
    modify_admins("delete");
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(2300));
    expect_role(lt, "nina", "nina-Passw0rd", "nina", "user");
    if (std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(3100))
        fail_msg("the check came too late to tell (%.1f s)",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    modify_admins("add");

    // A cycle through a role group: CVAT Admins and Loop are members of each other. jsmith (CVAT
    // Workers, and now CVAT Admins) meets Loop a level up and CVAT Admins again above it, listed
    // once; what his walk saw above Loop is not all that is there, so it is not kept for Loop.
    // nina, in Loop alone now, is an admin.
    write_file(file,
               "dn: CN=Loop," + U + "\nchangetype: add\nobjectClass: group\ncn: Loop\nmember: CN=CVAT Admins," + U +
                   "\nmember: CN=Nina Nogroup," + U + "\n\ndn: CN=CVAT Admins," + U +
                   "\nchangetype: modify\nadd: member\nmember: CN=Loop," + U + "\nmember: CN=Smith\\, John," + U +
                   "\n\ndn: CN=Staff," + U + "\nchangetype: modify\ndelete: member\nmember: CN=Nina Nogroup," + U +
                   "\n\ndn: CN=Nest Side," + U + "\nchangetype: modify\ndelete: member\nmember: CN=Nina Nogroup," + U + "\n",
               0600);
    if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify (the loop) failed");
    spec.extra = "  group_cache_ttl: 600\n  max_nesting: 3\n";
    Login lc = start("glevelsc", spec);
    expect_role(lc, "jsmith", "jsmith-Passw0rd", "jsmith", "admin");
    expect_role(lc, "nina", "nina-Passw0rd", "nina", "admin");

    // At the edge of max_nesting 2: chaina's walk (Chain 1, Chain 2 above it, nothing above
    // that) is complete; chainx, one level lower (Chain 0), has Chain 2 at level 2, and the walk
    // stops there without asking what lies above: incomplete, so no default_role (the role
    // groups are too deep to tell). Chain 1's entry from chaina's walk must not make it complete.
    write_file(file,
               "dn: CN=Chain A," + U + "\nchangetype: add\nobjectClass: user\ncn: Chain A\nsAMAccountName: chaina\nsn: Chain\n"
               "userAccountControl: 512\nuserPassword: chaina-Passw0rd\n\n"
               "dn: CN=Chain X," + U + "\nchangetype: add\nobjectClass: user\ncn: Chain X\nsAMAccountName: chainx\nsn: Chain\n"
               "userAccountControl: 512\nuserPassword: chainx-Passw0rd\n\n"
               "dn: CN=Chain 0," + U + "\nchangetype: add\nobjectClass: group\ncn: Chain 0\nmember: CN=Chain X," + U +
                   "\n\ndn: CN=Chain 1," + U + "\nchangetype: add\nobjectClass: group\ncn: Chain 1\nmember: CN=Chain 0," +
                   U + "\nmember: CN=Chain A," + U + "\n\ndn: CN=Chain 2," + U +
                   "\nchangetype: add\nobjectClass: group\ncn: Chain 2\nmember: CN=Chain 1," + U + "\n",
               0600);
    if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify (the chain) failed");
    spec.extra = "  group_cache_ttl: 0\n  max_nesting: 2\n";
    Login le0 = start("glevelse0", spec);
    expect_role(le0, "chainx", "chainx-Passw0rd", "chainx", "worker");
    spec.extra = "  group_cache_ttl: 600\n  max_nesting: 2\n";
    Login le = start("glevelse", spec);
    expect_role(le, "chaina", "chaina-Passw0rd", "chaina", "user");
    expect_role(le, "chainx", "chainx-Passw0rd", "chainx", "worker");
}

// cvat-authctl explain and status: the groups found and through which nesting step, the role
// groups matched, the role and why; each server up or down.
void explain_and_status(void**) {
    SilentServer silent;
    LdapSpec spec;
    const std::string silent_uri = "ldaps://127.0.0.1:" + std::to_string(silent.port());
    spec.uris = silent_uri + ", " + g->ad->ldaps_uri();
    Login l = start("explain", spec);
    const std::string ctl = env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + l.daemon->socket() + " ";
    const std::string u = std::string(",cn=Users,") + kAdBase;

    std::string out = run_output(ctl + "explain nestor");
    expect_line(out, "user DN: cn=Nestor Nested" + u);
    expect_line(out, "group: cn=Nest L1" + u + " (direct member)");
    expect_line(out, "group: cn=Nest L2" + u + " (nesting level 1, via cn=Nest L1" + u + ")");
    expect_line(out, "group: cn=CVAT Admins" + u + " (nesting level 2, via cn=Nest L2" + u + ")");
    expect_line(out, "role_groups.admin: \"CN=CVAT Admins, CN=Users, DC=AD, DC=Example, DC=Test\" matches group cn=CVAT Admins" + u);
    expect_line(out, "role: admin (highest of the matched roles: admin)");
    expect_line(out, "server: " + g->ad->ldaps_uri());

    out = run_output(ctl + "explain cyril");
    expect_line(out, "group cn=Cycle A" + u + " seen before (cycle or diamond): not followed again");
    expect_line(out, "role: worker (highest of the matched roles: worker)");

    out = run_output(ctl + "explain dora");
    expect_line(out, "role: admin (highest of the matched roles: admin, worker)");

    out = run_output(ctl + "explain nina");
    expect_line(out, "role: user (no role group matched; default_role user applied)");

    out = run_output(ctl + "explain '*'");
    expect_line(out, "no entry matched filter (sAMAccountName=\\2a) under base \"CN=Users," + std::string(kAdBase) + "\"");

    out = run_output(ctl + "status");
    expect_line(out, silent_uri);
    expect_line(out, g->ad->ldaps_uri());
    // the silent server is down (timed out), the real one up
    std::string silent_line = out.substr(out.find(silent_uri));
    silent_line = silent_line.substr(0, silent_line.find('\n'));
    std::string real_line = out.substr(out.find(g->ad->ldaps_uri()));
    real_line = real_line.substr(0, real_line.find('\n'));
    if (!contains(silent_line, "DOWN") || !contains(real_line, " up "))
        fail_msg("status: \"%s\" / \"%s\"", silent_line.c_str(), real_line.c_str());
}

// --- FreeIPA tree --------------------------------------------------------------------------

void ipa_group_types(void**) {
    struct Row {
        const char* user;
        const char* group_of_names;
        const char* nested;
        const char* posix;
        const char* member_of;
    };
    // default_role worker, so a default is told apart from a `user` match.
    const Row rows[] = {
        {"ivan", "admin", "admin", "admin", "admin"},
        {"irene", "user", "user", "user", "user"},
        {"igor", "worker", "worker", "worker", "worker"},
        {"ida", "worker", "worker", "worker", "worker"},
        {"ines", "worker", "worker", "worker", "worker"},
        {"olga", "worker", "admin", "worker", "worker"},
    };
    const char* types[] = {"group_of_names", "nested_group_of_names", "posix_group", "member_of"};
    for (int t = 0; t < 4; ++t) {
        LdapSpec spec;
        spec.ipa = true;
        spec.group_type = types[t];
        spec.default_role = "worker";
        Login l = start(types[t], spec);
        for (const Row& r : rows) {
            const char* want[] = {r.group_of_names, r.nested, r.posix, r.member_of};
            expect_role(l, r.user, std::string(r.user) + "-Passw0rd", r.user, want[t]);
        }
    }
    // posix_group: ida is a worker only through her primary gidNumber; with default_role user
    // that is visible.
    LdapSpec spec;
    spec.ipa = true;
    spec.group_type = "posix_group";
    Login l = start("posixgid", spec);
    expect_role(l, "ida", "ida-Passw0rd", "ida", "worker");
    expect_role(l, "ines", "ines-Passw0rd", "ines", "user");
}

void ipa_passwords_and_anonymous(void**) {
    LdapSpec spec;
    spec.ipa = true;
    spec.group_type = "member_of";
    Login l = start("ipapw", spec);
    auto o = l("ivan", "ivan-wrong");
    expect_pam("ipa wrong password", o.authenticate, PAM_AUTH_ERR);
    o = l("ivan", "");
    expect_pam("ipa empty password", o.authenticate, PAM_AUTH_ERR);
    o = l("nobody", "x");
    expect_pam("ipa unknown user", o.authenticate, PAM_USER_UNKNOWN);
    o = l("*", "ivan-Passw0rd");
    expect_pam("ipa star", o.authenticate, PAM_USER_UNKNOWN);
    o = l("cvat_bind", "Bind-Secret-2");  // not a posixAccount under cn=users
    expect_pam("ipa service account", o.authenticate, PAM_USER_UNKNOWN);

    // FreeIPA lets anonymous clients read: no bind_dn at all.
    std::string dir = fresh_dir("ipaanon");
    std::string yaml = config(dir, spec);
    auto from = yaml.find("  bind_dn:");
    yaml.erase(from, yaml.find('\n', from) - from + 1);
    from = yaml.find("  bind_password_file:");
    yaml.erase(from, yaml.find('\n', from) - from + 1);
    Login anon;
    anon.dir = dir;
    anon.daemon = std::make_unique<Daemon>(dir, yaml);
    expect_role(anon, "ivan", "ivan-Passw0rd", "ivan", "admin");
    o = anon("ivan", "");
    expect_pam("anonymous search, empty password", o.authenticate, PAM_AUTH_ERR);
}

}  // namespace

int main() {
    require_program("slapd");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ad_nested_roles),
        cmocka_unit_test(ad_flat_and_member_of),
        cmocka_unit_test(ad_passwords),
        cmocka_unit_test(ad_hostile_names),
        cmocka_unit_test(ad_disabled),
        cmocka_unit_test(ad_default_role_none),
        cmocka_unit_test(ad_require_role),
        cmocka_unit_test(ad_bad_service_password),
        cmocka_unit_test(ad_ambiguous_filter),
        cmocka_unit_test(ad_max_nesting),
        cmocka_unit_test(many_groups),
        cmocka_unit_test(five_thousand_groups),
        cmocka_unit_test(strict_size_limit),
        cmocka_unit_test(tls_modes),
        cmocka_unit_test(failover),
        cmocka_unit_test(outage_and_recovery),
        cmocka_unit_test(nested_group_cache),
        cmocka_unit_test(nested_group_cache_levels),
        cmocka_unit_test(explain_and_status),
        cmocka_unit_test(ipa_group_types),
        cmocka_unit_test(ipa_passwords_and_anonymous),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
