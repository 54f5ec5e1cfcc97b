// SPDX-License-Identifier: GPL-3.0-or-later
// cvat-pam-try: one real PAM login through pam_cvat.so (pam_start_confdir, a private service
// file), for the demo and for measuring. Reads the password from stdin (one line).
//   cvat-pam-try CONFDIR USER [MODULE ARGS...]
// Prints "USER: PAM result, role, IdP" and exits 0 when authenticate and acct_mgmt succeed.
#include <cstdio>
#include <iostream>
#include <string>

#include <security/pam_appl.h>

#include "pam_driver.hpp"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: cvat-pam-try CONFDIR USER [MODULE ARGS...] < password\n");
        return 64;
    }
    cvat::test::PamCall call;
    call.confdir = argv[1];
    call.service = "cvat-demo";
    call.user = argv[2];
    for (int i = 3; i < argc; ++i) call.module_args += std::string(i > 3 ? " " : "") + argv[i];
    std::string password;
    std::getline(std::cin, password);
    call.answers.push_back(password);
    call.session = true;

    auto out = cvat::test::pam_login(call);
    auto env = [&out](const char* key) {
        auto it = out.env.find(key);
        return it == out.env.end() ? std::string("-") : it->second;
    };
    int rc = out.authenticate != PAM_SUCCESS ? out.authenticate : out.acct_mgmt;
    std::printf("%-18s -> %-28s", call.user.c_str(), pam_strerror(nullptr, rc));
    if (rc == PAM_SUCCESS)
        std::printf(" PAM_USER=%s CVAT_ROLE=%s CVAT_IDP=%s", out.pam_user.c_str(), env("CVAT_ROLE").c_str(),
                    env("CVAT_IDP").c_str());
    std::printf("  (%.1f ms)\n", out.seconds * 1000);
    for (const auto& m : out.messages)
        if (m.find("assword") == std::string::npos) std::printf("%22s message: %s\n", "", m.c_str());
    return rc == PAM_SUCCESS ? 0 : 1;
}
