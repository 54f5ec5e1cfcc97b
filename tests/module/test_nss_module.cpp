// SPDX-License-Identifier: GPL-3.0-or-later
//
// libnss_cvat.so.2's contract against a small in-test daemon (a thread speaking the real
// protocol through common/protocol.hpp on a Unix socket in a temp directory):
//   test_nss_module           dlopen the module and call its entry points directly
//   test_nss_module wrapper   getent and id under nss_wrapper (LD_PRELOAD), resolving through
//                             the module as glibc would
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nobody_peer.hpp"
#include "nss_mc_writer.hpp"
#include "nss_module.hpp"
#include "protocol.hpp"
#include "transport.hpp"

#include "cmocka.hpp"

namespace {

using namespace cvat;
using proto::Status;

std::string g_dir;
cvat::test::NssModule g_nss;

// ---- the in-test daemon ------------------------------------------------------------------

// alice (10001, groups devs 20001 and ops 20002), bob (10002); "unsupported" gets
// not_supported, everything else not_found.
proto::Response answer(const proto::Request& req) {
    auto pw = [](const std::string& name) {
        proto::PasswdReply r;
        if (name == "unsupported") r.status = Status::not_supported;
        if (name != "alice" && name != "bob") return r;
        r.status = Status::ok;
        r.name = name;
        r.uid = r.gid = name == "alice" ? 10001 : 10002;
        r.gecos = name == "alice" ? "Alice Example" : "Bob";
        r.dir = "/home/" + name;
        r.shell = "/bin/bash";
        return r;
    };
    auto gr = [](std::uint32_t gid) {
        proto::GroupReply r;
        if (gid == 20001) r = {Status::ok, "devs", 20001, {"alice", "bob"}};
        if (gid == 20002) r = {Status::ok, "ops", 20002, {"alice"}};
        return r;
    };
    if (auto* m = std::get_if<proto::PasswdByName>(&req)) return pw(m->name);
    if (auto* m = std::get_if<proto::PasswdByUid>(&req))
        return pw(m->uid == 10001 ? "alice" : m->uid == 10002 ? "bob" : "");
    if (auto* m = std::get_if<proto::GroupByName>(&req))
        return gr(m->name == "devs" ? 20001 : m->name == "ops" ? 20002 : 0);
    if (auto* m = std::get_if<proto::GroupByGid>(&req)) return gr(m->gid);
    if (auto* m = std::get_if<proto::InitGroups>(&req)) {
        proto::GroupsReply r;
        if (m->user == "alice") r = {Status::ok, {20001, 20002, 10001}};
        return r;
    }
    return proto::Verdict{};
}

// Serves any number of connections at once and any number of requests on each, as
// cvat-authd does; with hang_up_after_answer(true) it closes each connection after one answer
// (what the daemon does to one idle past helper.client_timeout).
class Daemon {
public:
    explicit Daemon(std::string path) : path_(std::move(path)) {
        ::unlink(path_.c_str());
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strcpy(a.sun_path, path_.c_str());
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 128) != 0 ||
            ::pipe2(stop_, O_CLOEXEC) != 0) {
            std::printf("Bail out! daemon on %s: %s\n", path_.c_str(), std::strerror(errno));
            std::exit(1);
        }
        thread_ = std::thread([this] { run(); });
    }
    ~Daemon() {
        (void)!::write(stop_[1], "x", 1);
        thread_.join();
        for (int c : clients_) ::close(c);
        ::close(fd_);
        ::close(stop_[0]);
        ::close(stop_[1]);
        ::unlink(path_.c_str());
    }
    int connections() const { return connections_.load(); }  // accepted so far
    int open_connections() const { return open_.load(); }
    int requests() const { return requests_.load(); }
    void hang_up_after_answer(bool on) { hang_up_ = on; }
    std::vector<std::string> names() {
        std::lock_guard l(mu_);
        return names_;
    }
    // The pid SO_PEERCRED gave for the connection each request came on, in order.
    std::vector<pid_t> peers() {
        std::lock_guard l(mu_);
        return peers_;
    }

