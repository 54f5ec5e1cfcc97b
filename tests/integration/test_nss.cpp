// SPDX-License-Identifier: GPL-3.0-or-later
// CVAT users as users of the host, through the real path: libnss_cvat.so.2 (dlopen, and
// nss_wrapper under `id`/`getent`) → cvat-authd → slapd, with the persistent cache, the mapped
// cache file, the verdict cache and offline logins. Fixture users: tests/fixtures/README.md.
#include "cmocka.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"
#include "nss_module.hpp"
#include "pam_driver.hpp"

using namespace cvat::test;

namespace {

const char* kUsers = "CN=Users,DC=ad,DC=example,DC=test";
constexpr std::uint32_t kIdMin = 300000, kIdMax = 399999;

using Pw = PwEntry;
using Gr = GrEntry;

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> ad;
    std::unique_ptr<Slapd> ipa;
    NssModule nss;
};
World* g = nullptr;

Pw pwnam(const std::string& name) { return lookup_pwnam(g->nss, name); }
Pw pwuid(uid_t uid) { return lookup_pwuid(g->nss, uid); }
Gr grnam(const std::string& name) { return lookup_grnam(g->nss, name); }
Gr grgid(gid_t gid) { return lookup_grgid(g->nss, gid); }
std::vector<gid_t> initgroups(const std::string& user, gid_t primary) { return lookup_initgroups(g->nss, user, primary); }

bool has(const std::vector<std::string>& v, const std::string& s) {
    for (const auto& x : v)
        if (x == s) return true;
    return false;
}

// ---- configuration and processes

std::string ad_config(const std::string& dir, const std::string& nss_extra = "", const std::string& helper_extra = "") {
    mkdir(dir.c_str(), 0700);  // arguments are evaluated in any order: the Daemon's dir may not exist yet
    write_file(dir + "/bind_password", "Bind-Secret-1\n", 0600);
    const std::string u = kUsers;
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n" +
           helper_extra +
           "nss:\n"
           "  id_min: " + std::to_string(kIdMin) + "\n"
           "  id_max: " + std::to_string(kIdMax) + "\n"
           "  home: /home/cvat/%u\n"
           "  shell: /bin/sh\n" +
           nss_extra +
           "ldap:\n"
           "  server_uri: [" + g->ad->uri() + "]\n"
           "  bind_dn: \"CN=cvat_bind," + u + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           "  connect_timeout: 1\n"
           "  timeout: 2\n"
           + cvat_ad_example(u);
}

std::string ipa_config(const std::string& dir) {
    mkdir(dir.c_str(), 0700);
    write_file(dir + "/bind_password", "Bind-Secret-2\n", 0600);
    const std::string b = g->ipa->base();
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n"
           "ldap:\n"
           "  server_uri: [" + g->ipa->uri() + "]\n"
           "  bind_dn: \"uid=cvat_bind,cn=sysaccounts,cn=etc," + b + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           "  user_search: {base: \"cn=users,cn=accounts," + b + "\", filter: \"(uid=%(user)s)\"}\n"
           "  group_search: {base: \"cn=groups,cn=accounts," + b + "\", filter: \"(objectClass=groupOfNames)\"}\n"
           "  group_type: member_of\n"
           "  user_attr_map: {user_name: uid, first_name: givenName, last_name: sn, email: mail}\n"
           "  role_groups:\n"
           "    admin: [\"cn=cvat-admins,cn=groups,cn=accounts," + b + "\"]\n"
           "    user: [\"cn=cvat-users,cn=groups,cn=accounts," + b + "\"]\n"
           "  default_role: worker\n";
}

std::string subdir(const std::string& name) {
    std::string d = g->tmp.path() + "/" + name;
    mkdir(d.c_str(), 0700);
    return d;
}

// The module finds the daemon (and the mapped file beside its socket) through this.
void point_at(const Daemon& d) { setenv("CVAT_AUTH_SOCKET", d.socket().c_str(), 1); }

