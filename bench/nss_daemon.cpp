// SPDX-License-Identifier: GPL-3.0-or-later
// getpwnam through libnss_cvat.so.2 against a running cvat-authd and slapd: cold lookups (the
// user's cache entry expired with `cvat-authctl cache expire` before each one, so every lookup
// is a socket round trip, a directory search and the group walk) and warm ones (from the
// nss.mc the daemon published). Prints median, p90, p99 of each.
//   cvat-bench-nss-daemon NSS_SO AUTHCTL SOCKET USER N_COLD N_WARM
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <nss.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using GetPwNam = nss_status (*)(const char*, passwd*, char*, size_t, int*);

double now_us() {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void print(const char* what, std::vector<double> v) {
    std::sort(v.begin(), v.end());
    auto at = [&v](double q) { return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))]; };
    std::printf("%-46s n=%-7zu median %9.2f us  p90 %9.2f us  p99 %9.2f us\n", what, v.size(), at(0.5), at(0.9),
                at(0.99));
}

bool expire(const char* authctl, const char* socket, const char* user) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE* null = std::freopen("/dev/null", "w", stdout);
        (void)null;
        execl(authctl, authctl, "--socket", socket, "cache", "expire", user, static_cast<char*>(nullptr));
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: cvat-bench-nss-daemon NSS_SO AUTHCTL SOCKET USER N_COLD N_WARM\n");
        return 2;
    }
    const char* user = argv[4];
    const int n_cold = std::atoi(argv[5]), n_warm = std::atoi(argv[6]);
    setenv("CVAT_AUTH_SOCKET", argv[3], 1);
    void* h = dlopen(argv[1], RTLD_NOW);
    auto getpwnam = h ? reinterpret_cast<GetPwNam>(dlsym(h, "_nss_cvat_getpwnam_r")) : nullptr;
    if (getpwnam == nullptr) {
        std::fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    char buf[4096];
    passwd pw{};
    int err = 0;
    std::vector<double> cold, warm;
    for (int i = 0; i < n_cold; ++i) {
        if (!expire(argv[2], argv[3], user)) {
            std::fprintf(stderr, "cvat-authctl cache expire failed\n");
            return 1;
        }
        double t0 = now_us();
        nss_status st = getpwnam(user, &pw, buf, sizeof buf, &err);
        cold.push_back(now_us() - t0);
        if (st != NSS_STATUS_SUCCESS) {
            std::fprintf(stderr, "cold lookup of %s failed: %d\n", user, st);
            return 1;
        }
    }
    usleep(500 * 1000);  // the daemon republishes nss.mc
    for (int i = 0; i < n_warm; ++i) {
        double t0 = now_us();
        nss_status st = getpwnam(user, &pw, buf, sizeof buf, &err);
        warm.push_back(now_us() - t0);
        if (st != NSS_STATUS_SUCCESS) return 1;
    }
    print("cold getpwnam (socket + directory)", cold);
    print("warm getpwnam (nss.mc published by the daemon)", warm);
    return 0;
}
