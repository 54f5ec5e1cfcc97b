// SPDX-License-Identifier: GPL-3.0-or-later
// Process fixtures for tests: temp directories, slapd via tests/fixtures/slapd.sh, cvat-authd.
// Every process started here is also remembered in a small table that an atexit handler and
// a SIGTERM/SIGINT handler (meson's timeout) clean up, so a test that aborts leaves nothing
// running.
#include "fixture.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocol.hpp"
#include "transport.hpp"

namespace cvat::test {
namespace {

// ---- cleanup of started processes ----------------------------------------------------------

// Fixed slots, so the signal handler reads them without allocation or locks.
constexpr int kMaxTracked = 32;
std::atomic<pid_t> g_tracked[kMaxTracked];
std::atomic<bool> g_cleanup_installed{false};

void kill_tracked(int sig) noexcept {
    for (auto& slot : g_tracked) {
        pid_t pid = slot.load();
        if (pid > 0) ::kill(pid, sig);
    }
}

void on_exit_cleanup() {
    bool any = false;
    for (auto& slot : g_tracked) any = any || slot.load() > 0;
    if (!any) return;
    kill_tracked(SIGTERM);
    for (int i = 0; i < 200; ++i) {  // up to 2 s for them to go
        bool alive = false;
        for (auto& slot : g_tracked) {
            pid_t pid = slot.load();
            if (pid <= 0) continue;
            ::waitpid(pid, nullptr, WNOHANG);  // reap our own children; others are not ours
            if (::kill(pid, 0) == 0)
                alive = true;
            else
                slot.store(0);
        }
        if (!alive) return;
        ::usleep(10 * 1000);
    }
    kill_tracked(SIGKILL);
}

void on_fatal_signal(int sig) {
    kill_tracked(SIGKILL);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

void install_cleanup() {
    if (g_cleanup_installed.exchange(true)) return;
    std::atexit(on_exit_cleanup);
    struct sigaction sa {};
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
        struct sigaction old {};
        ::sigaction(sig, nullptr, &old);
        if (old.sa_handler == SIG_DFL) ::sigaction(sig, &sa, nullptr);
    }
}

void track(pid_t pid) {
    install_cleanup();
    for (auto& slot : g_tracked) {
        pid_t expected = 0;
        if (slot.compare_exchange_strong(expected, pid)) return;
    }
}

void untrack(pid_t pid) {
    for (auto& slot : g_tracked) {
        pid_t expected = pid;
        if (slot.compare_exchange_strong(expected, 0)) return;
    }
}

// ---- helpers ---------------------------------------------------------------------------------

// Ends the test program: the fixture cannot give the test what it needs. TAP "Bail out!" so
// meson reports the reason; stderr gets the details.
[[noreturn]] void fatal(const std::string& why) {
    std::fflush(stdout);
    std::fprintf(stderr, "fixture: %s\n", why.c_str());
    std::printf("Bail out! %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(1);
}

// Skips the whole test program with a reason (see require_program).
[[noreturn]] void skip_all(const std::string& why) {
    std::fflush(stdout);
    std::fprintf(stderr, "skip: %s\n", why.c_str());
    // Under TAP (CMOCKA_MESSAGE_OUTPUT=TAP, meson protocol 'tap') a skipped program is
    // "1..0 # SKIP" with status 0; meson counts a non-zero status as an error there.
    const char* out = std::getenv("CMOCKA_MESSAGE_OUTPUT");
    if (out != nullptr && std::strcmp(out, "TAP") == 0) {
        std::printf("1..0 # SKIP %s\n", why.c_str());
        std::fflush(stdout);
        std::exit(0);
    }
    std::exit(77);
}

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

bool is_executable(const std::string& path) {
    return ::access(path.c_str(), X_OK) == 0;
}

void make_dirs(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fatal("cannot create " + dir + ": " + ec.message());
}

// KEY=VALUE lines (shell syntax, values optionally in single or double quotes).
std::string env_file_value(const std::string& file, const std::string& key) {
    std::ifstream in(file);
    std::string line;
    std::string found;
    while (std::getline(in, line)) {
        if (line.rfind("export ", 0) == 0) line.erase(0, 7);
        auto eq = line.find('=');
        if (eq == std::string::npos || line.compare(0, eq, key) != 0 || eq != key.size()) continue;
        std::string v = line.substr(eq + 1);
        if (v.size() >= 2 && (v.front() == '\'' || v.front() == '"') && v.back() == v.front())
            v = v.substr(1, v.size() - 2);
        found = v;  // the last assignment wins, as in the shell
    }
    return found;
}

}  // namespace

int run_program(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                int timeout_s) {
    pid_t pid = ::fork();
    if (pid < 0) fatal(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
        ::dup2(2, 1);
        for (const auto& kv : extra_env) ::putenv(const_cast<char*>(kv.c_str()));
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
        ::_exit(127);
    }
    track(pid);
    double until = now_s() + timeout_s;
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) break;
        if (now_s() > until) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            untrack(pid);
            return -1;
        }
        ::usleep(20 * 1000);
    }
    untrack(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status)
                             : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void track_pid(pid_t pid) {
    track(pid);
}

