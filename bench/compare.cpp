// SPDX-License-Identifier: GPL-3.0-or-later
// The measuring half of bench/compare.sh: one program, one subcommand per kind of operation,
// each printing one JSON object per measurement on stdout (compare.sh collects them).
//
//   cvat-bench-compare login  system=S confdir=D service=V users=N pick=M prefix=u password=P
//                             threads=T seconds=X expect=ok|wrong [pids=1,2,..] [dir_pids=P]
//                             [preload=SO]
//       PAM logins (pam_start_confdir + pam_authenticate + pam_acct_mgmt + pam_end) by T
//       threads for X seconds; each login is a user drawn at random from the first M of N
//       (prefix + 6 digits, from 1). pids: daemon processes whose CPU time (utime + stime,
//       /proc/PID/stat) per login and resident memory are reported; dir_pids: the directory
//       server's, whose CPU per login is reported beside this process's own (login and floor).
//   cvat-bench-compare nss    system=S so=PATH symprefix=_nss_X op=getpwnam|getgrnam|initgroups
//                             names=a,b,.. | prefix=u from=I count=K  [warm_seconds=X]
//       Cold: each name once, in order (never asked before in this run); warm: the same names
//       round robin for X seconds. One thread, as one process's lookups are.
//   cvat-bench-compare floor  uri=U binddn=D bindpw=W base=B users=N prefix=u password=P
//                             threads=T seconds=X [groups=BASE] [dir_pids=P]
//       What any LDAP client pays per login on ready connections: per thread one bound search
//       connection and one for the user binds; per login the user search and the bind (and with
//       groups=, the nested groupOfNames walk: (member=DN) searches until no new group).
//   cvat-bench-compare socket threads=T seconds=X
//       A Unix-socket round trip (64 bytes each way to an echo thread): the floor of any
//       daemon-backed module.
#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <grp.h>
#include <ldap.h>
#include <nss.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

