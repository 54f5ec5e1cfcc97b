// SPDX-License-Identifier: GPL-3.0-or-later
// helper/oidc.cpp without an IdP: token-endpoint errors (RFC 6749 §5.2, RFC 8628 §3.5, and
// glewlwyd's bare statuses), claim values to roles, client authentication choice, PKCE S256
// (RFC 7636 Appendix B), and the provider's answers when it needs no network or has none.
#include "oidc.hpp"

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "cmocka.hpp"

using cvat::Secret;
using cvat::helper::classify_token_error;
using cvat::helper::DeviceAuthorization;
using cvat::helper::DevicePollState;
using cvat::helper::IdentityProvider;
using cvat::helper::OidcProvider;
using cvat::helper::pick_token_auth_method;
using cvat::helper::pkce_s256;
using cvat::helper::resolve_claim_role;
using cvat::helper::SsoConfig;
using cvat::helper::TokenAuthMethod;
using cvat::helper::TokenError;
using cvat::proto::Role;
using cvat::proto::Status;

namespace {

void expect(const TokenError& te, Status status, DevicePollState poll) {
    if (te.status != status || te.poll != poll) {
        print_error("status %s poll %d, want %s poll %d (error '%s')\n", cvat::proto::status_name(te.status),
                 static_cast<int>(te.poll), cvat::proto::status_name(status), static_cast<int>(poll), te.error.c_str());
        cmocka_fail();
    }
}

void rfc6749_errors(void**) {
    TokenError te = classify_token_error(400, R"({"error":"invalid_grant","error_description":"Invalid user credentials"})");
    expect(te, Status::auth_err, DevicePollState::failed);
    assert_string_equal(te.error.c_str(), "invalid_grant");
    assert_string_equal(te.message.c_str(), "wrong user name or password");
    assert_string_equal(te.description.c_str(), "Invalid user credentials");
    assert_false(te.bare);
    assert_false(te.config_problem);

    for (const char* e : {"invalid_client", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}) {
        te = classify_token_error(e == std::string("invalid_client") ? 401 : 400,
                                  std::string(R"({"error":")") + e + R"("})");
        expect(te, Status::unavailable, DevicePollState::failed);
        assert_true(te.config_problem);
        assert_non_null(std::strstr(te.message.c_str(), "configuration problem"));
    }
    expect(classify_token_error(400, R"({"error":"server_error"})"), Status::unavailable, DevicePollState::failed);
    // An error nobody defined: refused, never a success.
    te = classify_token_error(400, R"({"error":"something_new"})");
    expect(te, Status::auth_err, DevicePollState::failed);
    // A body with more than the error (Keycloak sends error_description, Okta error_uri too).
    te = classify_token_error(400, R"({"error":"invalid_grant","error_uri":"https://x","extra":[1,2]})");
    expect(te, Status::auth_err, DevicePollState::failed);
}

void device_errors(void**) {
    expect(classify_token_error(400, R"({"error":"authorization_pending"})"), Status::auth_err, DevicePollState::pending);
    expect(classify_token_error(400, R"({"error":"slow_down"})"), Status::auth_err, DevicePollState::slow_down);
    TokenError te = classify_token_error(400, R"({"error":"access_denied"})");
    expect(te, Status::auth_err, DevicePollState::denied);
    assert_string_equal(te.message.c_str(), "the sign-in was refused at the IdP");
    te = classify_token_error(400, R"({"error":"expired_token"})");
    expect(te, Status::auth_err, DevicePollState::expired);
    assert_string_equal(te.message.c_str(), "the code expired before it was approved");
    // A device code the IdP no longer knows.
    expect(classify_token_error(400, R"({"error":"invalid_grant"})"), Status::auth_err, DevicePollState::failed);
    // Rate limited: poll slower; for a password login the IdP is not usable now.
    expect(classify_token_error(429, ""), Status::unavailable, DevicePollState::slow_down);
}

void bare_statuses(void**) {
    // glewlwyd: a wrong password is 403 with no body; a wrong client secret 400 with no body.
    for (long s : {400L, 401L, 403L}) {
        TokenError te = classify_token_error(s, "");
        expect(te, Status::auth_err, DevicePollState::failed);
        assert_true(te.bare);
        assert_true(te.error.empty());
    }
    // HTML error pages, JSON without a string error, JSON that is not an object.
    assert_true(classify_token_error(403, "<html><body>Forbidden</body></html>").bare);
    assert_true(classify_token_error(400, R"({"error":42})").bare);
    assert_true(classify_token_error(400, R"(["invalid_grant"])").bare);
    expect(classify_token_error(400, R"({"error":42})"), Status::auth_err, DevicePollState::failed);
    for (long s : {500L, 502L, 503L, 504L}) {
        expect(classify_token_error(s, ""), Status::unavailable, DevicePollState::failed);
        // 5xx wins over whatever the body says.
        expect(classify_token_error(s, R"({"error":"invalid_grant"})"), Status::unavailable, DevicePollState::failed);
    }
    // A status no token endpoint should send (a proxy's 404, a redirect): not usable.
    expect(classify_token_error(404, ""), Status::unavailable, DevicePollState::failed);
    expect(classify_token_error(302, ""), Status::unavailable, DevicePollState::failed);
    // Never treated as success, whatever the body claims.
    expect(classify_token_error(400, R"({"id_token":"x.y.z"})"), Status::auth_err, DevicePollState::failed);
}

void provider_specific(void**) {
    // Entra ID refuses ROPC for users with MFA: invalid_grant with AADSTS50076.
    TokenError te = classify_token_error(
        400, R"({"error":"invalid_grant","error_description":"AADSTS50076: Due to a configuration change made by your administrator, ... you must use multi-factor authentication"})");
    expect(te, Status::perm_denied, DevicePollState::failed);
    assert_non_null(std::strstr(te.message.c_str(), "device login"));
    te = classify_token_error(400, R"({"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password."})");
    expect(te, Status::auth_err, DevicePollState::failed);
    te = classify_token_error(400, R"({"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented"})");
    expect(te, Status::unavailable, DevicePollState::failed);
    assert_true(te.config_problem);
    // Auth0's own code.
    expect(classify_token_error(403, R"({"error":"mfa_required","error_description":"Multifactor authentication required"})"),
           Status::perm_denied, DevicePollState::failed);
}

void descriptions_are_safe(void**) {
    TokenError te = classify_token_error(400, "{\"error\":\"invalid_grant\",\"error_description\":\"a\\nb\\u001b[31m\"}");
    for (char c : te.description) assert_true(static_cast<unsigned char>(c) >= 0x20);
    std::string big(5000, 'x');
    te = classify_token_error(400, R"({"error":"invalid_grant","error_description":")" + big + "\"}");
    assert_true(te.description.size() < 400);
    te = classify_token_error(400, R"({"error":")" + big + "\"}");
    assert_true(te.error.size() <= 64);
    expect(te, Status::auth_err, DevicePollState::failed);
}

std::array<std::vector<std::string>, 4> role_values() {
    std::array<std::vector<std::string>, 4> v;
    v[static_cast<int>(Role::admin)] = {"cvat-admins", "/CVAT/Admins"};
    v[static_cast<int>(Role::user)] = {"cvat-users"};
    v[static_cast<int>(Role::worker)] = {"cvat-workers", "contractors"};
    return v;
}

void claim_roles(void**) {
    auto d = resolve_claim_role({"cvat-workers", "cvat-users", "other"}, role_values(), Role::user);
    assert_int_equal(static_cast<int>(d.role), static_cast<int>(Role::user));
    assert_false(d.from_default);
    assert_int_equal(d.matches.size(), 2);
    assert_string_equal(d.matches[0].group.c_str(), "cvat-workers");
    assert_int_equal(static_cast<int>(d.matches[0].role), static_cast<int>(Role::worker));

    d = resolve_claim_role({"contractors", "/CVAT/Admins"}, role_values(), Role::none);
    assert_int_equal(static_cast<int>(d.role), static_cast<int>(Role::admin));
    assert_string_equal(d.matches[1].group.c_str(), "/CVAT/Admins");

    // Exact strings: no case folding, no path or DN games.
    d = resolve_claim_role({"CVAT-ADMINS", "/cvat/admins", "cvat-admins "}, role_values(), Role::worker);
    assert_int_equal(static_cast<int>(d.role), static_cast<int>(Role::worker));
    assert_true(d.from_default);
    assert_true(d.matches.empty());

    d = resolve_claim_role({}, role_values(), Role::none);
    assert_int_equal(static_cast<int>(d.role), static_cast<int>(Role::none));
    assert_true(d.from_default);
    d = resolve_claim_role({"cvat-users"}, {}, Role::user);
    assert_true(d.from_default);
}

void auth_method_choice(void**) {
    IdentityProvider idp;
    auto pick = [&](std::vector<std::string> s) { return pick_token_auth_method(idp, s); };
    assert_true(pick({}) == TokenAuthMethod::client_secret_basic);
    assert_true(pick({"client_secret_post", "client_secret_basic"}) == TokenAuthMethod::client_secret_basic);
    assert_true(pick({"private_key_jwt", "client_secret_post"}) == TokenAuthMethod::client_secret_post);
    assert_true(pick({"private_key_jwt"}) == TokenAuthMethod::client_secret_basic);
    idp.token_auth_method_given = true;
    idp.token_auth_method = TokenAuthMethod::client_secret_post;
    assert_true(pick({"client_secret_basic"}) == TokenAuthMethod::client_secret_post);
}

void pkce_rfc7636_vector(void**) {
    assert_string_equal(pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").c_str(),
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

// A provider whose IdP does not answer (port 1 on loopback refuses at once).
std::unique_ptr<OidcProvider> dead_provider(std::int64_t* now) {
    IdentityProvider idp;
    idp.id = "dead";
    idp.name = "Dead";
    idp.server_url = "http://127.0.0.1:1/realms/x";
    idp.client_id = "cvat";
    idp.client_secret = Secret("s3cret");
    SsoConfig sso;
    auto p = OidcProvider::create(std::move(idp), sso, [now] { return *now; });
    assert_true(p.has_value());
    return std::move(*p);
}

void offline_answers(void**) {
    std::int64_t now = 1700000000;
    auto p = dead_provider(&now);
    assert_true(p->config().client_secret.empty());  // the provider holds it, not the config copy
    assert_string_equal(p->config().client_id.c_str(), "cvat");

    // Refused before any request.
    auto out = p->password_login("alice", Secret(""));
    assert_int_equal(static_cast<int>(out.status), static_cast<int>(Status::auth_err));
    out = p->password_login("", Secret("pw"));
    assert_int_equal(static_cast<int>(out.status), static_cast<int>(Status::user_unknown));
    out = p->token_login(Secret("not a token"));
    assert_int_equal(static_cast<int>(out.status), static_cast<int>(Status::auth_err));

    DeviceAuthorization a;
    a.device_code = Secret("dc");
    a.expires_at = now;
    auto poll = p->device_poll(a);
    assert_int_equal(static_cast<int>(poll.state), static_cast<int>(DevicePollState::expired));

    // The IdP is down: unavailable, never auth_err or ok.
    out = p->password_login("alice", Secret("pw"));
    assert_int_equal(static_cast<int>(out.status), static_cast<int>(Status::unavailable));
    // A well-formed JWT (header {"alg":"RS256","kid":"k"}) with no reachable JWKS.
    out = p->token_login(Secret("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJ4In0.c2ln"));
    assert_int_equal(static_cast<int>(out.status), static_cast<int>(Status::unavailable));
    a.expires_at = now + 600;
    poll = p->device_poll(a);
    assert_int_equal(static_cast<int>(poll.state), static_cast<int>(DevicePollState::failed));
    assert_int_equal(static_cast<int>(poll.outcome.status), static_cast<int>(Status::unavailable));
    auto start = p->device_start();
    assert_false(start.has_value());
    assert_int_equal(static_cast<int>(start.error().code), static_cast<int>(cvat::ErrorCode::unavailable));
    assert_true(p->issuer().empty());
    auto st = p->probe();
    assert_string_equal(st.name.c_str(), "oidc dead");
    assert_false(st.up);
    assert_false(st.detail.empty());
    // Nothing said anywhere holds the client secret.
    for (const auto& l : out.trace) assert_null(std::strstr(l.c_str(), "s3cret"));
    assert_null(std::strstr(st.detail.c_str(), "s3cret"));
}

void create_refuses(void**) {
    SsoConfig sso;
    IdentityProvider idp;
    idp.id = "x";
    idp.client_id = "c";
    assert_false(OidcProvider::create(std::move(idp), sso).has_value());  // no server_url
    IdentityProvider remote;
    remote.id = "y";
    remote.client_id = "c";
    remote.server_url = "http://idp.example.com";
    assert_false(OidcProvider::create(std::move(remote), sso).has_value());  // http:// to a remote host
}

}  // namespace

int main() {
    const CMUnitTest tests[] = {
        cmocka_unit_test(rfc6749_errors),   cmocka_unit_test(device_errors),
        cmocka_unit_test(bare_statuses),    cmocka_unit_test(provider_specific),
        cmocka_unit_test(descriptions_are_safe), cmocka_unit_test(claim_roles),
        cmocka_unit_test(auth_method_choice), cmocka_unit_test(pkce_rfc7636_vector),
        cmocka_unit_test(offline_answers),  cmocka_unit_test(create_refuses),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
