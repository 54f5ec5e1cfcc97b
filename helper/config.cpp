// SPDX-License-Identifier: GPL-3.0-or-later
// auth_config.yml loader (see config.hpp). One pass over the YAML tree collects every problem;
// the file is refused if there is at least one error. Values are read only through iteration
// over mappings, never Node::operator[], so no zombie node (whose Mark() throws) is created.
#include "config.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <optional>
#include <set>
#include <sstream>
#include <span>
#include <string_view>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "dns_srv.hpp"
#include "ldap_text.hpp"
#include "unique_fd.hpp"

namespace cvat::helper {

const char* group_type_name(GroupType t) noexcept {
    switch (t) {
        case GroupType::active_directory: return "active_directory";
        case GroupType::nested_active_directory: return "nested_active_directory";
        case GroupType::group_of_names: return "group_of_names";
        case GroupType::nested_group_of_names: return "nested_group_of_names";
        case GroupType::posix_group: return "posix_group";
        case GroupType::member_of: return "member_of";
    }
    return "?";
}

namespace {

// Bounds on what we read: the file is root's, but `cvat-authctl config check` reads any file.
constexpr off_t kMaxConfigBytes = 1 << 20;
constexpr std::size_t kMaxListItems = 1024;      // URIs, DNs, scopes, claim values per key
constexpr std::size_t kMaxIdentityProviders = proto::kMaxBackends;
constexpr std::size_t kMaxShownValue = 60;       // a found value is quoted up to this length

using Sv = std::string_view;
using Keys = std::span<const Sv>;

constexpr Sv kTopKeys[] = {"sso", "ldap", "helper", "nss"};
constexpr Sv kLdapKeys[] = {"server_uri", "dns_srv", "start_tls", "tls", "referrals", "bind_dn",
                            "bind_password", "bind_password_file", "user_search", "group_search",
                            "group_type", "user_attr_map", "role_groups", "default_role",
                            "connect_timeout", "timeout", "pool_size", "max_nesting",
                            "max_groups", "group_cache_ttl", "group_mirror", "allow_cleartext_password"};
constexpr Sv kTlsKeys[] = {"ca_file", "require_cert"};
constexpr Sv kSearchKeys[] = {"base", "scope", "filter"};
constexpr Sv kAttrMapKeys[] = {"user_name", "first_name", "last_name", "email"};
constexpr Sv kRoleKeys[] = {"admin", "user", "worker"};
constexpr Sv kHelperKeys[] = {"socket", "user", "log_level", "workers", "max_connections",
                              "max_connections_per_uid", "client_timeout", "cache_dir",
                              "default_backend", "verdict_ttl", "offline", "cvat_base_url",
                              "rate_limit"};
constexpr Sv kRateLimitKeys[] = {"per_user", "per_peer", "delay", "max_delay", "max_entries"};
constexpr Sv kRateRuleKeys[] = {"failures", "window"};
constexpr Sv kOfflineKeys[] = {"enabled", "max_age"};
constexpr Sv kNssKeys[] = {"id_min", "id_max", "home", "shell", "cache_ttl", "negative_ttl",
                           "refresh_percent", "enumerate", "role_groups", "directory_groups",
                           "provisional_users"};
constexpr Sv kRoleGroupKeys[] = {"name", "gid"};
constexpr Sv kSsoKeys[] = {"enabled", "selection_mode", "enable_pkce", "identity_providers"};
// Per-IdP keys: CVAT's (docs "SSO configuration"), then this project's extensions.
constexpr Sv kIdpCommonKeys[] = {"id", "name", "protocol", "email_domain", "weight"};
constexpr Sv kOidcKeys[] = {"server_url", "client_id", "client_secret", "token_auth_method",
                            "client_secret_file", "ca_file", "role_claim", "role_values",
                            "scopes", "username_claim", "allow_insecure_http", "default_role"};
constexpr Sv kSamlKeys[] = {"entity_id", "metadata_url", "x509_cert", "sso_url",
                            "attribute_mapping",
                            // extensions (issue 9); the last four are OIDC's too
                            "sp_entity_id", "acs_url", "ecp_url", "role_attribute",
                            "metadata_signing_cert", "allow_sha1", "role_values", "default_role",
                            "ca_file", "allow_insecure_http"};
// Keys both protocols read: never "a setting of the other protocol".
constexpr Sv kSharedIdpKeys[] = {"role_values", "default_role", "ca_file", "allow_insecure_http"};
constexpr Sv kSamlAttributes[] = {"uid", "username", "email", "first_name", "last_name",
                                  "email_verified"};

// Django setting names people paste from settings.py, and where they went here.
struct DjangoAlias {
    Sv django;
    Sv key;  // relative to ldap:
};
constexpr DjangoAlias kDjangoAliases[] = {
    {"auth_ldap_server_uri", "server_uri"},     {"auth_ldap_start_tls", "start_tls"},
    {"auth_ldap_bind_dn", "bind_dn"},           {"auth_ldap_bind_password", "bind_password"},
    {"auth_ldap_user_search", "user_search"},   {"auth_ldap_group_search", "group_search"},
    {"auth_ldap_group_type", "group_type"},     {"auth_ldap_user_attr_map", "user_attr_map"},
    {"django_auth_ldap_groups", "role_groups"}, {"auth_ldap_admin_groups", "role_groups.admin"},
    {"auth_ldap_user_groups", "role_groups.user"},
    {"auth_ldap_worker_groups", "role_groups.worker"},
    {"opt_referrals", "referrals"},             {"ldap.opt_referrals", "referrals"},
    {"iam_default_role", "default_role"},
};

std::string lower(Sv s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

bool starts_with(Sv s, Sv p) { return s.substr(0, p.size()) == p; }
bool ends_with(Sv s, Sv p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

std::size_t edit_distance(Sv a, Sv b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// The closest known key, if close enough to be a typo (case is ignored).
std::optional<Sv> closest(Sv key, Keys known) {
    const std::string k = lower(key);
    std::optional<Sv> best;
    std::size_t best_d = 0;
    for (Sv cand : known) {
        std::size_t d = edit_distance(k, cand);
        if (!best || d < best_d) {
            best = cand;
            best_d = d;
        }
    }
    if (best && best_d <= std::max<std::size_t>(2, std::min(k.size(), best->size()) / 3)) return best;
    return std::nullopt;
}

template <typename List>
std::string join(const List& items, Sv sep = ", ") {
    std::string out;
    for (Sv s : items) {
        if (!out.empty()) out += sep;
        out += s;
    }
    return out;
}

// "'text'" for messages, control bytes escaped, long text cut.
std::string quoted(Sv text) {
    std::string shown = log_safe(text.substr(0, kMaxShownValue));
    if (text.size() > kMaxShownValue) shown += "...";
    return "'" + shown + "'";
}

// What a node is, for "expected X, found Y". Secret scalars are never echoed.
std::string describe(const YAML::Node& n, bool secret = false) {
    switch (n.Type()) {
        case YAML::NodeType::Null: return "nothing (an empty value)";
        case YAML::NodeType::Sequence: return "a list";
        case YAML::NodeType::Map: return "a mapping";
        case YAML::NodeType::Scalar:
            if (secret) return "a value (not shown: it is a secret)";
            return quoted(n.Scalar());
        case YAML::NodeType::Undefined: break;
    }
    return "nothing";
}

// A quoted scalar ('10', "true") has the non-specific tag "!"; a plain one has "?".
bool is_quoted(const YAML::Node& n) { return n.Tag() == "!"; }

std::string mode_text(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Host part of a URI authority is loopback: 127.0.0.0/8, ::1, localhost.
bool is_loopback_host(Sv host) {
    std::string h = lower(host);
    if (!h.empty() && h.back() == '.') h.pop_back();
    if (h == "localhost" || ends_with(h, ".localhost")) return true;
    in_addr a4{};
    if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    in6_addr a6{};
    if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
        if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
    }
    return false;
}

bool valid_host(Sv host) {
    if (host.empty() || host.size() > 253) return false;
    for (char c : host)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    return true;
}

// Splits "host[:port]" or "[v6][:port]"; returns an error text or empty.
std::string split_authority(Sv authority, std::string& host, bool& has_port) {
    has_port = false;
    Sv port;
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        if (close == Sv::npos) return "an IPv6 address in [ ] has no closing ']'";
        host = std::string(authority.substr(1, close - 1));
        in6_addr a6{};
        if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return "'" + host + "' is not an IPv6 address";
        Sv rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return "unexpected text after ']'";
            port = rest.substr(1);
            has_port = true;
        }
    } else {
        auto colon = authority.find(':');
        host = std::string(authority.substr(0, colon));
        if (colon != Sv::npos) {
            port = authority.substr(colon + 1);
            has_port = true;
        }
        if (host.empty()) return "no host name";
        if (!valid_host(host)) return "'" + log_safe(host) + "' is not a host name";
    }
    if (has_port) {
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
            value > 65535)
            return "port " + quoted(port) + " is not a number from 1 to 65535";
    }
    return {};
}

// Percent-decodes an ldapi:// host (the socket path).
bool percent_decode(Sv in, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        if (i + 2 >= in.size()) return false;
        unsigned v = 0;
        auto [end, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
        if (ec != std::errc() || end != in.data() + i + 3) return false;
        out.push_back(static_cast<char>(v));
        i += 2;
    }
    return true;
}

struct UriInfo {
    std::string scheme;  // lower case
    std::string host;
};

// An LDAP server URI as libldap takes it, without DN/attribute/filter parts (we search with
// our own bases). Returns an error text or empty.
std::string check_ldap_uri(Sv uri, UriInfo& info) {
    auto sep = uri.find("://");
    if (sep == Sv::npos) return "expected a URI like ldaps://host[:port], found " + quoted(uri);
    info.scheme = lower(uri.substr(0, sep));
    if (info.scheme != "ldap" && info.scheme != "ldaps" && info.scheme != "ldapi")
        return "expected the scheme ldap://, ldaps:// or ldapi://, found " + quoted(uri);
    Sv rest = uri.substr(sep + 3);
    auto slash = rest.find_first_of("/?");
    Sv authority = rest.substr(0, slash);
    if (slash != Sv::npos && rest.substr(slash) != "/")
        return "a server URI takes no DN, attributes or filter (set user_search instead), found " +
               quoted(uri);
    if (authority.find('@') != Sv::npos)
        return "a server URI takes no user name (set bind_dn instead), found " + quoted(uri);
    if (info.scheme == "ldapi") {
        std::string path;
        if (!percent_decode(authority, path)) return "bad %-escape in " + quoted(uri);
        if (!path.empty() && path.front() != '/')
            return "an ldapi:// host is a %2F-encoded absolute socket path, found " + quoted(uri);
        info.host = path;
        return {};
    }
    bool has_port = false;
    std::string why = split_authority(authority, info.host, has_port);
    if (!why.empty()) return why + " in " + quoted(uri);
    return {};
}

// An http(s) URL with a host. Returns an error text or empty.
std::string check_http_url(Sv url, std::string& scheme, std::string& host) {
    auto sep = url.find("://");
    if (sep == Sv::npos) return "expected an https:// URL, found " + quoted(url);
    scheme = lower(url.substr(0, sep));
    if (scheme != "http" && scheme != "https")
        return "expected an https:// URL, found " + quoted(url);
    for (char c : url)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            return "a URL has no spaces or control characters, found " + quoted(url);
    Sv rest = url.substr(sep + 3);
    Sv authority = rest.substr(0, rest.find_first_of("/?#"));
    if (authority.find('@') != Sv::npos) return "a URL must not carry credentials, found " + quoted(url);
    bool has_port = false;
    std::string why = split_authority(authority, host, has_port);
    if (!why.empty()) return why + " in " + quoted(url);
    return {};
}

// `%(user)s` and `%%` as Python's %-formatting takes them; any other '%' raises in Django,
// so it is refused here too. Returns an error text or empty; `placeholders` counts %(user)s.
std::string check_filter(Sv filter, int& placeholders) {
    placeholders = 0;
    std::string expanded;  // the filter with the placeholder replaced, for the paren check
    for (std::size_t i = 0; i < filter.size();) {
        if (filter[i] != '%') {
            expanded.push_back(filter[i++]);
        } else if (filter.substr(i, 8) == "%(user)s") {
            ++placeholders;
            expanded += "x";
            i += 8;
        } else if (filter.substr(i, 2) == "%%") {
            expanded.push_back('%');
            i += 2;
        } else {
            return "'%' at offset " + std::to_string(i) +
                   " is neither %(user)s nor %% (Python %-formatting, as in Django)";
        }
    }
    Sv f = expanded;
    while (!f.empty() && f.front() == ' ') f.remove_prefix(1);
    while (!f.empty() && f.back() == ' ') f.remove_suffix(1);
    if (f.empty()) return "expected an LDAP filter like (uid=%(user)s), found an empty string";
    int depth = 0;
    bool closed_top = false;
    for (std::size_t i = 0; i < f.size(); ++i) {
        char c = f[i];
        if (c == '\\') {  // RFC 4515 escape: \XX
            if (i + 2 >= f.size()) return "'\\' must be followed by two hex digits (RFC 4515)";
            if (!std::isxdigit(static_cast<unsigned char>(f[i + 1])) ||
                !std::isxdigit(static_cast<unsigned char>(f[i + 2])))
                return "'\\' must be followed by two hex digits (RFC 4515), at offset " +
                       std::to_string(i);
            i += 2;
            continue;
        }
        if (closed_top && c != ' ')
            return "text after the closing ')' of the filter; join several filters with (&...)";
        if (c == '(') ++depth;
        if (c == ')') {
            if (--depth < 0) return "unbalanced parentheses: a ')' has no matching '('";
            if (depth == 0 && f.front() == '(') closed_top = true;
        }
    }
    if (depth != 0) return "unbalanced parentheses: " + std::to_string(depth) + " '(' not closed";
    return {};
}

// ---------------------------------------------------------------------------------------------

// A mapping whose keys were checked: known keys with their key and value nodes.
struct Map {
    YAML::Node node;
    std::string path;  // dotted key of this mapping, "" for the top level
    struct Entry {
        YAML::Node key;
        YAML::Node value;
    };
    std::vector<std::pair<std::string, Entry>> entries;

