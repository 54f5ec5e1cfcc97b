// SPDX-License-Identifier: GPL-3.0-or-later
// One OpenID Connect identity provider (see oidc.hpp).
//
// - Discovery (OpenID Connect Discovery 1.0 §4) is cached for kDiscoveryTtl; a refresh that
//   fails keeps the last good document in use until it is kDiscoveryMaxStale old. `issuer`
//   must be server_url (one trailing '/' of difference allowed: Auth0's ends with one), and
//   the discovered value is what tokens' `iss` must equal.
// - The JWKS is cached for kJwksTtl; a token whose kid is unknown fetches it again, at most
//   once per kJwksMinRefresh (a stream of forged kids costs the IdP one request a minute).
// - No lock is held during HTTP. Time comes from the WallClock parameter.
// - Secrets (client secret, passwords, device codes, PKCE verifiers, token responses) live in
//   Secret buffers or wiped JSON strings and appear in no log line, trace or message.
#include "oidc.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <exception>
#include <mutex>
#include <utility>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "http.hpp"
#include "jwt.hpp"
#include "log.hpp"

namespace cvat::helper {

std::int64_t system_wall_clock() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

namespace {

using proto::Role;
using proto::Status;
using Json = jwt::Json;

constexpr std::size_t kMaxJson = 256 * 1024;          // discovery, token, userinfo answers (DESIGN §6)
constexpr std::int64_t kDiscoveryTtl = 3600;           // a document is fetched again after an hour
constexpr std::int64_t kDiscoveryMaxStale = 24 * 3600; // a good one outlives failed refreshes this long
constexpr std::int64_t kRetryStaleAfter = 30;          // while a stale one is used, refresh at most this often
constexpr std::int64_t kNegativeTtl = 5;               // no document at all: a failure is reused this long
constexpr std::int64_t kJwksTtl = 3600;
constexpr std::int64_t kJwksMinRefresh = 60;           // unknown kid: at most one refetch a minute
constexpr std::int64_t kLeeway = 60;                   // clock skew allowed on exp/nbf/iat
constexpr std::int64_t kMaxDeviceLifetime = 3600;      // a longer expires_in is cut to this
constexpr int kDefaultInterval = 5;                    // RFC 8628 §3.2
constexpr int kMinInterval = 1, kMaxInterval = 60;
constexpr std::size_t kMaxUserCode = 64;
constexpr std::size_t kMaxDeviceCode = 4096;
constexpr std::size_t kMaxUri = 2048;
constexpr std::size_t kMaxDescription = 200;
constexpr std::size_t kPkceBytes = 32;                 // 43 base64url characters (RFC 7636 §4.1)
constexpr const char* kDefaultScopes = "openid profile email";
constexpr const char* kDeviceGrant = "urn:ietf:params:oauth:grant-type:device_code";

// Steps of one request, for `cvat-authctl explain` and debug logs.
class Trace {
public:
    explicit Trace(std::vector<std::string>* out) : out_(out) {}
    template <typename... Parts>
    void add(const Parts&... parts) {
        if (out_ != nullptr) out_->push_back((std::string() + ... + std::string(parts)));
    }

private:
    std::vector<std::string>* out_;
};

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
    std::string out;
    for (const auto& s : v) {
        if (!out.empty()) out += sep;
        out += s;
    }
    return out;
}

std::string quoted_list(const std::vector<std::string>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", '" : "'") + log_safe(v[i]) + "'";
    return out + "]";
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

const char* method_name(TokenAuthMethod m) {
    return m == TokenAuthMethod::client_secret_basic ? "client_secret_basic" : "client_secret_post";
}

// Wipes every string of a parsed document (it held tokens) before it is freed.
void wipe_strings(Json& j) noexcept {
    if (j.is_string()) {
        auto& s = j.get_ref<std::string&>();
        wipe(s.data(), s.size());
    } else if (j.is_structured()) {
        for (auto& item : j) wipe_strings(item);
    }
}

// Parses without exceptions: a discarded value when `text` is not JSON.
Json parse_json(std::string_view text) {
    return Json::parse(text.begin(), text.end(), nullptr, false);
}

std::string string_member(const Json& j, const char* key) {
    auto it = j.find(key);
    return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string();
}

std::vector<std::string> string_list(const Json& j, const char* key) {
    std::vector<std::string> out;
    auto it = j.find(key);
    if (it == j.end() || !it->is_array()) return out;
    for (const auto& v : *it)
        if (v.is_string()) out.push_back(v.get<std::string>());
    return out;
}

// A number, or a string of digits (some IdPs send "900"); false when neither.
bool int_member(const Json& j, const char* key, std::int64_t& out) {
    auto it = j.find(key);
    if (it == j.end()) return false;
    if (it->is_number_integer()) {
        out = it->get<std::int64_t>();
        return true;
    }
    if (it->is_number_float()) {
        double d = it->get<double>();
        if (!(d > -1e12 && d < 1e12)) return false;
        out = static_cast<std::int64_t>(d);
        return true;
    }
    if (it->is_string()) {
        const auto& s = it->get_ref<const std::string&>();
        if (s.empty() || s.size() > 12) return false;
        std::int64_t v = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return false;
            v = v * 10 + (c - '0');
        }
        out = v;
        return true;
    }
    return false;
}

