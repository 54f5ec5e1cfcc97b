// SPDX-License-Identifier: GPL-3.0-or-later
// SAML logins through the whole real path: libpam → pam_cvat.so → cvat-authd → SimpleSAMLphp
// 1.19 as an ECP IdP on loopback (tests/fixtures/saml-idp.sh; users in tests/fixtures/README.md)
// (issue 9). Covers ECP password logins (right, wrong, unknown user; role from the groups
// attribute, highest wins; the IdP down or silent), selection by email domain between an OIDC
// IdP (glewlwyd, tests/fixtures/idp.sh) and the SAML one, x509_cert + sso_url instead of
// metadata, a SAMLResponse as the password (accepted once; refused on replay, expired, not yet
// valid, for another audience, issuer or recipient, signed by another key, unsigned, and in each
// signature wrapping variant XSW1-8 of "On Breaking SAML", USENIX Security 2012), a comment
// inside the NameID (never the truncated name), `cvat-authctl saml-metadata`, the SAML user
// through libnss_cvat.so.2, and metadata_url served by the test (signed with xmlsec1 and checked
// against metadata_signing_cert; refreshed after its cacheDuration). Forged responses come from
// tests/fixtures/saml-forge.py. Prints the median time of 100 ECP and 100 assertion-as-password
// logins as TAP comments.
#include "cmocka.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nss.h>
#include <poll.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.hpp"
#include "idp.hpp"
#include "nss_module.hpp"
#include "pam_driver.hpp"
#include "saml_idp.hpp"

using namespace cvat::test;