void untrack_pid(pid_t pid) {
    untrack(pid);
}

namespace {

// True once `path` accepts a Unix stream connection.
bool socket_accepts(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) return false;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    return ok;
}

// Gone, or a zombie waiting for a parent that is not us (a container's PID 1 may never reap).
bool process_gone(pid_t pid) {
    ::waitpid(pid, nullptr, WNOHANG);
    if (::kill(pid, 0) != 0) return true;
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    auto paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

// Stops a process that is not our child (slapd is detached by its script): SIGTERM, wait,
// SIGKILL.
void stop_foreign(pid_t pid, int grace_ms) {
    if (pid <= 0) return;
    if (::kill(pid, SIGTERM) != 0) return;
    for (int waited = 0; waited < grace_ms; waited += 10) {
        if (process_gone(pid)) return;
        ::usleep(10 * 1000);
    }
    ::kill(pid, SIGKILL);
    for (int i = 0; i < 100 && !process_gone(pid); ++i) ::usleep(10 * 1000);
}

std::string tail(const std::string& text, std::size_t n) {
    return text.size() <= n ? text : text.substr(text.size() - n);
}

}  // namespace

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return (v != nullptr && v[0] != '\0') ? std::string(v) : std::string(fallback);
}

void require_program(const char* program) {
    std::string p(program);
    if (p.find('/') != std::string::npos) {
        if (is_executable(p)) return;
    } else {
        std::string path = env_or("PATH", "/usr/local/bin:/usr/bin:/bin");
        // slapd and friends live in sbin, which a non-root PATH may lack.
        path += ":/usr/local/sbin:/usr/sbin:/sbin";
        std::stringstream ss(path);
        std::string dir;
        while (std::getline(ss, dir, ':'))
            if (!dir.empty() && is_executable(dir + "/" + p)) return;
    }
    skip_all(std::string(program) + " is not installed");
}

TempDir::TempDir() {
    std::string base = env_or("TMPDIR", "/tmp");
    // Unix socket paths (108 bytes) live in here: keep the name short.
    std::string templ = base + "/cvat-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) fatal("mkdtemp " + templ + ": " + std::strerror(errno));
    path_ = buf.data();
}

bool served(int fd) {
    auto r = proto::call(fd, proto::StatusRequest{}, proto::Deadline::after_ms(5000));
    return r && std::holds_alternative<proto::StatusReply>(*r);
}

std::string TempDir::fresh(const std::string& name) {
    std::string d = path_ + "/" + name + std::to_string(++made_);
    if (::mkdir(d.c_str(), 0700) != 0) fatal("mkdir " + d + ": " + std::strerror(errno));
    return d;
}

TempDir::~TempDir() {
    if (std::getenv("CVAT_TEST_KEEP") != nullptr) {
        std::fprintf(stderr, "keeping %s\n", path_.c_str());
        return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

int listen_loopback(int& port, int backlog) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd, backlog) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        const int saved = errno;
        if (fd >= 0) ::close(fd);
        errno = saved;
        return -1;
    }
    port = ntohs(a.sin_port);
    return fd;
}

LoopbackServer::LoopbackServer(const char* what, std::function<void(int fd)> handle, bool per_connection,
                               int recv_timeout_s)
    : handle_(std::move(handle)), per_connection_(per_connection), recv_timeout_s_(recv_timeout_s) {
    fd_ = listen_loopback(port_);
    if (fd_ < 0) fatal(std::string(what) + ": cannot listen on 127.0.0.1: " + std::strerror(errno));
    thread_ = std::thread([this] { run(); });
}

LoopbackServer::~LoopbackServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
}

void LoopbackServer::run() {
    std::vector<std::thread> conns;
    while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        timeval tv{recv_timeout_s_, 0};
        ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        auto serve = [this, c] {
            handle_(c);
            ::close(c);
        };
        if (per_connection_) conns.emplace_back(serve);
        else serve();
    }
    for (auto& t : conns) t.join();
}