std::string popen_read(const std::string& cmd, int* status = nullptr) {
    std::string out;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (p == nullptr) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = pclose(p);
    if (status != nullptr) *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

// A command under nss_wrapper with nss_cvat as its only module besides empty files.
std::string under_nss_wrapper(const Daemon& d, const std::string& cmd, int* status = nullptr) {
    std::string dir = subdir("nsswrap");
    write_file(dir + "/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644);
    write_file(dir + "/group", "root:x:0:\n", 0644);
    // A sanitizer build's module needs its runtime first in a plain program (tests/meson.build).
    std::string asan = env_or("CVAT_SANITIZER_PRELOAD", "");
    std::string env = "LD_PRELOAD=" + (asan.empty() ? "" : asan + ":") + "libnss_wrapper.so NSS_WRAPPER_PASSWD=" + dir + "/passwd NSS_WRAPPER_GROUP=" + dir +
                      "/group NSS_WRAPPER_MODULE_SO_PATH=" + env_or("NSS_CVAT_SO", "") +
                      " NSS_WRAPPER_MODULE_FN_PREFIX=cvat CVAT_AUTH_SOCKET=" + d.socket() + " ";
    return popen_read(env + cmd, status);
}

PamOutcome login(const Daemon& d, const std::string& user, const std::string& password,
                 const std::string& service = "cvat-test") {
    PamCall call;
    call.confdir = subdir("pam");
    call.service = service;
    call.user = user;
    call.answers = {password};
    call.module_args = "socket=" + d.socket() + " timeout=10";
    return pam_login(call);
}

bool shown(const PamOutcome& o, const std::string& text) {
    for (const auto& m : o.messages)
        if (contains(m, text)) return true;
    return false;
}

void ldap_modify(const Slapd& s, const std::string& ldif) {
    std::string file = g->tmp.path() + "/change.ldif";
    write_file(file, ldif, 0600);
    std::string cmd = "ldapmodify -x -H " + s.uri() + " -D '" + s.get("LDAP_ADMIN_DN") + "' -w '" +
                      s.get("LDAP_ADMIN_PW") + "' -f " + file + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) fail_msg("ldapmodify failed: %s", ldif.c_str());
}

// ---- tests: lookups

void lookups_of_directory_users(void**) {
    Daemon d(subdir("lookups"), ad_config(g->tmp.path() + "/lookups"));
    point_at(d);

    Pw alice = pwnam("alice");
    assert_int_equal(alice.status, NSS_STATUS_SUCCESS);
    assert_string_equal(alice.name.c_str(), "alice");
    // No uidNumber in the AD tree: the ID comes from objectSid, inside the nss: range, and
    // the primary group is the user's own.
    assert_true(alice.uid >= kIdMin && alice.uid <= kIdMax);
    assert_true(alice.uid > kIdMin + 2);  // never a role group's GID
    assert_int_equal(alice.gid, alice.uid);
    assert_string_equal(alice.dir.c_str(), "/home/cvat/alice");
    assert_string_equal(alice.shell.c_str(), "/bin/sh");
    assert_string_equal(alice.gecos.c_str(), "Alice Admin");

    Pw again = pwuid(alice.uid);
    assert_int_equal(again.status, NSS_STATUS_SUCCESS);
    assert_string_equal(again.name.c_str(), "alice");

    Gr own = grgid(alice.gid);
    assert_int_equal(own.status, NSS_STATUS_SUCCESS);
    assert_string_equal(own.name.c_str(), "alice");
    assert_int_equal(grnam("alice").gid, alice.gid);

    // Roles are groups: alice is in cvat-admin (id_min), bob in cvat-user, walter in cvat-worker.
    Pw bob = pwnam("bob");
    Pw walter = pwnam("walter");
    assert_int_equal(bob.status, NSS_STATUS_SUCCESS);
    assert_int_equal(walter.status, NSS_STATUS_SUCCESS);
    assert_int_not_equal(bob.uid, alice.uid);
    Gr admins = grnam("cvat-admin");
    assert_int_equal(admins.status, NSS_STATUS_SUCCESS);
    assert_int_equal(admins.gid, kIdMin);
    assert_true(has(admins.members, "alice"));
    assert_false(has(admins.members, "bob"));
    Gr users = grgid(kIdMin + 1);
    assert_string_equal(users.name.c_str(), "cvat-user");
    assert_true(has(users.members, "bob"));
    assert_string_equal(grnam("cvat-worker").name.c_str(), "cvat-worker");
    assert_true(has(grnam("cvat-worker").members, "walter"));

    auto gids = initgroups("alice", alice.gid);
    assert_int_equal(gids.size(), 1);
    assert_int_equal(gids[0], kIdMin);
    gids = initgroups("dora", 0);  // in admin and worker groups: the highest role wins
    assert_int_equal(gids.size(), 1);
    assert_int_equal(gids[0], kIdMin);

    // Unknown, disabled and role-less users are no users of this host.
    assert_int_equal(pwnam("nobody-such").status, NSS_STATUS_NOTFOUND);
    assert_int_equal(pwnam("dave").status, NSS_STATUS_NOTFOUND);
    assert_int_equal(grnam("no-such-group").status, NSS_STATUS_NOTFOUND);
    assert_int_equal(pwuid(kIdMax).status, NSS_STATUS_NOTFOUND);
    // A hostile name is refused, not searched.
    assert_int_equal(pwnam("*)(sAMAccountName=alice").status, NSS_STATUS_NOTFOUND);

    // The same account gets the same ID from another daemon with a fresh cache: the ID is
    // derived from the SID, not handed out in arrival order.
    Daemon other(subdir("lookups2"), ad_config(g->tmp.path() + "/lookups2"));
    point_at(other);
    assert_int_equal(pwnam("bob").uid, bob.uid);
    assert_int_equal(pwnam("alice").uid, alice.uid);
}

// A directory account named root (here in the admins' group) is never the host's root: not
// by getpwnam in any case of the name, not by initgroups (which would give the real root the
// directory's groups), not in the cache; the directory is not even asked for "root".
void root_is_never_a_directory_user(void**) {
    const std::string users = "CN=Users,DC=ad,DC=example,DC=test";
    ldap_modify(*g->ad, "dn: CN=Root Imposter," + users + "\nchangetype: add\nobjectClass: user\ncn: Root Imposter\n"
                        "sn: Imposter\nsAMAccountName: root\nuserAccountControl: 512\nuserPassword: root-Passw0rd\n\n"
                        "dn: CN=CVAT Admins," + users + "\nchangetype: modify\nadd: member\nmember: CN=Root Imposter," +
                        users + "\n");
    struct Cleanup {
        ~Cleanup() {
            const std::string u = "CN=Users,DC=ad,DC=example,DC=test";
            ldap_modify(*g->ad, "dn: CN=CVAT Admins," + u + "\nchangetype: modify\ndelete: member\nmember: CN=Root Imposter," +
                                    u + "\n\ndn: CN=Root Imposter," + u + "\nchangetype: delete\n");
        }
    } cleanup;
    Daemon d(subdir("root"), ad_config(g->tmp.path() + "/root"));
    point_at(d);
    assert_int_equal(pwnam("alice").status, NSS_STATUS_SUCCESS);  // the daemon answers
    assert_int_equal(pwnam("root").status, NSS_STATUS_NOTFOUND);
    assert_int_equal(pwnam("Root").status, NSS_STATUS_NOTFOUND);  // the directory's canonical name is root
    assert_int_equal(grnam("root").status, NSS_STATUS_NOTFOUND);
    assert_true(initgroups("root", 0).empty());
    assert_false(has(grnam("cvat-admin").members, "root"));
    const std::string log = read_file(d.log_path());
    if (!contains(log, "is named root: not a user of this host"))
        fail_msg("the directory's root (looked up as Root) was not refused: %s", log.c_str());
}

void lookups_with_uid_number(void**) {
    Daemon d(subdir("ipa"), ipa_config(g->tmp.path() + "/ipa"));
    point_at(d);
    // ida has uidNumber 1800004 and gidNumber 1790003 (tests/fixtures/slapd.sh): asked by
    // number first, before the name was ever seen.
    Pw ida = pwuid(1800004);
    assert_int_equal(ida.status, NSS_STATUS_SUCCESS);
    assert_string_equal(ida.name.c_str(), "ida");
    assert_int_equal(ida.gid, 1790003);
    Pw byname = pwnam("ivan");
    assert_int_equal(byname.uid, 1800001);
    assert_int_equal(byname.gid, 1800001);
    assert_int_equal(pwuid(4242).status, NSS_STATUS_NOTFOUND);
}

// A directory whose user DNs have one shape ("uid=<login>,cn=users,…"): once two lookups showed
// it, a lookup sends the search for the user's direct groups along with the user search, and
// uses its answer only for the DN the user search found. carol's guessed DN is another entry
// (uid=carol, not a posixAccount, so the user filter skips it) in cvat-admins: its groups must
// not become carol's.
void group_search_with_user_search(void**) {
    std::string dir = subdir("ahead");
    std::string yaml = ipa_config(dir);
    auto swap = [&yaml](const std::string& from, const std::string& to) {
        auto at = yaml.find(from);
        if (at == std::string::npos) fail_msg("ipa_config has no %s", from.c_str());
        yaml.replace(at, from.size(), to);
    };
    swap("group_type: member_of", "group_type: nested_group_of_names");
    swap("filter: \"(uid=%(user)s)\"", "filter: \"(&(objectClass=posixAccount)(uid=%(user)s))\"");
    const std::string b = g->ipa->base();
    const std::string users = ",cn=users,cn=accounts," + b, admins = "cn=cvat-admins,cn=groups,cn=accounts," + b,
                      cvat_users = "cn=cvat-users,cn=groups,cn=accounts," + b;
    ldap_modify(*g->ipa, "dn: uid=carol" + users + "\nchangetype: add\nobjectClass: inetOrgPerson\nuid: carol\n"
                         "cn: Carol Decoy\nsn: Decoy\n\n"
                         "dn: cn=Carol Real" + users + "\nchangetype: add\nobjectClass: inetOrgPerson\n"
                         "objectClass: posixAccount\nuid: carol\ncn: Carol Real\nsn: Real\nuidNumber: 1800010\n"
                         "gidNumber: 1800010\nhomeDirectory: /home/carol\n\n"
                         "dn: " + admins + "\nchangetype: modify\nadd: member\nmember: uid=carol" + users + "\n\n"
                         "dn: " + cvat_users + "\nchangetype: modify\nadd: member\nmember: cn=Carol Real" + users + "\n");
    {
        Daemon d(dir, yaml);
        point_at(d);
        for (const char* name : {"ivan", "irene", "igor", "olga", "carol"})
            if (pwnam(name).status != NSS_STATUS_SUCCESS) fail_msg("lookup of %s failed", name);
        const std::string log = read_file(d.log_path());
        std::size_t ahead = 0;
        for (std::size_t at = 0; (at = log.find("group search answered with the user search", at)) != std::string::npos;
             ++at)
            ++ahead;
        print_message("# group searches answered with the user search: %zu\n", ahead);
        Gr admin = grnam("cvat-admin");
        Gr user = grnam("cvat-user");
        Gr worker = grnam("cvat-worker");
        assert_true(has(admin.members, "ivan"));
        assert_true(has(admin.members, "olga"));  // through ipa-ops, nested
        assert_true(has(user.members, "irene"));
        assert_true(has(worker.members, "igor"));
        assert_true(has(user.members, "carol"));
        assert_false(has(admin.members, "carol"));
        assert_int_equal(ahead, 2);  // igor's and olga's (ivan's and irene's taught the shape)
    }
    ldap_modify(*g->ipa, "dn: " + admins + "\nchangetype: modify\ndelete: member\nmember: uid=carol" + users + "\n\n"
                         "dn: " + cvat_users + "\nchangetype: modify\ndelete: member\nmember: cn=Carol Real" + users +
                         "\n\ndn: uid=carol" + users + "\nchangetype: delete\n\n"
                         "dn: cn=Carol Real" + users + "\nchangetype: delete\n");
}

void directory_groups(void**) {
    std::string dir = subdir("dirgroups");
    Daemon d(dir, ad_config(dir, "  directory_groups: true\n"));
    point_at(d);
    Pw alice = pwnam("alice");
    assert_int_equal(alice.status, NSS_STATUS_SUCCESS);
    // alice is in Staff and CVAT Admins: both groups are shown, with stable GIDs in the range.
    Gr staff = grnam("Staff");
    assert_int_equal(staff.status, NSS_STATUS_SUCCESS);
    assert_true(staff.gid >= kIdMin && staff.gid <= kIdMax);
    assert_true(has(staff.members, "alice"));
    assert_string_equal(grgid(staff.gid).name.c_str(), "Staff");
    auto gids = initgroups("alice", alice.gid);
    bool role = false, in_staff = false;
    for (gid_t gid : gids) {
        role = role || gid == kIdMin;
        in_staff = in_staff || gid == staff.gid;
    }
    assert_true(role);
    assert_true(in_staff);
    // Off (the default), directory groups stay out of NSS.
    std::string off = subdir("dirgroups-off");
    Daemon plain(off, ad_config(off));
    point_at(plain);
    assert_int_equal(pwnam("alice").status, NSS_STATUS_SUCCESS);
    assert_int_equal(grnam("Staff").status, NSS_STATUS_NOTFOUND);
    assert_int_equal(initgroups("alice", alice.gid).size(), 1);
}

void nss_wrapper_id_and_getent(void**) {
    // nss_wrapper builds `id`'s group list by enumerating groups (glibc itself calls
    // initgroups_dyn, tested above): enumeration on.
    Daemon d(subdir("wrap"), ad_config(g->tmp.path() + "/wrap", "  enumerate: true\n"));
    int status = -1;
    // The first lookup goes to the daemon, which then publishes the mapped file that
    // enumeration reads.
    under_nss_wrapper(d, "getent passwd alice", &status);
    assert_int_equal(status, 0);
    usleep(600 * 1000);
    std::string id = under_nss_wrapper(d, "id alice", &status);
    print_message("# id alice: %s", id.c_str());
    assert_int_equal(status, 0);
    assert_true(contains(id, "(alice)"));
    assert_true(contains(id, "(cvat-admin)"));
    std::string pw = under_nss_wrapper(d, "getent passwd bob", &status);
    assert_int_equal(status, 0);
    assert_true(contains(pw, "bob:*:"));
    assert_true(contains(pw, ":/home/cvat/bob:/bin/sh"));
    usleep(600 * 1000);  // bob joins cvat-user in the mapped file once it is republished
    std::string gr = under_nss_wrapper(d, "getent group cvat-user", &status);
    assert_int_equal(status, 0);
    assert_true(contains(gr, "cvat-user:*:" + std::to_string(kIdMin + 1) + ":"));
    assert_true(contains(gr, "bob"));
    under_nss_wrapper(d, "getent passwd nosuchuser", &status);
    assert_int_equal(status, 2);  // getent: key not found
}

void small_buffers_then_success(void**) {
    Daemon d(subdir("erange"), ad_config(g->tmp.path() + "/erange"));
    point_at(d);
    for (int warm = 0; warm < 2; ++warm) {  // cold (socket), then warm (mapped file)
        passwd p{};
        char tiny[8];
        int err = 0;
        nss_status st = g->nss.getpwnam_r("bob", &p, tiny, sizeof tiny, &err);
        assert_int_equal(st, NSS_STATUS_TRYAGAIN);
        assert_int_equal(err, ERANGE);
        char big[1024];
        st = g->nss.getpwnam_r("bob", &p, big, sizeof big, &err);
        assert_int_equal(st, NSS_STATUS_SUCCESS);
        assert_string_equal(p.pw_name, "bob");
        assert_true(p.pw_name >= big && p.pw_name < big + sizeof big);
        assert_true(p.pw_dir >= big && p.pw_dir < big + sizeof big);
        usleep(400 * 1000);  // the daemon publishes the mapped file
    }
}

void daemon_down_is_unavailable(void**) {
    std::string dir = subdir("down");
    setenv("CVAT_AUTH_SOCKET", (dir + "/socket").c_str(), 1);
    Pw p = pwnam("alice");
    assert_int_equal(p.status, NSS_STATUS_UNAVAIL);
    assert_int_equal(pwuid(kIdMin + 5).status, NSS_STATUS_UNAVAIL);
}

void fork_and_threads(void**) {
    Daemon d(subdir("threads"), ad_config(g->tmp.path() + "/threads"));
    point_at(d);
    const uid_t alice = pwnam("alice").uid;
    pid_t child = fork();
    if (child == 0) {
        Pw p = pwnam("walter");
        Pw q = pwuid(alice);
        _exit(p.status == NSS_STATUS_SUCCESS && q.name == "alice" ? 0 : 1);
    }
    int st = 0;
    waitpid(child, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    const char* names[] = {"alice", "bob", "walter", "dora", "nestor"};
    for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                const char* n = names[(t + i) % 5];
                Pw p = pwnam(n);
                if (p.status != NSS_STATUS_SUCCESS || p.name != n) ++bad;
                if (i % 10 == 0 && grnam("cvat-admin").status != NSS_STATUS_SUCCESS) ++bad;
            }
        });
    }
    for (auto& t : threads) t.join();
    assert_int_equal(bad.load(), 0);
}

