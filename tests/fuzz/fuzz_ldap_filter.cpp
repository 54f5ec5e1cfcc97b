// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the LDAP filter escaper (helper/ldap_text.hpp, RFC 4515) that stands between a
// typed user name and the directory search. Input: filter template, a NUL, the user name.
// Properties: the escaped value holds no filter metacharacter and unescapes to the input;
// the user name adds no parenthesis, no wildcard and no stray backslash to the filter.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz.hpp"
#include "ldap_text.hpp"

using namespace cvat;

namespace {

int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Counts of '(' ')' '*' outside \XX escapes; false when a backslash is not followed by two hex digits.
bool structure(std::string_view f, std::size_t counts[3]) {
    counts[0] = counts[1] = counts[2] = 0;
    for (std::size_t i = 0; i < f.size(); ++i) {
        if (f[i] == '\\') {
            if (i + 2 >= f.size() || hex(f[i + 1]) < 0 || hex(f[i + 2]) < 0) return false;
            i += 2;
        } else if (f[i] == '(') {
            ++counts[0];
        } else if (f[i] == ')') {
            ++counts[1];
        } else if (f[i] == '*') {
            ++counts[2];
        }
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 4096) return 0;
    std::string_view text = fuzz::as_text(data, size);
    auto nul = text.find('\0');
    std::string_view tmpl = text.substr(0, nul);
    std::string_view user = nul == std::string_view::npos ? std::string_view() : text.substr(nul + 1);

    std::string esc = helper::escape_filter_value(user);
    std::string back;
    for (std::size_t i = 0; i < esc.size(); ++i) {
        auto c = static_cast<unsigned char>(esc[i]);
        FUZZ_CHECK(c >= 0x20 && c < 0x80 && c != '*' && c != '(' && c != ')');
        if (c == '\\') {
            FUZZ_CHECK(i + 2 < esc.size() && hex(esc[i + 1]) >= 0 && hex(esc[i + 2]) >= 0);
            back.push_back(static_cast<char>(hex(esc[i + 1]) * 16 + hex(esc[i + 2])));
            i += 2;
        } else {
            back.push_back(static_cast<char>(c));
        }
    }
    FUZZ_CHECK(back == user);

    // The user adds no structure: the expansion has the parentheses and wildcards of the
    // template expanded with an empty name. (A template that splits an escape of its own
    // around %(user)s is the administrator's doing: templates with a backslash are left out.)
    std::size_t t[3], e[3];
    auto expanded = helper::expand_user_filter(tmpl, user);
    auto bare = helper::expand_user_filter(tmpl, "");
    auto any = helper::any_user_filter(tmpl);
    FUZZ_CHECK(expanded.has_value() == any.has_value() && expanded.has_value() == bare.has_value());
    if (expanded && tmpl.find('\\') == std::string_view::npos && structure(*bare, t)) {
        FUZZ_CHECK(structure(*expanded, e));
        FUZZ_CHECK(e[0] == t[0] && e[1] == t[1] && e[2] == t[2]);
    }
    return 0;
}
