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

namespace cvat::helper {

enum class Scope { base, onelevel, subtree };

// AUTH_LDAP_GROUP_TYPE, spelled as in DESIGN.md §4.
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
    Scope scope = Scope::subtree;
    std::string filter;  // user_search: contains %(user)s; group_search: objectClass filter
};

struct TlsConfig {
    std::string ca_file;        // empty: the system store
    bool require_cert = true;   // false only when the config says so, with a warning
};

struct LdapConfig {
    bool configured = false;             // the file has an ldap: section
    std::vector<std::string> server_uri; // tried in order (failover)
    bool start_tls = false;
    TlsConfig tls;
    bool referrals = false;
    std::string bind_dn;                 // empty: anonymous search
    Secret bind_password;                // from bind_password or bind_password_file
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
    std::string server_url;
    std::string client_id;
    Secret client_secret;
    TokenAuthMethod token_auth_method = TokenAuthMethod::client_secret_post;
    // OIDC extensions of this project
    std::string ca_file;
    std::string role_claim;                          // e.g. "groups"
    std::array<std::vector<std::string>, 4> role_values;
    std::vector<std::string> scopes;                 // default: openid profile email
    std::string username_claim;                      // default: preferred_username
    // SAML
    std::string entity_id;
    std::string metadata_url;
    std::string x509_cert;
    std::string sso_url;
    std::map<std::string, std::string> attribute_mapping;
};

struct SsoConfig {
    bool configured = false;
    bool enabled = false;
    SelectionMode selection_mode = SelectionMode::lowest_weight;
    bool enable_pkce = false;
    std::vector<IdentityProvider> identity_providers;
};

struct HelperSettings {
    std::string socket = CVAT_DEFAULT_SOCKET;
    std::string user;                  // drop to this user after binding the socket (when root)
    log::Level log_level = log::Level::info;
    unsigned workers = 8;              // threads doing blocking backend work
    unsigned max_connections = 1024;   // open client connections, all peers together
    int client_timeout_ms = 10000;     // a client must send a whole frame within this
    std::string cache_dir = "/var/lib/cvat-auth";
};

struct NssSettings {
    std::uint32_t id_min = 200000;     // above Debian's dynamic range and systemd's (see README)
    std::uint32_t id_max = 999999;
    std::string home = "/home/%u";
    std::string shell = "/bin/bash";
};

struct Config {
    std::string path;
    SsoConfig sso;
    LdapConfig ldap;
    HelperSettings helper;
    NssSettings nss;
};

struct LoadOptions {
    // Refuse a file (or *_file secret) that others can read while it holds a secret.
    bool check_permissions = true;
};

// Loads and validates `path`. On failure the Error (code config) lists every problem found,
// one per line, each "PATH:LINE:COL: KEY: message". Never throws.
[[nodiscard]] Result<Config> load_config(const std::string& path, const LoadOptions& options = {});

}  // namespace cvat::helper
