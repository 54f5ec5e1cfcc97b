// SPDX-License-Identifier: GPL-3.0-or-later
// One OpenID Connect identity provider of the sso: section: discovery, JWKS, the password
// grant (RFC 6749 §4.3), the device authorization grant (RFC 8628, PKCE per RFC 7636 when
// enable_pkce), local validation of tokens (jwt.hpp), claims → CVAT role. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "protocol.hpp"
#include "roles.hpp"
#include "secret.hpp"

namespace cvat::helper {

// Seconds since the epoch; a parameter so tests control time.
using WallClock = std::function<std::int64_t()>;
std::int64_t system_wall_clock();

struct OidcUser {
    std::string username;     // from username_claim (default preferred_username; email under
                              // selection_mode email_address)
    std::string subject;      // sub
    std::string issuer;       // iss
    std::string email;
    std::string first_name;   // given_name
    std::string last_name;    // family_name
    std::vector<std::string> role_claim_values;  // what role_claim held
    RoleDecision role;        // RoleMatch.group holds the claim value that matched
};

struct OidcOutcome {
    proto::Status status = proto::Status::internal;
    std::string message;               // for the user's screen; never a token or secret
    OidcUser user;
    std::vector<std::string> trace;    // steps, for `cvat-authctl explain` and debug logs
};

// What the device authorization endpoint answered (RFC 8628 §3.2).
struct DeviceAuthorization {
    Secret device_code;
    std::string user_code;
    std::string verification_uri;
    std::string verification_uri_complete;   // may be empty
    int interval_s = 5;                      // §3.2 default
    std::int64_t expires_at = 0;             // wall clock seconds
    Secret code_verifier;                    // PKCE, when enable_pkce
};

// One poll of the token endpoint (RFC 8628 §3.4–3.5).
enum class DevicePollState { approved, pending, slow_down, denied, expired, failed };
struct DevicePoll {
    DevicePollState state = DevicePollState::failed;
    OidcOutcome outcome;   // filled when approved (validated user) or failed/denied/expired
};

class OidcProvider {
public:
    // Takes the IdP's section whole (client secret included). `sso` gives selection_mode and
    // enable_pkce. No network yet: discovery happens on first use and is cached.
    [[nodiscard]] static Result<std::unique_ptr<OidcProvider>> create(IdentityProvider idp,
                                                                      const SsoConfig& sso,
                                                                      WallClock clock = system_wall_clock);
    virtual ~OidcProvider() = default;

    virtual const IdentityProvider& config() const = 0;   // client_secret already moved out

    // ROPC. invalid_grant (and a bare 4xx) → auth_err; IdP unreachable/5xx → unavailable;
    // the ID token is validated like a token login.
    virtual OidcOutcome password_login(std::string_view user, const Secret& password) = 0;

    // Validates a JWT (ID token or JWT access token) locally; never sends it anywhere.
    virtual OidcOutcome token_login(const Secret& token) = 0;

    // The issuer after discovery (empty if discovery failed): used to route a token login.
    virtual std::string issuer() = 0;

    // RFC 8628 §3.1: start a device authorization.
    [[nodiscard]] virtual Result<DeviceAuthorization> device_start() = 0;
    // RFC 8628 §3.4: one token request for a pending authorization.
    virtual DevicePoll device_poll(const DeviceAuthorization& auth) = 0;

    // Discovery state for `cvat-authctl status`.
    virtual proto::BackendState probe() = 0;
};

}  // namespace cvat::helper
