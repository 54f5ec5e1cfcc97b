// SPDX-License-Identifier: GPL-3.0-or-later
// The group mirror (ldap.group_mirror): an in-memory copy of the groups the group search can
// find, kept current by the directory's change feed (RFC 4533 content synchronisation), so a
// login learns its groups without a round trip. This file holds the copy, its indexes and the
// feed's messages; the feed itself (connection, refresh, keepalive) is the LDAP backend's.
// Thread-safe as documented per class.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <lber.h>
#include <pthread.h>

#include "result.hpp"

namespace cvat::helper {

// One group as the feed sends it: its DN and the attributes the group types compare.
struct MirrorEntry {
    std::string dn;
    std::vector<std::string> member;      // member values (DNs), as sent
    std::vector<std::string> member_uid;  // memberUid values
    std::string gid_number;               // gidNumber, or empty
};

// One copy of the groups, keyed by entryUUID, with the indexes the group types ask: which groups
// have a given member DN (distinguishedNameMatch: compared normalised, as the directory does;
// normalize_dn folds ASCII case only, so the backend does not use the copy for DNs with other
// bytes), memberUid (caseExactIA5Match, RFC 2307: exact but for insignificant spaces) or
// gidNumber (integerMatch).
// Bounded by bytes: put() refuses an entry that would pass the bound. Not thread-safe: the
// feed builds a copy alone, then GroupMirror guards it.
class GroupSet {
public:
    struct Group {
        std::string dn;
        std::string key;  // normalised DN
        std::vector<std::string> member_keys;  // normalised, sorted, unique
        std::vector<std::string> member_uids;  // sorted, unique
        std::optional<std::int64_t> gid;
        std::size_t bytes = 0;
    };

    explicit GroupSet(std::size_t max_bytes) : max_bytes_(max_bytes) {}
    GroupSet(const GroupSet&) = delete;
    GroupSet& operator=(const GroupSet&) = delete;

    // The group `entry` describes, ready to put (its DNs normalised): made without the copy, so
    // the feed can do it outside the copy's lock. A group DN that does not parse is an error.
    [[nodiscard]] static Result<Group> make(const std::string& uuid, const MirrorEntry& entry);
    // Adds or replaces the group `uuid`. An error (the copy's bound, a DN that does not parse)
    // leaves the copy as it was.
    [[nodiscard]] Result<void> put(const std::string& uuid, Group group);
    [[nodiscard]] Result<void> put(const std::string& uuid, const MirrorEntry& entry);
    // The group `uuid`, or null.
    const Group* find(const std::string& uuid) const;
    // Removes the group `uuid`; false when it was not held.
    bool erase(const std::string& uuid);

    // Groups with a `member` value whose normalised DN is `member_key`, in no particular order.
    const std::vector<const Group*>& with_member(const std::string& member_key) const;
    // Groups with `memberUid` `uid` (as caseExactIA5Match: leading, trailing and repeated spaces
    // do not count), then those whose gidNumber is `gid` (each once).
    std::vector<const Group*> with_uid_or_gid(std::string_view uid, std::optional<std::int64_t> gid) const;

    // fn(const Group&) for every group, in no particular order.
    template <typename Fn>
    void each(Fn&& fn) const {
        for (const auto& kv : groups_) fn(kv.second);
    }

    std::size_t size() const noexcept { return groups_.size(); }
    std::size_t bytes() const noexcept { return bytes_; }

private:
    template <typename Key>
    using Index = std::unordered_map<Key, std::vector<const Group*>>;
    template <typename Key>
    static void unindex(Index<Key>& index, const Key& key, const Group* g);

