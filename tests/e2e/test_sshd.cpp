// SPDX-License-Identifier: GPL-3.0-or-later
// End to end through a real OpenSSH server and client: a private sshd (own host key, config,
// port on 127.0.0.1, stopped by PID) whose PAM service is conf/pam.d/sshd-cvat (through
// pam_wrapper, so the machine's /etc/pam.d/sshd is never read) and whose users come from
// libnss_cvat.so.2 → cvat-authd → slapd / the glewlwyd IdP, through glibc's own NSS: sshd runs
// in a private mount namespace (unshare -m) where a copy of /etc/nsswitch.conf with "cvat" added
// to passwd and group is bind-mounted over the original, and copies of /etc/passwd, group and
// shadow that add one local user (the machine's files are never changed, and no other process
// sees the copies). The config includes conf/sshd/sshd_config.d-cvat.conf as it is.
//
// Why not nss_wrapper: sshd gives the session its groups with initgroups(), and nss_wrapper's
// (1.1.12) is answered by its files backend alone: nwrap_files_initgroups() setgroups() the
// groups of its own group file and returns success, so the module is never asked and the CVAT
// role group never reached the session (observed, enumeration on or off). glibc asks the
// module's initgroups_dyn, as on a real host.
//
// The stock `ssh` runs under a pseudo-terminal, as a user types: directory users with no local
// account log in with a password (password and keyboard-interactive methods) and `id` shows
// their CVAT role group by name; the local user logs in through pam_unix and its password never
// reaches cvat-authd; an IdP user logs in keyboard-interactive with the device flow (an empty
// password, then the prompt with URL, code and QR code; the test approves the code it read there
// at the IdP and presses Enter), and its first session already has the uid of later ones and the
// role group; a wrong password and an unknown user are refused. A second sshd whose PAM file is
// conf/pam.d/common-auth-snippet in front of Debian's stock common-account (pam_unix's account
// check) lets a directory user and the local user in. Fixture users: tests/fixtures/README.md.
#include "cmocka.hpp"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"
#include "idp.hpp"

using namespace cvat::test;

namespace {

const char* kUsers = "CN=Users,DC=ad,DC=example,DC=test";
constexpr unsigned kIdMin = 300000, kIdMax = 399999;
// The whole of one ssh run (connect, PAM, device flow, the command) may take at most this.
constexpr int kSshTimeout = 60;
// A local account of sshd's namespace only (its /etc/passwd, group and shadow are copies).
const char* kLocalUser = "cvate2elocal";
const char* kLocalPassword = "Local-e2e-Passw0rd";

double now_mono() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string source_root() { return env_or("CVAT_SOURCE_ROOT", "."); }

void make_dir(const std::string& dir, mode_t mode) {
    if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
        std::printf("Bail out! mkdir %s: %s\n", dir.c_str(), std::strerror(errno));
        std::exit(1);
    }
    ::chmod(dir.c_str(), mode);
}

[[noreturn]] void bail(const std::string& why) {
    std::fflush(stdout);
    std::printf("Bail out! %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(1);
}

// `text` with every "from" replaced by "to".
std::string replaced(std::string text, const std::string& from, const std::string& to) {
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
    return text;
}

bool tcp_banner(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        pollfd p{fd, POLLIN, 0};
        char buf[64] = {};
        if (::poll(&p, 1, 2000) == 1 && ::read(fd, buf, sizeof buf - 1) > 0) ok = std::strncmp(buf, "SSH-2.0-", 8) == 0;
    }
    ::close(fd);
    return ok;
}

// A port from tests/fixtures/ports.sh (below the ephemeral range, free a moment ago).
int pick_port() {
    std::string cmd = ". '" + env_or("CVAT_FIXTURES", "tests/fixtures") + "/ports.sh' && pick_port";
    FILE* p = ::popen(("/bin/bash -c \"" + cmd + "\"").c_str(), "r");
    if (p == nullptr) bail("popen ports.sh");
    char buf[32] = {};
    if (std::fgets(buf, sizeof buf, p) == nullptr) buf[0] = 0;
    ::pclose(p);
    int port = std::atoi(buf);
    if (port <= 0) bail("ports.sh found no free port");
    return port;
}

// ---- the sshd ----------------------------------------------------------------------------------

