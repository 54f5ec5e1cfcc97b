// SPDX-License-Identifier: GPL-3.0-or-later
// libnss_cvat.so.2 loaded with dlopen (path from $NSS_CVAT_SO, set by tests/meson.build), its
// entry points resolved by name, as glibc's NSS loader does.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>

namespace cvat::test {

struct NssModule {
    using getpwnam_fn = nss_status (*)(const char*, passwd*, char*, size_t, int*);
    using getpwuid_fn = nss_status (*)(uid_t, passwd*, char*, size_t, int*);
    using getgrnam_fn = nss_status (*)(const char*, group*, char*, size_t, int*);
    using getgrgid_fn = nss_status (*)(gid_t, group*, char*, size_t, int*);
    using initgroups_fn = nss_status (*)(const char*, gid_t, long*, long*, gid_t**, long, int*);
    using setent_fn = nss_status (*)(int);
    using endent_fn = nss_status (*)();
    using getpwent_fn = nss_status (*)(passwd*, char*, size_t, int*);
    using getgrent_fn = nss_status (*)(group*, char*, size_t, int*);

    void* handle = nullptr;
    getpwnam_fn getpwnam_r = nullptr;
    getpwuid_fn getpwuid_r = nullptr;
    getgrnam_fn getgrnam_r = nullptr;
    getgrgid_fn getgrgid_r = nullptr;
    initgroups_fn initgroups_dyn = nullptr;
    setent_fn setpwent = nullptr, setgrent = nullptr;
    endent_fn endpwent = nullptr, endgrent = nullptr;
    getpwent_fn getpwent_r = nullptr;
    getgrent_fn getgrent_r = nullptr;

    // Loads the module or exits with a TAP "Bail out!".
    static NssModule load() {
        const char* path = std::getenv("NSS_CVAT_SO");
        NssModule m;
        m.handle = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : nullptr;
        if (!m.handle) {
            std::printf("Bail out! cannot load NSS_CVAT_SO=%s: %s\n", path ? path : "(unset)", dlerror());
            std::exit(1);
        }
        m.getpwnam_r = reinterpret_cast<getpwnam_fn>(sym(m.handle, "_nss_cvat_getpwnam_r"));
        m.getpwuid_r = reinterpret_cast<getpwuid_fn>(sym(m.handle, "_nss_cvat_getpwuid_r"));
        m.getgrnam_r = reinterpret_cast<getgrnam_fn>(sym(m.handle, "_nss_cvat_getgrnam_r"));
        m.getgrgid_r = reinterpret_cast<getgrgid_fn>(sym(m.handle, "_nss_cvat_getgrgid_r"));
        m.initgroups_dyn = reinterpret_cast<initgroups_fn>(sym(m.handle, "_nss_cvat_initgroups_dyn"));
        m.setpwent = reinterpret_cast<setent_fn>(sym(m.handle, "_nss_cvat_setpwent"));
        m.endpwent = reinterpret_cast<endent_fn>(sym(m.handle, "_nss_cvat_endpwent"));
        m.getpwent_r = reinterpret_cast<getpwent_fn>(sym(m.handle, "_nss_cvat_getpwent_r"));
        m.setgrent = reinterpret_cast<setent_fn>(sym(m.handle, "_nss_cvat_setgrent"));
        m.endgrent = reinterpret_cast<endent_fn>(sym(m.handle, "_nss_cvat_endgrent"));
        m.getgrent_r = reinterpret_cast<getgrent_fn>(sym(m.handle, "_nss_cvat_getgrent_r"));
        return m;
    }

private:
    static void* sym(void* h, const char* name) {
        void* p = dlsym(h, name);
        if (!p) {
            std::printf("Bail out! %s missing from the module\n", name);
            std::exit(1);
        }
        return p;
    }
};

// One answer of the module, copied out of the caller's buffer.
struct PwEntry {
    nss_status status = NSS_STATUS_UNAVAIL;
    int err = 0;
    std::string name, gecos, dir, shell;
    uid_t uid = 0;
    gid_t gid = 0;
};

struct GrEntry {
    nss_status status = NSS_STATUS_UNAVAIL;
    std::string name;
    gid_t gid = 0;
    std::vector<std::string> members;
    bool lists(const std::string& user) const {
        return std::find(members.begin(), members.end(), user) != members.end();
    }
};

inline PwEntry pw_entry(nss_status st, int err, const passwd& p) {
    PwEntry r;
    r.status = st;
    r.err = err;
    if (st == NSS_STATUS_SUCCESS) {
        r.name = p.pw_name;
        r.gecos = p.pw_gecos;
        r.dir = p.pw_dir;
        r.shell = p.pw_shell;
        r.uid = p.pw_uid;
        r.gid = p.pw_gid;
    }
    return r;
}

inline GrEntry gr_entry(nss_status st, const group& gr) {
    GrEntry r;
    r.status = st;
    if (st == NSS_STATUS_SUCCESS) {
        r.name = gr.gr_name;
        r.gid = gr.gr_gid;
        for (char** m = gr.gr_mem; m != nullptr && *m != nullptr; ++m) r.members.emplace_back(*m);
    }
    return r;
}

// The lookups as glibc makes them, with roomy buffers.
inline PwEntry lookup_pwnam(const NssModule& m, const std::string& name) {
    passwd p{};
    char buf[4096];
    int err = 0;
    nss_status st = m.getpwnam_r(name.c_str(), &p, buf, sizeof buf, &err);
    return pw_entry(st, err, p);
}

inline PwEntry lookup_pwuid(const NssModule& m, uid_t uid) {
    passwd p{};
    char buf[4096];
    int err = 0;
    nss_status st = m.getpwuid_r(uid, &p, buf, sizeof buf, &err);
    return pw_entry(st, err, p);
}

inline GrEntry lookup_grnam(const NssModule& m, const std::string& name) {
    group gr{};
    char buf[16384];
    int err = 0;
    nss_status st = m.getgrnam_r(name.c_str(), &gr, buf, sizeof buf, &err);
    return gr_entry(st, gr);
}

inline GrEntry lookup_grgid(const NssModule& m, gid_t gid) {
    group gr{};
    char buf[16384];
    int err = 0;
    nss_status st = m.getgrgid_r(gid, &gr, buf, sizeof buf, &err);
    return gr_entry(st, gr);
}

// The supplementary groups initgroups_dyn adds (empty unless it succeeds).
inline std::vector<gid_t> lookup_initgroups(const NssModule& m, const std::string& user, gid_t primary) {
    long start = 0, size = 4;
    auto* groups = static_cast<gid_t*>(std::malloc(static_cast<std::size_t>(size) * sizeof(gid_t)));
    int err = 0;
    nss_status st = m.initgroups_dyn(user.c_str(), primary, &start, &size, &groups, 0, &err);
    std::vector<gid_t> out;
    if (st == NSS_STATUS_SUCCESS) out.assign(groups, groups + start);
    std::free(groups);
    return out;
}

}  // namespace cvat::test
