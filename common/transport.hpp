// SPDX-License-Identifier: LGPL-2.1-or-later
// Blocking client side of the protocol with a deadline on every wait. Used by pam_cvat,
// nss_cvat and cvat-authctl; safe inside a host process (CLOEXEC, MSG_NOSIGNAL, no threads).
#pragma once

#include <cstdint>
#include <string>

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

}  // namespace cvat::proto
