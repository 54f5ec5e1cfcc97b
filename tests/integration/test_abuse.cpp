// SPDX-License-Identifier: GPL-3.0-or-later
// Abuse limits of cvat-authd (issue 6 item 4) through the real path: libpam → pam_cvat.so →
// cvat-authd → slapd (the AD-shaped fixture tree). Failed logins past helper.rate_limit's
// thresholds are held (per user name, and per peer uid + PAM_RHOST) for a doubling, capped
// delay; a correct password after the delay still gets in (no lockout); a burst past the cap
// is refused unchecked; helper.max_connections_per_uid closes a local user's extra
// connections (or the user's connection longest idle after an answer) while other users are
// served; a flood of 100,000 distinct user names leaves
// the failure table and the daemon's memory bounded.
#include "cmocka.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grp.h>
#include <poll.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ad_daemon.hpp"
#include "fixture.hpp"
#include "pam_driver.hpp"
#include "pam_expect.hpp"

using namespace cvat;
using namespace cvat::test;

namespace {

// A login through PAM against the loopback slapd takes milliseconds; on a loaded 2-core CI
// machine allow this much on top of any expected wait.
constexpr double kSlack = 0.8;

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> ad;
    int counter = 0;
};
World* g = nullptr;

struct Login {
    std::unique_ptr<Daemon> daemon;
    std::string dir;

    PamOutcome operator()(const std::string& user, const std::string& password,
                          const std::string& rhost = "", const std::string& service = "cvat-test") const {
        PamCall call;
        call.confdir = dir + "/pam";
        call.service = service;  // one service file per thread: each call rewrites its own
        call.user = user;
        call.answers = {password};
        call.module_args = "socket=" + daemon->socket() + " timeout=30";
        call.account = false;
        call.rhost = rhost;
        return pam_login(call);
    }
    // pam_chauthtok(0) alone, as passwd(1): old password, new, new again.
    PamOutcome change(const std::string& user, const std::string& old_pw, const std::string& new_pw) const {
        PamCall call;
        call.confdir = dir + "/pam";
        call.user = user;
        call.answers = {old_pw, new_pw, new_pw};
        call.module_args = "socket=" + daemon->socket() + " timeout=30";
        call.change_only = true;
        return pam_login(call);
    }
};

Login start(const std::string& name, const std::string& helper_extra, bool quiet = false,
            const std::vector<std::string>& wrapper = {}) {
    Login l;
    l.dir = g->tmp.path() + "/" + name + std::to_string(++g->counter);
    ::mkdir(l.dir.c_str(), 0700);
    std::string yaml = ad_daemon_config(l.dir, *g->ad, helper_extra);
    if (quiet) yaml.replace(yaml.find("log_level: debug"), 16, "log_level: warning");
    l.daemon = wrapper.empty() ? std::make_unique<Daemon>(l.dir, yaml) : std::make_unique<Daemon>(l.dir, yaml, wrapper);
    return l;
}

void expect_time(const std::string& what, double seconds, double lo, double hi) {
    std::printf("# %s: %.3f s (want %.2f .. %.2f)\n", what.c_str(), seconds, lo, hi);
    if (seconds < lo || seconds > hi) fail_msg("%s took %.3f s, want %.2f .. %.2f s", what.c_str(), seconds, lo, hi);
}

