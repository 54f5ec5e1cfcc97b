// SPDX-License-Identifier: GPL-3.0-or-later
// The daemon as an admin meets it, through the real path (PAM → pam_cvat.so → cvat-authd →
// slapd): reload with a good and a broken file, refusal of readable secrets, privilege drop,
// many clients at once, peer credentials in the log and no password in it, and cvat-authctl.
#include "cmocka.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"
#include "pam_driver.hpp"
#include "protocol.hpp"
#include "transport.hpp"

using namespace cvat::test;

namespace {

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> slapd;
};
World* g_world = nullptr;

const char* kUsers = "CN=Users,DC=ad,DC=example,DC=test";

// The AD example of CVAT's guide, pointed at the test slapd. `extra` is appended to ldap:.
std::string ad_config(const std::string& dir, const std::string& extra_ldap = "",
                      const std::string& extra_helper = "") {
    write_file(dir + "/bind_password", "Bind-Secret-1\n", 0600);
    std::string u = kUsers;
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n" + extra_helper +
           "ldap:\n"
           "  server_uri: [" + g_world->slapd->uri() + "]\n"
           "  bind_dn: \"CN=cvat_bind," + u + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           + cvat_ad_example(u) + extra_ldap;
}

std::string subdir(const char* name) {
    std::string d = g_world->tmp.path() + "/" + name;
    mkdir(d.c_str(), 0700);
    return d;
}

PamOutcome login(const Daemon& d, const std::string& confdir, const std::string& user,
                 const std::string& password, const std::string& args = "") {
    PamCall call;
    call.confdir = confdir;
    call.user = user;
    call.answers = {password};
    call.module_args = "socket=" + d.socket() + " timeout=10 " + args;
    return pam_login(call);
}

std::string env_of(const PamOutcome& o, const char* key) {
    auto it = o.env.find(key);
    return it == o.env.end() ? "" : it->second;
}

struct Run {
    int status;
    std::string out;
};

// Runs a shell command; stdout+stderr captured.
Run run(const std::string& cmd) {
    Run r{-1, {}};
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}