namespace {

// pam_cvat's per-step timeout (module argument) and the slack on top of a known wait.
constexpr int kPamTimeout = 30;
constexpr double kSlack = 2.0;
// cvat-authd's HTTP request timeout (helper/http.hpp HttpOptions::timeout_ms).
constexpr double kHttpTimeout = 10.0;
constexpr const char* kIdpId = "test-saml";
constexpr const char* kDomain = "cvat-auth.test";
// What cvat-authd registers at the IdP for kIdpId under helper.cvat_base_url (issue 9 §6);
// saml-idp.sh registers these by default.
constexpr const char* kBaseUrl = "https://cvat.example.test";
constexpr const char* kSpEntityId = "https://cvat.example.test/api/auth/saml/test-saml/metadata/";
constexpr const char* kAcs = "https://cvat.example.test/api/auth/saml/test-saml/acs/";
constexpr const char* kPaos = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS";
// The nss: range of these daemons.
constexpr std::uint32_t kIdMin = 410000, kIdMax = 419999;

struct World {
    TempDir tmp;
    std::unique_ptr<SamlIdp> idp;
    std::unique_ptr<Idp> oidc;      // started by the one test that needs it
    std::string alice_post;          // a real HTTP-POST response for alice (forging base)
    std::string bob_post;            // and for bob
};
World* g = nullptr;

std::string fresh_dir(const std::string& name) { return g->tmp.fresh(name); }

std::string email(const std::string& user) {
    return user + "@" + kDomain;
}

std::string env_of(const PamOutcome& o, const char* key) {
    auto it = o.env.find(key);
    return it == o.env.end() ? "" : it->second;
}

std::string joined(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += s + "\n";
    return out;
}

double now_mono() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string run_cmd(const std::string& cmd, int& status) {
    std::string out;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    char buf[4096];
    size_t n;
    while (p != nullptr && (n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    int st = p != nullptr ? pclose(p) : -1;
    status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

// The base64 body of a PEM certificate, on one line (x509_cert as CVAT's auth_config.yml takes it).
std::string cert_body(const std::string& pem) {
    std::string out;
    std::size_t at = 0;
    while (at < pem.size()) {
        std::size_t end = pem.find('\n', at);
        if (end == std::string::npos) end = pem.size();
        std::string line = pem.substr(at, end - at);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.rfind("-----", 0) != 0) out += line;
        at = end + 1;
    }
    return out;
}

// ---- configuration --------------------------------------------------------------------------

struct SamlEntry {
    std::string id = kIdpId;
    std::string metadata_url;  // default: the fixture's; "-" for x509_cert + sso_url
    std::string sso_url;       // with metadata_url "-"
    std::string x509_cert;     // with metadata_url "-"
    std::string entity_id;     // default: the fixture's
    std::string email_domain = kDomain;
    std::string extra;         // more keys, each "      key: value\n"
};

std::string saml_yaml(const SamlEntry& e) {
    std::string y = "    - id: " + e.id + "\n"
                    "      protocol: SAML\n"
                    "      name: cvat-auth test SAML IdP\n"
                    "      entity_id: " + (e.entity_id.empty() ? g->idp->entity_id() : e.entity_id) + "\n";
    if (e.metadata_url == "-")
        y += "      sso_url: " + e.sso_url + "\n"
             "      x509_cert: " + e.x509_cert + "\n";
    else
        y += "      metadata_url: " + (e.metadata_url.empty() ? g->idp->metadata_url() : e.metadata_url) + "\n";
    return y + "      attribute_mapping: {uid: uid, username: uid, email: email, first_name: givenName, last_name: sn}\n"
               "      email_domain: " + e.email_domain + "\n"
               "      weight: 10\n"
               "      role_attribute: groups\n"
               "      role_values:\n"
               "        admin: [cvat_admins]\n"
               "        user: [cvat_annotators]\n"
               "        worker: [cvat_workers]\n" + e.extra;
}

// The OIDC IdP of the mixed configuration (as tests/integration/test_oidc_login.cpp has it).
std::string oidc_yaml() {
    return "    - id: corp-oidc\n"
           "      protocol: OIDC\n"
           "      name: Test OIDC IdP\n"
           "      server_url: " + g->oidc->issuer() + "\n"
           "      client_id: " + g->oidc->client_id() + "\n"
           "      client_secret: " + g->oidc->client_secret() + "\n"
           "      token_auth_method: client_secret_basic\n"
           "      email_domain: example.test\n"
           "      weight: 10\n"
           "      ca_file: " + g->oidc->ca_file() + "\n"
           "      role_claim: groups\n"
           "      role_values:\n"
           "        admin: [cvat-admins]\n"
           "        user: [cvat-users]\n"
           "        worker: [cvat-workers]\n";
}

std::string config(const std::string& idps_yaml, bool nss = false) {
    std::string y = "helper:\n"
                    "  socket: @SOCKET@\n"
                    "  log_level: debug\n"
                    "  cvat_base_url: " + std::string(kBaseUrl) + "\n"
                    "sso:\n"
                    "  enabled: true\n"
                    "  selection_mode: email_address\n"
                    "  identity_providers:\n" + idps_yaml;
    if (nss)
        y += "nss:\n"
             "  id_min: " + std::to_string(kIdMin) + "\n"
             "  id_max: " + std::to_string(kIdMax) + "\n"
             "  home: /home/saml/%u\n"
             "  shell: /bin/sh\n";
    return y;
}

std::string config(const SamlEntry& e = SamlEntry{}, bool nss = false) {
    return config(saml_yaml(e), nss);
}

// ---- logins ---------------------------------------------------------------------------------

struct Login {
    std::unique_ptr<Daemon> daemon;
    std::string dir;

    PamOutcome operator()(const std::string& user, const std::string& password) const {
        PamCall call;
        call.confdir = dir;
        call.user = user;
        call.answers = {password};
        call.module_args = "socket=" + daemon->socket() + " timeout=" + std::to_string(kPamTimeout);
        return pam_login(call);
    }
    std::string log() const { return read_file(daemon->log_path()); }
};

Login start(const std::string& name, const std::string& yaml) {
    Login l;
    l.dir = fresh_dir(name);
    l.daemon = std::make_unique<Daemon>(l.dir, yaml);
    return l;
}

void expect_pam(const std::string& what, int got, int want) {
    if (got != want)
        fail_msg("%s: PAM code %d (%s), want %d (%s)", what.c_str(), got, pam_strerror(nullptr, got), want,
                 pam_strerror(nullptr, want));
}

void expect_refused(const std::string& what, const PamOutcome& o, int want) {
    if (o.authenticate == PAM_SUCCESS)
        fail_msg("%s: logged in (PAM_USER \"%s\", CVAT_ROLE \"%s\")", what.c_str(), o.pam_user.c_str(),
                 env_of(o, "CVAT_ROLE").c_str());
    expect_pam(what, o.authenticate, want);
}

void expect_success(const Login& l, const std::string& what, const PamOutcome& o, const std::string& pam_user,
                    const std::string& role, const std::string& idp = kIdpId) {
    if (o.authenticate != PAM_SUCCESS)
        fail_msg("%s: PAM code %d (%s), want success; messages:\n%s(daemon log %s)", what.c_str(), o.authenticate,
                 pam_strerror(nullptr, o.authenticate), joined(o.messages).c_str(), l.daemon->log_path().c_str());
    expect_pam(what + " (account)", o.acct_mgmt, PAM_SUCCESS);
    if (o.pam_user != pam_user)
        fail_msg("%s: PAM_USER \"%s\", want \"%s\"", what.c_str(), o.pam_user.c_str(), pam_user.c_str());
    if (env_of(o, "CVAT_ROLE") != role)
        fail_msg("%s: CVAT_ROLE \"%s\", want \"%s\"", what.c_str(), env_of(o, "CVAT_ROLE").c_str(), role.c_str());
    if (env_of(o, "CVAT_IDP") != idp)
        fail_msg("%s: CVAT_IDP \"%s\", want \"%s\"", what.c_str(), env_of(o, "CVAT_IDP").c_str(), idp.c_str());
}

// One forged response (base64), fresh IDs; aborts the test if forging fails.
std::string forged(const std::string& base, const std::string& variant) {
    auto v = g->idp->forge(base, variant);
    if (v.size() != 1) fail_msg("saml-forge.py %s produced nothing", variant.c_str());
    return v[0];
}

// ---- ECP password logins --------------------------------------------------------------------

// alice (admins + annotators) is admin, bob user, walt worker, dora (four groups, admin last)
// admin: the highest role wins; the exported environment names the IdP and the email.
void ecp_login_right(void**) {
    Login l = start("ecp", config());
    auto o = l(email("alice"), saml_password("alice"));
    expect_success(l, "alice (ECP)", o, email("alice"), "admin");
    assert_string_equal(env_of(o, "CVAT_EMAIL").c_str(), email("alice").c_str());
    expect_success(l, "bob (ECP)", l(email("bob"), saml_password("bob")), email("bob"), "user");
    expect_success(l, "walt (ECP)", l(email("walt"), saml_password("walt")), email("walt"), "worker");
}

void ecp_role_highest_wins(void**) {
    Login l = start("roles", config());
    // dora: cvat_workers, cvat_annotators, staff, cvat_admins (in that order) → admin
    expect_success(l, "dora, four groups", l(email("dora"), saml_password("dora")), email("dora"), "admin");
    // alice: cvat_admins listed before cvat_annotators → still admin
    expect_success(l, "alice, two groups", l(email("alice"), saml_password("alice")), email("alice"), "admin");
}

// SimpleSAMLphp answers a wrong password with HTTP 200 and a Responder status (no assertion).
void ecp_login_wrong(void**) {
    Login l = start("wrong", config());
    expect_refused("alice, wrong password", l(email("alice"), "alice-secret-not"), PAM_AUTH_ERR);
    expect_refused("alice, bob's password", l(email("alice"), saml_password("bob")), PAM_AUTH_ERR);
    auto o = l(email("mallory"), "whatever-secret");
    if (o.authenticate != PAM_AUTH_ERR && o.authenticate != PAM_USER_UNKNOWN)
        fail_msg("unknown user: PAM code %d (%s), want PAM_AUTH_ERR or PAM_USER_UNKNOWN", o.authenticate,
                 pam_strerror(nullptr, o.authenticate));
    // The right password afterwards still works (no lockout, no stale state).
    expect_success(l, "alice after the refusals", l(email("alice"), saml_password("alice")), email("alice"), "admin");
}

// An IdP of its own that goes down (connection refused), and one that accepts connections and
// never answers: PAM_AUTHINFO_UNAVAIL, within the HTTP timeout.
void ecp_idp_down(void**) {
    auto own = std::make_unique<SamlIdp>(fresh_dir("down-idp"));
    SamlEntry e;
    e.metadata_url = own->metadata_url();
    Login l = start("down", config(e));
    expect_success(l, "before the outage", l(email("bob"), saml_password("bob")), email("bob"), "user");
    own->stop();
    auto o = l(email("alice"), saml_password("alice"));
    expect_refused("IdP stopped", o, PAM_AUTHINFO_UNAVAIL);
    std::printf("# IdP stopped: PAM_AUTHINFO_UNAVAIL after %.2f s\n", o.seconds);
    if (o.seconds > kHttpTimeout + kSlack) fail_msg("a stopped IdP took %.1f s", o.seconds);

    SilentServer silent;
    SamlEntry s;
    s.metadata_url = "-";
    s.sso_url = "http://127.0.0.1:" + std::to_string(silent.port()) + "/saml2/idp/SSOService.php";
    s.x509_cert = cert_body(g->idp->cert_pem());
    Login ls = start("silent", config(s));
    double t0 = now_mono();
    o = ls(email("alice"), saml_password("alice"));
    expect_refused("IdP silent", o, PAM_AUTHINFO_UNAVAIL);
    std::printf("# silent IdP: PAM_AUTHINFO_UNAVAIL after %.1f s\n", now_mono() - t0);
    if (now_mono() - t0 > kHttpTimeout + kSlack) fail_msg("a silent IdP took %.1f s", now_mono() - t0);
}

// x509_cert + sso_url (no metadata) as CVAT allows: ECP logins and assertions work the same.
void cert_and_sso_url(void**) {
    SamlEntry e;
    e.metadata_url = "-";
    e.sso_url = g->idp->sso_url();
    e.x509_cert = cert_body(g->idp->cert_pem());
    Login l = start("pinned", config(e));
    expect_success(l, "alice, x509_cert + sso_url", l(email("alice"), saml_password("alice")), email("alice"), "admin");
    expect_refused("alice, wrong password", l(email("alice"), "nope-secret"), PAM_AUTH_ERR);
    expect_success(l, "assertion, x509_cert", l(email("bob"), forged(g->bob_post, "valid")), email("bob"), "user");
    expect_refused("another key, x509_cert", l(email("bob"), forged(g->bob_post, "other-key")), PAM_AUTH_ERR);
}

// ada@example.test goes to the OIDC IdP, alice@cvat-auth.test to the SAML one, in one config.
void selection_by_email_domain(void**) {
    if (!g->oidc) g->oidc = std::make_unique<Idp>(g->tmp.path() + "/oidc");
    Login l = start("select", config(oidc_yaml() + saml_yaml(SamlEntry{})));
    expect_success(l, "ada → OIDC", l("ada@example.test", idp_password("ada")), "ada@example.test", "admin",
                   "corp-oidc");
    expect_success(l, "alice → SAML", l(email("alice"), saml_password("alice")), email("alice"), "admin");
    expect_success(l, "walt → SAML", l(email("walt"), saml_password("walt")), email("walt"), "worker");
    // Each IdP gets only its own users: alice's SAML password means nothing to glewlwyd.
    expect_refused("alice@example.test", l("alice@example.test", saml_password("alice")), PAM_AUTH_ERR);
    auto o = l("ada@nowhere.test", idp_password("ada"));
    if (o.authenticate == PAM_SUCCESS) fail_msg("ada@nowhere.test logged in via %s", env_of(o, "CVAT_IDP").c_str());
}

// ---- a SAMLResponse as the password ---------------------------------------------------------

void assertion_valid_once(void**) {
    Login l = start("once", config());
    std::string r = forged(g->alice_post, "valid");
    auto o = l(email("alice"), r);
    expect_success(l, "a valid response", o, email("alice"), "admin");
    assert_string_equal(env_of(o, "CVAT_EMAIL").c_str(), email("alice").c_str());
    expect_refused("the same response again (replay)", l(email("alice"), r), PAM_AUTH_ERR);
    // The IdP's own response, unmodified (a fresh HTTP-POST login of bob), is accepted once.
    std::string own = g->idp->response_xml("post", "bob", saml_password("bob"));
    if (own.empty()) fail_msg("no HTTP-POST response from the IdP for bob");
    std::string as_is = forged(own, "as-is");
    expect_success(l, "bob's response as the IdP sent it", l(email("bob"), as_is), email("bob"), "user");
    expect_refused("bob's response again (replay)", l(email("bob"), as_is), PAM_AUTH_ERR);
    // A response that only the Assertion signs (no Response signature) is valid SAML.
    expect_success(l, "Assertion signed, Response not", l(email("bob"), forged(g->bob_post, "assertion-only")),
                   email("bob"), "user");
    // The response decides who logs in: bob's response under alice's name is refused.
    o = l(email("alice"), forged(g->bob_post, "valid"));
    if (o.authenticate == PAM_SUCCESS && o.pam_user != email("bob"))
        fail_msg("bob's response logged in as \"%s\"", o.pam_user.c_str());
}

// Each re-signed with the IdP key, so only the rule named breaks.
void assertion_refused(void**) {
    Login l = start("refused", config());
    const char* variants[] = {"expired", "not-yet-valid", "audience", "issuer", "recipient", "other-key", "unsigned"};
    for (const char* v : variants)
        expect_refused(std::string("response ") + v, l(email("alice"), forged(g->alice_post, v)), PAM_AUTH_ERR);
    // Not base64, and base64 of something else: refused, not unavailable.
    expect_refused("garbage as a response", l(email("alice"), "PHNhbWxwOlJlc3BvbnNlPg=="), PAM_AUTH_ERR);
}

// XSW1-8 from bob's response with mallory (cvat_admins) where a naive reader looks: refused,
// and never mallory.
void assertion_xsw(void**) {
    Login l = start("xsw", config());
    for (int i = 1; i <= 8; ++i) {
        std::string v = "xsw" + std::to_string(i);
        for (const std::string& user : {email("mallory"), email("bob")}) {
            auto o = l(user, forged(g->bob_post, v));
            if (o.authenticate == PAM_SUCCESS && contains(o.pam_user, "mallory"))
                fail_msg("%s as %s: logged in as \"%s\" (role %s): signature wrapping works", v.c_str(), user.c_str(),
                         o.pam_user.c_str(), env_of(o, "CVAT_ROLE").c_str());
            expect_refused(v + " as " + user, o, PAM_AUTH_ERR);
        }
    }
}

// "ali<!-- x -->ce" in NameID, uid and email: alice (the signed, canonical text) or a refusal,
// never "ali" — under either typed name, and not in the daemon's log either.
void assertion_comment_in_name_id(void**) {
    Login l = start("comment", config());
    static const std::regex truncated(R"(\bali(@cvat-auth\.test)?(?![\w@.<-]))");
    for (const std::string& user : {email("alice"), email("ali")}) {
        auto o = l(user, forged(g->alice_post, "comment"));
        std::printf("# comment in NameID, typed %s: %s, PAM_USER \"%s\"\n", user.c_str(),
                    pam_strerror(nullptr, o.authenticate), o.pam_user.c_str());
        if (o.authenticate == PAM_SUCCESS) {
            if (o.pam_user != email("alice")) fail_msg("typed %s: PAM_USER \"%s\", want %s or a refusal", user.c_str(),
                                                       o.pam_user.c_str(), email("alice").c_str());
            if (env_of(o, "CVAT_EMAIL") != email("alice"))
                fail_msg("typed %s: CVAT_EMAIL \"%s\"", user.c_str(), env_of(o, "CVAT_EMAIL").c_str());
        } else if (o.authenticate != PAM_AUTH_ERR) {
            expect_pam("typed " + user, o.authenticate, PAM_AUTH_ERR);
        }
    }
    // The log may name the typed "ali@..." only as what was typed; never as a user that
    // signed in or a name read from the assertion.
    std::string log = l.log();
    std::size_t at = 0;
    while (at < log.size()) {
        std::size_t end = log.find('\n', at);
        if (end == std::string::npos) end = log.size();
        std::string line = log.substr(at, end - at);
        at = end + 1;
        if (!std::regex_search(line, truncated)) continue;
        if (contains(line, "authentication failed") || contains(line, "refused")) continue;  // a refusal may quote it
        if (contains(line, "success") || contains(line, "granted") || contains(line, "role") ||
            contains(line, "name_id") || contains(line, "NameID") || contains(line, "uid"))
            fail_msg("the daemon log reads the truncated name: %s", line.c_str());
    }
}

// ---- tools and NSS --------------------------------------------------------------------------

// The SP metadata to register: our entity ID and a PAOS ACS (issue 9 §6).
void authctl_saml_metadata(void**) {
    Login l = start("ctl", config());
    int st = -1;
    std::string ctl = env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + l.daemon->socket() + " --config " +
                      l.daemon->config_path() + " ";
    std::string out = run_cmd(ctl + "saml-metadata " + kIdpId, st);
    if (st != 0 || !contains(out, kSpEntityId) || !contains(out, kPaos) || !contains(out, kAcs))
        fail_msg("cvat-authctl saml-metadata %s (exit %d): want entity %s and a PAOS ACS %s:\n%s", kIdpId, st,
                 kSpEntityId, kAcs, out.c_str());
    out = run_cmd(ctl + "saml-metadata no-such-idp", st);
    if (st == 0) fail_msg("saml-metadata of an unknown IdP succeeded:\n%s", out.c_str());
    // login/explain cover SAML (issue 9 §7).
    out = run_cmd("echo '" + saml_password("walt") + "' | " + ctl + "login " + email("walt"), st);
    if (st != 0 || !contains(out, "role: worker") || !contains(out, std::string("idp: ") + kIdpId))
        fail_msg("authctl login walt (exit %d):\n%s", st, out.c_str());
}

NssModule g_nss;

// Unknown to the host before the first login, known after it with a uid in the nss: range.
void nss_saml_user_after_login(void**) {
    if (g_nss.handle == nullptr) g_nss = NssModule::load();
    Login l = start("nss", config(SamlEntry{}, true));
    setenv("CVAT_AUTH_SOCKET", l.daemon->socket().c_str(), 1);
    PwEntry before = lookup_pwnam(g_nss, email("walt"));
    if (before.status != NSS_STATUS_NOTFOUND) fail_msg("getpwnam(walt) before any login: status %d", before.status);
    auto o = l(email("walt"), saml_password("walt"));
    expect_success(l, "walt", o, email("walt"), "worker");
    PwEntry p{};
    for (int i = 0; i < 30; ++i) {  // the mapped file follows within ~200 ms
        p = lookup_pwnam(g_nss, o.pam_user);
        if (p.status == NSS_STATUS_SUCCESS) break;
        usleep(100 * 1000);
    }
    if (p.status != NSS_STATUS_SUCCESS) fail_msg("getpwnam(%s) after the login: status %d", o.pam_user.c_str(), p.status);
    if (p.uid < kIdMin || p.uid > kIdMax) fail_msg("uid %u outside %u..%u", p.uid, kIdMin, kIdMax);
    if (p.name != o.pam_user) fail_msg("pw_name \"%s\", want \"%s\"", p.name.c_str(), o.pam_user.c_str());
    // An assertion login makes the same user.
    o = l(email("dora"), forged(g->alice_post, "valid"));  // alice's response: alice logs in
    if (o.authenticate == PAM_SUCCESS && o.pam_user != email("alice"))
        fail_msg("alice's response under dora's name logged in as \"%s\"", o.pam_user.c_str());
    o = l(email("alice"), forged(g->alice_post, "valid"));
    expect_success(l, "alice by assertion", o, email("alice"), "admin");
    for (int i = 0; i < 30; ++i) {
        p = lookup_pwnam(g_nss, email("alice"));
        if (p.status == NSS_STATUS_SUCCESS) break;
        usleep(100 * 1000);
    }
    if (p.status != NSS_STATUS_SUCCESS) fail_msg("getpwnam(alice) after an assertion login: status %d", p.status);
}

// ---- metadata: signature, cache and refresh (issue 9 §4) ------------------------------------

// An HTTP server on 127.0.0.1 in a thread of the test: every GET gets the current body (one
// request per connection). The metadata_url of the tests below, so they can sign, change
// and swap what the daemon fetches. One for the program (md_server()), deleted in teardown:
// a failing test longjmps past destructors.
class MetadataServer {
public:
    MetadataServer() = default;
    MetadataServer(const MetadataServer&) = delete;
    MetadataServer& operator=(const MetadataServer&) = delete;
    std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/metadata.xml"; }
    void set(const std::string& body) {
        std::lock_guard<std::mutex> lock(mutex_);
        body_ = body;
    }
    int fetches() const { return fetches_; }

private:
    void serve(int c) {
        std::string req;
        char buf[4096];
        while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            req.append(buf, static_cast<std::size_t>(n));
        }
        std::string body;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            body = body_;
        }
        ++fetches_;
        std::string out = "HTTP/1.1 200 OK\r\nContent-Type: application/samlmetadata+xml\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        for (std::size_t at = 0; at < out.size();) {
            ssize_t n = ::send(c, out.data() + at, out.size() - at, MSG_NOSIGNAL);
            if (n <= 0) break;
            at += static_cast<std::size_t>(n);
        }
    }
    std::atomic<int> fetches_{0};
    std::mutex mutex_;
    std::string body_;
    LoopbackServer server_{"metadata server", [this](int c) { serve(c); }, false, 2};
};

