// SPDX-License-Identifier: GPL-3.0-or-later
// What a directory says about an account's password and state, in the daemon's terms: the
// password policy response control (draft-behera-ldap-password-policy-10) on binds and
// password changes, Active Directory's account attributes (MS-ADTS 2.2.16, 3.1.1.4.5), the
// OpenLDAP ppolicy operational attributes, and AD's unicodePwd encoding (MS-ADTS 3.1.1.3.1.5).
// Pure functions: time is a parameter, so tests control it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol.hpp"
#include "secret.hpp"

namespace cvat::helper {

// A status for the user and words for the screen (never a secret).
struct AccountVerdict {
    proto::Status status = proto::Status::ok;
    std::string message;
};

// The password policy response control, decoded (-1: the field was absent).
struct PolicyResponse {
    bool present = false;
    int expire_s = -1;   // timeBeforeExpiration
    int grace = -1;      // graceAuthNsRemaining
    int error = -1;      // LDAPPasswordPolicyError (PP_*), -1 for none
};

// The verdict a bind's policy control adds. `bound`: the bind succeeded. A successful bind
// gives ok (maybe with a warning) or new_authtok_reqd (changeAfterReset); a failed one gives a
// value only for accountLocked and passwordExpired, else nullopt (the bind error decides).
std::optional<AccountVerdict> bind_policy_verdict(bool bound, const PolicyResponse& p);

// Words for a ppolicy error on a password change (passwordTooShort, passwordInHistory, ...).
std::string policy_error_words(int error);

// Attribute values by lower-cased name, as the LDAP backend reads entries.
using AttrMap = std::map<std::string, std::vector<std::string>>;

// The account phase without a password: AD accountExpires (in the past: acct_expired),
// lockoutTime (non-zero: perm_denied; the domain's lockoutDuration is not read, so an expired
// lockout counts until the next successful logon resets it), pwdLastSet=0 (must change, unless
// userAccountControl says the password never expires); OpenLDAP pwdAccountLockedTime (locked)
// and pwdReset TRUE (must change). `now_unix_s`: the wall clock.
AccountVerdict directory_account_state(const AttrMap& attrs, std::int64_t now_unix_s);

// AD's unicodePwd value for `password`: the password in double quotes, UTF-16LE. nullopt
// when the password is not valid UTF-8 (or holds NUL).
std::optional<Secret> ad_unicode_pwd(std::string_view password);

// The user's words for AD's refusal of a unicodePwd change: `rc` the LDAP result code,
// `diag` the server's diagnostic text ("0000052D: Constraint violation ...").
AccountVerdict ad_change_refusal(int rc, const std::string& diag);

}  // namespace cvat::helper