int setup(void**) {
    g = new World;
    g->ad = std::make_unique<Slapd>(g->tmp.path() + "/ad", "ad");
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

// Per user: three failures are free, the fourth waits `delay`, the next one twice that; the
// right password after that wait gets in and clears the count; another user is not slowed.
void per_user_delays(void**) {
    Login l = start("user", "  rate_limit: {per_user: {failures: 3, window: 60}, per_peer: {failures: 0}, "
                            "delay: 1, max_delay: 4}\n");
    for (int i = 1; i <= 3; ++i) {
        auto o = l("alice", "wrong-" + std::to_string(i));
        expect_pam("alice wrong password " + std::to_string(i), o.authenticate, PAM_AUTH_ERR);
        expect_time("alice failure " + std::to_string(i) + " (free)", o.seconds, 0, kSlack);
    }
    auto o = l("alice", "wrong-4");
    expect_pam("alice wrong password 4", o.authenticate, PAM_AUTH_ERR);
    expect_time("alice failure 4 (held 1 s)", o.seconds, 0.6, 1 + kSlack);
    // Another user's login is not held by alice's failures.
    o = l("bob", "wrong");
    expect_pam("bob wrong password", o.authenticate, PAM_AUTH_ERR);
    expect_time("bob failure 1 (free)", o.seconds, 0, kSlack);
    // Four failures: the next attempt waits 2 s, and is then checked honestly.
    o = l("alice", "alice-Passw0rd");
    expect_pam("alice right password after the failures", o.authenticate, PAM_SUCCESS);
    expect_time("alice success (held 2 s)", o.seconds, 1.4, 2 + kSlack);
    // The success cleared alice's count.
    o = l("alice", "wrong-5");
    expect_pam("alice wrong password after a success", o.authenticate, PAM_AUTH_ERR);
    expect_time("alice failure after a success (free)", o.seconds, 0, kSlack);
    // Unknown names count the same as known ones (no enumeration by throttling).
    for (int i = 1; i <= 3; ++i) (void)l("nosuchuser", "x");
    o = l("nosuchuser", "x");
    expect_pam("unknown user", o.authenticate, PAM_USER_UNKNOWN);
    expect_time("unknown user failure 4 (held 1 s)", o.seconds, 0.6, 1 + kSlack);

    std::string st = status_detail(l.daemon->socket(), "rate_limit");
    std::printf("# status: %s\n", st.c_str());
    if (!contains(st, "3 logins delayed")) fail_msg("status rate_limit: %s", st.c_str());
    std::string log = read_file(l.daemon->log_path());
    if (!contains(log, " ms after repeated failures (helper.rate_limit)"))
        fail_msg("no 'held' line in the daemon's log");
}

// A password change proves the old password, so guessing through passwd(1) is throttled as
// logins are, in the same count: three wrong old passwords are free, the fourth change waits
// `delay`, and a login after them waits twice that (and then gets in).
void password_changes_throttled(void**) {
    Login l = start("chpw", "  rate_limit: {per_user: {failures: 3, window: 60}, per_peer: {failures: 0}, "
                            "delay: 1, max_delay: 4}\n");
    for (int i = 1; i <= 3; ++i) {
        auto o = l.change("walter", "wrong-" + std::to_string(i), "Walter-New-Passw0rd-1");
        if (o.chauthtok == PAM_SUCCESS) fail_msg("a change with a wrong old password succeeded");
        expect_time("walter wrong old password " + std::to_string(i) + " (free)", o.seconds, 0, kSlack);
    }
    auto o = l.change("walter", "wrong-4", "Walter-New-Passw0rd-1");
    if (o.chauthtok == PAM_SUCCESS) fail_msg("a change with a wrong old password succeeded");
    expect_time("walter wrong old password 4 (held 1 s)", o.seconds, 0.6, 1 + kSlack);
    o = l("walter", "walter-Passw0rd");
    expect_pam("walter's login after four failed changes", o.authenticate, PAM_SUCCESS);
    expect_time("walter's login (held 2 s)", o.seconds, 1.4, 2 + kSlack);
    if (!contains(read_file(l.daemon->log_path()), "password change of walter from "))
        fail_msg("no 'password change ... held' line in the daemon's log");
}

// A burst of parallel guesses at a throttled user: attempts are taken one per delay; those
// that would wait past max_delay are refused at once, unchecked. Then the right password,
// after at most max_delay, still gets in.
void burst_refused_not_locked(void**) {
    Login l = start("burst", "  rate_limit: {per_user: {failures: 2, window: 60}, per_peer: {failures: 0}, "
                             "delay: 1, max_delay: 3}\n");
    for (int i = 0; i < 2; ++i) (void)l("walter", "wrong");
    constexpr int kBurst = 8;
    std::vector<PamOutcome> out(kBurst);
    std::vector<std::thread> threads;
    for (int i = 0; i < kBurst; ++i)
        threads.emplace_back([&, i] {
            out[static_cast<std::size_t>(i)] = l("walter", "guess-" + std::to_string(i), "", "burst" + std::to_string(i));
        });
    for (auto& t : threads) t.join();
    int refused_fast = 0;
    double longest = 0;
    for (const auto& o : out) {
        expect_pam("walter guess in a burst", o.authenticate, PAM_AUTH_ERR);
        if (o.seconds < 0.5) ++refused_fast;
        longest = std::max(longest, o.seconds);
    }
    std::printf("# burst of %d: %d answered within 0.5 s, longest %.3f s\n", kBurst, refused_fast, longest);
    // At most max_delay / delay + 1 attempts fit before the cap; the rest are refused.
    if (refused_fast < kBurst - 4) fail_msg("only %d of %d burst attempts refused at once", refused_fast, kBurst);
    if (longest > 3 + kSlack) fail_msg("a burst attempt waited %.3f s, past max_delay 3 s", longest);
    std::string log = read_file(l.daemon->log_path());
    if (!contains(log, "refused unchecked: too many failed logins")) fail_msg("no refusal in the daemon's log");
    // Not a lockout: within max_delay (plus the one running), the right password gets in.
    PamOutcome ok;
    double waited = 0;
    for (int i = 0; i < 10; ++i) {
        ok = l("walter", "walter-Passw0rd");
        waited += ok.seconds;
        if (ok.authenticate == PAM_SUCCESS) break;
        ::usleep(500 * 1000);
        waited += 0.5;
    }
    expect_pam("walter's own password after the burst", ok.authenticate, PAM_SUCCESS);
    expect_time("walter in after the burst", waited, 0, 2 * 3 + kSlack);
}

// Per peer (uid + PAM_RHOST): failures for different users from one remote host add up;
// another host is not slowed.
void per_peer_delays(void**) {
    Login l = start("peer", "  rate_limit: {per_user: {failures: 0}, per_peer: {failures: 3, window: 60}, "
                            "delay: 1, max_delay: 4}\n");
    const char* users[] = {"alice", "bob", "walter"};
    for (const char* u : users) {
        auto o = l(u, "wrong", "192.0.2.10");
        expect_pam(std::string(u) + " wrong from 192.0.2.10", o.authenticate, PAM_AUTH_ERR);
        expect_time(std::string(u) + " from 192.0.2.10 (free)", o.seconds, 0, kSlack);
    }
    auto o = l("dora", "wrong", "192.0.2.10");
    expect_pam("dora wrong from 192.0.2.10", o.authenticate, PAM_AUTH_ERR);
    expect_time("4th failure from 192.0.2.10 (held 1 s)", o.seconds, 0.6, 1 + kSlack);
    o = l("dora", "dora-Passw0rd", "192.0.2.20");
    expect_pam("dora from 192.0.2.20", o.authenticate, PAM_SUCCESS);
    expect_time("another host (free)", o.seconds, 0, kSlack);
    o = l("nina", "wrong", "192.0.2.20");
    expect_time("another host's failure (free)", o.seconds, 0, kSlack);
    // The right password from the throttled host: held, then let in.
    o = l("dora", "dora-Passw0rd", "192.0.2.10");
    expect_pam("dora's own password from 192.0.2.10", o.authenticate, PAM_SUCCESS);
    expect_time("dora from the throttled host (held 2 s)", o.seconds, 1.4, 2 + kSlack);
}

// A connection that the daemon closes at once reads EOF; one it keeps is served (fixture.hpp).
bool closed_by_daemon(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) != 1) return false;
    char c;
    return ::recv(fd, &c, 1, 0) == 0;
}