// ---- tests: the cache

void warm_lookups_need_no_daemon(void**) {
    Daemon d(subdir("warm"), ad_config(g->tmp.path() + "/warm"));
    point_at(d);
    assert_int_equal(pwnam("bob").status, NSS_STATUS_SUCCESS);
    assert_int_equal(grnam("cvat-user").status, NSS_STATUS_SUCCESS);
    usleep(600 * 1000);  // published
    struct stat st{};
    assert_int_equal(stat((g->tmp.path() + "/warm/nss.mc").c_str(), &st), 0);
    // The publisher also checkpoints the cache, right after it published: bob's row reaches the
    // database file itself, not only its write-ahead log (no lookup pays for that copy and its
    // fsync).
    bool in_db = false;
    for (int i = 0; i < 50 && !(in_db = contains(read_file(g->tmp.path() + "/warm/cache/cache.sqlite"), "bob@")); ++i)
        usleep(100 * 1000);
    assert_true(in_db);
    // A write that publishes nothing (the negative entry of a UID the directory does not know)
    // reaches the database file within about a second too: the publisher checkpoints on its own.
    assert_int_equal(pwuid(1987654321).status, NSS_STATUS_NOTFOUND);
    in_db = false;
    for (int i = 0; i < 50 && !(in_db = contains(read_file(g->tmp.path() + "/warm/cache/cache.sqlite"), "1987654321"));
         ++i)
        usleep(100 * 1000);
    assert_true(in_db);
    assert_int_equal(st.st_mode & 0777, 0644);
    // A stopped daemon cannot answer: what comes back came from the mapped file.
    kill(d.pid(), SIGSTOP);
    Pw bob = pwnam("bob");
    Gr users = grnam("cvat-user");
    auto gids = initgroups("bob", bob.gid);
    kill(d.pid(), SIGCONT);
    assert_int_equal(bob.status, NSS_STATUS_SUCCESS);
    assert_string_equal(bob.name.c_str(), "bob");
    assert_int_equal(users.status, NSS_STATUS_SUCCESS);
    assert_true(has(users.members, "bob"));
    assert_int_equal(gids.size(), 1);
    assert_int_equal(gids[0], kIdMin + 1);
    // No secret in the world-readable file.
    std::string file = read_file(g->tmp.path() + "/warm/nss.mc");
    assert_false(contains(file, "Bind-Secret"));
    assert_false(contains(file, "b0b-p"));

    // A user new to the file (walter) leaves it in place with its groups marked stale: the
    // role group lists walter at once (from the daemon), and bob is still answered by the
    // file while the daemon is stopped.
    assert_int_equal(pwnam("walter").status, NSS_STATUS_SUCCESS);
    assert_true(has(grnam("cvat-worker").members, "walter"));
    assert_true(has(grgid(kIdMin + 2).members, "walter"));
    kill(d.pid(), SIGSTOP);
    Pw bob_again = pwnam("bob");
    auto bob_gids = initgroups("bob", bob.gid);
    kill(d.pid(), SIGCONT);
    assert_int_equal(bob_again.status, NSS_STATUS_SUCCESS);
    assert_int_equal(bob_gids.size(), 1);
}