MetadataServer* g_md = nullptr;

MetadataServer& md_server() {
    if (g_md == nullptr) g_md = new MetadataServer;
    return *g_md;
}

struct MetadataEdit {
    std::string cache_duration;  // cacheDuration on the EntityDescriptor, e.g. "PT4S"
    bool other_signing_cert = false;  // the IdP's certificate replaced by OTHER_CERT (its responses then fail)
    std::string sign_key;        // sign the whole document (URI="") with this key + cert (xmlsec1)
    std::string sign_cert;
};

// The fixture IdP's own metadata (SAML_IDP_METADATA), edited as asked.
std::string idp_metadata(const MetadataEdit& e) {
    std::string xml = read_file(g->idp->get("SAML_IDP_METADATA"));
    const std::string root = "<md:EntityDescriptor ";
    auto at = xml.find(root);
    if (at == std::string::npos) fail_msg("the fixture metadata has no md:EntityDescriptor");
    if (!e.cache_duration.empty()) xml.insert(at + root.size(), "cacheDuration=\"" + e.cache_duration + "\" ");
    if (e.other_signing_cert) {
        const std::string mine = cert_body(g->idp->cert_pem());
        const std::string other = cert_body(read_file(g->idp->get("SAML_IDP_OTHER_CERT")));
        if (!contains(xml, mine)) fail_msg("the fixture metadata does not carry the IdP's certificate");
        for (auto p = xml.find(mine); p != std::string::npos; p = xml.find(mine, p + other.size()))
            xml.replace(p, mine.size(), other);
    }
    if (e.sign_key.empty()) return xml;
    // An enveloped signature template as the EntityDescriptor's first child (where the
    // metadata schema puts it); xmlsec1 fills in digest and value.
    auto gt = xml.find('>', at);
    xml.insert(gt + 1,
               "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>"
               "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>"
               "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>"
               "<ds:Reference URI=\"\"><ds:Transforms>"
               "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>"
               "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>"
               "<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/>"
               "</ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>");
    std::string dir = fresh_dir("mdsign");
    write_file(dir + "/in.xml", xml);
    int st = -1;
    std::string out = run_cmd("xmlsec1 --sign --privkey-pem '" + e.sign_key + "," + e.sign_cert + "' --output '" +
                                  dir + "/out.xml' '" + dir + "/in.xml'",
                              st);
    if (st != 0) fail_msg("xmlsec1 --sign of the metadata failed (exit %d):\n%s", st, out.c_str());
    return read_file(dir + "/out.xml");
}