    const Entry* find(Sv k) const {
        for (const auto& e : entries)
            if (e.first == k) return &e.second;
        return nullptr;
    }
    bool has(Sv k) const { return find(k) != nullptr; }
    std::string key(Sv k) const { return path.empty() ? std::string(k) : path + "." + std::string(k); }
};

enum class Unknown { error, warning_cvat };

struct Problem {
    int line;
    int col;
    std::string text;
};

// Counts the documents of a stream; their content is not kept.
class DocumentCounter final : public YAML::EventHandler {
public:
    void OnDocumentStart(const YAML::Mark& m) override { starts.push_back(m); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
    std::vector<YAML::Mark> starts;
};

struct Documents {
    YAML::Node first;       // the file's first document
    std::size_t count = 0;  // documents seen, counted up to 2
    YAML::Mark second;      // where the second one starts
};

// Not YAML::LoadAll: yaml-cpp 0.7's parser hands back a document without consuming a lone ","
// at the top level, and LoadAll collects such documents until memory runs out (a 1-byte file
// took 21 GB before the OOM killer; found by fuzz_config). The first document is built, and
// the stream is read again for at most two document starts.
Documents load_documents(const std::string& text) {
    Documents d;
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentCounter counter;
    for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
    }
    d.count = counter.starts.size();
    if (d.count > 0) d.first = YAML::Load(text);
    if (d.count > 1) d.second = counter.starts[1];
    return d;
}

class Loader {
public:
    Loader(const std::string& path, const LoadOptions& options) : path_(path), options_(options) {}

    Result<Config> run();

private:
    // --- reporting
    Problem make(const YAML::Mark& m, const std::string& key, const std::string& msg) const {
        int line = m.line >= 0 ? m.line + 1 : 1;
        int col = m.column >= 0 ? m.column + 1 : 1;
        // The key path holds the file's own key names: a multi-line or control-character key
        // must not break the one-problem-per-line form (or forge lines in a log); log_safe
        // escapes them and shortens a long one.
        return {line, col,
                path_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + log_safe(key) + ": " + msg};
    }
    void error(const YAML::Node& at, const std::string& key, const std::string& msg) {
        errors_.push_back(make(at.Mark(), key, msg));
    }
    void warning(const YAML::Node& at, const std::string& key, const std::string& msg) {
        warnings_.push_back(make(at.Mark(), key, msg));
    }
    void missing(const Map& m, Sv k, const std::string& what) {
        error(m.node, m.key(k), "required key missing: expected " + what);
    }

    // --- structure
    std::optional<Map> open_map(const YAML::Node& n, const std::string& path, Keys known,
                                Unknown policy);
    std::optional<Map> open_child(const Map& parent, Sv k, Keys known, Unknown policy) {
        const auto* e = parent.find(k);
        if (!e) return std::nullopt;
        return open_map(e->value, parent.key(k), known, policy);
    }

    // --- scalars. Each returns true when the key is present and valid (out set); an absent
    // key leaves `out` as it was (the default) and returns false without an error.
    bool read_string(const Map& m, Sv k, std::string& out, bool allow_empty = false,
                     bool secret = false);
    bool read_bool(const Map& m, Sv k, bool& out);
    bool read_int(const Map& m, Sv k, long long lo, long long hi, long long& out);
    template <typename T>
    bool read_int_as(const Map& m, Sv k, long long lo, long long hi, T& out) {
        long long v = 0;
        if (!read_int(m, k, lo, hi, v)) return false;
        out = static_cast<T>(v);
        return true;
    }
    bool read_seconds(const Map& m, Sv k, double lo, double hi, int& out_ms);
    // Whole seconds, or a number with a unit: 90, 90s, 15m, 12h, 7d.
    bool read_duration(const Map& m, Sv k, std::int64_t lo_s, std::int64_t hi_s, std::int64_t& out_s);
    template <typename E>
    bool read_enum(const Map& m, Sv k, std::initializer_list<std::pair<Sv, E>> names, Sv expected,
                   E& out);
    // A string or a list of strings (both spellings are common in Django settings).
    bool read_string_list(const Map& m, Sv k, std::vector<std::string>& out,
                          std::vector<YAML::Node>* nodes = nullptr);
    bool read_abs_path(const Map& m, Sv k, std::string& out);
    bool read_string_map(const Map& m, Sv k, std::map<std::string, std::string>& out,
                         Keys known, Unknown policy);
    // Role name -> list of strings (role_groups, role_values).
    void read_role_lists(const Map& m, Sv k, std::array<std::vector<std::string>, 4>& out,
                         bool dns);

    // --- files
    bool check_readable_file(const Map& m, Sv k, const std::string& path);
    void read_secret_file(const Map& m, Sv k, const std::string& file, Secret& out);
    void inline_secret(const Map& m, Sv k, Sv file_key, Secret& out);

    // --- sections
    void load_ldap(const Map& top, LdapConfig& ldap);
    void load_search(const Map& ldap, Sv k, SearchSpec& out, bool user);
    void load_sso(const Map& top, SsoConfig& sso);
    void load_idp(const YAML::Node& n, std::size_t index, IdentityProvider& idp,
                  SelectionMode mode);
    void load_helper(const Map& top, HelperSettings& h);
    void load_nss(const Map& top, NssSettings& nss);

