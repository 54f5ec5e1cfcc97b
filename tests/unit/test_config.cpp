// SPDX-License-Identifier: GPL-3.0-or-later
// helper/config.cpp: every error class is reported as PATH:LINE:COL: KEY: message, all of them
// at once; good files load with the right values and defaults; the examples in conf/ load.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "config.hpp"

// cmocka last: its fail() macro would clash with cvat::fail and std::ios::fail.
#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}

using cvat::ErrorCode;
using cvat::helper::Config;
using cvat::helper::GroupType;
using cvat::helper::load_config;
using cvat::helper::LoadOptions;
using cvat::helper::ThrottleSettings;
using cvat::helper::Protocol;
using cvat::helper::Scope;
using cvat::helper::SelectionMode;
using cvat::helper::TokenAuthMethod;
using cvat::proto::Role;

namespace {

std::string g_dir;  // mkdtemp directory, removed at the end

std::string write_file(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::string path = g_dir + "/" + name;
    ::unlink(path.c_str());
    {
        std::ofstream out(path);
        out << text;
    }
    ::chmod(path.c_str(), mode);
    return path;
}

LoadOptions relaxed() {
    LoadOptions o;
    o.check_permissions = false;
    return o;
}

// Loads `text` (written with `mode`) and expects failure; returns the error detail.
std::string load_error(const std::string& text, LoadOptions o = relaxed(), mode_t mode = 0600,
                       std::string* path_out = nullptr) {
    std::string path = write_file("c.yml", text, mode);
    if (path_out) *path_out = path;
    auto r = load_config(path, o);
    if (r) {
        std::fprintf(stderr, "# expected failure, loaded:\n%s\n", text.c_str());
        fail();
    }
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::config));
    return r.error().detail;
}

Config load_ok(const std::string& text, LoadOptions o = relaxed(), mode_t mode = 0600) {
    std::string path = write_file("c.yml", text, mode);
    auto r = load_config(path, o);
    if (!r) {
        std::fprintf(stderr, "# unexpected failure:\n%s\n", r.error().detail.c_str());
        fail();
    }
    return std::move(*r);
}

std::vector<std::string> lines_of(const std::string& detail) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= detail.size()) {
        auto nl = detail.find('\n', start);
        if (nl == std::string::npos) nl = detail.size();
        out.push_back(detail.substr(start, nl - start));
        start = nl + 1;
    }
    return out;
}

// Asserts one line of `detail` is "<dir>/c.yml:LOC: KEY: ..." containing `phrase`.
void expect_line(const std::string& detail, const std::string& loc_key, const std::string& phrase,
                 const char* file = "c.yml") {
    const std::string prefix = g_dir + "/" + file + ":" + loc_key + ": ";
    for (const auto& line : lines_of(detail))
        if (line.rfind(prefix, 0) == 0 && line.find(phrase) != std::string::npos) return;
    std::fprintf(stderr, "# wanted a line starting '%s' containing '%s'; got:\n%s\n", prefix.c_str(),
                 phrase.c_str(), detail.c_str());
    fail();
}

void expect_warning(const Config& c, const std::string& loc_key, const std::string& phrase) {
    std::string all;
    for (const auto& w : c.warnings) all += w + "\n";
    expect_line(all, loc_key, phrase);
}

const char* kLdapMin =
    "ldap:\n"
    "  server_uri: ldaps://ldap.example.com\n"
    "  user_search:\n"
    "    base: ou=people,dc=example,dc=com\n"
    "    filter: (uid=%(user)s)\n";

// --- error classes ------------------------------------------------------------------------

void yaml_syntax_error(void**) {
    std::string d = load_error("ldap:\n  server_uri: [ldaps://a.example.com\n  start_tls: true\n");
    assert_int_equal(lines_of(d).size(), 1);
    assert_true(d.rfind(g_dir + "/c.yml:", 0) == 0);
    assert_non_null(std::strstr(d.c_str(), ": yaml: syntax error: "));
    // A stray tab-less dedent: the parser points at line 3.
    d = load_error("ldap:\n  a: b\n c: d\n");
    expect_line(d, "3:2", "yaml: syntax error");
}

void unknown_key_suggests(void**) {
    std::string d = load_error(std::string(kLdapMin) + "  server_ur: ldaps://x.example.com\n");
    expect_line(d, "6:3", "ldap.server_ur: unknown key 'server_ur': did you mean 'server_uri'?");
    d = load_error(std::string(kLdapMin) + "  AUTH_LDAP_BIND_DN: cn=x,dc=example,dc=com\n");
    expect_line(d, "6:3", "ldap.AUTH_LDAP_BIND_DN: unknown key: 'AUTH_LDAP_BIND_DN' is the Django setting; here it is 'bind_dn'");
    d = load_error(std::string(kLdapMin) + "hlper:\n  workers: 2\n");
    expect_line(d, "6:1", "hlper: unknown key 'hlper': did you mean 'helper'?");
    d = load_error(std::string(kLdapMin) + "  user_attr_map: {username: uid}\n");
    expect_line(d, "6:19", "ldap.user_attr_map.username: unknown key 'username': did you mean 'user_name'?");
}

void wrong_type(void**) {
    std::string d = load_error(std::string(kLdapMin) + "  start_tls: yes please\n");
    expect_line(d, "6:14", "ldap.start_tls: expected a boolean (true/false), found 'yes please'");
    d = load_error(std::string(kLdapMin) + "  start_tls: \"true\"\n");
    expect_line(d, "6:14", "ldap.start_tls: expected a boolean (true/false), found the quoted string 'true'");
    d = load_error(std::string(kLdapMin) + "  group_mirror: sometimes\n");
    expect_line(d, "6:17", "ldap.group_mirror: expected a boolean (true/false), found 'sometimes'");
    d = load_error(std::string(kLdapMin) + "  pool_size: many\n");
    expect_line(d, "6:14", "ldap.pool_size: expected a whole number from 1 to 256, found 'many'");
    d = load_error(std::string(kLdapMin) + "  timeout: [1]\n");
    expect_line(d, "6:12", "ldap.timeout: expected a number of seconds from 0.1 to 3600 (fractions like 0.5 allowed), found a list");
    d = load_error(std::string(kLdapMin) + "  tls: /etc/ssl/ca.pem\n");
    expect_line(d, "6:8", "ldap.tls: expected a mapping");
    d = load_error(std::string(kLdapMin) + "helper:\n  workers: 0\n");
    expect_line(d, "7:12", "helper.workers: expected a whole number from 1 to 256, found '0'");
}

void missing_required_key(void**) {
    std::string d = load_error(
        "ldap:\n"
        "  server_uri: ldaps://ldap.example.com\n"
        "  user_search:\n"
        "    base: ou=people,dc=example,dc=com\n");
    expect_line(d, "4:5", "ldap.user_search.filter: required key missing: expected a filter with %(user)s");
    d = load_error("ldap:\n  user_search: {base: dc=x, filter: (uid=%(user)s)}\n");
    expect_line(d, "2:3", "ldap.server_uri: required key missing");
    d = load_error("helper:\n  workers: 2\n");
    expect_line(d, "1:1", "(top level): expected an sso: or an ldap: section");
}

