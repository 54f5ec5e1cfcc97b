// SPDX-License-Identifier: GPL-3.0-or-later
// cvat-authd: loads auth_config.yml, binds the socket, drops to its own user, serves.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.hpp"
#include "log.hpp"
#include "server.hpp"
#include "service.hpp"

namespace {

using namespace cvat;
using namespace cvat::helper;

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: cvat-authd [--config PATH] [--foreground] [--check]\n"
                 "  --config PATH  configuration file (default: $AUTH_CONFIG_PATH, then %s)\n"
                 "  --foreground   stay in the foreground and log to stderr\n"
                 "  --check        validate the configuration and exit\n"
                 "  --version      print the version and exit\n",
                 CVAT_DEFAULT_CONFIG);
}

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only (the test suite's). libldap 2.5 (and upstream's master) drops the
// BerElement of an RFC 4511 Notice of Disconnection it has read (result.c, try_read1msg: the
// is_nod branch returns without ber_free): 117 bytes each time a directory server shuts down
// under a connection of ours. That one leak is suppressed by the libldap function that
// allocated it; a leak of ours (an LDAPMessage we did not free) is allocated elsewhere and
// is still reported. The suppression matches only on whole malloc stacks (libldap keeps no
// frame pointers), which cost too much to be the default: the tests whose directories shut
// down under the daemon run it with ASAN_OPTIONS=...:fast_unwind_on_malloc=0
// (tests/support/fixture.hpp, whole_malloc_stacks; test_faults notice_of_disconnection).
extern "C" const char* __lsan_default_suppressions() { return "leak:ldap_alloc_ber_with_options\n"; }
#endif

// The heap follows what the daemon holds, not its peaks. glibc raises its mmap and trim
// thresholds as large blocks come and go (an nss.mc image, a publication's copy of every
// user), up to 32 MiB; above them a thread arena keeps freed memory resident, and
// malloc_trim() does not release an arena's top. Fixed thresholds stop that: blocks over
// 256 KiB are mapped and unmapped, and a heap gives back what is free over 1 MiB.
void bound_heap() {
#if !defined(__SANITIZE_ADDRESS__)
    ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    ::mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
#endif
}

// Secrets live in this process: no core dumps, no ptrace by other users.
void protect_memory() {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    rlimit none{0, 0};
    setrlimit(RLIMIT_CORE, &none);
}

struct Account {
    uid_t uid;
    gid_t gid;
    std::string name;
};

// Looks up helper.user before the socket exists, so the lookup can never reach nss_cvat
// through our own socket.
Result<Account> find_account(const std::string& name) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr)
        return fail(ErrorCode::config, "helper.user: no such user '" + name + "'");
    return Account{pw.pw_uid, pw.pw_gid, name};
}

Result<void> drop_privileges(const Account& acct) {
    if (setgroups(0, nullptr) != 0 || setgid(acct.gid) != 0 || setuid(acct.uid) != 0)
        return fail(ErrorCode::io, "cannot switch to user " + acct.name + ": " + std::strerror(errno));
    if (acct.uid != 0 && setuid(0) == 0)
        return fail(ErrorCode::internal, "could regain root after dropping privileges");
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // setuid() resets it
    return {};
}

// The cache directory: created (0700) and handed to helper.user when missing, while still
// root. One that exists is the admin's (or the package's) and is left as it is.
Result<void> prepare_cache_dir(const std::string& dir, const std::optional<Account>& account) {
    if (::mkdir(dir.c_str(), 0700) != 0) {
        if (errno == EEXIST) return {};
        return fail(ErrorCode::io, "helper.cache_dir " + dir + ": cannot create: " + std::strerror(errno));
    }
    if (account && ::chown(dir.c_str(), account->uid, account->gid) != 0)
        return fail(ErrorCode::io, "helper.cache_dir " + dir + ": cannot hand to " + account->name + ": " +
                                       std::strerror(errno));
    return {};
}

std::string directory_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? std::string("/") : path.substr(0, slash);
}

// nss_cvat finds the mapped cache file next to the socket.
std::string mc_path_for(const std::string& socket_path) { return directory_of(socket_path) + "/nss.mc"; }

// The socket's directory (/run/cvat-auth): without systemd's RuntimeDirectory= nobody made
// it, and /run is a fresh tmpfs at every boot. A missing one is created (0755: every local
// client must reach the socket) and handed to helper.user, who publishes nss.mc in it. Only
// the last component is made, as RuntimeDirectory= does; one that exists is left as it is.
Result<void> prepare_socket_dir(const std::string& socket_path, const std::optional<Account>& account) {
    const std::string dir = directory_of(socket_path);
    if (::mkdir(dir.c_str(), 0755) != 0) {
        if (errno == EEXIST) return {};
        return fail(ErrorCode::io, "helper.socket: cannot create the directory " + dir + ": " + std::strerror(errno));
    }
    // mkdir's mode passed through our umask (077).
    if (::chmod(dir.c_str(), 0755) != 0)
        return fail(ErrorCode::io, "helper.socket: chmod " + dir + ": " + std::strerror(errno));
    if (account && ::chown(dir.c_str(), account->uid, account->gid) != 0)
        return fail(ErrorCode::io, "helper.socket: cannot hand " + dir + " to " + account->name + ": " +
                                       std::strerror(errno));
    return {};
}

void daemonize() {
    if (pid_t pid = fork(); pid < 0) {
        std::perror("fork");
        std::exit(1);
    } else if (pid > 0) {
        std::_Exit(0);
    }
    setsid();
    if (pid_t pid = fork(); pid < 0) {
        std::exit(1);
    } else if (pid > 0) {
        std::_Exit(0);
    }
    if (chdir("/") != 0) std::exit(1);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
    }
}

}  // namespace