    bool check_dn(const YAML::Node& at, const std::string& key, Sv dn, std::string* normal);

    std::string path_;
    LoadOptions options_;
    mode_t file_mode_ = 0;
    std::vector<YAML::Node> secret_nodes_;  // inline secrets, wiped once loading is over
    std::vector<Problem> errors_;
    std::vector<Problem> warnings_;
};

std::optional<Map> Loader::open_map(const YAML::Node& n, const std::string& path, Keys known,
                                    Unknown policy) {
    if (!n.IsMap()) {
        error(n, path, "expected a mapping (indented key: value lines), found " + describe(n));
        return std::nullopt;
    }
    Map m{n, path, {}};
    for (auto it = n.begin(); it != n.end(); ++it) {
        const YAML::Node key = it->first;  // a copy: it-> yields a temporary proxy
        const std::string kpath = path.empty() ? "" : path + ".";
        if (!key.IsScalar()) {
            error(key, path.empty() ? "(top level)" : path,
                  "expected a key name, found " + describe(key));
            continue;
        }
        const std::string& name = key.Scalar();
        if (const auto* prev = m.find(name)) {
            error(key, kpath + name,
                  "key given twice (first at line " + std::to_string(prev->key.Mark().line + 1) +
                      "); YAML readers disagree on which one wins");
            continue;
        }
        if (std::find(known.begin(), known.end(), Sv(name)) == known.end()) {
            std::string msg = "unknown key";
            const std::string low = lower(name);
            std::optional<std::string> django;
            for (const auto& a : kDjangoAliases)
                if (low == a.django) django = std::string(path == "ldap" ? "" : "ldap.") + std::string(a.key);
            if (low == "iam_type") {
                msg += ": IAM_TYPE is not needed here; an ldap: section turns LDAP login on";
            } else if (django && (path == "ldap" || path.empty())) {
                msg += ": " + quoted(name) + " is the Django setting; here it is '" + *django + "'";
            } else if (name.find('=') != std::string::npos) {
                msg += " " + quoted(name) + ": a DN inside { } must be quoted, or its commas split it "
                       "into keys; expected one of " + join(known);
            } else if (auto near = closest(name, known)) {
                msg += " " + quoted(name) + ": did you mean '" + std::string(*near) + "'?";
            } else {
                msg += " " + quoted(name) + ": expected one of " + join(known);
            }
            if (policy == Unknown::error) {
                error(key, kpath + name, msg);
            } else {
                warning(key, kpath + name, msg + " (not a setting CVAT documents; ignored)");
            }
            continue;
        }
        m.entries.push_back({name, {key, it->second}});
    }
    return m;
}

bool Loader::read_string(const Map& m, Sv k, std::string& out, bool allow_empty, bool secret) {
    const auto* e = m.find(k);
    if (!e) return false;
    if (!e->value.IsScalar()) {
        error(e->value, m.key(k), "expected a string, found " + describe(e->value, secret));
        return false;
    }
    const std::string& s = e->value.Scalar();
    if (s.empty() && !allow_empty) {
        error(e->value, m.key(k), "expected a non-empty string, found an empty string");
        return false;
    }
    if (s.find('\0') != std::string::npos) {
        error(e->value, m.key(k), "expected a string without NUL bytes");
        return false;
    }
    out = s;
    return true;
}

bool Loader::read_bool(const Map& m, Sv k, bool& out) {
    const auto* e = m.find(k);
    if (!e) return false;
    // YAML 1.1 booleans, as PyYAML (CVAT's reader) takes them.
    static constexpr Sv kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static constexpr Sv kFalse[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    if (e->value.IsScalar()) {
        const std::string& s = e->value.Scalar();
        bool t = std::find(std::begin(kTrue), std::end(kTrue), Sv(s)) != std::end(kTrue);
        bool f = std::find(std::begin(kFalse), std::end(kFalse), Sv(s)) != std::end(kFalse);
        if ((t || f) && is_quoted(e->value)) {
            error(e->value, m.key(k),
                  "expected a boolean (true/false), found the quoted string " + quoted(s) +
                      ": drop the quotes");
            return false;
        }
        if (t || f) {
            out = t;
            return true;
        }
    }
    error(e->value, m.key(k), "expected a boolean (true/false), found " + describe(e->value));
    return false;
}

bool Loader::read_int(const Map& m, Sv k, long long lo, long long hi, long long& out) {
    const auto* e = m.find(k);
    if (!e) return false;
    const std::string range = "expected a whole number from " + std::to_string(lo) + " to " +
                              std::to_string(hi) + ", found ";
    if (!e->value.IsScalar() || is_quoted(e->value)) {
        error(e->value, m.key(k),
              range + (e->value.IsScalar() ? "the quoted string " + quoted(e->value.Scalar())
                                           : describe(e->value)));
        return false;
    }
    Sv s = e->value.Scalar();
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    long long v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) {
        error(e->value, m.key(k), range + describe(e->value));
        return false;
    }
    out = v;
    return true;
}

bool Loader::read_seconds(const Map& m, Sv k, double lo, double hi, int& out_ms) {
    const auto* e = m.find(k);
    if (!e) return false;
    char range[160];
    std::snprintf(range, sizeof range,
                  "expected a number of seconds from %g to %g (fractions like 0.5 allowed), found ",
                  lo, hi);
    if (!e->value.IsScalar() || is_quoted(e->value)) {
        error(e->value, m.key(k), std::string(range) + describe(e->value));
        return false;
    }
    Sv s = e->value.Scalar();
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    double v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);  // locale-independent
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v) ||
        v < lo || v > hi) {
        error(e->value, m.key(k), std::string(range) + describe(e->value));
        return false;
    }
    out_ms = static_cast<int>(std::lround(v * 1000.0));
    return true;
}

bool Loader::read_duration(const Map& m, Sv k, std::int64_t lo_s, std::int64_t hi_s, std::int64_t& out_s) {
    const auto* e = m.find(k);
    if (!e) return false;
    const std::string expected = "expected a duration from " + std::to_string(lo_s) + "s to " +
                                 std::to_string(hi_s) + "s: seconds, or a number with s, m, h or d (15m, 7d), found ";
    if (!e->value.IsScalar() || is_quoted(e->value)) {
        error(e->value, m.key(k), expected + describe(e->value));
        return false;
    }
    Sv s = e->value.Scalar();
    std::int64_t unit = 1;
    if (!s.empty()) {
        switch (s.back()) {
            case 's': unit = 1; break;
            case 'm': unit = 60; break;
            case 'h': unit = 3600; break;
            case 'd': unit = 86400; break;
            default: unit = 0; break;
        }
        if (unit != 0) s.remove_suffix(1);
        else unit = 1;
    }
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < 0 || v > hi_s / unit ||
        v * unit < lo_s || v * unit > hi_s) {
        error(e->value, m.key(k), expected + describe(e->value));
        return false;
    }
    out_s = v * unit;
    return true;
}

template <typename E>
bool Loader::read_enum(const Map& m, Sv k, std::initializer_list<std::pair<Sv, E>> names,
                       Sv expected, E& out) {
    const auto* e = m.find(k);
    if (!e) return false;
    if (e->value.IsScalar()) {
        for (const auto& [name, value] : names) {
            if (e->value.Scalar() == name) {
                out = value;
                return true;
            }
        }
    }
    error(e->value, m.key(k), "expected " + std::string(expected) + ", found " + describe(e->value));
    return false;
}

bool Loader::read_string_list(const Map& m, Sv k, std::vector<std::string>& out,
                              std::vector<YAML::Node>* nodes) {
    const auto* e = m.find(k);
    if (!e) return false;
    out.clear();
    if (e->value.IsScalar()) {
        if (e->value.Scalar().empty()) {
            error(e->value, m.key(k), "expected a string or a list of strings, found an empty string");
            return false;
        }
        out.push_back(e->value.Scalar());
        if (nodes) nodes->push_back(e->value);
        return true;
    }
    if (!e->value.IsSequence()) {
        error(e->value, m.key(k), "expected a string or a list of strings, found " + describe(e->value));
        return false;
    }
    if (e->value.size() > kMaxListItems) {
        error(e->value, m.key(k), "expected at most " + std::to_string(kMaxListItems) +
                                      " items, found " + std::to_string(e->value.size()));
        return false;
    }
    bool ok = true;
    std::size_t i = 0;
    for (const auto& item : e->value) {
        const std::string key = m.key(k) + "[" + std::to_string(i++) + "]";
        if (!item.IsScalar() || item.Scalar().empty()) {
            error(item, key, "expected a non-empty string, found " +
                                 (item.IsScalar() ? std::string("an empty string") : describe(item)));
            ok = false;
            continue;
        }
        out.push_back(item.Scalar());
        if (nodes) nodes->push_back(item);
    }
    return ok;
}

bool Loader::read_abs_path(const Map& m, Sv k, std::string& out) {
    std::string p;
    if (!read_string(m, k, p)) return false;
    if (p.front() != '/') {
        error(m.find(k)->value, m.key(k), "expected an absolute path (starting with /), found " + quoted(p));
        return false;
    }
    out = p;
    return true;
}

bool Loader::read_string_map(const Map& m, Sv k, std::map<std::string, std::string>& out,
                             Keys known, Unknown policy) {
    auto sub = open_child(m, k, known, policy);
    if (!sub) return false;
    bool ok = true;
    for (const auto& [name, entry] : sub->entries) {
        std::string v;
        if (read_string(*sub, name, v))
            out[name] = v;
        else
            ok = false;
    }
    // Keys CVAT does not document (warned about) are still passed on: the IdP may send them.
    if (policy == Unknown::warning_cvat) {
        for (auto it = sub->node.begin(); it != sub->node.end(); ++it)
            if (it->first.IsScalar() && it->second.IsScalar() && !out.count(it->first.Scalar()))
                out[it->first.Scalar()] = it->second.Scalar();
    }
    return ok;
}

