// SPDX-License-Identifier: GPL-3.0-or-later
// cmocka checks on a PamOutcome: a PAM code, and a text the module showed.
#pragma once

#include <string>

#include <security/pam_appl.h>

#include "cmocka.hpp"
#include "fixture.hpp"
#include "pam_driver.hpp"

namespace cvat::test {

// Every text the module showed (prompts and messages), joined for a failure message.
inline std::string all_messages(const PamOutcome& o) {
    std::string s;
    for (const auto& m : o.messages) s += m + " | ";
    return s;
}

// `got` must be `want`; `hint` (e.g. the daemon's log path) ends the failure message.
inline void expect_pam(const std::string& what, int got, int want, const std::string& hint = "") {
    if (got != want)
        fail_msg("%s: PAM code %d (%s), want %d (%s); %s", what.c_str(), got, pam_strerror(nullptr, got), want,
                 pam_strerror(nullptr, want), hint.c_str());
}

inline void expect_said(const std::string& what, const PamOutcome& o, const std::string& text) {
    if (!contains(all_messages(o), text))
        fail_msg("%s: no \"%s\" among the messages: %s", what.c_str(), text.c_str(), all_messages(o).c_str());
}

}  // namespace cvat::test
