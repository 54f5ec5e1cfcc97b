// SPDX-License-Identifier: GPL-3.0-or-later
// ldap.dns_srv through the whole real path: libpam → pam_cvat.so → cvat-authd → DNS → slapd.
// A private dnsmasq on 127.0.0.77:53 serves _ldap._tcp.cvat.test with two slapds as targets;
// cvat-authd runs in a private mount namespace (unshare -m) whose /etc/resolv.conf is a
// bind mount of the test's file naming that dnsmasq, so the host's file is never touched.
// Checks: logins go to the priority-0 target; when the record changes and its TTL passes the
// daemon follows; when the priority-0 target stops (refusing, or silent) logins fail over to
// the next within connect_timeout; when DNS itself stops the last good targets stay in use.
// Needs root (port 53, mount namespaces); everything is stopped by PID.
#include "cmocka.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"
#include "pam_driver.hpp"

using namespace cvat::test;

namespace {

// 127/8 is loopback as a whole; .77 is nobody's (127.0.0.53 is systemd-resolved's stub).
constexpr const char* kDnsAddress = "127.0.0.77";
constexpr const char* kSrvName = "_ldap._tcp.cvat.test";
// Seconds. The daemon looks the record up again after max(TTL, 5 s) (SrvDiscovery::kMinTtl).
constexpr double kConnectTimeout = 1.0;
constexpr int kTtl = 1;
constexpr double kMinTtl = 5.0;
constexpr double kSlack = 1.0;
const char* kAdUsers = "CN=Users,dc=ad,dc=example,dc=test";
const char* kAliceBind = "BIND dn=\"cn=Alice Admin,cn=Users,dc=ad,dc=example,dc=test\" method=128";

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) ++n;
    return n;
}

// dnsmasq in the foreground, answering only for cvat.test from its --conf-file: SRV records
// and A records for the target names. Restarted to change the records (it re-reads its
// config file only at start).
class Dnsmasq {
public:
    explicit Dnsmasq(std::string dir) : dir_(std::move(dir)) {}
    ~Dnsmasq() { stop(); }

    struct Target {
        std::string host;  // under cvat.test, resolving to 127.0.0.1
        int port;
        int priority;
        int weight;
    };

    void start(const std::vector<Target>& targets) {
        stop();
        std::string conf = "port=53\nlisten-address=" + std::string(kDnsAddress) +
                           "\nbind-interfaces\nno-resolv\nno-hosts\nlocal=/cvat.test/\n"
                           "local-ttl=" + std::to_string(kTtl) + "\nlog-queries\n";
        for (const Target& t : targets) {
            conf += "srv-host=" + std::string(kSrvName) + "," + t.host + "," + std::to_string(t.port) + "," +
                    std::to_string(t.priority) + "," + std::to_string(t.weight) + "\n";
            conf += "host-record=" + t.host + ",127.0.0.1\n";
        }
        write_file(dir_ + "/dnsmasq.conf", conf, 0644);
        if (accepts()) fail_msg("%s:53 is already served by another process", kDnsAddress);
        pid_ = ::fork();
        if (pid_ < 0) fail_msg("fork: %s", std::strerror(errno));
        if (pid_ == 0) {
            int log = ::open((dir_ + "/dnsmasq.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (log < 0) ::_exit(126);
            ::dup2(log, 1);
            ::dup2(log, 2);
            const std::string conf_arg = "--conf-file=" + dir_ + "/dnsmasq.conf";
            ::execlp("dnsmasq", "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--pid-file=",
                     conf_arg.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        track_pid(pid_);
        // Ready when it accepts TCP on port 53 (it listens on UDP and TCP).
        const double until = now_s() + 10;
        while (!accepts()) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                untrack_pid(pid_);
                pid_ = -1;
                std::fprintf(stderr, "%s\n", read_file(dir_ + "/dnsmasq.log").c_str());
                fail_msg("dnsmasq exited at start (is port 53 of %s taken?)", kDnsAddress);
            }
            if (now_s() > until) fail_msg("dnsmasq did not listen on %s:53 within 10 s", kDnsAddress);
            ::usleep(20 * 1000);
        }
    }

    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        untrack_pid(pid_);
        pid_ = -1;
    }

private:
    static bool accepts() {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(53);
        ::inet_pton(AF_INET, kDnsAddress, &a.sin_addr);
        bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        return ok;
    }

    std::string dir_;
    pid_t pid_ = -1;
};

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> a;  // ldap-a.cvat.test
    std::unique_ptr<Slapd> b;  // ldap-b.cvat.test
    std::unique_ptr<Dnsmasq> dns;
};
World* g = nullptr;