void Loader::read_role_lists(const Map& m, Sv k, std::array<std::vector<std::string>, 4>& out,
                             bool dns) {
    auto sub = open_child(m, k, kRoleKeys, Unknown::error);
    if (!sub) return;
    for (const auto& [name, entry] : sub->entries) {
        proto::Role role = proto::Role::none;
        proto::parse_role(name, role);
        std::vector<std::string> values;
        std::vector<YAML::Node> nodes;
        if (!read_string_list(*sub, name, values, &nodes)) continue;
        if (dns) {
            const bool flow = entry.value.IsSequence() && entry.value.Style() == YAML::EmitterStyle::Flow;
            for (std::size_t i = 0; i < values.size(); ++i) {
                std::string key = sub->key(name);
                if (entry.value.IsSequence()) key += "[" + std::to_string(i) + "]";
                std::string normal;
                if (!check_dn(nodes[i], key, values[i], &normal)) continue;
                // In [a, b] every comma ends an item, so an unquoted DN falls apart into
                // one-RDN pieces that each parse.
                if (flow && normal.find(',') == std::string::npos) {
                    error(nodes[i], key,
                          "expected a whole group DN, found the single RDN " + quoted(values[i]) +
                              ": inside [ ] commas separate items, so quote each DN");
                    break;  // one report per list is enough
                }
            }
        }
        out[static_cast<std::size_t>(role)] = std::move(values);
    }
}

bool Loader::check_dn(const YAML::Node& at, const std::string& key, Sv dn, std::string* normal) {
    auto n = normalize_dn(dn);
    if (!n) {
        error(at, key, "expected a DN like CN=CVAT Admins,DC=example,DC=com (RFC 4514 attr=value "
                       "pairs separated by commas), found " + quoted(dn) + ": " + n.error().detail);
        return false;
    }
    if (n->empty()) {
        error(at, key, "expected a DN like CN=CVAT Admins,DC=example,DC=com, found an empty DN");
        return false;
    }
    if (normal) *normal = *n;
    return true;
}

bool Loader::check_readable_file(const Map& m, Sv k, const std::string& path) {
    if (!options_.check_files) return true;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    struct stat st{};
    if (!fd) {
        error(m.find(k)->value, m.key(k),
              "cannot open " + quoted(path) + ": " + std::strerror(errno));
        return false;
    }
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        error(m.find(k)->value, m.key(k), "expected a regular file, found " + quoted(path) + " is not one");
        return false;
    }
    return true;
}

void Loader::read_secret_file(const Map& m, Sv k, const std::string& file, Secret& out) {
    const YAML::Node& at = m.find(k)->value;
    if (!options_.read_secret_files) return;
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
        error(at, m.key(k), "cannot open " + quoted(file) + ": " + std::strerror(errno));
        return;
    }
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        error(at, m.key(k), quoted(file) + " is not a regular file");
        return;
    }
    // Like sshd with a private key: a secret others may read (or change) is refused.
    if (options_.check_permissions && (st.st_mode & 0027) != 0) {
        error(at, m.key(k),
              quoted(file) + " is readable or writable by other users (mode " + mode_text(st.st_mode) +
                  "): chmod 0640 (or 0600) it, owned by root or the daemon's user");
        return;
    }
    if (st.st_size > static_cast<off_t>(proto::kMaxSecret)) {
        error(at, m.key(k), quoted(file) + " is too large for a secret (" + std::to_string(st.st_size) +
                                " bytes, at most " + std::to_string(proto::kMaxSecret) + ")");
        return;
    }
    std::vector<char, ZeroingAllocator<char>> buf(proto::kMaxSecret + 1);
    std::size_t got = 0;
    while (got < buf.size()) {
        ssize_t r = ::read(fd.get(), buf.data() + got, buf.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            error(at, m.key(k), "cannot read " + quoted(file) + ": " + std::strerror(errno));
            return;
        }
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    if (got > proto::kMaxSecret) {
        error(at, m.key(k), quoted(file) + " is too large for a secret");
        return;
    }
    Sv text(buf.data(), got);
    if (ends_with(text, "\n")) text.remove_suffix(1);  // the one newline editors add
    if (ends_with(text, "\r")) text.remove_suffix(1);
    if (text.empty()) {
        error(at, m.key(k), quoted(file) + " is empty: expected the secret on its first line");
        return;
    }
    if (text.find('\0') != Sv::npos || text.find('\n') != Sv::npos) {
        error(at, m.key(k), quoted(file) + " holds more than one line or a NUL byte: expected the "
                                           "secret alone, optionally followed by one newline");
        return;
    }
    out = Secret(text);
}

// An inline secret in this file: refused when other users may read the file.
void Loader::inline_secret(const Map& m, Sv k, Sv file_key, Secret& out) {
    std::string value;
    if (!read_string(m, k, value, false, true)) return;
    out = Secret(value);
    explicit_bzero(value.data(), value.size());
    secret_nodes_.push_back(m.find(k)->value);
    if (options_.check_permissions && (file_mode_ & 0004) != 0) {
        error(m.find(k)->value, m.key(k),
              "this file holds a secret and is readable by other users (mode " +
                  mode_text(file_mode_) + "): chmod o-r, or move the secret to " +
                  std::string(file_key));
    }
}

// ---------------------------------------------------------------------------------------------

void Loader::load_search(const Map& ldap, Sv k, SearchSpec& out, bool user) {
    auto m = open_child(ldap, k, kSearchKeys, Unknown::error);
    if (!m) return;
    if (read_string(*m, "base", out.base)) {
        check_dn(m->find("base")->value, m->key("base"), out.base, nullptr);
    } else if (!m->has("base")) {
        missing(*m, "base", "the DN the search starts from, e.g. CN=Users,DC=example,DC=com");
    }
    read_enum<Scope>(*m, "scope",
                     {{"subtree", Scope::subtree}, {"onelevel", Scope::onelevel},
                      {"base", Scope::base}, {"SCOPE_SUBTREE", Scope::subtree},
                      {"SCOPE_ONELEVEL", Scope::onelevel}, {"SCOPE_BASE", Scope::base},
                      {"ldap.SCOPE_SUBTREE", Scope::subtree},
                      {"ldap.SCOPE_ONELEVEL", Scope::onelevel}, {"ldap.SCOPE_BASE", Scope::base}},
                     "one of base, onelevel, subtree (or Django's SCOPE_SUBTREE spelling)", out.scope);
    if (read_string(*m, "filter", out.filter)) {
        const YAML::Node& at = m->find("filter")->value;
        int placeholders = 0;
        std::string why = check_filter(out.filter, placeholders);
        if (!why.empty()) {
            error(at, m->key("filter"), why + ", in " + quoted(out.filter));
        } else if (user && placeholders == 0) {
            error(at, m->key("filter"),
                  "expected a filter containing %(user)s (where the login name goes, as in Django), "
                  "found " + quoted(out.filter));
        } else if (!user && placeholders > 0) {
            error(at, m->key("filter"),
                  "group_search.filter is not expanded: %(user)s would be searched literally; "
                  "expected an objectClass filter such as (objectClass=group), found " +
                      quoted(out.filter));
        }
    } else if (!m->has("filter")) {
        missing(*m, "filter",
                user ? std::string("a filter with %(user)s, e.g. (uid=%(user)s)")
                     : std::string("a filter such as (objectClass=groupOfNames)"));
    }
}