void bad_enum(void**) {
    std::string d = load_error(
        "ldap:\n"
        "  server_uri: ldaps://ldap.example.com\n"
        "  user_search:\n"
        "    base: ou=people,dc=example,dc=com\n"
        "    scope: sub\n"
        "    filter: (uid=%(user)s)\n"
        "  default_role: root\n"
        "  group_type: GroupOfUniqueNamesType\n"
        "helper:\n"
        "  log_level: verbose\n");
    expect_line(d, "5:12", "ldap.user_search.scope: expected one of base, onelevel, subtree");
    expect_line(d, "5:12", "found 'sub'");
    expect_line(d, "7:17", "ldap.default_role: expected one of admin, user, worker, none, found 'root'");
    expect_line(d, "8:15", "ldap.group_type: expected one of active_directory");
    expect_line(d, "8:15", "is not supported");
    expect_line(d, "10:14", "helper.log_level: expected one of error, warning, info, debug, found 'verbose'");
}

void filter_checks(void**) {
    std::string d = load_error(
        "ldap:\n"
        "  server_uri: ldaps://ldap.example.com\n"
        "  user_search:\n"
        "    base: ou=people,dc=example,dc=com\n"
        "    filter: (uid=%(username)s)\n");
    expect_line(d, "5:13", "ldap.user_search.filter: '%' at offset 5 is neither %(user)s nor %%");
    d = load_error(
        "ldap:\n"
        "  server_uri: ldaps://ldap.example.com\n"
        "  user_search:\n"
        "    base: ou=people,dc=example,dc=com\n"
        "    filter: (objectClass=person)\n");
    expect_line(d, "5:13", "ldap.user_search.filter: expected a filter containing %(user)s");
    d = load_error(
        "ldap:\n"
        "  server_uri: ldaps://ldap.example.com\n"
        "  user_search:\n"
        "    base: ou=people,dc=example,dc=com\n"
        "    filter: \"(&(uid=%(user)s)(objectClass=person)\"\n");
    expect_line(d, "5:13", "ldap.user_search.filter: unbalanced parentheses: 1 '(' not closed");
    d = load_error(
        "ldap:\n"
        "  server_uri: ldaps://ldap.example.com\n"
        "  user_search:\n"
        "    base: ou=people,dc=example,dc=com\n"
        "    filter: (uid=%(user)s)\n"
        "  group_search: {base: ou=groups,dc=example,dc=com, filter: \"(member=%(user)s)\"}\n");
    expect_line(d, "6:61", "ldap.group_search.filter: group_search.filter is not expanded");
    expect_line(d, "6:34", "ldap.group_search.dc=example: unknown key 'dc=example': a DN inside { } must be quoted");
}

void bad_dn_in_role_groups(void**) {
    std::string d = load_error(std::string(kLdapMin) +
                               "  group_search: {base: 'ou=groups,dc=example,dc=com', filter: (objectClass=groupOfNames)}\n"
                               "  role_groups:\n"
                               "    admin: [\"cn=admins,dc=example,dc=com\", \"CVAT Admins\"]\n"
                               "    worker: \"cn=workers,,dc=example\"\n");
    expect_line(d, "8:44", "ldap.role_groups.admin[1]: expected a DN like CN=CVAT Admins,DC=example,DC=com");
    expect_line(d, "8:44", "found 'CVAT Admins'");
    expect_line(d, "9:13", "ldap.role_groups.worker: expected a DN");
    // Unquoted DNs in a flow list fall apart at their commas.
    d = load_error(std::string(kLdapMin) +
                   "  group_search: {base: 'dc=example,dc=com', filter: (objectClass=group)}\n"
                   "  role_groups: {admin: [cn=admins,dc=example,dc=com]}\n");
    expect_line(d, "7:25", "ldap.role_groups.admin[0]: expected a whole group DN, found the single RDN 'cn=admins': inside [ ] commas separate items, so quote each DN");
    d = load_error(std::string(kLdapMin) + "  role_groups: {root: 'cn=x,dc=y'}\n");
    expect_line(d, "6:17", "ldap.role_groups.root: unknown key 'root'");
}

void both_bind_password_forms(void**) {
    std::string d = load_error(std::string(kLdapMin) +
                               "  bind_dn: cn=bind,dc=example,dc=com\n"
                               "  bind_password: hunter2\n"
                               "  bind_password_file: /etc/cvat-auth/bind_password\n");
    expect_line(d, "8:3", "ldap.bind_password_file: both bind_password (line 7) and bind_password_file are given: expected only one");
    assert_null(std::strstr(d.c_str(), "hunter2"));
    d = load_error(std::string(kLdapMin) + "  bind_dn: cn=bind,dc=example,dc=com\n");
    expect_line(d, "2:3", "ldap.bind_password: required key missing: bind_dn is given");
}

void world_readable_config_with_inline_secret(void**) {
    const std::string text = std::string(kLdapMin) +
                             "  bind_dn: cn=bind,dc=example,dc=com\n"
                             "  bind_password: hunter2\n";
    std::string d = load_error(text, LoadOptions{}, 0644);
    expect_line(d, "7:18",
                "ldap.bind_password: this file holds a secret and is readable by other users (mode "
                "0644): chmod o-r, or move the secret to bind_password_file");
    assert_null(std::strstr(d.c_str(), "hunter2"));
    // 0640 is fine, and so is 0644 when permissions are not checked (a copy under review).
    Config c = load_ok(text, LoadOptions{}, 0640);
    assert_string_equal(c.ldap.bind_password.c_str(), "hunter2");
    c = load_ok(text, relaxed(), 0644);
    assert_string_equal(c.ldap.bind_password.c_str(), "hunter2");
    // An OIDC client_secret counts too.
    d = load_error(
        "sso:\n"
        "  enabled: true\n"
        "  identity_providers:\n"
        "    - {id: kc, protocol: OIDC, name: KC, server_url: 'https://kc.example.com/realms/x',\n"
        "       client_id: cvat, client_secret: s3cret, email_domain: example.com}\n",
        LoadOptions{}, 0604);
    expect_line(d, "5:40", "sso.identity_providers[0].client_secret: this file holds a secret and is readable by other users (mode 0604)");
    expect_line(d, "5:40", "move the secret to client_secret_file");
    // World-writable config: refused whether or not it holds a secret.
    d = load_error(kLdapMin, LoadOptions{}, 0666);
    expect_line(d, "1:1", "(file): writable by every user (mode 0666)");
}

void bind_password_file_checks(void**) {
    std::string pw = write_file("bind_password", "s3cret\n", 0644);
    const std::string text = std::string(kLdapMin) +
                             "  bind_dn: cn=bind,dc=example,dc=com\n"
                             "  bind_password_file: " + pw + "\n";
    std::string d = load_error(text, LoadOptions{});
    expect_line(d, "7:23", "ldap.bind_password_file: '" + pw +
                               "' is readable or writable by other users (mode 0644): chmod 0640");
    ::chmod(pw.c_str(), 0660);
    d = load_error(text, LoadOptions{});
    expect_line(d, "7:23", "(mode 0660)");
    ::chmod(pw.c_str(), 0640);
    Config c = load_ok(text, LoadOptions{});
    assert_string_equal(c.ldap.bind_password.c_str(), "s3cret");  // one newline stripped
    assert_string_equal(c.ldap.bind_password_file.c_str(), pw.c_str());
    // Not read at all when the options say so (examples, files for another host).
    LoadOptions no_read;
    no_read.read_secret_files = false;
    ::chmod(pw.c_str(), 0644);
    c = load_ok(text, no_read);
    assert_true(c.ldap.bind_password.empty());
    // Missing, empty, relative.
    d = load_error(std::string(kLdapMin) + "  bind_dn: cn=b,dc=x\n  bind_password_file: " + g_dir + "/nope\n");
    expect_line(d, "7:23", "cannot open '" + g_dir + "/nope': No such file or directory");
    write_file("empty", "\n", 0600);
    d = load_error(std::string(kLdapMin) + "  bind_dn: cn=b,dc=x\n  bind_password_file: " + g_dir + "/empty\n");
    expect_line(d, "7:23", "is empty");
    d = load_error(std::string(kLdapMin) + "  bind_dn: cn=b,dc=x\n  bind_password_file: bind_password\n");
    expect_line(d, "7:23", "ldap.bind_password_file: expected an absolute path");
}

