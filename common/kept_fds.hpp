// SPDX-License-Identifier: LGPL-2.1-or-later
// The connections to cvat-authd that a module keeps between requests (one per thread), listed
// per process so that a forked child closes all of them, not only the forking thread's: a
// child that changes its user without exec (a prefork server's worker) must not hold a
// connection the daemon knows by its parent's credentials (SO_PEERCRED is read at connect).
// A connection in use by a request is not listed (as before connections were kept, a fork in
// another thread during a request inherits it). libc only: nss_cvat links nothing else. Each
// module has its own list.
#pragma once

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace cvat::kept_fds {

// Threads of one process that keep a connection; those beyond connect per request.
inline constexpr int kMax = 256;

struct Slot {
    bool used;
    int fd;
    dev_t dev;
    ino_t ino;
};

inline pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
inline Slot g_slots[kMax];
inline pthread_once_t g_once = PTHREAD_ONCE_INIT;

inline void before_fork() { pthread_mutex_lock(&g_lock); }
inline void after_fork_parent() { pthread_mutex_unlock(&g_lock); }
// In the child: closes every listed descriptor that is still the socket listed (fstat), so a
// number the host closed and reused is left alone.
inline void after_fork_child() {
    pthread_mutex_init(&g_lock, nullptr);
    const int saved = errno;
    for (Slot& s : g_slots) {
        if (!s.used) continue;
        struct stat st;
        if (fstat(s.fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s.dev && st.st_ino == s.ino) close(s.fd);
        s.used = false;
    }
    errno = saved;
}
inline void register_fork_handlers() { pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

// Lists fd; false when the list is full (the caller then closes it instead of keeping it).
inline bool add(int fd, dev_t dev, ino_t ino) {
    pthread_once(&g_once, register_fork_handlers);
    pthread_mutex_lock(&g_lock);
    bool added = false;
    for (Slot& s : g_slots)
        if (!s.used) {
            s = Slot{true, fd, dev, ino};
            added = true;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    return added;
}

// Takes fd, the socket dev/ino, off the list (it is about to be used, or closed). By identity,
// not by number alone: after the host closed a kept number by mistake, another thread's kept
// connection may have that number too, and must stay listed.
inline void remove(int fd, dev_t dev, ino_t ino) {
    pthread_mutex_lock(&g_lock);
    for (Slot& s : g_slots)
        if (s.used && s.fd == fd && s.dev == dev && s.ino == ino) {
            s.used = false;
            break;
        }
    pthread_mutex_unlock(&g_lock);
}

// One thread's kept connection: who connected it (SO_PEERCRED is read at connect), to which
// socket path, and the socket's identity (dev/ino) to tell it from a number the host reused.
// Where the record lives is the module's business (pam_cvat: thread_local; nss_cvat:
// thread-specific data).
struct Record {
    int fd = -1;  // -1: nothing kept
    pid_t pid = 0;
    uid_t euid = 0;
    gid_t egid = 0;
    dev_t dev = 0;
    ino_t ino = 0;
    size_t path_len = 0;
    char path[sizeof(sockaddr_un::sun_path)] = {};

    // Is fd still the socket that was kept (a forked child has its own copy of it)?
    bool same_socket() const {
        struct stat st;
        return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino;
    }
    // Gives up the descriptor: closed if it is still the socket, else left to whoever owns
    // the number now. errno is kept.
    void drop() {
        if (fd < 0) return;
        const int saved = errno;
        remove(fd, dev, ino);
        if (same_socket()) close(fd);
        fd = -1;
        errno = saved;
    }
    // The kept descriptor if this process, with its effective ids now, may send a request to
    // `p` on it (it is then no longer kept); else the record is dropped and -1 returned.
    int take(const char* p, size_t len) {
        if (fd < 0) return -1;
        if (pid == getpid() && euid == geteuid() && egid == getegid() && path_len == len &&
            memcmp(path, p, len) == 0 && same_socket()) {
            const int out = fd;
            remove(out, dev, ino);
            fd = -1;
            return out;
        }
        drop();
        return -1;
    }
    // Keeps `f`, connected to `p` by process `who` with those effective ids, in place of what
    // was kept; false (f untouched: the caller closes it) when this process or its ids are not
    // those any more, or the list is full.
    bool keep(int f, const char* p, size_t len, pid_t who, uid_t uid, gid_t gid) {
        struct stat st;
        if (f < 0 || len >= sizeof path || who != getpid() || uid != geteuid() || gid != getegid() ||
            fstat(f, &st) != 0)
            return false;
        drop();
        if (!add(f, st.st_dev, st.st_ino)) return false;
        fd = f;
        pid = who;
        euid = uid;
        egid = gid;
        dev = st.st_dev;
        ino = st.st_ino;
        memcpy(path, p, len);
        path_len = len;
        return true;
    }
};

}  // namespace cvat::kept_fds