void cache_survives_restart_and_kill(void**) {
    std::string dir = subdir("persist");
    auto d = std::make_unique<Daemon>(dir, ad_config(dir));
    point_at(*d);
    Pw walter = pwnam("walter");
    assert_int_equal(walter.status, NSS_STATUS_SUCCESS);
    d->stop();
    // A clean restart with the directory gone: the cache answers, same ID.
    g->ad->stop();
    ::unlink((dir + "/nss.mc").c_str());  // the daemon, not the mapped file, must answer
    d = std::make_unique<Daemon>(dir, ad_config(dir));
    Pw again = pwnam("walter");
    assert_int_equal(again.status, NSS_STATUS_SUCCESS);
    assert_int_equal(again.uid, walter.uid);
    g->ad->restart();
    // kill -9 right after a lookup: what was committed is there after the restart.
    Pw nestor = pwnam("nestor");
    assert_int_equal(nestor.status, NSS_STATUS_SUCCESS);
    kill(d->pid(), SIGKILL);
    d->stop();
    g->ad->stop();
    ::unlink((dir + "/nss.mc").c_str());
    d = std::make_unique<Daemon>(dir, ad_config(dir));
    Pw back = pwnam("nestor");
    assert_int_equal(back.status, NSS_STATUS_SUCCESS);
    assert_int_equal(back.uid, nestor.uid);
    // Never seen and the directory down: unavailable, not "no such user".
    assert_int_equal(pwnam("cyril").status, NSS_STATUS_UNAVAIL);
    g->ad->restart();
}

