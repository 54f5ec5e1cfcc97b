// SPDX-License-Identifier: GPL-3.0-or-later
// Secret hygiene of cvat-authd (issue 6 item 5) through the real path: libpam → pam_cvat.so →
// cvat-authd → slapd and the glewlwyd IdP. At log_level debug, with the verdict cache and
// offline logins on, a user whose LDAP password is a marker logs in (and again, from the
// verdict cache), a wrong marker password is refused, an IdP user signs in with the password
// grant and another with an ID token. Then none of those secrets — as text, UTF-16LE or
// base64, the token also as its raw signature bytes — may be in the daemon's log, its cache
// files (SQLite database, WAL, nss.mc) or a core of the daemon taken with gcore right after.
// The bind password, which the daemon must hold, is looked for the same way as a control:
// the scan that finds nothing is shown able to find a secret. The daemon itself must refuse
// to dump core: RLIMIT_CORE 0 and not dumpable (a root process without CAP_SYS_PTRACE may
// not open its /proc/PID/mem; gcore works as root only through CAP_SYS_PTRACE).
#include "cmocka.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <csignal>

#include <fcntl.h>
#include <linux/capability.h>
#include <security/pam_appl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ad_daemon.hpp"
#include "fixture.hpp"
#include "idp.hpp"
#include "pam_driver.hpp"
#include "pam_expect.hpp"

using namespace cvat;
using namespace cvat::test;

namespace {

// Markers: long enough never to occur by chance.
const std::string kMarkerPassword = "Mk7-CvatSecretMarker-q9Zr4-Pw";
const std::string kMarkerWrong = "Mk7-CvatWrongMarker-x3Lp8-Pw";
const std::string kBindPassword = "Bind-Secret-1";

struct World {
    TempDir tmp;
    std::unique_ptr<Slapd> ad;
    std::unique_ptr<Idp> idp;
};
World* g = nullptr;

int setup(void**) {
    g = new World;
    g->ad = std::make_unique<Slapd>(g->tmp.path() + "/ad", "ad");
    g->idp = std::make_unique<Idp>(g->tmp.path() + "/idp");
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

std::string base64(const std::string& in) {
    static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
        for (int s = 18; s >= 0; s -= 6) out += k[(v >> s) & 63];
    }
    return out;  // whole groups only: callers cut to the stable middle
}

std::string base64url_decode(const std::string& in) {
    std::string out;
    unsigned v = 0;
    int bits = 0;
    for (char c : in) {
        int d = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
              : c >= '0' && c <= '9' ? c - '0' + 52 : c == '-' ? 62 : c == '_' ? 63 : -1;
        if (d < 0) continue;
        v = v << 6 | static_cast<unsigned>(d);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((v >> bits) & 0xff);
        }
    }
    return out;
}

// The forms a secret may take in memory or a file: as is, UTF-16LE, and base64 at each of the
// three alignments (the middle part that does not depend on the bytes around it).
std::vector<std::pair<std::string, std::string>> forms(const std::string& secret) {
    std::vector<std::pair<std::string, std::string>> f;
    f.emplace_back("text", secret);
    std::string utf16;
    for (char c : secret) {
        utf16 += c;
        utf16 += '\0';
    }
    f.emplace_back("UTF-16LE", utf16);
    for (int shift = 0; shift < 3; ++shift) {
        std::string b = base64(std::string(static_cast<std::size_t>(shift), 'x') + secret);
        std::size_t skip = shift == 0 ? 0 : 4;
        if (b.size() > skip + 8) f.emplace_back("base64/" + std::to_string(shift), b.substr(skip, b.size() - skip - 4));
    }
    return f;
}

// Up to 3 places where `needle` occurs in `hay`: offset and the printable bytes around it,
// the needle itself masked (to tell from the failure which buffer kept a copy).
void show_context(std::string_view hay, const std::string& needle) {
    std::size_t at = 0;
    for (int n = 0; n < 3 && (at = hay.find(needle, at)) != std::string::npos; ++n, at += needle.size()) {
        std::size_t from = at > 96 ? at - 96 : 0;
        std::string ctx;
        for (std::size_t i = from; i < std::min(hay.size(), at + needle.size() + 96); ++i) {
            if (i == at) {
                ctx += "<SECRET>";
                i += needle.size() - 1;
                continue;
            }
            unsigned char c = static_cast<unsigned char>(hay[i]);
            ctx += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.';
        }
        std::fprintf(stderr, "  at %zu: %s\n", at, ctx.c_str());
    }
}

// Which of `secret`'s forms occur in `hay` ("" if none).
std::string found_forms(std::string_view hay, const std::string& secret) {
    std::string found;
    for (const auto& [name, needle] : forms(secret))
        if (hay.find(needle) != std::string::npos) {
            found += (found.empty() ? "" : ",") + name;
            show_context(hay, needle);
        }
    return found;
}

