// SPDX-License-Identifier: GPL-3.0-or-later
// One PAM transaction through the real libpam: pam_start_confdir() with a service file that
// names pam_cvat.so by absolute path, a scripted conversation, and every message recorded.
#include "pam_driver.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>

#include <security/pam_appl.h>

#include "fixture.hpp"

namespace cvat::test {
namespace {

struct Script {
    const std::vector<std::string>* answers;
    std::size_t next = 0;
    std::vector<std::string>* messages;
};

// Answers prompts from the script in order (echo on or off alike); records every text.
// Out of answers: PAM_CONV_ERR, as a user who closed the window.
int scripted_conv(int num_msg, const pam_message** msg, pam_response** resp, void* appdata) {
    auto* script = static_cast<Script*>(appdata);
    if (num_msg <= 0 || msg == nullptr || resp == nullptr || script == nullptr) return PAM_CONV_ERR;
    auto* out = static_cast<pam_response*>(
        std::calloc(static_cast<std::size_t>(num_msg), sizeof(pam_response)));
    if (out == nullptr) return PAM_BUF_ERR;
    for (int i = 0; i < num_msg; ++i) {
        const char* text = msg[i]->msg != nullptr ? msg[i]->msg : "";
        script->messages->emplace_back(text);
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON) {
            if (script->next >= script->answers->size()) {
                for (int j = 0; j < i; ++j) std::free(out[j].resp);
                std::free(out);
                return PAM_CONV_ERR;
            }
            out[i].resp = ::strdup((*script->answers)[script->next++].c_str());
        }
    }
    *resp = out;
    return PAM_SUCCESS;
}

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

void pam_transaction(const PamCall& call, const pam_conv& conv, PamOutcome& out) {
    std::string module = env_or("PAM_CVAT_SO", "");
    if (module.empty() || module.front() != '/') {
        std::printf("Bail out! PAM_CVAT_SO is not an absolute path to pam_cvat.so\n");
        std::exit(1);
    }
    std::error_code ec;
    std::filesystem::create_directories(call.confdir, ec);
    std::string stack;
    for (const char* type : {"auth", "account", "session", "password"})
        stack += std::string(type) + " required " + module + " " + call.module_args + "\n";
    write_file(call.confdir + "/" + call.service, stack, 0644);

    pam_handle_t* pamh = nullptr;
    double started = now_s();
    int rc =
        pam_start_confdir(call.service.c_str(), call.user.empty() ? nullptr : call.user.c_str(),
                          &conv, call.confdir.c_str(), &pamh);
    if (rc != PAM_SUCCESS) {
        out.authenticate = rc;
        out.seconds = now_s() - started;
        return;
    }
    if (!call.rhost.empty()) (void)pam_set_item(pamh, PAM_RHOST, call.rhost.c_str());
    if (call.change_only) {
        rc = out.chauthtok = pam_chauthtok(pamh, 0);
    } else if (call.account_only) {
        rc = out.acct_mgmt = pam_acct_mgmt(pamh, 0);
    } else {
        rc = out.authenticate = pam_authenticate(pamh, 0);
        if (rc == PAM_SUCCESS && call.account) rc = out.acct_mgmt = pam_acct_mgmt(pamh, 0);
        if (rc == PAM_NEW_AUTHTOK_REQD && call.change_expired)
            rc = out.chauthtok = pam_chauthtok(pamh, PAM_CHANGE_EXPIRED_AUTHTOK);
    }
    if (rc == PAM_SUCCESS && call.session) {
        rc = out.open_session = pam_open_session(pamh, 0);
    }

    const void* user = nullptr;
    if (pam_get_item(pamh, PAM_USER, &user) == PAM_SUCCESS && user != nullptr)
        out.pam_user = static_cast<const char*>(user);
    // The environment as the application sees it after the last step (before close_session).
    if (char** env = pam_getenvlist(pamh); env != nullptr) {
        for (char** e = env; *e != nullptr; ++e) {
            std::string kv(*e);
            auto eq = kv.find('=');
            if (eq != std::string::npos) out.env[kv.substr(0, eq)] = kv.substr(eq + 1);
            std::free(*e);
        }
        std::free(env);
    }
    if (out.open_session == PAM_SUCCESS) (void)pam_close_session(pamh, 0);
    pam_end(pamh, rc);
    out.seconds = now_s() - started;
}

PamOutcome pam_login(const PamCall& call) {
    PamOutcome out;
    Script script{&call.answers, 0, &out.messages};
    pam_conv conv{scripted_conv, &script};
    pam_transaction(call, conv, out);
    return out;
}

}  // namespace cvat::test
