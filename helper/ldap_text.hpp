// SPDX-License-Identifier: GPL-3.0-or-later
// Text rules of LDAP that security depends on: filter escaping (RFC 4515) and DN
// normalisation (RFC 4514). Pure functions, fuzzed and unit-tested.
#pragma once

#include <string>
#include <string_view>

#include "result.hpp"

namespace cvat::helper {

// Escapes a value for use inside a filter: `*`, `(`, `)`, `\`, NUL and every byte >= 0x80
// or < 0x20 become \XX (RFC 4515 §3).
std::string escape_filter_value(std::string_view value);

// Replaces every `%(user)s` in `filter_template` with the escaped user name (Django's
// spelling, so filters copy from settings.py). Fails if the template has no %(user)s.
[[nodiscard]] Result<std::string> expand_user_filter(std::string_view filter_template,
                                                     std::string_view user);

// The user filter with %(user)s as a presence match (`(uid=%(user)s)` becomes `(uid=*)`):
// "any user", to be ANDed with another condition such as (uidNumber=1001).
[[nodiscard]] Result<std::string> any_user_filter(std::string_view filter_template);

// Escapes a value for use as an RDN value in a DN (RFC 4514 §2.4).
std::string escape_dn_value(std::string_view value);

// Canonical form of a DN for comparison: attribute types lower-cased, spaces around `=`, `,`
// and `+` dropped, values unescaped then re-escaped canonically and lower-cased (the
// attribute types CVAT compares — cn, ou, dc, uid, o — all use case-insensitive matching).
// Fails on a syntactically broken DN.
[[nodiscard]] Result<std::string> normalize_dn(std::string_view dn);

}  // namespace cvat::helper