void cleartext_to_remote_host(void**) {
    const char* rest =
        "  user_search: {base: 'dc=example,dc=com', filter: '(uid=%(user)s)'}\n";
    std::string d = load_error(std::string("ldap:\n  server_uri: ldap://ad.example.com\n") + rest);
    expect_line(d, "2:15",
                "ldap.server_uri: user passwords would cross the network in clear text to "
                "'ad.example.com'; use ldaps://, start_tls: true, or set allow_cleartext_password: true");
    d = load_error(std::string("ldap:\n  server_uri: [ldaps://a.example.com, ldap://10.0.0.5:389]\n") + rest);
    expect_line(d, "2:39", "ldap.server_uri[1]: user passwords would cross the network in clear text to '10.0.0.5'");
    // Loopback, ldapi, StartTLS and the explicit opt-in are fine.
    load_ok(std::string("ldap:\n  server_uri: ldap://127.0.0.1 ldap://[::1]:389 ldap://localhost\n") + rest);
    load_ok(std::string("ldap:\n  server_uri: ldapi://%2Frun%2Fslapd%2Fldapi\n") + rest);
    load_ok(std::string("ldap:\n  server_uri: ldap://ad.example.com\n  start_tls: true\n") + rest);
    Config c = load_ok(std::string("ldap:\n  server_uri: ldap://ad.example.com\n"
                                   "  allow_cleartext_password: true\n") + rest);
    expect_warning(c, "2:15", "ldap.server_uri: user passwords cross the network to 'ad.example.com' in clear text");
    // Not an LDAP URI at all.
    d = load_error(std::string("ldap:\n  server_uri: https://ad.example.com\n") + rest);
    expect_line(d, "2:15", "ldap.server_uri: expected the scheme ldap://, ldaps:// or ldapi://");
    d = load_error(std::string("ldap:\n  server_uri: ldaps://ad.example.com:99999\n") + rest);
    expect_line(d, "2:15", "port '99999' is not a number from 1 to 65535");
}

const char* kSsoHead =
    "sso:\n"
    "  enabled: true\n"
    "  selection_mode: lowest_weight\n"
    "  identity_providers:\n";

void saml_needs_metadata_or_cert(void**) {
    std::string d = load_error(std::string(kSsoHead) +
                               "    - id: saml\n"
                               "      protocol: SAML\n"
                               "      name: Company SAML\n"
                               "      entity_id: https://sso.example.com\n"
                               "      attribute_mapping: {uid: uid, email: mail}\n");
    expect_line(d, "5:7", "sso.identity_providers[0].metadata_url: required key missing: a SAML identity provider needs metadata_url, or both x509_cert and sso_url");
    d = load_error(std::string(kSsoHead) +
                   "    - id: saml\n"
                   "      protocol: SAML\n"
                   "      name: Company SAML\n"
                   "      entity_id: https://sso.example.com\n"
                   "      x509_cert: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\"\n"
                   "      attribute_mapping: {uid: uid, email: mail}\n");
    expect_line(d, "5:7", "sso.identity_providers[0].sso_url: required key missing: a SAML identity provider needs metadata_url, or both x509_cert and sso_url; x509_cert is given without sso_url");
    d = load_error(std::string(kSsoHead) +
                   "    - id: saml\n"
                   "      protocol: SAML\n"
                   "      name: Company SAML\n"
                   "      metadata_url: https://sso.example.com/metadata\n");
    expect_line(d, "5:7", "sso.identity_providers[0].entity_id: required key missing");
    expect_line(d, "5:7", "sso.identity_providers[0].attribute_mapping: required key missing");
}

const char* kOidc =
    "    - id: company-oidc\n"
    "      protocol: OIDC\n"
    "      name: Company SSO\n"
    "      server_url: https://login.example.com/\n"
    "      client_id: cvat\n"
    "      client_secret: xyz\n";

void duplicate_idp_id(void**) {
    std::string d = load_error(std::string(kSsoHead) + kOidc + kOidc);
    expect_line(d, "11:11", "sso.identity_providers[1].id: duplicate id 'company-oidc': already used by sso.identity_providers[0]");
    d = load_error(std::string(kSsoHead) + "    - {id: 'a b', protocol: OIDC, name: x, server_url: 'https://x.example.com', client_id: c, client_secret: s}\n");
    expect_line(d, "5:12", "sso.identity_providers[0].id: expected a URL-safe identifier");
}

void email_domain_under_email_address(void**) {
    const std::string head =
        "sso:\n"
        "  enabled: true\n"
        "  selection_mode: email_address\n"
        "  identity_providers:\n";
    // No provider has a domain: nothing could ever be chosen.
    std::string d = load_error(head + kOidc);
    expect_line(d, "5:5", "sso.identity_providers: selection_mode is email_address but no identity provider has an email_domain");
    // One has, one has not: CVAT documents email_domain as optional, so only a warning.
    Config c = load_ok(head + kOidc + "      email_domain: example.com\n" +
                       "    - {id: other, protocol: OIDC, name: Other, server_url: 'https://o.example.com', "
                       "client_id: c, client_secret: s}\n");
    expect_warning(c, "12:7", "sso.identity_providers[1].email_domain: selection_mode is email_address but this identity provider has no email_domain");
    d = load_error(head + kOidc + "      email_domain: \"@example.com\"\n");
    expect_line(d, "11:21", "sso.identity_providers[0].email_domain: expected a domain like company.com");
}

void sso_unknown_keys_warn(void**) {
    Config c = load_ok(std::string("sso:\n  enabled: true\n  selection_mod: lowest_weight\n"
                                   "  identity_providers:\n") + kOidc + "      pkce: true\n" +
                       "      email_domain: example.com\n");
    expect_warning(c, "3:3", "sso.selection_mod: unknown key 'selection_mod': did you mean 'selection_mode'?");
    expect_warning(c, "3:3", "not a setting CVAT documents; ignored");
    expect_warning(c, "11:7", "sso.identity_providers[0].pkce: unknown key");
    // A SAML key on an OIDC provider.
    c = load_ok(std::string(kSsoHead) + kOidc + "      entity_id: x\n");
    expect_warning(c, "11:7", "sso.identity_providers[0].entity_id: a SAML setting; ignored for a OIDC identity provider");
}

void oidc_checks(void**) {
    std::string d = load_error(std::string(kSsoHead) +
                               "    - id: kc\n"
                               "      protocol: oidc\n"
                               "      name: KC\n");
    expect_line(d, "6:17", "sso.identity_providers[0].protocol: expected OIDC or SAML (in capitals, as CVAT spells them), found 'oidc'");
    d = load_error(std::string(kSsoHead) +
                   "    - id: kc\n"
                   "      protocol: OIDC\n"
                   "      name: KC\n"
                   "      server_url: http://keycloak.example.com:8080/realms/cvat\n"
                   "      client_id: cvat\n"
                   "      token_auth_method: private_key_jwt\n");
    expect_line(d, "8:19", "sso.identity_providers[0].server_url: expected an https:// URL");
    expect_line(d, "5:7", "sso.identity_providers[0].client_secret: required key missing");
    expect_line(d, "10:26", "sso.identity_providers[0].token_auth_method: expected client_secret_post or client_secret_basic, found 'private_key_jwt'");
    // http:// is accepted for loopback, or with the explicit opt-in.
    load_ok(std::string(kSsoHead) +
            "    - {id: kc, protocol: OIDC, name: KC, server_url: 'http://127.0.0.1:8080/realms/cvat', client_id: c, client_secret: s}\n");
    load_ok(std::string(kSsoHead) +
            "    - {id: kc, protocol: OIDC, name: KC, server_url: 'http://kc:8080/realms/cvat', client_id: c, client_secret: s, allow_insecure_http: true}\n");
    d = load_error(std::string(kSsoHead) + kOidc + "      scopes: profile email\n");
    expect_line(d, "11:15", "sso.identity_providers[0].scopes: expected the scopes to include openid");
}