// Runs `fn` in a child as uid/gid `id`; its exit code (fn's return), or -1.
template <typename Fn>
int as_uid(uid_t id, Fn fn) {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(id) != 0 || ::setuid(id) != 0) ::_exit(100);
        ::_exit(fn());
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

void connection_cap_per_uid(void**) {
    Login l = start("cap", "  max_connections_per_uid: 4\n  client_timeout: 30\n");
    // The socket lives in the test's private directories: let other uids reach it.
    ::chmod(g->tmp.path().c_str(), 0711);
    ::chmod(l.dir.c_str(), 0711);
    const std::string socket = l.daemon->socket();
    int to_parent[2], to_child[2];
    assert_int_equal(::pipe(to_parent), 0);
    assert_int_equal(::pipe(to_child), 0);
    pid_t holder = ::fork();
    if (holder == 0) {
        // uid 65534 (nobody): four connections are kept, a fifth is closed at accept.
        if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(100);
        std::vector<UniqueFd> kept;
        for (int i = 0; i < 4; ++i) {
            auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
            if (!fd) ::_exit(101);
            kept.push_back(std::move(*fd));
        }
        int code = 0;
        if (!served(kept[0].get())) code |= 2;
        // kept[0] now sits idle after its answer, as a module keeps it for its next request:
        // a fifth connection closes it to make room and is served. (A moment first: the
        // worker that answered parks the connection or hands it back to the I/O thread.)
        ::usleep(50 * 1000);
        auto fifth = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        if (!fifth || !served(fifth->get())) code |= 4;
        if (!closed_by_daemon(kept[0].get())) code |= 32;
        // With four connections that never had an answer (a connect-and-wait), a newcomer is
        // refused: one uid still cannot take more.
        if (fifth) fifth->reset();
        auto again = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        if (!again) code |= 64;
        else kept[0] = std::move(*again);
        auto sixth = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        if (!sixth || !closed_by_daemon(sixth->get())) code |= 64;
        if (!served(kept[3].get())) code |= 8;
        char c = 'R';
        if (::write(to_parent[1], &c, 1) != 1) ::_exit(102);
        if (::read(to_child[0], &c, 1) != 1) ::_exit(103);  // the parent checked the others
        kept.clear();
        ::usleep(300 * 1000);
        auto last = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        if (!last || !served(last->get())) code |= 16;
        ::_exit(code);
    }
    char c = 0;
    assert_int_equal(::read(to_parent[0], &c, 1), 1);
    // While uid 65534 is at its cap: another local uid and root are served.
    int other = as_uid(65533, [&] {
        auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        return fd && served(fd->get()) ? 0 : 1;
    });
    auto o = l("alice", "alice-Passw0rd");
    c = 'G';
    assert_int_equal(::write(to_child[1], &c, 1), 1);
    int status = 0;
    assert_int_equal(::waitpid(holder, &status, 0), holder);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::printf("# holder uid 65534: code %d (2: first not served, 4: fifth not served, 32: the idle one not "
                "closed for it, 64: a newcomer not refused, 8: fourth not served, 16: not served after closing)\n",
                code);
    assert_int_equal(code, 0);
    assert_int_equal(other, 0);
    expect_pam("root's login while uid 65534 is at its cap", o.authenticate, PAM_SUCCESS);
    std::string log = read_file(l.daemon->log_path());
    if (!contains(log, "uid 65534 has 4 connections open (helper.max_connections_per_uid)"))
        fail_msg("no refusal line in the daemon's log");
    for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) ::close(fd);
}