void Loader::load_ldap(const Map& top, LdapConfig& ldap) {
    auto m = open_child(top, "ldap", kLdapKeys, Unknown::error);
    if (!m) return;
    ldap.configured = true;

    // server_uri: a list, or one string with URIs separated by spaces (AUTH_LDAP_SERVER_URI).
    std::vector<UriInfo> uris;
    std::vector<YAML::Node> uri_nodes;
    std::vector<std::string> uri_keys;
    if (const auto* e = m->find("server_uri")) {
        std::vector<std::string> raw;
        std::vector<YAML::Node> nodes;
        const std::size_t errors_before = errors_.size();
        if (read_string_list(*m, "server_uri", raw, &nodes)) {
            for (std::size_t i = 0; i < raw.size(); ++i) {
                std::string key = m->key("server_uri");
                if (e->value.IsSequence()) key += "[" + std::to_string(i) + "]";
                Sv rest = raw[i];
                while (!rest.empty()) {
                    auto start = rest.find_first_not_of(" \t");
                    if (start == Sv::npos) break;
                    rest.remove_prefix(start);
                    Sv one = rest.substr(0, rest.find_first_of(" \t"));
                    rest.remove_prefix(one.size());
                    UriInfo info;
                    std::string why = check_ldap_uri(one, info);
                    if (!why.empty()) {
                        error(nodes[i], key, why);
                        continue;
                    }
                    ldap.server_uri.emplace_back(one);
                    uris.push_back(info);
                    uri_nodes.push_back(nodes[i]);
                    uri_keys.push_back(key);
                }
            }
            if (ldap.server_uri.empty() && errors_.size() == errors_before)
                error(e->value, m->key("server_uri"), "expected at least one ldaps:// or ldap:// URI");
        }
    } else if (!m->has("dns_srv")) {
        missing(*m, "server_uri", "the directory's URI(s), e.g. ldaps://ad.example.com, or dns_srv");
    }
    // dns_srv: the targets of an SRV record (RFC 2782), tried before server_uri.
    if (read_string(*m, "dns_srv", ldap.dns_srv)) {
        if (std::string why = check_srv_name(ldap.dns_srv); !why.empty()) {
            error(m->find("dns_srv")->value, m->key("dns_srv"), why + ", found " + quoted(ldap.dns_srv));
            ldap.dns_srv.clear();
        }
    }

    read_bool(*m, "start_tls", ldap.start_tls);
    read_bool(*m, "referrals", ldap.referrals);
    read_bool(*m, "allow_cleartext_password", ldap.allow_cleartext_password);

    if (auto tls = open_child(*m, "tls", kTlsKeys, Unknown::error)) {
        if (read_abs_path(*tls, "ca_file", ldap.tls.ca_file))
            check_readable_file(*tls, "ca_file", ldap.tls.ca_file);
        if (read_bool(*tls, "require_cert", ldap.tls.require_cert) && !ldap.tls.require_cert)
            warning(tls->find("require_cert")->value, tls->key("require_cert"),
                    "certificate checks are off: anyone on the network path can pose as the "
                    "directory and collect user passwords");
    }

    // Clear-text rule (DESIGN.md §5): user passwords never cross a network unencrypted unless
    // the file says so.
    for (std::size_t i = 0; i < uris.size(); ++i) {
        const UriInfo& u = uris[i];
        if (u.scheme == "ldap" && !ldap.start_tls && !is_loopback_host(u.host)) {
            if (ldap.allow_cleartext_password) {
                warning(uri_nodes[i], uri_keys[i],
                        "user passwords cross the network to " + quoted(u.host) +
                            " in clear text (allow_cleartext_password: true)");
            } else {
                error(uri_nodes[i], uri_keys[i],
                      "user passwords would cross the network in clear text to " + quoted(u.host) +
                          "; use ldaps://, start_tls: true, or set allow_cleartext_password: true");
            }
        }
        if (u.scheme == "ldaps" && ldap.start_tls)
            warning(uri_nodes[i], uri_keys[i],
                    "start_tls applies to ldap:// URIs only; ldaps:// is TLS from the first byte");
    }
    // SRV targets are host names known only at run time: plain ldap:// to them counts as the
    // network.
    if (!ldap.dns_srv.empty() && srv_scheme(ldap.dns_srv) == "ldap" && !ldap.start_tls) {
        const YAML::Node& at = m->find("dns_srv")->value;
        if (ldap.allow_cleartext_password)
            warning(at, m->key("dns_srv"),
                    "user passwords cross the network to the SRV targets in clear text "
                    "(allow_cleartext_password: true)");
        else
            error(at, m->key("dns_srv"),
                  "the targets of " + quoted(ldap.dns_srv) + " are reached with ldap://, so user passwords would "
                  "cross the network in clear text; use start_tls: true, an _ldaps._tcp record, or set "
                  "allow_cleartext_password: true");
    }

    // Service account.
    const auto* bdn = m->find("bind_dn");
    if (read_string(*m, "bind_dn", ldap.bind_dn)) {
        // AD also binds as user@domain or DOMAIN\user (the CVAT guide shows the first).
        bool ad_name = ldap.bind_dn.find('=') == std::string::npos &&
                       (ldap.bind_dn.find('@') != std::string::npos ||
                        ldap.bind_dn.find('\\') != std::string::npos);
        if (!ad_name) check_dn(bdn->value, m->key("bind_dn"), ldap.bind_dn, nullptr);
    }
    const auto* bpw = m->find("bind_password");
    const auto* bpf = m->find("bind_password_file");
    if (bpw && bpf) {
        error(bpf->key, m->key("bind_password_file"),
              "both bind_password (line " + std::to_string(bpw->key.Mark().line + 1) +
                  ") and bind_password_file are given: expected only one");
    } else if (bpw) {
        inline_secret(*m, "bind_password", "bind_password_file", ldap.bind_password);
    } else if (bpf) {
        if (read_abs_path(*m, "bind_password_file", ldap.bind_password_file))
            read_secret_file(*m, "bind_password_file", ldap.bind_password_file, ldap.bind_password);
    }
    if (bdn && !bpw && !bpf)
        error(m->node, m->key("bind_password"),
              "required key missing: bind_dn is given, so expected bind_password or "
              "bind_password_file (a DN without a password is an unauthenticated bind)");
    if (!bdn && (bpw || bpf))
        error((bpw ? bpw : bpf)->key, m->key("bind_dn"),
              "a bind password is given without bind_dn: expected the service account's DN");

    if (m->has("user_search"))
        load_search(*m, "user_search", ldap.user_search, true);
    else
        missing(*m, "user_search", "a mapping {base, scope, filter} (AUTH_LDAP_USER_SEARCH)");
    bool have_group_search = m->has("group_search");
    if (have_group_search) load_search(*m, "group_search", ldap.group_search, false);

    // group_type: this project's names, or django-auth-ldap's class names.
    if (const auto* e = m->find("group_type")) {
        std::string raw;
        if (read_string(*m, "group_type", raw)) {
            Sv t = raw;
            if (starts_with(t, "django_auth_ldap.config.")) t.remove_prefix(24);
            if (ends_with(t, "()")) t.remove_suffix(2);
            struct Name {
                Sv name;
                GroupType type;
            };
            static constexpr Name kNames[] = {
                {"active_directory", GroupType::active_directory},
                {"nested_active_directory", GroupType::nested_active_directory},
                {"group_of_names", GroupType::group_of_names},
                {"nested_group_of_names", GroupType::nested_group_of_names},
                {"posix_group", GroupType::posix_group},
                {"member_of", GroupType::member_of},
                {"ActiveDirectoryGroupType", GroupType::active_directory},
                {"NestedActiveDirectoryGroupType", GroupType::nested_active_directory},
                {"GroupOfNamesType", GroupType::group_of_names},
                {"NestedGroupOfNamesType", GroupType::nested_group_of_names},
                {"PosixGroupType", GroupType::posix_group},
                {"MemberDNGroupType", GroupType::group_of_names},
                {"NestedMemberDNGroupType", GroupType::nested_group_of_names},
            };
            bool found = false;
            for (const auto& n : kNames) {
                if (t == n.name) {
                    ldap.group_type = n.type;
                    found = true;
                    if (starts_with(t, "MemberDN") || starts_with(t, "NestedMemberDN"))
                        warning(e->value, m->key("group_type"),
                                std::string(t) + " is read as " + group_type_name(n.type) +
                                    ": groups list their members' DNs in `member`");
                }
            }
            if (!found) {
                std::string hint;
                if (t.find("UniqueNames") != Sv::npos || t.find("OrganizationalRole") != Sv::npos ||
                    t.find("NIS") != Sv::npos)
                    hint = " (" + std::string(t) + " is not supported; member_of works where the "
                           "directory keeps memberOf)";
                error(e->value, m->key("group_type"),
                      "expected one of active_directory, nested_active_directory, group_of_names, "
                      "nested_group_of_names, posix_group, member_of (or the Django class name), "
                      "found " + quoted(raw) + hint);
            }
        }
    }

    read_string_map(*m, "user_attr_map", ldap.user_attr_map, kAttrMapKeys, Unknown::error);

    read_role_lists(*m, "role_groups", ldap.role_groups, true);
    read_enum<proto::Role>(*m, "default_role",
                           {{"admin", proto::Role::admin}, {"user", proto::Role::user},
                            {"worker", proto::Role::worker}, {"none", proto::Role::none}},
                           "one of admin, user, worker, none", ldap.default_role);
    bool any_role_group = false;
    for (const auto& v : ldap.role_groups) any_role_group = any_role_group || !v.empty();
    if (any_role_group && ldap.group_type != GroupType::member_of && !have_group_search)
        error(m->node, m->key("group_search"),
              std::string("required key missing: role_groups are given and group_type is ") +
                  group_type_name(ldap.group_type) +
                  ", so expected a group_search {base, scope, filter} to find the user's groups "
                  "(or group_type: member_of)");
    if (!any_role_group && ldap.default_role == proto::Role::none && m->has("default_role"))
        warning(m->find("default_role")->value, m->key("default_role"),
                "default_role is none and no role_groups are given: every LDAP user will be refused");

    read_seconds(*m, "connect_timeout", 0.1, 300, ldap.connect_timeout_ms);
    read_seconds(*m, "timeout", 0.1, 3600, ldap.timeout_ms);
    read_int_as(*m, "pool_size", 1, 256, ldap.pool_size);
    read_int_as(*m, "max_nesting", 0, 64, ldap.max_nesting);
    read_int_as(*m, "max_groups", 1, 65536, ldap.max_groups);
    read_duration(*m, "group_cache_ttl", 0, 86400, ldap.group_cache_ttl_s);
    read_bool(*m, "group_mirror", ldap.group_mirror);
}

