// SPDX-License-Identifier: GPL-3.0-or-later
// Web-server verdict cache (DESIGN.md §5): nginx asks PAM on every request, so a repeated
// login with the same credentials within `ttl` is answered from memory. Memory only; the
// password is never stored, only an HMAC under a key made at construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "keyed_hash.hpp"
#include "protocol.hpp"
#include "secret.hpp"

namespace cvat::helper {

// Thread-safe. One slot per (backend, service, user): a login with a new password replaces
// the slot. At most max_entries slots (0 disables the cache); the oldest stored goes first.
class VerdictCache {
public:
    explicit VerdictCache(std::size_t max_entries = 10000);

    // The stored ok verdict if this exact (backend, service, user, password) was remembered
    // less than ttl_ms before now_ms; an expired slot is dropped.
    std::optional<proto::Verdict> find(std::string_view backend, std::string_view service,
                                       std::string_view user, const Secret& password,
                                       std::int64_t now_ms, std::int64_t ttl_ms);
    // Stores ok verdicts only; anything else is ignored.
    void remember(std::string_view backend, std::string_view service, std::string_view user,
                  const Secret& password, const proto::Verdict& ok_verdict, std::int64_t now_ms);
    // A failed login clears the user's slots (any backend/service).
    void forget_user(std::string_view user);
    // Config reload.
    void clear();
    std::size_t size() const;

private:
    // Ordered by user first, so forget_user is one range.
    struct Key {
        std::string user, backend, service;
        auto operator<=>(const Key&) const = default;
    };
    struct Entry {
        Digest tag;  // HMAC(backend, service, user, password)
        proto::Verdict verdict;
        std::int64_t stored_ms;
        std::list<const Key*>::iterator age;  // position in age_
    };
    using Map = std::map<Key, Entry, std::less<>>;

    void erase(Map::iterator it);

    const std::size_t max_entries_;
    const KeyedHash hash_;
    mutable std::mutex mutex_;
    Map slots_;
    std::list<const Key*> age_;  // oldest first; points at keys of slots_ (stable in a map)
};

}  // namespace cvat::helper
