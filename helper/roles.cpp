// SPDX-License-Identifier: GPL-3.0-or-later
// CVAT role resolution (see roles.hpp).
#include "roles.hpp"

#include <cstddef>
#include <set>

#include "ldap_text.hpp"

namespace cvat::helper {

RoleDecision resolve_role(const std::vector<std::string>& user_groups,
                          const std::array<std::vector<std::string>, 4>& role_groups,
                          proto::Role default_role) {
    // Normalised role group DNs per role; a config DN that does not parse matches nothing.
    std::array<std::set<std::string>, 4> wanted;
    for (std::size_t r = 0; r < role_groups.size(); ++r)
        for (const std::string& dn : role_groups[r])
            if (auto n = normalize_dn(dn); n && !n->empty()) wanted[r].insert(*n);

    RoleDecision decision;
    for (const std::string& group : user_groups) {
        auto n = normalize_dn(group);
        if (!n || n->empty()) continue;
        // Highest role first, so `matches` lists a group's roles from the strongest.
        for (std::size_t r = wanted.size(); r-- > 1;) {
            if (wanted[r].count(*n) == 0) continue;
            auto role = static_cast<proto::Role>(r);
            decision.matches.push_back(RoleMatch{role, group});
            if (role > decision.role) decision.role = role;
        }
    }
    if (decision.matches.empty()) {
        decision.role = default_role;
        decision.from_default = true;
    }
    return decision;
}

}  // namespace cvat::helper
