// SPDX-License-Identifier: GPL-3.0-or-later
// Publishes the NSS cache file that nss_cvat maps (format and publication rules:
// common/nss_mc.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "result.hpp"

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

}  // namespace cvat::helper::nss_mc