void Loader::load_idp(const YAML::Node& n, std::size_t index, IdentityProvider& idp,
                      SelectionMode mode) {
    const std::string path = "sso.identity_providers[" + std::to_string(index) + "]";
    std::vector<Sv> all(std::begin(kIdpCommonKeys), std::end(kIdpCommonKeys));
    all.insert(all.end(), std::begin(kOidcKeys), std::end(kOidcKeys));
    all.insert(all.end(), std::begin(kSamlKeys), std::end(kSamlKeys));
    auto m = open_map(n, path, all, Unknown::warning_cvat);
    if (!m) return;

    if (read_string(*m, "id", idp.id)) {
        // Used in CVAT's callback URLs: /api/auth/oidc/<id>/login/callback/
        for (char c : idp.id) {
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == '~')) {
                error(m->find("id")->value, m->key("id"),
                      "expected a URL-safe identifier (letters, digits, - _ . ~), found " + quoted(idp.id));
                break;
            }
        }
    } else if (!m->has("id")) {
        missing(*m, "id", "a unique, URL-safe identifier such as company-oidc");
    }
    if (!read_string(*m, "name", idp.name) && !m->has("name"))
        missing(*m, "name", "a human-readable name for the login page");
    bool have_protocol = read_enum<Protocol>(*m, "protocol",
                                             {{"OIDC", Protocol::oidc}, {"SAML", Protocol::saml}},
                                             "OIDC or SAML (in capitals, as CVAT spells them)",
                                             idp.protocol);
    if (!m->has("protocol")) missing(*m, "protocol", "OIDC or SAML");
    read_int_as(*m, "weight", -1000000, 1000000, idp.weight);
    if (read_string(*m, "email_domain", idp.email_domain)) {
        const std::string& d = idp.email_domain;
        if (d.find('@') != std::string::npos || d.find("://") != std::string::npos || !valid_host(d))
            error(m->find("email_domain")->value, m->key("email_domain"),
                  "expected a domain like company.com (no @, no scheme), found " + quoted(d));
    } else if (!m->has("email_domain") && mode == SelectionMode::email_address) {
        warning(m->node, m->key("email_domain"),
                "selection_mode is email_address but this identity provider has no email_domain: "
                "it can never be chosen by a user's email address");
    }
    if (!have_protocol) return;

    // Keys of the other protocol are ignored (CVAT ignores them too), with a word.
    Keys other = idp.protocol == Protocol::oidc ? Keys(kSamlKeys) : Keys(kOidcKeys);
    for (Sv k : other)
        if (const auto* e = m->find(k);
            e && std::find(std::begin(kSharedIdpKeys), std::end(kSharedIdpKeys), k) == std::end(kSharedIdpKeys))
            warning(e->key, m->key(k),
                    std::string("a ") + (idp.protocol == Protocol::oidc ? "SAML" : "OIDC") +
                        " setting; ignored for a " +
                        (idp.protocol == Protocol::oidc ? "OIDC" : "SAML") + " identity provider");

    if (idp.protocol == Protocol::oidc) {
        read_bool(*m, "allow_insecure_http", idp.allow_insecure_http);
        if (read_string(*m, "server_url", idp.server_url)) {
            std::string scheme, host;
            std::string why = check_http_url(idp.server_url, scheme, host);
            const YAML::Node& at = m->find("server_url")->value;
            if (!why.empty()) {
                error(at, m->key("server_url"), why);
            } else if (scheme == "http" && !is_loopback_host(host) && !idp.allow_insecure_http) {
                error(at, m->key("server_url"),
                      "expected an https:// URL: over http:// anyone on the path can swap the "
                      "provider's keys and forge logins (set allow_insecure_http: true to accept "
                      "it anyway), found " + quoted(idp.server_url));
            }
            constexpr Sv kWellKnown = "/.well-known/openid-configuration";
            Sv u = idp.server_url;
            if (ends_with(u, kWellKnown)) u.remove_suffix(kWellKnown.size());
            while (ends_with(u, "/")) u.remove_suffix(1);
            idp.server_url = std::string(u);
        } else if (!m->has("server_url")) {
            missing(*m, "server_url", "the provider's URL; <server_url>/.well-known/openid-configuration must exist");
        }
        if (!read_string(*m, "client_id", idp.client_id) && !m->has("client_id"))
            missing(*m, "client_id", "the client ID registered at the provider");
        const auto* cs = m->find("client_secret");
        const auto* csf = m->find("client_secret_file");
        if (cs && csf) {
            error(csf->key, m->key("client_secret_file"),
                  "both client_secret (line " + std::to_string(cs->key.Mark().line + 1) +
                      ") and client_secret_file are given: expected only one");
        } else if (cs) {
            inline_secret(*m, "client_secret", "client_secret_file", idp.client_secret);
        } else if (csf) {
            if (read_abs_path(*m, "client_secret_file", idp.client_secret_file))
                read_secret_file(*m, "client_secret_file", idp.client_secret_file, idp.client_secret);
        } else {
            missing(*m, "client_secret", "the client secret (or client_secret_file: a path to it)");
        }
        idp.token_auth_method_given = read_enum<TokenAuthMethod>(
            *m, "token_auth_method",
            {{"client_secret_post", TokenAuthMethod::client_secret_post},
             {"client_secret_basic", TokenAuthMethod::client_secret_basic}},
            "client_secret_post or client_secret_basic", idp.token_auth_method);
        if (read_abs_path(*m, "ca_file", idp.ca_file)) check_readable_file(*m, "ca_file", idp.ca_file);
        read_string(*m, "role_claim", idp.role_claim);
        read_role_lists(*m, "role_values", idp.role_values, false);
        if (m->has("role_values") && !m->has("role_claim"))
            error(m->node, m->key("role_claim"),
                  "required key missing: role_values are given, so expected role_claim (the claim "
                  "holding them, e.g. groups)");
        std::vector<std::string> scopes;
        if (const auto* e = m->find("scopes"); e && read_string_list(*m, "scopes", scopes)) {
            // One string may hold several scopes separated by spaces, as in OAuth's scope=.
            for (const auto& s : scopes) {
                Sv rest = s;
                while (!rest.empty()) {
                    auto start = rest.find_first_not_of(' ');
                    if (start == Sv::npos) break;
                    rest.remove_prefix(start);
                    Sv one = rest.substr(0, rest.find(' '));
                    rest.remove_prefix(one.size());
                    idp.scopes.emplace_back(one);
                }
            }
            if (std::find(idp.scopes.begin(), idp.scopes.end(), "openid") == idp.scopes.end())
                error(e->value, m->key("scopes"),
                      "expected the scopes to include openid (OpenID Connect needs it), found " +
                          quoted(join(idp.scopes, " ")));
        }
        read_string(*m, "username_claim", idp.username_claim);
        read_enum<proto::Role>(*m, "default_role",
                               {{"admin", proto::Role::admin}, {"user", proto::Role::user},
                                {"worker", proto::Role::worker}, {"none", proto::Role::none}},
                               "one of admin, user, worker, none", idp.default_role);
        bool any_role_value = false;
        for (const auto& v : idp.role_values) any_role_value = any_role_value || !v.empty();
        if (!any_role_value && idp.default_role == proto::Role::none && m->has("default_role"))
            warning(m->find("default_role")->value, m->key("default_role"),
                    "default_role is none and no role_values are given: every user of this "
                    "identity provider will be refused");
    } else {
        if (!read_string(*m, "entity_id", idp.entity_id) && !m->has("entity_id"))
            missing(*m, "entity_id", "the IdP's entity ID, as in its SAML configuration");
        const bool has_meta = m->has("metadata_url");
        const bool has_cert = m->has("x509_cert");
        const bool has_sso = m->has("sso_url");
        if (read_string(*m, "metadata_url", idp.metadata_url)) {
            std::string scheme, host;
            std::string why = check_http_url(idp.metadata_url, scheme, host);
            if (!why.empty()) error(m->find("metadata_url")->value, m->key("metadata_url"), why);
        }
        if (read_string(*m, "sso_url", idp.sso_url)) {
            std::string scheme, host;
            std::string why = check_http_url(idp.sso_url, scheme, host);
            if (!why.empty()) error(m->find("sso_url")->value, m->key("sso_url"), why);
        }
        if (read_string(*m, "x509_cert", idp.x509_cert) && !idp.x509_cert.empty() && idp.x509_cert[0] == '/') {
            check_readable_file(*m, "x509_cert", idp.x509_cert);  // extension: a path to the PEM
        } else if (!idp.x509_cert.empty() && idp.x509_cert.find("BEGIN CERTIFICATE") == std::string::npos) {
            // CVAT takes the certificate's base64 body alone (python3-saml's x509cert).
            bool base64 = true;
            for (char c : idp.x509_cert)
                base64 = base64 && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                    c == '+' || c == '/' || c == '=' || c == '\n' || c == '\r' || c == ' ');
            if (!base64)
                error(m->find("x509_cert")->value, m->key("x509_cert"),
                      "expected a PEM certificate, its base64 body (as CVAT takes it), or an absolute path to a "
                      "PEM file");
        }
        const std::string rule =
            "a SAML identity provider needs metadata_url, or both x509_cert and sso_url";
        if (!has_meta && !has_cert && !has_sso) {
            error(m->node, m->key("metadata_url"), "required key missing: " + rule);
        } else if (!has_meta && has_cert != has_sso) {
            Sv absent = has_cert ? "sso_url" : "x509_cert";
            error(m->node, m->key(absent),
                  "required key missing: " + rule + "; " + std::string(has_cert ? "x509_cert" : "sso_url") +
                      " is given without " + std::string(absent));
        } else if (has_meta && (has_cert || has_sso)) {
            warning(m->find("metadata_url")->key, m->key("metadata_url"),
                    "give metadata_url, or x509_cert and sso_url, not both (CVAT's docs)");
        }
        read_bool(*m, "allow_insecure_http", idp.allow_insecure_http);
        // A password goes to the ECP endpoint, and keys come from the metadata: https://, or
        // http:// to loopback, unless allow_insecure_http.
        for (Sv k : {Sv("metadata_url"), Sv("sso_url"), Sv("ecp_url")}) {
            const auto* e = m->find(k);
            if (!e || !e->value.IsScalar()) continue;
            std::string url = e->value.Scalar(), scheme, host;
            if (k == "ecp_url") {
                if (std::string why = check_http_url(url, scheme, host); !why.empty()) {
                    error(e->value, m->key(k), why);
                    continue;
                }
                idp.ecp_url = url;
            } else if (check_http_url(url, scheme, host).empty() == false) {
                continue;  // reported above
            }
            if (scheme == "http" && !is_loopback_host(host) && !idp.allow_insecure_http)
                error(e->value, m->key(k),
                      "expected an https:// URL: over http:// anyone on the path can swap the IdP's keys or read "
                      "passwords (set allow_insecure_http: true to accept it anyway), found " + quoted(url));
        }
        for (Sv k : {Sv("sp_entity_id"), Sv("acs_url")}) {
            std::string& out = k == "sp_entity_id" ? idp.sp_entity_id : idp.acs_url;
            if (read_string(*m, k, out)) {
                std::string scheme, host;
                if (std::string why = check_http_url(out, scheme, host); !why.empty() && k == "acs_url")
                    error(m->find(k)->value, m->key(k), why);
            }
        }
        read_string(*m, "role_attribute", idp.role_attribute);
        read_role_lists(*m, "role_values", idp.role_values, false);
        if (m->has("role_values") && !m->has("role_attribute"))
            error(m->node, m->key("role_attribute"),
                  "required key missing: role_values are given, so expected role_attribute (the SAML "
                  "attribute holding them, e.g. groups)");
        read_enum<proto::Role>(*m, "default_role",
                               {{"admin", proto::Role::admin}, {"user", proto::Role::user},
                                {"worker", proto::Role::worker}, {"none", proto::Role::none}},
                               "one of admin, user, worker, none", idp.default_role);
        if (read_abs_path(*m, "ca_file", idp.ca_file)) check_readable_file(*m, "ca_file", idp.ca_file);
        if (read_abs_path(*m, "metadata_signing_cert", idp.metadata_signing_cert))
            check_readable_file(*m, "metadata_signing_cert", idp.metadata_signing_cert);
        if (m->has("metadata_signing_cert") && !has_meta)
            warning(m->find("metadata_signing_cert")->key, m->key("metadata_signing_cert"),
                    "no metadata_url: there is no metadata whose signature to check");
        read_bool(*m, "allow_sha1", idp.allow_sha1);
        if (idp.allow_sha1)
            warning(m->find("allow_sha1")->value, m->key("allow_sha1"),
                    "SHA-1 signatures are accepted from this identity provider (collisions are practical)");
        if (m->has("attribute_mapping"))
            read_string_map(*m, "attribute_mapping", idp.attribute_mapping, kSamlAttributes,
                            Unknown::warning_cvat);
        else
            missing(*m, "attribute_mapping",
                    "a mapping of uid, username, email, first_name, last_name, email_verified to "
                    "the IdP's attribute names");
    }
}

