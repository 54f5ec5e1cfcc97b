// SPDX-License-Identifier: LGPL-2.1-or-later
// Who the modules take for cvat-authd. A password goes only to a socket whose listener runs as
// root, as this process's own user, or as a user that owns the socket's place outright; nss.mc,
// which every process on the host believes, counts only when root or such a user owns it.
// "Owns its place": every directory from the file's up to / (links resolved) belongs to root or
// to that user and is writable by no one else, so no third user can have put a socket or a file
// there (the packaged daemon runs as _cvat-auth in /run/cvat-auth, 0755, its own). And every
// symbolic link on the way must be root's (in a directory only root can write): a link planted
// in /tmp could point at another root service's socket. A daemon socket an admin put under /tmp
// is then believed only from root (or the caller's own user): while the daemon is stopped, any
// local user could bind that path. libc only: nss_cvat links nothing else.
#pragma once

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace cvat::trust {

// Is the directory `dir` owned by root or `uid`, and writable by no one else?
inline bool only_theirs(const char* dir, uid_t uid) {
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_uid == 0 || st.st_uid == uid) &&
           (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

// Is every symbolic link on the way to `path` (an absolute path) root's doing: in a directory
// that root owns and no one else may write? A link a user planted in a directory of theirs
// (or in /tmp) could lead anywhere, to another root service's socket too.
inline bool links_safe(const char* path) {
    char prefix[PATH_MAX];
    const size_t n = strlen(path);
    if (n == 0 || n >= sizeof prefix || path[0] != '/') return false;
    for (size_t end = 1; end <= n; ++end) {
        if (end < n && path[end] != '/') continue;
        if (path[end - 1] == '/') continue;  // "//", or a trailing '/'
        memcpy(prefix, path, end);
        prefix[end] = '\0';
        struct stat st;
        if (lstat(prefix, &st) != 0) return false;
        if (!S_ISLNK(st.st_mode)) continue;
        // The directory holding the link (as reached by the path so far).
        char* slash = strrchr(prefix, '/');
        if (slash == prefix) prefix[1] = '\0';
        else *slash = '\0';
        if (!only_theirs(prefix, 0)) return false;
    }
    return true;
}

// May a file or socket at `path` owned (or listened on) by `uid` be taken for the daemon's?
// `self`: the caller's own effective user counts as trusted too (a listener: a user's own daemon
// in a test; not for nss.mc, which a process maps once and keeps across seteuid()).
inline bool owner_trusted(uid_t uid, const char* path, bool self = true) {
    if (!links_safe(path)) return false;
    if (uid == 0 || (self && uid == geteuid())) return true;
    char dir[PATH_MAX];
    if (realpath(path, dir) == nullptr) return false;
    for (;;) {
        char* slash = strrchr(dir, '/');
        if (slash == nullptr) return false;
        if (slash == dir) dir[1] = '\0';  // up to "/"
        else *slash = '\0';
        if (!only_theirs(dir, uid)) return false;
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