int drop_ptrace_and_open(const std::string& path) {
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    if (::syscall(SYS_capget, &h, d) != 0) return -2;
    d[0].effective &= ~(1u << CAP_SYS_PTRACE);
    if (::syscall(SYS_capset, &h, d) != 0) return -2;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ::close(fd);
        return 0;
    }
    return errno;
}

// In a child that drops CAP_SYS_PTRACE (keeping uid 0): 0 if `path` opens, else the errno.
int open_without_ptrace_cap(const std::string& path) {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(drop_ptrace_and_open(path) & 0xff);
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

void secrets_stay_secret(void**) {
    const std::string dir = g->tmp.path() + "/daemon";
    ::mkdir(dir.c_str(), 0700);
    // walter's directory password becomes the marker.
    const std::string walter = "CN=Walter Worker,CN=Users," + g->ad->base();
    write_file(dir + "/walter.ldif", "dn: " + walter + "\nchangetype: modify\nreplace: userPassword\nuserPassword: " +
                                         kMarkerPassword + "\n");
    assert_int_equal(run_program({on_path("ldapmodify"), "-x", "-H", g->ad->uri(), "-D", g->ad->get("LDAP_ADMIN_DN"), "-w",
                                  g->ad->get("LDAP_ADMIN_PW"), "-f", dir + "/walter.ldif"},
                                 {}, 30),
                     0);
    std::string yaml = ad_daemon_config(dir, *g->ad, "  offline: {enabled: true}\n");
    yaml.replace(yaml.find("verdict_ttl: 0"), 14, "verdict_ttl: 60");  // the verdict cache too
    yaml += "sso:\n"
            "  enabled: true\n"
            "  selection_mode: email_address\n"
            "  identity_providers:\n"
            "    - id: test-oidc\n"
            "      protocol: OIDC\n"
            "      name: Test IdP\n"
            "      server_url: " + g->idp->issuer() + "\n"
            "      client_id: " + g->idp->client_id() + "\n"
            "      client_secret: " + g->idp->client_secret() + "\n"
            "      token_auth_method: client_secret_post\n"
            "      email_domain: example.test\n"
            "      ca_file: " + g->idp->ca_file() + "\n"
            "      role_claim: groups\n"
            "      role_values: {admin: [cvat-admins], user: [cvat-users], worker: [cvat-workers]}\n";
    // meson sets MALLOC_PERTURB_, which makes glibc overwrite freed memory: it would hide
    // exactly the leaks looked for here (freed, unwiped copies). The daemon runs without it.
    ::unsetenv("MALLOC_PERTURB_");
    // Without CAP_SYS_PTRACE (capsh drops it from the bounding set, so the daemon's permitted
    // set lacks it): then only its dumpable flag decides whether a root process without
    // CAP_SYS_PTRACE may open its memory (the capability check that comes first passes).
    const std::vector<std::string> no_ptrace = {on_path("capsh"), "--drop=cap_sys_ptrace", "--", "-c",
                                                "exec \"$@\"", "sh"};
    Daemon daemon(dir, yaml, no_ptrace);
    assert_true(contains(read_file(daemon.config_path()), "log_level: debug"));

    auto login = [&](const std::string& user, const std::string& password) {
        PamCall call;
        call.confdir = dir + "/pam";
        call.user = user;
        call.answers = {password};
        call.module_args = "socket=" + daemon.socket() + " timeout=30";
        call.session = true;
        return pam_login(call);
    };
    auto o = login("walter", kMarkerPassword);
    expect_pam("walter with the marker password", o.authenticate, PAM_SUCCESS);
    o = login("walter", kMarkerPassword);
    expect_pam("walter again (verdict cache)", o.authenticate, PAM_SUCCESS);
    o = login("walter", kMarkerWrong);
    expect_pam("walter with a wrong marker password", o.authenticate, PAM_AUTH_ERR);
    const std::string ada_password = idp_password("ada");
    o = login("ada@example.test", ada_password);
    expect_pam("ada through the password grant", o.authenticate, PAM_SUCCESS);
    const std::string token = g->idp->id_token("uma", idp_password("uma"));
    assert_false(token.empty());
    o = login("uma@example.test", token);
    if (o.authenticate != PAM_SUCCESS) std::fprintf(stderr, "%s\n", read_file(daemon.log_path()).c_str());
    expect_pam("uma with an ID token", o.authenticate, PAM_SUCCESS);
    const std::string signature64 = token.substr(token.rfind('.') + 1);
    const std::string signature = base64url_decode(signature64);
    assert_true(signature.size() >= 64);
    ::usleep(500 * 1000);  // the cache's publisher writes nss.mc within 200 ms of a change

    struct Secret_ {
        std::string what, value;
    };
    const std::vector<Secret_> secrets = {
        {"marker password", kMarkerPassword},
        {"wrong marker password", kMarkerWrong},
        {"IdP password (password grant)", ada_password},
        {"ID token", token},
        {"ID token signature (base64url)", signature64},
    };
    auto scan = [&](const std::string& where, std::string_view bytes) {
        for (const auto& s : secrets)
            if (auto f = found_forms(bytes, s.value); !f.empty())
                fail_msg("the %s is in %s (%s)", s.what.c_str(), where.c_str(), f.c_str());
        if (bytes.find(signature) != std::string::npos)
            fail_msg("the ID token's raw signature bytes are in %s", where.c_str());
    };

    // 1. The log, at debug: it did log the logins, never a secret.
    const std::string log = read_file(daemon.log_path());
    assert_true(contains(log, "walter"));
    assert_true(contains(log, "[debug]") || contains(log, "debug"));
    scan("the daemon's log", log);

    // 2. Every file of the cache (SQLite database, WAL, journal) and nss.mc.
    int files = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir + "/cache")) {
        if (!e.is_regular_file()) continue;
        ++files;
        scan("cache file " + e.path().string(), read_file(e.path().string()));
    }
    assert_true(files >= 1);
    assert_true(std::filesystem::exists(dir + "/nss.mc"));
    const std::string mc = read_file(dir + "/nss.mc");
    assert_true(contains(mc, "walter"));
    scan("nss.mc", mc);

    // 3. The daemon refuses to dump core: RLIMIT_CORE 0, and not dumpable.
    const std::string proc = "/proc/" + std::to_string(daemon.pid());
    const std::string limits = read_file(proc + "/limits");
    std::size_t at = limits.find("Max core file size");
    assert_true(at != std::string::npos);
    std::string line = limits.substr(at, limits.find('\n', at) - at);
    std::printf("# %s\n", line.c_str());
    if (line.find(" 0 ") == std::string::npos || line.find("unlimited") != std::string::npos)
        fail_msg("core dumps not off: %s", line.c_str());
    // A non-dumpable process's memory is closed even to its own uid without CAP_SYS_PTRACE;
    // a dumpable process started the same way (sleep under the same capsh) shows that the
    // check itself lets such a reader in.
    pid_t control = ::fork();
    if (control == 0) {
        std::string capsh = on_path("capsh");
        ::execl(capsh.c_str(), capsh.c_str(), "--drop=cap_sys_ptrace", "--", "-c", "exec sleep 30", nullptr);
        ::_exit(127);
    }
    ::usleep(500 * 1000);
    int self = open_without_ptrace_cap("/proc/" + std::to_string(control) + "/mem");
    int other = open_without_ptrace_cap(proc + "/mem");
    ::kill(control, SIGKILL);
    ::waitpid(control, nullptr, 0);
    std::printf("# without CAP_SYS_PTRACE: a dumpable process's /proc/PID/mem %s, the daemon's %s\n",
                self == 0 ? "readable" : std::strerror(self), other == 0 ? "readable" : std::strerror(other));
    assert_int_equal(self, 0);
    assert_int_equal(other, EACCES);

    // An AddressSanitizer build keeps freed blocks in its quarantine (and its shadow memory
    // would make a core of terabytes): the memory scan is for the release build.
    if (contains(read_file(proc + "/maps"), "libasan")) {
        std::printf("# the daemon is an AddressSanitizer build: its core is not scanned\n");
        return;
    }
    // 4. A core of the daemon, taken right after the logins (gcore ptraces as root with
    // CAP_SYS_PTRACE, which a non-dumpable process still allows).
    const std::string core_prefix = dir + "/core";
    assert_int_equal(run_program({on_path("gcore"), "-o", core_prefix, std::to_string(daemon.pid())}, {}, 180), 0);
    const std::string core_path = core_prefix + "." + std::to_string(daemon.pid());
    // Mapped, not read: the core holds the daemon's whole address space (hundreds of MB).
    int core_fd = ::open(core_path.c_str(), O_RDONLY | O_CLOEXEC);
    assert_true(core_fd >= 0);
    struct stat st{};
    assert_int_equal(::fstat(core_fd, &st), 0);
    const std::size_t core_size = static_cast<std::size_t>(st.st_size);
    void* map = ::mmap(nullptr, core_size, PROT_READ, MAP_PRIVATE, core_fd, 0);
    ::close(core_fd);
    assert_true(map != MAP_FAILED);
    const std::string_view core(static_cast<const char*>(map), core_size);
    std::printf("# core of the daemon: %zu bytes\n", core.size());
    assert_true(core.size() > 1024 * 1024);
    // The control: the bind password is held (the daemon binds with it) and must be found.
    if (found_forms(core, kBindPassword).empty())
        fail_msg("the scan did not find the bind password that the daemon holds: the core is not readable as assumed");
    if (core.find("walter") == std::string::npos) fail_msg("the core does not mention walter");
    scan("the daemon's core", core);
    ::munmap(map, core_size);
    std::filesystem::remove(core_path);

    // The daemon survived the dump and still serves.
    o = login("walter", kMarkerPassword);
    expect_pam("walter after gcore", o.authenticate, PAM_SUCCESS);
}

}  // namespace

int main() {
    require_program("slapd");
    require_program("gcore");
    require_program("ldapmodify");
    require_program("capsh");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(secrets_stay_secret),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