double since_us(Clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

std::map<std::string, std::string> g_args;

std::string arg(const char* key, const char* fallback = nullptr) {
    auto it = g_args.find(key);
    if (it != g_args.end()) return it->second;
    if (fallback == nullptr) {
        std::fprintf(stderr, "cvat-bench-compare: %s= is required\n", key);
        std::exit(64);
    }
    return fallback;
}
long num(const char* key, const char* fallback = nullptr) { return std::atol(arg(key, fallback).c_str()); }

std::string user_name(const std::string& prefix, long i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%06ld", i);
    return prefix + buf;
}

struct Summary {
    double p50 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};

Summary summarize(std::vector<double>& v) {
    Summary s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    auto at = [&v](double q) {
        return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
    };
    double sum = 0;
    for (double x : v) sum += x;
    s.p50 = at(0.5);
    s.p99 = at(0.99);
    s.p999 = at(0.999);
    s.max = v.back();
    s.mean = sum / static_cast<double>(v.size());
    return s;
}

// CPU ticks (utime + stime) and resident KiB of a set of processes.
struct ProcUsage {
    double cpu_s = 0;
    long rss_kib = 0;
};

ProcUsage usage_of(const std::vector<long>& pids) {
    ProcUsage u;
    const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    for (long pid : pids) {
        std::string path = "/proc/" + std::to_string(pid) + "/stat";
        if (FILE* f = std::fopen(path.c_str(), "r")) {
            char buf[1024];
            std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
            buf[n] = '\0';
            std::fclose(f);
            // Fields after the ")" that closes comm: state is field 3; utime 14, stime 15.
            const char* p = std::strrchr(buf, ')');
            unsigned long ut = 0, st = 0;
            if (p != nullptr &&
                std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
                u.cpu_s += static_cast<double>(ut + st) / hz;
        }
        path = "/proc/" + std::to_string(pid) + "/status";
        if (FILE* f = std::fopen(path.c_str(), "r")) {
            char line[256];
            while (std::fgets(line, sizeof line, f) != nullptr) {
                long kib = 0;
                if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) u.rss_kib += kib;
            }
            std::fclose(f);
        }
    }
    return u;
}

// This process's CPU time (every thread: libpam and the modules, or libldap for the floors).
double self_cpu_s() {
    rusage ru{};
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return sec(ru.ru_utime) + sec(ru.ru_stime);
}

std::vector<long> parse_pids(const std::string& s) {
    std::vector<long> out;
    std::size_t i = 0;
    while (i < s.size()) {
        std::size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        if (j > i) out.push_back(std::atol(s.substr(i, j - i).c_str()));
        i = j + 1;
    }
    return out;
}

// Where the CPU of a measured stretch went, per operation: the directory server's (dir_pids=,
// slapd) and this process's. With the daemons' own, that is what one login costs the machine.
struct CpuShare {
    std::vector<long> dir_pids = parse_pids(arg("dir_pids", ""));
    double dir0 = 0, self0 = 0;
    void start() {
        dir0 = usage_of(dir_pids).cpu_s;
        self0 = self_cpu_s();
    }
    std::string json(std::size_t ops) const {
        char buf[160];
        const double n = ops == 0 ? 1.0 : static_cast<double>(ops);
        std::snprintf(buf, sizeof buf, "\"directory_cpu_us_per_op\":%.1f,\"client_cpu_us_per_op\":%.1f,",
                      dir_pids.empty() ? 0.0 : (usage_of(dir_pids).cpu_s - dir0) * 1e6 / n, (self_cpu_s() - self0) * 1e6 / n);
        return buf;
    }
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i <= s.size()) {
        std::size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

// Runs `op(thread, rng)` on T threads for X seconds; returns every op's latency (µs), the
// count of ops that answered wrongly, and the wall time.
template <typename Op>
void run_threads(int threads, double seconds, Op op, std::vector<double>& lat, long& errors, double& wall_s) {
    std::vector<std::vector<double>> per(static_cast<std::size_t>(threads));
    std::vector<long> errs(static_cast<std::size_t>(threads), 0);
    std::atomic<bool> stop{false};
    std::vector<std::thread> pool;
    auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::mt19937_64 rng(static_cast<unsigned long>(t) * 7919u + static_cast<unsigned long>(getpid()));
            auto& mine = per[static_cast<std::size_t>(t)];
            while (!stop.load(std::memory_order_relaxed)) {
                auto a = Clock::now();
                bool ok = op(t, rng);
                mine.push_back(since_us(a));
                if (!ok) ++errs[static_cast<std::size_t>(t)];
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& th : pool) th.join();
    wall_s = since_us(t0) / 1e6;
    for (auto& v : per) lat.insert(lat.end(), v.begin(), v.end());
    for (long e : errs) errors += e;
}

void print_result(const char* test, const std::string& extra, std::vector<double>& lat, long errors, double wall_s) {
    Summary s = summarize(lat);
    std::printf("{\"test\":\"%s\",%s\"ops\":%zu,\"errors\":%ld,\"ops_s\":%.1f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
                "\"p999_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f}\n",
                test, extra.c_str(), lat.size(), errors, wall_s > 0 ? static_cast<double>(lat.size()) / wall_s : 0,
                s.p50, s.p99, s.p999, s.max, s.mean);
    std::fflush(stdout);
}

// --- PAM -------------------------------------------------------------------------------------

struct Conv {
    const char* password;
};

int answer_password(int n, const pam_message** msg, pam_response** resp, void* appdata) {
    auto* c = static_cast<Conv*>(appdata);
    auto* out = static_cast<pam_response*>(std::calloc(static_cast<std::size_t>(n), sizeof(pam_response)));
    if (out == nullptr) return PAM_BUF_ERR;
    for (int i = 0; i < n; ++i)
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
            out[i].resp = ::strdup(c->password);
    *resp = out;
    return PAM_SUCCESS;
}

int cmd_login() {
    const std::string system = arg("system"), confdir = arg("confdir"), service = arg("service");
    const std::string prefix = arg("prefix", "u"), password = arg("password");
    const long users = num("users"), pick = std::min(users, num("pick", arg("users").c_str()));
    const int threads = static_cast<int>(num("threads", "1"));
    const double seconds = std::atof(arg("seconds", "3").c_str());
    const bool expect_ok = arg("expect", "ok") == "ok";
    const std::vector<long> pids = parse_pids(arg("pids", ""));
    // The PAM module stays loaded across pam_end (RTLD_NODELETE), as in a server process that
    // logs users in all day: no system pays a dlopen per login, and pam_sss's thread-specific
    // data destructor (registered from the module) still exists when a thread exits.
    if (std::string so = arg("preload", ""); !so.empty() && dlopen(so.c_str(), RTLD_NOW | RTLD_NODELETE) == nullptr) {
        std::fprintf(stderr, "dlopen %s: %s\n", so.c_str(), dlerror());
        return 1;
    }

    auto login = [&](int, std::mt19937_64& rng) {
        std::string user = user_name(prefix, 1 + static_cast<long>(rng() % static_cast<unsigned long>(pick)));
        Conv c{password.c_str()};
        pam_conv conv{answer_password, &c};
        pam_handle_t* pamh = nullptr;
        int rc = pam_start_confdir(service.c_str(), user.c_str(), &conv, confdir.c_str(), &pamh);
        if (rc != PAM_SUCCESS) return false;
        rc = pam_authenticate(pamh, 0);
        if (rc == PAM_SUCCESS) rc = pam_acct_mgmt(pamh, 0);
        pam_end(pamh, rc);
        return expect_ok ? rc == PAM_SUCCESS : rc == PAM_AUTH_ERR;
    };
    // Warm-up: each thread's first logins (module loading, connections) are not measured.
    {
        std::vector<double> w;
        long e = 0;
        double s = 0;
        run_threads(threads, std::min(0.5, seconds / 4), login, w, e, s);
    }
    ProcUsage before = usage_of(pids);
    CpuShare share;
    share.start();
    std::vector<double> lat;
    long errors = 0;
    double wall = 0;
    run_threads(threads, seconds, login, lat, errors, wall);
    const std::string shares = share.json(lat.size());
    ProcUsage after = usage_of(pids);
    char extra[512];
    std::snprintf(extra, sizeof extra,
                  "\"system\":\"%s\",\"threads\":%d,\"password\":\"%s\",\"pick\":%ld,\"users\":%ld,"
                  "\"daemon_cpu_us_per_op\":%.1f,\"daemon_rss_kib\":%ld,",
                  system.c_str(), threads, expect_ok ? "right" : "wrong", pick, users,
                  lat.empty() || pids.empty() ? 0.0 : (after.cpu_s - before.cpu_s) * 1e6 / static_cast<double>(lat.size()),
                  after.rss_kib);
    print_result("login", extra + shares, lat, errors, wall);
    return 0;
}

// --- NSS -------------------------------------------------------------------------------------

using getpwnam_fn = nss_status (*)(const char*, passwd*, char*, size_t, int*);
using getgrnam_fn = nss_status (*)(const char*, group*, char*, size_t, int*);
using initgroups_fn = nss_status (*)(const char*, gid_t, long*, long*, gid_t**, long, int*);

int cmd_nss() {
    const std::string system = arg("system"), so = arg("so"), sym = arg("symprefix"), op = arg("op");
    const double warm_seconds = std::atof(arg("warm_seconds", "1").c_str());
    std::vector<std::string> names;
    if (g_args.count("names") != 0) {
        names = split(arg("names"));
    } else {
        const long from = num("from"), count = num("count");
        for (long i = from; i < from + count; ++i) names.push_back(user_name(arg("prefix", "u"), i));
    }
    void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
        std::fprintf(stderr, "dlopen %s: %s\n", so.c_str(), dlerror());
        return 1;
    }
    std::string fn_name = sym + "_" + (op == "initgroups" ? "initgroups_dyn" : op + "_r");
    void* fn = dlsym(h, fn_name.c_str());
    if (fn == nullptr) {
        std::fprintf(stderr, "%s: no %s\n", so.c_str(), fn_name.c_str());
        return 1;
    }
    std::vector<char> buf(1 << 16);
    // As glibc does: a buffer too small (ERANGE, a group with thousands of members) is doubled
    // and the call repeated.
    std::function<bool(const std::string&)> lookup_once;
    auto lookup = [&](const std::string& name) {
        for (;;) {
            errno = 0;
            bool ok = lookup_once(name);
            if (ok || errno != ERANGE || buf.size() >= (std::size_t{1} << 26)) return ok;
            buf.resize(buf.size() * 2);
        }
    };
    lookup_once = [&](const std::string& name) {
        int err = 0;
        nss_status st = NSS_STATUS_UNAVAIL;
        if (op == "getpwnam") {
            passwd pw{};
            st = reinterpret_cast<getpwnam_fn>(fn)(name.c_str(), &pw, buf.data(), buf.size(), &err);
        } else if (op == "getgrnam") {
            group gr{};
            st = reinterpret_cast<getgrnam_fn>(fn)(name.c_str(), &gr, buf.data(), buf.size(), &err);
        } else {
            long start = 0, size = 16;
            auto* groups = static_cast<gid_t*>(std::malloc(static_cast<std::size_t>(size) * sizeof(gid_t)));
            st = reinterpret_cast<initgroups_fn>(fn)(name.c_str(), 65534, &start, &size, &groups, 4096, &err);
            // initgroups answers "no groups" as NOTFOUND for some modules: count a group found.
            if (st == NSS_STATUS_NOTFOUND && start > 0) st = NSS_STATUS_SUCCESS;
            if (st == NSS_STATUS_SUCCESS && start == 0) st = NSS_STATUS_NOTFOUND;
            std::free(groups);
        }
        if (st == NSS_STATUS_TRYAGAIN && err == ERANGE) errno = ERANGE;
        return st == NSS_STATUS_SUCCESS;
    };
    char extra[256];
    std::snprintf(extra, sizeof extra, "\"system\":\"%s\",\"op\":\"%s\",\"phase\":\"cold\",", system.c_str(), op.c_str());
    std::vector<double> cold;
    long errors = 0;
    auto t0 = Clock::now();
    for (const auto& n : names) {
        auto a = Clock::now();
        if (!lookup(n)) ++errors;
        cold.push_back(since_us(a));
    }
    double wall = since_us(t0) / 1e6;
    print_result("nss", extra, cold, errors, wall);
    // Let a daemon that publishes a cache after answering (cvat-authd's nss.mc) catch up.
    usleep(static_cast<useconds_t>(std::atof(arg("settle", "1").c_str()) * 1e6));
    std::snprintf(extra, sizeof extra, "\"system\":\"%s\",\"op\":\"%s\",\"phase\":\"warm\",", system.c_str(), op.c_str());
    std::vector<double> warm;
    errors = 0;
    std::size_t i = 0;
    t0 = Clock::now();
    auto until = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warm_seconds));
    while (Clock::now() < until || i < names.size()) {
        auto a = Clock::now();
        if (!lookup(names[i++ % names.size()])) ++errors;
        warm.push_back(since_us(a));
    }
    wall = since_us(t0) / 1e6;
    print_result("nss", extra, warm, errors, wall);
    return 0;
}