// /usr/sbin/sshd -D -e -f DIR/sshd_config under pam_wrapper (PAM service "sshd" = DIR/pam/sshd,
// conf/pam.d/sshd-cvat with pam_cvat.so by path) in a mount namespace of its own, where
// DIR/etc/{nsswitch.conf,passwd,group,shadow} are bind-mounted over /etc's: the machine's files
// plus nss_cvat in nsswitch.conf and one local user (root and the privilege-separation user sshd
// come from the copies of the machine's files), and the daemon's directory over /run/cvat-auth.
// Stopped by PID.
class Sshd {
public:
    // `pam_file`: the PAM service's lines, pam_cvat.so named as in conf/ (default:
    // conf/pam.d/sshd-cvat).
    Sshd(const std::string& dir, const std::string& socket, const std::string& pam_file = "") : dir_(dir) {
        make_dir(dir_, 0755);
        // Host key: made here, never the machine's.
        std::string key = dir_ + "/ssh_host_ed25519_key";
        if (run_program({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cvat-e2e", "-f", key}, {}, 30) != 0)
            bail("ssh-keygen failed");
        // The privilege-separation directory sshd chroots its unprivileged child into.
        make_dir_if_missing("/run/sshd", 0755);

        // glibc's NSS with nss_cvat: the machine's nsswitch.conf with "cvat" after the passwd
        // and group sources, for sshd's namespace only. glibc finds libnss_cvat.so.2 in the build
        // tree through LD_LIBRARY_PATH; the module finds the daemon through CVAT_AUTH_SOCKET.
        std::string so = env_or("NSS_CVAT_SO", "");
        if (so.empty() || so.find('/') == std::string::npos) bail("NSS_CVAT_SO is not set");
        etc_ = dir_ + "/etc";
        make_dir(etc_, 0755);
        write_file(etc_ + "/nsswitch.conf", with_cvat(read_file("/etc/nsswitch.conf")), 0644);
        write_local_user();
        nss_env_ = {"LD_LIBRARY_PATH=" + so.substr(0, so.rfind('/')), "CVAT_AUTH_SOCKET=" + socket};
        // sshd runs keyboard-interactive PAM in a child whose environment it empties first
        // (auth-pam.c, sshpam_thread), so nss_cvat there (pam_unix's account check) has no
        // CVAT_AUTH_SOCKET and looks where it does on a real host: /run/cvat-auth/socket and
        // nss.mc beside it. In the namespace the daemon's directory is mounted there. The mount
        // point is made if missing (as /run/sshd above) and removed again by stop().
        daemon_dir_ = socket.substr(0, socket.rfind('/'));
        struct stat st {};
        if (::stat(kRunDir, &st) != 0) {
            make_dir(kRunDir, 0755);
            made_run_dir_ = true;
        }

        // The PAM service: the snippet's lines, pam_cvat.so by its build path and with this
        // daemon's socket= (a real host uses the default /run/cvat-auth/socket). Not
        // CVAT_AUTH_SOCKET: sshd runs keyboard-interactive PAM in a child whose environment it
        // empties first (auth-pam.c, sshpam_thread), where only the module arguments count.
        std::string pam = dir_ + "/pam";
        make_dir(pam, 0755);
        std::string lines = pam_file.empty() ? read_file(source_root() + "/conf/pam.d/sshd-cvat") : pam_file;
        if (lines.find("pam_cvat.so") == std::string::npos) bail("the PAM file for sshd names no pam_cvat.so");
        write_file(pam + "/sshd",
                   replaced(lines, "pam_cvat.so", env_or("PAM_CVAT_SO", "pam_cvat.so") + " socket=" + socket), 0644);

        for (int attempt = 1;; ++attempt) {
            port_ = pick_port();
            write_config(key);
            if (start()) break;
            if (attempt == 3 || !contains(log(), "Address already in use"))
                bail("sshd did not start; log " + log_path() + ":\n" + log());
        }
    }
    ~Sshd() { stop(); }
    Sshd(const Sshd&) = delete;
    Sshd& operator=(const Sshd&) = delete;

    int port() const { return port_; }
    std::string log_path() const { return dir_ + "/sshd.log"; }
    std::string log() const { return read_file(log_path()); }
    unsigned local_uid() const { return local_uid_; }

    void stop() {
        if (pid_ <= 0) return;
        pid_t pid = pid_;
        pid_ = -1;
        ::kill(pid, SIGTERM);
        double until = now_mono() + 5;
        int status = 0;
        while (::waitpid(pid, &status, WNOHANG) == 0) {
            if (now_mono() > until) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, &status, 0);
                break;
            }
            ::usleep(10 * 1000);
        }
        untrack_pid(pid);
        if (made_run_dir_) ::rmdir(kRunDir);  // only if still empty: a daemon's own stays
        made_run_dir_ = false;
    }

private:
    static constexpr const char* kRunDir = "/run/cvat-auth";

    // passwd, group and shadow: the machine's, plus kLocalUser (uid = gid, a free one) whose
    // password is kLocalPassword (SHA-512 crypt by `openssl passwd -6`).
    void write_local_user() {
        if (::getpwnam(kLocalUser) != nullptr) bail(std::string(kLocalUser) + " already exists on this machine");
        unsigned id = 4242;
        while (::getpwuid(id) != nullptr || ::getgrgid(id) != nullptr) ++id;
        std::string hash;
        FILE* p = ::popen((std::string("openssl passwd -6 '") + kLocalPassword + "'").c_str(), "r");
        if (p != nullptr) {
            char buf[256] = {};
            if (std::fgets(buf, sizeof buf, p) != nullptr) hash = buf;
            ::pclose(p);
        }
        while (!hash.empty() && (hash.back() == '\n' || hash.back() == '\r')) hash.pop_back();
        if (hash.rfind("$6$", 0) != 0) bail("openssl passwd -6 gave no SHA-512 crypt hash");
        const std::string u = kLocalUser, n = std::to_string(id);
        write_file(etc_ + "/passwd", read_file("/etc/passwd") + u + ":x:" + n + ":" + n + ":e2e local:/:/bin/sh\n", 0644);
        write_file(etc_ + "/group", read_file("/etc/group") + u + ":x:" + n + ":\n", 0644);
        write_file(etc_ + "/shadow", read_file("/etc/shadow") + u + ":" + hash + ":19000:0:99999:7:::\n", 0600);
        local_uid_ = id;
    }

    // nsswitch.conf text with " cvat" appended to its passwd: and group: lines (added if absent).
    static std::string with_cvat(const std::string& text) {
        std::string out;
        bool passwd = false, group = false;
        std::size_t at = 0;
        while (at < text.size()) {
            std::size_t end = text.find('\n', at);
            if (end == std::string::npos) end = text.size();
            std::string line = text.substr(at, end - at);
            if (line.rfind("passwd:", 0) == 0 || line.rfind("group:", 0) == 0) {
                (line[0] == 'p' ? passwd : group) = true;
                std::size_t hash = line.find('#');
                if (hash != std::string::npos) line.erase(hash);
                if (!std::regex_search(line, std::regex("\\scvat(\\s|$)"))) line += " cvat";
            }
            out += line + "\n";
            at = end + 1;
        }
        if (!passwd) out += "passwd: files cvat\n";
        if (!group) out += "group: files cvat\n";
        return out;
    }

    static void make_dir_if_missing(const std::string& dir, mode_t mode) {
        struct stat st {};
        if (::stat(dir.c_str(), &st) == 0) return;
        make_dir(dir, mode);
    }

    std::string setenv_line() const {
        // The session's environment is built by sshd from scratch: SetEnv lets glibc in the
        // user's shell load nss_cvat too, so `id` names the CVAT user and the role group.
        std::string line = "SetEnv";
        for (const auto& e : nss_env_) line += " " + e;
        return line + "\n";
    }

    void write_config(const std::string& key) {
        std::string cfg = "# tests/e2e/test_sshd: a private sshd on 127.0.0.1\n"
                          "ListenAddress 127.0.0.1\n"
                          "Port " + std::to_string(port_) + "\n"
                          "HostKey " + key + "\n"
                          "PidFile " + dir_ + "/sshd.pid\n"
                          "LogLevel VERBOSE\n"
                          "UseDNS no\n"
                          "PermitRootLogin no\n"
                          "PubkeyAuthentication no\n"
                          "AuthorizedKeysFile none\n"
                          "PrintMotd no\n"
                          "PrintLastLog no\n"
                          "MaxAuthTries 3\n" +
                          setenv_line() +
                          "# The snippet as shipped: UsePAM, KbdInteractiveAuthentication, LoginGraceTime.\n"
                          "Include " + source_root() + "/conf/sshd/sshd_config.d-cvat.conf\n";
        write_file(dir_ + "/sshd_config", cfg, 0600);
        std::vector<std::string> check = {"/usr/sbin/sshd", "-t", "-f", dir_ + "/sshd_config"};
        if (run_program(check, {}, 30) != 0) bail("sshd -t rejects " + dir_ + "/sshd_config");
    }

    bool start() {
        std::string logp = log_path();
        std::string cfg = dir_ + "/sshd_config";
        std::string pamdir = dir_ + "/pam";
        std::string etc = etc_;
        std::string daemon_dir = daemon_dir_;
        std::vector<std::string> env = {"LD_PRELOAD=libpam_wrapper.so", "PAM_WRAPPER=1",
                                        "PAM_WRAPPER_SERVICE_DIR=" + pamdir};
        env.insert(env.end(), nss_env_.begin(), nss_env_.end());
        pid_ = ::fork();
        if (pid_ < 0) bail("fork");
        if (pid_ == 0) {
            int fd = ::open(logp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd >= 0) {
                ::dup2(fd, 2);
                ::dup2(fd, 1);
            }
            int null = ::open("/dev/null", O_RDONLY);
            if (null >= 0) ::dup2(null, 0);
            for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
            // unshare execs sh, sh execs sshd: the PID stays the one we stop.
            ::execl("/usr/bin/unshare", "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                    "for f in nsswitch.conf passwd group shadow; do mount --bind \"$0/$f\" \"/etc/$f\" || exit 1; done; "
                    "mount --bind \"$2\" /run/cvat-auth || exit 1; "
                    "exec /usr/sbin/sshd -D -e -f \"$1\"",
                    etc.c_str(), cfg.c_str(), daemon_dir.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        track_pid(pid_);
        double until = now_mono() + 15;
        while (now_mono() < until) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                untrack_pid(pid_);
                pid_ = -1;
                return false;
            }
            if (tcp_banner(port_)) return true;
            ::usleep(50 * 1000);
        }
        stop();
        return false;
    }

    std::string dir_;
    std::string etc_;
    std::string daemon_dir_;
    bool made_run_dir_ = false;
    unsigned local_uid_ = 0;
    std::vector<std::string> nss_env_;
    int port_ = 0;
    pid_t pid_ = -1;
};

// ---- the ssh client under a pseudo-terminal ----------------------------------------------------

struct SshRun {
    int status = -1;          // ssh's exit status; -1: killed at the deadline
    std::string transcript;   // everything ssh wrote to its terminal (prompts, the command's output)
    double seconds = 0;
};

// Given the transcript so far, what to type now (std::nullopt: nothing yet). Called after
// every read; keeps its own state.
using Typist = std::function<std::optional<std::string>(const std::string& transcript)>;

struct World;
World* g = nullptr;

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> ad;
    std::unique_ptr<Idp> idp;
    std::unique_ptr<Daemon> daemon;
    std::unique_ptr<Sshd> sshd;
    std::string client_home;
};