// A raw client of the daemon's socket, for what PAM would never send.
int connect_raw(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    assert_int_equal(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
}

int setup(void**) {
    g_world = new World;
    g_world->slapd = std::make_unique<Slapd>(g_world->tmp.path() + "/slapd", "ad");
    return 0;
}
int teardown(void**) {
    delete g_world;
    g_world = nullptr;
    return 0;
}

// SIGHUP applies a good file, and a broken file leaves the running configuration serving.
void reload_good_and_broken(void**) {
    std::string dir = subdir("reload");
    Daemon d(dir, ad_config(dir));
    auto nina = login(d, dir, "nina", "nina-Passw0rd");
    assert_int_equal(nina.authenticate, PAM_SUCCESS);
    assert_string_equal(env_of(nina, "CVAT_ROLE").c_str(), "user");  // default_role user

    d.reload(ad_config(dir, "  default_role: none\n"));
    nina = login(d, dir, "nina", "nina-Passw0rd");
    assert_int_equal(nina.authenticate, PAM_PERM_DENIED);
    assert_true(contains(read_file(d.log_path()), "configuration reloaded"));

    // Broken: bad YAML and a bad enum. The running config (default_role none) must stay.
    d.reload("helper: {socket: @SOCKET@}\nldap: [unclosed\n");
    assert_true(contains(read_file(d.log_path()), "reload refused"));
    nina = login(d, dir, "nina", "nina-Passw0rd");
    assert_int_equal(nina.authenticate, PAM_PERM_DENIED);
    auto alice = login(d, dir, "alice", "alice-Passw0rd");
    assert_int_equal(alice.authenticate, PAM_SUCCESS);
    assert_string_equal(env_of(alice, "CVAT_ROLE").c_str(), "admin");

    d.reload(ad_config(dir, "  default_role: superuser\n"));
    std::string log = read_file(d.log_path());
    assert_true(contains(log.substr(log.rfind("SIGHUP")), "default_role"));
    nina = login(d, dir, "nina", "nina-Passw0rd");
    assert_int_equal(nina.authenticate, PAM_PERM_DENIED);
}

// A config holding a secret that other users can read is refused at start, naming the key.
void refuses_readable_secrets(void**) {
    std::string dir = subdir("perm");
    std::string cfg = ad_config(dir);
    // An inline password in a world-readable file.
    std::string inline_cfg = cfg;
    auto at = inline_cfg.find("  bind_password_file:");
    inline_cfg.replace(at, inline_cfg.find('\n', at) - at, "  bind_password: Bind-Secret-1");
    auto pos = inline_cfg.find("@SOCKET@");
    inline_cfg.replace(pos, 8, dir + "/socket");
    write_file(dir + "/open.yml", inline_cfg, 0644);
    Run r = run(env_or("CVAT_AUTHD", "cvat-authd") + " --foreground --config " + dir + "/open.yml");
    assert_int_equal(r.status, 1);
    assert_true(contains(r.out, "ldap.bind_password"));
    assert_true(contains(r.out, "readable by other users"));
    assert_false(contains(r.out, "Bind-Secret-1"));

    // A world-readable bind_password_file.
    std::string file_cfg = cfg;
    pos = file_cfg.find("@SOCKET@");
    file_cfg.replace(pos, 8, dir + "/socket");
    write_file(dir + "/file.yml", file_cfg, 0600);
    chmod((dir + "/bind_password").c_str(), 0644);
    r = run(env_or("CVAT_AUTHD", "cvat-authd") + " --foreground --config " + dir + "/file.yml");
    assert_int_equal(r.status, 1);
    assert_true(contains(r.out, "bind_password_file"));
    assert_false(contains(r.out, "Bind-Secret-1"));
    chmod((dir + "/bind_password").c_str(), 0600);
}

// Started as root with helper.user, the daemon serves as that user.
void drops_to_helper_user(void**) {
    if (geteuid() != 0) skip();  // dropping privileges needs root; CI counts a skip as a failure
    passwd* nobody = getpwnam("nobody");
    assert_non_null(nobody);
    std::string dir = subdir("drop");
    // The cache directory must be reachable by nobody (the test's own tree is root's, 0700):
    // the daemon creates it, as root, and hands it over before dropping privileges.
    char parent[] = "/tmp/cvat-drop-XXXXXX";
    assert_non_null(mkdtemp(parent));
    chmod(parent, 0755);
    const std::string cache = std::string(parent) + "/cache";
    Daemon d(dir, ad_config(dir, "", "  user: nobody\n  cache_dir: " + cache + "\n"));
    std::string status = read_file("/proc/" + std::to_string(d.pid()) + "/status");
    std::string uid_line = status.substr(status.find("Uid:"));
    uid_line = uid_line.substr(0, uid_line.find('\n'));
    std::string want = std::to_string(nobody->pw_uid);
    // Uid: real effective saved fs — all four must be nobody's.
    char expect[128];
    std::snprintf(expect, sizeof(expect), "Uid:\t%s\t%s\t%s\t%s", want.c_str(), want.c_str(), want.c_str(), want.c_str());
    assert_string_equal(uid_line.c_str(), expect);
    assert_true(contains(status, "Groups:\t \n") || contains(status, "Groups:\t\n"));  // no supplementary groups
    auto walter = login(d, dir, "walter", "walter-Passw0rd");
    assert_int_equal(walter.authenticate, PAM_SUCCESS);
    assert_string_equal(env_of(walter, "CVAT_ROLE").c_str(), "worker");
    // The cache was written by the unprivileged daemon: everything in it is nobody's, 0600.
    struct stat st{};
    assert_int_equal(stat((cache + "/cache.sqlite").c_str(), &st), 0);
    assert_int_equal(st.st_uid, nobody->pw_uid);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(cache.c_str(), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    d.stop();
    assert_int_equal(std::system(("rm -rf " + std::string(parent)).c_str()), 0);
}

// Many clients at once, while one client holds a connection open and sends nothing.
void many_clients_at_once(void**) {
    std::string dir = subdir("load");
    // The same wrong password and unknown name 24 times within a second would be throttled
    // (helper.rate_limit, tests/integration/test_abuse.cpp): this test is about concurrency.
    Daemon d(dir, ad_config(dir, "", "  rate_limit: {per_user: {failures: 0}, per_peer: {failures: 0}}\n"));
    int idle = connect_raw(d.socket());  // the silent client: connects, never writes

    struct Case {
        const char* user;
        const char* password;
        int rc;
        const char* role;
    };
    const Case cases[] = {{"alice", "alice-Passw0rd", PAM_SUCCESS, "admin"},
                          {"walter", "walter-Passw0rd", PAM_SUCCESS, "worker"},
                          {"alice", "wrong", PAM_AUTH_ERR, ""},
                          {"nobody-here", "x", PAM_USER_UNKNOWN, ""}};
    constexpr int kThreads = 16, kEach = 6;
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kEach; ++i) {
                const Case& c = cases[(t + i) % 4];
                std::string cd = dir + "/c" + std::to_string(t);
                mkdir(cd.c_str(), 0700);
                auto o = login(d, cd, c.user, c.password);
                if (o.authenticate != c.rc || (c.rc == PAM_SUCCESS && env_of(o, "CVAT_ROLE") != c.role)) ++wrong;
            }
        });
    }
    for (auto& t : threads) t.join();
    assert_int_equal(wrong.load(), 0);
    close(idle);
}