// `cvat-authctl status`: the output (whatever the exit status; a DOWN backend may set it).
std::string authctl_status(const Login& l) {
    int st = -1;
    return run_cmd(env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + l.daemon->socket() + " --config " +
                       l.daemon->config_path() + " status",
                   st);
}

// The status line of our IdP ("saml test-saml ...").
std::string saml_status_line(const std::string& status) {
    auto at = status.find(std::string("saml ") + kIdpId);
    if (at == std::string::npos) return "";
    return status.substr(at, status.find('\n', at) - at);
}

// metadata_signing_cert: metadata signed by that certificate's key is used; signed by another
// key, or not signed at all, the IdP is unusable (PAM_AUTHINFO_UNAVAIL) and status says why.
void metadata_signed(void**) {
    MetadataServer& srv = md_server();
    const int fetched = srv.fetches();
    const std::string idp_cert = g->idp->cert_path();
    const std::string other_cert = g->idp->get("SAML_IDP_OTHER_CERT");
    const std::string signed_md = idp_metadata({"", false, g->idp->get("SAML_IDP_KEY"), idp_cert});
    srv.set(signed_md);
    SamlEntry e;
    e.metadata_url = srv.url();
    e.extra = "      metadata_signing_cert: " + idp_cert + "\n";
    {
        Login l = start("md-signed", config(e));
        expect_success(l, "signed metadata, the signer's cert pinned", l(email("alice"), saml_password("alice")),
                       email("alice"), "admin");
        std::string line = saml_status_line(authctl_status(l));
        if (!contains(line, " up ") || !contains(line, "metadata from metadata_url"))
            fail_msg("status with good signed metadata: \"%s\"", line.c_str());
        if (srv.fetches() <= fetched) fail_msg("the daemon never fetched the metadata");
    }
    {
        // The same signed metadata, another certificate pinned.
        e.extra = "      metadata_signing_cert: " + other_cert + "\n";
        Login l = start("md-wrongcert", config(e));
        auto o = l(email("alice"), saml_password("alice"));
        expect_refused("signed metadata, another cert pinned", o, PAM_AUTHINFO_UNAVAIL);
        std::string status = authctl_status(l);
        std::string line = saml_status_line(status);
        if (!contains(line, "DOWN") || !contains(line, "does not verify with metadata_signing_cert"))
            fail_msg("status with metadata signed by another key: want DOWN and why:\n%s", status.c_str());
    }
    {
        // Unsigned metadata while a signing cert is configured.
        srv.set(idp_metadata({}));
        e.extra = "      metadata_signing_cert: " + idp_cert + "\n";
        Login l = start("md-unsigned", config(e));
        expect_refused("unsigned metadata, metadata_signing_cert set", l(email("bob"), saml_password("bob")),
                       PAM_AUTHINFO_UNAVAIL);
        std::string status = authctl_status(l);
        std::string line = saml_status_line(status);
        if (!contains(line, "DOWN") || !contains(line, "not signed"))
            fail_msg("status with unsigned metadata: want DOWN and why:\n%s", status.c_str());
    }
    {
        // Signed correctly, then altered after signing (a signing cert swapped in): refused.
        std::string tampered = signed_md;
        const std::string mine = cert_body(g->idp->cert_pem());
        const std::string other = cert_body(read_file(other_cert));
        auto p = tampered.find(mine);
        tampered.replace(p, mine.size(), other);
        srv.set(tampered);
        Login l = start("md-tampered", config(e));
        expect_refused("signed metadata altered after signing", l(email("bob"), saml_password("bob")),
                       PAM_AUTHINFO_UNAVAIL);
    }
}