void ttl_negative_entries_and_authctl(void**) {
    std::string dir = subdir("ttl");
    Daemon d(dir, ad_config(dir, "  cache_ttl: 2\n  negative_ttl: 60\n  refresh_percent: 0\n"));
    point_at(d);
    Pw bob = pwnam("bob");
    assert_string_equal(bob.gecos.c_str(), "Bob User");
    ldap_modify(*g->ad, "dn: CN=Bob User,CN=Users,DC=ad,DC=example,DC=test\nchangetype: modify\nreplace: sn\nsn: Renamed\n");
    assert_string_equal(pwnam("bob").gecos.c_str(), "Bob User");  // fresh for 2 s
    sleep(3);
    assert_string_equal(pwnam("bob").gecos.c_str(), "Bob Renamed");
    ldap_modify(*g->ad, "dn: CN=Bob User,CN=Users,DC=ad,DC=example,DC=test\nchangetype: modify\nreplace: sn\nsn: User\n");

    // Negative: a user added to the directory stays unknown until the negative entry goes.
    assert_int_equal(pwnam("newbie").status, NSS_STATUS_NOTFOUND);
    ldap_modify(*g->ad, "dn: CN=New Bie,CN=Users,DC=ad,DC=example,DC=test\nchangetype: add\nobjectClass: user\n"
                        "cn: New Bie\nsAMAccountName: newbie\nsn: Bie\ngivenName: New\n");
    assert_int_equal(pwnam("newbie").status, NSS_STATUS_NOTFOUND);
    const std::string ctl = env_or("CVAT_AUTHCTL", "") + " --socket " + d.socket() + " ";
    int status = -1;
    std::string out = popen_read(ctl + "cache expire newbie", &status);
    assert_int_equal(status, 0);
    assert_int_equal(pwnam("newbie").status, NSS_STATUS_SUCCESS);
    ldap_modify(*g->ad, "dn: CN=New Bie,CN=Users,DC=ad,DC=example,DC=test\nchangetype: delete\n");

    out = popen_read(ctl + "cache list", &status);
    print_message("# cache list:\n");
    for (std::size_t at = 0, nl; at < out.size(); at = nl + 1) {  // each line a TAP comment
        nl = out.find('\n', at);
        if (nl == std::string::npos) nl = out.size();
        print_message("#   %s\n", out.substr(at, nl - at).c_str());
    }
    assert_int_equal(status, 0);
    assert_true(contains(out, "bob\t"));
    assert_true(contains(out, "newbie\t"));
    out = popen_read(ctl + "cache show bob", &status);
    assert_int_equal(status, 0);
    assert_true(contains(out, "immutable id: sid:S-1-5-21-1004336348-1177238915-682003330-1105"));
    assert_true(contains(out, "role: user"));
    out = popen_read(ctl + "cache show nosuch", &status);
    assert_int_not_equal(status, 0);
    out = popen_read(ctl + "cache flush", &status);
    assert_int_equal(status, 0);
    out = popen_read(ctl + "cache list", &status);
    assert_false(contains(out, "bob\t"));
    // IDs stay stable across a flush.
    assert_int_equal(pwnam("bob").uid, bob.uid);
}