std::string config(const std::string& dir) {
    write_file(dir + "/bind_password", "Bind-Secret-1\n", 0600);
    // The targets are names, not loopback literals: plain ldap:// to them needs the opt-in
    // (TLS is test_ldap_login's subject; here it would only need certificates for the names).
    return std::string("helper:\n"
                       "  socket: @SOCKET@\n"
                       "  log_level: debug\n"
                       "  verdict_ttl: 0\n"
                       "ldap:\n"
                       "  dns_srv: ") + kSrvName + "\n"
           "  allow_cleartext_password: true\n"
           "  bind_dn: \"CN=cvat_bind," + kAdUsers + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           "  user_search: {base: \"" + kAdUsers + "\", scope: subtree, filter: \"(sAMAccountName=%(user)s)\"}\n"
           "  group_search: {base: \"" + kAdUsers + "\", scope: subtree, filter: \"(objectClass=group)\"}\n"
           "  group_type: nested_active_directory\n"
           "  user_attr_map: {user_name: sAMAccountName}\n"
           "  role_groups:\n"
           "    admin: [\"CN=CVAT Admins," + kAdUsers + "\"]\n"
           "  connect_timeout: " + std::to_string(kConnectTimeout) + "\n"
           "  timeout: 5\n";
}

// The daemon in its own mount namespace, /etc/resolv.conf naming only the test's dnsmasq.
std::unique_ptr<Daemon> start_daemon(const std::string& dir) {
    write_file(dir + "/resolv.conf", std::string("nameserver ") + kDnsAddress + "\noptions timeout:1 attempts:1\n", 0644);
    return std::make_unique<Daemon>(
        dir, config(dir),
        std::vector<std::string>{"unshare", "-m", "sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
                                 dir + "/resolv.conf"});
}

PamOutcome login(const Daemon& d, const std::string& dir, const std::string& user, const std::string& pw) {
    PamCall call;
    call.confdir = dir;
    call.user = user;
    call.answers = {pw};
    call.module_args = "socket=" + d.socket() + " timeout=30";
    return pam_login(call);
}

// alice's binds seen by each slapd so far.
struct Binds {
    std::size_t a, b;
};
Binds binds() {
    return {count(read_file(g->tmp.path() + "/a/slapd.log"), kAliceBind),
            count(read_file(g->tmp.path() + "/b/slapd.log"), kAliceBind)};
}

// Logs alice in and says which slapd took her bind ('a' or 'b'); the time in `seconds`.
char alice_on(const Daemon& d, const std::string& dir, double* seconds = nullptr) {
    const Binds before = binds();
    PamOutcome o = login(d, dir, "alice", "alice-Passw0rd");
    if (o.authenticate != PAM_SUCCESS) {
        std::fprintf(stderr, "%s\n", read_file(d.log_path()).c_str());
        fail_msg("alice: PAM code %d, want PAM_SUCCESS", o.authenticate);
    }
    auto role = o.env.find("CVAT_ROLE");
    assert_true(role != o.env.end() && role->second == "admin");
    if (seconds != nullptr) *seconds = o.seconds;
    // slapd writes its log line after answering: wait for it briefly.
    for (int i = 0; i < 100; ++i) {
        const Binds after = binds();
        if (after.a > before.a && after.b == before.b) return 'a';
        if (after.b > before.b && after.a == before.a) return 'b';
        if (after.a > before.a && after.b > before.b) fail_msg("alice bound on both slapds in one login");
        ::usleep(20 * 1000);
    }
    fail_msg("no slapd logged alice's bind");
    return '?';
}

void expect_on(char got, char want, const char* when) {
    if (got != want) fail_msg("%s: alice's bind went to slapd %c, want %c", when, got, want);
}

// --- setup ---------------------------------------------------------------------------------