// default_role per OIDC identity provider (extension): user unless given; none warns without role_values.
void oidc_default_role(void**) {
    Config c = load_ok(std::string(kSsoHead) + kOidc);
    assert_int_equal(static_cast<int>(c.sso.identity_providers[0].default_role), static_cast<int>(Role::user));
    c = load_ok(std::string(kSsoHead) + kOidc + "      default_role: worker\n");
    assert_int_equal(static_cast<int>(c.sso.identity_providers[0].default_role), static_cast<int>(Role::worker));
    c = load_ok(std::string(kSsoHead) + kOidc + "      default_role: none\n");
    assert_int_equal(static_cast<int>(c.sso.identity_providers[0].default_role), static_cast<int>(Role::none));
    expect_warning(c, "11:21", "sso.identity_providers[0].default_role: default_role is none and no role_values are given");
    c = load_ok(std::string(kSsoHead) + kOidc +
                "      default_role: none\n"
                "      role_claim: groups\n"
                "      role_values: {admin: [cvat-admins]}\n");
    assert_int_equal(static_cast<int>(c.sso.identity_providers[0].default_role), static_cast<int>(Role::none));
    for (const auto& w : c.warnings) assert_null(std::strstr(w.c_str(), "default_role"));
    std::string d = load_error(std::string(kSsoHead) + kOidc + "      default_role: root\n");
    expect_line(d, "11:21", "sso.identity_providers[0].default_role: expected one of admin, user, worker, none, found 'root'");
}

void several_errors_reported(void**) {
    std::string d = load_error(
        "ldap:\n"
        "  server_uri: ldap://ad.example.com\n"
        "  start_tls: maybe\n"
        "  user_search:\n"
        "    base: ou=people,dc=example,dc=com\n"
        "    filter: (uid=someone)\n"
        "  default_role: boss\n"
        "nss:\n"
        "  id_min: 500\n");
    auto lines = lines_of(d);
    assert_int_equal(lines.size(), 5);
    // In file order.
    expect_line(lines[0], "2:15", "ldap.server_uri: user passwords would cross the network");
    expect_line(lines[1], "3:14", "ldap.start_tls: expected a boolean");
    expect_line(lines[2], "6:13", "ldap.user_search.filter: expected a filter containing %(user)s");
    expect_line(lines[3], "7:17", "ldap.default_role: expected one of");
    expect_line(lines[4], "9:11", "nss.id_min: expected a whole number from 1001 to 2147483646, found '500'");
}

void misc_structure(void**) {
    std::string d = load_error("");
    expect_line(d, "1:1", "(top level): the file is empty");
    d = load_error("- ldap\n");
    expect_line(d, "1:1", ": expected a mapping");
    d = load_error(std::string(kLdapMin) + "  start_tls: true\n  start_tls: false\n");
    expect_line(d, "7:3", "ldap.start_tls: key given twice (first at line 6)");
    d = load_error(std::string(kLdapMin) + "---\nldap: {}\n");
    expect_line(d, "6:1", "yaml: expected one YAML document, found a second");  // at the "---"
    // A lone "," made yaml-cpp's LoadAll collect empty documents until memory ran out
    // (fuzz_config): an error, at once.
    d = load_error(",");
    assert_true(!d.empty());
    d = load_error(std::string(kLdapMin) + ",\n");
    assert_true(!d.empty());
    // yaml-cpp ends the stream at a NUL byte: the rest of the file would vanish unseen.
    using namespace std::string_literals;
    d = load_error(std::string(kLdapMin) + "# a comment \0 with a NUL\n  default_role: admin\n"s);
    expect_line(d, "6:13", "(file): a NUL byte: the file is binary or damaged");
    d = load_error(std::string(kLdapMin) + "IAM_TYPE: LDAP\n");
    expect_line(d, "6:1", "IAM_TYPE: unknown key: IAM_TYPE is not needed here");
    d = load_error(std::string(kLdapMin) + "nss:\n  id_min: 60000\n  id_max: 70000\n  home: /home/user\n");
    expect_line(d, "7:3", "nss.id_min: the ID range 60000..70000 contains 65534");
    expect_line(d, "9:9", "nss.home: expected an absolute path template containing %u");
    d = load_error(std::string(kLdapMin) + "nss:\n  id_min: 300000\n  id_max: 200000\n");
    expect_line(d, "8:11", "nss.id_max: expected id_min < id_max, found 300000 .. 200000");
    d = load_error(std::string(kLdapMin) + "  tls: {ca_file: " + g_dir + "/missing.pem}\n");
    expect_line(d, "6:18", "ldap.tls.ca_file: cannot open");
    d = load_error(std::string(kLdapMin) + "  group_type: posix_group\n  role_groups: {admin: cn=a,dc=b}\n");
    expect_line(d, "2:3", "ldap.group_search: required key missing: role_groups are given and group_type is posix_group");
}

// --- helper: verdict cache and offline logins; nss: cache and groups ------------------------

void verdict_ttl(void**) {
    assert_int_equal(load_ok(kLdapMin).helper.verdict_ttl_ms, 30000);  // default 30 s
    Config c = load_ok(std::string(kLdapMin) + "helper:\n  verdict_ttl: 0\n");
    assert_int_equal(c.helper.verdict_ttl_ms, 0);  // off
    c = load_ok(std::string(kLdapMin) + "helper:\n  verdict_ttl: 2.5\n");
    assert_int_equal(c.helper.verdict_ttl_ms, 2500);
    c = load_ok(std::string(kLdapMin) + "helper:\n  verdict_ttl: 3600\n");
    assert_int_equal(c.helper.verdict_ttl_ms, 3600000);
    const char* range = "helper.verdict_ttl: expected a number of seconds from 0 to 3600 (fractions like 0.5 allowed), found ";
    std::string d = load_error(std::string(kLdapMin) + "helper:\n  verdict_ttl: -1\n");
    expect_line(d, "7:16", std::string(range) + "'-1'");
    d = load_error(std::string(kLdapMin) + "helper:\n  verdict_ttl: 3601\n");
    expect_line(d, "7:16", std::string(range) + "'3601'");
    d = load_error(std::string(kLdapMin) + "helper:\n  verdict_ttl: 30s\n");
    expect_line(d, "7:16", std::string(range) + "'30s'");
}