// cacheDuration PT4S: the daemon keeps its copy for 4 s, then fetches again. After the served
// metadata names another signing certificate, the IdP's real responses are refused; once the
// original is served again, logins work again. Without a refresh neither change would show.
void metadata_refresh(void**) {
    MetadataServer& srv = md_server();
    srv.set(idp_metadata({"PT4S"}));
    SamlEntry e;
    e.metadata_url = srv.url();
    std::string yaml = config(e);
    yaml.insert(yaml.find("  log_level: debug\n"), "  verdict_ttl: 0\n");  // every login reaches the IdP
    Login l = start("md-refresh", yaml);
    expect_success(l, "before the change", l(email("alice"), saml_password("alice")), email("alice"), "admin");
    std::string first = saml_status_line(authctl_status(l));
    if (!contains(first, "refresh ")) fail_msg("status names no refresh time: \"%s\"", first.c_str());
    const int fetched = srv.fetches();

    // Inside cacheDuration: the cached copy is used, the server is not asked again.
    srv.set(idp_metadata({"PT4S", true}));
    expect_success(l, "within cacheDuration", l(email("bob"), saml_password("bob")), email("bob"), "user");
    if (srv.fetches() != fetched) fail_msg("metadata fetched %d times within its cacheDuration", srv.fetches() - fetched);

    ::sleep(5);
    auto o = l(email("alice"), saml_password("alice"));
    std::printf("# after cacheDuration, metadata naming another signing cert: %s\n",
                pam_strerror(nullptr, o.authenticate));
    if (o.authenticate == PAM_SUCCESS)
        fail_msg("logged in after the metadata's signing cert changed: the metadata was not refreshed "
                 "(%d fetches since the first load)", srv.fetches() - fetched);
    if (srv.fetches() <= fetched) fail_msg("the metadata was not fetched again after its cacheDuration");
    std::string second = saml_status_line(authctl_status(l));
    if (second == first) fail_msg("status unchanged after a refresh: \"%s\"", second.c_str());

    srv.set(idp_metadata({"PT4S"}));
    ::sleep(5);
    expect_success(l, "the original metadata back", l(email("walt"), saml_password("walt")), email("walt"), "worker");
}

