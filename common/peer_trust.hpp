// SPDX-License-Identifier: LGPL-2.1-or-later
// Who the modules take for cvat-authd. A password goes only to a socket whose listener runs as
// root, as this process's own user, or as a user that owns the socket's place outright; nss.mc,
// which every process on the host believes, counts only when such a user owns it. "Owns its
// place": every directory from the file's up to / belongs to root or to that user and is
// writable by no one else, so no third user can have put a socket or a file there (the
// packaged daemon runs as _cvat-auth in /run/cvat-auth, 0755, its own). A daemon socket an
// admin put under /tmp (world-writable) is then believed only from root: while the daemon is
// stopped, any local user could bind that path. libc only: nss_cvat links nothing else.
#pragma once

#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace cvat::trust {

// May a file or socket at `path` owned (or listened on) by `uid` be taken for the daemon's?
inline bool owner_trusted(uid_t uid, const char* path) {
    if (uid == 0 || uid == geteuid()) return true;
    char dir[PATH_MAX];
    const size_t n = strlen(path);
    if (n == 0 || n >= sizeof dir || path[0] != '/') return false;
    memcpy(dir, path, n + 1);
    for (;;) {
        char* slash = strrchr(dir, '/');
        if (slash == dir) dir[1] = '\0';  // up to "/"
        else *slash = '\0';
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return false;
        if ((st.st_uid != 0 && st.st_uid != uid) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) return false;
        if (dir[1] == '\0') return true;
    }
}

// The uid of the process that listens on the other end of a connected Unix socket (as it was
// when that process called listen()); false if the kernel does not say.
inline bool peer_uid(int fd, uid_t& uid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) return false;
    uid = cred.uid;
    return true;
}

}  // namespace cvat::trust