int setup(void**) {
    if (::geteuid() != 0) {
        // Port 53 and mount namespaces need root; CI runs the suites as root.
        std::printf("1..0 # SKIP needs root (port 53 on %s, unshare -m)\n", kDnsAddress);
        std::fflush(stdout);
        ::_exit(77);
    }
    require_program("dnsmasq");
    require_program("unshare");
    g = new World;
    ::setenv("SLAPD_DEBUG", "stats", 1);  // each slapd logs the binds it answers
    g->a = std::make_unique<Slapd>(g->tmp.path() + "/a", "ad");
    g->b = std::make_unique<Slapd>(g->tmp.path() + "/b", "ad");
    ::unsetenv("SLAPD_DEBUG");
    g->dns = std::make_unique<Dnsmasq>(g->tmp.path());
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

int port_of(const Slapd& s) { return std::atoi(s.get("LDAP_PORT").c_str()); }

// --- the test ------------------------------------------------------------------------------

void srv_priority_change_failover(void**) {
    const std::string host_resolv = read_file("/etc/resolv.conf");
    const int pa = port_of(*g->a), pb = port_of(*g->b);
    g->dns->start({{"ldap-a.cvat.test", pa, 0, 100}, {"ldap-b.cvat.test", pb, 10, 100}});
    const std::string dir = g->tmp.path() + "/daemon";
    ::mkdir(dir.c_str(), 0700);
    auto d = start_daemon(dir);

    // 1. Priority 0 (a) takes every login; b (priority 10) none.
    for (int i = 0; i < 4; ++i) expect_on(alice_on(*d, dir), 'a', "priority 0 is a");

    // 2. The record changes (b priority 0, a priority 10, both up): once its TTL has passed the
    //    daemon follows, and drops its pooled connections to a.
    g->dns->start({{"ldap-a.cvat.test", pa, 10, 100}, {"ldap-b.cvat.test", pb, 0, 100}});
    const double changed = now_s();
    char on = 'a';
    while (on == 'a' && now_s() - changed < kMinTtl + 3) {
        on = alice_on(*d, dir);
        if (on == 'a') ::usleep(250 * 1000);
    }
    expect_on(on, 'b', "after the record changed");
    std::fprintf(stderr, "# the daemon followed the changed record after %.1f s (TTL %d s, floor %.0f s)\n",
                 now_s() - changed, kTtl, kMinTtl);
    for (int i = 0; i < 3; ++i) expect_on(alice_on(*d, dir), 'b', "priority 0 is b");

    // 3. b stops (connection refused): failover to a within connect_timeout.
    g->b->stop();
    double s = 0;
    expect_on(alice_on(*d, dir, &s), 'a', "b stopped");
    std::fprintf(stderr, "# failover from a stopped priority-0 target: %.3f s (connect_timeout %.1f s)\n", s,
                 kConnectTimeout);
    if (s > kConnectTimeout + kSlack) fail_msg("failover took %.2f s", s);
    expect_on(alice_on(*d, dir, &s), 'a', "b still stopped");
    if (s > 0.5 * kConnectTimeout) fail_msg("the next login took %.2f s: the dead target was tried again", s);

    // 4. The priority-0 target accepts TCP and never answers: it costs one connect_timeout.
    SilentServer silent;
    g->dns->start({{"ldap-s.cvat.test", silent.port(), 0, 100}, {"ldap-a.cvat.test", pa, 10, 100}});
    const double changed2 = now_s();
    double worst = 0;
    bool tried_silent = false;
    while (now_s() - changed2 < kMinTtl + 3) {
        expect_on(alice_on(*d, dir, &s), 'a', "silent priority-0 target");
        if (s > 0.5 * kConnectTimeout) {  // this login met the silent target
            tried_silent = true;
            worst = s;
            break;
        }
        ::usleep(250 * 1000);
    }
    if (!tried_silent) fail_msg("the daemon never tried the silent target of the changed record");
    std::fprintf(stderr, "# failover from a silent priority-0 target: %.3f s (connect_timeout %.1f s)\n", worst,
                 kConnectTimeout);
    if (worst > kConnectTimeout + kSlack) fail_msg("failover past the silent target took %.2f s", worst);
    expect_on(alice_on(*d, dir, &s), 'a', "silent target marked down");
    if (s > 0.5 * kConnectTimeout) fail_msg("the silent target was tried again (%.2f s)", s);

    // 5. DNS itself goes away: the last good targets stay in use.
    g->dns->stop();
    ::sleep(static_cast<unsigned>(kMinTtl) + 1);
    expect_on(alice_on(*d, dir, &s), 'a', "DNS stopped");
    std::fprintf(stderr, "# login while DNS is down (the lookup fails first): %.3f s\n", s);
    if (!contains(read_file(d->log_path()), "using the targets found before"))
        fail_msg("the daemon did not log the failed lookup");

    d->stop();
    if (read_file("/etc/resolv.conf") != host_resolv) fail_msg("the host's /etc/resolv.conf changed");
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(srv_priority_change_failover),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