SshRun ssh(const std::string& user, const std::string& methods, const std::string& command, const Typist& typist,
           int port = 0) {
    SshRun run;
    if (port == 0) port = g->sshd->port();
    std::vector<std::string> args = {"/usr/bin/ssh", "-F", "/dev/null", "-p", std::to_string(port),
                                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                     "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                     "-o", "PreferredAuthentications=" + methods, "-o", "PubkeyAuthentication=no",
                                     "-o", "GSSAPIAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
                                     "-o", "ConnectTimeout=10", "-o", "BatchMode=no",
                                     "-l", user, "127.0.0.1", command};
    std::vector<std::string> env = {"HOME=" + g->client_home, "PATH=/usr/bin:/bin", "TERM=dumb", "LANG=C.UTF-8"};
    winsize ws{};
    ws.ws_row = 80;
    ws.ws_col = 200;
    int master = -1;
    double t0 = now_mono();
    pid_t pid = ::forkpty(&master, nullptr, nullptr, &ws);
    if (pid < 0) bail(std::string("forkpty: ") + std::strerror(errno));
    if (pid == 0) {
        std::vector<char*> argv, envp;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        for (auto& e : env) envp.push_back(e.data());
        envp.push_back(nullptr);
        ::execve(argv[0], argv.data(), envp.data());
        ::_exit(127);
    }
    track_pid(pid);
    ::fcntl(master, F_SETFL, ::fcntl(master, F_GETFL) | O_NONBLOCK);
    double deadline = t0 + kSshTimeout;
    bool exited = false;
    int status = 0;
    for (;;) {
        pollfd p{master, POLLIN, 0};
        int r = ::poll(&p, 1, 100);
        bool eof = false;
        if (r > 0) {
            char buf[4096];
            ssize_t n = ::read(master, buf, sizeof buf);
            if (n > 0) {
                run.transcript.append(buf, static_cast<std::size_t>(n));
                if (auto typed = typist(run.transcript)) {
                    std::size_t done = 0;
                    while (done < typed->size()) {
                        ssize_t w = ::write(master, typed->data() + done, typed->size() - done);
                        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                            ::usleep(1000);
                            continue;
                        }
                        if (w <= 0) break;
                        done += static_cast<std::size_t>(w);
                    }
                }
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                eof = true;  // EIO: the client closed its terminal
            }
        }
        if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) exited = true;
        if (exited && (eof || r == 0)) break;
        if (eof && !exited) {
            ::usleep(10 * 1000);
            continue;
        }
        if (now_mono() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            untrack_pid(pid);
            ::close(master);
            run.seconds = now_mono() - t0;
            run.status = -1;
            return run;
        }
    }
    untrack_pid(pid);
    ::close(master);
    run.seconds = now_mono() - t0;
    run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return run;
}

