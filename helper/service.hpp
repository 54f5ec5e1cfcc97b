// SPDX-License-Identifier: GPL-3.0-or-later
// Request handling: one function per request type, behind one dispatch (OpenSSH monitor.c
// style). Runs on worker threads; the Runtime it reads is immutable and shared.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/types.h>

#include "accounts.hpp"
#include "config.hpp"
#include "conversation.hpp"
#include "ldap_backend.hpp"
#include "oidc.hpp"
#include "protocol.hpp"
#include "saml.hpp"
#include "throttle.hpp"

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
    std::unique_ptr<LdapBackend> ldap;                // null when the file has no ldap: section
    std::vector<std::unique_ptr<OidcProvider>> oidc;  // the sso: section's OIDC entries, in order
    std::vector<std::unique_ptr<SamlProvider>> saml;  // the sso: section's SAML entries, in order
};

[[nodiscard]] Result<std::shared_ptr<const Runtime>> build_runtime(Config config);

// Where a login goes, and why (for explain and the debug log).
struct Route {
    enum class Kind { ldap, oidc, none, saml } kind = Kind::none;
    OidcProvider* idp = nullptr;   // kind oidc
    std::string why;
    SamlProvider* saml = nullptr;  // kind saml
    // The IdP's section (oidc or saml), else null.
    const IdentityProvider* idp_config() const {
        return idp != nullptr ? &idp->config() : saml != nullptr ? &saml->config() : nullptr;
    }
};
Route route_user(const Runtime& rt, std::string_view user, std::string_view forced_idp);

// Users who signed in through an IdP lately: the account and session phases that follow a
// login (nginx asks both on every request) are answered from here, since an IdP cannot be
// asked about a user without the user's credentials. Bounded in size and age.
class RecentSignIns {
public:
    // `trace` (the IdP's steps and claims, no secrets) is kept for `cvat-authctl explain`.
    void remember(const std::string& idp, const proto::Verdict& verdict, std::vector<std::string> trace,
                  std::int64_t now_s);
    // A sign-in no older than `max_age_s` (at most the 10 minutes kept).
    std::optional<proto::Verdict> find(const std::string& idp, const std::string& user, std::int64_t now_s,
                                       std::vector<std::string>* trace = nullptr, std::int64_t max_age_s = kTtlS);
    void clear();

private:
    static constexpr std::size_t kMaxEntries = 10000;
    static constexpr std::int64_t kTtlS = 600;
    struct Entry {
        proto::Verdict verdict;
        std::vector<std::string> trace;
        std::int64_t at_s;
    };
    std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
};

// How long wrong-password answers took lately, per backend: an unknown user's answer is held
// until a time drawn from these, so both take the same time (no user enumeration by timing).
// Thread-safe, a few hundred bytes per backend.
class FailureTimes {
public:
    void record(const std::string& backend, std::int64_t ms);
    // One of the recent durations at random; 0 with none yet.
    std::int64_t sample(const std::string& backend);

private:
    static constexpr std::size_t kKept = 64;
    std::mutex mutex_;
    std::unordered_map<std::string, std::vector<std::int64_t>> ring_;
    std::unordered_map<std::string, std::size_t> next_;
};

// A response, and for a Prompt the conversation that continues it.
// With `wake_at_ms` set, nothing is sent now: the server holds the connection without a
// thread until then and calls the conversation's wake() for the answer (a throttled login).
struct Reply {
    proto::Response response;
    std::unique_ptr<Conversation> conversation;
    std::int64_t wake_at_ms = 0;
};

class Service {
public:
    // `privileged_uid`: besides root, the uid allowed to ask for explain/status (the daemon's
    // own user, so `sudo -u cvat-auth cvat-authctl` works).
    // `accounts`: the caches and NSS answers; null serves no NSS requests (tests of the
    // login paths alone).
    explicit Service(uid_t privileged_uid, std::shared_ptr<Accounts> accounts = nullptr);

    // The runtime now in force (at start and after each reload).
    void use(const std::shared_ptr<const Runtime>& rt) const;