// issue 6: failed-login throttling and the per-uid connection cap.
void rate_limit_settings(void**) {
    Config c = load_ok(kLdapMin);
    const ThrottleSettings& t = c.helper.rate_limit;
    assert_int_equal(t.per_user.failures, 5);
    assert_int_equal(t.per_user.window_ms, 300000);
    assert_int_equal(t.per_peer.failures, 20);
    assert_int_equal(t.per_peer.window_ms, 300000);
    assert_int_equal(t.delay_ms, 1000);
    assert_int_equal(t.max_delay_ms, 5000);  // within pam_cvat's default timeout of 10 s
    assert_int_equal(t.max_entries, 10000);
    assert_int_equal(c.helper.max_connections_per_uid, 128);
    c = load_ok(std::string(kLdapMin) +
                "helper:\n"
                "  max_connections_per_uid: 0\n"
                "  rate_limit:\n"
                "    per_user: {failures: 3, window: 60}\n"
                "    per_peer: {failures: 0}\n"
                "    delay: 0.5\n"
                "    max_delay: 30\n"
                "    max_entries: 50000\n");
    assert_int_equal(c.helper.max_connections_per_uid, 0);
    assert_int_equal(c.helper.rate_limit.per_user.failures, 3);
    assert_int_equal(c.helper.rate_limit.per_user.window_ms, 60000);
    assert_int_equal(c.helper.rate_limit.per_peer.failures, 0);
    assert_int_equal(c.helper.rate_limit.per_peer.window_ms, 300000);
    assert_int_equal(c.helper.rate_limit.delay_ms, 500);
    assert_int_equal(c.helper.rate_limit.max_delay_ms, 30000);
    assert_int_equal(c.helper.rate_limit.max_entries, 50000);

    std::string d = load_error(std::string(kLdapMin) + "helper:\n  rate_limit:\n    per_user: {failures: -1}\n");
    expect_line(d, "8:26", "helper.rate_limit.per_user.failures: expected a whole number from 0 to 1000, found '-1'");
    d = load_error(std::string(kLdapMin) + "helper:\n  rate_limit:\n    per_peer: {window: 0}\n");
    expect_line(d, "8:24", "helper.rate_limit.per_peer.window: expected a number of seconds from 1 to 86400 "
                           "(fractions like 0.5 allowed), found '0'");
    d = load_error(std::string(kLdapMin) + "helper:\n  rate_limit:\n    per_users: {failures: 3}\n");
    expect_line(d, "8:5", "helper.rate_limit.per_users: unknown key 'per_users': did you mean 'per_user'?");
    d = load_error(std::string(kLdapMin) + "helper:\n  rate_limit:\n    delay: 10\n    max_delay: 2\n");
    expect_line(d, "9:16", "helper.rate_limit.max_delay: expected delay <= max_delay, found delay 10 s and max_delay 2 s");
    d = load_error(std::string(kLdapMin) + "helper:\n  rate_limit:\n    max_entries: 10\n");
    expect_line(d, "8:18", "helper.rate_limit.max_entries: expected a whole number from 16 to 10000000, found '10'");
    d = load_error(std::string(kLdapMin) + "helper:\n  max_connections_per_uid: 65537\n");
    expect_line(d, "7:28", "helper.max_connections_per_uid: expected a whole number from 0 to 65536, found '65537'");
}

void offline_settings(void**) {
    Config c = load_ok(kLdapMin);
    assert_false(c.helper.offline.enabled);  // off unless asked for
    assert_int_equal(c.helper.offline.max_age_s, 7 * 86400);
    c = load_ok(std::string(kLdapMin) + "helper:\n  offline: {enabled: true}\n");
    assert_true(c.helper.offline.enabled);
    assert_int_equal(c.helper.offline.max_age_s, 7 * 86400);
    struct {
        const char* text;
        long long seconds;
    } const good[] = {{"7d", 7 * 86400}, {"12h", 12 * 3600}, {"90", 90}, {"15m", 15 * 60}, {"1s", 1}, {"366d", 366 * 86400}};
    for (const auto& g : good) {
        c = load_ok(std::string(kLdapMin) + "helper:\n  offline:\n    enabled: true\n    max_age: " + g.text + "\n");
        assert_true(c.helper.offline.enabled);
        if (c.helper.offline.max_age_s != g.seconds) {
            std::fprintf(stderr, "# max_age %s: %lld s, want %lld\n", g.text,
                         static_cast<long long>(c.helper.offline.max_age_s), g.seconds);
            fail();
        }
    }
    const std::string expected =
        "helper.offline.max_age: expected a duration from 1s to 31622400s: seconds, or a number with s, m, h or d "
        "(15m, 7d), found ";
    for (const char* bad : {"7w", "-1", "0", "0d", "367d", "1.5h", "h"}) {
        std::string d = load_error(std::string(kLdapMin) + "helper:\n  offline:\n    max_age: " + bad + "\n");
        expect_line(d, "8:14", expected + "'" + bad + "'");
    }
    std::string d = load_error(std::string(kLdapMin) + "helper:\n  offline:\n    max_age: \"7d\"\n");
    expect_line(d, "8:14", expected + "'7d'");
    d = load_error(std::string(kLdapMin) + "helper:\n  offline:\n    enabled: \"true\"\n");
    expect_line(d, "8:14", "helper.offline.enabled: expected a boolean (true/false), found the quoted string 'true'");
    d = load_error(std::string(kLdapMin) + "helper:\n  offline:\n    enabled: true\n    max_ages: 7d\n");
    expect_line(d, "9:5", "helper.offline.max_ages: unknown key 'max_ages'");
    d = load_error(std::string(kLdapMin) + "helper:\n  offline: true\n");
    expect_line(d, "7:12", "helper.offline: expected a mapping");
}

void nss_cache_settings(void**) {
    Config c = load_ok(kLdapMin);
    assert_int_equal(c.nss.cache_ttl_s, 5400);
    assert_int_equal(c.nss.negative_ttl_s, 60);
    assert_int_equal(c.nss.refresh_percent, 50);
    assert_false(c.nss.enumerate);
    assert_false(c.nss.directory_groups);
    assert_false(c.nss.provisional_users);
    c = load_ok(std::string(kLdapMin) +
                "nss:\n"
                "  cache_ttl: 2h\n"
                "  negative_ttl: 0\n"
                "  refresh_percent: 0\n"
                "  enumerate: true\n"
                "  directory_groups: yes\n"
                "  provisional_users: true\n");
    assert_int_equal(c.nss.cache_ttl_s, 7200);
    assert_int_equal(c.nss.negative_ttl_s, 0);  // negative entries off
    assert_int_equal(c.nss.refresh_percent, 0);
    assert_true(c.nss.enumerate);
    assert_true(c.nss.directory_groups);
    assert_true(c.nss.provisional_users);
    c = load_ok(std::string(kLdapMin) + "nss: {cache_ttl: 30d, negative_ttl: 15m, refresh_percent: 99}\n");
    assert_int_equal(c.nss.cache_ttl_s, 30 * 86400);
    assert_int_equal(c.nss.negative_ttl_s, 15 * 60);
    assert_int_equal(c.nss.refresh_percent, 99);

    std::string d = load_error(std::string(kLdapMin) +
                               "nss:\n"
                               "  cache_ttl: 0\n"
                               "  negative_ttl: 2d\n"
                               "  refresh_percent: 100\n"
                               "  enumerate: \"false\"\n"
                               "  directory_groups: sometimes\n"
                               "  provisional_users: [true]\n");
    auto lines = lines_of(d);
    assert_int_equal(lines.size(), 6);
    expect_line(lines[0], "7:14", "nss.cache_ttl: expected a duration from 1s to 2592000s: seconds, or a number with s, m, h or d (15m, 7d), found '0'");
    expect_line(lines[1], "8:17", "nss.negative_ttl: expected a duration from 0s to 86400s: seconds, or a number with s, m, h or d (15m, 7d), found '2d'");
    expect_line(lines[2], "9:20", "nss.refresh_percent: expected a whole number from 0 to 99, found '100'");
    expect_line(lines[3], "10:14", "nss.enumerate: expected a boolean (true/false), found the quoted string 'false'");
    expect_line(lines[4], "11:21", "nss.directory_groups: expected a boolean (true/false), found 'sometimes'");
    expect_line(lines[5], "12:22", "nss.provisional_users: expected a boolean (true/false), found a list");
    d = load_error(std::string(kLdapMin) + "nss:\n  cache_ttl: 31d\n  refresh_percent: -1\n");
    expect_line(d, "7:14", "nss.cache_ttl: expected a duration from 1s to 2592000s");
    expect_line(d, "7:14", "found '31d'");
    expect_line(d, "8:20", "nss.refresh_percent: expected a whole number from 0 to 99, found '-1'");
    d = load_error(std::string(kLdapMin) + "nss:\n  negative_ttl: 7w\n  cache-ttl: 1h\n");
    expect_line(d, "7:17", "nss.negative_ttl: expected a duration from 0s to 86400s");
    expect_line(d, "8:3", "nss.cache-ttl: unknown key 'cache-ttl': did you mean 'cache_ttl'?");
}

