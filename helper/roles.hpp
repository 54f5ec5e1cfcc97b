// SPDX-License-Identifier: GPL-3.0-or-later
// CVAT role resolution: admin > user > worker, highest wins (DESIGN.md §4).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace cvat::helper {

struct RoleMatch {
    proto::Role role;
    std::string group;  // the user's group DN as found in the directory
};

struct RoleDecision {
    proto::Role role = proto::Role::none;   // none: refused (default_role none and no match)
    bool from_default = false;              // no role group matched; default_role applied
    std::vector<RoleMatch> matches;         // every role group the user is in
};

// role_groups[Role] are DNs from the config; user_groups are DNs from the directory. Both
// are compared after normalize_dn(); a DN that does not parse never matches.
RoleDecision resolve_role(const std::vector<std::string>& user_groups,
                          const std::array<std::vector<std::string>, 4>& role_groups,
                          proto::Role default_role);

}  // namespace cvat::helper
