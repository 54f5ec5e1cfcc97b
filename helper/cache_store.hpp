// SPDX-License-Identifier: GPL-3.0-or-later
// The daemon's persistent cache (DESIGN.md §5): user records with TTLs, negative entries, the
// map of stable UIDs/GIDs and offline login material, in one SQLite file
// <cache_dir>/cache.sqlite (WAL, synchronous=FULL: a committed write survives a crash).
// One connection behind a mutex; every method is safe to call from several threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "idmap.hpp"
#include "offline.hpp"
#include "protocol.hpp"
#include "result.hpp"

struct sqlite3;

namespace cvat::helper {

struct CachedUser {
    std::string name;            // canonical login name (primary key; compared exactly)
    std::string backend;         // "ldap" or an IdP id
    std::string immutable_id;    // "sid:S-1-5-..", "guid:..", "uuid:..", "ipa:..", "oidc:<iss> <sub>",
                                 // "dn:<dn>", "provisional:<idp>:<name>"
    std::uint32_t uid = 0, gid = 0;
    std::string gecos, home, shell;
    proto::Role role = proto::Role::none;
    std::string email, first_name, last_name, dn;
    std::vector<std::pair<std::string, std::uint32_t>> groups;  // directory groups exposed via NSS (name, gid)
    bool provisional = false;
    std::int64_t fetched_at = 0, expires_at = 0;                // unix seconds
};

// What a user row says, the two times aside: two rows with equal facts need no rewrite.
inline auto facts_of(const CachedUser& u) {
    return std::tie(u.name, u.backend, u.immutable_id, u.uid, u.gid, u.gecos, u.home, u.shell, u.role, u.email,
                    u.first_name, u.last_name, u.dn, u.groups, u.provisional);
}

// One skipped candidate of assign_id.
struct IdCollision {
    std::string immutable_id;  // the id being placed
    unsigned k = 0;            // candidate index
    std::uint32_t id = 0;      // the candidate skipped
    std::string holder;        // immutable id that holds it, or "reserved"
    std::int64_t at = 0;       // unix seconds
};

class CacheStore {
public:
    // Caps that keep one call bounded.
    static constexpr std::size_t kMaxUsersListed = 100000;
    static constexpr unsigned kMaxIdCandidates = 1000;

    // Opens (creating the directory 0700 and the file 0600 if missing) and migrates
    // <cache_dir>/cache.sqlite. A file SQLite finds corrupt, or that is not a database, is
    // renamed cache.sqlite.corrupt-<unix time> (a warning is logged) and a new one is made.
    // A schema newer than this build knows is refused, not discarded: it holds the ID map.
    static Result<std::unique_ptr<CacheStore>> open(const std::string& cache_dir);
    ~CacheStore();
    CacheStore(const CacheStore&) = delete;
    CacheStore& operator=(const CacheStore&) = delete;

    const std::string& path() const noexcept { return path_; }

    // --- users -----------------------------------------------------------------------------
    // Insert or replace by name; clears negative entries for the name, the uid and the
    // user's groups (names and gids). At most proto::kMaxGroups groups.
    Result<void> put_user(const CachedUser& u);
    // Returned even when expired: callers decide (stale data serves offline).
    Result<std::optional<CachedUser>> user_by_name(std::string_view name);
    // The fetch and expiry times of u.name's row, when the store knows without reading it
    // that the row holds the same facts as `u` (every field but those two times): it keeps a
    // digest of each row it wrote or read last (at most kMaxRemembered), forgotten when the
    // row is expired or flushed. Nothing when it does not know: read the row.
    struct Times {
        std::int64_t fetched_at = 0, expires_at = 0;
    };
    std::optional<Times> same_as_stored(const CachedUser& u);
    static constexpr std::size_t kMaxRemembered = 65536;
    // The most recently fetched user holding the uid (a renamed user may leave an old row).
    Result<std::optional<CachedUser>> user_by_uid(std::uint32_t uid);
    // Up to min(limit, kMaxUsersListed) users ordered by name: for the NSS file and `cache list`.
    // Read through a second, read-only connection of its own (WAL: it sees the last commit and
    // blocks no one): listing 10,000 users takes about 14 ms, which the other calls would
    // otherwise wait out behind the store's lock.
    Result<std::vector<CachedUser>> users(std::size_t limit);
    // A group's members, for getgrnam/getgrgid through the socket, ordered by name, at most
    // `limit`: the names of the users (not provisional, not expired by an admin) with `role`;
    // or of the users whose directory groups include `group` (by name, or by gid when the name
    // is empty), with that group's name and gid (empty name: no user has the group).
    Result<std::vector<std::string>> role_members(int role, std::size_t limit);
    struct GroupMembers {
        std::string name;
        std::uint32_t gid = 0;
        std::vector<std::string> members;
    };
    Result<GroupMembers> group_members(std::string_view group, std::uint32_t gid, std::size_t limit);