int main(int argc, char** argv) {
    protect_memory();
    bound_heap();
    umask(077);
    // The daemon never asks itself who a user is: nss_cvat answers UNAVAIL in this process
    // (and in anything it starts), so a lookup here cannot loop through our own socket.
    setenv("CVAT_NSS_DISABLE", "1", 1);
    // A directory server or client that hangs up mid-write is an error to report, not a
    // reason to die (libldap writes without MSG_NOSIGNAL).
    signal(SIGPIPE, SIG_IGN);
    // The server reads SIGHUP, SIGTERM and SIGINT from a signalfd. Block them here, before the
    // socket accepts anyone and before any thread starts (every thread inherits the mask): a
    // SIGHUP in between (a reload right after start, logrotate) would otherwise take its
    // default action and kill the daemon, and one delivered to a thread that did not block it
    // would do so at any time.
    sigset_t handled;
    sigemptyset(&handled);
    sigaddset(&handled, SIGHUP);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    pthread_sigmask(SIG_BLOCK, &handled, nullptr);

    std::string config_path;
    bool foreground = false;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a.rfind("--config=", 0) == 0) {
            config_path = a.substr(9);
        } else if (a == "--foreground" || a == "-f") {
            foreground = true;
        } else if (a == "--check") {
            check_only = true;
        } else if (a == "--version") {
            std::printf("cvat-authd %s\n", CVAT_AUTH_VERSION);
            return 0;
        } else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "cvat-authd: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (config_path.empty()) {
        const char* env = std::getenv("AUTH_CONFIG_PATH");  // CVAT's own variable
        config_path = (env != nullptr && *env != '\0') ? env : CVAT_DEFAULT_CONFIG;
    }

    auto config = load_config(config_path);
    if (!config) {
        std::fprintf(stderr, "cvat-authd: configuration refused:\n%s\n", config.error().detail.c_str());
        return 1;
    }
    for (const auto& w : config->warnings) std::fprintf(stderr, "cvat-authd: warning: %s\n", w.c_str());
    if (check_only) {
        std::printf("%s: OK\n", config_path.c_str());
        return 0;
    }

    log::init("cvat-authd", foreground, config->helper.log_level);

    std::optional<Account> account;
    if (!config->helper.user.empty() && geteuid() == 0) {
        auto acct = find_account(config->helper.user);
        if (!acct) {
            std::fprintf(stderr, "cvat-authd: %s\n", acct.error().detail.c_str());
            return 1;
        }
        account = *acct;
    } else if (geteuid() == 0) {
        std::fprintf(stderr, "cvat-authd: warning: running as root; set helper.user to drop privileges\n");
    } else if (!config->helper.user.empty()) {
        // Started as an unprivileged user already (systemd's User=): nothing to drop, but a
        // helper.user that names someone else is worth a word.
        if (auto acct = find_account(config->helper.user); !acct || acct->uid != geteuid())
            std::fprintf(stderr, "cvat-authd: warning: running as uid %u, not as helper.user %s\n",
                         static_cast<unsigned>(geteuid()), config->helper.user.c_str());
    }

    std::string socket_path = config->helper.socket;
    if (auto dir = prepare_socket_dir(socket_path, account); !dir) {
        std::fprintf(stderr, "cvat-authd: %s\n", dir.error().detail.c_str());
        return 1;
    }
    auto listener = listen_unix(socket_path);
    if (!listener) {
        std::fprintf(stderr, "cvat-authd: %s\n", listener.error().detail.c_str());
        return 1;
    }
    if (auto dir = prepare_cache_dir(config->helper.cache_dir, account); !dir) {
        std::fprintf(stderr, "cvat-authd: %s\n", dir.error().detail.c_str());
        return 1;
    }
    if (account) {
        // The socket stays root's (mode 0666); the daemon must still be able to remove it.
        if (auto dropped = drop_privileges(*account); !dropped) {
            std::fprintf(stderr, "cvat-authd: %s\n", dropped.error().detail.c_str());
            return 1;
        }
    }

    const std::string mc_path = mc_path_for(socket_path);
    auto accounts = Accounts::open(config->helper.cache_dir, mc_path);
    if (!accounts) {
        std::fprintf(stderr, "cvat-authd: %s\n", accounts.error().detail.c_str());
        return 1;
    }
    std::shared_ptr<Accounts> shared_accounts(std::move(*accounts));

    auto runtime = build_runtime(std::move(*config));
    if (!runtime) {
        std::fprintf(stderr, "cvat-authd: %s\n", runtime.error().detail.c_str());
        return 1;
    }

    if (!foreground) daemonize();
    log::info("cvat-authd ", CVAT_AUTH_VERSION, " listening on ", socket_path, " (config ", config_path, ")");

    Server server(std::move(*listener), std::move(*runtime), Service(getuid(), shared_accounts),
                  [config_path]() -> Result<std::shared_ptr<const Runtime>> {
                      auto fresh = load_config(config_path);
                      if (!fresh) return tl::unexpected(fresh.error());
                      for (const auto& w : fresh->warnings) log::warning(w);
                      return build_runtime(std::move(*fresh));
                  });
    int rc = server.run();
    ::unlink(socket_path.c_str());
    shared_accounts.reset();  // stops the publisher and refresher; the mapped file stays for warm lookups
    log::info("stopped");
    return rc;
}