private:
    void run() {
        for (;;) {
            std::vector<pollfd> p = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
            for (int c : clients_) p.push_back({c, POLLIN, 0});
            if (::poll(p.data(), p.size(), -1) < 0) {
                if (errno == EINTR) continue;
                return;
            }
            if (p[1].revents) return;
            for (std::size_t i = 2; i < p.size(); ++i)
                if (p[i].revents != 0 && !serve(p[i].fd)) {
                    ::close(p[i].fd);
                    std::erase(clients_, p[i].fd);
                    --open_;
                }
            if (p[0].revents & POLLIN) {
                int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
                if (c < 0) continue;
                ++connections_;
                ++open_;
                clients_.push_back(c);
            }
        }
    }
    // One request and its answer; false: close the connection.
    bool serve(int c) {
        auto body = proto::recv_frame(c, proto::Deadline::after_ms(5000));
        if (!body) return false;
        auto req = proto::decode_request(*body);
        if (!req) return false;
        ++requests_;
        {
            ucred cred{};
            socklen_t len = sizeof cred;
            ::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len);
            std::lock_guard l(mu_);
            peers_.push_back(cred.pid);
            if (auto* m = std::get_if<proto::PasswdByName>(&*req)) names_.push_back(m->name);
        }
        auto frame = proto::encode_response(answer(*req));
        if (!frame || !proto::send_frame(c, *frame, proto::Deadline::after_ms(5000))) return false;
        return !hang_up_;
    }
    std::string path_;
    int fd_ = -1;
    int stop_[2] = {-1, -1};
    std::thread thread_;
    std::vector<int> clients_;  // the serving thread's only
    std::atomic<int> connections_{0}, open_{0}, requests_{0};
    std::atomic<bool> hang_up_{false};
    std::mutex mu_;
    std::vector<std::string> names_;
    std::vector<pid_t> peers_;
};

Daemon* g_daemon = nullptr;
std::string socket_path() { return g_dir + "/socket"; }
void use_socket(const std::string& p) { setenv("CVAT_AUTH_SOCKET", p.c_str(), 1); }

struct Pw {
    passwd pw{};
    char buf[1024];
    int err = 0;
    nss_status st = NSS_STATUS_TRYAGAIN;
    bool inside(const char* p) const { return p >= buf && p < buf + sizeof buf; }
};
Pw getpwnam(const char* name) {
    Pw r;
    r.st = g_nss.getpwnam_r(name, &r.pw, r.buf, sizeof r.buf, &r.err);
    return r;
}

// ---- tests -------------------------------------------------------------------------------

