// SPDX-License-Identifier: GPL-3.0-or-later
// auth_config.yml: the whole file, loaded and validated in one go (DESIGN.md §4).
// Every refusal names file, line, column and key: "PATH:LINE:COL: KEY: what was expected".
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "log.hpp"
#include "protocol.hpp"
#include "result.hpp"
#include "secret.hpp"
#include "throttle.hpp"

namespace cvat::helper {

enum class Scope { base, onelevel, subtree };

// AUTH_LDAP_GROUP_TYPE, spelled as in DESIGN.md §4. The loader also takes django-auth-ldap's
// class names: ActiveDirectoryGroupType, NestedActiveDirectoryGroupType, GroupOfNamesType,
// NestedGroupOfNamesType, PosixGroupType, and MemberDNGroupType / NestedMemberDNGroupType as
// (nested_)group_of_names (their usual member_attr is `member`). member_of has no Django class:
// it reads the user's memberOf (AD, FreeIPA, OpenLDAP's memberof overlay).
enum class GroupType {
    active_directory,         // groups with `member: <user DN>` (objectClass=group)
    nested_active_directory,  // the same, followed through groups of groups to a fixpoint
    group_of_names,           // groupOfNames `member: <user DN>`
    nested_group_of_names,
    posix_group,              // posixGroup `memberUid: <user name>` (+ the user's gidNumber)
    member_of,                // the user's own `memberOf` values
};
const char* group_type_name(GroupType t) noexcept;

struct SearchSpec {
    std::string base;
    Scope scope = Scope::subtree;    // also read as Django's SCOPE_SUBTREE / ldap.SCOPE_SUBTREE
    std::string filter;  // user_search: contains %(user)s; group_search: objectClass filter
};

struct TlsConfig {
    std::string ca_file;        // empty: the system store
    bool require_cert = true;   // false only when the config says so, with a warning
};

struct LdapConfig {
    bool configured = false;             // the file has an ldap: section
    std::vector<std::string> server_uri; // tried in order (failover); a string is split at spaces
    // Extension: an SRV name (_ldap._tcp.example.com); its targets are tried before server_uri.
    std::string dns_srv;
    bool start_tls = false;
    TlsConfig tls;
    bool referrals = false;
    std::string bind_dn;                 // empty: anonymous search; AD also takes user@domain
    Secret bind_password;                // from bind_password or bind_password_file
    std::string bind_password_file;      // the file it came from (empty: inline or none)
    SearchSpec user_search;
    SearchSpec group_search;
    GroupType group_type = GroupType::group_of_names;
    // user_name, first_name, last_name, email -> LDAP attribute
    std::map<std::string, std::string> user_attr_map;
    // role_groups[Role]: group DNs as written (normalised when compared)
    std::array<std::vector<std::string>, 4> role_groups;
    proto::Role default_role = proto::Role::user;  // none: users in no role group are refused

