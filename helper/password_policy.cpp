// SPDX-License-Identifier: GPL-3.0-or-later
#include "password_policy.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <ldap.h>

#include "secret.hpp"

namespace cvat::helper {

using proto::Status;

namespace {

// Seconds between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
constexpr std::int64_t kFiletimeEpochOffsetS = 11644473600;
// accountExpires values that mean "never" (MS-ADTS 2.2.16 / accountExpires).
constexpr std::int64_t kNeverExpires = 0x7FFFFFFFFFFFFFFF;
// userAccountControl DONT_EXPIRE_PASSWORD: pwdLastSet=0 then forces nothing.
constexpr long long kUacDontExpirePassword = 0x10000;

const std::string* first(const AttrMap& attrs, const char* name) {
    auto it = attrs.find(name);
    return it == attrs.end() || it->second.empty() ? nullptr : &it->second.front();
}

std::optional<long long> number(const std::string* text) {
    if (text == nullptr) return std::nullopt;
    long long v = 0;
    auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
    if (text->empty() || ec != std::errc() || p != text->data() + text->size()) return std::nullopt;
    return v;
}

std::string upper(std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

// "3 days", "1 hour", "5 minutes": the largest unit that is at least one.
std::string duration_words(int seconds) {
    auto unit = [](int n, const char* one) { return std::to_string(n) + " " + one + (n == 1 ? "" : "s"); };
    if (seconds >= 86400) return unit(seconds / 86400, "day");
    if (seconds >= 3600) return unit(seconds / 3600, "hour");
    return unit(std::max(1, seconds / 60), "minute");
}

}  // namespace

std::optional<AccountVerdict> bind_policy_verdict(bool bound, const PolicyResponse& p) {
    if (!p.present) return bound ? std::optional<AccountVerdict>(AccountVerdict{}) : std::nullopt;
    if (p.error == PP_accountLocked) return AccountVerdict{Status::perm_denied, "account locked"};
    if (p.error == PP_passwordExpired)
        return AccountVerdict{Status::new_authtok_reqd, "your password has expired; change it now"};
    if (!bound) return std::nullopt;
    if (p.error == PP_changeAfterReset)
        return AccountVerdict{Status::new_authtok_reqd, "your password was reset; change it now"};
    if (p.grace >= 0)
        return AccountVerdict{Status::ok, "your password has expired; grace logins left: " + std::to_string(p.grace) +
                                              ". Change it now."};
    if (p.expire_s > 0) return AccountVerdict{Status::ok, "your password expires in " + duration_words(p.expire_s)};
    return AccountVerdict{};
}

std::string policy_error_words(int error) {
    switch (error) {
    case PP_passwordExpired: return "your password has expired";
    case PP_accountLocked: return "account locked";
    case PP_changeAfterReset: return "your password must be changed";
    case PP_passwordModNotAllowed: return "the directory does not let users change their password";
    case PP_mustSupplyOldPassword: return "the current password is required";
    case PP_insufficientPasswordQuality: return "the new password does not meet the quality rules";
    case PP_passwordTooShort: return "the new password is too short";
    case PP_passwordTooYoung: return "the password was changed too recently to change it again";
    case PP_passwordInHistory: return "the new password was used recently; choose another one";
    case PP_passwordTooLong: return "the new password is too long";
    default: return "";
    }
}

AccountVerdict directory_account_state(const AttrMap& attrs, std::int64_t now_unix_s) {
    if (auto expires = number(first(attrs, "accountexpires")); expires && *expires != 0 && *expires != kNeverExpires) {
        const std::int64_t at_unix = *expires / 10000000 - kFiletimeEpochOffsetS;
        if (at_unix <= now_unix_s) return {Status::acct_expired, "account expired"};
    }
    if (const std::string* lockout = first(attrs, "lockouttime"); lockout != nullptr) {
        auto v = number(lockout);
        if (!v || *v != 0) return {Status::perm_denied, "account locked"};  // unreadable: not proven unlocked
    }
    if (const std::string* locked = first(attrs, "pwdaccountlockedtime"); locked != nullptr && !locked->empty())
        return {Status::perm_denied, "account locked"};
    if (const std::string* reset = first(attrs, "pwdreset"); reset != nullptr && upper(*reset) == "TRUE")
        return {Status::new_authtok_reqd, "your password was reset; change it now"};
    if (auto last_set = number(first(attrs, "pwdlastset")); last_set && *last_set == 0) {
        const auto uac = number(first(attrs, "useraccountcontrol")).value_or(0);
        if ((uac & kUacDontExpirePassword) == 0)
            return {Status::new_authtok_reqd, "your password must be changed; change it now"};
    }
    return {};
}

std::optional<Secret> ad_unicode_pwd(std::string_view password) {
    // At most one UTF-16 unit per UTF-8 byte, plus the quotes: sized once, never grown.
    std::vector<char, ZeroingAllocator<char>> out((password.size() + 2) * 2);
    std::size_t used = 0;
    auto put = [&out, &used](std::uint32_t unit) {
        out[used++] = static_cast<char>(unit & 0xff);
        out[used++] = static_cast<char>((unit >> 8) & 0xff);
    };
    put('"');
    for (std::size_t i = 0; i < password.size();) {
        const auto b0 = static_cast<unsigned char>(password[i]);
        std::uint32_t cp = 0;
        std::size_t len = 0;
        if (b0 < 0x80) { cp = b0; len = 1; }
        else if ((b0 & 0xe0) == 0xc0) { cp = b0 & 0x1f; len = 2; }
        else if ((b0 & 0xf0) == 0xe0) { cp = b0 & 0x0f; len = 3; }
        else if ((b0 & 0xf8) == 0xf0) { cp = b0 & 0x07; len = 4; }
        else return std::nullopt;
        if (i + len > password.size()) return std::nullopt;
        for (std::size_t k = 1; k < len; ++k) {
            const auto b = static_cast<unsigned char>(password[i + k]);
            if ((b & 0xc0) != 0x80) return std::nullopt;
            cp = (cp << 6) | (b & 0x3f);
        }
        // Overlong forms, surrogates, beyond U+10FFFF and NUL are not passwords.
        static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || cp == 0) return std::nullopt;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            put(0xd800 + (cp >> 10));
            put(0xdc00 + (cp & 0x3ff));
        } else {
            put(cp);
        }
        i += len;
    }
    put('"');
    return Secret(std::string_view(out.data(), used));
}

AccountVerdict ad_change_refusal(int rc, const std::string& diag) {
    const std::string code = upper(diag.substr(0, 8));
    // WERR_INVALID_PASSWORD (0x56) / ERROR_WRONG_PASSWORD (0x56A): the old value did not match.
    if (code == "00000056" || code == "0000056A") return {Status::auth_err, "the current password is wrong"};
    // ERROR_PASSWORD_RESTRICTION (0x52D): length, complexity, history or minimum age.
    if (code == "0000052D")
        return {Status::authtok_err,
                "the new password does not meet the domain's password policy (length, complexity, history or "
                "minimum age): " + diag};
    if (rc == LDAP_INSUFFICIENT_ACCESS)
        return {Status::authtok_err, "the directory does not let this account change its password"};
    if (rc == LDAP_UNWILLING_TO_PERFORM || rc == LDAP_CONFIDENTIALITY_REQUIRED || rc == LDAP_STRONG_AUTH_REQUIRED)
        return {Status::authtok_err, "the directory refused the change (it needs LDAPS or StartTLS): " + diag};
    return {Status::authtok_err, "the directory refused the new password: " + diag};
}

}  // namespace cvat::helper