SilentServer::SilentServer() {
    fd_ = listen_loopback(port_, 64);
    if (fd_ < 0) {
        std::fprintf(stderr, "Bail out! silent server: cannot listen\n");
        std::exit(1);
    }
}

SilentServer::~SilentServer() {
    if (fd_ >= 0) ::close(fd_);
}

int free_tcp_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fatal(std::string("socket: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        fatal(std::string("bind 127.0.0.1:0: ") + std::strerror(errno));
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) fatal("open " + path + ": " + std::strerror(errno));
    ::fchmod(fd, mode);  // the umask must not change what the test asked for
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            ::close(fd);
            fatal("write " + path + ": " + std::strerror(errno));
        }
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// ---- Slapd -----------------------------------------------------------------------------------

namespace {
std::string slapd_script() {
    return env_or("CVAT_FIXTURES", "tests/fixtures") + "/slapd.sh";
}

std::vector<std::string> script_argv(const std::string& script) {
    // Run it with the interpreter its first line names only if it is not executable itself.
    if (is_executable(script)) return {script};
    return {"/bin/bash", script};
}
}  // namespace

Slapd::Slapd(const std::string& dir, const std::string& tree, bool tls)
    : dir_(dir), tree_(tree), tls_(tls) {
    require_program("slapd");
    std::string script = slapd_script();
    if (::access(script.c_str(), R_OK) != 0) skip_all(script + " is missing");
    make_dirs(dir_);
    auto argv = script_argv(script);
    argv.insert(argv.end(), {"start", dir_, tree_});
    if (tls_) argv.push_back("tls");
    int rc = run_program(argv, {}, 60);
    if (rc != 0) fatal("slapd.sh start " + tree_ + " failed (status " + std::to_string(rc) + ")");
    running_ = true;
    if (pid_t pid = static_cast<pid_t>(std::atoi(get("SLAPD_PID").c_str())); pid > 0) track(pid);
    if (uri().empty() || base().empty())
        fatal("slapd.sh wrote no LDAP_URI/LDAP_BASE to " + dir_ + "/env");
}

Slapd::~Slapd() {
    stop();
}

std::string Slapd::get(const std::string& key) const {
    return env_file_value(dir_ + "/env", key);
}

void Slapd::stop() {
    if (!running_) return;
    running_ = false;
    auto pid = static_cast<pid_t>(std::atoi(get("SLAPD_PID").c_str()));
    if (pid > 0) {
        stop_foreign(pid, 5000);
        untrack(pid);
    } else {
        // No PID recorded: let the script find its slapd.
        auto argv = script_argv(slapd_script());
        argv.insert(argv.end(), {"stop", dir_});
        (void)run_program(argv, {}, 30);
    }
}

void Slapd::restart() {
    std::string ldap_port = get("LDAP_PORT");
    std::string ldaps_port = get("LDAPS_PORT");
    stop();
    std::vector<std::string> env;
    if (!ldap_port.empty()) env.push_back("LDAP_PORT=" + ldap_port);
    if (!ldaps_port.empty()) env.push_back("LDAPS_PORT=" + ldaps_port);
    auto argv = script_argv(slapd_script());
    argv.insert(argv.end(), {"start", dir_, tree_});
    if (tls_) argv.push_back("tls");
    int rc = run_program(argv, env, 60);
    if (rc != 0) fatal("slapd.sh restart " + tree_ + " failed (status " + std::to_string(rc) + ")");
    running_ = true;
    if (pid_t pid = static_cast<pid_t>(std::atoi(get("SLAPD_PID").c_str())); pid > 0) track(pid);
}

// ---- Daemon ----------------------------------------------------------------------------------

namespace {
std::string with_socket(std::string yaml, const std::string& socket) {
    const std::string marker = "@SOCKET@";
    for (auto at = yaml.find(marker); at != std::string::npos;
         at = yaml.find(marker, at + socket.size()))
        yaml.replace(at, marker.size(), socket);
    // The persistent cache goes beside the socket unless the test says where: a test never
    // writes to the machine's /var/lib/cvat-auth.
    if (yaml.find("cache_dir:") == std::string::npos) {
        const std::string dir = socket.substr(0, socket.rfind('/')) + "/cache";
        if (auto at = yaml.find("helper:\n"); at != std::string::npos && (at == 0 || yaml[at - 1] == '\n'))
            yaml.insert(at + 8, "  cache_dir: " + dir + "\n");
        else if (yaml.find("\nhelper:") == std::string::npos && yaml.rfind("helper:", 0) != 0)
            yaml += "\nhelper:\n  cache_dir: " + dir + "\n";
    }
    return yaml;
}
}  // namespace