    // Extensions of this project (not Django settings):
    int connect_timeout_ms = 3000;   // per server, TCP+TLS connect
    int timeout_ms = 5000;           // per LDAP operation
    unsigned pool_size = 4;          // ready connections per pool
    unsigned max_nesting = 16;       // nested group levels followed before the walk stops
    unsigned max_groups = 4096;      // groups collected per user before the walk stops
    std::int64_t group_cache_ttl_s = 60;  // nested types: the groups above a user's direct groups; 0 = ask every time
    // The groups from an in-memory copy kept current by the directory's change feed (RFC 4533)
    // while the directory offers one; searched per login otherwise.
    bool group_mirror = true;
    bool allow_cleartext_password = false;  // send user passwords over plain ldap:// to a non-loopback host
};

enum class Protocol { oidc, saml };
enum class TokenAuthMethod { client_secret_post, client_secret_basic };
enum class SelectionMode { email_address, lowest_weight };

struct IdentityProvider {
    std::string id;
    Protocol protocol = Protocol::oidc;
    std::string name;
    int weight = 10;
    std::string email_domain;
    // OIDC
    // Discovery is <server_url>/.well-known/openid-configuration. The loader strips a trailing
    // "/.well-known/openid-configuration" and trailing '/' (CVAT's Keycloak example includes
    // the suffix; allauth accepts both), so the daemon always appends it.
    std::string server_url;
    std::string client_id;
    Secret client_secret;                            // from client_secret or client_secret_file
    std::string client_secret_file;                  // extension: the file it came from
    TokenAuthMethod token_auth_method = TokenAuthMethod::client_secret_post;
    // false: the file gave no token_auth_method; CVAT then uses one the server lists in
    // token_endpoint_auth_methods_supported, and so should the daemon.
    bool token_auth_method_given = false;
    // OIDC extensions of this project
    std::string ca_file;
    std::string role_claim;                          // e.g. "groups"
    std::array<std::vector<std::string>, 4> role_values;
    std::vector<std::string> scopes;                 // default: openid profile email
    std::string username_claim;                      // default: preferred_username
    // CVAT's IAM_DEFAULT_ROLE for this IdP: the role of a user whose role_claim matched none
    // of role_values (or who has no role_claim). none: such users are refused.
    proto::Role default_role = proto::Role::user;
    bool allow_insecure_http = false;                // extension: permit http:// server_url to a non-loopback host
    // SAML
    std::string entity_id;
    std::string metadata_url;
    std::string x509_cert;
    std::string sso_url;
    std::map<std::string, std::string> attribute_mapping;
    // SAML extensions of this project (ca_file, role_values, default_role and
    // allow_insecure_http above serve SAML too; role_attribute is SAML's role_claim)
    std::string sp_entity_id;          // default <cvat_base_url>/api/auth/saml/<id>/metadata/
    std::string acs_url;               // default <cvat_base_url>/api/auth/saml/<id>/acs/
    std::string ecp_url;               // the SOAP SSO endpoint when the metadata lists none
    std::string role_attribute;        // e.g. groups, or http://schemas.microsoft.com/ws/2008/06/identity/claims/groups
    std::string metadata_signing_cert; // PEM path: metadata_url's signature must verify with it
    bool allow_sha1 = false;           // accept rsa-sha1/sha1 signatures (legacy IdPs)
};

struct SsoConfig {
    bool configured = false;
    bool enabled = false;
    SelectionMode selection_mode = SelectionMode::email_address;  // CVAT's documented default
    bool enable_pkce = false;
    std::vector<IdentityProvider> identity_providers;
};

// Where a user name goes that no rule of the sso: section claims (a bare "alice", or a domain
// no IdP's email_domain matches): `automatic` is ldap when there is an ldap: section, else sso.
enum class DefaultBackend { automatic, ldap, sso };

struct HelperSettings {
    std::string socket = CVAT_DEFAULT_SOCKET;
    std::string user;                  // drop to this user after binding the socket (when root)
    log::Level log_level = log::Level::info;
    unsigned workers = 8;              // threads doing blocking backend work
    unsigned max_connections = 1024;   // open client connections, all peers together
    // Open connections of one non-root peer uid (SO_PEERCRED); root counts only against
    // max_connections. 0: no per-uid cap.
    unsigned max_connections_per_uid = 128;
    int client_timeout_ms = 10000;     // a client must send a whole frame within this
    std::string cache_dir = "/var/lib/cvat-auth";
    DefaultBackend default_backend = DefaultBackend::automatic;
    // CVAT's external URL (https://cvat.example.com): our SAML SP identity is derived from it
    // as CVAT's own. Empty: $CVAT_BASE_URL.
    std::string cvat_base_url;
    // A repeated login with the same credentials within this is answered without the
    // directory (web servers ask PAM on every request). 0 disables the verdict cache.
    int verdict_ttl_ms = 30000;
    struct Offline {
        bool enabled = false;                    // keep Argon2id hashes for logins while no server answers
        std::int64_t max_age_s = 7 * 86400;      // an entry older than this no longer logs anyone in
    } offline;
    // Delays after repeated failed logins, per user name and per (peer uid, rhost).
    ThrottleSettings rate_limit;
};

// The group each CVAT role is exposed as through NSS.
struct RoleGroup {
    std::string name;
    std::uint32_t gid = 0;
};

struct NssSettings {
    std::uint32_t id_min = 200000;     // above Debian's dynamic range and systemd's (see README)
    std::uint32_t id_max = 999999;
    std::string home = "/home/%u";
    std::string shell = "/bin/bash";
    std::int64_t cache_ttl_s = 5400;   // a cached user is fresh this long (SSSD's entry_cache_timeout)
    std::int64_t negative_ttl_s = 60;  // "no such user" is remembered this long
    // A fresh entry served after this share of cache_ttl has passed is refreshed in the
    // background (the caller is answered from the cache at once). 0 turns that off.
    unsigned refresh_percent = 50;
    bool enumerate = false;            // getpwent/getgrent list cached users (off: like SSSD)
    // role_groups[Role]: admin, user, worker (index 0 unused). Default names cvat-admin, ...;
    // default GIDs id_min, id_min + 1, id_min + 2 (never handed to a user).
    std::array<RoleGroup, 4> role_groups;
    bool directory_groups = false;     // also expose the user's directory groups
    // Names routed to an IdP resolve before their first login (a provisional entry). Then an IdP
    // user's UID/GID derive from the IdP id + the lower-cased name (accounts.hpp name_seed), not
    // from the subject: the same with or without a lookup before the login, on every host with
    // this setting; the subject seen at the first login is kept, and a login of the name with
    // another subject is refused until `cvat-authctl cache expire NAME` (or flush). Off: the
    // UID derives from the subject (iss + sub; SAML entity id + uid/NameID).
    bool provisional_users = false;
};

struct Config {
    std::string path;
    SsoConfig sso;
    LdapConfig ldap;
    HelperSettings helper;
    NssSettings nss;
    // Problems that do not stop loading, each "PATH:LINE:COL: KEY: message" (keys in sso:
    // that CVAT does not document, certificate checks turned off, ...). Log them at start.
    std::vector<std::string> warnings;
};

struct LoadOptions {
    // Refuse a config that holds an inline secret (bind_password, client_secret) and is
    // readable by other users, a config writable by other users, and a *_file secret that is
    // not a regular file or whose mode goes beyond 0640 (other bits set, or group-writable).
    // The daemon always leaves this on. Off: `cvat-authctl config check` run on a copy (a
    // file under review, a ConfigMap dump) whose mode says nothing about the installed one,
    // and tests.
    bool check_permissions = true;
    // Open *_file secrets and fill the Secret fields. Off: the paths are checked for form
    // only (absolute) and the secrets stay empty; for checking files meant for another host.
    bool read_secret_files = true;
    // Check that ca_file paths name readable regular files. Off: form only, as above.
    bool check_files = true;
};

// Loads and validates `path`. On failure the Error (code config) lists every problem found,
// one per line in file order, each "PATH:LINE:COL: KEY: message" (1-based; KEY a dotted path
// such as sso.identity_providers[1].client_id, list indexes 0-based; a YAML syntax error has
// KEY "yaml"). A missing key is reported at its parent mapping. Never throws.
[[nodiscard]] Result<Config> load_config(const std::string& path, const LoadOptions& options = {});

}  // namespace cvat::helper