// A typist that answers each new prompt ending in "password: " (either case) with `password`
// (the password method, then keyboard-interactive's PAM prompt), at most three times.
Typist password_typist(const std::string& password) {
    auto seen = std::make_shared<std::size_t>(0);
    auto count = std::make_shared<int>(0);
    return [seen, count, password](const std::string& t) -> std::optional<std::string> {
        if (t.size() <= *seen || *count >= 3) return std::nullopt;
        std::string tail = t.size() > 12 ? t.substr(t.size() - 12) : t;
        for (char& c : tail) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (tail.size() >= 10 && tail.compare(tail.size() - 10, 10, "password: ") == 0) {
            *seen = t.size();
            ++*count;
            return password + "\n";
        }
        return std::nullopt;
    };
}

// The client's terminal text, for a failure message (control characters shown as \xNN).
std::string printable(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '\n' || (c >= 0x20 && c < 0x7f)) {
            out += static_cast<char>(c);
        } else if (c != '\r') {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    return out;
}

void print_transcript(const char* what, const SshRun& r) {
    print_message("# %s: ssh exit %d after %.2f s; terminal:\n", what, r.status, r.seconds);
    std::string t = printable(r.transcript);
    std::size_t at = 0;
    while (at < t.size()) {
        std::size_t end = t.find('\n', at);
        if (end == std::string::npos) end = t.size();
        print_message("#   %s\n", t.substr(at, end - at).c_str());
        at = end + 1;
    }
}

