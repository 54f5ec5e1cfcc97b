// SPDX-License-Identifier: GPL-3.0-or-later
// Request handling: one function per request type, behind one dispatch (OpenSSH monitor.c
// style). Runs on worker threads; the Runtime it reads is immutable and shared.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <sys/types.h>

#include "config.hpp"
#include "ldap_backend.hpp"
#include "protocol.hpp"

namespace cvat::helper {

// Who is asking, from SO_PEERCRED.
struct Peer {
    pid_t pid = -1;
    uid_t uid = static_cast<uid_t>(-1);
    gid_t gid = static_cast<gid_t>(-1);
};

// Everything a configuration gives: built whole at start and on reload, then never changed,
// so a reload swaps one pointer and requests in flight finish on the old one.
struct Runtime {
    Config config;
    std::unique_ptr<LdapBackend> ldap;  // null when the file has no ldap: section
};

[[nodiscard]] Result<std::shared_ptr<const Runtime>> build_runtime(Config config);

class Service {
public:
    // `privileged_uid`: besides root, the uid allowed to ask for explain/status (the daemon's
    // own user, so `sudo -u cvat-auth cvat-authctl` works).
    explicit Service(uid_t privileged_uid);

    // Answers one request. Never throws; a failure becomes a Verdict with an error status.
    proto::Response handle(const Runtime& rt, const Peer& peer, proto::Request& request) const;

private:
    proto::Response auth(const Runtime& rt, const proto::AuthRequest& r) const;
    proto::Response account(const Runtime& rt, const proto::AccountRequest& r) const;
    proto::Response session(const Runtime& rt, const proto::SessionRequest& r) const;
    proto::Response status(const Runtime& rt, const Peer& peer) const;
    proto::Response explain(const Runtime& rt, const Peer& peer, const proto::ExplainRequest& r) const;
    bool privileged(const Peer& peer) const;

    uid_t privileged_uid_;
    std::chrono::steady_clock::time_point started_;
};

// The one-line summary of a response for the request log (never a secret).
std::string describe_response(const proto::Response& response);

// True when `name` may be sent to a backend: non-empty, no control bytes. (Length is capped
// by the protocol; filter/DN escaping happens in the backend.)
bool plausible_user_name(std::string_view name) noexcept;

}  // namespace cvat::helper
