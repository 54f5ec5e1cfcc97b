// SPDX-License-Identifier: GPL-3.0-or-later
#include "service.hpp"

#include <exception>

#include "log.hpp"

namespace cvat::helper {

using proto::Role;
using proto::Status;

Result<std::shared_ptr<const Runtime>> build_runtime(Config config) {
    auto rt = std::make_shared<Runtime>();
    if (config.ldap.configured) {
        auto ldap = LdapBackend::create(std::move(config.ldap));
        if (!ldap) return tl::unexpected(ldap.error());
        rt->ldap = std::move(*ldap);
        config.ldap.configured = true;  // the moved-from section still says it exists
    }
    rt->config = std::move(config);
    return std::shared_ptr<const Runtime>(std::move(rt));
}

namespace {

proto::Verdict verdict(Status status, std::string message) {
    proto::Verdict v;
    v.status = status;
    v.message = std::move(message);
    return v;
}

// The verdict for a user the backend found: canonical name, role, attributes.
proto::Verdict user_verdict(const LdapOutcome& out) {
    proto::Verdict v = verdict(out.status, out.message);
    v.user = out.user.username;
    v.role = out.user.role.role;
    auto add = [&v](const char* key, const std::string& value) {
        if (!value.empty()) v.attributes.emplace_back(key, value);
    };
    add("email", out.user.email);
    add("first_name", out.user.first_name);
    add("last_name", out.user.last_name);
    v.attributes.emplace_back("idp", "ldap");
    add("dn", out.user.dn);
    return v;
}

const char* no_backend_message = "no login backend is configured for this user (no ldap: section)";

}  // namespace

bool plausible_user_name(std::string_view name) noexcept {
    if (name.empty()) return false;
    for (unsigned char c : name)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

Service::Service(uid_t privileged_uid)
    : privileged_uid_(privileged_uid), started_(std::chrono::steady_clock::now()) {}

bool Service::privileged(const Peer& peer) const {
    return peer.uid == 0 || peer.uid == privileged_uid_;
}

proto::Response Service::handle(const Runtime& rt, const Peer& peer, proto::Request& request) const {
    try {
        return std::visit(
            [&](auto& m) -> proto::Response {
                using T = std::decay_t<decltype(m)>;
                if constexpr (std::is_same_v<T, proto::AuthRequest>) return auth(rt, m);
                else if constexpr (std::is_same_v<T, proto::AccountRequest>) return account(rt, m);
                else if constexpr (std::is_same_v<T, proto::SessionRequest>) return session(rt, m);
                else if constexpr (std::is_same_v<T, proto::StatusRequest>) return status(rt, peer);
                else if constexpr (std::is_same_v<T, proto::ExplainRequest>) return explain(rt, peer, m);
                else if constexpr (std::is_same_v<T, proto::ConvReply>)
                    return verdict(Status::bad_request, "no conversation is in progress");
                else if constexpr (std::is_same_v<T, proto::PasswordRequest>)
                    return verdict(Status::not_supported, "password change is not available yet");
                else if constexpr (std::is_same_v<T, proto::PasswdByName> ||
                                   std::is_same_v<T, proto::PasswdByUid>) {
                    proto::PasswdReply r;
                    r.status = Status::not_supported;
                    return r;
                } else if constexpr (std::is_same_v<T, proto::GroupByName> ||
                                     std::is_same_v<T, proto::GroupByGid>) {
                    proto::GroupReply r;
                    r.status = Status::not_supported;
                    return r;
                } else {
                    static_assert(std::is_same_v<T, proto::InitGroups>);
                    proto::GroupsReply r;
                    r.status = Status::not_supported;
                    return r;
                }
            },
            request);
    } catch (const std::exception& e) {
        log::error("request failed: ", e.what());
    } catch (...) {
        log::error("request failed: unknown exception");
    }
    return verdict(Status::internal, "internal error in cvat-authd");
}

proto::Response Service::auth(const Runtime& rt, const proto::AuthRequest& r) const {
    if (!plausible_user_name(r.user)) return verdict(Status::user_unknown, "");
    if (r.method == proto::AuthMethod::device)
        return verdict(Status::not_supported,
                       "device login needs an OpenID Connect identity provider; none is configured");
    if (!rt.ldap) return verdict(Status::unavailable, no_backend_message);
    LdapOutcome out = rt.ldap->authenticate(r.user, r.password);
    if (out.status != Status::ok) {
        proto::Verdict v = verdict(out.status, out.message);
        // A user who proved the password but may not log in still gets the canonical name,
        // so the log and the message name the right account.
        if (out.status == Status::perm_denied) v.user = out.user.username;
        return v;
    }
    return user_verdict(out);
}

proto::Response Service::account(const Runtime& rt, const proto::AccountRequest& r) const {
    if (!plausible_user_name(r.user)) return verdict(Status::user_unknown, "");
    if (!rt.ldap) return verdict(Status::unavailable, no_backend_message);
    LdapOutcome out = rt.ldap->lookup(r.user);
    if (out.status != Status::ok) return verdict(out.status, out.message);
    proto::Verdict v = user_verdict(out);
    if (v.role < r.require_role) {
        v.status = Status::perm_denied;
        v.message = std::string("access requires the CVAT role ") + proto::role_name(r.require_role) +
                    "; " + v.user + " has the role " + proto::role_name(v.role);
    }
    return v;
}

proto::Response Service::session(const Runtime& rt, const proto::SessionRequest& r) const {
    if (!r.open) return verdict(Status::ok, "");
    if (!plausible_user_name(r.user)) return verdict(Status::user_unknown, "");
    if (!rt.ldap) return verdict(Status::unavailable, no_backend_message);
    LdapOutcome out = rt.ldap->lookup(r.user);
    if (out.status != Status::ok) return verdict(out.status, out.message);
    return user_verdict(out);
}

proto::Response Service::status(const Runtime& rt, const Peer& peer) const {
    proto::StatusReply s;
    s.version = CVAT_AUTH_VERSION;
    s.uptime_s = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::steady_clock::now() - started_)
                                                .count());
    // Probing opens connections: only root and the daemon's user may ask for it.
    if (!privileged(peer)) {
        s.backends.push_back({"backends", false, "not shown: run as root to probe the servers"});
        return s;
    }
    if (rt.ldap) {
        for (auto& b : rt.ldap->probe()) s.backends.push_back(std::move(b));
    }
    if (rt.config.sso.configured) {
        for (const auto& idp : rt.config.sso.identity_providers)
            s.backends.push_back({"sso " + idp.id, false,
                                  "configured; OpenID Connect/SAML logins are not available yet"});
    }
    return s;
}

