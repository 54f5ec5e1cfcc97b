// SPDX-License-Identifier: GPL-3.0-or-later
// The group mirror (ldap.group_mirror) through the whole real path: libpam → pam_cvat.so →
// cvat-authd → slapd with the syncprov overlay (RFC 4533), FreeIPA-shaped tree
// (tests/fixtures/slapd.sh `ipa`, SLAPD_SYNCPROV=1). Roles from the copy for the member and
// posixGroup types; changes made with ldapmodify reaching logins (members in and out, groups
// added, nested, deleted, renamed); the changes slapd's memberof overlay makes without telling
// the feed showing by the copy's rebuild; a feed that falls silent or ends dropped, and the
// directory asked again; no copy where the directory offers no feed, where its size limit is
// below the groups, or where the config turns it off.
#include "cmocka.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <security/pam_appl.h>
#include <signal.h>
#include <sys/stat.h>

#include "fixture.hpp"
#include "pam_driver.hpp"

using namespace cvat::test;

namespace {

const std::string kBase = "dc=ipa,dc=example,dc=test";
const std::string kUsers = "cn=users,cn=accounts," + kBase;
const std::string kGroups = "cn=groups,cn=accounts," + kBase;
const std::string kCompat = "cn=groups,cn=compat," + kBase;
const std::string kAdUsers = "CN=Users,dc=ad,dc=example,dc=test";
// What explain prints when the groups came from the copy.
const char* kFromMirror = "groups from the group mirror of ";

struct World {
    TempDir tmp;
};
World* g = nullptr;

std::string fresh_dir(const std::string& name) { return g->tmp.fresh(name); }

// A slapd of its own (the tests change its data) with the tree `tree`, and syncprov unless
// `syncprov` is false; `env` more slapd.sh settings ("SLAPD_SIZELIMIT=3").
std::unique_ptr<Slapd> slapd(const std::string& name, bool syncprov = true, std::vector<std::string> env = {},
                             const std::string& tree = "ipa") {
    if (syncprov) env.push_back("SLAPD_SYNCPROV=1");
    for (const std::string& e : env) ::setenv(e.substr(0, e.find('=')).c_str(), e.substr(e.find('=') + 1).c_str(), 1);
    auto s = std::make_unique<Slapd>(fresh_dir(name), tree);
    for (const std::string& e : env) ::unsetenv(e.substr(0, e.find('=')).c_str());
    return s;
}

struct Spec {
    std::string uris;
    std::string group_type = "nested_group_of_names";
    std::string extra;  // more ldap: keys, each "  key: value\n"
    double timeout = 5;
    bool ad = false;    // the AD-shaped tree (else FreeIPA's)
};

struct Setup {
    std::unique_ptr<Daemon> daemon;
    std::string dir;

