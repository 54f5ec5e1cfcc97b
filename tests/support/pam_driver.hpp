// SPDX-License-Identifier: GPL-3.0-or-later
// Drives pam_cvat.so through the real libpam with pam_start_confdir() and a service file
// written into a test directory: no root, never the machine's /etc/pam.d.
#pragma once

#include <security/pam_appl.h>

#include <map>
#include <string>
#include <vector>

namespace cvat::test {

struct PamCall {
    std::string confdir;                 // where the service file is written
    std::string service = "cvat-test";
    std::string user;
    std::vector<std::string> answers;    // conversation answers, in order (passwords, Enter)
    std::string module_args;             // e.g. "socket=/tmp/x/socket require_role=admin"
    bool account = true;                 // also run pam_acct_mgmt after a successful auth
    bool session = false;                // also run pam_open_session / pam_close_session
    bool change_expired = false;         // pam_acct_mgmt said PAM_NEW_AUTHTOK_REQD: then
                                         // pam_chauthtok(PAM_CHANGE_EXPIRED_AUTHTOK), as login/sshd
    bool change_only = false;            // pam_chauthtok(0) alone, as passwd(1) (no authenticate)
    bool account_only = false;           // pam_acct_mgmt alone, as sshd after a public key
    std::string rhost;                   // PAM_RHOST, as sshd and web servers set it (empty: unset)
};

struct PamOutcome {
    int authenticate = -1;               // PAM return codes; -1 = not run
    int acct_mgmt = -1;
    int open_session = -1;
    int chauthtok = -1;
    std::string pam_user;                // PAM_USER after authenticate
    std::map<std::string, std::string> env;  // pam_getenvlist after the last step
    std::vector<std::string> messages;   // every text the module showed (prompts and info)
    double seconds = 0;                  // wall time of the whole call
};

PamOutcome pam_login(const PamCall& call);

// One transaction with the caller's own conversation: writes the service file, then
// authenticate, account and session as `call` asks; fills `out` (the conversation may fill
// out.messages as it goes).
void pam_transaction(const PamCall& call, const pam_conv& conv, PamOutcome& out);

}  // namespace cvat::test
