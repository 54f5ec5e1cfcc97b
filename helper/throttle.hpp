// SPDX-License-Identifier: GPL-3.0-or-later
// Failed-login throttling (issue 6): counters of recent failures per user name and per peer
// (the client's uid and the rhost it reports), in bounded tables. Past a threshold, further
// attempts for that key are held (on the server's timer, not a worker) and then checked
// honestly; an attempt that would have to wait longer than the cap is refused unchecked.
// A delay, never a lockout: the wait of any attempt is at most max_delay.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

namespace cvat::helper {

struct ThrottleRule {
    unsigned failures = 0;            // failures within window before delays start; 0: off
    std::int64_t window_ms = 300000;  // a key with no failure for this long starts over
};

struct ThrottleSettings {
    ThrottleRule per_user{5, 300000};
    ThrottleRule per_peer{20, 300000};
    std::int64_t delay_ms = 1000;      // the first delay past a threshold, doubled per failure
    std::int64_t max_delay_ms = 5000;  // no attempt waits longer; one that would is refused
    std::size_t max_entries = 10000;   // per table (users, peers); least recently used goes
};

// Thread-safe.
class Throttle {
public:
    struct Keys {
        std::string user;  // the login name as typed, lower-cased by the caller
        std::string peer;  // "uid=N rhost=R"; empty: no peer rule (see Service::auth)
    };
    // The answer to "may this attempt be checked, and when".
    struct Gate {
        bool refused = false;      // too many failures: answer auth_err without checking
        std::int64_t at_ms = 0;    // check it at this monotonic time (now: at once)
        std::int64_t retry_in_ms = 0;  // refused: when an attempt would be taken again
    };
    struct Stats {
        std::size_t users = 0, peers = 0, max_entries = 0;
        std::uint64_t delayed = 0, refused = 0;
    };

    // `max_wait_ms`: the longest the client waits for an answer (its timeout), less a margin.
    Gate admit(const ThrottleSettings& s, const Keys& k, std::int64_t now_ms, std::int64_t max_wait_ms);
    // The outcome of a checked attempt: a wrong password (or unknown user) counts against
    // both keys; a success clears the user's count (not the peer's: one good login from a
    // host must not reset a guesser there).
    void failed(const ThrottleSettings& s, const Keys& k, std::int64_t now_ms);
    void succeeded(const Keys& k);
    Stats stats() const;
    // The delay after `failures` failures under `rule` (0 below the threshold).
    static std::int64_t delay_for(const ThrottleSettings& s, const ThrottleRule& rule, unsigned failures) noexcept;

private:
    struct Entry {
        unsigned failures = 0;
        std::int64_t last_failure_ms = 0;
        std::int64_t next_at_ms = 0;  // no attempt for this key is checked before
        std::list<std::string>::iterator lru;
    };
    // A bounded map with least-recently-used eviction.
    struct Table {
        std::unordered_map<std::string, Entry> map;
        std::list<std::string> lru;  // most recent first
        Entry* find(const std::string& key, const ThrottleRule& rule, std::int64_t now_ms);
        Entry& get(const std::string& key, std::size_t max_entries);
        void erase(const std::string& key);
    };

    mutable std::mutex mutex_;
    Table users_, peers_;
    std::size_t max_entries_ = 0;
    std::uint64_t delayed_ = 0, refused_ = 0;
};

}  // namespace cvat::helper