    // --- negative entries ------------------------------------------------------------------
    // kind: "user", "uid", "group" or "gid".
    Result<void> put_negative(std::string_view kind, std::string_view key, std::int64_t expires_at);
    // True while an entry exists and now < its expires_at.
    Result<bool> negative(std::string_view kind, std::string_view key, std::int64_t now);

    // Marks a user (empty name: every user) expired, expires_at = 0, and drops the matching
    // negative entries (empty name: all). Returns how many users were marked.
    Result<std::size_t> expire(std::string_view name);
    // Deletes users, negative entries and offline entries; keeps the ID map (IDs stay stable).
    Result<void> flush();

    // --- ID map ----------------------------------------------------------------------------
    // The ID of immutable_id: the recorded one if any; else the first id_candidate(k) not
    // recorded for another id and not in `reserved`, recorded in the same transaction (the
    // map has UNIQUE(id): one namespace for UIDs and GIDs, so a user private group can reuse
    // its uid). Each skipped candidate is logged and kept in id_collisions. Fails after
    // kMaxIdCandidates candidates, or for an empty id or a range with min > max.
    Result<std::uint32_t> assign_id(std::string_view immutable_id, IdRange range,
                                    const std::vector<std::uint32_t>& reserved);
    // Read-only lookups for `cache show`.
    Result<std::optional<std::uint32_t>> recorded_id(std::string_view immutable_id);
    Result<std::optional<std::string>> id_holder(std::uint32_t id);
    Result<std::vector<IdCollision>> id_collisions(std::size_t limit);

    // --- offline entries -------------------------------------------------------------------
    // After a successful online login: insert or replace; failures and next_try_at reset.
    Result<void> put_offline(const OfflineEntry& e);
    Result<std::optional<OfflineEntry>> offline(std::string_view name);
    // failures++, next_try_at = now + offline_delay(failures). No entry: nothing to do.
    Result<void> offline_failure(std::string_view name, std::int64_t now);
    // failures = 0, next_try_at = 0.
    Result<void> offline_success(std::string_view name);
    Result<void> drop_offline(std::string_view name);

    // PRAGMA integrity_check; ok or an Error with SQLite's first complaint.
    Result<void> check_integrity();

    // Copies the write-ahead log into the database (a passive checkpoint, on a connection of
    // its own: writers go on meanwhile). The daemon's publisher thread calls it after each
    // round and every second there is none, so that no lookup or login pays for a checkpoint
    // (its fsync) in its commit; commits do one themselves only past kWalBackstopPages, as a
    // backstop. Cheap when the log holds nothing new.
    Result<void> checkpoint();
    static constexpr int kWalBackstopPages = 8192;

private:
    struct Statements;
    CacheStore(std::string path, sqlite3* db);
    Result<void> prepare();

    const std::string path_;
    sqlite3* db_;
    std::unique_ptr<Statements> st_;
    std::mutex mutex_;
    // What each row holds, by name (see same_as_stored). Changed only with mutex_ held, in
    // the same step as the row, so it never runs ahead of or behind the row.
    struct Remembered {
        std::array<unsigned char, 32> facts{};
        Times times;
    };
    void remember(const CachedUser& u);
    std::mutex memo_mutex_;
    std::unordered_map<std::string, Remembered> memo_;
    // users(): the read-only connection and its statements, under their own lock.
    sqlite3* list_db_ = nullptr;
    std::unique_ptr<Statements> list_st_;
    std::mutex list_mutex_;
    // checkpoint(): its connection.
    sqlite3* checkpoint_db_ = nullptr;
    std::mutex checkpoint_mutex_;
};

}  // namespace cvat::helper
