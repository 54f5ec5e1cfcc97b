// SPDX-License-Identifier: LGPL-2.1-or-later
// Blocking client side of the protocol with a deadline on every wait. Used by pam_cvat,
// nss_cvat and cvat-authctl; safe inside a host process (CLOEXEC, MSG_NOSIGNAL, no threads;
// the one lock, kept_fds.hpp's, is taken and released around fork).
#pragma once

#include <cstdint>
#include <string>

#include <sys/types.h>

#include "protocol.hpp"
#include "result.hpp"
#include "secret.hpp"
#include "unique_fd.hpp"

namespace cvat::proto {

// A point on CLOCK_MONOTONIC after which a wait fails with ErrorCode::timeout.
class Deadline {
public:
    static Deadline after_ms(std::int64_t ms) noexcept;
    // Milliseconds left, at least 0, for poll().
    int remaining_ms() const noexcept;
    bool expired() const noexcept { return remaining_ms() == 0; }

private:
    std::int64_t at_ms_ = 0;
};

std::int64_t monotonic_ms() noexcept;

// Connects to the daemon's socket. A missing socket or a refused connection is `unavailable`.
[[nodiscard]] Result<UniqueFd> connect_unix(const std::string& path, Deadline deadline);

// Writes a whole frame. Fails with timeout/io; never raises SIGPIPE.
[[nodiscard]] Result<void> send_frame(int fd, const SecureBytes& frame, Deadline deadline);

// Reads one frame and returns its body (after the length word). The length is checked
// against kMaxFrame before any byte of the body is read. A closed peer is `unavailable`.
[[nodiscard]] Result<SecureBytes> recv_frame(int fd, Deadline deadline);

// One round trip: encode, send, receive, decode.
[[nodiscard]] Result<Response> call(int fd, const Request& request, Deadline deadline);

// A connection kept between requests, so that a web server's next request costs one round
// trip and not a connect, an accept and two closes besides. One per thread: the thread's next
// request takes it if it is still this process's, with the same effective uid and gid (the
// daemon reads SO_PEERCRED once, at connect), to the same socket, and still the socket it was
// (kept_fds.hpp: a number the host reused is left alone; a forked child closes every thread's
// kept connection). Anything else connects afresh. The daemon closes a kept connection idle
// for helper.client_timeout, or when a uid or the daemon is at its connection cap; the caller
// then retries once on a new connection (`reused` says when that may be, and request_unread
// whether the failure allows it).
struct Link {
    UniqueFd fd;
    bool reused = false;
    // Who connected: the process and its effective ids at connect() (what SO_PEERCRED says).
    pid_t pid = 0;
    uid_t euid = 0;
    gid_t egid = 0;
};
[[nodiscard]] Result<Link> take_connection(const std::string& path, Deadline deadline);
// The failure shows that the daemon never read the request (it had closed the connection
// first: EPIPE, or ECONNRESET with the request unread), so sending it again cannot repeat it.
// A plain end of stream after the request went out can follow a request the daemon carried
// out (and then died): that one is not sent again.
[[nodiscard]] bool request_unread(const Error& e) noexcept;
// A new connection, whatever is kept.
[[nodiscard]] Result<Link> open_connection(const std::string& path, Deadline deadline);
// Keeps the link for this thread's next request to `path` (unless the process or its ids
// changed since it connected). Only a link whose last answer was final (no conversation in
// progress, nothing unread) may be kept.
void keep_connection(const std::string& path, Link link) noexcept;

}  // namespace cvat::proto