// ---- measurements ---------------------------------------------------------------------------

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

void login_latency(void**) {
    // verdict_ttl 0: every ECP login goes to the IdP (the verdict cache would answer repeats).
    std::string yaml = config();
    yaml.insert(yaml.find("  log_level: debug\n"), "  verdict_ttl: 0\n");
    Login l = start("latency", yaml);
    // Distinct assertions: the replay cache refuses a second use of one.
    double t0 = now_mono();
    std::vector<std::string> responses = g->idp->forge(g->alice_post, "valid", 100);
    if (responses.size() != 100) fail_msg("forged %zu responses, want 100", responses.size());
    std::printf("# forged 100 re-signed responses in %.1f s\n", now_mono() - t0);
    std::vector<double> ecp;
    std::vector<double> assertion;
    for (int i = 0; i < 100; ++i) {
        auto o = l(email("alice"), saml_password("alice"));
        if (o.authenticate != PAM_SUCCESS) fail_msg("ECP login %d: %s", i, pam_strerror(nullptr, o.authenticate));
        ecp.push_back(o.seconds);
        o = l(email("alice"), responses[static_cast<std::size_t>(i)]);
        if (o.authenticate != PAM_SUCCESS) fail_msg("assertion login %d: %s", i, pam_strerror(nullptr, o.authenticate));
        assertion.push_back(o.seconds);
    }
    std::printf("# median of 100 ECP logins (auth+account through libpam to SimpleSAMLphp under php -S, no "
                "verdict cache): %.2f ms\n",
                median(ecp) * 1000);
    std::printf("# median of 100 assertion-as-password logins (distinct re-signed responses): %.2f ms\n",
                median(assertion) * 1000);
}

