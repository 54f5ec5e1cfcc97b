// SPDX-License-Identifier: GPL-3.0-or-later
// SAML (issue 9): attribute and role mapping, looks_like_saml_response, and the validation
// rules on hand-made responses signed with tests/support/saml-test.key, with a test clock.
// Project headers before cmocka.h: cmocka defines a `fail` macro that clashes with cvat::fail.
#include "saml.hpp"
#include "saml_forge.hpp"

#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}

#include <string>

using namespace cvat::helper;
using cvat::Secret;
using cvat::proto::Role;
using cvat::proto::Status;
using cvat::test::SamlForge;

namespace {

std::int64_t g_now = 1800000000;

IdentityProvider corp_idp() {
    IdentityProvider idp;
    idp.id = "corp";
    idp.protocol = Protocol::saml;
    idp.name = "Corp IdP";
    idp.entity_id = "https://idp.example.test/saml2/idp";
    idp.x509_cert = cvat::test::saml_support_file("saml-test.crt");
    idp.sso_url = "http://127.0.0.1:9/sso";
    idp.attribute_mapping = {{"uid", "uid"}, {"email", "mail"}};
    idp.role_attribute = "groups";
    idp.role_values[static_cast<int>(Role::admin)] = {"admins"};
    idp.role_values[static_cast<int>(Role::user)] = {"staff"};
    return idp;
}

std::unique_ptr<SamlProvider> provider(IdentityProvider idp = corp_idp()) {
    SsoConfig sso;
    auto p = SamlProvider::create(std::move(idp), sso, "https://cvat.example.test/", [] { return g_now; });
    if (!p) fail_msg("create: %s", p.error().detail.c_str());
    return std::move(*p);
}

SamlOutcome login(SamlProvider& p, const std::string& b64) { return p.assertion_login(Secret(b64)); }

void expect_refused(const SamlOutcome& o, const char* what) {
    if (o.status == Status::ok) fail_msg("%s: accepted as %s", what, o.user.username.c_str());
    if (o.status != Status::auth_err) fail_msg("%s: status %d (%s)", what, static_cast<int>(o.status), o.message.c_str());
    print_message("# %s: %s\n", what, o.message.c_str());
}

void test_sp_identity(void**) {
    auto p = provider();
    assert_string_equal(p->sp().entity_id.c_str(), "https://cvat.example.test/api/auth/saml/corp/metadata/");
    assert_string_equal(p->sp().acs_url.c_str(), "https://cvat.example.test/api/auth/saml/corp/acs/");
    const std::string md = p->sp_metadata();
    assert_non_null(std::strstr(md.c_str(), "urn:oasis:names:tc:SAML:2.0:bindings:PAOS"));
    IdentityProvider idp = corp_idp();
    idp.sp_entity_id = "urn:sp";
    idp.acs_url = "https://x/acs";
    SamlSpIdentity sp = saml_sp_identity(idp, "");
    assert_string_equal(sp.entity_id.c_str(), "urn:sp");
    assert_string_equal(sp.acs_url.c_str(), "https://x/acs");
    SsoConfig sso;
    assert_false(SamlProvider::create(corp_idp(), sso, "").has_value());  // no base URL, no overrides
}

void test_valid_then_replay(void**) {
    g_now = 1800000000;
    auto p = provider();
    SamlForge f;
    SamlOutcome o = login(*p, f.b64());
    if (o.status != Status::ok) fail_msg("valid response refused: %s", o.message.c_str());
    // selection_mode email_address (CVAT's default): the user name is the email, as for OIDC.
    assert_string_equal(o.user.username.c_str(), "alice@example.test");
    assert_string_equal(o.user.email.c_str(), "alice@example.test");
    assert_int_equal(static_cast<int>(o.user.role.role), static_cast<int>(Role::admin));  // highest wins
    assert_string_equal(o.user.immutable_id().c_str(), "saml:https://idp.example.test/saml2/idp alice");
    expect_refused(login(*p, f.b64()), "replay");
}

void test_time_window(void**) {
    auto p = provider();
    SamlForge f;
    f.assertion_id = "_time1";
    g_now = f.now + 300 + 61;  // past NotOnOrAfter + leeway
    expect_refused(login(*p, f.b64()), "expired");
    g_now = f.now - 10 - 61;   // before NotBefore - leeway
    expect_refused(login(*p, f.b64()), "not yet valid");
    g_now = f.now + 300 + 30;  // within the leeway
    assert_int_equal(static_cast<int>(login(*p, f.b64()).status), static_cast<int>(Status::ok));
    g_now = 1800000000;
}

void test_wrong_fields(void**) {
    g_now = 1800000000;
    auto p = provider();
    SamlForge f;
    f.assertion_id = "_aud";
    f.audience = "https://other.example.test/sp";
    expect_refused(login(*p, f.b64()), "wrong audience");
    f = SamlForge();
    f.assertion_id = "_iss";
    f.issuer = "https://evil.example.test/idp";
    expect_refused(login(*p, f.b64()), "wrong issuer");
    f = SamlForge();
    f.assertion_id = "_rcp";
    f.recipient = "https://other.example.test/acs";
    expect_refused(login(*p, f.b64()), "wrong recipient");
    f = SamlForge();
    f.assertion_id = "_dst";
    f.destination = "https://other.example.test/acs";
    expect_refused(login(*p, f.b64()), "wrong destination");
}

void test_signatures(void**) {
    g_now = 1800000000;
    auto p = provider();
    SamlForge f;
    f.assertion_id = "_unsigned";
    f.sign_assertion = false;
    expect_refused(login(*p, f.b64()), "unsigned");
    f = SamlForge();
    f.assertion_id = "_other";
    f.key = "saml-other";  // its certificate travels in KeyInfo: must not be trusted
    expect_refused(login(*p, f.b64()), "signed by another key");
    f = SamlForge();
    f.assertion_id = "_sha1";
    f.sha1 = true;
    expect_refused(login(*p, f.b64()), "sha1");
    IdentityProvider legacy = corp_idp();
    legacy.allow_sha1 = true;
    auto p2 = provider(std::move(legacy));
    SamlOutcome o = login(*p2, f.b64());
    if (o.status != Status::ok) fail_msg("sha1 with allow_sha1 refused: %s", o.message.c_str());
}

void test_signature_wrapping(void**) {
    g_now = 1800000000;
    auto p = provider();
    SamlForge f;
    f.assertion_id = "_xsw";
    for (const auto& [name, xml] : cvat::test::saml_xsw_variants(f)) {
        SamlOutcome o = login(*p, cvat::test::saml_base64(xml));
        if (o.status == Status::ok) fail_msg("XSW '%s' accepted as %s", name.c_str(), o.user.username.c_str());
        print_message("# XSW %s: %s\n", name.c_str(), o.message.c_str());
    }
}

void test_comment_in_name_id(void**) {
    g_now = 1800000000;
    auto p = provider();
    SamlForge f;
    f.assertion_id = "_comment";
    f.name_id = "ali<!---->ce";
    f.attributes = {{"mail", {"alice@example.test"}}, {"groups", {"staff"}}};  // no uid: NameID names the user
    SamlOutcome o = login(*p, f.b64());
    // Full text or a refusal; never "ali".
    if (o.status == Status::ok) assert_string_equal(o.user.username.c_str(), "alice");
    else expect_refused(o, "comment in NameID");
}

void test_looks_like(void**) {
    SamlForge f;
    assert_true(looks_like_saml_response(f.b64()));
    assert_false(looks_like_saml_response("alice-secret"));
    assert_false(looks_like_saml_response("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
    assert_false(looks_like_saml_response(cvat::test::saml_base64(
        "<Response xmlns=\"urn:example:not-saml\">................................................</Response>")));
    assert_true(looks_like_saml_response(cvat::test::saml_base64(
        "<?xml version=\"1.0\"?><Response xmlns=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"x\">......</Response>")));
    assert_string_equal(saml_response_issuer(f.b64()).c_str(), "https://idp.example.test/saml2/idp");
}

void test_attribute_mapping(void**) {
    IdentityProvider idp = corp_idp();
    idp.attribute_mapping = {{"username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"},
                             {"email", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"},
                             {"first_name", "givenName"},
                             {"uid", "uid"}};
    SamlAttributes attrs = {{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", {"alice.a"}},
                            {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", {"alice@corp.test"}},
                            {"givenName", {"Alice"}},
                            {"uid", {"a123"}}};
    SamlUser u = map_saml_user(idp, SelectionMode::lowest_weight, "alice.a", "iss", "nid", attrs);
    assert_string_equal(u.username.c_str(), "alice.a");
    assert_string_equal(u.email.c_str(), "alice@corp.test");
    assert_string_equal(u.first_name.c_str(), "Alice");
    // email_address mode: the email is the name, whatever was typed
    u = map_saml_user(idp, SelectionMode::email_address, "Alice@corp.test", "iss", "nid", attrs);
    assert_string_equal(u.username.c_str(), "alice@corp.test");
    u = map_saml_user(idp, SelectionMode::email_address, "alice.a", "iss", "nid", attrs);
    assert_string_equal(u.username.c_str(), "alice@corp.test");
    // no username attribute → uid → NameID
    attrs.erase(attrs.begin());
    u = map_saml_user(idp, SelectionMode::lowest_weight, "x", "iss", "nid", attrs);
    assert_string_equal(u.username.c_str(), "a123");
    attrs.pop_back();
    u = map_saml_user(idp, SelectionMode::lowest_weight, "x", "iss", "nid", attrs);
    assert_string_equal(u.username.c_str(), "nid");
    assert_string_equal(u.immutable_id().c_str(), "saml:iss nid");
}

void test_role_mapping(void**) {
    IdentityProvider idp = corp_idp();
    idp.role_values[static_cast<int>(Role::worker)] = {"contractors"};
    SamlUser u;
    resolve_saml_role(idp, {{"groups", {"contractors", "staff"}}}, u);
    assert_int_equal(static_cast<int>(u.role.role), static_cast<int>(Role::user));
    SamlUser v;
    idp.default_role = Role::none;
    resolve_saml_role(idp, {{"groups", {"nobody"}}}, v);
    assert_int_equal(static_cast<int>(v.role.role), static_cast<int>(Role::none));
    assert_true(v.role.from_default);
}

void test_replay_cache_bounds(void**) {
    SamlReplayCache c(2);
    assert_true(c.insert("a", 100, 10));
    assert_false(c.insert("a", 100, 50));
    assert_true(c.insert("b", 20, 10));
    assert_false(c.insert("c", 100, 15));  // full of live entries: refuse
    assert_true(c.insert("c", 100, 30));   // b expired and is dropped
    assert_true(c.insert("a", 200, 101));  // a expired: may be seen again
}

}  // namespace

int main() {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sp_identity),        cmocka_unit_test(test_valid_then_replay),
        cmocka_unit_test(test_time_window),        cmocka_unit_test(test_wrong_fields),
        cmocka_unit_test(test_signatures),         cmocka_unit_test(test_signature_wrapping),
        cmocka_unit_test(test_comment_in_name_id), cmocka_unit_test(test_looks_like),
        cmocka_unit_test(test_attribute_mapping),  cmocka_unit_test(test_role_mapping),
        cmocka_unit_test(test_replay_cache_bounds),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
