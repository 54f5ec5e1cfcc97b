// SPDX-License-Identifier: GPL-3.0-or-later
// The daemon's socket server: one epoll thread accepts clients and reads their first request
// (so an idle or slow client costs a few hundred bytes, not a thread); complete requests go to
// a bounded pool of worker threads, which do the blocking backend work and write the answer.
// A connection its client keeps after a plain answer is then parked in the workers' own epoll:
// the worker woken by its next request reads and serves it, with no hand-off through the I/O
// thread, and hands it back to the I/O thread only for what takes time (a frame not all there,
// a conversation, a close).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "result.hpp"
#include "service.hpp"
#include "unique_fd.hpp"

namespace cvat::helper {

// Creates the listening socket at `path` (a stale socket file is replaced; any other file
// there is an error), mode 0666: any local user may ask, SO_PEERCRED says who.
[[nodiscard]] Result<UniqueFd> listen_unix(const std::string& path);

class Server {
public:
    // `reload` is called on SIGHUP (on the I/O thread) and returns the new runtime, or an
    // error after which the running one stays.
    using Reloader = std::function<Result<std::shared_ptr<const Runtime>>()>;

    Server(UniqueFd listener, std::shared_ptr<const Runtime> runtime, Service service,
           Reloader reload);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Serves until SIGTERM/SIGINT (blocked and read through a signalfd). Returns 0 on a clean
    // stop.
    int run();

    std::shared_ptr<const Runtime> runtime() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cvat::helper