// The log names each client by SO_PEERCRED and never holds a password, even at debug level.
void peer_logged_password_never(void**) {
    std::string dir = subdir("log");
    Daemon d(dir, ad_config(dir));
    const std::string marker = "Marker-Pw-7f3a9c";
    auto bad = login(d, dir, "alice", marker);
    assert_int_equal(bad.authenticate, PAM_AUTH_ERR);
    auto good = login(d, dir, "alice", "alice-Passw0rd");
    assert_int_equal(good.authenticate, PAM_SUCCESS);
    d.stop();
    std::string log = read_file(d.log_path());
    std::string me = "pid=" + std::to_string(getpid()) + " uid=" + std::to_string(getuid());
    assert_true(contains(log, me));
    assert_true(contains(log, "user=alice"));
    assert_false(contains(log, marker));
    assert_false(contains(log, "alice-Passw0rd"));
    assert_false(contains(log, "Bind-Secret-1"));
}

// A hostile frame gets refused and the daemon keeps serving.
void oversize_frame_refused(void**) {
    std::string dir = subdir("frame");
    Daemon d(dir, ad_config(dir));
    int fd = connect_raw(d.socket());
    unsigned char header[4] = {0x10, 0, 0, 0};  // 256 MiB
    assert_int_equal(send(fd, header, 4, MSG_NOSIGNAL), 4);
    char buf[512];
    ssize_t n;
    std::string got;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
    close(fd);  // the daemon hung up after its refusal
    assert_true(contains(got, "refused"));
    assert_true(contains(read_file(d.log_path()), "frame refused"));
    auto alice = login(d, dir, "alice", "alice-Passw0rd");
    assert_int_equal(alice.authenticate, PAM_SUCCESS);
}

// Wake-ups of the daemon's I/O thread (its main thread) so far: its voluntary context switches.
long io_thread_wakeups(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/status");
    std::string line;
    const std::string key = "voluntary_ctxt_switches:";
    while (std::getline(f, line))
        if (line.rfind(key, 0) == 0) return std::stol(line.substr(key.size()));
    return -1;
}

// Seconds until the daemon hangs up on `fd` (at most `limit`; -1 if it did not).
double seconds_to_hang_up(int fd, double limit) {
    const auto t0 = cvat::proto::monotonic_ms();
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(limit * 1000)) != 1) return -1;
    char c;
    if (recv(fd, &c, 1, MSG_DONTWAIT) != 0) return -1;
    return static_cast<double>(cvat::proto::monotonic_ms() - t0) / 1000.0;
}

// Open descriptors of the daemon.
int open_fds(pid_t pid) {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
    return n;
}

