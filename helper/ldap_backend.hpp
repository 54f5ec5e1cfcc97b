// SPDX-License-Identifier: GPL-3.0-or-later
// The LDAP backend: search-then-bind over pooled connections with failover (DESIGN.md §5).
// Thread-safe: the daemon's workers call it concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "protocol.hpp"
#include "roles.hpp"
#include "secret.hpp"

namespace cvat::helper {

// What the directory says about one user.
struct LdapUser {
    std::string dn;
    std::string username;     // canonical: the user_attr_map user_name attribute's value
    std::string email;
    std::string first_name;
    std::string last_name;
    std::vector<std::string> groups;   // group DNs after the group_type walk
    bool disabled = false;             // AD userAccountControl ACCOUNTDISABLE (0x2)
    // lookup() only: the account's state for the account phase (AD accountExpires, lockoutTime,
    // pwdLastSet; ppolicy pwdAccountLockedTime, pwdReset). ok, acct_expired, perm_denied
    // (locked) or new_authtok_reqd; lookup() itself stays ok, so NSS still sees the user.
    proto::Status account_status = proto::Status::ok;
    std::string account_message;
    RoleDecision role;
    // For NSS: POSIX IDs when the entry has them, and the account's immutable identifier,
    // "sid:S-1-5-…" (AD objectSid), "guid:…" (objectGUID), "ipa:…" (ipaUniqueID),
    // "uuid:…" (entryUUID), "nsuniqueid:…" (389-ds), else "dn:<normalised DN>".
    std::optional<std::uint32_t> uid_number;
    std::optional<std::uint32_t> gid_number;
    std::string immutable_id;
};

struct LdapOutcome {
    proto::Status status = proto::Status::internal;
    std::string message;               // for the user's screen / authctl; never a secret
    LdapUser user;                     // filled when the user was found
    std::vector<std::string> trace;    // steps taken, for `cvat-authctl explain`
};

class LdapBackend {
public:
    // Builds the pools; opens no connection yet (the first request does). Takes the section
    // whole, bind password included: from then on the backend is the secret's only holder.
    [[nodiscard]] static Result<std::unique_ptr<LdapBackend>> create(LdapConfig config);
    virtual ~LdapBackend() = default;

    // Search-then-bind. Empty password: auth_err before any bind. Unknown user: user_unknown.
    // No server answers within the timeouts: unavailable. Disabled account or no role under
    // default_role none: perm_denied. Success: ok with the user filled in.
    virtual LdapOutcome authenticate(std::string_view user, const Secret& password) = 0;

    // authenticate() answers ok with a `message` when the password policy warns (expires
    // soon, grace logins left); new_authtok_reqd when the password expired or must change.

    // Changes the user's password, as the user, proving `old_password`: the RFC 3062 Password
    // Modify operation, or on Active Directory (rootDSE capability 1.2.840.113556.1.4.800) the
    // unicodePwd delete-old/add-new modify, which needs TLS. ok; auth_err for a wrong old
    // password; authtok_err with the server's reason for a refused new one; perm_denied and
    // acct_expired for locked and expired accounts; unavailable as for logins.
    virtual LdapOutcome change_password(std::string_view user, const Secret& old_password,
                                        const Secret& new_password) = 0;

    // Account check without a password: exists, enabled, role (for pam_sm_acct_mgmt).
    virtual LdapOutcome lookup(std::string_view user) = 0;

    // The user whose uidNumber is `uid` (getpwuid of a user not cached yet), as lookup() gives.
    virtual LdapOutcome lookup_uid(std::uint32_t uid) = 0;

    // Like lookup(), with `trace` filled: groups found, role groups matched, and why.
    virtual LdapOutcome explain(std::string_view user) = 0;

    // Each server of the URI list: connect, StartTLS if configured, service bind.
    virtual std::vector<proto::BackendState> probe() = 0;

    // Drops the group graph cache (ldap.group_cache_ttl): `cvat-authctl cache expire|flush`.
    virtual void forget_groups() = 0;
};

}  // namespace cvat::helper