// nss.role_groups[role] as (name, gid), read from a loaded config.
void expect_role_group(const Config& c, Role role, const char* name, std::uint32_t gid) {
    const auto& g = c.nss.role_groups[static_cast<std::size_t>(role)];
    if (g.name != name || g.gid != gid) {
        std::fprintf(stderr, "# role_groups.%s: %s (gid %u), want %s (gid %u)\n", cvat::proto::role_name(role),
                     g.name.c_str(), g.gid, name, gid);
        fail();
    }
}

void nss_role_groups(void**) {
    // Defaults, with no nss: section at all.
    Config c = load_ok(kLdapMin);
    expect_role_group(c, Role::admin, "cvat-admin", 200000);
    expect_role_group(c, Role::user, "cvat-user", 200001);
    expect_role_group(c, Role::worker, "cvat-worker", 200002);
    // An nss: section without role_groups; the GIDs follow id_min.
    c = load_ok(std::string(kLdapMin) + "nss:\n  id_min: 300000\n  id_max: 400000\n");
    expect_role_group(c, Role::admin, "cvat-admin", 300000);
    expect_role_group(c, Role::user, "cvat-user", 300001);
    expect_role_group(c, Role::worker, "cvat-worker", 300002);
    c = load_ok(std::string(kLdapMin) + "nss:\n  enumerate: false\n");
    expect_role_group(c, Role::worker, "cvat-worker", 200002);
    // A bare name keeps the default GID; the map form sets either or both.
    c = load_ok(std::string(kLdapMin) +
                "nss:\n"
                "  id_min: 300000\n"
                "  id_max: 400000\n"
                "  role_groups:\n"
                "    admin: wheel-cvat\n"
                "    user: {name: staff.cvat, gid: 250000}\n"
                "    worker: {gid: 5000}\n");
    expect_role_group(c, Role::admin, "wheel-cvat", 300000);
    expect_role_group(c, Role::user, "staff.cvat", 250000);
    expect_role_group(c, Role::worker, "cvat-worker", 5000);
    c = load_ok(std::string(kLdapMin) + "nss:\n  role_groups: {worker: {name: Labelers_2}}\n");
    expect_role_group(c, Role::admin, "cvat-admin", 200000);
    expect_role_group(c, Role::worker, "Labelers_2", 200002);

    // Names tools cannot take, unknown roles and keys, GIDs out of range.
    const char* bad_name = "expected a group name of letters, digits, '_', '-', '.' (at most 32, not starting with a digit or '-'), found ";
    std::string d = load_error(std::string(kLdapMin) +
                               "nss:\n"
                               "  role_groups:\n"
                               "    admin: \"cvat admin\"\n"
                               "    user: {name: -users}\n"
                               "    worker: {name: 9workers}\n");
    expect_line(d, "8:12", std::string("nss.role_groups.admin: ") + bad_name + "'cvat admin'");
    expect_line(d, "9:18", std::string("nss.role_groups.user.name: ") + bad_name + "'-users'");
    expect_line(d, "10:20", std::string("nss.role_groups.worker.name: ") + bad_name + "'9workers'");
    d = load_error(std::string(kLdapMin) + "nss:\n  role_groups: {admin: a:b}\n");
    expect_line(d, "7:24", std::string("nss.role_groups.admin: ") + bad_name + "'a:b'");
    d = load_error(std::string(kLdapMin) + "nss:\n  role_groups: {admin: abcdefghijklmnopqrstuvwxyz0123456}\n");
    expect_line(d, "7:24", "nss.role_groups.admin: expected a group name");
    d = load_error(std::string(kLdapMin) + "nss:\n  role_groups: {root: wheel}\n");
    expect_line(d, "7:17", "nss.role_groups.root: unknown key 'root'");
    d = load_error(std::string(kLdapMin) + "nss:\n  role_groups: {admin: {name: a, gid: 999}}\n");
    expect_line(d, "7:39", "nss.role_groups.admin.gid: expected a whole number from 1000 to 2147483646, found '999'");
    d = load_error(std::string(kLdapMin) + "nss:\n  role_groups: {admin: {name: a, group: b}}\n");
    expect_line(d, "7:34", "nss.role_groups.admin.group: unknown key 'group': expected one of name, gid");

    // Two roles on one group: the message names both roles and what they share.
    d = load_error(std::string(kLdapMin) +
                   "nss:\n"
                   "  role_groups:\n"
                   "    admin: staff\n"
                   "    worker: {name: staff, gid: 5000}\n");
    expect_line(d, "7:3", "nss.role_groups: expected a distinct name and gid for each role's group; worker and admin share the name staff");
    d = load_error(std::string(kLdapMin) + "nss:\n  role_groups: {user: cvat-admin}\n");
    expect_line(d, "7:3", "nss.role_groups: expected a distinct name and gid for each role's group; user and admin share the name cvat-admin");
    // A GID given to one role that is another role's default.
    d = load_error(std::string(kLdapMin) + "nss:\n  role_groups: {admin: {gid: 200002}}\n");
    expect_line(d, "7:3", "nss.role_groups: expected a distinct name and gid for each role's group; worker and admin share the gid 200002");
    d = load_error(std::string(kLdapMin) +
                   "nss:\n"
                   "  role_groups:\n"
                   "    user: {gid: 5000}\n"
                   "    worker: {gid: 5000}\n");
    expect_line(d, "7:3", "worker and user share the gid 5000");
}

// --- good files ---------------------------------------------------------------------------

void minimal_ldap_defaults(void**) {
    Config c = load_ok(kLdapMin);
    assert_true(c.ldap.configured);
    assert_false(c.sso.configured);
    assert_int_equal(c.ldap.server_uri.size(), 1);
    assert_string_equal(c.ldap.server_uri[0].c_str(), "ldaps://ldap.example.com");
    assert_int_equal(static_cast<int>(c.ldap.user_search.scope), static_cast<int>(Scope::subtree));
    assert_int_equal(static_cast<int>(c.ldap.group_type), static_cast<int>(GroupType::group_of_names));
    assert_int_equal(static_cast<int>(c.ldap.default_role), static_cast<int>(Role::user));
    assert_int_equal(c.ldap.connect_timeout_ms, 3000);
    assert_int_equal(c.ldap.timeout_ms, 5000);
    assert_int_equal(c.ldap.pool_size, 4);
    assert_true(c.ldap.group_mirror);
    assert_false(c.ldap.start_tls);
    assert_true(c.ldap.tls.require_cert);
    assert_true(c.ldap.bind_dn.empty());
    assert_string_equal(c.helper.socket.c_str(), CVAT_DEFAULT_SOCKET);
    assert_int_equal(c.helper.workers, 8);
    assert_int_equal(c.nss.id_min, 200000);
    assert_string_equal(c.nss.home.c_str(), "/home/%u");
    assert_true(c.warnings.empty());
}