std::string sshd_log_since(std::size_t from) {
    std::string l = g->sshd->log();
    return from < l.size() ? l.substr(from) : "";
}

// The line `id` printed ("uid=... gid=... groups=..."), or "".
std::string id_line(const std::string& transcript) {
    std::smatch m;
    static const std::regex line("uid=[0-9]+[^\\r\\n]*");
    if (std::regex_search(transcript, m, line)) return m[0];
    return "";
}

// ---- tests ---------------------------------------------------------------------------------------

// `user` has an entry in the machine's /etc/passwd (not asked through NSS: the machine may list
// other sources, cvat among them).
bool in_machine_passwd(const std::string& user) {
    FILE* f = std::fopen("/etc/passwd", "re");
    if (f == nullptr) bail("cannot read /etc/passwd");
    bool found = false;
    while (passwd* p = ::fgetpwent(f))
        if (user == p->pw_name) found = true;
    std::fclose(f);
    return found;
}

// A directory user with no local account: known to the host only through nss_cvat.
void expect_password_login(const std::string& user, const std::string& password, const std::string& role_group,
                           unsigned role_gid) {
    // Not a local user: this process (plain NSS, no wrapper) does not know the name.
    if (in_machine_passwd(user)) fail_msg("%s is a local user of this machine: the test proves nothing", user.c_str());
    std::size_t mark = g->sshd->log().size();
    SshRun r = ssh(user, "password", "id", password_typist(password));
    print_transcript(("password login of " + user).c_str(), r);
    if (r.status != 0)
        fail_msg("ssh %s: exit %d; sshd log:\n%s\ndaemon log %s", user.c_str(), r.status, sshd_log_since(mark).c_str(),
                 g->daemon->log_path().c_str());
    std::string id = id_line(r.transcript);
    if (id.empty()) fail_msg("no output of id in:\n%s", printable(r.transcript).c_str());
    // uid=N(user) gid=N(user) groups=N(user),G(cvat-role): names resolved inside the session.
    std::smatch m;
    std::regex uid_re("^uid=([0-9]+)\\(" + user + "\\)");
    if (!std::regex_search(id, m, uid_re)) fail_msg("id shows no uid of %s: %s", user.c_str(), id.c_str());
    unsigned long uid = std::stoul(m[1]);
    if (uid < kIdMin || uid > kIdMax) fail_msg("%s has uid %lu, outside nss.id_min..id_max", user.c_str(), uid);
    std::string group = std::to_string(role_gid) + "(" + role_group + ")";
    if (!contains(id, group)) fail_msg("id shows no %s: %s", group.c_str(), id.c_str());
    std::string accepted = "Accepted password for " + user + " from 127.0.0.1";
    if (!contains(sshd_log_since(mark), accepted)) fail_msg("sshd did not log \"%s\"", accepted.c_str());
}

void password_login_admin(void**) { expect_password_login("alice", "alice-Passw0rd", "cvat-admin", kIdMin); }

// bob's password has a space and a non-ASCII letter, typed into the terminal.
void password_login_user(void**) { expect_password_login("bob", "b0b-p\xc3\xa4ssw0rd ok", "cvat-user", kIdMin + 1); }

// What a user gets by default: OpenSSH tries keyboard-interactive before password. pam_unix
// asks "Password:", fails for the CVAT user, and pam_cvat takes the same answer (no second prompt).
void keyboard_interactive_password(void**) {
    std::size_t mark = g->sshd->log().size();
    SshRun r = ssh("walter", "keyboard-interactive", "id", password_typist("walter-Passw0rd"));
    print_transcript("keyboard-interactive password login of walter", r);
    if (r.status != 0)
        fail_msg("ssh walter: exit %d; sshd log:\n%s", r.status, sshd_log_since(mark).c_str());
    std::size_t prompts = 0;
    for (std::size_t at = r.transcript.find("Password: "); at != std::string::npos;
         at = r.transcript.find("Password: ", at + 1))
        ++prompts;
    if (prompts != 1) fail_msg("%zu password prompts, want 1:\n%s", prompts, printable(r.transcript).c_str());
    std::string id = id_line(r.transcript);
    std::string group = std::to_string(kIdMin + 2) + "(cvat-worker)";
    if (!contains(id, "(walter)") || !contains(id, group)) fail_msg("id shows no walter in %s: %s", group.c_str(), id.c_str());
    if (!contains(sshd_log_since(mark), "Accepted keyboard-interactive/pam for walter from 127.0.0.1"))
        fail_msg("sshd did not log the keyboard-interactive login");
}