    std::size_t max_bytes_;
    std::size_t bytes_ = 0;
    std::unordered_map<std::string, Group> groups_;  // by entryUUID; nodes stay put on rehash
    Index<std::string> by_member_;
    Index<std::string> by_uid_;
    Index<std::int64_t> by_gid_;
};

// A reader-writer lock that lets a waiting writer in before new readers: with logins reading
// back to back on every worker, glibc's default (readers first) could hold a change off for as
// long as the load lasts. Meets the SharedMutex requirements (std::shared_lock, unique_lock).
class WriterFirstLock {
public:
    WriterFirstLock();
    ~WriterFirstLock();
    WriterFirstLock(const WriterFirstLock&) = delete;
    WriterFirstLock& operator=(const WriterFirstLock&) = delete;
    void lock();
    void unlock();
    void lock_shared();
    void unlock_shared();

private:
    pthread_rwlock_t rw_;
};

// The copy the backend's workers read and the feed updates. A copy is believed (view() gives
// it) only between install() and down(), and only while the feed has been heard from within
// `believed_for` (heard() after every message the directory sent on the feed's connection).
class GroupMirror {
public:
    using Clock = std::chrono::steady_clock;

    explicit GroupMirror(Clock::duration believed_for) : believed_for_(believed_for) {}

    // A believed copy, read under a shared lock for the view's life.
    class View {
    public:
        const GroupSet& groups() const { return *set_; }
        const std::string& source() const { return *source_; }

    private:
        friend class GroupMirror;
        View(std::shared_lock<WriterFirstLock> lock, const GroupSet* set, const std::string* source)
            : lock_(std::move(lock)), set_(set), source_(source) {}
        std::shared_lock<WriterFirstLock> lock_;
        const GroupSet* set_;
        const std::string* source_;  // the mirror's, which the lock keeps as it is
    };
    std::optional<View> view() const;

    // Feed side (one thread).
    // A complete copy from `source` (the server's URI) replaces what was held and is believed.
    void install(std::unique_ptr<GroupSet> set, std::string source);
    // Runs fn(GroupSet&) on the believed copy under the exclusive lock; false when none is held
    // (or fn returned false or threw: then the copy is dropped, as one that missed a change).
    template <typename Fn>
    bool update(Fn&& fn) {
        std::unique_lock lock(m_);
        if (!set_) return false;
        bool ok = false;
        try {
            ok = fn(*set_);
        } catch (...) {
            ok = false;  // half a change (out of memory): the copy cannot be believed
        }
        if (!ok) set_.reset();
        return ok;
    }
    void heard() noexcept;
    // Drops the copy: from now on logins search.
    void down();
    bool held() const;

private:
    const Clock::duration believed_for_;
    std::atomic<Clock::rep> heard_{0};  // steady_clock ticks of the last heard()
    mutable WriterFirstLock m_;
    std::unique_ptr<GroupSet> set_;  // guarded by m_
    std::string source_;             // guarded by m_
};

// An INTEGER attribute's value as integerMatch compares it (no '+', no trailing bytes), or none.
std::optional<std::int64_t> ldap_integer(std::string_view text);

// --- the feed's messages (RFC 4533 §2) --------------------------------------------------------

// The Sync Request Control's value for refreshAndPersist without a cookie (a full refresh).
[[nodiscard]] Result<std::string> sync_request_value();

// A Sync State Control's value: the entry's state (LDAP_SYNC_PRESENT, _ADD, _MODIFY, _DELETE)
// and its entryUUID (16 bytes).
struct SyncState {
    int state = -1;
    std::string uuid;
};
[[nodiscard]] Result<SyncState> parse_sync_state(const berval& value);

// A Sync Info Message's value.
struct SyncInfo {
    enum class Kind { new_cookie, refresh_delete, refresh_present, id_set } kind = Kind::new_cookie;
    bool refresh_done = true;      // refreshDelete / refreshPresent
    bool refresh_deletes = false;  // syncIdSet: the UUIDs were deleted (else present)
    std::vector<std::string> uuids;  // syncIdSet
};
// At most `max_uuids` UUIDs in a syncIdSet; more is an error.
[[nodiscard]] Result<SyncInfo> parse_sync_info(const berval& value, std::size_t max_uuids);

}  // namespace cvat::helper