int setup(void**) {
    g = new World;
    g->idp = std::make_unique<SamlIdp>(g->tmp.path() + "/saml-idp");
    std::printf("# SAML IdP fixture (SimpleSAMLphp under php -S) started in %.2f s\n", g->idp->start_seconds());
    if (g->idp->sp_entity_id() != kSpEntityId || g->idp->acs() != kAcs) {
        std::printf("Bail out! the IdP trusts %s / %s, not cvat-authd's defaults\n", g->idp->sp_entity_id().c_str(),
                    g->idp->acs().c_str());
        return -1;
    }
    g->alice_post = g->idp->response_xml("post", "alice", saml_password("alice"));
    g->bob_post = g->idp->response_xml("post", "bob", saml_password("bob"));
    if (g->alice_post.empty() || g->bob_post.empty()) {
        std::printf("Bail out! no HTTP-POST response from the IdP to forge from\n");
        return -1;
    }
    return 0;
}

int teardown(void**) {
    delete g_md;
    g_md = nullptr;
    delete g;
    g = nullptr;
    return 0;
}

}  // namespace

// An optional argument runs only the tests whose names match it (cmocka's pattern: * and ?).
int main(int argc, char** argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const CMUnitTest tests[] = {
        cmocka_unit_test(ecp_login_right),
        cmocka_unit_test(ecp_role_highest_wins),
        cmocka_unit_test(ecp_login_wrong),
        cmocka_unit_test(ecp_idp_down),
        cmocka_unit_test(cert_and_sso_url),
        cmocka_unit_test(selection_by_email_domain),
        cmocka_unit_test(assertion_valid_once),
        cmocka_unit_test(assertion_refused),
        cmocka_unit_test(assertion_xsw),
        cmocka_unit_test(assertion_comment_in_name_id),
        cmocka_unit_test(authctl_saml_metadata),
        cmocka_unit_test(nss_saml_user_after_login),
        cmocka_unit_test(metadata_signed),
        cmocka_unit_test(metadata_refresh),
        cmocka_unit_test(login_latency),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