// A local account keeps its password login through the same PAM file, and its password never
// reaches cvat-authd (pam_unix succeeds first, pam_cvat's auth line is not run).
void local_user_password(void**) {
    std::size_t mark = g->sshd->log().size();
    std::size_t daemon_mark = read_file(g->daemon->log_path()).size();
    SshRun r = ssh(kLocalUser, "password", "id", password_typist(kLocalPassword));
    print_transcript("password login of the local user", r);
    if (r.status != 0) fail_msg("ssh %s: exit %d; sshd log:\n%s", kLocalUser, r.status, sshd_log_since(mark).c_str());
    std::string want = "uid=" + std::to_string(g->sshd->local_uid()) + "(" + kLocalUser + ")";
    std::string id = id_line(r.transcript);
    if (id.rfind(want, 0) != 0) fail_msg("id: %s, want %s...", id.c_str(), want.c_str());
    std::string dlog = read_file(g->daemon->log_path()).substr(daemon_mark);
    if (contains(dlog, std::string("auth user=") + kLocalUser))
        fail_msg("the local user's password went to cvat-authd:\n%s", dlog.c_str());
    // Its account phase asked pam_cvat, which does not know the user and leaves it to pam_unix.
    if (!contains(dlog, std::string("account user=") + kLocalUser))
        fail_msg("pam_cvat's account line was not run for the local user:\n%s", dlog.c_str());
}

void expect_refused(const std::string& what, const SshRun& r, std::size_t mark, const std::string& logged) {
    print_transcript(what.c_str(), r);
    if (r.status == 0) fail_msg("%s: logged in:\n%s", what.c_str(), printable(r.transcript).c_str());
    if (r.status != 255) fail_msg("%s: ssh exit %d, want 255 (refused)", what.c_str(), r.status);
    if (!contains(r.transcript, "Permission denied"))
        fail_msg("%s: the client did not say Permission denied:\n%s", what.c_str(), printable(r.transcript).c_str());
    if (contains(r.transcript, "uid=")) fail_msg("%s: the command ran", what.c_str());
    std::string log = sshd_log_since(mark);
    if (!contains(log, logged)) fail_msg("%s: sshd did not log \"%s\":\n%s", what.c_str(), logged.c_str(), log.c_str());
}

void wrong_password_refused(void**) {
    std::size_t mark = g->sshd->log().size();
    SshRun r = ssh("alice", "password", "id", password_typist("alice-Wrong-Passw0rd"));
    expect_refused("wrong password", r, mark, "Failed password for alice from 127.0.0.1");
}

void unknown_user_refused(void**) {
    std::size_t mark = g->sshd->log().size();
    SshRun r = ssh("nobody-such", "password,keyboard-interactive", "id", password_typist("whatever-Passw0rd"));
    expect_refused("unknown user", r, mark, "Invalid user nobody-such from 127.0.0.1");
}

