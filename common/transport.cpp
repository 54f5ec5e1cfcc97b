// SPDX-License-Identifier: LGPL-2.1-or-later
#include "transport.hpp"

#include "kept_fds.hpp"
#include "peer_trust.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace cvat::proto {

std::int64_t monotonic_ms() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Deadline Deadline::after_ms(std::int64_t ms) noexcept {
    Deadline d;
    d.at_ms_ = monotonic_ms() + (ms < 0 ? 0 : ms);
    return d;
}

int Deadline::remaining_ms() const noexcept {
    std::int64_t left = at_ms_ - monotonic_ms();
    if (left <= 0) return 0;
    return left > 0x7fffffff ? 0x7fffffff : static_cast<int>(left);
}

namespace {

// The words of a failure that shows the daemon never read the request (see request_unread).
constexpr const char* kClosedUnread = "cvat-authd closed the connection before reading the request";

// Waits for `events` on fd until the deadline.
Result<void> wait_for(int fd, short events, Deadline deadline) {
    for (;;) {
        int left = deadline.remaining_ms();
        if (left == 0) return fail(ErrorCode::timeout, "timed out waiting for cvat-authd");
        pollfd p{fd, events, 0};
        int rc = ::poll(&p, 1, left);
        if (rc > 0) return {};
        if (rc == 0) return fail(ErrorCode::timeout, "timed out waiting for cvat-authd");
        if (errno != EINTR) return fail(ErrorCode::io, std::string("poll: ") + std::strerror(errno));
    }
}

Result<void> read_exact(int fd, std::uint8_t* out, std::size_t n, Deadline deadline) {
    std::size_t got = 0;
    while (got < n) {
        ssize_t rc = ::recv(fd, out + got, n - got, MSG_DONTWAIT);
        if (rc > 0) {
            got += static_cast<std::size_t>(rc);
            continue;
        }
        // The daemon read what we sent and hung up: it may have acted on the request.
        if (rc == 0) return fail(ErrorCode::unavailable, "cvat-authd closed the connection");
        if (errno == EINTR) continue;
        // What a Unix socket answers when the daemon closed it with our request unread.
        if (errno == ECONNRESET) return fail(ErrorCode::unavailable, kClosedUnread);
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return fail(ErrorCode::io, std::string("recv: ") + std::strerror(errno));
        auto w = wait_for(fd, POLLIN, deadline);
        if (!w) return w;
    }
    return {};
}

}  // namespace

Result<UniqueFd> connect_unix(const std::string& path, Deadline deadline) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path))
        return fail(ErrorCode::invalid_argument, "socket path empty or too long");
    std::memcpy(addr.sun_path, path.data(), path.size());

    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return fail(ErrorCode::io, std::string("socket: ") + std::strerror(errno));
    int rc;
    for (;;) {
        rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        if (rc == 0 || (errno != EINTR && errno != EAGAIN)) break;
        if (errno == EINTR) continue;
        // The daemon's listen backlog is full (a burst of clients): a non-blocking connect to a
        // Unix socket then fails with EAGAIN and leaves the socket unconnected (it does not
        // complete later, and poll() reports it writable at once): try again until the deadline.
        if (deadline.remaining_ms() == 0)
            return fail(ErrorCode::unavailable, "cannot connect to " + path + ": its listen queue stayed full");
        ::poll(nullptr, 0, std::min(5, deadline.remaining_ms()));
    }
    if (rc != 0) {
        if (errno == EINPROGRESS) {
            auto w = wait_for(fd.get(), POLLOUT, deadline);
            if (!w) return tl::unexpected(w.error());
            int err = 0;
            socklen_t len = sizeof(err);
            if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
                return fail(ErrorCode::unavailable, "cannot connect to " + path + ": " + std::strerror(err ? err : errno));
        } else {
            return fail(ErrorCode::unavailable, "cannot connect to " + path + ": " + std::strerror(errno));
        }
    }
    return fd;
}

Result<void> send_frame(int fd, const SecureBytes& frame, Deadline deadline) {
    std::size_t sent = 0;
    while (sent < frame.size()) {
        ssize_t rc = ::send(fd, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (rc > 0) {
            sent += static_cast<std::size_t>(rc);
            continue;
        }
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            auto w = wait_for(fd, POLLOUT, deadline);
            if (!w) return w;
            continue;
        }
        if (rc < 0 && (errno == EPIPE || errno == ECONNRESET)) return fail(ErrorCode::unavailable, kClosedUnread);
        return fail(ErrorCode::io, std::string("send: ") + std::strerror(errno));
    }
    return {};
}

Result<SecureBytes> recv_frame(int fd, Deadline deadline) {
    std::uint8_t header[kHeaderSize];
    auto h = read_exact(fd, header, sizeof(header), deadline);
    if (!h) return tl::unexpected(h.error());
    auto len = frame_length(std::span<const std::uint8_t, kHeaderSize>(header));
    if (!len) return tl::unexpected(len.error());
    SecureBytes body(*len);
    auto b = read_exact(fd, body.data(), body.size(), deadline);
    if (!b) return tl::unexpected(b.error());
    return body;
}

Result<Response> call(int fd, const Request& request, Deadline deadline) {
    auto frame = encode_request(request);
    if (!frame) return tl::unexpected(frame.error());
    auto sent = send_frame(fd, *frame, deadline);
    if (!sent) return tl::unexpected(sent.error());
    // The answer cannot be there yet: wait first rather than try a read that would block.
    auto w = wait_for(fd, POLLIN, deadline);
    if (!w) return tl::unexpected(w.error());
    auto body = recv_frame(fd, deadline);
    if (!body) return tl::unexpected(body.error());
    return decode_response(*body);
}

namespace {

// This thread's kept connection (see take_connection), given up when the thread ends.
struct ThreadKept : kept_fds::Record {
    ~ThreadKept() { drop(); }
};
thread_local ThreadKept t_kept;

}  // namespace

bool request_unread(const Error& e) noexcept { return e.code == ErrorCode::unavailable && e.detail == kClosedUnread; }

Result<Link> take_connection(const std::string& path, Deadline deadline) {
    ThreadKept& k = t_kept;
    if (const int fd = k.take(path.data(), path.size()); fd >= 0) return Link{UniqueFd(fd), true, k.pid, k.euid, k.egid};
    return open_connection(path, deadline);
}

Result<Link> open_connection(const std::string& path, Deadline deadline) {
    Link l{UniqueFd(), false, ::getpid(), ::geteuid(), ::getegid()};
    auto fd = connect_unix(path, deadline);
    if (!fd) return tl::unexpected(fd.error());
    // Nothing is sent to a listener that is not the daemon's (peer_trust.hpp).
    uid_t uid = 0;
    if (!trust::peer_uid(fd->get(), uid))
        return fail(ErrorCode::unavailable, "cannot tell who listens on " + path + ": " + std::strerror(errno));
    if (!trust::owner_trusted(uid, path.c_str()))
        return fail(ErrorCode::unavailable,
                    "not sent to " + path + ": a symbolic link on the way is not root's, or its listener (uid " +
                        std::to_string(uid) +
                        ") is neither root nor this user and does not own every directory on the way alone");
    l.fd = std::move(*fd);
    return l;
}

void keep_connection(const std::string& path, Link link) noexcept {
    if (link.fd && t_kept.keep(link.fd.get(), path.data(), path.size(), link.pid, link.euid, link.egid))
        (void)link.fd.release();  // else closed with the link
}

}  // namespace cvat::proto