void full_config_values(void**) {
    std::string pw = write_file("pw", "bindpw\n", 0600);
    Config c = load_ok(
        "sso:\n"
        "  enabled: true\n"
        "  selection_mode: email_address\n"
        "  enable_pkce: true\n"
        "  identity_providers:\n"
        "    - id: kc\n"
        "      protocol: OIDC\n"
        "      name: Keycloak\n"
        "      server_url: https://kc.example.com/realms/cvat/.well-known/openid-configuration\n"
        "      client_id: cvat\n"
        "      client_secret: s3\n"
        "      email_domain: example.com\n"
        "      token_auth_method: client_secret_basic\n"
        "      weight: 3\n"
        "      role_claim: groups\n"
        "      role_values: {admin: cvat-admins, worker: [w1, w2]}\n"
        "      scopes: [openid, profile, email, groups]\n"
        "      username_claim: preferred_username\n"
        "    - id: saml\n"
        "      protocol: SAML\n"
        "      name: SAML\n"
        "      entity_id: https://sso.example.com\n"
        "      sso_url: https://sso.example.com/login\n"
        "      x509_cert: |\n"
        "        -----BEGIN CERTIFICATE-----\n"
        "        MIIB\n"
        "        -----END CERTIFICATE-----\n"
        "      attribute_mapping: {uid: uid, username: username, email: email}\n"
        "      email_domain: saml.example.com\n"
        "ldap:\n"
        "  server_uri: \"ldap://ad1.example.com  ldap://ad2.example.com:3268\"\n"
        "  start_tls: true\n"
        "  referrals: false\n"
        "  bind_dn: cvat_bind@ad.example.com\n"
        "  bind_password_file: " + pw + "\n"
        "  user_search: {base: 'CN=Users,DC=ad,DC=example,DC=com', scope: ldap.SCOPE_SUBTREE,\n"
        "                filter: '(sAMAccountName=%(user)s)'}\n"
        "  group_search: {base: 'CN=Users,DC=ad,DC=example,DC=com', scope: onelevel, filter: '(objectClass=group)'}\n"
        "  group_type: NestedActiveDirectoryGroupType()\n"
        "  user_attr_map: {user_name: sAMAccountName, email: mail}\n"
        "  role_groups:\n"
        "    admin: CN=CVAT Admins,CN=Users,DC=ad,DC=example,DC=com\n"
        "    worker: ['CN=W1,DC=ad,DC=example,DC=com', 'CN=W2,DC=ad,DC=example,DC=com']\n"
        "  default_role: none\n"
        "  connect_timeout: 0.5\n"
        "  timeout: 2\n"
        "  pool_size: 2\n"
        "  max_nesting: 4\n"
        "  max_groups: 100\n"
        "  group_mirror: false\n"
        "  tls: {require_cert: false}\n"
        "helper:\n"
        "  socket: /tmp/cvat.sock\n"
        "  user: cvat-auth\n"
        "  log_level: debug\n"
        "  workers: 3\n"
        "  max_connections: 50\n"
        "  client_timeout: 1.5\n"
        "  cache_dir: /var/cache/cvat-auth\n"
        "nss:\n"
        "  id_min: 300000\n"
        "  id_max: 400000\n"
        "  home: /srv/home/%u\n"
        "  shell: /bin/sh\n",
        LoadOptions{});
    const auto& s = c.sso;
    assert_true(s.configured && s.enabled && s.enable_pkce);
    assert_int_equal(static_cast<int>(s.selection_mode), static_cast<int>(SelectionMode::email_address));
    assert_int_equal(s.identity_providers.size(), 2);
    const auto& kc = s.identity_providers[0];
    assert_string_equal(kc.server_url.c_str(), "https://kc.example.com/realms/cvat");
    assert_string_equal(kc.client_secret.c_str(), "s3");
    assert_true(kc.token_auth_method_given);
    assert_int_equal(static_cast<int>(kc.token_auth_method), static_cast<int>(TokenAuthMethod::client_secret_basic));
    assert_int_equal(kc.weight, 3);
    assert_int_equal(kc.role_values[static_cast<int>(Role::admin)].size(), 1);
    assert_int_equal(kc.role_values[static_cast<int>(Role::worker)].size(), 2);
    assert_int_equal(kc.scopes.size(), 4);
    const auto& saml = s.identity_providers[1];
    assert_int_equal(static_cast<int>(saml.protocol), static_cast<int>(Protocol::saml));
    assert_int_equal(saml.weight, 10);
    assert_string_equal(saml.attribute_mapping.at("username").c_str(), "username");
    const auto& l = c.ldap;
    assert_int_equal(l.server_uri.size(), 2);
    assert_string_equal(l.server_uri[1].c_str(), "ldap://ad2.example.com:3268");
    assert_string_equal(l.bind_password.c_str(), "bindpw");
    assert_int_equal(static_cast<int>(l.group_search.scope), static_cast<int>(Scope::onelevel));
    assert_int_equal(static_cast<int>(l.group_type), static_cast<int>(GroupType::nested_active_directory));
    assert_string_equal(l.user_attr_map.at("user_name").c_str(), "sAMAccountName");
    assert_int_equal(l.role_groups[static_cast<int>(Role::admin)].size(), 1);
    assert_int_equal(l.role_groups[static_cast<int>(Role::worker)].size(), 2);
    assert_int_equal(l.role_groups[static_cast<int>(Role::user)].size(), 0);
    assert_int_equal(static_cast<int>(l.default_role), static_cast<int>(Role::none));
    assert_int_equal(l.connect_timeout_ms, 500);
    assert_int_equal(l.timeout_ms, 2000);
    assert_int_equal(l.max_groups, 100);
    assert_false(l.group_mirror);
    assert_false(l.tls.require_cert);
    expect_warning(c, "51:23", "ldap.tls.require_cert: certificate checks are off");
    assert_string_equal(c.helper.user.c_str(), "cvat-auth");
    assert_int_equal(c.helper.client_timeout_ms, 1500);
    assert_int_equal(static_cast<int>(c.helper.log_level), static_cast<int>(cvat::log::Level::debug));
    assert_int_equal(c.nss.id_max, 400000);
}

// Every conf/*.yml example loads (secret files and CA files belong to the target host).
void examples_load(void**) {
    const char* root = std::getenv("CVAT_SOURCE_ROOT");
    if (!root) skip();
    std::string dir = std::string(root) + "/conf";
    DIR* d = ::opendir(dir.c_str());
    assert_non_null(d);
    LoadOptions o;
    o.check_permissions = false;  // a git checkout's modes say nothing
    o.read_secret_files = false;
    o.check_files = false;
    int count = 0;
    bool ok = true;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() < 5 || name.substr(name.size() - 4) != ".yml") continue;
        ++count;
        auto r = load_config(dir + "/" + name, o);
        if (!r) {
            std::fprintf(stderr, "# %s:\n%s\n", name.c_str(), r.error().detail.c_str());
            ok = false;
        }
    }
    ::closedir(d);
    assert_true(ok);
    assert_true(count >= 5);
}

int setup(void**) {
    char tmpl[] = "/tmp/test_config.XXXXXX";
    if (!::mkdtemp(tmpl)) return -1;
    g_dir = tmpl;
    return 0;
}

int teardown(void**) {
    if (DIR* d = ::opendir(g_dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n != "." && n != "..") ::unlink((g_dir + "/" + n).c_str());
        }
        ::closedir(d);
    }
    ::rmdir(g_dir.c_str());
    return 0;
}