std::vector<std::string> whole_malloc_stacks() {
    const char* asan = std::getenv("ASAN_OPTIONS");
    if (asan == nullptr) return {};
    return {"env", std::string("ASAN_OPTIONS=") + asan + ":fast_unwind_on_malloc=0:print_suppressions=0"};
}

Daemon::Daemon(const std::string& dir, const std::string& config_yaml) : Daemon(dir, config_yaml, {}) {}

Daemon::Daemon(const std::string& dir, const std::string& config_yaml, const std::vector<std::string>& wrapper)
    : dir_(dir),
      config_(dir + "/auth_config.yml"),
      socket_(dir + "/socket"),
      log_(dir + "/authd.log") {
    std::string authd = env_or("CVAT_AUTHD", "");
    if (authd.empty() || !is_executable(authd))
        skip_all("CVAT_AUTHD is not set to a built cvat-authd");
    make_dirs(dir_);
    write_file(config_, with_socket(config_yaml, socket_), 0600);
    ::unlink(socket_.c_str());

    pid_ = ::fork();
    if (pid_ < 0) fatal(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
        int log = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (log < 0 || null < 0) ::_exit(126);
        ::dup2(null, 0);
        ::dup2(log, 1);
        ::dup2(log, 2);
        // The daemon must read its socket from the config, not from the test's environment.
        ::unsetenv("CVAT_AUTH_SOCKET");
        ::unsetenv("AUTH_CONFIG_PATH");
        std::vector<std::string> args = wrapper;
        args.insert(args.end(), {authd, "--foreground", "--config", config_});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
    track(pid_);

    double until = now_s() + 10;
    while (!socket_accepts(socket_)) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            untrack(pid_);
            pid_ = -1;
            std::fprintf(stderr, "--- %s\n%s\n---\n", log_.c_str(),
                         tail(read_file(log_), 4000).c_str());
            fatal("cvat-authd exited during start-up (status " + std::to_string(status) +
                  "), log in " + log_);
        }
        if (now_s() > until) {
            std::fprintf(stderr, "--- %s\n%s\n---\n", log_.c_str(),
                         tail(read_file(log_), 4000).c_str());
            stop();
            fatal("cvat-authd socket " + socket_ + " did not accept within 10 s");
        }
        ::usleep(20 * 1000);
    }
}

Daemon::~Daemon() {
    stop();
}

void Daemon::reload(const std::string& config_yaml) {
    if (pid_ <= 0) fatal("reload of a cvat-authd that is not running");
    std::size_t seen = read_file(log_).size();
    write_file(config_, with_socket(config_yaml, socket_), 0600);
    ::kill(pid_, SIGHUP);
    // The outcome lines, not "SIGHUP: reloading ..." that the daemon logs first.
    double until = now_s() + 10;
    while (now_s() < until) {
        std::string log = read_file(log_);
        if (log.size() > seen) {
            std::string fresh = log.substr(seen);
            if (fresh.find("configuration reloaded") != std::string::npos ||
                fresh.find("reload refused") != std::string::npos)
                return;
        }
        ::usleep(20 * 1000);
    }
    fatal("cvat-authd logged no reload outcome within 10 s, log in " + log_);
}

void Daemon::stop() {
    if (pid_ <= 0) return;
    pid_t pid = pid_;
    pid_ = -1;
    ::kill(pid, SIGTERM);
    double until = now_s() + 5;
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) break;
        if (now_s() > until) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            break;
        }
        ::usleep(10 * 1000);
    }
    untrack(pid);
}

}  // namespace cvat::test

namespace cvat::test {

std::string cvat_ad_example(const std::string& u, const std::string& user_base) {
    const std::string base = user_base.empty() ? u : user_base;
    return "  user_search: {base: \"" + base + "\", scope: subtree, filter: \"(sAMAccountName=%(user)s)\"}\n"
           "  group_search: {base: \"" + u + "\", scope: subtree, filter: \"(objectClass=group)\"}\n"
           "  group_type: nested_active_directory\n"
           "  user_attr_map: {user_name: sAMAccountName, first_name: givenName, last_name: sn, email: mail}\n"
           "  role_groups:\n"
           "    admin: [\"CN=CVAT Admins," + u + "\"]\n"
           "    user: [\"CN=CVAT Users," + u + "\"]\n"
           "    worker: [\"CN=CVAT Workers," + u + "\"]\n";
}

}  // namespace cvat::test
