// SPDX-License-Identifier: GPL-3.0-or-later
// Publishes the NSS cache file that nss_cvat maps (format and publication rules:
// common/nss_mc.hpp).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "result.hpp"
#include "unique_fd.hpp"

namespace cvat::helper::nss_mc {

struct PasswdEntry {
    std::string name;
    std::uint32_t uid = 0, gid = 0;
    std::string gecos, dir, shell;
    std::vector<std::uint32_t> groups;  // supplementary gids, for initgroups
    std::int64_t expires = 0;           // unix seconds; a reader treats expires < now as a miss
};
struct GroupEntry {
    std::string name;
    std::uint32_t gid = 0;
    std::vector<std::string> members;
    std::int64_t expires = 0;
};

// Writes a complete new cache file and atomically replaces `path` with it, then marks the
// replaced file superseded. Entries with an empty name, a name over 255 bytes, or a NUL in any
// string are left out (as are members like that, and repeated names); a file over 256 MiB is
// refused with too_large.
[[nodiscard]] Result<void> publish(const std::string& path, const std::vector<PasswdEntry>& users,
                                   const std::vector<GroupEntry>& groups, bool enumerate);

// Marks the current file superseded and removes it (cache flush / daemon stops serving).
// No file is success.
[[nodiscard]] Result<void> withdraw(const std::string& path);

// The published file at one path, for a daemon that both publishes and withdraws it. A
// withdrawal does not wait for a publication being built (building and syncing a file of
// thousands of users takes tens of milliseconds, and a withdrawal is on a lookup's path); a
// publication that a withdrawal overtook is dropped instead of put in place, since its snapshot
// may predate the change the withdrawal was for. Publications are the caller's to serialize.
class Slot {
public:
    explicit Slot(std::string path) : path_(std::move(path)) {}
    const std::string& path() const { return path_; }

    struct Ticket {
        std::uint64_t withdrawals = 0, joins = 0;
    };
    // Taken before reading the snapshot a publication is built from.
    Ticket ticket() const;
    // publish() above, unless withdraw() ran after ticket() returned `ticket`: then nothing
    // changes and the answer is false. After groups_joined() the file goes in place with its
    // groups marked stale.
    [[nodiscard]] Result<bool> publish(Ticket ticket, const std::vector<PasswdEntry>& users,
                                       const std::vector<GroupEntry>& groups, bool enumerate);
    [[nodiscard]] Result<void> withdraw();
    // A user joined groups that the published file lists (a user new to the file, with a role
    // or directory groups): the file's groups are marked stale (group lookups ask the daemon
    // until the next publication), its users stay in use. One pwrite the first time, nothing
    // after that. A user who was in the file and lost or changed groups needs withdraw().
    void groups_joined();

private:
    std::string path_;
    mutable std::mutex mutex_;
    std::uint64_t withdrawals_ = 0, joins_ = 0;
    // The last generation put in place: a file after a withdrawal goes on from it, so that a
    // reader's enumeration never mistakes the new file for the one it began on.
    std::uint64_t generation_ = 0;
    UniqueFd live_;  // the file in place, as this Slot put it there (or found it)
    bool live_groups_stale_ = false;
};

}  // namespace cvat::helper::nss_mc
