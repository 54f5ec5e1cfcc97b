// SPDX-License-Identifier: GPL-3.0-or-later
// libnss_cvat.so.2 loaded with dlopen (path from $NSS_CVAT_SO, set by tests/meson.build), its
// entry points resolved by name, as glibc's NSS loader does.
#pragma once

#include <cstdio>
#include <cstdlib>

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

}  // namespace cvat::test