void Loader::load_sso(const Map& top, SsoConfig& sso) {
    auto m = open_child(top, "sso", kSsoKeys, Unknown::warning_cvat);
    if (!m) return;
    sso.configured = true;
    read_bool(*m, "enabled", sso.enabled);
    read_bool(*m, "enable_pkce", sso.enable_pkce);
    read_enum<SelectionMode>(*m, "selection_mode",
                             {{"email_address", SelectionMode::email_address},
                              {"lowest_weight", SelectionMode::lowest_weight}},
                             "email_address or lowest_weight", sso.selection_mode);
    const auto* list = m->find("identity_providers");
    if (!list) {
        if (sso.enabled)
            missing(*m, "identity_providers", "a list of identity providers (sso is enabled)");
        return;
    }
    if (!list->value.IsSequence()) {
        error(list->value, m->key("identity_providers"),
              "expected a list of identity providers (lines starting with '- '), found " +
                  describe(list->value));
        return;
    }
    if (list->value.size() > kMaxIdentityProviders) {
        error(list->value, m->key("identity_providers"),
              "expected at most " + std::to_string(kMaxIdentityProviders) +
                  " identity providers, found " + std::to_string(list->value.size()));
        return;
    }
    if (sso.enabled && list->value.size() == 0)
        error(list->value, m->key("identity_providers"),
              "sso is enabled: expected at least one identity provider, found an empty list");

    std::map<std::string, std::size_t> ids;
    std::size_t i = 0;
    for (const auto& item : list->value) {
        IdentityProvider idp;
        load_idp(item, i, idp, sso.selection_mode);
        if (!idp.id.empty()) {
            auto [it, fresh] = ids.emplace(idp.id, i);
            if (!fresh) {
                // (YAML::Node's operator= rebinds the referenced node, so no assignment here.)
                auto id_node = [&item]() -> YAML::Node {
                    for (auto kv = item.begin(); kv != item.end(); ++kv)
                        if (kv->first.IsScalar() && kv->first.Scalar() == "id") return kv->second;
                    return item;
                };
                error(id_node(), "sso.identity_providers[" + std::to_string(i) + "].id",
                      "duplicate id " + quoted(idp.id) + ": already used by sso.identity_providers[" +
                          std::to_string(it->second) + "]; ids must be unique");
            }
        }
        sso.identity_providers.push_back(std::move(idp));
        ++i;
    }
    if (sso.enabled && sso.selection_mode == SelectionMode::email_address &&
        !sso.identity_providers.empty()) {
        bool any = false;
        for (const auto& idp : sso.identity_providers) any = any || !idp.email_domain.empty();
        if (!any)
            error(list->value, m->key("identity_providers"),
                  "selection_mode is email_address but no identity provider has an email_domain: "
                  "expected email_domain on each provider, or selection_mode: lowest_weight");
    }
}

void Loader::load_helper(const Map& top, HelperSettings& h) {
    auto m = open_child(top, "helper", kHelperKeys, Unknown::error);
    if (!m) return;
    if (read_abs_path(*m, "socket", h.socket) && h.socket.size() >= sizeof(sockaddr_un::sun_path)) {
        error(m->find("socket")->value, m->key("socket"),
              "expected a socket path shorter than " + std::to_string(sizeof(sockaddr_un::sun_path)) +
                  " bytes, found " + std::to_string(h.socket.size()) + " bytes");
    }
    if (read_string(*m, "user", h.user)) {
        // Checked for form only: resolving it here could loop through nss_cvat.
        bool ok = h.user.size() <= 32 && !(h.user[0] >= '0' && h.user[0] <= '9') && h.user[0] != '-';
        for (char c : h.user)
            ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '_' || c == '-' || c == '.');
        if (!ok)
            error(m->find("user")->value, m->key("user"),
                  "expected a system user name such as cvat-auth, found " + quoted(h.user));
    }
    if (const auto* e = m->find("log_level")) {
        if (!e->value.IsScalar() || !log::parse_level(e->value.Scalar(), h.log_level))
            error(e->value, m->key("log_level"),
                  "expected one of error, warning, info, debug, found " + describe(e->value));
    }
    read_int_as(*m, "workers", 1, 256, h.workers);
    read_int_as(*m, "max_connections", 1, 65536, h.max_connections);
    read_int_as(*m, "max_connections_per_uid", 0, 65536, h.max_connections_per_uid);
    read_seconds(*m, "client_timeout", 0.1, 600, h.client_timeout_ms);
    read_abs_path(*m, "cache_dir", h.cache_dir);
    if (const auto* e = m->find("default_backend")) {
        const std::string v = e->value.IsScalar() ? e->value.Scalar() : std::string();
        if (v == "ldap") h.default_backend = DefaultBackend::ldap;
        else if (v == "sso") h.default_backend = DefaultBackend::sso;
        else error(e->value, m->key("default_backend"), "expected ldap or sso, found " + describe(e->value));
    }
    read_seconds(*m, "verdict_ttl", 0, 3600, h.verdict_ttl_ms);
    if (read_string(*m, "cvat_base_url", h.cvat_base_url)) {
        std::string scheme, host;
        if (std::string why = check_http_url(h.cvat_base_url, scheme, host); !why.empty())
            error(m->find("cvat_base_url")->value, m->key("cvat_base_url"), why);
    }
    if (auto off = open_child(*m, "offline", kOfflineKeys, Unknown::error)) {
        read_bool(*off, "enabled", h.offline.enabled);
        read_duration(*off, "max_age", 1, 366 * 86400, h.offline.max_age_s);
    }
    if (auto rl = open_child(*m, "rate_limit", kRateLimitKeys, Unknown::error)) {
        ThrottleSettings& t = h.rate_limit;
        for (auto [key, rule] : {std::pair<Sv, ThrottleRule*>{"per_user", &t.per_user}, {"per_peer", &t.per_peer}}) {
            auto r = open_child(*rl, key, kRateRuleKeys, Unknown::error);
            if (!r) continue;
            read_int_as(*r, "failures", 0, 1000, rule->failures);
            int window_ms = 0;
            if (read_seconds(*r, "window", 1, 86400, window_ms)) rule->window_ms = window_ms;
        }
        int ms = 0;
        if (read_seconds(*rl, "delay", 0.01, 60, ms)) t.delay_ms = ms;
        // Below pam_cvat's default timeout (10 s) by default; a larger cap needs timeout= too.
        if (read_seconds(*rl, "max_delay", 0.01, 300, ms)) t.max_delay_ms = ms;
        if (t.delay_ms > t.max_delay_ms) {
            const auto* e = rl->find(rl->find("max_delay") ? "max_delay" : "delay");
            auto secs = [](std::int64_t millis) {
                char buf[32];
                std::snprintf(buf, sizeof buf, "%g", static_cast<double>(millis) / 1000.0);
                return std::string(buf);
            };
            error(e->value, rl->key(rl->find("max_delay") ? "max_delay" : "delay"),
                  "expected delay <= max_delay, found delay " + secs(t.delay_ms) + " s and max_delay " +
                      secs(t.max_delay_ms) + " s");
        }
        read_int_as(*rl, "max_entries", 16, 10'000'000, t.max_entries);
    }
}

namespace {

// A group name tools accept everywhere (useradd's NAME_REGEX, with capitals allowed).
bool portable_group_name(Sv name) {
    if (name.empty() || name.size() > 32 || name[0] == '-' || (name[0] >= '0' && name[0] <= '9')) return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    return true;
}

}  // namespace

namespace {

void role_group_defaults(NssSettings& nss) {
    const char* names[] = {"", "cvat-worker", "cvat-user", "cvat-admin"};
    for (std::size_t r = 1; r < nss.role_groups.size(); ++r) {
        RoleGroup& g = nss.role_groups[r];
        if (g.name.empty()) g.name = names[r];
        if (g.gid == 0) g.gid = nss.id_min + static_cast<std::uint32_t>(3 - r);  // admin id_min, user +1, worker +2
    }
}

}  // namespace

