// SPDX-License-Identifier: GPL-3.0-or-later
// Real processes for tests: slapd (tests/fixtures/slapd.sh) and cvat-authd, each in a temp
// directory, started by the test and stopped by PID. Paths come from the environment that
// tests/meson.build sets (CVAT_AUTHD, CVAT_FIXTURES, PAM_CVAT_SO, ...).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

namespace cvat::test {

// $name, or `fallback` when unset.
std::string env_or(const char* name, const char* fallback);

// Exits the test program with 77 (skip) and a reason when `program` is not on PATH.
void require_program(const char* program);

// A fresh directory under $TMPDIR, removed (recursively) when destroyed.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    // A new directory in here (mode 0700), named `name` and a number no other has.
    std::string fresh(const std::string& name);

private:
    std::string path_;
    int made_ = 0;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_tcp_port();

// A listening TCP socket (SOCK_CLOEXEC) on 127.0.0.1 at a port the kernel picks, written to
// `port`; -1 (errno set) if it cannot listen.
int listen_loopback(int& port, int backlog = 16);

// A TCP server on 127.0.0.1 in a thread of the test: every connection it accepts (with a
// receive timeout of `recv_timeout_s`) is passed to `handle`, which may keep it as long as it
// reads, and is closed after; on a thread of its own per connection when `per_connection`. The
// destructor stops accepting and joins every thread. A class whose handler uses its other members
// declares its LoopbackServer last, so that it stops first. Fails the test if it cannot listen.
class LoopbackServer {
public:
    LoopbackServer(const char* what, std::function<void(int fd)> handle, bool per_connection, int recv_timeout_s);
    ~LoopbackServer();
    LoopbackServer(const LoopbackServer&) = delete;
    LoopbackServer& operator=(const LoopbackServer&) = delete;
    int port() const { return port_; }

private:
    void run();

    std::function<void(int)> handle_;
    bool per_connection_;
    int recv_timeout_s_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// A TCP listener on 127.0.0.1 whose handshakes the kernel completes and that never reads or
// answers: the server that hangs a client with no timeout. Aborts the test if it cannot listen.
class SilentServer {
public:
    SilentServer();
    ~SilentServer();
    SilentServer(const SilentServer&) = delete;
    SilentServer& operator=(const SilentServer&) = delete;
    int port() const { return port_; }

private:
    int fd_ = -1;
    int port_ = 0;
};

// The search and role settings of CVAT's Active Directory example (its LDAP guide), as lines of
// an ldap: section: user_search and group_search under `users_dn` (sAMAccountName),
// nested_active_directory, the attribute map and the three CVAT role groups under `users_dn`.
std::string cvat_ad_example(const std::string& users_dn, const std::string& user_base = "");

// Writes `text` to `path` with `mode`.
void write_file(const std::string& path, const std::string& text, mode_t mode = 0600);
std::string read_file(const std::string& path);

// True when `needle` occurs in `hay`.
bool contains(const std::string& hay, const std::string& needle);

// Runs argv (extra_env entries "KEY=VALUE" added) with its stdout sent to stderr (stdout is the
// TAP stream). The exit status, or -1 if it did not finish within `timeout_s` (then killed).
int run_program(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                int timeout_s);

// Processes that are not our children (a fixture script detached them): killed by the atexit
// and SIGTERM/SIGINT handlers if the test ends before it stops them.
void track_pid(pid_t pid);
void untrack_pid(pid_t pid);

// slapd from tests/fixtures/slapd.sh:
//   slapd.sh start DIR TREE [tls]   TREE: ad | ipa; writes DIR/env (shell KEY=VALUE lines):
//     LDAP_URI, LDAP_PORT, LDAPS_URI, LDAPS_PORT (tls only), LDAP_BASE, CA_FILE (tls only),
//     LDAP_ADMIN_DN, LDAP_ADMIN_PW, SLAPD_PID
//   slapd.sh stop DIR
class Slapd {
public:
    // Starts slapd in `dir` (created if missing); aborts the test on failure.
    Slapd(const std::string& dir, const std::string& tree, bool tls = false);
    ~Slapd();
    Slapd(const Slapd&) = delete;
    Slapd& operator=(const Slapd&) = delete;
    std::string get(const std::string& key) const;  // a value from DIR/env
    std::string uri() const { return get("LDAP_URI"); }
    std::string ldaps_uri() const { return get("LDAPS_URI"); }
    std::string base() const { return get("LDAP_BASE"); }
    std::string ca_file() const { return get("CA_FILE"); }
    void stop();     // SIGTERM by PID and wait
    void restart();  // start again on the same ports and data

private:
    std::string dir_;
    std::string tree_;
    bool tls_;
    bool running_ = false;
};

// A Daemon wrapper for tests whose directory servers shut down under the daemon: in the
// sanitizer build (ASAN_OPTIONS set) it runs the daemon with whole malloc stacks, so that the
// daemon's suppression of libldap's Notice of Disconnection leak (helper/main.cpp) can match
// it. Elsewhere empty. Not the default: whole stacks make allocation-heavy work (SAML) 2-3
// times slower.
std::vector<std::string> whole_malloc_stacks();

// cvat-authd --foreground --config DIR/auth_config.yml, with `config_yaml` written there
// (mode 0600). The YAML may contain @SOCKET@, replaced by DIR/socket. Waits until the socket
// accepts connections; aborts the test if it does not within 10 s.
// True when the daemon answers a status request on `fd` (a test's own connection to it): the
// connection is served, not closed or refused.
bool served(int fd);

class Daemon {
public:
    Daemon(const std::string& dir, const std::string& config_yaml);
    // The same, run as `wrapper... cvat-authd --foreground --config ...`: the wrapper must end
    // by exec'ing its arguments (e.g. unshare -m sh -c '... && exec "$@"' sh), so pid() is
    // the daemon's.
    Daemon(const std::string& dir, const std::string& config_yaml, const std::vector<std::string>& wrapper);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    const std::string& socket() const { return socket_; }
    const std::string& config_path() const { return config_; }
    const std::string& log_path() const { return log_; }  // the daemon's stderr
    pid_t pid() const { return pid_; }
    // Rewrites the config and sends SIGHUP; returns after the daemon logged the reload outcome.
    void reload(const std::string& config_yaml);
    void stop();

private:
    std::string dir_;
    std::string config_;
    std::string socket_;
    std::string log_;
    pid_t pid_ = -1;
};

}  // namespace cvat::test