// A connection its client keeps is parked with the workers after a plain answer: a worker
// reads and answers its next requests without the I/O thread waking for them. A next frame
// that comes in pieces goes back to the I/O thread and is served; a parked connection left
// idle past client_timeout is closed, and one its client closes is let go.
void kept_connection_parked(void**) {
    std::string dir = subdir("parked");
    Daemon d(dir, ad_config(dir, "", "  client_timeout: 2\n"));
    int fd = connect_raw(d.socket());
    assert_true(served(fd));
    auto wakeups_for = [&](int requests) {
        const long before = io_thread_wakeups(d.pid());
        assert_true(before >= 0);
        for (int i = 0; i < requests; ++i) assert_true(served(fd));
        return io_thread_wakeups(d.pid()) - before;
    };
    constexpr int kRequests = 300;
    const long woke = wakeups_for(kRequests);
    print_message("# %d requests on a kept connection woke the I/O thread %ld times\n", kRequests, woke);
    // Its sweep wakes it every 500 ms; a hand-off per request would wake it 300 times.
    if (woke > 30) fail_msg("the I/O thread woke %ld times for %d requests", woke, kRequests);

    // The next frame in two pieces, 300 ms apart: the worker hands the first back to the I/O
    // thread, which reads the rest (and is woken for it).
    auto frame = cvat::proto::encode_request(cvat::proto::StatusRequest{});
    assert_true(frame.has_value() && frame->size() > 4);
    const long before_split = io_thread_wakeups(d.pid());
    assert_int_equal(send(fd, frame->data(), 3, MSG_NOSIGNAL), 3);
    usleep(300 * 1000);
    const auto rest = static_cast<ssize_t>(frame->size() - 3);
    assert_int_equal(send(fd, frame->data() + 3, static_cast<size_t>(rest), MSG_NOSIGNAL), rest);
    auto body = cvat::proto::recv_frame(fd, cvat::proto::Deadline::after_ms(5000));
    assert_true(body.has_value());
    auto answer = cvat::proto::decode_response(*body);
    assert_true(answer && std::holds_alternative<cvat::proto::StatusReply>(*answer));
    assert_true(io_thread_wakeups(d.pid()) - before_split >= 1);
    // Parked again after that answer.
    assert_true(served(fd));
    const long after = wakeups_for(50);
    if (after > 10) fail_msg("after the split frame, 50 requests woke the I/O thread %ld times", after);

    // Idle: closed after client_timeout (2 s) from the last answer, not before.
    const double idle = seconds_to_hang_up(fd, 5);
    print_message("# the parked connection was closed after %.2f s idle\n", idle);
    if (idle < 1.5 || idle > 2.9) fail_msg("a parked connection idle for 2 s closed after %.2f s", idle);
    close(fd);

    // Hung up by its client while parked: the daemon lets it go (its descriptor too).
    usleep(100 * 1000);
    const int fds_before = open_fds(d.pid());
    const std::size_t log_before = read_file(d.log_path()).size();
    int gone = connect_raw(d.socket());
    assert_true(served(gone));
    usleep(100 * 1000);  // parked
    close(gone);
    bool let_go = false;
    for (int i = 0; i < 100 && !let_go; ++i) {
        usleep(20 * 1000);
        let_go = contains(read_file(d.log_path()).substr(log_before), "disconnected (parked)") &&
                 open_fds(d.pid()) == fds_before;
    }
    if (!let_go) fail_msg("a parked connection its client closed was not let go (%d descriptors, %d before)",
                          open_fds(d.pid()), fds_before);
    int next = connect_raw(d.socket());
    assert_true(served(next));
    close(next);
}

// A second daemon started on the socket a running one serves (the same config, by hand beside
// the service) is refused at once and says why; the running one keeps its socket and serves on.
// A stale socket, whose daemon is gone, is still replaced (the fixture's every start).
void second_daemon_on_a_served_socket(void**) {
    std::string dir = subdir("second");
    Daemon d(dir, ad_config(dir));
    Run second = run("timeout 20 " + env_or("CVAT_AUTHD", "cvat-authd") + " --foreground --config " + d.config_path());
    print_message("# the second daemon: exit %d: %s", second.status, second.out.c_str());
    assert_int_equal(second.status, 1);
    assert_true(contains(second.out, "is in use: another cvat-authd serves on it"));
    struct stat st{};
    assert_int_equal(::lstat(d.socket().c_str(), &st), 0);
    int fd = connect_raw(d.socket());
    assert_true(served(fd));
    close(fd);
    auto alice = login(d, dir, "alice", "alice-Passw0rd");
    assert_int_equal(alice.authenticate, PAM_SUCCESS);
}

