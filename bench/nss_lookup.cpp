// SPDX-License-Identifier: GPL-3.0-or-later
// Warm NSS lookup latency (DESIGN.md §7: "warm NSS lookups cost about what /etc/passwd lookups
// cost"): N getpwnam_r calls through libnss_cvat.so.2 (dlopen) answered from a published
// nss.mc of U users, N/10 getgrnam_r calls of a group of 100 of them and of one of all of
// them, next to N calls of nss_files' own _nss_files_getpwnam_r (dlopen of
// libnss_files.so.2, reading /etc/passwd) for a local user, one thread, same machine.
//   cvat-bench-nss DIR N U LOCAL_USER      (NSS_CVAT_SO: the module; DIR: a scratch directory)
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <nss.h>
#include <pwd.h>

#include "nss_mc_writer.hpp"
#include "nss_module.hpp"

namespace {

using getpwnam_fn = nss_status (*)(const char*, passwd*, char*, size_t, int*);

// Times n lookups of `names` (round robin) one by one; prints median, p90, p99 in ns.
// Entry: passwd or group, as fn fills.
template <typename Entry>
void measure(const char* what, nss_status (*fn)(const char*, Entry*, char*, size_t, int*),
             const std::vector<std::string>& names, int n) {
    std::vector<double> t;
    t.reserve(static_cast<std::size_t>(n));
    Entry e{};
    // Grown on ERANGE, as glibc does, and kept: a group of 5,000 members takes about 80 KiB.
    std::vector<char> buf(1024);
    int err = 0, misses = 0;
    n = std::max(n, 1);
    for (int i = 0; i < n + 1000; ++i) {  // the first 1000 warm up
        const char* name = names[static_cast<std::size_t>(i) % names.size()].c_str();
        auto a = std::chrono::steady_clock::now();
        nss_status st = fn(name, &e, buf.data(), buf.size(), &err);
        auto b = std::chrono::steady_clock::now();
        if (st == NSS_STATUS_TRYAGAIN && err == ERANGE && buf.size() < (std::size_t{1} << 28)) {
            buf.resize(buf.size() * 2);  // and the same lookup again; the refused one is not counted
            --i;
            continue;
        }
        if (st != NSS_STATUS_SUCCESS) ++misses;
        if (i >= 1000) t.push_back(std::chrono::duration<double, std::nano>(b - a).count());
    }
    std::sort(t.begin(), t.end());
    auto at = [&t](double q) { return t[std::min(t.size() - 1, static_cast<std::size_t>(q * static_cast<double>(t.size())))]; };
    std::printf("%-48s n=%d  median %8.0f ns  p90 %8.0f ns  p99 %8.0f ns  misses %d\n", what, n, at(0.5), at(0.9),
                at(0.99), misses);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: cvat-bench-nss DIR N USERS LOCAL_USER\n");
        return 64;
    }
    std::string dir = argv[1];
    int n = std::atoi(argv[2]), users = std::atoi(argv[3]);
    setenv("CVAT_AUTH_SOCKET", (dir + "/socket").c_str(), 1);

    std::vector<cvat::helper::nss_mc::PasswdEntry> entries;
    std::vector<std::string> names;
    for (int i = 0; i < users; ++i) {
        names.push_back("user" + std::to_string(i));
        entries.push_back({names.back(), 100000u + static_cast<unsigned>(i), 100000u, "CVAT user " + names.back(),
                           "/home/" + names.back(), "/bin/bash", {200000, 200001}, std::time(nullptr) + 3600});
    }
    // Two groups: one of 100 members (a team, as SSSD's and nslcd's groups in bench/compare.sh)
    // and one of every user (a CVAT role group such as cvat-user).
    std::vector<cvat::helper::nss_mc::GroupEntry> groups = {
        {"team", 300000, {}, std::time(nullptr) + 3600}, {"everyone", 300001, names, std::time(nullptr) + 3600}};
    for (int i = 0; i < std::min(users, 100); ++i) groups[0].members.push_back(names[static_cast<std::size_t>(i)]);
    if (auto r = cvat::helper::nss_mc::publish(dir + "/nss.mc", entries, groups, false); !r) {
        std::fprintf(stderr, "publish: %s\n", r.error().detail.c_str());
        return 1;
    }
    auto cvat_nss = cvat::test::NssModule::load();
    std::string what = "nss_cvat getpwnam_r, warm (nss.mc, " + std::to_string(users) + " users)";
    measure(what.c_str(), cvat_nss.getpwnam_r, names, n);
    for (const auto& g : groups) {
        what = "nss_cvat getgrnam_r, warm (" + std::to_string(g.members.size()) + " members)";
        measure(what.c_str(), cvat_nss.getgrnam_r, {g.name}, n / 10);
    }

    void* files = dlopen("libnss_files.so.2", RTLD_NOW);
    auto files_getpwnam = files ? reinterpret_cast<getpwnam_fn>(dlsym(files, "_nss_files_getpwnam_r")) : nullptr;
    if (!files_getpwnam) {
        std::fprintf(stderr, "libnss_files.so.2: %s\n", dlerror());
        return 1;
    }
    what = std::string("nss_files getpwnam_r (/etc/passwd, \"") + argv[4] + "\")";
    measure(what.c_str(), files_getpwnam, {argv[4]}, n);
    return 0;
}
