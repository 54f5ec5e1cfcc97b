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
#include <sys/stat.h>
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

// Takes fd off the list (it is about to be used, or closed).
inline void remove(int fd) {
    pthread_mutex_lock(&g_lock);
    for (Slot& s : g_slots)
        if (s.used && s.fd == fd) {
            s.used = false;
            break;
        }
    pthread_mutex_unlock(&g_lock);
}

}  // namespace cvat::kept_fds