void background_refresh(void**) {
    std::string dir = subdir("refresh");
    // Times are whole seconds in the cache: 8 s, half of it 4, leave a second either side.
    Daemon d(dir, ad_config(dir, "  cache_ttl: 8\n  refresh_percent: 50\n"));
    point_at(d);
    const std::string dn = "dn: CN=Walter Worker,CN=Users,DC=ad,DC=example,DC=test\nchangetype: modify\nreplace: sn\n";
    assert_string_equal(pwnam("walter").gecos.c_str(), "Walter Worker");
    ldap_modify(*g->ad, dn + "sn: Refreshed\n");
    usleep(5200 * 1000);
    // Half the TTL has passed: the cached answer comes at once, and a refresh is queued.
    assert_string_equal(pwnam("walter").gecos.c_str(), "Walter Worker");
    usleep(800 * 1000);
    // Still inside the original TTL, the entry is already the directory's new one.
    assert_string_equal(pwnam("walter").gecos.c_str(), "Walter Refreshed");
    assert_true(contains(read_file(d.log_path()), "background refresh of walter: updated"));
    ldap_modify(*g->ad, dn + "sn: Worker\n");
}

// A user the directory no longer has leaves the role group when the daemon learns it (here
// through the background refresh), not at the next rewrite of the mapped file: the file is
// taken away, since it still lists the user.
void removed_user_leaves_role_group_at_once(void**) {
    std::string dir = subdir("removed");
    Daemon d(dir, ad_config(dir, "  cache_ttl: 8\n  refresh_percent: 50\n"));
    point_at(d);
    const std::string dn = "dn: CN=Gone Soon,CN=Users,DC=ad,DC=example,DC=test\nchangetype: ";
    ldap_modify(*g->ad, dn + "add\nobjectClass: user\ncn: Gone Soon\nsAMAccountName: gonesoon\nsn: Soon\n");
    Pw gone = pwnam("gonesoon");
    assert_int_equal(gone.status, NSS_STATUS_SUCCESS);
    auto gids = initgroups("gonesoon", gone.gid);
    assert_int_equal(gids.size(), 1);  // the role group
    usleep(600 * 1000);                // published
    assert_true(has(grgid(gids[0]).members, "gonesoon"));
    ldap_modify(*g->ad, dn + "delete\n");
    usleep(4200 * 1000);  // past half the TTL: the next lookup asks the daemon, which refreshes
    (void)pwnam("gonesoon");
    int waited = 0;
    while (pwnam("gonesoon").status == NSS_STATUS_SUCCESS && waited < 3000) {
        usleep(5 * 1000);
        waited += 5;
    }
    assert_int_equal(pwnam("gonesoon").status, NSS_STATUS_NOTFOUND);
    Gr role = grgid(gids[0]);
    assert_int_equal(role.status, NSS_STATUS_SUCCESS);
    assert_false(has(role.members, "gonesoon"));
}