void test_lookups_fill_the_buffer(void**) {
    Pw a = getpwnam("alice");
    assert_int_equal(a.st, NSS_STATUS_SUCCESS);
    assert_string_equal(a.pw.pw_name, "alice");
    // "*" as SSSD's: "x" would send pam_unix's account check looking for a shadow entry.
    assert_string_equal(a.pw.pw_passwd, "*");
    assert_string_equal(a.pw.pw_gecos, "Alice Example");
    assert_string_equal(a.pw.pw_dir, "/home/alice");
    assert_string_equal(a.pw.pw_shell, "/bin/bash");
    assert_int_equal(a.pw.pw_uid, 10001);
    for (const char* p : {a.pw.pw_name, a.pw.pw_passwd, a.pw.pw_gecos, a.pw.pw_dir, a.pw.pw_shell})
        assert_true(a.inside(p));

    Pw b;
    b.st = g_nss.getpwuid_r(10002, &b.pw, b.buf, sizeof b.buf, &b.err);
    assert_int_equal(b.st, NSS_STATUS_SUCCESS);
    assert_string_equal(b.pw.pw_name, "bob");

    group gr{};
    char buf[512];
    int err = 0;
    assert_int_equal(g_nss.getgrnam_r("devs", &gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    assert_int_equal(gr.gr_gid, 20001);
    assert_string_equal(gr.gr_passwd, "*");
    assert_true(reinterpret_cast<char*>(gr.gr_mem) >= buf && reinterpret_cast<char*>(gr.gr_mem) < buf + sizeof buf);
    assert_string_equal(gr.gr_mem[0], "alice");
    assert_string_equal(gr.gr_mem[1], "bob");
    assert_null(gr.gr_mem[2]);
    assert_int_equal(g_nss.getgrgid_r(20002, &gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    assert_string_equal(gr.gr_name, "ops");

    long start = 1, size = 1;
    auto* groups = static_cast<gid_t*>(std::malloc(sizeof(gid_t)));
    groups[0] = 10001;
    assert_int_equal(g_nss.initgroups_dyn("alice", 10001, &start, &size, &groups, 0, &err), NSS_STATUS_SUCCESS);
    assert_int_equal(start, 3);  // the primary group is not repeated
    assert_int_equal(groups[1], 20001);
    assert_int_equal(groups[2], 20002);
    // A limit stops the list (and is still success).
    start = 1;
    size = 1;
    assert_int_equal(g_nss.initgroups_dyn("alice", 10001, &start, &size, &groups, 2, &err), NSS_STATUS_SUCCESS);
    assert_int_equal(start, 2);
    std::free(groups);

    Pw n = getpwnam("nobody-here");
    assert_int_equal(n.st, NSS_STATUS_NOTFOUND);
    assert_int_equal(g_nss.getgrgid_r(4242, &gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    start = 0;
    groups = nullptr;
    size = 0;
    assert_int_equal(g_nss.initgroups_dyn("bob", 10002, &start, &size, &groups, 0, &err), NSS_STATUS_NOTFOUND);
    std::free(groups);
}

void test_small_buffer_then_success(void**) {
    std::size_t len = 0;
    for (;; ++len) {
        passwd pw{};
        pw.pw_name = reinterpret_cast<char*>(0x1);
        char buf[128];
        int err = 0;
        nss_status st = g_nss.getpwnam_r("alice", &pw, buf, len, &err);
        if (st == NSS_STATUS_SUCCESS) {
            assert_string_equal(pw.pw_dir, "/home/alice");
            break;
        }
        assert_int_equal(st, NSS_STATUS_TRYAGAIN);
        assert_int_equal(err, ERANGE);
        assert_ptr_equal(pw.pw_name, reinterpret_cast<char*>(0x1));
        assert_true(len < sizeof buf);
    }
    assert_int_equal(len, 6 + 2 + 14 + 12 + 10);  // exactly the strings and their NULs
    for (std::size_t glen = 0;; ++glen) {
        group gr{};
        char buf[128];
        int err = 0;
        nss_status st = g_nss.getgrnam_r("devs", &gr, buf, glen, &err);
        if (st == NSS_STATUS_SUCCESS) {
            assert_string_equal(gr.gr_mem[1], "bob");
            break;
        }
        assert_int_equal(st, NSS_STATUS_TRYAGAIN);
        assert_int_equal(err, ERANGE);
        assert_true(glen < sizeof buf);
    }
}

void test_daemon_down_unavail(void**) {
    use_socket(g_dir + "/absent.sock");
    Pw a = getpwnam("alice");
    assert_int_equal(a.st, NSS_STATUS_UNAVAIL);
    assert_int_equal(a.err, ENOENT);
    // A socket file nobody listens on: refused.
    std::string dead = g_dir + "/dead.sock";
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, dead.c_str());
    assert_int_equal(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
    use_socket(dead);
    a = getpwnam("alice");
    assert_int_equal(a.st, NSS_STATUS_UNAVAIL);
    assert_int_equal(a.err, ECONNREFUSED);
    use_socket(socket_path());
}

// nss_cvat believes only the daemon: it asks nothing of a listener that another user runs in
// a world-writable directory (it could answer with any uid and shell), and it does not read an
// nss.mc that such a user wrote there.
void test_untrusted_listener_and_file(void**) {
    if (::geteuid() != 0) skip();  // nobody's listener needs root; CI counts a skip as a failure
    const std::string open = g_dir + "/open";
    std::filesystem::create_directories(open);
    assert_int_equal(::chmod(g_dir.c_str(), 0711), 0);
    assert_int_equal(::chmod(open.c_str(), 01777), 0);
    {
        test::NobodyPeer peer(open + "/socket", nullptr);
        if (!peer.started()) fail_msg("the listener run by nobody did not start");
        use_socket(open + "/socket");
        Pw a = getpwnam("alice");
        const int read = peer.finish();
        assert_int_equal(a.st, NSS_STATUS_UNAVAIL);
        // 0: connected (to learn who listens), and sent nothing.
        if (read != 0) fail_msg("nss_cvat sent %d bytes to a listener run by nobody (-1: never connected)", read);
    }
    // A well-formed nss.mc in the same place: not read while nobody owns it; read once root does.
    namespace w = cvat::helper::nss_mc;
    const std::string file = open + "/nss.mc";
    assert_true(w::publish(file, {{"planted", 4242, 4242, "Planted", "/root", "/bin/sh", {}, std::time(nullptr) + 3600}},
                           {}, false).has_value());
    assert_int_equal(::chown(file.c_str(), 65534, 65534), 0);
    use_socket(open + "/absent.sock");
    Pw p = getpwnam("planted");
    assert_int_not_equal(p.st, NSS_STATUS_SUCCESS);
    assert_int_equal(::chown(file.c_str(), 0, 0), 0);
    p = getpwnam("planted");
    assert_int_equal(p.st, NSS_STATUS_SUCCESS);
    assert_int_equal(p.pw.pw_uid, 4242);
    assert_true(w::withdraw(file).has_value());
    use_socket(socket_path());
}

void test_not_supported_unavail(void**) {
    Pw a = getpwnam("unsupported");
    assert_int_equal(a.st, NSS_STATUS_UNAVAIL);
}

void test_disable_env(void**) {
    int before = g_daemon->requests();
    setenv("CVAT_NSS_DISABLE", "1", 1);
    Pw a = getpwnam("alice");
    group gr{};
    char buf[256];
    int err = 0;
    nss_status g = g_nss.getgrgid_r(20001, &gr, buf, sizeof buf, &err);
    unsetenv("CVAT_NSS_DISABLE");
    assert_int_equal(a.st, NSS_STATUS_UNAVAIL);
    assert_int_equal(g, NSS_STATUS_UNAVAIL);
    assert_int_equal(g_daemon->requests(), before);
}

void test_hostile_names_stay_local(void**) {
    int before = g_daemon->requests();
    std::string long_name(300, 'a');
    for (const char* name : {long_name.c_str(), "al\nice", "al:ice", "", "tab\tname", "del\x7f"}) {
        Pw a = getpwnam(name);
        assert_int_equal(a.st, NSS_STATUS_NOTFOUND);
        group gr{};
        char buf[256];
        int err = 0;
        assert_int_equal(g_nss.getgrnam_r(name, &gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    }
    Pw a = getpwnam(std::string(255, 'b').c_str());  // the longest name allowed goes through
    assert_int_equal(a.st, NSS_STATUS_NOTFOUND);
    assert_int_equal(g_daemon->requests(), before + 1);
    auto names = g_daemon->names();
    assert_string_equal(names.back().c_str(), std::string(255, 'b').c_str());
}

void test_errno_preserved(void**) {
    passwd pw{};
    char buf[256];
    errno = EDOM;
    assert_int_equal(g_nss.getpwnam_r("alice", &pw, buf, sizeof buf, &errno), NSS_STATUS_SUCCESS);
    assert_int_equal(errno, EDOM);
    errno = EDOM;
    assert_int_equal(g_nss.getpwnam_r("nobody-here", &pw, buf, sizeof buf, &errno), NSS_STATUS_NOTFOUND);
    assert_int_equal(errno, EDOM);
    int err = EDOM;
    errno = EILSEQ;
    assert_int_equal(g_nss.getpwnam_r("alice", &pw, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    assert_int_equal(errno, EILSEQ);
    assert_int_equal(err, EDOM);
}

// Waits for a child at most 10 s; false when it was stuck (a lock the fork left held), and is
// then killed.
bool reap(pid_t pid, int& status) {
    for (int i = 0; i < 1000; ++i) {
        if (::waitpid(pid, &status, WNOHANG) == pid) return true;
        ::usleep(10000);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return false;
}

// A child's exit status (98: stuck, 99: ended by a signal).
int wait_child(pid_t pid) {
    int status = 0;
    if (!reap(pid, status)) return 98;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

// For a child that writes one result byte to `result` and ends itself with SIGKILL: the byte
// (0 when its lookups worked), 97 when it wrote none, 98 stuck, 99 ended otherwise.
int wait_killed_child(pid_t pid, int result) {
    int status = 0;
    if (!reap(pid, status)) return 98;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) return 99;
    char byte = 0;
    return ::read(result, &byte, 1) == 1 ? byte : 97;
}

void test_fork_child_looks_up(void**) {
    // Warm lookups in other threads hold the module's cache lock often while we fork.
    namespace w = cvat::helper::nss_mc;
    auto r = w::publish(g_dir + "/nss.mc", {{"carol", 10003, 10003, "Carol", "/home/carol", "/bin/sh", {}, std::time(nullptr) + 3600}}, {}, false);
    assert_true(r.has_value());
    std::atomic<bool> stop{false};
    std::vector<std::thread> busy;
    for (int t = 0; t < 3; ++t)
        busy.emplace_back([&] {
            while (!stop) (void)getpwnam("carol");
        });
    int bad = 0;
    for (int i = 0; i < 40; ++i) {
        int result[2];
        assert_int_equal(::pipe2(result, O_CLOEXEC), 0);
        pid_t pid = ::fork();
        if (pid == 0) {
            Pw warm = getpwnam("carol");
            Pw cold = getpwnam("alice");
            const char ok = warm.st == NSS_STATUS_SUCCESS && cold.st == NSS_STATUS_SUCCESS &&
                                    std::strcmp(cold.pw.pw_gecos, "Alice Example") == 0
                                ? 0
                                : 1;
            (void)!::write(result[1], &ok, 1);
            // Not _exit(): under valgrind the child's exit would run a leak check that finds the
            // parent's thread objects (kept on stacks this child does not have) "lost".
            ::raise(SIGKILL);
        }
        ::close(result[1]);
        const int st = wait_killed_child(pid, result[0]);
        ::close(result[0]);
        if (st != 0) {  // one stuck child is enough: stop before the suite's timeout
            std::printf("# child %d: %d\n", i, st);
            ++bad;
            break;
        }
    }
    stop = true;
    for (auto& t : busy) t.join();
    assert_true(w::withdraw(g_dir + "/nss.mc").has_value());
    assert_int_equal(bad, 0);
}

void test_16_threads(void**) {
    std::atomic<int> bad{0}, good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                const char* name = (t + i) % 2 ? "alice" : "bob";
                Pw a = getpwnam(name);
                if (a.st == NSS_STATUS_SUCCESS && std::strcmp(a.pw.pw_name, name) == 0 && a.inside(a.pw.pw_dir))
                    ++good;
                else
                    ++bad;
            }
        });
    for (auto& t : threads) t.join();
    assert_int_equal(bad.load(), 0);
    assert_int_equal(good.load(), 16 * 50);
}

// Lookups of one thread share a connection; one the daemon closed meanwhile is replaced
// without the caller noticing; a thread's connection ends with the thread; a forked child
// connects on its own (SO_PEERCRED is the connecting process's).
void test_connection_kept(void**) {
    auto settle = [](const std::function<bool()>& done) {
        for (int i = 0; i < 200 && !done(); ++i) ::usleep(10000);
        return done();
    };
    // Those of earlier tests' threads have gone; at most this thread's is left.
    assert_true(settle([] { return g_daemon->open_connections() <= 1; }));
    const int open = g_daemon->open_connections();
    std::thread([] { assert_int_equal(getpwnam("alice").st, NSS_STATUS_SUCCESS); }).join();
    // The thread's connection was closed when it ended.
    if (!settle([open] { return g_daemon->open_connections() <= open; }))
        fail_msg("%d connections open after the thread ended, %d before", g_daemon->open_connections(), open);
    const int before = g_daemon->connections();
    for (int i = 0; i < 20; ++i) {
        assert_int_equal(getpwnam(i % 2 ? "alice" : "nobody-here").st, i % 2 ? NSS_STATUS_SUCCESS : NSS_STATUS_NOTFOUND);
        group gr{};
        char buf[512];
        int err = 0;
        assert_int_equal(g_nss.getgrgid_r(20001, &gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    }
    assert_true(g_daemon->connections() - before <= 1);  // the first may connect, none after it

    g_daemon->hang_up_after_answer(true);
    const int requests = g_daemon->requests();
    for (int i = 0; i < 5; ++i) assert_int_equal(getpwnam("bob").st, NSS_STATUS_SUCCESS);
    g_daemon->hang_up_after_answer(false);
    assert_int_equal(g_daemon->requests(), requests + 5);
    assert_int_equal(getpwnam("bob").st, NSS_STATUS_SUCCESS);  // a live kept connection again

    int result[2];
    assert_int_equal(::pipe2(result, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        const char ok = getpwnam("alice").st == NSS_STATUS_SUCCESS ? 0 : 1;
        (void)!::write(result[1], &ok, 1);
        ::raise(SIGKILL);  // as in test_fork_child_looks_up
    }
    ::close(result[1]);
    const int st = wait_killed_child(pid, result[0]);
    ::close(result[0]);
    assert_int_equal(st, 0);
    auto peers = g_daemon->peers();
    assert_int_equal(peers.back(), pid);
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_SUCCESS);
    assert_int_equal(g_daemon->peers().back(), ::getpid());
}

// The socket descriptors this process has open.
std::vector<int> open_sockets() {
    std::vector<int> out;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(e.path(), ec);
        if (!ec && target.string().rfind("socket:", 0) == 0) out.push_back(std::stoi(e.path().filename().string()));
    }
    return out;
}

// A forked child closes the connections every thread of its parent keeps, not only the forking
// thread's: a child that changes its user without exec must not hold a connection the daemon
// knows by the parent's credentials.
void test_fork_closes_every_kept_connection(void**) {
    const auto before = open_sockets();
    std::mutex m;
    std::condition_variable cv;
    bool done = false, looked_up = false, release = false;
    std::thread holder([&] {
        nss_status st = getpwnam("alice").st;
        std::unique_lock l(m);
        looked_up = st == NSS_STATUS_SUCCESS;
        done = true;  // also when the lookup failed: the test then fails, it does not hang
        cv.notify_all();
        cv.wait(l, [&] { return release; });
    });
    {
        std::unique_lock l(m);
        cv.wait(l, [&] { return done; });
    }
    // The thread's end of its connection (the in-test daemon's end is in this process too).
    int kept = -1;
    for (int fd : open_sockets()) {
        sockaddr_un peer{};
        socklen_t len = sizeof peer;
        if (std::find(before.begin(), before.end(), fd) == before.end() &&
            ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0 && socket_path() == peer.sun_path)
            kept = fd;
    }
    int result[2];
    assert_int_equal(::pipe2(result, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        const char ok = kept >= 0 && ::fcntl(kept, F_GETFD) == -1 && errno == EBADF ? 0 : 1;
        (void)!::write(result[1], &ok, 1);
        ::raise(SIGKILL);  // as in test_fork_child_looks_up
    }
    ::close(result[1]);
    const int st = wait_killed_child(pid, result[0]);
    ::close(result[0]);
    {
        std::lock_guard l(m);
        release = true;
    }
    cv.notify_all();
    holder.join();
    assert_true(looked_up);
    if (kept < 0) fail_msg("the thread kept no connection");
    assert_int_equal(st, 0);
}

void test_enumeration(void**) {
    namespace w = cvat::helper::nss_mc;
    std::int64_t later = std::time(nullptr) + 3600;
    std::vector<w::PasswdEntry> users = {{"alice", 10001, 10001, "A", "/home/alice", "/bin/sh", {}, later},
                                         {"bob", 10002, 10002, "B", "/home/bob", "/bin/sh", {}, later}};
    std::vector<w::GroupEntry> groups = {{"devs", 20001, {"alice", "bob"}, later}};
    passwd pw{};
    group gr{};
    char buf[512];
    int err = 0;
    // No file: nothing to list (enumeration never asks the daemon).
    g_nss.setpwent(0);
    assert_int_equal(g_nss.getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    g_nss.endpwent();
    // Flag off (the default): nothing.
    assert_true(w::publish(g_dir + "/nss.mc", users, groups, false).has_value());
    g_nss.setpwent(0);
    assert_int_equal(g_nss.getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    g_nss.endpwent();
    g_nss.setgrent(0);
    assert_int_equal(g_nss.getgrent_r(&gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    g_nss.endgrent();
    // Flag on: every record once.
    assert_true(w::publish(g_dir + "/nss.mc", users, groups, true).has_value());
    g_nss.setpwent(0);
    std::string seen;
    while (g_nss.getpwent_r(&pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS) seen += std::string(pw.pw_name) + ",";
    g_nss.endpwent();
    assert_string_equal(seen.c_str(), "alice,bob,");
    g_nss.setgrent(0);
    assert_int_equal(g_nss.getgrent_r(&gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    assert_string_equal(gr.gr_name, "devs");
    assert_string_equal(gr.gr_mem[1], "bob");
    assert_int_equal(g_nss.getgrent_r(&gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    g_nss.endgrent();
    assert_true(w::withdraw(g_dir + "/nss.mc").has_value());
}

int reset(void**) {
    use_socket(socket_path());
    unsetenv("CVAT_NSS_DISABLE");
    return 0;
}

// ---- nss_wrapper: getent and id resolve through the module --------------------------------

// Runs argv with the nss_wrapper environment; returns its stdout, or "" with *status != 0.
std::string run_wrapped(const std::vector<std::string>& argv, int* status) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return "";
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        // A sanitizer build's module needs its runtime first in a plain program (tests/meson.build).
        std::string preload = "libnss_wrapper.so";
        if (const char* asan = std::getenv("CVAT_SANITIZER_PRELOAD"); asan != nullptr && *asan != '\0')
            preload = std::string(asan) + ":" + preload;
        setenv("LD_PRELOAD", preload.c_str(), 1);
        setenv("NSS_WRAPPER_PASSWD", (g_dir + "/passwd").c_str(), 1);
        setenv("NSS_WRAPPER_GROUP", (g_dir + "/group").c_str(), 1);
        setenv("NSS_WRAPPER_MODULE_SO_PATH", std::getenv("NSS_CVAT_SO"), 1);
        setenv("NSS_WRAPPER_MODULE_FN_PREFIX", "cvat", 1);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        _exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[512];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    *status = wait_child(pid);
    return text;
}

void test_getent_passwd(void**) {
    int st = 0;
    std::string out = run_wrapped({"getent", "passwd", "alice"}, &st);
    assert_int_equal(st, 0);
    assert_string_equal(out.c_str(), "alice:*:10001:10001:Alice Example:/home/alice:/bin/bash\n");
    out = run_wrapped({"getent", "passwd", "10002"}, &st);
    assert_string_equal(out.c_str(), "bob:*:10002:10002:Bob:/home/bob:/bin/bash\n");
    out = run_wrapped({"getent", "passwd", "nobody-here"}, &st);
    assert_int_equal(st, 2);  // getent: key not found
}

void test_getent_group(void**) {
    int st = 0;
    std::string out = run_wrapped({"getent", "group", "devs"}, &st);
    assert_int_equal(st, 0);
    assert_string_equal(out.c_str(), "devs:*:20001:alice,bob\n");
}

// nss_wrapper 1.1.12's getgrouplist() lists groups with getgrent() rather than calling
// initgroups_dyn, so `id` sees supplementary groups only from an enumerable cache file.
void test_id_shows_groups(void**) {
    namespace w = cvat::helper::nss_mc;
    std::int64_t later = std::time(nullptr) + 3600;
    auto r = w::publish(g_dir + "/nss.mc", {},
                        {{"devs", 20001, {"alice", "bob"}, later}, {"ops", 20002, {"alice"}, later}}, true);
    assert_true(r.has_value());
    int st = 0;
    std::string out = run_wrapped({"id", "alice"}, &st);
    assert_int_equal(st, 0);
    std::printf("# id alice: %s", out.c_str());
    assert_non_null(std::strstr(out.c_str(), "uid=10001(alice)"));
    assert_non_null(std::strstr(out.c_str(), "20001(devs)"));
    assert_non_null(std::strstr(out.c_str(), "20002(ops)"));
}

}  // namespace

int main(int argc, char** argv) {
    bool wrapper = argc > 1 && std::strcmp(argv[1], "wrapper") == 0;
    char tmpl[] = "/tmp/cvat-nss-module.XXXXXX";
    if (!mkdtemp(tmpl)) {
        std::printf("Bail out! mkdtemp: %s\n", std::strerror(errno));
        return 1;
    }
    g_dir = tmpl;
    std::ofstream(g_dir + "/passwd").close();  // nss_wrapper's files: empty
    std::ofstream(g_dir + "/group").close();
    use_socket(socket_path());
    unsetenv("CVAT_NSS_DISABLE");
    g_nss = cvat::test::NssModule::load();
    int failed = 0;
    {
        Daemon daemon(socket_path());
        g_daemon = &daemon;
        if (wrapper) {
            const CMUnitTest tests[] = {
                cmocka_unit_test(test_getent_passwd),
                cmocka_unit_test(test_getent_group),
                cmocka_unit_test(test_id_shows_groups),
            };
            failed = cmocka_run_group_tests_name("nss_cvat through nss_wrapper", tests, nullptr, nullptr);
        } else {
            const CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_lookups_fill_the_buffer, reset),
                cmocka_unit_test_setup(test_small_buffer_then_success, reset),
                cmocka_unit_test_setup(test_daemon_down_unavail, reset),
                cmocka_unit_test_setup(test_not_supported_unavail, reset),
                cmocka_unit_test_setup(test_untrusted_listener_and_file, reset),
                cmocka_unit_test_setup(test_disable_env, reset),
                cmocka_unit_test_setup(test_hostile_names_stay_local, reset),
                cmocka_unit_test_setup(test_errno_preserved, reset),
                cmocka_unit_test_setup(test_fork_child_looks_up, reset),
                cmocka_unit_test_setup(test_16_threads, reset),
                cmocka_unit_test_setup(test_connection_kept, reset),
                cmocka_unit_test_setup(test_fork_closes_every_kept_connection, reset),
                cmocka_unit_test_setup(test_enumeration, reset),
            };
            failed = cmocka_run_group_tests_name("nss_cvat against an in-test daemon", tests, nullptr, nullptr);
        }
        g_daemon = nullptr;
    }
    std::filesystem::remove_all(g_dir);
    return failed;
}