    // Answers one request. Never throws; a failure becomes a Verdict with an error status.
    Reply handle(const std::shared_ptr<const Runtime>& rt, const Peer& peer, proto::Request& request) const;

    // The answer to `request` if it needs no directory, IdP, disk or wait (a password login
    // the verdict cache answers), else nothing and handle() must run. Never blocks and never
    // throws: the thread that read the request (the server's I/O thread, or a worker serving a
    // parked connection) asks it first, concurrently with other workers.
    std::optional<proto::Response> answer_now(const Runtime& rt, const proto::Request& request) const;

private:
    Reply auth(const std::shared_ptr<const Runtime>& rt, const Peer& peer, proto::AuthRequest& r) const;
    // The verdict cache's answer to this password login through `route`, if it has one.
    std::optional<proto::Verdict> cached_login(const Runtime& rt, const Route& route, const proto::AuthRequest& r) const;
    // The login itself (after the throttle let it through), its outcome counted, and the
    // time before which the answer must not go (an unknown user padded to a wrong password's
    // time); 0: at once.
    struct Timed {
        proto::Verdict verdict;
        std::int64_t answer_at_ms = 0;
    };
    Timed checked_login(const Runtime& rt, const Throttle::Keys& keys, const proto::AuthRequest& r) const;
    // `password_backend`: set to the backend of a password login (not a token or assertion).
    proto::Verdict run_login(const Runtime& rt, const proto::AuthRequest& r, std::string* password_backend) const;
    proto::Verdict password_login(const Runtime& rt, const Route& route, const proto::AuthRequest& r) const;
    proto::Verdict token_login(const Runtime& rt, const proto::AuthRequest& r) const;
    proto::Verdict saml_assertion_login(const Runtime& rt, const proto::AuthRequest& r) const;
    proto::Verdict saml_verdict(const Runtime& rt, const SamlProvider& idp, const SamlOutcome& out,
                                const std::string& login, const Secret* password) const;
    Reply device_login(const std::shared_ptr<const Runtime>& rt, const Route& route,
                       const proto::AuthRequest& r) const;
    proto::Verdict oidc_verdict(const Runtime& rt, const OidcProvider& idp, const OidcOutcome& out,
                                const std::string& login, const Secret* password) const;
    proto::Response nss(const Runtime& rt, const proto::Request& request) const;
    proto::Response cache(const Runtime& rt, const Peer& peer, const proto::CacheRequest& r) const;
    proto::Response account(const Runtime& rt, const proto::AccountRequest& r) const;
    proto::Response session(const Runtime& rt, const proto::SessionRequest& r) const;
    // `account_phase`: the account's state (locked, expired, must change) decides too.
    proto::Verdict lookup(const Runtime& rt, const std::string& user, const std::string& idp,
                          bool account_phase = false) const;
    // A password change proves the old password, so it is throttled as a login is (the same
    // keys and tables: guesses by login and by change count together).
    Reply change_password(const std::shared_ptr<const Runtime>& rt, const Peer& peer, proto::PasswordRequest& r) const;
    proto::Verdict checked_change(const Runtime& rt, const Throttle::Keys& keys, const proto::PasswordRequest& r) const;
    proto::Verdict run_change(const Runtime& rt, const proto::PasswordRequest& r) const;
    proto::Response status(const Runtime& rt, const Peer& peer) const;
    proto::Response explain(const Runtime& rt, const Peer& peer, const proto::ExplainRequest& r) const;
    bool privileged(const Peer& peer) const;

    uid_t privileged_uid_;
    std::chrono::steady_clock::time_point started_;
    std::shared_ptr<RecentSignIns> recent_;
    std::shared_ptr<Accounts> accounts_;
    std::shared_ptr<Throttle> throttle_;
    std::shared_ptr<FailureTimes> failure_times_;
};

// The one-line summary of a response for the request log (never a secret).
std::string describe_response(const proto::Response& response);

// True when `name` may be sent to a backend: non-empty, no control bytes. (Length is capped
// by the protocol; filter/DN escaping happens in the backend.)
bool plausible_user_name(std::string_view name) noexcept;

}  // namespace cvat::helper