    // CVAT_ROLE after a login with the user's password (the tree's "<name>-Passw0rd"), or what
    // failed.
    std::string role(const std::string& user) const {
        PamCall call;
        call.confdir = dir;
        call.user = user;
        call.answers = {user + "-Passw0rd"};
        call.module_args = "socket=" + daemon->socket() + " timeout=30";
        PamOutcome o = pam_login(call);
        if (o.authenticate != PAM_SUCCESS || o.acct_mgmt != PAM_SUCCESS)
            return "PAM " + std::to_string(o.authenticate) + "/" + std::to_string(o.acct_mgmt);
        auto it = o.env.find("CVAT_ROLE");
        return it == o.env.end() ? "(no CVAT_ROLE)" : it->second;
    }
    std::string ctl(const std::string& args) const {
        const std::string cmd = env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + daemon->socket() + " " + args +
                                " 2>&1";
        std::string out;
        FILE* p = ::popen(cmd.c_str(), "r");
        if (p == nullptr) fail_msg("popen %s", cmd.c_str());
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        ::pclose(p);
        return out;
    }
    std::string log() const { return read_file(daemon->log_path()); }
};

Setup start(const std::string& name, const Spec& spec) {
    Setup s;
    s.dir = fresh_dir(name);
    write_file(s.dir + "/bind_password", spec.ad ? "Bind-Secret-1\n" : "Bind-Secret-2\n", 0600);
    const bool posix = spec.group_type == "posix_group";
    const std::string groups = spec.ad ? kAdUsers : posix ? kCompat : kGroups;
    // verdict_ttl 0: every login asks the backend.
    std::string y = "helper:\n"
                    "  socket: @SOCKET@\n"
                    "  log_level: debug\n"
                    "  verdict_ttl: 0\n"
                    "ldap:\n"
                    "  server_uri: [" + spec.uris + "]\n"
                    "  bind_password_file: " + s.dir + "/bind_password\n"
                    "  connect_timeout: 1\n"
                    "  timeout: " + std::to_string(spec.timeout) + "\n"
                    "  group_type: " + spec.group_type + "\n";
    if (spec.ad)
        y += "  bind_dn: \"CN=cvat_bind," + kAdUsers + "\"\n"
             "  user_search: {base: \"" + kAdUsers + "\", scope: subtree, filter: \"(sAMAccountName=%(user)s)\"}\n"
             "  group_search: {base: \"" + kAdUsers + "\", scope: subtree, filter: \"(objectClass=group)\"}\n"
             "  user_attr_map: {user_name: sAMAccountName}\n"
             "  role_groups:\n"
             "    admin: [\"CN=CVAT Admins," + kAdUsers + "\"]\n"
             "    user: [\"CN=CVAT Users," + kAdUsers + "\"]\n"
             "    worker: [\"CN=CVAT Workers," + kAdUsers + "\"]\n";
    else
        y += "  bind_dn: \"uid=cvat_bind,cn=sysaccounts,cn=etc," + kBase + "\"\n"
             "  user_search: {base: \"" + kUsers + "\", scope: onelevel, filter: \"(&(objectClass=posixAccount)(uid=%(user)s))\"}\n"
             "  group_search: {base: \"" + groups + "\", scope: subtree, filter: \"(objectClass=" +
             (posix ? "posixGroup" : "groupOfNames") + ")\"}\n"
             "  user_attr_map: {user_name: uid}\n"
             "  role_groups:\n"
             "    admin: [\"cn=cvat-admins," + groups + "\"]\n"
             "    user: [\"cn=cvat-users," + groups + "\"]\n"
             "    worker: [\"cn=cvat-workers," + groups + "\"]\n";
    y += spec.extra;
    s.daemon = std::make_unique<Daemon>(s.dir, y);
    return s;
}

// ldapmodify as the tree's admin.
void modify(const Slapd& sl, const std::string& ldif) {
    static int n = 0;
    const std::string file = g->tmp.path() + "/change" + std::to_string(++n) + ".ldif";
    write_file(file, ldif, 0600);
    const std::string cmd = "ldapmodify -x -H " + sl.uri() + " -D " + sl.get("LDAP_ADMIN_DN") + " -w " +
                            sl.get("LDAP_ADMIN_PW") + " -f " + file + " >&2";
    if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify failed:\n%s", ldif.c_str());
}

// Polls `check` every 20 ms for up to `seconds`; its last answer (empty: fine) fails the test.
void within(double seconds, const char* what, const std::function<std::string()>& check) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::string last;
    for (;;) {
        last = check();
        if (last.empty()) return;
        if (std::chrono::steady_clock::now() > until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    fail_msg("%s: not within %.1f s: %s", what, seconds, last.c_str());
}

// The role of `user` becomes `want` within `seconds`, with the groups from the copy (or, with
// `mirror` false, searched).
void role_becomes(const Setup& s, const std::string& user, const std::string& want, double seconds = 2,
                  bool mirror = true) {
    within(seconds, (user + " becomes " + want).c_str(), [&]() -> std::string {
        std::string got = s.role(user);
        return got == want ? "" : user + " is " + got + " (daemon log " + s.daemon->log_path() + ")";
    });
    const std::string e = s.ctl("explain " + user);
    if (contains(e, kFromMirror) != mirror)
        fail_msg("%s's groups %s from the mirror:\n%s", user.c_str(), mirror ? "did not come" : "came", e.c_str());
}

// The first login starts the feed; the copy is in use within a few seconds.
void mirror_up(const Setup& s) {
    (void)s.role("ines");
    within(5, "the group mirror is up", [&]() -> std::string {
        const std::string st = s.ctl("status");
        return contains(st, "ldap group mirror") && contains(st, "kept current by its change feed") ? "" : st;
    });
}

// A syncprov slapd of its own and a daemon on it (`spec` with its URI), the mirror up.
struct Mirrored {
    std::unique_ptr<Slapd> sl;
    Setup s;
};
Mirrored mirrored(const std::string& name, Spec spec = {}) {
    Mirrored m{slapd(name), {}};
    spec.uris = m.sl->uri();
    m.s = start(name, spec);
    mirror_up(m.s);
    return m;
}

void expect_roles(const Setup& s, const std::vector<std::pair<std::string, std::string>>& want, bool mirror = true) {
    for (const auto& [user, role] : want) role_becomes(s, user, role, 0, mirror);
}

// --- tests ---------------------------------------------------------------------------------

// nested_group_of_names from the copy: every user's role, then changes as an admin makes them.
void follows_changes(void**) {
    require_program("ldapmodify");
    Mirrored m = mirrored("follow");
    Slapd& sl = *m.sl;
    Setup& s = m.s;
    expect_roles(s, {{"ivan", "admin"}, {"olga", "admin"}, {"irene", "user"}, {"igor", "worker"},
                     {"ida", "worker"}, {"ines", "user"}});

    // A member in, a member out.
    modify(sl, "dn: cn=cvat-admins," + kGroups + "\nchangetype: modify\nadd: member\nmember: uid=irene," + kUsers + "\n");
    role_becomes(s, "irene", "admin");
    modify(sl, "dn: cn=cvat-workers," + kGroups + "\nchangetype: modify\ndelete: member\nmember: uid=igor," + kUsers + "\n");
    role_becomes(s, "igor", "user");

    // A new group, nested under a role group; then deleted (memberof drops it from the role
    // group without a word on the feed: the copy is rebuilt at once).
    modify(sl, "dn: cn=team," + kGroups + "\nchangetype: add\nobjectClass: groupOfNames\ncn: team\nmember: uid=ines," +
                    kUsers + "\n\ndn: cn=cvat-workers," + kGroups + "\nchangetype: modify\nadd: member\nmember: cn=team," +
                    kGroups + "\n");
    role_becomes(s, "ines", "worker");
    modify(sl, "dn: cn=team," + kGroups + "\nchangetype: delete\n");
    role_becomes(s, "ines", "user");

    // A renamed group: memberof renames the member value in cvat-admins unannounced; olga,
    // admin through it, stays admin.
    modify(sl, "dn: cn=ipa-ops," + kGroups + "\nchangetype: modrdn\nnewrdn: cn=ipa-ops2\ndeleteoldrdn: 1\n");
    within(2, "the renamed group shows", [&]() -> std::string {
        const std::string e = s.ctl("explain olga");
        return contains(e, "cn=ipa-ops2," + kGroups) ? "" : e;
    });
    role_becomes(s, "olga", "admin");
    if (!contains(s.log(), "group mirror: rebuilt")) fail_msg("no rebuild after the rename: %s", s.log().c_str());
}

// A change memberof makes without telling the feed (a deleted user's member values) shows by
// the rebuild every group_cache_ttl: ida, deleted and created again under the same DN, is in
// no group by the directory's word, and logs in as that within the TTL and a margin.
void rebuilds_unannounced(void**) {
    require_program("ldapmodify");
    Spec spec;
    spec.extra = "  group_cache_ttl: 2\n";
    Mirrored m = mirrored("rebuild", spec);
    Slapd& sl = *m.sl;
    Setup& s = m.s;
    role_becomes(s, "ida", "worker", 0);
    modify(sl, "dn: uid=ida," + kUsers + "\nchangetype: delete\n");
    modify(sl, "dn: uid=ida," + kUsers + "\nchangetype: add\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
                "uid: ida\ncn: Ida Again\nsn: Again\nuidNumber: 1800004\ngidNumber: 1800004\nhomeDirectory: /home/ida\n"
                "userPassword: ida-Passw0rd\n");
    role_becomes(s, "ida", "user", 4);
}

// posix_group from the copy: memberUid and the user's gidNumber, then a memberUid added.
void posix_group(void**) {
    require_program("ldapmodify");
    Spec spec;
    spec.group_type = "posix_group";
    Mirrored m = mirrored("posix", spec);
    Slapd& sl = *m.sl;
    Setup& s = m.s;
    expect_roles(s, {{"ivan", "admin"}, {"irene", "user"}, {"igor", "worker"}, {"ida", "worker"}, {"ines", "user"}});
    modify(sl, "dn: cn=cvat-admins," + kCompat + "\nchangetype: modify\nadd: memberUid\nmemberUid: ines\n");
    role_becomes(s, "ines", "admin");
}

// A feed that falls silent (slapd stopped by SIGSTOP) is dropped by its keepalive, and logins
// take the groups from a search again: here of the second server, where irene is an admin.
void silent_feed_dropped(void**) {
    require_program("ldapmodify");
    auto a = slapd("silentA");
    auto b = slapd("silentB", false);
    modify(*b, "dn: cn=cvat-admins," + kGroups + "\nchangetype: modify\nadd: member\nmember: uid=irene," + kUsers + "\n");
    Spec spec{a->uri() + ", " + b->uri()};
    spec.timeout = 1;
    Setup s = start("silent", spec);
    mirror_up(s);
    role_becomes(s, "irene", "user", 0);  // A's copy
    const pid_t pid = static_cast<pid_t>(std::stol(a->get("SLAPD_PID")));
    ::kill(pid, SIGSTOP);
    struct Resume {
        pid_t pid;
        ~Resume() { ::kill(pid, SIGCONT); }
    } resume{pid};
    within(8, "the silent feed is dropped", [&]() -> std::string {
        const std::string st = s.ctl("status");
        return contains(st, "not in use") ? "" : st;
    });
    const std::string got = s.role("irene");
    if (got != "admin") fail_msg("irene is %s after the feed was dropped, want admin (B's answer)", got.c_str());
    if (!contains(s.log(), "was lost")) fail_msg("the lost feed was not logged: %s", s.log().c_str());
}

// slapd restarted: the feed is lost, logged, and back with a fresh copy that follows changes.
void feed_comes_back(void**) {
    require_program("ldapmodify");
    Mirrored m = mirrored("restart");
    Slapd& sl = *m.sl;
    Setup& s = m.s;
    ::setenv("SLAPD_SYNCPROV", "1", 1);
    sl.restart();
    ::unsetenv("SLAPD_SYNCPROV");
    within(6, "the feed is back", [&]() -> std::string {
        const std::string l = s.log();
        const auto lost = l.find("was lost");
        return lost != std::string::npos && l.find(" KiB) from ", lost) != std::string::npos ? "" : l;
    });
    modify(sl, "dn: cn=cvat-admins," + kGroups + "\nchangetype: modify\ndelete: member\nmember: uid=ivan," + kUsers + "\n");
    role_becomes(s, "ivan", "user");
    modify(sl, "dn: cn=cvat-admins," + kGroups + "\nchangetype: modify\nadd: member\nmember: uid=ines," + kUsers + "\n");
    role_becomes(s, "ines", "admin");
}

// The feed follows the server logins prefer: on the second while the first is down, back on
// the first at the next rebuild once it answers again (a feed left on a replica would hold
// that replica's view for as long as the replica answers).
void feed_follows_preferred_server(void**) {
    auto a = slapd("preferA");
    auto b = slapd("preferB");
    Spec spec{a->uri() + ", " + b->uri()};
    spec.extra = "  group_cache_ttl: 2\n";
    Setup s = start("prefer", spec);
    mirror_up(s);
    auto fed_by = [&](const Slapd& sl) {
        return [&s, uri = sl.uri()]() -> std::string {
            const std::string st = s.ctl("status");
            return contains(st, "groups from " + uri + ", kept current") ? "" : st;
        };
    };
    within(1, "fed by the first server", fed_by(*a));
    a->stop();
    within(8, "fed by the second server", fed_by(*b));
    role_becomes(s, "olga", "admin");
    ::setenv("SLAPD_SYNCPROV", "1", 1);
    a->restart();
    ::unsetenv("SLAPD_SYNCPROV");
    within(10, "fed by the first server again", fed_by(*a));
    if (!contains(s.log(), "moving the feed from " + b->uri() + " to " + a->uri()))
        fail_msg("the move was not logged: %s", s.log().c_str());
    role_becomes(s, "olga", "admin");
}

// No copy, and logins search, where: the directory offers no feed; its size limit is below the
// number of groups (said, with the fix); the bind DN may search member values but not read them
// (the copy would hold groups without members: said, with the fix); the config says
// group_mirror: false or group_cache_ttl: 0.
void no_mirror(void**) {
    auto plain = slapd("plain", false);
    auto small = slapd("small", true, {"SLAPD_SIZELIMIT=3"});
    auto hidden = slapd("hidden", true, {"SLAPD_MEMBER_SEARCH_ONLY=1"});
    auto sync = slapd("off");
    struct Case {
        const Slapd* slapd;
        std::string extra;
        const char* status;  // in `status`, or null: no mirror line at all
    } cases[] = {
        {plain.get(), "", "offers no content synchronisation"},
        {small.get(), "", "size limit"},
        {hidden.get(), "", "may search but not read member values"},
        {sync.get(), "  group_mirror: false\n", nullptr},
        {sync.get(), "  group_cache_ttl: 0\n", nullptr},
    };
    for (const Case& c : cases) {
        Spec spec{c.slapd->uri()};
        spec.extra = c.extra;
        Setup s = start("nomirror", spec);
        (void)s.role("ines");  // would start the feed
        if (c.status != nullptr) {
            within(5, c.status, [&]() -> std::string {
                const std::string st = s.ctl("status");
                return contains(st, "ldap group mirror") && contains(st, c.status) ? "" : st;
            });
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
            if (contains(s.ctl("status"), "group mirror")) fail_msg("a mirror line with %s", c.extra.c_str());
        }
        expect_roles(s, {{"ivan", "admin"}, {"olga", "admin"}, {"igor", "worker"}, {"ines", "user"}}, false);
    }
}

// The copy gives what the searches give: for every user of both trees, each group type and a
// tight max_nesting and max_groups, two daemons on one slapd (the mirror on and off) explain
// the same groups, the same completeness and the same role.
void agrees_with_search(void**) {
    auto ipa = slapd("agree-ipa");
    auto ad = slapd("agree-ad", true, {}, "ad");
    struct Case {
        bool ad;
        const char* group_type;
        const char* extra;
    } cases[] = {
        {true, "nested_active_directory", ""},
        {true, "nested_group_of_names", "  max_nesting: 1\n"},
        {true, "active_directory", ""},
        {true, "nested_active_directory", "  max_groups: 2\n"},
        {true, "group_of_names", "  max_groups: 1\n"},
        {false, "nested_group_of_names", ""},
        {false, "group_of_names", ""},
        {false, "posix_group", ""},
        {false, "posix_group", "  max_groups: 1\n"},
    };
    const std::vector<std::string> ad_users = {"alice", "bob", "walter", "dora", "dave", "nina",
                                               "nestor", "cyril", "jsmith", "eve"};
    const std::vector<std::string> ipa_users = {"ivan", "irene", "igor", "ida", "ines", "olga"};
    // What explain says that the two must share: the groups (sorted), "incomplete", the role.
    auto gist = [](const std::string& e) {
        std::vector<std::string> groups;
        std::string role, incomplete = "complete";
        std::size_t at = 0;
        while (at < e.size()) {
            std::size_t end = e.find('\n', at);
            if (end == std::string::npos) end = e.size();
            const std::string line = e.substr(at, end - at);
            at = end + 1;
            if (line.rfind("group: ", 0) == 0) groups.push_back(line.substr(7, line.find(" (") - 7));
            else if (line.rfind("role: ", 0) == 0) role = line.substr(0, line.find(" ("));
            else if (line.rfind("group list incomplete", 0) == 0) incomplete = "incomplete";
        }
        std::sort(groups.begin(), groups.end());
        std::string out = role + "; " + incomplete + ";";
        for (const std::string& g : groups) out += " [" + g + "]";
        return out;
    };
    for (const Case& c : cases) {
        const Slapd& sl = c.ad ? *ad : *ipa;
        Spec spec{sl.uri()};
        spec.ad = c.ad;
        spec.group_type = c.group_type;
        spec.extra = c.extra;
        Setup mirrored = start("agree", spec);
        spec.extra += "  group_mirror: false\n";
        Setup searched = start("agree", spec);
        (void)mirrored.role(c.ad ? "alice" : "ivan");
        within(5, "the group mirror is up", [&]() -> std::string {
            const std::string st = mirrored.ctl("status");
            return contains(st, "kept current by its change feed") ? "" : st;
        });
        for (const std::string& user : c.ad ? ad_users : ipa_users) {
            const std::string m = mirrored.ctl("explain " + user), q = searched.ctl("explain " + user);
            // (A disabled account stops before its groups.)
            if (contains(m, "group_type ") && !contains(m, kFromMirror))
                fail_msg("%s: not from the mirror:\n%s", user.c_str(), m.c_str());
            if (gist(m) != gist(q))
                fail_msg("%s %s%s: the mirror says\n  %s\nthe searches\n  %s", c.group_type, c.extra, user.c_str(),
                         gist(m).c_str(), gist(q).c_str());
        }
    }
}

}  // namespace

int main() {
    g = new World;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(follows_changes),
        cmocka_unit_test(rebuilds_unannounced),
        cmocka_unit_test(posix_group),
        cmocka_unit_test(silent_feed_dropped),
        cmocka_unit_test(feed_comes_back),
        cmocka_unit_test(feed_follows_preferred_server),
        cmocka_unit_test(no_mirror),
        cmocka_unit_test(agrees_with_search),
    };
    const int rc = cmocka_run_group_tests(tests, nullptr, nullptr);
    delete g;
    return rc;
}
