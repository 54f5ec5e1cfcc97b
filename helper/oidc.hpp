// SPDX-License-Identifier: GPL-3.0-or-later
// One OpenID Connect identity provider of the sso: section: discovery, JWKS, the password
// grant (RFC 6749 §4.3), the device authorization grant (RFC 8628, PKCE per RFC 7636 when
// enable_pkce), local validation of tokens (jwt.hpp), claims → CVAT role. Thread-safe.
#pragma once

#include <array>
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

// --- pure pieces, exposed for unit tests -------------------------------------------------

// What discovery found, with the choices derived from it.
struct Discovery {
    std::string issuer;           // as discovered: tokens' iss must equal it
    std::string token_endpoint;   // may be empty: token login still works
    std::string device_endpoint;
    std::string userinfo_endpoint;
    std::string jwks_uri;
    std::vector<std::string> auth_methods;  // token_endpoint_auth_methods_supported
    std::vector<std::string> algorithms;    // default_algorithms() ∩ id_token_signing_alg_values_supported
    std::vector<std::string> grant_types;   // for the trace (glewlwyd omits password; not a reason to refuse)
};

// The discovery document of the IdP at `server_url` (its issuer must be server_url, a
// trailing slash aside). Endpoints must be https:// (http:// to loopback, or any with
// allow_insecure_http): a bad jwks_uri fails, another bad endpoint is dropped with a note.
// `notes` gets what the caller should log as warnings.
[[nodiscard]] Result<Discovery> parse_discovery(std::string_view body, const std::string& server_url,
                                                bool allow_insecure_http, std::vector<std::string>& notes);

// A 200 answer of the token endpoint: its id_token and access_token (the parsed document's
// strings are wiped).
struct TokenAnswer {
    enum class Problem { none, not_json, no_id_token } problem = Problem::not_json;
    Secret id_token;
    Secret access_token;
};
TokenAnswer parse_token_answer(std::string_view body);

// A 200 answer of the device authorization endpoint (RFC 8628 §3.2), received at `now`:
// expires_in is cut to an hour, interval clamped to 1..60 s. The error says what is wrong.
[[nodiscard]] Result<DeviceAuthorization> parse_device_authorization(std::string_view body, std::int64_t now);

// What a token endpoint's answer other than 200 means (RFC 6749 §5.2, RFC 8628 §3.5).
// An RFC 6749 error JSON is read by its "error"; a status without one is judged by the
// status alone: 5xx and 429 are unavailable, a bare 400/401/403 (glewlwyd's answer to a
// wrong password) is auth_err — never a success — and anything else unavailable.
struct TokenError {
    DevicePollState poll = DevicePollState::failed;  // what a device poll makes of it
    proto::Status status = proto::Status::auth_err;  // what a password login makes of it
    std::string error;         // the RFC 6749 "error" code; empty when there was none
    std::string description;   // error_description, log_safe()'d and cut; for logs/trace only
    std::string message;       // words for the user's screen
    bool config_problem = false;  // the IdP refuses the client, grant or scope: log a warning
    bool bare = false;            // no RFC 6749 error JSON in the body
};
TokenError classify_token_error(long http_status, std::string_view body);

// Role from a claim's values: exact string match against role_values[role], highest wins;
// RoleMatch.group is the claim value that matched. No match: default_role, from_default.
RoleDecision resolve_claim_role(const std::vector<std::string>& claim_values,
                                const std::array<std::vector<std::string>, 4>& role_values,
                                proto::Role default_role);

// Client authentication at the token endpoint: the configured token_auth_method when the
// file gave one; otherwise one that token_endpoint_auth_methods_supported lists, basic
// first (RFC 6749 §2.3.1: servers MUST support it); basic when the list is absent or names
// neither.
TokenAuthMethod pick_token_auth_method(const IdentityProvider& idp,
                                       const std::vector<std::string>& supported);

// RFC 7636 §4.2: BASE64URL(SHA256(verifier)), no padding.
std::string pkce_s256(std::string_view verifier);

}  // namespace cvat::helper