// A user code in the terminal text: verification_uri_complete's code= if shown, else the first
// XXXX-XXXX group (glewlwyd's shape).
std::string user_code_in(const std::string& text) {
    std::smatch m;
    static const std::regex complete("[?&]code=([A-Za-z0-9]{4}-[A-Za-z0-9]{4})");
    static const std::regex bare("\\b([A-Z0-9]{4}-[A-Z0-9]{4})\\b");
    if (std::regex_search(text, m, complete)) return m[1];
    if (std::regex_search(text, m, bare)) return m[1];
    return "";
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One keyboard-interactive device login of ada (role admin at the IdP) that runs `id`: Enter at
// the password prompt, then the device prompt: the test reads the user code there, approves it
// at the IdP as ada would in a browser, and presses Enter. Checks everything up to the login;
// returns the line `id` printed.
std::string device_login_of_ada(const char* what) {
    const std::string user = "ada@example.test";
    std::size_t mark = g->sshd->log().size();
    struct State {
        bool password_done = false;
        std::string prompt;     // the device prompt as the terminal showed it
        std::string user_code;
        bool approved = false;
        int enters = 0;
        std::size_t seen = 0;
    };
    auto st = std::make_shared<State>();
    Typist typist = [st](const std::string& t) -> std::optional<std::string> {
        // 1. The password prompt (pam_unix's): Enter, an empty password, asks for the device flow.
        if (!st->password_done) {
            if (ends_with(t, "Password: ")) {
                st->password_done = true;
                st->seen = t.size();
                return std::string("\n");
            }
            return std::nullopt;
        }
        // 2. The device prompt ends "Press Enter when you have signed in: ".
        if (!ends_with(t, "signed in: ") || t.size() <= st->seen) return std::nullopt;
        std::string fresh = t.substr(st->seen);
        st->seen = t.size();
        if (st->prompt.empty()) {
            st->prompt = fresh;
            st->user_code = user_code_in(fresh);
            if (st->user_code.empty()) return std::string("\x03");  // nothing to approve: give up
            st->approved = g->idp->approve(st->user_code, "ada", idp_password("ada"));
        }
        if (++st->enters > 10) return std::string("\x03");
        return std::string("\n");
    };
    SshRun r = ssh(user, "keyboard-interactive", "id", typist);
    print_transcript(what, r);
    if (!st->password_done) fail_msg("no Password: prompt; sshd log:\n%s", sshd_log_since(mark).c_str());
    if (st->prompt.empty()) fail_msg("no device prompt; sshd log:\n%s", sshd_log_since(mark).c_str());
    if (st->user_code.empty()) fail_msg("no user code in the prompt:\n%s", printable(st->prompt).c_str());
    if (!contains(st->prompt, st->user_code)) fail_msg("the prompt lacks the user code");
    if (!contains(st->prompt, g->idp->issuer() + "/device"))
        fail_msg("the prompt lacks the verification URI:\n%s", printable(st->prompt).c_str());
    if (!contains(st->prompt, "##")) fail_msg("no ASCII QR code in the prompt:\n%s", printable(st->prompt).c_str());
    if (!st->approved) fail_msg("the IdP did not approve user code %s", st->user_code.c_str());
    if (r.status != 0)
        fail_msg("ssh %s: exit %d; sshd log:\n%s\ndaemon log %s", user.c_str(), r.status, sshd_log_since(mark).c_str(),
                 g->daemon->log_path().c_str());
    std::string accepted = "Accepted keyboard-interactive/pam for " + user + " from 127.0.0.1";
    if (!contains(sshd_log_since(mark), accepted)) fail_msg("sshd did not log \"%s\"", accepted.c_str());
    print_message("# %s: user code %s, Enter pressed %d time(s) after the prompt\n", what, st->user_code.c_str(),
                  st->enters);
    std::string id = id_line(r.transcript);
    if (id.empty()) fail_msg("no output of id in:\n%s", printable(r.transcript).c_str());
    return id;
}

// The uid `id` printed, or 0; `named`: shown as ada's (getpwuid in the session knew it).
unsigned long ada_uid_in(const std::string& id, bool& named) {
    std::smatch m;
    if (!std::regex_search(id, m, std::regex("^uid=([0-9]+)(\\(ada@example\\.test\\))?"))) return 0;
    named = m[2].matched;
    return std::stoul(m[1]);
}

// The uid ada's first session ran as.
unsigned long g_first_device_uid = 0;

// ada has never logged in: sshd knows her only through her provisional entry
// (nss.provisional_users), takes her uid from it before PAM, and the device flow is her first
// login. Under provisional_users her uid comes from the IdP id + her name, so the login keeps
// the provisional uid, and the session already has her role group (README, "Users of the host").
void device_login(void**) {
    std::string id = device_login_of_ada("first device login of ada@example.test");
    print_message("# first session: %s\n", id.c_str());
    bool named = false;
    g_first_device_uid = ada_uid_in(id, named);
    if (g_first_device_uid == 0) fail_msg("id shows no uid: %s", id.c_str());
    if (!named) fail_msg("the first session's uid %lu is nobody's (getpwuid): %s", g_first_device_uid, id.c_str());
    if (g_first_device_uid < kIdMin || g_first_device_uid > kIdMax)
        fail_msg("ada's first session has uid %lu, outside nss.id_min..id_max", g_first_device_uid);
    std::string group = std::to_string(kIdMin) + "(cvat-admin)";
    if (!contains(id, group)) fail_msg("the first session has no %s: %s", group.c_str(), id.c_str());
}

// Her second login: the same uid as the first session's, and the role group.
void device_login_again(void**) {
    std::string id = device_login_of_ada("second device login of ada@example.test");
    bool named = false;
    unsigned long uid = ada_uid_in(id, named);
    if (uid == 0 || !named) fail_msg("id shows no uid of ada@example.test: %s", id.c_str());
    if (uid != g_first_device_uid)
        fail_msg("the second session runs as uid %lu, the first ran as %lu", uid, g_first_device_uid);
    std::string group = std::to_string(kIdMin) + "(cvat-admin)";
    if (!contains(id, group)) fail_msg("id shows no %s: %s", group.c_str(), id.c_str());
}

// A PAM file as a Debian host gets it when the admin adds conf/pam.d/common-auth-snippet in
// front of the stock common-account (pam_unix's account check with success=1 over pam_deny)
// and common-session: a CVAT user must pass pam_unix's account check, which looks for a shadow
// entry when the passwd entry's password field is "x" (nss_cvat gives "*", as SSSD does).
std::string debian_common_stack() {
    std::string snippet = read_file(source_root() + "/conf/pam.d/common-auth-snippet");
    if (!contains(snippet, "account")) bail("conf/pam.d/common-auth-snippet has no account line");
    return snippet +
           "# Debian 12's /etc/pam.d/common-account, as installed\n"
           "account [success=1 new_authtok_reqd=done default=ignore] pam_unix.so\n"
           "account requisite pam_deny.so\n"
           "account required pam_permit.so\n"
           "# and common-session's pam_unix\n"
           "session required pam_unix.so\n";
}

// A directory user, known to the host only through nss_cvat, through a second sshd whose PAM
// service is debian_common_stack(); and the local user through the same stack.
void common_account_stack(void**) {
    double t0 = now_mono();
    Sshd common(g->tmp.path() + "/sshd-common", g->daemon->socket(), debian_common_stack());
    print_message("# second sshd (snippet + common-account) on port %d, started in %.2f s\n", common.port(),
                  now_mono() - t0);
    auto login = [&](const std::string& user, const std::string& password, const std::string& want) {
        std::size_t mark = common.log().size();
        SshRun r = ssh(user, "password", "id", password_typist(password), common.port());
        print_transcript(("common-account stack, password login of " + user).c_str(), r);
        std::string log = common.log().substr(mark);
        if (r.status != 0) fail_msg("ssh %s through the common-account stack: exit %d; sshd log:\n%s", user.c_str(), r.status, log.c_str());
        std::string id = id_line(r.transcript);
        if (!contains(id, want)) fail_msg("id shows no %s: %s", want.c_str(), id.c_str());
        if (!contains(log, "Accepted password for " + user + " from 127.0.0.1")) fail_msg("sshd did not accept %s", user.c_str());
    };
    login("alice", "alice-Passw0rd", std::to_string(kIdMin) + "(cvat-admin)");
    login(kLocalUser, kLocalPassword, "uid=" + std::to_string(common.local_uid()) + "(" + kLocalUser + ")");
}

// ---- setup -----------------------------------------------------------------------------------

std::string daemon_config(const std::string& dir) {
    make_dir(dir, 0711);
    write_file(dir + "/bind_password", "Bind-Secret-1\n", 0600);
    const std::string u = kUsers;
    make_dir(g->tmp.path() + "/home", 0755);
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n"
           "nss:\n"
           "  id_min: " + std::to_string(kIdMin) + "\n"
           "  id_max: " + std::to_string(kIdMax) + "\n"
           "  home: " + g->tmp.path() + "/home/%u\n"
           "  shell: /bin/sh\n"
           "  provisional_users: true\n"
           "ldap:\n"
           "  server_uri: [" + g->ad->uri() + "]\n"
           "  bind_dn: \"CN=cvat_bind," + u + "\"\n"
           "  bind_password_file: " + dir + "/bind_password\n"
           "  connect_timeout: 1\n"
           "  timeout: 5\n" +
           cvat_ad_example(u) +
           "sso:\n"
           "  enabled: true\n"
           "  selection_mode: email_address\n"
           "  identity_providers:\n"
           "    - id: corp-oidc\n"
           "      protocol: OIDC\n"
           "      name: Test IdP\n"
           "      server_url: " + g->idp->issuer() + "\n"
           "      client_id: " + g->idp->client_id() + "\n"
           "      client_secret: " + g->idp->client_secret() + "\n"
           "      token_auth_method: client_secret_basic\n"
           "      email_domain: example.test\n"
           "      ca_file: " + g->idp->ca_file() + "\n"
           "      role_claim: groups\n"
           "      role_values:\n"
           "        admin: [cvat-admins]\n"
           "        user: [cvat-users]\n"
           "        worker: [cvat-workers]\n";
}

int setup(void**) {
    double t0 = now_mono();
    require_program("sshd");
    require_program("ssh");
    require_program("ssh-keygen");
    require_program("unshare");
    // sshd itself, its privilege separation and the mount namespace need root.
    if (::geteuid() != 0) bail("test_sshd must run as root (sshd, unshare --mount)");
    g = new World;
    // The session's user (a CVAT uid) reaches the daemon's socket and mapped file in here.
    ::chmod(g->tmp.path().c_str(), 0711);
    g->client_home = g->tmp.path() + "/client";
    make_dir(g->client_home, 0700);
    g->ad = std::make_unique<Slapd>(g->tmp.path() + "/ad", "ad");
    g->idp = std::make_unique<Idp>(g->tmp.path() + "/idp");
    std::string ddir = g->tmp.path() + "/daemon";
    g->daemon = std::make_unique<Daemon>(ddir, daemon_config(ddir));
    ::chmod(ddir.c_str(), 0711);
    g->sshd = std::make_unique<Sshd>(g->tmp.path() + "/sshd", g->daemon->socket());
    std::printf("# slapd, IdP, cvat-authd and sshd (port %d) started in %.2f s\n", g->sshd->port(), now_mono() - t0);
    return 0;
}

int teardown(void**) {
    if (g != nullptr) {
        g->sshd.reset();  // by PID, before the daemon it asks
        if (std::getenv("CVAT_TEST_KEEP") != nullptr) std::fprintf(stderr, "sshd log in %s/sshd/sshd.log\n", g->tmp.path().c_str());
    }
    delete g;
    g = nullptr;
    return 0;
}

}  // namespace

int main() {
    const CMUnitTest tests[] = {
        cmocka_unit_test(password_login_admin),
        cmocka_unit_test(password_login_user),
        cmocka_unit_test(keyboard_interactive_password),
        cmocka_unit_test(local_user_password),
        cmocka_unit_test(wrong_password_refused),
        cmocka_unit_test(unknown_user_refused),
        cmocka_unit_test(device_login),
        cmocka_unit_test(device_login_again),
        cmocka_unit_test(common_account_stack),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