// --- the libldap floor -------------------------------------------------------------------------

struct LdapConn {
    LDAP* ld = nullptr;
    ~LdapConn() {
        if (ld != nullptr) ldap_unbind_ext_s(ld, nullptr, nullptr);
    }
};

bool ldap_open(LdapConn& c, const std::string& uri, const std::string& dn, const std::string& pw) {
    if (ldap_initialize(&c.ld, uri.c_str()) != LDAP_SUCCESS) return false;
    int v3 = LDAP_VERSION3;
    ldap_set_option(c.ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    if (dn.empty()) return true;
    berval cred{pw.size(), const_cast<char*>(pw.data())};
    return ldap_sasl_bind_s(c.ld, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr) == LDAP_SUCCESS;
}

// DNs of the entries a search returns (attributes none).
std::vector<std::string> search_dns(LDAP* ld, const std::string& base, const std::string& filter, char** attrs) {
    std::vector<std::string> out;
    LDAPMessage* res = nullptr;
    if (ldap_search_ext_s(ld, base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(), attrs, 0, nullptr, nullptr, nullptr,
                          0, &res) == LDAP_SUCCESS) {
        for (LDAPMessage* e = ldap_first_entry(ld, res); e != nullptr; e = ldap_next_entry(ld, e)) {
            if (char* dn = ldap_get_dn(ld, e)) {
                out.emplace_back(dn);
                ldap_memfree(dn);
            }
        }
    }
    ldap_msgfree(res);
    return out;
}

int cmd_floor() {
    const std::string uri = arg("uri"), binddn = arg("binddn"), bindpw = arg("bindpw"), base = arg("base");
    const std::string prefix = arg("prefix", "u"), password = arg("password"), groups = arg("groups", "");
    const long users = num("users");
    const int threads = static_cast<int>(num("threads", "1"));
    const double seconds = std::atof(arg("seconds", "3").c_str());
    std::vector<LdapConn> search(static_cast<std::size_t>(threads)), bind(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
        if (!ldap_open(search[static_cast<std::size_t>(t)], uri, binddn, bindpw) ||
            !ldap_open(bind[static_cast<std::size_t>(t)], uri, "", "")) {
            std::fprintf(stderr, "floor: cannot connect to %s\n", uri.c_str());
            return 1;
        }
    }
    auto login = [&](int t, std::mt19937_64& rng) {
        LDAP* s = search[static_cast<std::size_t>(t)].ld;
        LDAP* b = bind[static_cast<std::size_t>(t)].ld;
        std::string user = user_name(prefix, 1 + static_cast<long>(rng() % static_cast<unsigned long>(users)));
        char* attrs[] = {const_cast<char*>("uid"), const_cast<char*>("mail"), const_cast<char*>("uidNumber"), nullptr};
        auto dns = search_dns(s, base, "(&(objectClass=posixAccount)(uid=" + user + "))", attrs);
        if (dns.size() != 1) return false;
        berval cred{password.size(), const_cast<char*>(password.data())};
        if (ldap_sasl_bind_s(b, dns[0].c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr) != LDAP_SUCCESS)
            return false;
        if (!groups.empty()) {
            char* none[] = {const_cast<char*>("1.1"), nullptr};
            std::set<std::string> seen;
            std::vector<std::string> level{dns[0]};
            while (!level.empty()) {
                std::string f = "(&(objectClass=groupOfNames)(|";
                for (const auto& dn : level) f += "(member=" + dn + ")";
                f += "))";
                std::vector<std::string> next;
                for (auto& g : search_dns(s, groups, f, none))
                    if (seen.insert(g).second) next.push_back(g);
                level.swap(next);
            }
        }
        return true;
    };
    {
        std::vector<double> w;
        long e = 0;
        double s = 0;
        run_threads(threads, std::min(0.5, seconds / 4), login, w, e, s);
    }
    CpuShare share;
    share.start();
    std::vector<double> lat;
    long errors = 0;
    double wall = 0;
    run_threads(threads, seconds, login, lat, errors, wall);
    const std::string shares = share.json(lat.size());
    char extra[256];
    std::snprintf(extra, sizeof extra, "\"system\":\"%s\",\"threads\":%d,\"password\":\"right\",",
                  groups.empty() ? "floor" : "floor-nested", threads);
    print_result("login", extra + shares, lat, errors, wall);
    return 0;
}

// --- the Unix-socket floor ---------------------------------------------------------------------

int cmd_socket() {
    const int threads = static_cast<int>(num("threads", "1"));
    const double seconds = std::atof(arg("seconds", "2").c_str());
    std::vector<int> client(static_cast<std::size_t>(threads));
    std::vector<std::thread> echo;
    for (int t = 0; t < threads; ++t) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 1;
        client[static_cast<std::size_t>(t)] = sv[0];
        echo.emplace_back([fd = sv[1]] {
            char b[64];
            for (;;) {
                ssize_t n = read(fd, b, sizeof b);
                if (n <= 0 || write(fd, b, static_cast<std::size_t>(n)) != n) break;
            }
            close(fd);
        });
    }
    auto rt = [&](int t, std::mt19937_64&) {
        char b[64] = {1};
        int fd = client[static_cast<std::size_t>(t)];
        if (send(fd, b, sizeof b, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof b)) return false;
        std::size_t got = 0;
        while (got < sizeof b) {
            ssize_t n = read(fd, b + got, sizeof b - got);
            if (n <= 0) return false;
            got += static_cast<std::size_t>(n);
        }
        return true;
    };
    std::vector<double> lat;
    long errors = 0;
    double wall = 0;
    run_threads(threads, seconds, rt, lat, errors, wall);
    for (int fd : client) close(fd);
    for (auto& th : echo) th.join();
    char extra[128];
    std::snprintf(extra, sizeof extra, "\"system\":\"unix-socket\",\"threads\":%d,", threads);
    print_result("socket", extra, lat, errors, wall);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: cvat-bench-compare login|nss|floor|socket key=value...\n");
        return 64;
    }
    for (int i = 2; i < argc; ++i) {
        const char* eq = std::strchr(argv[i], '=');
        if (eq == nullptr) {
            std::fprintf(stderr, "cvat-bench-compare: %s is not key=value\n", argv[i]);
            return 64;
        }
        g_args[std::string(argv[i], static_cast<std::size_t>(eq - argv[i]))] = eq + 1;
    }
    std::string cmd = argv[1];
    if (cmd == "login") return cmd_login();
    if (cmd == "nss") return cmd_nss();
    if (cmd == "floor") return cmd_floor();
    if (cmd == "socket") return cmd_socket();
    std::fprintf(stderr, "cvat-bench-compare: unknown command %s\n", cmd.c_str());
    return 64;
}