proto::Response Service::explain(const Runtime& rt, const Peer& peer, const proto::ExplainRequest& r) const {
    proto::ExplainReply e;
    if (!privileged(peer)) {
        e.status = Status::perm_denied;
        e.lines.push_back("explain shows group memberships: run it as root");
        return e;
    }
    if (!plausible_user_name(r.user)) {
        e.status = Status::user_unknown;
        e.lines.push_back("the user name is empty or holds control characters");
        return e;
    }
    if (!rt.ldap) {
        e.status = Status::unavailable;
        e.lines.push_back(no_backend_message);
        return e;
    }
    LdapOutcome out = rt.ldap->explain(r.user);
    e.status = out.status;
    e.role = out.user.role.role;
    e.lines = std::move(out.trace);
    if (e.lines.empty() && !out.message.empty()) e.lines.push_back(out.message);
    return e;
}

std::string describe_response(const proto::Response& response) {
    return std::visit(
        [](const auto& m) -> std::string {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, proto::Verdict>) {
                std::string s = proto::status_name(m.status);
                if (!m.user.empty()) s += " user=" + log_safe(m.user);
                if (m.status == Status::ok) s += std::string(" role=") + proto::role_name(m.role);
                if (m.status != Status::ok && !m.message.empty()) s += " (" + log_safe(m.message) + ")";
                return s;
            } else if constexpr (std::is_same_v<T, proto::Prompt>) {
                return "prompt";
            } else if constexpr (std::is_same_v<T, proto::StatusReply>) {
                return "status";
            } else {
                return proto::status_name(m.status);
            }
        },
        response);
}

}  // namespace cvat::helper