// ldap.dns_srv (issue 8 point 3): SRV discovery instead of, or before, server_uri.
void dns_srv_checks(void**) {
    const char* rest = "  user_search: {base: 'dc=example,dc=com', filter: '(uid=%(user)s)'}\n";
    // SRV only: server_uri may be left out; _ldaps._tcp targets are TLS.
    Config c = load_ok(std::string("ldap:\n  dns_srv: _ldaps._tcp.example.com\n") + rest);
    assert_string_equal(c.ldap.dns_srv.c_str(), "_ldaps._tcp.example.com");
    assert_true(c.ldap.server_uri.empty());
    assert_true(c.warnings.empty());
    // AD's record with StartTLS, plus a static fallback.
    c = load_ok(std::string("ldap:\n  dns_srv: _ldap._tcp.dc._msdcs.ad.example.com.\n  start_tls: true\n"
                            "  server_uri: ldaps://backup.example.com\n") + rest);
    assert_string_equal(c.ldap.dns_srv.c_str(), "_ldap._tcp.dc._msdcs.ad.example.com.");
    assert_int_equal(c.ldap.server_uri.size(), 1);
    // Plain ldap:// to targets known only at run time: refused, or allowed with a warning.
    std::string d = load_error(std::string("ldap:\n  dns_srv: _ldap._tcp.example.com\n") + rest);
    expect_line(d, "2:12", "ldap.dns_srv: the targets of '_ldap._tcp.example.com' are reached with ldap://");
    c = load_ok(std::string("ldap:\n  dns_srv: _ldap._tcp.example.com\n  allow_cleartext_password: true\n") + rest);
    expect_warning(c, "2:12", "ldap.dns_srv: user passwords cross the network to the SRV targets in clear text");
    // Not an SRV name.
    d = load_error(std::string("ldap:\n  dns_srv: ldap.example.com\n") + rest);
    expect_line(d, "2:12", "ldap.dns_srv: expected _service._tcp.domain");
    d = load_error(std::string("ldap:\n  dns_srv: _ldaps._udp.example.com\n") + rest);
    expect_line(d, "2:12", "expected _service._tcp.domain");
    d = load_error(std::string("ldap:\n  dns_srv: '_ldaps._tcp.exa mple.com'\n") + rest);
    expect_line(d, "2:12", "characters other than letters, digits, - and _");
    d = load_error(std::string("ldap:\n  dns_srv: _ldaps._tcp..example.com\n") + rest);
    expect_line(d, "2:12", "empty label");
    d = load_error(std::string("ldap:\n  dns_srv: _ldaps._tcp.") + std::string(64, 'a') + ".com\n" + rest);
    expect_line(d, "2:12", "a label longer than 63 bytes");
    d = load_error(std::string("ldap:\n  dns_srv: [_ldaps._tcp.example.com]\n") + rest);
    expect_line(d, "2:12", "ldap.dns_srv: expected a string");
    // Neither key: the message names both.
    d = load_error(std::string("ldap:\n") + rest);
    expect_line(d, "2:3", "ldap.server_uri: required key missing: expected the directory's URI(s), e.g. ldaps://ad.example.com, or dns_srv");
}

}  // namespace

// Issue 9: the SAML extension keys and helper.cvat_base_url.
void saml_extension_keys(void**) {
    Config c = load_ok(std::string("helper:\n  cvat_base_url: https://cvat.example.com\n") + kSsoHead +
                       "    - id: corp\n"
                       "      protocol: SAML\n"
                       "      name: Corp\n"
                       "      entity_id: https://idp.example.com\n"
                       "      metadata_url: https://idp.example.com/metadata\n"
                       "      attribute_mapping: {uid: uid}\n"
                       "      sp_entity_id: urn:cvat\n"
                       "      acs_url: https://cvat.example.com/acs\n"
                       "      ecp_url: https://idp.example.com/ecp\n"
                       "      role_attribute: groups\n"
                       "      role_values: {admin: [a], user: [u]}\n"
                       "      default_role: none\n"
                       "      allow_sha1: true\n");
    assert_string_equal(c.helper.cvat_base_url.c_str(), "https://cvat.example.com");
    const auto& idp = c.sso.identity_providers[0];
    assert_string_equal(idp.sp_entity_id.c_str(), "urn:cvat");
    assert_string_equal(idp.acs_url.c_str(), "https://cvat.example.com/acs");
    assert_string_equal(idp.ecp_url.c_str(), "https://idp.example.com/ecp");
    assert_string_equal(idp.role_attribute.c_str(), "groups");
    assert_int_equal(idp.role_values[static_cast<int>(cvat::proto::Role::admin)].size(), 1);
    assert_int_equal(static_cast<int>(idp.default_role), static_cast<int>(cvat::proto::Role::none));
    assert_true(idp.allow_sha1);
    // role_values, default_role are shared with OIDC: no "a OIDC setting" warning on SAML.
    for (const auto& w : c.warnings) assert_null(std::strstr(w.c_str(), "OIDC setting"));
}

void saml_insecure_http_and_role_attribute(void**) {
    std::string d = load_error(std::string(kSsoHead) +
                               "    - id: corp\n"
                               "      protocol: SAML\n"
                               "      name: Corp\n"
                               "      entity_id: https://idp.example.com\n"
                               "      metadata_url: http://idp.example.com/metadata\n"
                               "      attribute_mapping: {uid: uid}\n"
                               "      role_values: {admin: [a]}\n");
    expect_line(d, "9:21", "sso.identity_providers[0].metadata_url: expected an https:// URL");
    expect_line(d, "5:7", "sso.identity_providers[0].role_attribute: required key missing");
    // Loopback http is fine; allow_insecure_http lets a remote one through.
    load_ok(std::string(kSsoHead) +
            "    - id: corp\n"
            "      protocol: SAML\n"
            "      name: Corp\n"
            "      entity_id: https://idp.example.com\n"
            "      metadata_url: http://idp.example.com/metadata\n"
            "      allow_insecure_http: true\n"
            "      attribute_mapping: {uid: uid}\n");
}

int main() {
    const CMUnitTest tests[] = {
        cmocka_unit_test(yaml_syntax_error),
        cmocka_unit_test(unknown_key_suggests),
        cmocka_unit_test(wrong_type),
        cmocka_unit_test(missing_required_key),
        cmocka_unit_test(bad_enum),
        cmocka_unit_test(filter_checks),
        cmocka_unit_test(bad_dn_in_role_groups),
        cmocka_unit_test(both_bind_password_forms),
        cmocka_unit_test(world_readable_config_with_inline_secret),
        cmocka_unit_test(bind_password_file_checks),
        cmocka_unit_test(cleartext_to_remote_host),
        cmocka_unit_test(saml_needs_metadata_or_cert),
        cmocka_unit_test(saml_extension_keys),
        cmocka_unit_test(saml_insecure_http_and_role_attribute),
        cmocka_unit_test(duplicate_idp_id),
        cmocka_unit_test(email_domain_under_email_address),
        cmocka_unit_test(sso_unknown_keys_warn),
        cmocka_unit_test(oidc_checks),
        cmocka_unit_test(oidc_default_role),
        cmocka_unit_test(several_errors_reported),
        cmocka_unit_test(misc_structure),
        cmocka_unit_test(verdict_ttl),
        cmocka_unit_test(offline_settings),
        cmocka_unit_test(rate_limit_settings),
        cmocka_unit_test(nss_cache_settings),
        cmocka_unit_test(nss_role_groups),
        cmocka_unit_test(minimal_ldap_defaults),
        cmocka_unit_test(full_config_values),
        cmocka_unit_test(examples_load),
        cmocka_unit_test(dns_srv_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