// cvat-authctl: config check, login, explain, status — the admin's view of each case.
void authctl_commands(void**) {
    std::string dir = subdir("ctl");
    Daemon d(dir, ad_config(dir));
    std::string ctl = env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + d.socket() + " ";

    Run r = run(ctl + "config check " + d.config_path());
    assert_int_equal(r.status, 0);
    assert_true(contains(r.out, ": OK"));
    write_file(dir + "/bad.yml", "ldap:\n  server_uri: ldap://127.0.0.1:1\n  group_type: fancy\n", 0600);
    r = run(ctl + "config check " + dir + "/bad.yml");
    assert_int_equal(r.status, 1);
    assert_true(contains(r.out, dir + "/bad.yml:3:"));
    assert_true(contains(r.out, "ldap.group_type"));

    r = run("echo 'dora-Passw0rd' | " + ctl + "login dora");
    assert_int_equal(r.status, 0);
    assert_true(contains(r.out, "verdict: ok"));
    assert_true(contains(r.out, "role: admin"));
    assert_true(contains(r.out, "email: dora@ad.example.test"));
    r = run("echo 'nope' | " + ctl + "login dora");
    assert_int_equal(r.status, 1);
    assert_true(contains(r.out, "verdict: authentication failed"));

    r = run(ctl + "explain dora");
    assert_int_equal(r.status, 0);
    assert_true(contains(r.out, "CVAT Admins"));
    assert_true(contains(r.out, "CVAT Workers"));
    assert_true(contains(r.out, "role admin"));
    r = run(ctl + "explain nestor");  // admin only through three levels of nesting
    assert_true(contains(r.out, "Nest L1"));
    assert_true(contains(r.out, "Nest L2"));
    assert_true(contains(r.out, "role admin"));
    r = run(ctl + "explain nina");
    assert_true(contains(r.out, "default_role"));
    assert_true(contains(r.out, "role user"));
    r = run(ctl + "explain no-such-user");
    assert_int_equal(r.status, 1);
    assert_true(contains(r.out, "no entry matched"));

    r = run(ctl + "status");
    assert_int_equal(r.status, 0);
    assert_true(contains(r.out, "reachable"));
    assert_true(contains(r.out, g_world->slapd->uri()));

    g_world->slapd->stop();
    r = run(ctl + "status");
    g_world->slapd->restart();
    assert_int_equal(r.status, 2);
    assert_true(contains(r.out, "DOWN"));

    // No daemon at all.
    r = run(env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + dir + "/absent status");
    assert_int_equal(r.status, 2);
    assert_true(contains(r.out, "not reachable"));
}

// With no --config, the daemon reads $AUTH_CONFIG_PATH (CVAT's variable).
void auth_config_path_variable(void**) {
    std::string dir = subdir("envpath");
    std::string cfg = ad_config(dir);
    cfg.replace(cfg.find("@SOCKET@"), 8, dir + "/socket");
    write_file(dir + "/auth_config.yml", cfg, 0600);
    Run r = run("AUTH_CONFIG_PATH=" + dir + "/auth_config.yml " + env_or("CVAT_AUTHD", "cvat-authd") + " --check");
    assert_int_equal(r.status, 0);
    assert_true(contains(r.out, dir + "/auth_config.yml: OK"));
    r = run("AUTH_CONFIG_PATH=" + dir + "/missing.yml " + env_or("CVAT_AUTHD", "cvat-authd") + " --check");
    assert_int_equal(r.status, 1);
    assert_true(contains(r.out, "missing.yml"));
}

}  // namespace

int main() {
    require_program("slapd");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reload_good_and_broken),
        cmocka_unit_test(refuses_readable_secrets),
        cmocka_unit_test(drops_to_helper_user),
        cmocka_unit_test(many_clients_at_once),
        cmocka_unit_test(peer_logged_password_never),
        cmocka_unit_test(oversize_frame_refused),
        cmocka_unit_test(kept_connection_parked),
        cmocka_unit_test(second_daemon_on_a_served_socket),
        cmocka_unit_test(authctl_commands),
        cmocka_unit_test(auth_config_path_variable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
