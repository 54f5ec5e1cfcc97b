// SPDX-License-Identifier: GPL-3.0-or-later
// Offline login material (DESIGN.md §5): Argon2id hashes of passwords that last logged in
// online, the retry delay after wrong offline passwords, and a memory-only note of which
// password was hashed last so the daemon does not pay for Argon2id on every login.
// The entries themselves are stored by CacheStore (put_offline & co.).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "keyed_hash.hpp"
#include "protocol.hpp"
#include "result.hpp"
#include "secret.hpp"

namespace cvat::helper {

// OWASP Password Storage Cheat Sheet's Argon2id minimum: m = 19 MiB, t = 2, p = 1.
struct OfflineParams {
    std::uint32_t t_cost = 2, m_cost_kib = 19456, parallelism = 1;
};

// "$argon2id$v=19$m=...,t=...,p=...$salt$hash" with a 16-byte RAND_bytes salt and a 32-byte
// hash. An empty password is refused (it can never log in).
Result<std::string> offline_hash(const Secret& password, const OfflineParams& p = {});

// True only if `encoded` is a well-formed argon2id string within sane cost bounds (so a
// tampered row cannot make us allocate gigabytes) and the password matches.
bool offline_verify(std::string_view encoded, const Secret& password);

// One row of CacheStore's `offline` table.
struct OfflineEntry {
    std::string name, backend, hash;
    proto::Role role = proto::Role::none;
    std::string email, first_name, last_name;
    std::int64_t stored_at = 0;     // unix seconds of the online login that stored it
    unsigned failures = 0;          // wrong offline passwords since the last success
    std::int64_t next_try_at = 0;   // unix seconds; no offline attempt before this
};

// Seconds to wait after the n-th consecutive wrong offline password: 0 for the first 2,
// then 2^(n-2) s, capped at 300 s (a slow online guessing rate, not a lockout).
std::int64_t offline_delay(unsigned failures) noexcept;

// Which password was hashed last for each user, as an HMAC under a per-process key.
// Thread-safe, bounded (when full, it forgets everything: the cost is one extra hash each).
class OfflineRecent {
public:
    explicit OfflineRecent(std::size_t max_users = 10000);
    // True unless hashed(user, password) was the last call for this user.
    bool needs_rehash(std::string_view user, const Secret& password) const;
    void hashed(std::string_view user, const Secret& password);
    void forget(std::string_view user);
    void clear();

private:
    const std::size_t max_users_;
    const KeyedHash hash_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Digest> last_;
};

}  // namespace cvat::helper
