// SPDX-License-Identifier: GPL-3.0-or-later
// Faults under load, through the real path (libpam → pam_cvat.so → cvat-authd → slapd or an
// HTTPS IdP; libnss_cvat.so.2 → cvat-authd): while client threads log in and look users up
// without pause, a slapd is killed, every directory goes, the IdP is slow or talks garbage,
// the daemon is killed or restarted, a broken config is loaded, the cache's disk is full,
// and slow clients hold connections. Each case checks that every call came back within a
// bound, that no call succeeded that could not have been verified, and that the system
// recovers. Fixture users: tests/fixtures/README.md.
#include "cmocka.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <nss.h>
#include <poll.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"
#include "nss_module.hpp"
#include "pam_driver.hpp"

using namespace cvat::test;

namespace {

const char* kUsers = "CN=Users,DC=ad,DC=example,DC=test";

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> a;  // two servers with the same tree
    std::unique_ptr<Slapd> b;
    NssModule nss;
};
World* g = nullptr;

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

std::string subdir(const std::string& name) {
    std::string d = g->tmp.path() + "/" + name;
    mkdir(d.c_str(), 0700);
    return d;
}

// Ends the program (TAP "Bail out!", every started process killed by the fixture's handler)
// when a case runs longer than it may: a hung call must fail the test, not stall it.
class Watchdog {
public:
    Watchdog(const char* what, double seconds) : what_(what) {
        thread_ = std::thread([this, seconds] {
            std::unique_lock lock(m_);
            if (!cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return done_; })) {
                std::printf("Bail out! watchdog: %s still running after %.0f s (a call hung)\n", what_, seconds);
                std::fflush(stdout);
                ::raise(SIGTERM);
            }
        });
    }
    ~Watchdog() {
        {
            std::lock_guard lock(m_);
            done_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

private:
    const char* what_;
    std::mutex m_;
    std::condition_variable cv_;
    bool done_ = false;
    std::thread thread_;
};

// The LDAP part of a config: `uris` the server list, short timeouts.
std::string config(const std::string& dir, const std::string& uris, const std::string& helper_extra = "",
                   const std::string& ldap_extra = "", const std::string& top_extra = "") {
    mkdir(dir.c_str(), 0700);
    write_file(dir + "/bind_password", "Bind-Secret-1\n", 0600);
    const std::string u = kUsers;
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n"
           "  verdict_ttl: 0\n"  // every login goes to the directory
           // The load sends wrong passwords without pause, which the failed-login throttle
           // would rightly hold (up to max_delay) or refuse: off here, test_abuse covers it.
           "  rate_limit: {per_user: {failures: 0}, per_peer: {failures: 0}}\n" +
           helper_extra +
           "nss:\n"
           "  id_min: 300000\n"
           "  id_max: 399999\n"
           "  refresh_percent: 0\n" +
           top_extra +
           "ldap:\n"
           "  server_uri: [" + uris + "]\n"
           "  bind_dn: \"CN=cvat_bind," + u + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           "  connect_timeout: 1\n"
           "  timeout: 2\n" +
           ldap_extra + cvat_ad_example(u);
}

std::string both_uris() { return g->a->uri() + ", " + g->b->uri(); }

// ---- the load ----------------------------------------------------------------------------------

enum class Kind { pam, nss };

struct Call {
    Kind kind = Kind::pam;
    std::string user;
    bool right = true;       // the right password (pam)
    int rc = -1;             // PAM code, or nss_status
    bool offline = false;    // the module said the login was checked offline
    double start = 0, end = 0;
    double seconds() const { return end - start; }
};

struct Account {
    const char* user;
    const char* password;
};
const Account kAccounts[] = {{"alice", "alice-Passw0rd"}, {"walter", "walter-Passw0rd"}, {"dora", "dora-Passw0rd"},
                             {"nina", "nina-Passw0rd"}};

// One PAM login (authenticate only) through pam_cvat.so.
Call pam_call(const std::string& socket, const std::string& confdir, const std::string& user,
              const std::string& password, bool right, int timeout_s) {
    PamCall pc;
    pc.confdir = confdir;
    pc.user = user;
    pc.answers = {password};
    pc.account = false;
    pc.module_args = "socket=" + socket + " timeout=" + std::to_string(timeout_s);
    Call c;
    c.kind = Kind::pam;
    c.user = user;
    c.right = right;
    c.start = now_s();
    PamOutcome o = pam_login(pc);
    c.end = now_s();
    c.rc = o.authenticate;
    for (const auto& m : o.messages)
        if (contains(m, "offline")) c.offline = true;
    return c;
}

Call nss_call(const std::string& user) {
    Call c;
    c.kind = Kind::nss;
    c.user = user;
    c.start = now_s();
    PwEntry p = lookup_pwnam(g->nss, user);
    c.end = now_s();
    c.rc = p.status;
    if (p.status == NSS_STATUS_SUCCESS && p.name != user) c.rc = -2;  // a wrong answer
    return c;
}

// Threads that call `op(thread, iteration)` without pause until stopped; every call kept.
class Load {
public:
    using Op = std::function<Call(int, int)>;
    Load(int threads, Op op) : op_(std::move(op)) {
        for (int t = 0; t < threads; ++t)
            threads_.emplace_back([this, t] {
                for (int i = 0; !stop_.load(); ++i) {
                    Call c = op_(t, i);
                    const bool nss = c.kind == Kind::nss;
                    {
                        std::lock_guard lock(m_);
                        calls_.push_back(std::move(c));
                    }
                    // Warm lookups come from the mapped file in microseconds: pace them.
                    if (nss) usleep(2000);
                }
            });
    }
    ~Load() { (void)stop(); }
    std::vector<Call> stop() {
        stop_ = true;
        for (auto& t : threads_)
            if (t.joinable()) t.join();
        std::lock_guard lock(m_);
        return calls_;
    }
    std::size_t count() {
        std::lock_guard lock(m_);
        return calls_.size();
    }

private:
    Op op_;
    std::atomic<bool> stop_{false};
    std::mutex m_;
    std::vector<Call> calls_;
    std::vector<std::thread> threads_;
};

// The standard mix: PAM threads log the accounts in (every third try with a wrong password),
// NSS threads look them up.
Load::Op mixed_op(const std::string& socket, const std::string& dir, int pam_threads, int timeout_s) {
    return [socket, dir, pam_threads, timeout_s](int t, int i) {
        const Account& a = kAccounts[static_cast<std::size_t>(t + i) % 4];
        if (t < pam_threads) {
            bool right = (t + i) % 3 != 0;
            return pam_call(socket, dir + "/pam" + std::to_string(t), a.user, right ? a.password : "Wrong-Pw-1", right,
                            timeout_s);
        }
        return nss_call(a.user);
    };
}

// Calls that overlap [from, to].
std::vector<Call> during(const std::vector<Call>& calls, double from, double to) {
    std::vector<Call> out;
    for (const auto& c : calls)
        if (c.end >= from && c.start <= to) out.push_back(c);
    return out;
}

// Calls that started at or after `from`.
std::vector<Call> started_after(const std::vector<Call>& calls, double from) {
    std::vector<Call> out;
    for (const auto& c : calls)
        if (c.start >= from) out.push_back(c);
    return out;
}

double longest(const std::vector<Call>& calls) {
    double m = 0;
    for (const auto& c : calls) m = std::max(m, c.seconds());
    return m;
}

// Every security property that holds whatever the fault: no wrong password accepted.
void no_wrong_password_accepted(const std::vector<Call>& calls) {
    for (const auto& c : calls)
        if (c.kind == Kind::pam && !c.right && c.rc == PAM_SUCCESS)
            fail_msg("PAM_SUCCESS for %s with a wrong password", c.user.c_str());
}

int count_rc(const std::vector<Call>& calls, Kind kind, int rc, bool right = true) {
    int n = 0;
    for (const auto& c : calls)
        if (c.kind == kind && c.rc == rc && (kind == Kind::nss || c.right == right)) ++n;
    return n;
}

void summary(const char* what, const std::vector<Call>& calls, double seconds) {
    print_message("# %s: %zu calls in %.1f s, longest %.2f s\n", what, calls.size(), seconds, longest(calls));
}

// ---- slapd killed mid-load ------------------------------------------------------------------------

// The first of two servers is killed -9 under load: logins go on through the second within
// the connect timeout; then the second goes too: unavailable, never success; one server back:
// logins work again without restarting the daemon.
void slapd_killed_mid_load(void**) {
    Watchdog dog("slapd_killed_mid_load", 60);
    const double t0 = now_s();
    std::string dir = subdir("killslapd");
    Daemon d(dir, config(dir, both_uris()), whole_malloc_stacks());
    setenv("CVAT_AUTH_SOCKET", d.socket().c_str(), 1);
    constexpr int kPam = 6, kTimeout = 10;
    Load load(8, mixed_op(d.socket(), dir, kPam, kTimeout));
    sleep_s(1.5);
    const double kill_a = now_s();
    ::kill(std::stoi(g->a->get("SLAPD_PID")), SIGKILL);
    sleep_s(3);
    const double kill_b = now_s();
    ::kill(std::stoi(g->b->get("SLAPD_PID")), SIGKILL);
    sleep_s(3);
    const double restart = now_s();
    g->b->restart();
    const double restarted = now_s();
    sleep_s(3);
    auto calls = load.stop();
    summary("slapd killed", calls, now_s() - t0);

    no_wrong_password_accepted(calls);
    // Bound: connect timeout (1 s) + operation timeout (2 s) per server, and margin.
    if (longest(calls) > 2 * 3 + 2) fail_msg("a call took %.2f s", longest(calls));
    // Between the two kills (after the first connect timeout has passed), every right
    // password logs in: the second server carries the load.
    auto failover = during(calls, kill_a + 1.5, kill_b - 0.1);
    failover.erase(std::remove_if(failover.begin(), failover.end(), [&](const Call& c) { return c.end > kill_b; }),
                   failover.end());
    assert_true(count_rc(failover, Kind::pam, PAM_SUCCESS) > 0);
    for (const auto& c : failover)
        if ((c.kind == Kind::pam && c.right && c.rc != PAM_SUCCESS) ||
            (c.kind == Kind::nss && c.rc != NSS_STATUS_SUCCESS))
            fail_msg("after failover %s %s: %d", c.kind == Kind::pam ? "login" : "lookup", c.user.c_str(), c.rc);
    // Both down: logins that started after the second kill and ended before the restart
    // are unavailable (no offline login configured); nothing succeeds.
    auto dark = started_after(calls, kill_b + 0.05);
    dark.erase(std::remove_if(dark.begin(), dark.end(), [&](const Call& c) { return c.end > restart; }), dark.end());
    assert_true(count_rc(dark, Kind::pam, PAM_AUTHINFO_UNAVAIL) > 0);
    for (const auto& c : dark)
        if (c.kind == Kind::pam && c.rc != PAM_AUTHINFO_UNAVAIL)
            fail_msg("with every server down, login of %s gave %d", c.user.c_str(), c.rc);
    // Recovery: a second after the restart, right passwords log in again.
    auto back = started_after(calls, restarted + 1.0);
    assert_true(count_rc(back, Kind::pam, PAM_SUCCESS) > 0);
    for (const auto& c : back)
        if (c.kind == Kind::pam && c.right && c.rc != PAM_SUCCESS)
            fail_msg("after recovery, login of %s gave %d", c.user.c_str(), c.rc);
    g->a->restart();
}

// Every server down with offline login on: a user who logged in online before is let in
// offline with the right password only; one who never did gets PAM_AUTHINFO_UNAVAIL.
void all_down_offline_login(void**) {
    Watchdog dog("all_down_offline_login", 60);
    const double t0 = now_s();
    std::string dir = subdir("offline");
    Daemon d(dir, config(dir, both_uris(), "  offline:\n    enabled: true\n    max_age: 1h\n"), whole_malloc_stacks());
    // alice and walter log in online first; dora never does. Wrong passwords go to walter
    // only (repeated failures delay that user's offline logins).
    assert_int_equal(pam_call(d.socket(), dir, "alice", "alice-Passw0rd", true, 10).rc, PAM_SUCCESS);
    assert_int_equal(pam_call(d.socket(), dir, "walter", "walter-Passw0rd", true, 10).rc, PAM_SUCCESS);
    const std::string sock = d.socket();
    setenv("CVAT_AUTH_SOCKET", sock.c_str(), 1);
    std::atomic<bool> dark_now{false};
    Load load(6, [&](int t, int i) {
        std::string cd = dir + "/pam" + std::to_string(t);
        switch (t % 3) {
        case 0: return pam_call(sock, cd, "alice", "alice-Passw0rd", true, 10);
        // dora is only looked up until every server is gone: she never logged in online.
        case 1: return dark_now ? pam_call(sock, cd, "dora", "dora-Passw0rd", true, 10) : nss_call("dora");
        default: return i % 2 == 0 ? pam_call(sock, cd, "walter", "Wrong-Pw-1", false, 10)
                                   : pam_call(sock, cd, "walter", "walter-Passw0rd", true, 10);
        }
    });
    sleep_s(1);
    g->a->stop();
    g->b->stop();
    const double down = now_s();  // stop() returns once the server is gone
    dark_now = true;
    sleep_s(4);
    const double up = now_s();
    g->a->restart();
    const double upped = now_s();
    sleep_s(2.5);
    auto calls = load.stop();
    summary("all down, offline", calls, now_s() - t0);
    no_wrong_password_accepted(calls);
    if (longest(calls) > 2 * 3 + 2) fail_msg("a call took %.2f s", longest(calls));
    auto dark = started_after(calls, down + 0.1);
    dark.erase(std::remove_if(dark.begin(), dark.end(), [&](const Call& c) { return c.end > up; }), dark.end());
    int alice_offline = 0;
    for (const auto& c : dark) {
        if (c.kind != Kind::pam) continue;
        if (c.user == "alice") {
            if (c.rc != PAM_SUCCESS || !c.offline) fail_msg("alice offline: %d (offline said: %d)", c.rc, c.offline);
            ++alice_offline;
        } else if (c.user == "dora") {
            if (c.rc != PAM_AUTHINFO_UNAVAIL) fail_msg("dora (never online) with every server down: %d", c.rc);
        } else if (c.rc == PAM_SUCCESS && !c.offline) {
            fail_msg("walter logged in, not offline, with every server down");
        }
    }
    assert_true(alice_offline > 0);
    for (const auto& c : started_after(calls, upped + 1.0))
        if (c.kind == Kind::pam && c.right && c.user != "walter" && (c.rc != PAM_SUCCESS || c.offline))
            fail_msg("after recovery %s: %d offline=%d", c.user.c_str(), c.rc, c.offline);
    g->b->restart();
}

// ---- a directory that says goodbye -----------------------------------------------------------

// An LDAP server that answers binds with success and any other request with RFC 4511's Notice
// of Disconnection (§4.4.1, an unsolicited extended response, message ID 0), then closes the
// connection: what slapd sends on every open connection when it shuts down.
class GoodbyeServer {
public:
    GoodbyeServer() = default;
    GoodbyeServer(const GoodbyeServer&) = delete;
    GoodbyeServer& operator=(const GoodbyeServer&) = delete;
    std::string uri() const { return "ldap://127.0.0.1:" + std::to_string(server_.port()); }
    int notices() const { return notices_; }

private:
    static bool read_all(int c, unsigned char* p, std::size_t n) {
        while (n > 0) {
            ssize_t r = ::recv(c, p, n, 0);
            if (r <= 0) return false;
            p += r;
            n -= static_cast<std::size_t>(r);
        }
        return true;
    }
    void serve(int c) {
        static const unsigned char kNotice[] = {0x30, 0x24, 0x02, 0x01, 0x00, 0x78, 0x1f, 0x0a, 0x01, 0x34,
                                                0x04, 0x00, 0x04, 0x00, 0x8a, 0x16, '1',  '.',  '3',  '.',
                                                '6',  '.',  '1',  '.',  '4',  '.',  '1',  '.',  '1',  '4',
                                                '6',  '6',  '.',  '2',  '0',  '0',  '3',  '6'};
        for (;;) {
            unsigned char h[2];
            if (!read_all(c, h, 2) || h[0] != 0x30) return;
            std::size_t n = h[1];
            if ((n & 0x80) != 0) {
                unsigned char l[4];
                const std::size_t k = n & 0x7f;
                if (k == 0 || k > 4 || !read_all(c, l, k)) return;
                n = 0;
                for (std::size_t i = 0; i < k; ++i) n = n << 8 | l[i];
            }
            if (n < 4 || n > 65536) return;
            std::vector<unsigned char> body(n);
            if (!read_all(c, body.data(), n) || body[0] != 0x02) return;
            const std::size_t idlen = body[1];
            if (idlen == 0 || idlen > 4 || 2 + idlen >= n) return;
            const unsigned char op = body[2 + idlen];
            if (op == 0x42) return;  // unbind
            if (op == 0x60) {        // bind: success
                static const unsigned char kSuccess[] = {0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00};
                unsigned char r[4 + 4 + sizeof kSuccess];
                std::size_t len = 0;
                r[len++] = 0x30;
                r[len++] = static_cast<unsigned char>(2 + idlen + sizeof kSuccess);
                r[len++] = 0x02;
                r[len++] = static_cast<unsigned char>(idlen);
                for (std::size_t i = 0; i < idlen; ++i) r[len++] = body[2 + i];
                for (unsigned char b : kSuccess) r[len++] = b;
                if (::send(c, r, len, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) return;
                continue;
            }
            ::send(c, kNotice, sizeof kNotice, MSG_NOSIGNAL);
            ++notices_;
            return;
        }
    }

    std::atomic<int> notices_{0};
    // A connection the daemon keeps idle ends within 5 s.
    LoopbackServer server_{"goodbye server", [this](int c) { serve(c); }, true, 5};
};

// A server that sends a Notice of Disconnection has closed the connection: the login goes on
// through the next server; with no other server it is PAM_AUTHINFO_UNAVAIL at once, never a
// success and never a wait for a timeout. (In the sanitizer build this also checks that the
// one leak of libldap's own that such a notice causes stays suppressed, and nothing else.)
void notice_of_disconnection(void**) {
    Watchdog dog("notice_of_disconnection", 60);
    GoodbyeServer bye;
    {
        std::string dir = subdir("goodbye-next");
        Daemon d(dir, config(dir, bye.uri() + ", " + g->a->uri()), whole_malloc_stacks());
        Call c = pam_call(d.socket(), dir, "alice", "alice-Passw0rd", true, 10);
        if (c.rc != PAM_SUCCESS) fail_msg("alice through the second server: %d", c.rc);
        assert_true(bye.notices() >= 1);
    }
    {
        std::string dir = subdir("goodbye-only");
        Daemon d(dir, config(dir, bye.uri()), whole_malloc_stacks());
        const int before = bye.notices();
        for (const char* pw : {"alice-Passw0rd", "Wrong-Pw-1"}) {
            Call c = pam_call(d.socket(), dir, "alice", pw, true, 10);
            if (c.rc != PAM_AUTHINFO_UNAVAIL) fail_msg("alice with only the leaving server: %d", c.rc);
            if (c.seconds() > 1.5) fail_msg("refusal took %.2f s", c.seconds());
        }
        assert_true(bye.notices() > before);
        assert_true(contains(read_file(d.log_path()), "unreachable"));
    }
}

// ---- the IdP ----------------------------------------------------------------------------------

// fault-idp.py on a free port with a make-ca.sh certificate; killed by PID.
class FaultIdp {
public:
    FaultIdp(const std::string& dir, int delay_s) : dir_(dir) {
        std::string fixtures = env_or("CVAT_FIXTURES", "");
        if (run_program({"/bin/bash", fixtures + "/make-ca.sh", dir + "/ca", "fault-idp"}, {}, 60) != 0)
            fail_msg("make-ca.sh failed");
        pid_ = fork();
        if (pid_ == 0) {
            int log = ::open((dir + "/idp.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            ::dup2(log, 1);
            ::dup2(log, 2);
            std::string script = fixtures + "/fault-idp.py";
            std::string cert = dir + "/ca/server.pem", key = dir + "/ca/server.key", pf = dir + "/port";
            std::string delay = std::to_string(delay_s);
            execlp("python3", "python3", script.c_str(), cert.c_str(), key.c_str(), pf.c_str(), delay.c_str(),
                   static_cast<char*>(nullptr));
            _exit(127);
        }
        track_pid(pid_);
        for (int i = 0; i < 500 && port_ == 0; ++i) {
            port_ = std::atoi(read_file(dir + "/port").c_str());
            if (port_ == 0) usleep(20 * 1000);
        }
        if (port_ == 0) fail_msg("fault-idp.py did not start: %s", read_file(dir + "/idp.log").c_str());
    }
    ~FaultIdp() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        untrack_pid(pid_);
    }
    std::string url(const std::string& mode) const { return "https://127.0.0.1:" + std::to_string(port_) + "/" + mode; }
    std::string ca() const { return dir_ + "/ca/ca.pem"; }

private:
    std::string dir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

const char* kIdpModes[] = {"slow", "garbage", "huge", "wrongtype", "truncated", "tokenslow", "tokengarbage"};

// Every broken IdP under load, while LDAP logins go on: never success, PAM_AUTHINFO_UNAVAIL
// within the daemon's HTTP timeout (10 s) and margin, and the LDAP logins stay prompt.
void idp_slow_and_garbage(void**) {
    Watchdog dog("idp_slow_and_garbage", 60);
    const double t0 = now_s();
    std::string dir = subdir("idp");
    FaultIdp idp(dir, 13);  // longer than the daemon's whole-request timeout (10 s)
    std::string sso = "sso:\n  enabled: true\n  selection_mode: email_address\n  identity_providers:\n";
    for (const char* m : kIdpModes)
        sso += std::string("    - id: ") + m + "\n      protocol: OIDC\n      name: " + m +
               "\n      server_url: " + idp.url(m) + "\n      client_id: cvat\n      client_secret: Client-Secret-1\n"
               "      email_domain: " + m + ".test\n      ca_file: " + idp.ca() + "\n";
    Daemon d(dir, config(dir, both_uris(), "", "", sso));
    const std::string sock = d.socket();
    constexpr int kModes = sizeof kIdpModes / sizeof kIdpModes[0];
    // One thread per broken IdP (two for the slow ones: several requests hang at once), and
    // two LDAP threads.
    Load idp_load(kModes + 2, [&](int t, int i) {
        const char* m = kIdpModes[t % kModes];
        std::string cd = dir + "/pam" + std::to_string(t);
        return pam_call(sock, cd, "user" + std::to_string(i) + "@" + m + ".test", "Some-Passw0rd", false, 20);
    });
    Load ldap_load(2, [&](int t, int i) {
        const Account& a = kAccounts[static_cast<std::size_t>(i) % 4];
        return pam_call(sock, dir + "/ldap" + std::to_string(t), a.user, a.password, true, 20);
    });
    sleep_s(14);
    auto ldap_calls = ldap_load.stop();
    auto idp_calls = idp_load.stop();
    summary("IdP faults", idp_calls, now_s() - t0);
    summary("LDAP beside them", ldap_calls, now_s() - t0);
    for (const char* m : kIdpModes) {
        int n = 0;
        double worst = 0;
        for (const auto& c : idp_calls) {
            if (!contains(c.user, std::string("@") + m + ".")) continue;
            ++n;
            worst = std::max(worst, c.seconds());
            // A token response whose id_token is no JWT: the IdP accepted the password and
            // the daemon refused its token, PAM_AUTH_ERR is as right as PAM_AUTHINFO_UNAVAIL.
            const bool token_refused = std::string(m) == "tokengarbage" && c.rc == PAM_AUTH_ERR;
            if (c.rc != PAM_AUTHINFO_UNAVAIL && !token_refused)
                fail_msg("IdP %s: login gave %d, not PAM_AUTHINFO_UNAVAIL", m, c.rc);
        }
        print_message("# IdP %s: %d logins, each PAM_AUTHINFO_UNAVAIL, longest %.2f s\n", m, n, worst);
        if (n == 0) fail_msg("IdP %s: no login finished", m);
        if (worst > 10 + 2) fail_msg("IdP %s: a login took %.2f s", m, worst);
    }
    assert_true(ldap_calls.size() >= 8);
    for (const auto& c : ldap_calls) {
        if (c.rc != PAM_SUCCESS) fail_msg("LDAP login of %s beside the broken IdPs: %d", c.user.c_str(), c.rc);
        if (c.seconds() > 2) fail_msg("LDAP login of %s beside the broken IdPs took %.2f s", c.user.c_str(), c.seconds());
    }
}

// ---- the daemon killed, restarted, reloaded -----------------------------------------------------

// SIGKILL while requests wait on a silent server: every client returns at once with
// PAM_AUTHINFO_UNAVAIL / NSS_STATUS_UNAVAIL, and so does every call while it is gone.
void daemon_killed_during_login(void**) {
    Watchdog dog("daemon_killed_during_login", 40);
    const double t0 = now_s();
    SilentServer silent;
    std::string dir = subdir("killdaemon");
    const std::string uri = "ldap://127.0.0.1:" + std::to_string(silent.port());
    auto cfg = config(dir, uri);
    cfg.replace(cfg.find("  timeout: 2\n"), 13, "  timeout: 30\n");
    cfg.replace(cfg.find("  connect_timeout: 1\n"), 21, "  connect_timeout: 30\n");
    auto d = std::make_unique<Daemon>(dir, cfg);
    setenv("CVAT_AUTH_SOCKET", d->socket().c_str(), 1);
    Load load(8, mixed_op(d->socket(), dir, 5, 20));
    sleep_s(1.5);
    const double killed = now_s();
    ::kill(d->pid(), SIGKILL);
    sleep_s(2);
    auto calls = load.stop();
    d->stop();
    summary("daemon killed", calls, now_s() - t0);
    no_wrong_password_accepted(calls);
    int in_flight = 0;
    for (const auto& c : calls) {
        const bool pam = c.kind == Kind::pam;
        if (c.start < killed) ++in_flight;
        // In flight: back within a second of the kill; after it: at once (a refused connect;
        // 1 s covers a whole PAM transaction of the sanitizer build among eight busy threads
        // on two cores, and is still far below the 30 s the daemon's timeouts would take).
        if (c.start < killed ? c.end > killed + 1.0 : c.seconds() > 1.0)
            fail_msg("%s of %s (started %.2f s after the kill) took %.2f s", pam ? "login" : "lookup",
                     c.user.c_str(), c.start - killed, c.seconds());
        if (pam ? c.rc != PAM_AUTHINFO_UNAVAIL : c.rc != NSS_STATUS_UNAVAIL)
            fail_msg("%s of %s gave %d", pam ? "login" : "lookup", c.user.c_str(), c.rc);
    }
    assert_int_equal(in_flight, 8);  // all eight were waiting when the daemon died
    assert_true(calls.size() > 8);   // and the calls after it were answered too
}

// Restart (SIGTERM, then SIGKILL) under load: what was cached before is still answered after,
// from the persistent store (the directory down, the mapped file gone), and nss.mc comes back.
void daemon_restarted_under_load(void**) {
    Watchdog dog("daemon_restarted_under_load", 60);
    const double t0 = now_s();
    std::string dir = subdir("restart");
    const std::string cfg = config(dir, both_uris());
    auto d = std::make_unique<Daemon>(dir, cfg, whole_malloc_stacks());
    setenv("CVAT_AUTH_SOCKET", d->socket().c_str(), 1);
    std::vector<PwEntry> before;
    for (const auto& a : kAccounts) before.push_back(lookup_pwnam(g->nss, a.user));
    for (const auto& p : before) assert_int_equal(p.status, NSS_STATUS_SUCCESS);
    {
        Load load(6, mixed_op(d->socket(), dir, 3, 10));
        sleep_s(1);
        d->stop();
        d = std::make_unique<Daemon>(dir, cfg, whole_malloc_stacks());
        sleep_s(1);
        ::kill(d->pid(), SIGKILL);
        d->stop();
        d = std::make_unique<Daemon>(dir, cfg, whole_malloc_stacks());
        const double back = now_s();
        sleep_s(1.5);
        auto calls = load.stop();
        summary("daemon restarted", calls, now_s() - t0);
        no_wrong_password_accepted(calls);
        if (longest(calls) > 3) fail_msg("a call took %.2f s", longest(calls));
        for (const auto& c : calls)
            if (c.kind == Kind::pam && c.rc != PAM_SUCCESS && c.rc != PAM_AUTH_ERR && c.rc != PAM_AUTHINFO_UNAVAIL)
                fail_msg("login of %s during the restarts gave %d", c.user.c_str(), c.rc);
        for (const auto& c : started_after(calls, back + 0.2))
            if ((c.kind == Kind::pam && c.rc != (c.right ? PAM_SUCCESS : PAM_AUTH_ERR)) ||
                (c.kind == Kind::nss && c.rc != NSS_STATUS_SUCCESS))
                fail_msg("after the restart %s gave %d", c.user.c_str(), c.rc);
    }
    // The directory gone and the mapped file removed: one more restart, and the daemon's own
    // store answers, with the same IDs.
    d->stop();
    g->a->stop();
    g->b->stop();
    ::unlink((dir + "/nss.mc").c_str());
    d = std::make_unique<Daemon>(dir, cfg, whole_malloc_stacks());
    for (std::size_t i = 0; i < before.size(); ++i) {
        PwEntry p = lookup_pwnam(g->nss, kAccounts[i].user);
        if (p.status != NSS_STATUS_SUCCESS || p.uid != before[i].uid)
            fail_msg("%s after the restarts: status %d uid %u (was %u)", kAccounts[i].user, p.status, p.uid,
                     before[i].uid);
    }
    struct stat st{};
    bool published = false;
    for (int i = 0; i < 100 && !published; ++i) {
        published = ::stat((dir + "/nss.mc").c_str(), &st) == 0;
        if (!published) usleep(50 * 1000);
    }
    g->a->restart();
    g->b->restart();
    assert_true(published);
}

// SIGHUP with a broken file, again and again, under load: the running config keeps serving and
// no call fails; a good file in between applies.
void sighup_broken_config_under_load(void**) {
    Watchdog dog("sighup_broken_config_under_load", 60);
    const double t0 = now_s();
    std::string dir = subdir("sighup");
    const std::string good = config(dir, both_uris());
    Daemon d(dir, good);
    setenv("CVAT_AUTH_SOCKET", d.socket().c_str(), 1);
    Load load(8, mixed_op(d.socket(), dir, 5, 10));
    std::string bad_timeout = good, bad_enum = good;
    bad_timeout.replace(bad_timeout.find("  timeout: 2\n"), 13, "  timeout: two\n");
    bad_enum.replace(bad_enum.find("group_type: nested_active_directory"), 35, "group_type: fancy");
    const std::string broken[] = {
        "helper: {socket: @SOCKET@}\nldap: [unclosed\n",  // YAML syntax
        bad_timeout,                                        // a value of the wrong type
        bad_enum,                                           // an unknown enum value
        good + "  no_such_key: 1\n",                         // an unknown key
    };
    int reloads = 0;
    for (int round = 0; round < 3; ++round) {
        for (const auto& b : broken) {
            d.reload(b);
            ++reloads;
            sleep_s(0.1);
        }
        d.reload(good);
        sleep_s(0.1);
    }
    sleep_s(0.5);
    auto calls = load.stop();
    summary("SIGHUP", calls, now_s() - t0);
    std::string log = read_file(d.log_path());
    int refused = 0;
    for (auto at = log.find("reload refused"); at != std::string::npos; at = log.find("reload refused", at + 1)) ++refused;
    assert_int_equal(refused, reloads);
    no_wrong_password_accepted(calls);
    if (longest(calls) > 3) fail_msg("a call took %.2f s", longest(calls));
    for (const auto& c : calls)
        if ((c.kind == Kind::pam && c.rc != (c.right ? PAM_SUCCESS : PAM_AUTH_ERR)) ||
            (c.kind == Kind::nss && c.rc != NSS_STATUS_SUCCESS))
            fail_msg("during the reloads %s of %s gave %d", c.kind == Kind::pam ? "login" : "lookup", c.user.c_str(),
                     c.rc);
}

// ---- the cache's disk full ------------------------------------------------------------------------

// The cache directory is a 1 MiB tmpfs in the daemon's own mount namespace, filled up under
// load: logins and lookups go on (the write failure is logged, not fatal); space back, the
// store takes writes again and passes SQLite's integrity check.
void disk_full_cache(void**) {
    Watchdog dog("disk_full_cache", 60);
    const double t0 = now_s();
    std::string dir = subdir("diskfull");
    const std::string cache = dir + "/cache";
    mkdir(cache.c_str(), 0700);
    const std::vector<std::string> wrapper = {
        "unshare", "-m", "--propagation", "private", "sh", "-c",
        "mount -t tmpfs -o size=1m,mode=0700 cvat-fault \"$0\" && exec \"$@\"", cache};
    Daemon d(dir, config(dir, both_uris()), wrapper);
    setenv("CVAT_AUTH_SOCKET", d.socket().c_str(), 1);
    // The daemon's view of the directory (its mount namespace) through /proc.
    const std::string seen = "/proc/" + std::to_string(d.pid()) + "/root" + cache;
    // The accounts of the load get their IDs now; a user first seen with the disk full
    // cannot (an ID is handed out only once it is stored: it must never change).
    for (const auto& a : kAccounts) assert_int_equal(lookup_pwnam(g->nss, a.user).status, NSS_STATUS_SUCCESS);
    struct stat st{};
    assert_int_equal(::stat((seen + "/cache.sqlite").c_str(), &st), 0);
    assert_int_not_equal(::stat((cache + "/cache.sqlite").c_str(), &st), 0);  // not on our side

    // Fill it up.
    int rc = std::system(("dd if=/dev/zero of=" + seen + "/fill bs=64k 2>/dev/null").c_str());
    (void)rc;
    Load load(6, mixed_op(d.socket(), dir, 3, 10));
    // Lookups of names never seen need an ID stored: unavailable while the disk is full, never
    // "no such user" or a wrong entry.
    Load fresh(2, [&](int t, int i) {
        Call c = nss_call(i % 2 == 0 ? "nestor" : "cyril");
        (void)t;
        return c;
    });
    sleep_s(3);
    auto calls = load.stop();
    auto fresh_calls = fresh.stop();
    summary("disk full", calls, now_s() - t0);
    no_wrong_password_accepted(calls);
    if (longest(calls) > 3) fail_msg("a call took %.2f s", longest(calls));
    for (const auto& c : calls)
        if ((c.kind == Kind::pam && c.rc != (c.right ? PAM_SUCCESS : PAM_AUTH_ERR)) ||
            (c.kind == Kind::nss && c.rc != NSS_STATUS_SUCCESS))
            fail_msg("disk full: %s of %s gave %d", c.kind == Kind::pam ? "login" : "lookup", c.user.c_str(), c.rc);
    for (const auto& c : fresh_calls)
        if (c.rc != NSS_STATUS_SUCCESS && c.rc != NSS_STATUS_UNAVAIL)
            fail_msg("disk full: lookup of %s gave %d", c.user.c_str(), c.rc);
    if (::kill(d.pid(), 0) != 0) fail_msg("the daemon died with its disk full");
    const std::string log = read_file(d.log_path());
    if (!contains(log, "full")) fail_msg("the daemon logged no cache write failure");

    // Space back: new entries are stored, and the file is sound.
    ::unlink((seen + "/fill").c_str());
    assert_int_equal(lookup_pwnam(g->nss, "jsmith").status, NSS_STATUS_SUCCESS);
    assert_int_equal(lookup_pwnam(g->nss, "nestor").status, NSS_STATUS_SUCCESS);  // IDs stored again
    assert_int_equal(pam_call(d.socket(), dir, "dora", "dora-Passw0rd", true, 10).rc, PAM_SUCCESS);
    // The file is the daemon's alone while it runs (SQLite's unix-excl: another process's
    // read is refused), so its files are copied once the daemon is idle (its checkpoint after
    // the last write done) and the copy is checked: the users are there and the file is sound.
    // A copy torn by a checkpoint that was still running is taken again.
    auto run = [](const std::string& cmd) {
        std::string out;
        FILE* p = popen((cmd + " 2>&1").c_str(), "r");
        char buf[512];
        size_t n;
        while (p != nullptr && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        if (p != nullptr) pclose(p);
        return out;
    };
    const std::string copy = dir + "/copy";
    std::string check, users;
    for (int attempt = 0; attempt < 3 && check != "ok\n"; ++attempt) {
        ::usleep(1500 * 1000);
        (void)run("rm -rf " + copy + " && mkdir " + copy + " && cp " + seen + "/cache.sqlite " + seen +
                  "/cache.sqlite-wal " + copy + "/");
        check = run("sqlite3 " + copy + "/cache.sqlite 'PRAGMA integrity_check'");
        users = run("sqlite3 " + copy + "/cache.sqlite 'SELECT count(*) FROM users WHERE name IN (\"jsmith\", \"nestor\")'");
    }
    print_message("# integrity_check: %s", check.c_str());
    assert_string_equal(check.c_str(), "ok\n");
    assert_string_equal(users.c_str(), "2\n");
}

// ---- slow clients -------------------------------------------------------------------------------

int connect_raw(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// True once the daemon hung up on `fd` (EOF or reset).
bool hung_up(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// 50 clients that connect and send nothing, or one byte a second: logins from other threads
// are served promptly, and each slow one is dropped after helper.client_timeout.
void slow_clients(void**) {
    Watchdog dog("slow_clients", 40);
    const double t0 = now_s();
    std::string dir = subdir("slow");
    Daemon d(dir, config(dir, both_uris(), "  client_timeout: 2\n"));
    setenv("CVAT_AUTH_SOCKET", d.socket().c_str(), 1);
    constexpr int kSilent = 25, kDrip = 25;
    std::vector<int> fds;
    std::vector<double> dropped(kSilent + kDrip, 0);
    const double opened = now_s();
    for (int i = 0; i < kSilent + kDrip; ++i) {
        int fd = connect_raw(d.socket());
        assert_true(fd >= 0);
        fds.push_back(fd);
    }
    Load load(6, mixed_op(d.socket(), dir, 4, 10));
    // The drippers send a frame header one byte at a time (a length of 16), then the body.
    const double until = opened + 6;
    int remaining = kSilent + kDrip;
    int second = 0;
    double next_drip = opened;
    while (now_s() < until && remaining > 0) {
        double now = now_s();
        if (now >= next_drip) {
            for (int i = kSilent; i < kSilent + kDrip; ++i) {
                if (dropped[i] != 0) continue;
                unsigned char byte = second == 0 ? 16 : 0;
                (void)send(fds[i], &byte, 1, MSG_NOSIGNAL);
            }
            ++second;
            next_drip += 1.0;
        }
        for (int i = 0; i < kSilent + kDrip; ++i)
            if (dropped[i] == 0 && hung_up(fds[i])) {
                dropped[i] = now_s() - opened;
                --remaining;
            }
        usleep(20 * 1000);
    }
    auto calls = load.stop();
    summary("slow clients", calls, now_s() - t0);
    for (int fd : fds) close(fd);
    double first = 1e9, last = 0;
    for (int i = 0; i < kSilent + kDrip; ++i) {
        if (dropped[i] == 0) fail_msg("slow client %d (%s) was never dropped", i, i < kSilent ? "silent" : "one byte a second");
        first = std::min(first, dropped[i]);
        last = std::max(last, dropped[i]);
    }
    print_message("# slow clients dropped between %.2f s and %.2f s (client_timeout 2 s)\n", first, last);
    if (first < 1.8) fail_msg("a slow client was dropped after %.2f s, before client_timeout", first);
    if (last > 2 + 1.5) fail_msg("a slow client was dropped only after %.2f s", last);
    no_wrong_password_accepted(calls);
    assert_true(count_rc(calls, Kind::pam, PAM_SUCCESS) >= 6);
    for (const auto& c : calls) {
        if ((c.kind == Kind::pam && c.rc != (c.right ? PAM_SUCCESS : PAM_AUTH_ERR)) ||
            (c.kind == Kind::nss && c.rc != NSS_STATUS_SUCCESS))
            fail_msg("beside slow clients %s gave %d", c.user.c_str(), c.rc);
        if (c.seconds() > 1.5) fail_msg("beside slow clients a call of %s took %.2f s", c.user.c_str(), c.seconds());
    }
}

int setup(void**) {
    g = new World;
    g->nss = NssModule::load();
    g->a = std::make_unique<Slapd>(g->tmp.path() + "/slapd-a", "ad");
    g->b = std::make_unique<Slapd>(g->tmp.path() + "/slapd-b", "ad");
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
    require_program("python3");
    require_program("sqlite3");
    require_program("unshare");
    if (geteuid() != 0) {
        std::printf("1..0 # SKIP needs root (tmpfs in a private mount namespace)\n");
        return 0;
    }
    // CVAT_TEST_FILTER=NAME runs one case (cmocka's glob).
    if (const char* only = std::getenv("CVAT_TEST_FILTER"); only != nullptr) cmocka_set_test_filter(only);
    const CMUnitTest tests[] = {
        cmocka_unit_test(slapd_killed_mid_load),
        cmocka_unit_test(all_down_offline_login),
        cmocka_unit_test(notice_of_disconnection),
        cmocka_unit_test(idp_slow_and_garbage),
        cmocka_unit_test(daemon_killed_during_login),
        cmocka_unit_test(daemon_restarted_under_load),
        cmocka_unit_test(sighup_broken_config_under_load),
        cmocka_unit_test(disk_full_cache),
        cmocka_unit_test(slow_clients),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
