// SPDX-License-Identifier: GPL-3.0-or-later
// A Unix-socket listener run by another user (nobody), for the modules' tests of whom they
// take for cvat-authd (common/peer_trust.hpp). Needs root.
#pragma once

#include <cstring>
#include <string>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secret.hpp"

namespace cvat::test {

// A listener run by nobody (uid/gid 65534) in a child process: answers whatever comes on a
// connection with `reply` (when given) and reports, per connection, how many bytes it read.
struct NobodyPeer {
    pid_t pid = -1;
    int report = -1;
    NobodyPeer(const std::string& path, const SecureBytes* reply) {
        int ready[2], rep[2];
        if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(rep, O_CLOEXEC) != 0) return;
        pid = ::fork();
        if (pid == 0) {
            ::close(ready[0]);
            ::close(rep[0]);
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a failed test leaves no listener behind
            if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(2);
            int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un a{};
            a.sun_family = AF_UNIX;
            std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
            if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 4) != 0) _exit(3);
            (void)!::write(ready[1], "r", 1);
            for (;;) {
                pollfd lp{l, POLLIN, 0};
                if (::poll(&lp, 1, 10000) != 1) _exit(0);
                int c = ::accept(l, nullptr, nullptr);
                if (c < 0) _exit(4);
                int total = 0;
                pollfd p{c, POLLIN, 0};
                char buf[4096];
                ssize_t n = 0;
                while (::poll(&p, 1, 300) == 1 && (n = ::read(c, buf, sizeof buf)) > 0) {
                    total += static_cast<int>(n);
                    if (reply != nullptr) (void)!::write(c, reply->data(), reply->size());
                }
                (void)!::write(rep[1], &total, sizeof total);
                ::close(c);
            }
        }
        ::close(ready[1]);
        ::close(rep[1]);
        report = rep[0];
        char r = 0;
        pollfd p{ready[0], POLLIN, 0};
        const bool up = ::poll(&p, 1, 5000) == 1 && ::read(ready[0], &r, 1) == 1;
        ::close(ready[0]);
        if (!up) pid = -1;
    }
    bool started() const { return pid > 0; }
    // Stops it once it has reported a connection (or after 2 s); the bytes it read over all
    // connections, -1 if it had none.
    int finish() {
        if (pid <= 0) return -1;
        pollfd p{report, POLLIN, 0};
        (void)::poll(&p, 1, 2000);
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        int total = -1, n = 0;
        while (::read(report, &n, sizeof n) == sizeof n) total = (total < 0 ? 0 : total) + n;
        ::close(report);
        return total;
    }
};

}  // namespace cvat::test