// ---- tests: logins

void verdict_cache(void**) {
    std::string dir = subdir("verdict");
    // One worker: a login the directory must answer occupies it.
    Daemon d(dir, ad_config(dir, "", "  verdict_ttl: 30\n  workers: 1\n"));
    const std::string pw = "walter-Passw0rd";
    assert_int_equal(login(d, "walter", pw).authenticate, PAM_SUCCESS);
    // The directory hangs: the same credentials are answered from memory, auth and account.
    kill(std::stoi(g->ad->get("SLAPD_PID")), SIGSTOP);
    PamOutcome again = login(d, "walter", pw);
    bool cached = again.authenticate == PAM_SUCCESS && again.acct_mgmt == PAM_SUCCESS;
    // While the only worker waits on the hung directory for dora, walter's cached answer still
    // comes, and before dora's: the daemon's I/O thread answers it, it does not queue.
    std::atomic<bool> dora_done{false};
    std::thread dora([&] {
        PamCall call;
        call.confdir = subdir("pam-dora");
        call.user = "dora";
        call.answers = {"dora-Passw0rd"};
        call.module_args = "socket=" + d.socket() + " timeout=10";
        (void)pam_login(call);
        dora_done = true;
    });
    bool dora_in_worker = false;
    for (int i = 0; i < 500 && !dora_in_worker; ++i) {
        dora_in_worker = contains(read_file(d.log_path()), "route for dora");
        if (!dora_in_worker) usleep(10 * 1000);
    }
    PamOutcome beside = login(d, "walter", pw);
    const bool answered_beside = !dora_done && beside.authenticate == PAM_SUCCESS && beside.acct_mgmt == PAM_SUCCESS;
    kill(std::stoi(g->ad->get("SLAPD_PID")), SIGCONT);
    dora.join();
    assert_true(cached);
    assert_true(dora_in_worker);
    assert_true(answered_beside);
    // A wrong password is never answered from the cache, and it clears the user's entries.
    assert_int_equal(login(d, "walter", "not-the-password").authenticate, PAM_AUTH_ERR);
    kill(std::stoi(g->ad->get("SLAPD_PID")), SIGSTOP);
    PamOutcome after = login(d, "walter", pw);
    kill(std::stoi(g->ad->get("SLAPD_PID")), SIGCONT);
    assert_int_equal(after.authenticate, PAM_AUTHINFO_UNAVAIL);
    // Another service is another key; a reload clears the cache.
    assert_int_equal(login(d, "walter", pw).authenticate, PAM_SUCCESS);
    d.reload(ad_config(dir, "", "  verdict_ttl: 30\n"));
    kill(std::stoi(g->ad->get("SLAPD_PID")), SIGSTOP);
    PamOutcome reloaded = login(d, "walter", pw);
    PamOutcome other = login(d, "walter", pw, "cvat-other");
    kill(std::stoi(g->ad->get("SLAPD_PID")), SIGCONT);
    assert_int_equal(reloaded.authenticate, PAM_AUTHINFO_UNAVAIL);
    assert_int_equal(other.authenticate, PAM_AUTHINFO_UNAVAIL);
    assert_false(contains(read_file(d.log_path()), pw));
}