// A newcomer its uid's cap refuses closes nobody's connection, even with the daemon at its
// total: root's connections, idle after their answers, stay.
void refused_newcomer_closes_nobody(void**) {
    Login l = start("cap2", "  max_connections: 6\n  max_connections_per_uid: 4\n  client_timeout: 30\n");
    ::chmod(g->tmp.path().c_str(), 0711);
    ::chmod(l.dir.c_str(), 0711);
    const std::string socket = l.daemon->socket();
    std::vector<UniqueFd> root;
    for (int i = 0; i < 2; ++i) {
        auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        assert_true(fd && served(fd->get()));
        root.push_back(std::move(*fd));
    }
    ::usleep(50 * 1000);  // the I/O thread has the connections back from the workers
    const int code = as_uid(65534, [&] {
        std::vector<UniqueFd> mine;  // four connections that never asked: the daemon is at 6
        for (int i = 0; i < 4; ++i) {
            auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
            if (!fd) return 1;
            mine.push_back(std::move(*fd));
        }
        auto fifth = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        return fifth && closed_by_daemon(fifth->get()) ? 0 : 2;
    });
    assert_int_equal(code, 0);
    for (auto& fd : root) assert_true(served(fd.get()));
}

// CPU seconds (user + system) the process has used so far.
double cpu_seconds(pid_t pid) {
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && in >> field; ++i)
        if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Out of file descriptors (a limit of 48, below what helper.max_connections asks for): the
// daemon says so at start; with clients past the limit waiting in the backlog it neither
// spins on accept() nor floods its log, and once descriptors are free it takes them in.
void out_of_descriptors(void**) {
    Login l = start("nofile", "  workers: 2\n  client_timeout: 30\n", false, {"prlimit", "--nofile=48:48"});
    const std::string socket = l.daemon->socket();
    std::vector<UniqueFd> idle;
    for (int i = 0; i < 80; ++i) {
        auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(5000));
        assert_true(fd.has_value());
        idle.push_back(std::move(*fd));
    }
    ::usleep(300 * 1000);  // the daemon takes in what it can, then meets EMFILE
    const double cpu0 = cpu_seconds(l.daemon->pid());
    ::usleep(1000 * 1000);
    const double cpu = cpu_seconds(l.daemon->pid()) - cpu0;
    std::printf("# daemon CPU over 1 s with clients waiting past its descriptor limit: %.2f s\n", cpu);
    const std::string log = read_file(l.daemon->log_path());
    std::size_t warnings = 0;
    for (std::size_t at = 0; (at = log.find("accept: Too many open files", at)) != std::string::npos; ++at) ++warnings;
    std::printf("# accept warnings: %zu\n", warnings);
    idle.clear();
    auto o = l("alice", "alice-Passw0rd");
    expect_pam("a login once the waiting clients left", o.authenticate, PAM_SUCCESS);
    if (!contains(log, "the open files limit (48) is below")) fail_msg("no warning about the limit at start");
    if (warnings != 1) fail_msg("%zu accept warnings in 1.3 s, want exactly 1", warnings);
    if (cpu > 0.5) fail_msg("the daemon used %.2f s of CPU in 1 s while clients waited: it spins on accept()", cpu);
}