void Loader::load_nss(const Map& top, NssSettings& nss) {
    auto m = open_child(top, "nss", kNssKeys, Unknown::error);
    if (!m) {
        role_group_defaults(nss);
        return;
    }
    // Above the static system range (Debian's 0-999) and below 2^31: tools that hold IDs in
    // a signed int break past it (systemd's UIDS-GIDS notes).
    constexpr long long kLo = 1001, kHi = 2147483646;
    bool have_min = read_int_as(*m, "id_min", kLo, kHi, nss.id_min);
    bool have_max = read_int_as(*m, "id_max", kLo, kHi, nss.id_max);
    if ((have_min || have_max) && nss.id_min >= nss.id_max) {
        const auto* e = m->find(have_max ? "id_max" : "id_min");
        error(e->value, m->key(have_max ? "id_max" : "id_min"),
              "expected id_min < id_max, found " + std::to_string(nss.id_min) + " .. " +
                  std::to_string(nss.id_max));
    } else if (nss.id_min <= 65535 && nss.id_max >= 65534) {
        error(m->node, m->key("id_min"),
              "the ID range " + std::to_string(nss.id_min) + ".." + std::to_string(nss.id_max) +
                  " contains 65534 (nobody) or 65535 (16-bit -1): expected a range clear of them");
    } else if (nss.id_min <= 65519 && nss.id_max >= 61184) {
        warning(m->node, m->key("id_min"),
                "the ID range overlaps systemd's DynamicUser range 61184..65519");
    }
    if (read_string(*m, "home", nss.home)) {
        if (nss.home.find("%u") == std::string::npos || nss.home.front() != '/')
            error(m->find("home")->value, m->key("home"),
                  "expected an absolute path template containing %u (the user name), e.g. /home/%u, "
                  "found " + quoted(nss.home));
    }
    read_abs_path(*m, "shell", nss.shell);
    read_duration(*m, "cache_ttl", 1, 30 * 86400, nss.cache_ttl_s);
    read_duration(*m, "negative_ttl", 0, 86400, nss.negative_ttl_s);
    read_int_as(*m, "refresh_percent", 0, 99, nss.refresh_percent);
    read_bool(*m, "enumerate", nss.enumerate);
    read_bool(*m, "directory_groups", nss.directory_groups);
    read_bool(*m, "provisional_users", nss.provisional_users);
    if (auto groups = open_child(*m, "role_groups", kRoleKeys, Unknown::error)) {
        for (const auto& [role_name, entry] : groups->entries) {
            proto::Role role = proto::Role::none;
            proto::parse_role(role_name, role);
            RoleGroup& g = nss.role_groups[static_cast<std::size_t>(role)];
            // A bare name, or {name: ..., gid: ...}.
            if (entry.value.IsScalar()) {
                if (read_string(*groups, role_name, g.name) && !portable_group_name(g.name))
                    error(entry.value, groups->key(role_name),
                          "expected a group name of letters, digits, '_', '-', '.' (at most 32, not starting with "
                          "a digit or '-'), found " + quoted(g.name));
                continue;
            }
            auto one = open_child(*groups, role_name, kRoleGroupKeys, Unknown::error);
            if (!one) continue;
            if (read_string(*one, "name", g.name) && !portable_group_name(g.name))
                error(one->find("name")->value, one->key("name"),
                      "expected a group name of letters, digits, '_', '-', '.' (at most 32, not starting with a "
                      "digit or '-'), found " + quoted(g.name));
            read_int_as(*one, "gid", 1000, 2147483646, g.gid);
        }
    }
    role_group_defaults(nss);
    for (std::size_t a = 1; a < nss.role_groups.size(); ++a)
        for (std::size_t b = a + 1; b < nss.role_groups.size(); ++b)
            if (nss.role_groups[a].name == nss.role_groups[b].name || nss.role_groups[a].gid == nss.role_groups[b].gid)
                error(m->node, m->key("role_groups"),
                      std::string("expected a distinct name and gid for each role's group; ") +
                          proto::role_name(static_cast<proto::Role>(a)) + " and " +
                          proto::role_name(static_cast<proto::Role>(b)) + " share " +
                          (nss.role_groups[a].name == nss.role_groups[b].name
                               ? "the name " + nss.role_groups[a].name
                               : "the gid " + std::to_string(nss.role_groups[a].gid)));
}

Result<Config> Loader::run() {
    // Read the file ourselves: one open, mode from the same fd, bounded size.
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) return fail(ErrorCode::config, path_ + ": cannot open: " + std::strerror(errno));
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return fail(ErrorCode::config, path_ + ": cannot stat: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(ErrorCode::config, path_ + ": not a regular file");
    if (st.st_size > kMaxConfigBytes)
        return fail(ErrorCode::config, path_ + ": too large (" + std::to_string(st.st_size) +
                                           " bytes, at most " + std::to_string(kMaxConfigBytes) + ")");
    file_mode_ = st.st_mode;
    // Sized to the file (and one byte more, to see a file that grew), up to the cap: not a
    // zeroed and wiped megabyte per load.
    const std::size_t cap = static_cast<std::size_t>(kMaxConfigBytes) + 1;
    std::vector<char, ZeroingAllocator<char>> text(std::min(cap, static_cast<std::size_t>(st.st_size) + 1));
    std::size_t got = 0;
    for (;;) {
        if (got == text.size()) {
            if (text.size() == cap) break;
            text.resize(std::min(cap, text.size() * 2));
        }
        ssize_t r = ::read(fd.get(), text.data() + got, text.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail(ErrorCode::config, path_ + ": cannot read: " + std::strerror(errno));
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    if (got > static_cast<std::size_t>(kMaxConfigBytes)) return fail(ErrorCode::config, path_ + ": too large");

    // yaml-cpp takes a NUL byte for the end of the stream and drops the rest of the file
    // without a word: a damaged file must not lose its second half (and its keys) silently.
    if (const void* nul = std::memchr(text.data(), '\0', got)) {
        const auto at = static_cast<std::size_t>(static_cast<const char*>(nul) - text.data());
        YAML::Mark m;
        m.line = static_cast<int>(std::count(text.data(), text.data() + at, '\n'));
        const auto line_start = std::string_view(text.data(), at).rfind('\n');
        m.column = static_cast<int>(line_start == std::string_view::npos ? at : at - line_start - 1);
        return fail(ErrorCode::config,
                    make(m, "(file)", "a NUL byte: the file is binary or damaged, not YAML text").text);
    }

    Documents docs;
    try {
        // yaml-cpp copies into its own stream; the copy here is wiped by `text`'s allocator.
        std::string copy(text.data(), got);
        try {
            docs = load_documents(copy);
        } catch (...) {
            explicit_bzero(copy.data(), copy.size());
            throw;
        }
        explicit_bzero(copy.data(), copy.size());
    } catch (const YAML::Exception& e) {
        return fail(ErrorCode::config, make(e.mark, "yaml", "syntax error: " + log_safe(e.msg)).text);
    }

    Config config;
    config.path = path_;
    if (options_.check_permissions && (st.st_mode & 0002) != 0)
        errors_.push_back(make(YAML::Mark(), "(file)",
                               "writable by every user (mode " + mode_text(st.st_mode) +
                                   "): anyone could grant themselves a role; chmod o-w"));
    if (docs.count > 1) {
        errors_.push_back(make(docs.second, "yaml", "expected one YAML document, found a second"));
    }
    if (docs.count == 0 || docs.first.IsNull()) {
        errors_.push_back(make(YAML::Mark(), "(top level)",
                               "the file is empty: expected a mapping with sso: and/or ldap:"));
    } else if (auto top = open_map(docs.first, "", kTopKeys, Unknown::error)) {
        if (!top->has("sso") && !top->has("ldap"))
            error(top->node, "(top level)",
                  "expected an sso: or an ldap: section (or both), found neither");
        load_sso(*top, config.sso);
        load_ldap(*top, config.ldap);
        load_helper(*top, config.helper);
        load_nss(*top, config.nss);
    }

    // yaml-cpp keeps each scalar in its node; wipe the secrets' copies (the parser's own
    // temporaries are beyond reach: *_file is the way for secrets that matter).
    for (const auto& n : secret_nodes_) {
        auto& scalar = const_cast<std::string&>(n.Scalar());
        explicit_bzero(scalar.data(), scalar.size());
    }
    auto by_position = [](const Problem& a, const Problem& b) {
        return a.line != b.line ? a.line < b.line : a.col < b.col;
    };
    std::stable_sort(warnings_.begin(), warnings_.end(), by_position);
    for (auto& w : warnings_) config.warnings.push_back(std::move(w.text));
    if (!errors_.empty()) {
        std::stable_sort(errors_.begin(), errors_.end(), by_position);
        std::string detail;
        for (const auto& e : errors_) {
            if (!detail.empty()) detail += '\n';
            detail += e.text;
        }
        return fail(ErrorCode::config, std::move(detail));
    }
    return config;
}

}  // namespace

Result<Config> load_config(const std::string& path, const LoadOptions& options) {
    try {
        return Loader(path, options).run();
    } catch (const YAML::Exception& e) {
        return fail(ErrorCode::config, path + ":" + std::to_string(std::max(e.mark.line, 0) + 1) +
                                           ":" + std::to_string(std::max(e.mark.column, 0) + 1) +
                                           ": yaml: " + log_safe(e.msg));
    } catch (const std::exception& e) {
        return fail(ErrorCode::config, path + ": cannot load: " + e.what());
    } catch (...) {
        return fail(ErrorCode::config, path + ": cannot load: unknown error");
    }
}

}  // namespace cvat::helper