void offline_login(void**) {
    std::string dir = subdir("offline");
    const std::string off = "  verdict_ttl: 0\n  offline:\n    enabled: true\n    max_age: 4s\n";
    Daemon d(dir, ad_config(dir, "", off));
    const std::string pw = "dora-Passw0rd";
    // Never signed in online: nothing to check offline against.
    g->ad->stop();
    assert_int_equal(login(d, "dora", pw).authenticate, PAM_AUTHINFO_UNAVAIL);
    g->ad->restart();
    PamOutcome online = login(d, "dora", pw);
    assert_int_equal(online.authenticate, PAM_SUCCESS);
    assert_false(shown(online, "offline"));
    g->ad->stop();
    PamOutcome offline = login(d, "dora", pw);
    assert_int_equal(offline.authenticate, PAM_SUCCESS);
    assert_int_equal(offline.acct_mgmt, PAM_SUCCESS);
    assert_true(shown(offline, "offline"));
    auto role = offline.env.find("CVAT_ROLE");
    assert_true(role != offline.env.end() && role->second == "admin");
    assert_int_equal(login(d, "dora", "wrong-password").authenticate, PAM_AUTH_ERR);
    assert_int_equal(login(d, "dora", "wrong-again").authenticate, PAM_AUTH_ERR);
    assert_int_equal(login(d, "dora", "wrong-thrice").authenticate, PAM_AUTH_ERR);
    // After repeated failures the next try is delayed: even the right password waits.
    assert_int_equal(login(d, "dora", pw).authenticate, PAM_AUTH_ERR);
    std::string log = read_file(d.log_path());
    assert_true(contains(log, "refused without checking"));
    assert_false(contains(log, pw));
    // Past max_age the entry no longer logs anyone in.
    sleep(5);
    assert_int_equal(login(d, "dora", pw).authenticate, PAM_AUTHINFO_UNAVAIL);
    g->ad->restart();
    // The stored hash is Argon2id, never the password: neither in the database nor in its log
    // (which holds the latest writes until the daemon's next checkpoint).
    // (The log first: a checkpoint between the two reads then leaves the hash in the database.)
    std::string db = read_file(dir + "/cache/cache.sqlite-wal");
    db += read_file(dir + "/cache/cache.sqlite");
    assert_true(contains(db, "$argon2id$"));
    assert_false(contains(db, pw));
}

int setup(void**) {
    g = new World;
    g->nss = NssModule::load();
    g->ad = std::make_unique<Slapd>(g->tmp.path() + "/ad", "ad");
    g->ipa = std::make_unique<Slapd>(g->tmp.path() + "/ipa-slapd", "ipa");
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

}  // namespace

int main() {
    require_program("slapd");
    require_program("ldapmodify");
    const CMUnitTest tests[] = {
        cmocka_unit_test(lookups_of_directory_users),
        cmocka_unit_test(root_is_never_a_directory_user),
        cmocka_unit_test(lookups_with_uid_number),
        cmocka_unit_test(group_search_with_user_search),
        cmocka_unit_test(directory_groups),
        cmocka_unit_test(nss_wrapper_id_and_getent),
        cmocka_unit_test(small_buffers_then_success),
        cmocka_unit_test(daemon_down_is_unavailable),
        cmocka_unit_test(fork_and_threads),
        cmocka_unit_test(warm_lookups_need_no_daemon),
        cmocka_unit_test(cache_survives_restart_and_kill),
        cmocka_unit_test(ttl_negative_entries_and_authctl),
        cmocka_unit_test(background_refresh),
        cmocka_unit_test(removed_user_leaves_role_group_at_once),
        cmocka_unit_test(verdict_cache),
        cmocka_unit_test(offline_login),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
