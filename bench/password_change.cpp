// SPDX-License-Identifier: GPL-3.0-or-later
// Password change latency through the real path, one thread: N pam_chauthtok calls (as
// passwd(1): current password, new password twice) via pam_start_confdir → pam_cvat.so →
// cvat-authd → LDAP (user search, group search, root DSE once, bind, Password Modify or the
// AD unicodePwd modify). Each change goes to a password never used before, so a history
// policy never refuses one. Prints median, p90 and mean; fails on any refused change.
//   cvat-bench-pwchange CONFDIR SOCKET USER PASSWORD N
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <security/pam_appl.h>

#include "pam_driver.hpp"

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: cvat-bench-pwchange CONFDIR SOCKET USER PASSWORD N\n");
        return 64;
    }
    const std::string confdir = argv[1], socket = argv[2], user = argv[3];
    std::string current = argv[4];
    const int n = std::atoi(argv[5]);
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
        const std::string next = "Bench-Passw0rd-" + std::to_string(i);
        cvat::test::PamCall call;
        call.confdir = confdir;
        call.user = user;
        call.answers = {current, next, next};
        call.module_args = "socket=" + socket;
        call.change_only = true;
        auto out = cvat::test::pam_login(call);
        if (out.chauthtok != PAM_SUCCESS) {
            std::fprintf(stderr, "change %d refused: %s\n", i, pam_strerror(nullptr, out.chauthtok));
            for (const auto& m : out.messages) std::fprintf(stderr, "  %s\n", m.c_str());
            return 1;
        }
        ms.push_back(out.seconds * 1000.0);
        current = next;
    }
    std::sort(ms.begin(), ms.end());
    double sum = 0;
    for (double x : ms) sum += x;
    auto at = [&ms](double q) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ms.size())))]; };
    std::printf("%-44s n=%-5zu median %7.3f ms  p90 %7.3f ms  mean %7.3f ms\n", "pam_chauthtok (password change)",
                ms.size(), at(0.5), at(0.9), sum / static_cast<double>(ms.size()));
    std::printf("final password of %s: %s\n", user.c_str(), current.c_str());
    return 0;
}
