// SPDX-License-Identifier: GPL-3.0-or-later
// The OpenID Connect provider of the tests (tests/fixtures/idp.sh: glewlwyd over HTTPS with a
// throw-away CA, users in its own slapd; users and keys in tests/fixtures/README.md), and a
// PAM driver whose conversation is a function, for device logins that a test approves while
// the PAM call waits.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "pam_driver.hpp"

namespace cvat::test {

// Password of an IdP fixture user ("ada" → "ada-Idp-Passw0rd").
std::string idp_password(const std::string& uid);

class Idp {
public:
    // idp.sh start DIR [--ldap-port P] [--port P] (0: a free port); skips the test program
    // when glewlwyd or slapd is missing, aborts it when the start fails.
    explicit Idp(const std::string& dir, int ldap_port = 0, int port = 0);
    ~Idp();
    Idp(const Idp&) = delete;
    Idp& operator=(const Idp&) = delete;

    std::string get(const std::string& key) const;  // a value from DIR/env
    std::string issuer() const { return get("OIDC_ISSUER"); }
    std::string short_issuer() const { return get("OIDC_SHORT_ISSUER"); }  // 4 s device codes
    std::string client_id() const { return get("OIDC_CLIENT_ID"); }
    std::string client_secret() const { return get("OIDC_CLIENT_SECRET"); }
    std::string ca_file() const { return get("OIDC_CA_FILE"); }
    std::string signing_key() const { return get("OIDC_SIGNING_KEY"); }  // PEM path
    std::string public_key_pem() const;                                  // PEM text
    std::string jwk_json() const;                                        // as the JWKS serves it
    std::string kid() const { return get("OIDC_KID"); }
    std::string base_url() const { return get("IDP_BASE_URL"); }
    std::string log_path() const { return get("GLEWLWYD_LOG"); }
    double start_seconds() const;

    // Device logins by user code (idp.sh approve/deny/slow-down); true on success. Safe to call
    // from another thread while a PAM call waits.
    bool approve(const std::string& user_code, const std::string& user,
                 const std::string& password) const;
    bool deny(const std::string& user_code, const std::string& user,
              const std::string& password) const;
    bool slow_down(const std::string& user_code) const;
    // When glewlwyd saw the last poll of this device login (its gpoda_last_check, epoch
    // seconds; slow_down moves it ahead); -1 if unknown.
    long long last_poll(const std::string& user_code) const;

    // A password grant straight to the token endpoint (curl); the ID token, or "" on refusal.
    std::string id_token(const std::string& user, const std::string& password) const;

    void stop_glewlwyd();  // the IdP goes down; its slapd stays
    void stop();           // both, by PID

private:
    std::string dir_;
    bool running_ = false;
};

// Answers one conversation message: the text to send back for a prompt, std::nullopt to fail
// the conversation (PAM_CONV_ERR, a user who closed the window). `style` is PAM_PROMPT_ECHO_ON,
// PAM_PROMPT_ECHO_OFF, PAM_TEXT_INFO or PAM_ERROR_MSG (the answer is ignored for the last two).
using Responder = std::function<std::optional<std::string>(int style, const std::string& text)>;

// pam_login with a live conversation instead of a list of answers (call.answers is unused).
PamOutcome pam_converse(const PamCall& call, const Responder& respond);

}  // namespace cvat::test