// 100,000 distinct, long user names with wrong passwords: the failure table stays at
// max_entries and the daemon's memory does not grow with the names.
void flood_of_names(void**) {
    constexpr std::size_t kMaxEntries = 1000;
    Login l = start("flood", "  rate_limit: {per_user: {failures: 1, window: 3600}, per_peer: {failures: 0}, "
                             "max_entries: " + std::to_string(kMaxEntries) + "}\n", true);
    const std::string pad(180, 'x');
    std::atomic<long> next{0}, errors{0};
    auto send = [&](long upto) {
        std::vector<std::thread> threads;
        for (int t = 0; t < 8; ++t)
            threads.emplace_back([&, upto] {
                auto fd = proto::connect_unix(l.daemon->socket(), proto::Deadline::after_ms(5000));
                if (!fd) {
                    ++errors;
                    return;
                }
                for (long i; (i = next++) < upto;) {
                    proto::AuthRequest r;
                    r.user = "flood-" + std::to_string(i) + "-" + pad;
                    r.password = Secret("not-the-password");
                    r.service = "flood";
                    r.timeout_ms = 30000;
                    proto::Request req{std::move(r)};
                    auto resp = proto::call(fd->get(), req, proto::Deadline::after_ms(30000));
                    const auto* v = resp ? std::get_if<proto::Verdict>(&*resp) : nullptr;
                    if (v == nullptr || v->status != proto::Status::user_unknown) ++errors;
                }
            });
        for (auto& t : threads) t.join();
        next = upto;  // each thread's last fetch went past upto: the next phase starts there
    };
    auto t0 = proto::monotonic_ms();
    send(5000);
    const long rss_warm = vm_rss_kib(l.daemon->pid());
    send(100000);
    const long rss_after = vm_rss_kib(l.daemon->pid());
    std::string st = status_detail(l.daemon->socket(), "rate_limit");
    std::printf("# 100000 names in %.1f s; VmRSS %ld KiB after 5000, %ld KiB after 100000; %s\n",
                (proto::monotonic_ms() - t0) / 1000.0, rss_warm, rss_after, st.c_str());
    assert_int_equal(errors.load(), 0);
    if (!contains(st, std::to_string(kMaxEntries) + " user names"))
        fail_msg("the failure table is not at max_entries: %s", st.c_str());
    // Unbounded, 95,000 more entries of ~200-byte names would add well over 30 MiB. An
    // AddressSanitizer build keeps freed blocks in its quarantine (256 MiB), so its VmRSS grows
    // with any churn: there the table's size above is the bound checked.
    const bool asan = contains(read_file("/proc/" + std::to_string(l.daemon->pid()) + "/maps"), "libasan");
    if (asan) std::printf("# the daemon is an AddressSanitizer build: its VmRSS is not compared\n");
    if (!asan && (rss_warm < 0 || rss_after - rss_warm > 12 * 1024))
        fail_msg("VmRSS grew from %ld to %ld KiB over the flood", rss_warm, rss_after);
    // Still serving.
    auto o = l("alice", "alice-Passw0rd");
    expect_pam("alice after the flood", o.authenticate, PAM_SUCCESS);
}

}  // namespace

int main() {
    require_program("slapd");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_user_delays),
        cmocka_unit_test(password_changes_throttled),
        cmocka_unit_test(burst_refused_not_locked),
        cmocka_unit_test(per_peer_delays),
        cmocka_unit_test(connection_cap_per_uid),
        cmocka_unit_test(refused_newcomer_closes_nobody),
        cmocka_unit_test(out_of_descriptors),
        cmocka_unit_test(flood_of_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
