// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the DN normaliser (helper/ldap_text.hpp normalize_dn, RFC 4514), which the
// daemon applies to DNs from the directory and from the config before it compares them
// (group membership → role), and escape_dn_value. Properties: normalising is idempotent; any
// value escaped by escape_dn_value makes a DN that normalises, to the same thing as its
// escape of the lower-cased value; no input ends in an internal error (an exception).
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz.hpp"
#include "ldap_text.hpp"

using namespace cvat;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 4096) return 0;
    std::string_view text = fuzz::as_text(data, size);
    auto n = helper::normalize_dn(text);
    if (n) {
        auto again = helper::normalize_dn(*n);
        FUZZ_CHECK(again.has_value());
        FUZZ_CHECK(*again == *n);
    } else {
        FUZZ_CHECK(n.error().code != ErrorCode::internal);
        FUZZ_CHECK(!n.error().detail.empty());
    }
    // The input as one attribute value.
    std::string dn = "uid=" + helper::escape_dn_value(text) + ",ou=People,dc=example,dc=org";
    auto v = helper::normalize_dn(dn);
    FUZZ_CHECK(v.has_value());
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto w = helper::normalize_dn("UID = " + helper::escape_dn_value(lower) + " , OU=people,DC=Example,dc=ORG");
    FUZZ_CHECK(w.has_value() && *w == *v);
    return 0;
}