// Printable ASCII without spaces: what may go to the user's terminal.
bool printable_token(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// A user name we can hand to PAM and NSS: no control bytes, no ':' (passwd), no '/' (home).
bool acceptable_name(std::string_view v) {
    if (v.empty() || v.size() > proto::kMaxName) return false;
    return std::none_of(v.begin(), v.end(), [](char c) {
        auto b = static_cast<unsigned char>(c);
        return b < 0x20 || b == 0x7f || c == ':' || c == '/';
    });
}

bool is_loopback_host(std::string h) {
    for (char& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    if (h == "localhost" || (h.size() > 10 && h.compare(h.size() - 10, 10, ".localhost") == 0)) return true;
    in_addr a4{};
    if (inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    in6_addr a6{};
    if (inet_pton(AF_INET6, h.c_str(), &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

struct CurlUrlFree {
    void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
};
struct CurlStrFree {
    void operator()(char* p) const noexcept { curl_free(p); }
};

// Empty when `url` may be used for an endpoint: absolute https://, or http:// to loopback or
// with allow_insecure_http.
std::string endpoint_problem(const std::string& url, bool allow_http) {
    if (url.size() > kMaxUri) return "URL too long";
    std::unique_ptr<CURLU, CurlUrlFree> u(curl_url());
    if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return "not a URL";
    char* raw = nullptr;
    if (curl_url_get(u.get(), CURLUPART_SCHEME, &raw, 0) != CURLUE_OK) return "no scheme";
    std::unique_ptr<char, CurlStrFree> scheme(raw);
    raw = nullptr;
    if (curl_url_get(u.get(), CURLUPART_HOST, &raw, 0) != CURLUE_OK) return "no host";
    std::unique_ptr<char, CurlStrFree> host(raw);
    if (std::strcmp(scheme.get(), "https") == 0) return "";
    if (std::strcmp(scheme.get(), "http") == 0) {
        if (allow_http || is_loopback_host(host.get())) return "";
        return "http:// to a host that is not loopback (allow_insecure_http is off)";
    }
    return std::string("scheme ") + log_safe(scheme.get()) + " (expected https)";
}

std::string base64url(const unsigned char* data, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(std::max(0, len)));
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (char& c : out) c = c == '+' ? '-' : (c == '/' ? '_' : c);
    return out;
}

using DiscoveryPtr = std::shared_ptr<const Discovery>;
using KeysPtr = std::shared_ptr<const jwt::KeySet>;

const char* failure_message(jwt::Failure f) {
    switch (f) {
    case jwt::Failure::malformed: return "the token is malformed";
    case jwt::Failure::too_large: return "the token is too large";
    case jwt::Failure::bad_algorithm: return "the token's signing algorithm is not accepted";
    case jwt::Failure::unknown_key: return "the token was signed with a key the identity provider does not publish";
    case jwt::Failure::bad_signature: return "the token's signature is invalid";
    case jwt::Failure::expired: return "token expired";
    case jwt::Failure::not_yet_valid: return "the token is not valid yet (check the clocks)";
    case jwt::Failure::wrong_issuer: return "the token was issued by another issuer";
    case jwt::Failure::wrong_audience: return "the token was issued for another client";
    case jwt::Failure::missing_claim: return "the token lacks a required claim";
    }
    return "the token was refused";
}

class OidcProviderImpl final : public OidcProvider {
public:
    OidcProviderImpl(IdentityProvider idp, const SsoConfig& sso, WallClock clock)
        : cfg_(std::move(idp)),
          client_secret_(std::move(cfg_.client_secret)),
          mode_(sso.selection_mode),
          pkce_(sso.enable_pkce),
          clock_(std::move(clock)) {
        cfg_.client_secret = Secret();
        http_.ca_file = cfg_.ca_file;
        http_.max_body = kMaxJson;
        if (!cfg_.scopes.empty()) scope_ = join(cfg_.scopes, " ");
        else scope_ = kDefaultScopes;
    }

    const IdentityProvider& config() const override { return cfg_; }

    OidcOutcome password_login(std::string_view user, const Secret& password) override {
        return guarded([&](OidcOutcome& out) { do_password(user, password, out); });
    }
    OidcOutcome token_login(const Secret& token) override {
        return guarded([&](OidcOutcome& out) { do_token(token, out); });
    }
    std::string issuer() override {
        try {
            auto d = discovery(false);
            return d ? (*d)->issuer : std::string();
        } catch (...) {
            return {};
        }
    }
    Result<DeviceAuthorization> device_start() override {
        try {
            return do_device_start();
        } catch (const std::exception& e) {
            log::error("oidc ", cfg_.id, ": internal error: ", log_safe(e.what()));
        } catch (...) {
            log::error("oidc ", cfg_.id, ": internal error");
        }
        return fail(ErrorCode::internal, "internal error in the OpenID Connect backend");
    }
    DevicePoll device_poll(const DeviceAuthorization& auth) override {
        DevicePoll p;
        try {
            do_device_poll(auth, p);
            return p;
        } catch (const std::exception& e) {
            log::error("oidc ", cfg_.id, ": internal error: ", log_safe(e.what()));
        } catch (...) {
            log::error("oidc ", cfg_.id, ": internal error");
        }
        p = DevicePoll{};
        p.outcome.status = Status::internal;
        p.outcome.message = "internal error in the OpenID Connect backend";
        return p;
    }
    proto::BackendState probe() override;

private:
    template <typename Fn>
    OidcOutcome guarded(Fn&& fn) noexcept {
        OidcOutcome out;
        try {
            fn(out);
        } catch (const std::exception& e) {
            out = OidcOutcome{};
            out.status = Status::internal;
            out.message = "internal error in the OpenID Connect backend";
            log::error("oidc ", cfg_.id, ": internal error: ", log_safe(e.what()));
        } catch (...) {
            out = OidcOutcome{};
            out.status = Status::internal;
            out.message = "internal error in the OpenID Connect backend";
            log::error("oidc ", cfg_.id, ": internal error");
        }
        return out;
    }

    std::int64_t now() const { return clock_(); }

    Result<Discovery> fetch_discovery();
    Result<DiscoveryPtr> discovery(bool force);
    Result<KeysPtr> keys(const Discovery& d, bool refresh, bool* refreshed = nullptr);

    void client_auth(TokenAuthMethod m, std::vector<FormField>& fields, BasicAuth& basic, const BasicAuth*& use) const {
        if (m == TokenAuthMethod::client_secret_basic) {
            basic = BasicAuth{cfg_.client_id, &client_secret_};
            use = &basic;
        } else {
            fields.push_back(FormField{"client_id", cfg_.client_id, nullptr});
            fields.push_back(FormField{"client_secret", "", &client_secret_});
            use = nullptr;
        }
    }

    bool validate(std::string_view compact, const Discovery& d, Json& claims, OidcOutcome& out, Trace& t);
    void fill_user(Json& claims, const Discovery& d, const Secret* access_token, OidcOutcome& out, Trace& t);
    bool token_response(const HttpResponse& r, const Discovery& d, OidcOutcome& out, Trace& t);
    void explain_role(const RoleDecision& d, Trace& t) const;

    void do_password(std::string_view user, const Secret& password, OidcOutcome& out);
    void do_token(const Secret& token, OidcOutcome& out);
    Result<DeviceAuthorization> do_device_start();
    void do_device_poll(const DeviceAuthorization& auth, DevicePoll& p);

    IdentityProvider cfg_;
    Secret client_secret_;
    SelectionMode mode_;
    bool pkce_;
    WallClock clock_;
    HttpOptions http_;
    std::string scope_;

    std::mutex m_;
    DiscoveryPtr disc_;
    std::int64_t disc_at_ = 0;         // when disc_ was fetched
    std::int64_t disc_tried_at_ = 0;   // last fetch attempt
    std::string disc_error_;           // why the last attempt failed (empty: it did not)
    bool disc_refreshing_ = false;
    KeysPtr keys_;
    std::int64_t keys_at_ = 0;
    std::int64_t keys_refetch_at_ = INT64_MIN / 2;  // last fetch caused by an unknown kid
};

Result<Discovery> OidcProviderImpl::fetch_discovery() {
    const std::string url = cfg_.server_url + "/.well-known/openid-configuration";
    auto r = http_get(url, http_);
    if (!r) return fail(ErrorCode::unavailable, "discovery: " + r.error().detail);
    if (r->status != 200)
        return fail(ErrorCode::unavailable,
                    "discovery: HTTP " + std::to_string(r->status) + " from " + log_safe(url) +
                        " (is server_url the issuer URL?)");
    std::vector<std::string> notes;
    auto d = parse_discovery(r->body, cfg_.server_url, cfg_.allow_insecure_http, notes);
    for (const auto& n : notes) log::warning("oidc ", cfg_.id, ": ", n);
    return d;
}

Result<DiscoveryPtr> OidcProviderImpl::discovery(bool force) {
    const std::int64_t t = now();
    {
        std::lock_guard lock(m_);
        if (disc_) {
            const std::int64_t age = t - disc_at_;
            const bool fresh = age >= 0 && age < kDiscoveryTtl;
            const bool usable = age >= 0 && age < kDiscoveryMaxStale;
            if (fresh && !force) return disc_;
            // Stale but usable: one thread refreshes, the others go on with what we have.
            if (usable && (disc_refreshing_ || (!force && t - disc_tried_at_ < kRetryStaleAfter && t >= disc_tried_at_)))
                return disc_;
        } else if (!force && !disc_error_.empty() && t >= disc_tried_at_ && t - disc_tried_at_ < kNegativeTtl) {
            return fail(ErrorCode::unavailable, disc_error_);
        }
        disc_refreshing_ = true;
        disc_tried_at_ = t;
    }
    Result<Discovery> fetched = Result<Discovery>(tl::unexpect, Error{ErrorCode::internal, "discovery: internal error"});
    try {
        fetched = fetch_discovery();
    } catch (...) {
        std::lock_guard lock(m_);
        disc_refreshing_ = false;
        throw;
    }
    std::lock_guard lock(m_);
    disc_refreshing_ = false;
    if (fetched) {
        if (!disc_ || disc_->issuer != fetched->issuer || disc_->jwks_uri != fetched->jwks_uri) {
            keys_.reset();
            log::info("oidc ", cfg_.id, ": discovered issuer ", log_safe(fetched->issuer));
        }
        if (!disc_error_.empty() && disc_) log::info("oidc ", cfg_.id, ": discovery answers again");
        disc_ = std::make_shared<const Discovery>(std::move(*fetched));
        disc_at_ = t;
        disc_error_.clear();
        return disc_;
    }
    disc_error_ = fetched.error().detail;
    if (disc_ && t - disc_at_ >= 0 && t - disc_at_ < kDiscoveryMaxStale) {
        log::warning("oidc ", cfg_.id, ": ", disc_error_, "; keeping the document fetched ",
                     std::to_string(t - disc_at_), " s ago");
        return disc_;
    }
    if (disc_) {
        log::error("oidc ", cfg_.id, ": ", disc_error_, "; the cached document is too old and is dropped");
        disc_.reset();
        keys_.reset();
    } else {
        log::warning("oidc ", cfg_.id, ": ", disc_error_);
    }
    return fail(ErrorCode::unavailable, disc_error_);
}

Result<KeysPtr> OidcProviderImpl::keys(const Discovery& d, bool refresh, bool* refreshed) {
    if (refreshed) *refreshed = false;
    const std::int64_t t = now();
    {
        std::lock_guard lock(m_);
        if (refresh) {
            if (t - keys_refetch_at_ < kJwksMinRefresh && t >= keys_refetch_at_) {
                if (keys_) return keys_;
                return fail(ErrorCode::unavailable, "the JWKS was fetched less than a minute ago");
            }
            keys_refetch_at_ = t;
        } else if (keys_ && t - keys_at_ >= 0 && t - keys_at_ < kJwksTtl) {
            return keys_;
        }
    }
    auto r = http_get(d.jwks_uri, [&] {
        HttpOptions o = http_;
        o.max_body = jwt::kMaxJwks;
        return o;
    }());
    std::string why;
    KeysPtr parsed;
    if (!r) {
        why = r.error().detail;
    } else if (r->status != 200) {
        why = "HTTP " + std::to_string(r->status) + " from " + log_safe(d.jwks_uri);
    } else {
        auto ks = jwt::KeySet::parse(r->body);
        if (!ks) why = log_safe(d.jwks_uri) + ": " + ks.error().detail;
        else parsed = std::make_shared<const jwt::KeySet>(std::move(*ks));
    }
    std::lock_guard lock(m_);
    if (parsed) {
        keys_ = parsed;
        keys_at_ = t;
        if (refreshed) *refreshed = true;
        return keys_;
    }
    log::warning("oidc ", cfg_.id, ": JWKS: ", why);
    if (keys_ && t - keys_at_ >= 0 && t - keys_at_ < kDiscoveryMaxStale) return keys_;
    return fail(ErrorCode::unavailable, "the identity provider's signing keys could not be loaded: " + why);
}

// Signature and claims of a compact JWT; on failure out.status/message are set.
bool OidcProviderImpl::validate(std::string_view compact, const Discovery& d, Json& claims, OidcOutcome& out,
                                Trace& t) {
    auto refuse = [&](Status s, std::string message, const std::string& detail) {
        out.status = s;
        out.message = std::move(message);
        t.add("token refused: ", detail);
        return false;
    };
    auto tok = jwt::decode(compact);
    if (!tok) return refuse(Status::auth_err, failure_message(tok.error().failure), tok.error().detail);
    t.add("token: alg ", log_safe(tok->alg), tok->kid.empty() ? std::string(", no kid") : ", kid " + log_safe(tok->kid));
    auto ks = keys(d, false);
    if (!ks) return refuse(Status::unavailable, ks.error().detail, ks.error().detail);
    auto sig = jwt::verify_signature(*tok, **ks, d.algorithms);
    if (!sig && sig.error().failure == jwt::Failure::unknown_key) {
        bool refreshed = false;
        auto again = keys(d, true, &refreshed);
        if (refreshed && again) {
            t.add("kid not in the cached JWKS: fetched it again (", std::to_string((*again)->size()), " keys)");
            sig = jwt::verify_signature(*tok, **again, d.algorithms);
        } else {
            t.add("kid not in the cached JWKS; not fetched again (",
                  again ? "the JWKS was fetched less than a minute ago, or the fetch failed" : again.error().detail, ")");
        }
    }
    if (!sig)
        return refuse(Status::auth_err, failure_message(sig.error().failure),
                      std::string(jwt::failure_name(sig.error().failure)) + ": " + sig.error().detail);
    jwt::ClaimRules rules;
    rules.issuer = d.issuer;
    rules.client_id = cfg_.client_id;
    rules.now = now();
    rules.leeway = kLeeway;
    auto chk = jwt::check_claims(*tok, rules);
    if (!chk)
        return refuse(Status::auth_err, failure_message(chk.error().failure),
                      std::string(jwt::failure_name(chk.error().failure)) + ": " + chk.error().detail);
    t.add("signature verified (", tok->alg, "); iss, aud, exp checked");
    claims = std::move(tok->claims);
    return true;
}

void OidcProviderImpl::explain_role(const RoleDecision& d, Trace& t) const {
    std::string matched;
    for (const RoleMatch& m : d.matches) {
        t.add("role_values.", proto::role_name(m.role), " lists '", log_safe(m.group), "', a value of ",
              cfg_.role_claim);
        if (!matched.empty()) matched += ", ";
        matched += proto::role_name(m.role);
    }
    if (!d.from_default)
        t.add("role: ", proto::role_name(d.role), " (highest of the matched roles: ", matched, ")");
    else if (d.role == Role::none)
        t.add("role: none (no role_values entry matched and default_role is none: refused)");
    else if (d.role == cfg_.default_role)
        t.add("role: ", proto::role_name(d.role), " (no role_values entry matched; default_role ",
              proto::role_name(d.role), " applied)");
    else
        t.add("role: ", proto::role_name(d.role), " (no role_values entry matched in an incomplete claim)");
}

// Claims → user and role. `access_token` (may be null) lets userinfo fill claims the ID
// token lacks.
void OidcProviderImpl::fill_user(Json& claims, const Discovery& d, const Secret* access_token, OidcOutcome& out,
                                 Trace& t) {
    auto finish = [&](Status s, std::string message) {
        out.status = s;
        out.message = std::move(message);
    };
    OidcUser& u = out.user;
    u.issuer = d.issuer;
    u.subject = string_member(claims, "sub");
    if (u.subject.empty()) return finish(Status::auth_err, "the token has no subject (sub)");

    // Which claims name the user: the configured one only (another could name another
    // account); otherwise preferred_username, then email (email first under email_address).
    // Never sub: an opaque, often pairwise, identifier is no login name.
    std::vector<std::string> name_claims;
    if (!cfg_.username_claim.empty()) name_claims = {cfg_.username_claim};
    else if (mode_ == SelectionMode::email_address) name_claims = {"email", "preferred_username"};
    else name_claims = {"preferred_username", "email"};
    auto find_name = [&](const Json& c) {
        for (const auto& n : name_claims) {
            auto v = jwt::claim_strings(c, n);
            if (!v.empty() && !v.front().empty()) return std::make_pair(n, v.front());
        }
        return std::make_pair(std::string(), std::string());
    };
    auto name = find_name(claims);
    const bool need_roles = !cfg_.role_claim.empty() && jwt::claim_strings(claims, cfg_.role_claim).empty();
    if ((name.second.empty() || need_roles) && access_token != nullptr && !access_token->empty() &&
        !d.userinfo_endpoint.empty()) {
        t.add("userinfo: asked for ", name.second.empty() ? join(name_claims, " or ") : cfg_.role_claim,
              ", absent from the ID token");
        auto r = http_get_bearer(d.userinfo_endpoint, *access_token, http_);
        if (!r) {
            t.add("userinfo: ", r.error().detail);
        } else if (r->status != 200) {
            t.add("userinfo: HTTP ", std::to_string(r->status));
        } else {
            Json info = parse_json(r->body);
            if (!info.is_object()) {
                t.add("userinfo: not a JSON object (a signed userinfo answer is not supported)");
            } else if (string_member(info, "sub") != u.subject) {
                // OpenID Connect Core §5.3.2: a userinfo answer for another sub must not be used.
                t.add("userinfo: sub differs from the ID token's: ignored");
                log::warning("oidc ", cfg_.id, ": userinfo sub differs from the ID token's; ignored");
            } else {
                for (auto it = info.begin(); it != info.end(); ++it)
                    if (!claims.contains(it.key())) claims[it.key()] = it.value();
                t.add("userinfo: merged claims the ID token lacked");
                name = find_name(claims);
            }
        }
    }
    std::vector<std::string> present;
    for (const char* c : {"preferred_username", "email", "email_verified", "given_name", "family_name", "name"})
        if (claims.contains(c)) present.push_back(c);
    if (!cfg_.role_claim.empty() && !jwt::claim_strings(claims, cfg_.role_claim).empty()) present.push_back(cfg_.role_claim);
    t.add("claims: sub ", log_safe(u.subject), present.empty() ? std::string() : ", " + join(present));

    if (name.second.empty()) {
        log::warning("oidc ", cfg_.id, ": the token has no ", join(name_claims, " or "), " claim for the user name");
        return finish(Status::perm_denied, "the identity provider's token has no " + join(name_claims, " or ") +
                                               " claim to take the user name from");
    }
    if (!acceptable_name(name.second)) {
        log::warning("oidc ", cfg_.id, ": unusable user name in claim ", name.first, ": ", log_safe(name.second));
        return finish(Status::perm_denied, "the user name in the " + name.first + " claim is not usable");
    }
    if (name.first == "email") {
        // An address the IdP says is unverified may be anyone's.
        auto ev = claims.find("email_verified");
        if (ev != claims.end() && ((ev->is_boolean() && !ev->get<bool>()) || (ev->is_string() && *ev == "false"))) {
            t.add("email ", log_safe(name.second), " is not verified (email_verified false)");
            return finish(Status::perm_denied, "the email address is not verified at the identity provider");
        }
    }
    u.username = name.second;
    t.add("user name: ", log_safe(u.username), " (claim ", name.first, ")");
    u.email = string_member(claims, "email");
    u.first_name = string_member(claims, "given_name");
    u.last_name = string_member(claims, "family_name");

    bool incomplete = false;
    if (!cfg_.role_claim.empty()) {
        u.role_claim_values = jwt::claim_strings(claims, cfg_.role_claim);
        if (u.role_claim_values.empty())
            t.add("role_claim ", cfg_.role_claim, ": absent from the token");
        else
            t.add("role_claim ", cfg_.role_claim, ": ", quoted_list(u.role_claim_values));
        // Entra ID leaves the groups out when a user has too many ("groups overage"): the
        // claim then names a source in _claim_names, or hasgroups is true.
        auto cn = claims.find("_claim_names");
        if ((cn != claims.end() && cn->is_object() && cn->contains(cfg_.role_claim)) ||
            (cfg_.role_claim == "groups" && claims.contains("hasgroups") && claims["hasgroups"].is_boolean() &&
             claims["hasgroups"].get<bool>())) {
            incomplete = true;
            t.add("role_claim ", cfg_.role_claim, " is incomplete: the IdP left values out (groups overage)");
        }
    } else {
        t.add("no role_claim configured: default_role ", proto::role_name(cfg_.default_role));
    }
    u.role = resolve_claim_role(u.role_claim_values, cfg_.role_values, cfg_.default_role);
    if (incomplete && u.role.from_default && u.role.role > Role::worker) {
        // A value not seen may hold any role: the lowest is what the user has at least.
        u.role.role = Role::worker;
        log::warning("oidc ", cfg_.id, ": ", cfg_.role_claim, " of ", log_safe(u.username),
                     " is incomplete; role worker, the lowest");
    }
    explain_role(u.role, t);
    if (u.role.role == Role::none)
        return finish(Status::perm_denied, "no CVAT role: no role_values entry matched and default_role is none");
    finish(Status::ok, "");
}

// A 200 answer of the token endpoint: validate its ID token and fill the user.
bool OidcProviderImpl::token_response(const HttpResponse& r, const Discovery& d, OidcOutcome& out, Trace& t) {
    TokenAnswer a = parse_token_answer(r.text());
    if (a.problem == TokenAnswer::Problem::not_json) {
        out.status = Status::unavailable;
        out.message = "the identity provider's token endpoint answered 200 without a JSON object";
        t.add("token endpoint: HTTP 200, not JSON");
        return false;
    }
    if (a.problem == TokenAnswer::Problem::no_id_token) {
        out.status = Status::unavailable;
        out.message = "the identity provider returned no ID token; is 'openid' in scopes?";
        t.add("token endpoint: HTTP 200 without id_token");
        log::warning("oidc ", cfg_.id, ": the token endpoint returned no id_token");
        return false;
    }
    t.add("token endpoint: HTTP 200 with an ID token");
    Json claims;
    if (!validate(a.id_token.view(), d, claims, out, t)) return false;
    fill_user(claims, d, &a.access_token, out, t);
    return true;
}

void OidcProviderImpl::do_password(std::string_view user, const Secret& password, OidcOutcome& out) {
    Trace t(&out.trace);
    auto finish = [&](Status s, std::string message) {
        out.status = s;
        out.message = std::move(message);
        t.add("stopped: ", out.message);
    };
    t.add("identity provider: ", cfg_.id, " (", log_safe(cfg_.name), ")");
    if (user.empty()) return finish(Status::user_unknown, "empty user name");
    if (user.size() > proto::kMaxName) return finish(Status::user_unknown, "user name too long");
    if (password.empty()) return finish(Status::auth_err, "empty password refused");

    auto d = discovery(false);
    if (!d) return finish(Status::unavailable, "the identity provider is unreachable: " + d.error().detail);
    const Discovery& disc = **d;
    t.add("issuer: ", log_safe(disc.issuer));
    if (disc.token_endpoint.empty())
        return finish(Status::unavailable, "the identity provider's discovery document has no usable token_endpoint");
    if (!disc.grant_types.empty() && !contains(disc.grant_types, "password"))
        t.add("grant_types_supported does not list password; trying it anyway");
    const TokenAuthMethod method = pick_token_auth_method(cfg_, disc.auth_methods);
    t.add("token endpoint: ", log_safe(disc.token_endpoint), ", client authentication ", method_name(method),
          cfg_.token_auth_method_given ? " (configured)" : " (chosen from discovery)");
    t.add("scope: ", scope_);

    std::vector<FormField> fields = {{"grant_type", "password", nullptr},
                                     {"username", std::string(user), nullptr},
                                     {"password", "", &password},
                                     {"scope", scope_, nullptr}};
    BasicAuth basic{};
    const BasicAuth* use = nullptr;
    client_auth(method, fields, basic, use);
    HttpOptions o = http_;
    o.sensitive = true;
    auto r = http_post_form(disc.token_endpoint, fields, use, o);
    if (!r) {
        log::warning("oidc ", cfg_.id, ": token endpoint: ", r.error().detail);
        return finish(Status::unavailable, "the identity provider is unreachable: " + r.error().detail);
    }
    if (r->status == 200) {
        if (!token_response(*r, disc, out, t)) t.add("stopped: ", out.message);
        else if (out.status != Status::ok) t.add("stopped: ", out.message);
        else t.add("result: ok, ", out.user.username, " as ", proto::role_name(out.user.role.role));
        if (out.status == Status::ok)
            log::debug("oidc ", cfg_.id, ": password login of ", log_safe(out.user.username), " succeeded");
        return;
    }
    TokenError te = classify_token_error(r->status, r->text());
    t.add("token endpoint: HTTP ", std::to_string(r->status),
          te.error.empty() ? std::string(", no RFC 6749 error") : ", error " + log_safe(te.error),
          te.description.empty() ? std::string() : " (" + te.description + ")");
    if (te.config_problem)
        log::warning("oidc ", cfg_.id, ": the token endpoint refused the client: ", log_safe(te.error),
                     te.description.empty() ? std::string() : " (" + te.description + ")", "; check client_id, ",
                     "client_secret, token_auth_method and the grants allowed for the client");
    else if (te.bare)
        log::debug("oidc ", cfg_.id, ": the token endpoint answered HTTP ", std::to_string(r->status),
                   " without an RFC 6749 error; taken as refused credentials");
    finish(te.status, te.message);
}

void OidcProviderImpl::do_token(const Secret& token, OidcOutcome& out) {
    Trace t(&out.trace);
    auto finish = [&](Status s, std::string message) {
        out.status = s;
        out.message = std::move(message);
        t.add("stopped: ", out.message);
    };
    t.add("identity provider: ", cfg_.id, " (", log_safe(cfg_.name), "), token login");
    if (token.empty() || !jwt::looks_like_jwt(token.view())) return finish(Status::auth_err, "not a JWT");
    auto d = discovery(false);
    if (!d) return finish(Status::unavailable, "the identity provider is unreachable: " + d.error().detail);
    t.add("issuer: ", log_safe((*d)->issuer));
    Json claims;
    if (!validate(token.view(), **d, claims, out, t)) return t.add("stopped: ", out.message);
    fill_user(claims, **d, nullptr, out, t);
    if (out.status != Status::ok) t.add("stopped: ", out.message);
    else t.add("result: ok, ", out.user.username, " as ", proto::role_name(out.user.role.role));
}

Result<DeviceAuthorization> OidcProviderImpl::do_device_start() {
    auto d = discovery(false);
    if (!d) return fail(ErrorCode::unavailable, "the identity provider is unreachable: " + d.error().detail);
    const Discovery& disc = **d;
    if (disc.device_endpoint.empty())
        return fail(ErrorCode::unavailable, "this IdP offers no device authorization");
    DeviceAuthorization auth;
    std::vector<FormField> fields = {{"scope", scope_, nullptr}};
    if (pkce_) {
        unsigned char raw[kPkceBytes];
        if (RAND_bytes(raw, sizeof raw) != 1) return fail(ErrorCode::internal, "no random bytes for PKCE");
        std::string v = base64url(raw, sizeof raw);
        wipe(raw, sizeof raw);
        auth.code_verifier = Secret(v);
        wipe(v.data(), v.size());
        fields.push_back(FormField{"code_challenge", pkce_s256(auth.code_verifier.view()), nullptr});
        fields.push_back(FormField{"code_challenge_method", "S256", nullptr});
    }
    BasicAuth basic{};
    const BasicAuth* use = nullptr;
    client_auth(pick_token_auth_method(cfg_, disc.auth_methods), fields, basic, use);
    HttpOptions o = http_;
    o.sensitive = true;  // the device code
    auto r = http_post_form(disc.device_endpoint, fields, use, o);
    if (!r) return fail(ErrorCode::unavailable, "the identity provider is unreachable: " + r.error().detail);
    if (r->status != 200) {
        TokenError te = classify_token_error(r->status, r->text());
        std::string why = "HTTP " + std::to_string(r->status) +
                          (te.error.empty() ? std::string() : ", error " + log_safe(te.error)) +
                          (te.description.empty() ? std::string() : " (" + te.description + ")");
        log::warning("oidc ", cfg_.id, ": the device authorization endpoint refused: ", why);
        return fail(ErrorCode::unavailable, "the identity provider refused to start a device login (" + why + ")");
    }
    const std::int64_t started = now();
    auto parsed = parse_device_authorization(r->text(), started);
    if (!parsed) {
        log::warning("oidc ", cfg_.id, ": device authorization answer refused: ", parsed.error().detail);
        return fail(ErrorCode::unavailable,
                    "the identity provider's device authorization answer is unusable: " + parsed.error().detail);
    }
    parsed->code_verifier = std::move(auth.code_verifier);
    auth = std::move(*parsed);
    const std::int64_t expires_in = auth.expires_at - started;
    log::debug("oidc ", cfg_.id, ": device authorization started, expires in ", std::to_string(expires_in),
               " s, interval ", std::to_string(auth.interval_s), " s", pkce_ ? ", PKCE" : "");
    return auth;
}

void OidcProviderImpl::do_device_poll(const DeviceAuthorization& auth, DevicePoll& p) {
    OidcOutcome& out = p.outcome;
    Trace t(&out.trace);
    auto finish = [&](DevicePollState s, Status st, std::string message) {
        p.state = s;
        out.status = st;
        out.message = std::move(message);
        t.add("stopped: ", out.message);
    };
    t.add("identity provider: ", cfg_.id, " (", log_safe(cfg_.name), "), device login");
    if (now() >= auth.expires_at)
        return finish(DevicePollState::expired, Status::auth_err, "the code expired before it was approved");
    auto d = discovery(false);
    if (!d) return finish(DevicePollState::failed, Status::unavailable, "the identity provider is unreachable: " + d.error().detail);
    const Discovery& disc = **d;
    if (disc.token_endpoint.empty())
        return finish(DevicePollState::failed, Status::unavailable,
                      "the identity provider's discovery document has no usable token_endpoint");
    std::vector<FormField> fields = {{"grant_type", kDeviceGrant, nullptr}, {"device_code", "", &auth.device_code}};
    if (!auth.code_verifier.empty()) fields.push_back(FormField{"code_verifier", "", &auth.code_verifier});
    BasicAuth basic{};
    const BasicAuth* use = nullptr;
    const TokenAuthMethod method = pick_token_auth_method(cfg_, disc.auth_methods);
    client_auth(method, fields, basic, use);
    t.add("token endpoint: ", log_safe(disc.token_endpoint), ", client authentication ", method_name(method));
    HttpOptions o = http_;
    o.sensitive = true;
    auto r = http_post_form(disc.token_endpoint, fields, use, o);
    if (!r) return finish(DevicePollState::failed, Status::unavailable, "the identity provider is unreachable: " + r.error().detail);
    if (r->status == 200) {
        if (!token_response(*r, disc, out, t)) {
            p.state = DevicePollState::failed;
            t.add("stopped: ", out.message);
            return;
        }
        // Approved at the IdP and the token holds; the role may still refuse (perm_denied).
        p.state = DevicePollState::approved;
        if (out.status != Status::ok) t.add("stopped: ", out.message);
        else t.add("result: ok, ", out.user.username, " as ", proto::role_name(out.user.role.role));
        return;
    }
    TokenError te = classify_token_error(r->status, r->text());
    if (te.poll == DevicePollState::pending || te.poll == DevicePollState::slow_down) {
        p.state = te.poll;
        out.status = Status::auth_err;
        out.message = te.message;
        return;
    }
    t.add("token endpoint: HTTP ", std::to_string(r->status),
          te.error.empty() ? std::string(", no RFC 6749 error") : ", error " + log_safe(te.error),
          te.description.empty() ? std::string() : " (" + te.description + ")");
    if (te.config_problem)
        log::warning("oidc ", cfg_.id, ": the token endpoint refused the device grant: ", log_safe(te.error),
                     te.description.empty() ? std::string() : " (" + te.description + ")");
    finish(te.poll, te.status, te.message);
}

proto::BackendState OidcProviderImpl::probe() {
    proto::BackendState st;
    st.name = "oidc " + cfg_.id;
    try {
        auto d = discovery(true);
        if (!d) {
            st.detail = d.error().detail;
            return st;
        }
        const Discovery& disc = **d;
        auto ks = keys(disc, false);
        std::string stale;
        {
            std::lock_guard lock(m_);
            if (!disc_error_.empty()) stale = "; refresh failed (" + disc_error_ + "), using the cached document";
        }
        if (!ks) {
            st.detail = "issuer " + log_safe(disc.issuer) + "; " + ks.error().detail;
            return st;
        }
        st.up = true;
        st.detail = "issuer " + log_safe(disc.issuer) + "; token endpoint " +
                    (disc.token_endpoint.empty() ? std::string("none") : log_safe(disc.token_endpoint)) +
                    "; device authorization " +
                    (disc.device_endpoint.empty() ? std::string("none") : log_safe(disc.device_endpoint)) + "; " +
                    std::to_string((*ks)->size()) + " signing key(s)" + stale;
    } catch (const std::exception& e) {
        st.up = false;
        st.detail = "internal error";
        log::error("oidc ", cfg_.id, ": probe failed: ", log_safe(e.what()));
    } catch (...) {
        st.up = false;
        st.detail = "internal error";
    }
    return st;
}

}  // namespace

Result<Discovery> parse_discovery(std::string_view body, const std::string& server_url, bool allow_insecure_http,
                                  std::vector<std::string>& notes) {
    const std::string url = server_url + "/.well-known/openid-configuration";
    Json j = parse_json(body);
    if (!j.is_object()) return fail(ErrorCode::unavailable, "discovery: " + log_safe(url) + " answered no JSON object");
    Discovery d;
    d.issuer = string_member(j, "issuer");
    std::string_view a = d.issuer, b = server_url;
    if (!a.empty() && a.back() == '/') a.remove_suffix(1);
    if (d.issuer.empty() || a != b)
        return fail(ErrorCode::unavailable, "discovery: issuer " + (d.issuer.empty() ? std::string("missing") : "'" + log_safe(d.issuer) + "'") +
                                                " is not server_url '" + log_safe(server_url) +
                                                "' (OpenID Connect Discovery §4.3 requires them equal)");
    d.token_endpoint = string_member(j, "token_endpoint");
    d.device_endpoint = string_member(j, "device_authorization_endpoint");
    d.userinfo_endpoint = string_member(j, "userinfo_endpoint");
    d.jwks_uri = string_member(j, "jwks_uri");
    if (d.jwks_uri.empty()) return fail(ErrorCode::unavailable, "discovery: no jwks_uri");
    struct Ep {
        const char* name;
        std::string* url;
        bool required;
    } eps[] = {{"jwks_uri", &d.jwks_uri, true},
               {"token_endpoint", &d.token_endpoint, false},
               {"device_authorization_endpoint", &d.device_endpoint, false},
               {"userinfo_endpoint", &d.userinfo_endpoint, false}};
    for (Ep& e : eps) {
        if (e.url->empty()) continue;
        if (std::string why = endpoint_problem(*e.url, allow_insecure_http); !why.empty()) {
            if (e.required)
                return fail(ErrorCode::unavailable, std::string("discovery: ") + e.name + " '" + log_safe(*e.url) + "': " + why);
            notes.push_back(std::string("discovery: ") + e.name + " '" + log_safe(*e.url) + "' not used: " + why);
            e.url->clear();
        }
    }
    d.auth_methods = string_list(j, "token_endpoint_auth_methods_supported");
    d.grant_types = string_list(j, "grant_types_supported");
    const auto& all = jwt::default_algorithms();
    if (j.contains("id_token_signing_alg_values_supported")) {
        for (const auto& alg : string_list(j, "id_token_signing_alg_values_supported"))
            if (contains(all, alg) && !contains(d.algorithms, alg)) d.algorithms.push_back(alg);
        if (d.algorithms.empty())
            notes.push_back("id_token_signing_alg_values_supported names no asymmetric "
                            "algorithm we accept: every token will be refused");
    } else {
        d.algorithms = all;
    }
    return d;
}

TokenAnswer parse_token_answer(std::string_view body) {
    TokenAnswer a;
    Json j = parse_json(body);
    struct Wiper {
        Json& j;
        ~Wiper() { wipe_strings(j); }
    } wiper{j};
    if (!j.is_object()) {
        a.problem = TokenAnswer::Problem::not_json;
        return a;
    }
    auto id = j.find("id_token");
    if (id == j.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
        a.problem = TokenAnswer::Problem::no_id_token;
        return a;
    }
    a.id_token = Secret(id->get_ref<const std::string&>());
    if (auto at = j.find("access_token"); at != j.end() && at->is_string())
        a.access_token = Secret(at->get_ref<const std::string&>());
    a.problem = TokenAnswer::Problem::none;
    return a;
}

Result<DeviceAuthorization> parse_device_authorization(std::string_view body, std::int64_t now) {
    Json j = parse_json(body);
    struct Wiper {
        Json& j;
        ~Wiper() { wipe_strings(j); }
    } wiper{j};
    auto bad = [](const char* why) { return fail(ErrorCode::unavailable, why); };
    DeviceAuthorization auth;
    if (!j.is_object()) return bad("not a JSON object");
    auto dc = j.find("device_code");
    if (dc == j.end() || !dc->is_string() || dc->get_ref<const std::string&>().empty()) return bad("no device_code");
    if (dc->get_ref<const std::string&>().size() > kMaxDeviceCode) return bad("device_code too long");
    auth.device_code = Secret(dc->get_ref<const std::string&>());
    auth.user_code = string_member(j, "user_code");
    if (auth.user_code.empty() || auth.user_code.size() > kMaxUserCode || !printable_token(auth.user_code))
        return bad("user_code missing, too long or not printable");
    // RFC 8628 spells it verification_uri; Google's older endpoint verification_url.
    auth.verification_uri = string_member(j, "verification_uri");
    if (auth.verification_uri.empty()) auth.verification_uri = string_member(j, "verification_url");
    auth.verification_uri_complete = string_member(j, "verification_uri_complete");
    if (auth.verification_uri.empty()) return bad("no verification_uri");
    for (std::string* u : {&auth.verification_uri, &auth.verification_uri_complete}) {
        if (u->empty()) continue;
        // Shown on the user's terminal: printable, and a web address.
        if (u->size() > kMaxUri || !printable_token(*u) || (u->rfind("https://", 0) != 0 && u->rfind("http://", 0) != 0)) {
            if (u == &auth.verification_uri) return bad("verification_uri is not a printable http(s) URL");
            u->clear();
        }
    }
    std::int64_t expires_in = 0;
    if (!int_member(j, "expires_in", expires_in) || expires_in <= 0) return bad("expires_in missing or not positive");
    expires_in = std::min(expires_in, kMaxDeviceLifetime);
    std::int64_t interval = kDefaultInterval;
    if (j.contains("interval") && !int_member(j, "interval", interval)) interval = kDefaultInterval;
    auth.interval_s = static_cast<int>(std::clamp<std::int64_t>(interval, kMinInterval, kMaxInterval));
    auth.expires_at = now + expires_in;
    return auth;
}

TokenError classify_token_error(long http_status, std::string_view body) {
    TokenError te;
    Json j = parse_json(body);
    if (j.is_object()) {
        te.error = string_member(j, "error");
        std::string desc = string_member(j, "error_description");
        if (desc.size() > kMaxDescription) desc.resize(kMaxDescription);
        te.description = desc.empty() ? std::string() : log_safe(desc);
        if (te.error.size() > 64) te.error.resize(64);
    }
    te.bare = te.error.empty();
    const bool server_side = http_status >= 500 || http_status == 429;
    if (server_side) {
        te.status = Status::unavailable;
        te.poll = http_status == 429 ? DevicePollState::slow_down : DevicePollState::failed;
        te.message = "the identity provider is not answering properly (HTTP " + std::to_string(http_status) + ")";
        return te;
    }
    const std::string& e = te.error;
    if (e.empty()) {
        if (http_status == 400 || http_status == 401 || http_status == 403) {
            te.status = Status::auth_err;
            te.message = "wrong user name or password";
        } else {
            te.status = Status::unavailable;
            te.message = "unexpected answer from the identity provider (HTTP " + std::to_string(http_status) + ")";
        }
        return te;
    }
    auto has = [&](const char* s) { return te.description.find(s) != std::string::npos; };
    if (e == "invalid_grant") {
        // Entra ID refuses the password grant for MFA with invalid_grant + AADSTS50076/50079.
        if (has("AADSTS50076") || has("AADSTS50079") || has("AADSTS50158") || has("AADSTS50072")) {
            te.status = Status::perm_denied;
            te.message = "the identity provider requires multi-factor authentication: use the device login";
        } else if (has("AADSTS65001")) {
            te.status = Status::unavailable;
            te.config_problem = true;
            te.message = "identity provider configuration problem: the application has no consent for the scopes";
        } else {
            te.status = Status::auth_err;
            te.message = "wrong user name or password";
        }
    } else if (e == "mfa_required") {  // Auth0
        te.status = Status::perm_denied;
        te.message = "the identity provider requires multi-factor authentication: use the device login";
    } else if (e == "authorization_pending") {
        te.poll = DevicePollState::pending;
        te.message = "the sign-in is not finished yet";
    } else if (e == "slow_down") {
        te.poll = DevicePollState::slow_down;
        te.message = "the sign-in is not finished yet";
    } else if (e == "access_denied") {
        te.poll = DevicePollState::denied;
        te.message = "the sign-in was refused at the IdP";
    } else if (e == "expired_token") {
        te.poll = DevicePollState::expired;
        te.message = "the code expired before it was approved";
    } else if (e == "invalid_client" || e == "unauthorized_client" || e == "unsupported_grant_type" ||
               e == "invalid_scope" || e == "invalid_request") {
        te.status = Status::unavailable;
        te.config_problem = true;
        te.message = "identity provider configuration problem (" + log_safe(e) + "): the administrator must check "
                     "the client's ID, secret, authentication method, allowed grants and scopes";
    } else if (e == "temporarily_unavailable" || e == "server_error") {
        te.status = Status::unavailable;
        te.message = "the identity provider is not answering properly (" + e + ")";
    } else {
        te.status = Status::auth_err;  // unknown error: refused, never a success
        te.message = "the identity provider refused the sign-in (" + log_safe(e) + ")";
    }
    return te;
}

RoleDecision resolve_claim_role(const std::vector<std::string>& claim_values,
                                const std::array<std::vector<std::string>, 4>& role_values, Role default_role) {
    RoleDecision decision;
    for (const std::string& v : claim_values) {
        for (std::size_t r = role_values.size(); r-- > 1;) {
            if (!contains(role_values[r], v)) continue;
            auto role = static_cast<Role>(r);
            decision.matches.push_back(RoleMatch{role, v});
            if (role > decision.role) decision.role = role;
        }
    }
    if (decision.matches.empty()) {
        decision.role = default_role;
        decision.from_default = true;
    }
    return decision;
}

TokenAuthMethod pick_token_auth_method(const IdentityProvider& idp, const std::vector<std::string>& supported) {
    if (idp.token_auth_method_given) return idp.token_auth_method;
    if (contains(supported, "client_secret_basic")) return TokenAuthMethod::client_secret_basic;
    if (contains(supported, "client_secret_post")) return TokenAuthMethod::client_secret_post;
    return TokenAuthMethod::client_secret_basic;
}

std::string pkce_s256(std::string_view verifier) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(verifier.data()), verifier.size(), digest);
    return base64url(digest, sizeof digest);
}

Result<std::unique_ptr<OidcProvider>> OidcProvider::create(IdentityProvider idp, const SsoConfig& sso,
                                                           WallClock clock) {
    try {
        if (idp.protocol != Protocol::oidc) return fail(ErrorCode::config, "identity provider " + idp.id + " is not OIDC");
        if (idp.server_url.empty()) return fail(ErrorCode::config, "identity provider " + idp.id + ": no server_url");
        if (idp.client_id.empty()) return fail(ErrorCode::config, "identity provider " + idp.id + ": no client_id");
        if (std::string why = endpoint_problem(idp.server_url, idp.allow_insecure_http); !why.empty())
            return fail(ErrorCode::config, "identity provider " + idp.id + ": server_url: " + why);
        if (!clock) clock = system_wall_clock;
        return std::unique_ptr<OidcProvider>(std::make_unique<OidcProviderImpl>(std::move(idp), sso, std::move(clock)));
    } catch (const std::exception& e) {
        return fail(ErrorCode::internal, std::string("OIDC provider: ") + e.what());
    }
}

}  // namespace cvat::helper
