// SPDX-License-Identifier: GPL-3.0-or-later
#include "service.hpp"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>
#include <random>

#include "device_flow.hpp"
#include "jwt.hpp"
#include "log.hpp"
#include "transport.hpp"

namespace cvat::helper {

using proto::Role;
using proto::Status;

Result<std::shared_ptr<const Runtime>> build_runtime(Config config) {
    auto rt = std::make_shared<Runtime>();
    if (config.ldap.configured) {
        auto ldap = LdapBackend::create(std::move(config.ldap));
        if (!ldap) return tl::unexpected(ldap.error());
        rt->ldap = std::move(*ldap);
        config.ldap.configured = true;  // the moved-from section still says it exists
    }
    if (config.sso.configured && config.sso.enabled) {
        for (auto& idp : config.sso.identity_providers) {
            std::string id = idp.id;
            if (idp.protocol == Protocol::saml) {
                std::string base = config.helper.cvat_base_url;
                if (base.empty())
                    if (const char* env = std::getenv("CVAT_BASE_URL")) base = env;
                auto p = SamlProvider::create(std::move(idp), config.sso, base);
                if (!p) return fail(p.error().code, "sso.identity_providers " + id + ": " + p.error().detail);
                rt->saml.push_back(std::move(*p));
                continue;
            }
            auto p = OidcProvider::create(std::move(idp), config.sso);
            if (!p) return fail(p.error().code, "sso.identity_providers " + id + ": " + p.error().detail);
            rt->oidc.push_back(std::move(*p));
        }
    }
    rt->config = std::move(config);
    return std::shared_ptr<const Runtime>(std::move(rt));
}

namespace {

proto::Verdict verdict(Status status, std::string message) {
    proto::Verdict v;
    v.status = status;
    v.message = std::move(message);
    return v;
}

Status status_of(ErrorCode code) {
    switch (code) {
        case ErrorCode::unavailable:
        case ErrorCode::timeout: return Status::unavailable;
        case ErrorCode::auth_failed: return Status::auth_err;
        case ErrorCode::user_unknown: return Status::user_unknown;
        case ErrorCode::permission_denied: return Status::perm_denied;
        case ErrorCode::not_supported: return Status::not_supported;
        default: return Status::internal;
    }
}

// The verdict for a signed-in user: canonical name, role, the attributes pam_cvat exports.
proto::Verdict signed_in(const std::string& user, Role role, const std::string& email, const std::string& first,
                         const std::string& last, const std::string& idp) {
    proto::Verdict v = verdict(Status::ok, "");
    v.user = user;
    v.role = role;
    auto add = [&v](const char* key, const std::string& value) {
        if (!value.empty()) v.attributes.emplace_back(key, value);
    };
    add("email", email);
    add("first_name", first);
    add("last_name", last);
    add("idp", idp);
    return v;
}

proto::Verdict ldap_verdict(const LdapOutcome& out) {
    const LdapUser& u = out.user;
    proto::Verdict v = signed_in(u.username, u.role.role, u.email, u.first_name, u.last_name, "ldap");
    if (!u.dn.empty()) v.attributes.emplace_back("dn", u.dn);
    return v;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

const char* kNoLdap = "no ldap: section is configured";

// An IdP sign-in the host refuses (Accounts::learned_oidc): not remembered anywhere, so neither
// the account phase nor the verdict cache lets it in afterwards.
proto::Verdict refusal(const std::string& user, const Accounts::Refusal& r) {
    proto::Verdict v = verdict(r.status, r.message);
    v.user = user;
    return v;
}

}  // namespace

// ---- routing ----

Route route_user(const Runtime& rt, std::string_view user, std::string_view forced) {
    using K = Route::Kind;
    auto to_ldap = [&rt](std::string why) {
        return rt.ldap ? Route{K::ldap, nullptr, std::move(why)} : Route{K::none, nullptr, kNoLdap};
    };
    // OIDC and SAML IdPs take part equally, in the file's order within each protocol.
    struct Candidate {
        const IdentityProvider* cfg;
        OidcProvider* oidc;
        SamlProvider* saml;
    };
    std::vector<Candidate> idps;
    for (const auto& p : rt.oidc) idps.push_back({&p->config(), p.get(), nullptr});
    for (const auto& p : rt.saml) idps.push_back({&p->config(), nullptr, p.get()});
    auto to = [](const Candidate& c, std::string why) {
        Route r{c.oidc != nullptr ? K::oidc : K::saml, c.oidc, std::move(why)};
        r.saml = c.saml;
        return r;
    };
    if (!forced.empty()) {
        if (forced == "ldap") return to_ldap("the PAM argument idp=ldap");
        for (const auto& c : idps)
            if (c.cfg->id == forced) return to(c, "the PAM argument idp=" + std::string(forced));
        return {K::none, nullptr, "idp=" + std::string(forced) + " names no configured identity provider"};
    }
    const SsoConfig& sso = rt.config.sso;
    std::string domain;
    if (auto at = user.rfind('@'); at != std::string_view::npos) domain = lower(user.substr(at + 1));
    if (!idps.empty() && sso.selection_mode == SelectionMode::email_address && !domain.empty()) {
        for (const auto& c : idps)
            if (!c.cfg->email_domain.empty() && lower(c.cfg->email_domain) == domain)
                return to(c, "selection_mode email_address: " + domain + " is the email_domain of " + c.cfg->id);
    }
    const auto backend = rt.config.helper.default_backend;
    bool to_sso = backend == DefaultBackend::sso || (backend == DefaultBackend::automatic && !rt.ldap);
    if (!to_sso)
        return to_ldap(domain.empty() ? "a name without a domain goes to LDAP (helper.default_backend)"
                                      : "no identity provider's email_domain is " + domain +
                                            "; the name goes to LDAP (helper.default_backend)");
    if (idps.empty()) return {K::none, nullptr, "no identity provider is configured"};
    if (sso.selection_mode == SelectionMode::lowest_weight) {
        const Candidate* best = nullptr;
        for (const auto& c : idps)
            if (best == nullptr || c.cfg->weight < best->cfg->weight) best = &c;
        return to(*best, "selection_mode lowest_weight: " + best->cfg->id + " has the lowest weight (" +
                             std::to_string(best->cfg->weight) + ")");
    }
    return {K::none, nullptr,
            domain.empty() ? "selection_mode email_address needs a name with a domain (user@example.com)"
                           : "selection_mode email_address: no identity provider's email_domain is " + domain};
}

// ---- recent sign-ins ----

void RecentSignIns::remember(const std::string& idp, const proto::Verdict& v, std::vector<std::string> trace,
                             std::int64_t now_s) {
    std::lock_guard lock(mutex_);
    if (entries_.size() >= kMaxEntries) {
        for (auto it = entries_.begin(); it != entries_.end();)
            it = it->second.at_s + kTtlS <= now_s ? entries_.erase(it) : std::next(it);
        if (entries_.size() >= kMaxEntries) entries_.erase(entries_.begin());  // full of live ones
    }
    entries_[idp + '\n' + v.user] = Entry{v, std::move(trace), now_s};
}

std::optional<proto::Verdict> RecentSignIns::find(const std::string& idp, const std::string& user, std::int64_t now_s,
                                                  std::vector<std::string>* trace, std::int64_t max_age_s) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(idp + '\n' + user);
    if (it == entries_.end()) return std::nullopt;
    if (it->second.at_s + kTtlS <= now_s) {
        entries_.erase(it);
        return std::nullopt;
    }
    if (it->second.at_s + std::min(max_age_s, kTtlS) <= now_s) return std::nullopt;
    if (trace != nullptr) *trace = it->second.trace;
    return it->second.verdict;
}

void RecentSignIns::clear() {
    std::lock_guard lock(mutex_);
    entries_.clear();
}

// ---- service ----

// How long a sign-in answers the account phase that follows it when helper.verdict_ttl is 0:
// a sign-in within the same wall-clock second (RecentSignIns keeps seconds).
constexpr std::int64_t kSameTransactionS = 1;

bool plausible_user_name(std::string_view name) noexcept {
    if (name.empty()) return false;
    for (unsigned char c : name)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

Service::Service(uid_t privileged_uid, std::shared_ptr<Accounts> accounts)
    : privileged_uid_(privileged_uid), started_(std::chrono::steady_clock::now()),
      recent_(std::make_shared<RecentSignIns>()), accounts_(std::move(accounts)),
      throttle_(std::make_shared<Throttle>()), failure_times_(std::make_shared<FailureTimes>()) {}

void Service::use(const std::shared_ptr<const Runtime>& rt) const {
    if (accounts_) accounts_->use(rt);
}

bool Service::privileged(const Peer& peer) const {
    return peer.uid == 0 || peer.uid == privileged_uid_;
}

Reply Service::handle(const std::shared_ptr<const Runtime>& rt, const Peer& peer, proto::Request& request) const {
    try {
        return std::visit(
            [&](auto& m) -> Reply {
                using T = std::decay_t<decltype(m)>;
                if constexpr (std::is_same_v<T, proto::AuthRequest>) return auth(rt, peer, m);
                else if constexpr (std::is_same_v<T, proto::AccountRequest>) return {account(*rt, m), nullptr};
                else if constexpr (std::is_same_v<T, proto::SessionRequest>) return {session(*rt, m), nullptr};
                else if constexpr (std::is_same_v<T, proto::StatusRequest>) return {status(*rt, peer), nullptr};
                else if constexpr (std::is_same_v<T, proto::ExplainRequest>) return {explain(*rt, peer, m), nullptr};
                else if constexpr (std::is_same_v<T, proto::ConvReply>)
                    return {verdict(Status::bad_request, "no conversation is in progress"), nullptr};
                else if constexpr (std::is_same_v<T, proto::PasswordRequest>) return change_password(rt, peer, m);
                else if constexpr (std::is_same_v<T, proto::CacheRequest>) return {cache(*rt, peer, m), nullptr};
                else return {nss(*rt, request), nullptr};
            },
            request);
    } catch (const std::exception& e) {
        log::error("request failed: ", log_safe(e.what()));
    } catch (...) {
        log::error("request failed: unknown exception");
    }
    return {verdict(Status::internal, "internal error in cvat-authd"), nullptr};
}

namespace {

// A login held on the server's timer (no thread): one the throttle let wait runs when woken;
// an answer to be padded is sent when woken.
class HeldLogin final : public Conversation {
public:
    using Run = std::function<std::pair<proto::Verdict, std::int64_t>()>;

    explicit HeldLogin(Run run) : run_(std::move(run)) {}
    explicit HeldLogin(proto::Verdict answer) : answer_(std::move(answer)) {}
    Step answer(const Secret&) override {
        return Step{verdict(Status::bad_request, "no answer was asked for"), 0};
    }
    Step wake() override {
        if (!answer_) {
            auto [v, at] = run_();
            if (at > proto::monotonic_ms()) {
                answer_ = std::move(v);
                return Step{std::nullopt, at};
            }
            return Step{std::move(v), 0};
        }
        return Step{std::move(*answer_), 0};
    }
    std::int64_t answer_deadline_ms() const override { return proto::monotonic_ms(); }

private:
    Run run_;
    std::optional<proto::Verdict> answer_;
};

// Root without an rhost is every local console, su and sudo at once: no peer of its own (one
// user's guessing must not slow everyone's su); the per-user rule still applies.
Throttle::Keys throttle_keys(const Peer& peer, const std::string& user, const std::string& rhost) {
    return Throttle::Keys{lower(user), peer.uid == 0 && rhost.empty()
                                           ? std::string()
                                           : "uid=" + std::to_string(peer.uid) + " rhost=" + rhost};
}

// The throttle's gate for one attempt (`what`: "login", "password change"; `failures`: what
// it counts, for the messages): a reply when the
// attempt is refused unchecked or held on the timer (`later()` then gives what runs when it
// wakes), nothing when it may run now.
std::optional<Reply> gate_attempt(Throttle& throttle, const ThrottleSettings& limits, const Throttle::Keys& keys,
                                  std::int64_t max_wait, const char* what, const char* failures,
                                  const std::string& user, const std::function<HeldLogin::Run()>& later) {
    const std::int64_t now = proto::monotonic_ms();
    Throttle::Gate gate = throttle.admit(limits, keys, now, std::max<std::int64_t>(max_wait, 0));
    if (gate.refused) {
        log::warning(what, " of ", log_safe(user), " from ", log_safe(keys.peer),
                     " refused unchecked: too many ", failures, " (helper.rate_limit)");
        return Reply{verdict(Status::auth_err, std::string("too many ") + failures + "; try again in a few seconds"),
                     nullptr};
    }
    if (gate.at_ms <= now) return std::nullopt;
    log::info(what, " of ", log_safe(user), " from ", log_safe(keys.peer), " held ", std::to_string(gate.at_ms - now),
              " ms after repeated failures (helper.rate_limit)");
    return Reply{verdict(Status::internal, ""), std::make_unique<HeldLogin>(later()), gate.at_ms};
}

// What a login's password is: a base64 SAMLResponse or a JWT, validated by the IdP that issued
// it (never sent anywhere), unless the admin pinned LDAP; else a password (or, empty, perhaps
// a device flow).
enum class Credential { password, assertion, token };
Credential credential_of(const Runtime& rt, const proto::AuthRequest& r) {
    if (r.method == proto::AuthMethod::device || r.idp == "ldap") return Credential::password;
    if (!rt.saml.empty() && looks_like_saml_response(r.password.view())) return Credential::assertion;
    if (!rt.oidc.empty() && (r.method == proto::AuthMethod::token || jwt::looks_like_jwt(r.password.view())))
        return Credential::token;
    return Credential::password;
}

}  // namespace

// A web server asks on every request: the same credentials again within helper.verdict_ttl
// are answered from memory, before any throttling (a guesser of this user's password must not
// slow down the user's own cached sessions).
std::optional<proto::Verdict> Service::cached_login(const Runtime& rt, const Route& route,
                                                    const proto::AuthRequest& r) const {
    if (!accounts_ || route.kind == Route::Kind::none) return std::nullopt;
    const std::string backend = route.kind == Route::Kind::ldap ? "ldap" : route.idp_config()->id;
    auto v = accounts_->cached_verdict(rt, backend, r.service, r.user, r.password);
    if (v) log::debug("verdict cache: ", log_safe(r.user), " answered from memory");
    return v;
}

std::optional<proto::Response> Service::answer_now(const Runtime& rt, const proto::Request& request) const {
    const auto* r = std::get_if<proto::AuthRequest>(&request);
    // Only a password login can be a cache hit (a device flow has none; tokens and assertions
    // are checked where auth() sends them). With the cache off no route is worked out here.
    if (r == nullptr || !accounts_ || rt.config.helper.verdict_ttl_ms <= 0 || r->password.empty() ||
        r->method == proto::AuthMethod::device || !plausible_user_name(r->user) ||
        credential_of(rt, *r) != Credential::password)
        return std::nullopt;
    try {
        if (auto v = cached_login(rt, route_user(rt, r->user, r->idp), *r)) return proto::Response{std::move(*v)};
    } catch (const std::exception& e) {
        log::error("verdict cache: ", log_safe(e.what()));  // the worker's way will answer
    } catch (...) {
        log::error("verdict cache: unknown exception");
    }
    return std::nullopt;
}

Reply Service::auth(const std::shared_ptr<const Runtime>& rt, const Peer& peer, proto::AuthRequest& r) const {
    if (!plausible_user_name(r.user)) return {verdict(Status::user_unknown, ""), nullptr};
    if (credential_of(*rt, r) == Credential::password) {
        Route route = route_user(*rt, r.user, r.idp);
        log::debug("route for ", log_safe(r.user), ": ", route.why);
        // method=auto with no password means "the device flow" only where an IdP can run one;
        // for the directory an empty password stays a refused password.
        const bool device = r.method == proto::AuthMethod::device ||
                            (r.method == proto::AuthMethod::automatic && r.password.empty() &&
                             route.kind == Route::Kind::oidc);
        if (device) {
            if (route.kind != Route::Kind::oidc)
                return {verdict(Status::not_supported,
                                "device login needs an OpenID Connect identity provider (" + route.why + ")"),
                        nullptr};
            return device_login(rt, route, r);
        }
        if (auto v = cached_login(*rt, route, r)) return {std::move(*v), nullptr};
    }

    const ThrottleSettings& limits = rt->config.helper.rate_limit;
    const Throttle::Keys keys = throttle_keys(peer, r.user, r.rhost);
    // The client waits timeout_ms for the answer; the check itself needs some of that.
    std::int64_t max_wait = limits.max_delay_ms;
    if (r.timeout_ms != 0) {
        const std::int64_t t = r.timeout_ms;
        max_wait = std::min(max_wait, t - std::max<std::int64_t>(2000, t / 4));
    }
    if (auto held = gate_attempt(*throttle_, limits, keys, max_wait, "login", "failed logins", r.user, [&]() -> HeldLogin::Run {
            auto request = std::make_shared<proto::AuthRequest>(std::move(r));
            return [this, rt, keys, request]() {
                Timed t = checked_login(*rt, keys, *request);
                return std::make_pair(std::move(t.verdict), t.answer_at_ms);
            };
        }))
        return std::move(*held);
    Timed t = checked_login(*rt, keys, r);
    if (t.answer_at_ms > proto::monotonic_ms())
        return {verdict(Status::internal, ""), std::make_unique<HeldLogin>(std::move(t.verdict)), t.answer_at_ms};
    return {std::move(t.verdict), nullptr};
}

void FailureTimes::record(const std::string& backend, std::int64_t ms) {
    std::lock_guard lock(mutex_);
    auto& ring = ring_[backend];
    std::size_t& next = next_[backend];
    if (ring.size() < kKept) ring.push_back(ms);
    else ring[next] = ms;
    next = (next + 1) % kKept;
}

std::int64_t FailureTimes::sample(const std::string& backend) {
    std::lock_guard lock(mutex_);
    auto it = ring_.find(backend);
    if (it == ring_.end() || it->second.empty()) return 0;
    // Timing only, not a secret: any uniform pick will do.
    thread_local std::minstd_rand pick(std::random_device{}());
    return it->second[pick() % it->second.size()];
}

Service::Timed Service::checked_login(const Runtime& rt, const Throttle::Keys& keys,
                                      const proto::AuthRequest& r) const {
    const std::int64_t started = proto::monotonic_ms();
    std::string backend;
    Timed t{run_login(rt, r, &backend), 0};
    const std::int64_t now = proto::monotonic_ms();
    const Status s = t.verdict.status;
    if (s == Status::auth_err || s == Status::user_unknown)
        throttle_->failed(rt.config.helper.rate_limit, keys, now);
    else if (s == Status::ok)
        throttle_->succeeded(keys);
    if (!backend.empty()) {
        // A known user's wrong password sets the pace; an unknown user's answer follows it.
        // (Empty passwords are refused before the directory: not a sample.)
        if (s == Status::auth_err && !r.password.empty()) failure_times_->record(backend, now - started);
        else if (s == Status::user_unknown) {
            // Never so long that the client gives up first (its timeout_ms, 0: pam_cvat's 10 s).
            const std::int64_t budget = (r.timeout_ms != 0 ? r.timeout_ms : 10000) / 2;
            t.answer_at_ms = started + std::min(failure_times_->sample(backend), budget);
        }
    }
    return t;
}

proto::Verdict Service::run_login(const Runtime& rt, const proto::AuthRequest& r, std::string* password_backend) const {
    // A SAMLResponse (issue 9) or a JWT (DESIGN.md §2) as the password is checked, never sent.
    switch (credential_of(rt, r)) {
        case Credential::assertion: return saml_assertion_login(rt, r);
        case Credential::token: return token_login(rt, r);
        case Credential::password: break;
    }
    Route route = route_user(rt, r.user, r.idp);
    if (route.kind != Route::Kind::none)
        *password_backend = route.kind == Route::Kind::ldap ? "ldap" : route.idp_config()->id;
    return password_login(rt, route, r);
}

proto::Verdict Service::password_login(const Runtime& rt, const Route& route, const proto::AuthRequest& r) const {
    if (route.kind == Route::Kind::none) return verdict(Status::user_unknown, route.why);
    const std::string backend = route.kind == Route::Kind::ldap ? "ldap" : route.idp_config()->id;
    proto::Verdict v;
    if (route.kind == Route::Kind::ldap) {
        LdapOutcome out = rt.ldap->authenticate(r.user, r.password);
        if (out.status == Status::ok) {
            v = ldap_verdict(out);
            if (accounts_) accounts_->learned_ldap(rt, r.user, out.user, &r.password);
            recent_->remember("ldap", v, {}, system_wall_clock());
            v.message = out.message;  // a password policy warning, shown once at login
        } else {
            v = verdict(out.status, out.message);
            // A user who proved the password but may not log in still gets the canonical
            // name, so the log and the message name the right account.
            if (out.status == Status::perm_denied) v.user = out.user.username;
        }
    } else if (route.kind == Route::Kind::saml) {
        v = saml_verdict(rt, *route.saml, route.saml->password_login(r.user, r.password), r.user, &r.password);
    } else {
        v = oidc_verdict(rt, *route.idp, route.idp->password_login(r.user, r.password), r.user, &r.password);
    }
    if (!accounts_) return v;
    if (v.status == Status::unavailable) {
        // No server answered: an offline login, if the admin turned them on.
        proto::Verdict off = accounts_->offline_login(rt, backend, r.user, r.password);
        if (off.status == Status::ok) {
            recent_->remember(backend, off, {"offline login: " + backend + " was unreachable"}, system_wall_clock());
            return off;
        }
        if (off.status == Status::auth_err) return off;
        return v;
    }
    if (v.status == Status::ok) accounts_->remember_verdict(rt, backend, r.service, r.user, r.password, v);
    else accounts_->forget_verdicts(r.user);
    return v;
}

proto::Verdict Service::token_login(const Runtime& rt, const proto::AuthRequest& r) const {
    OidcProvider* idp = nullptr;
    if (!r.idp.empty()) {
        for (const auto& p : rt.oidc)
            if (p->config().id == r.idp) idp = p.get();
        if (idp == nullptr) return verdict(Status::auth_err, "idp=" + r.idp + " names no OpenID Connect provider");
    } else {
        // Which IdP issued it: read the (untrusted) iss and compare it with each server_url,
        // which discovery requires to equal the issuer (give or take one trailing slash) — no
        // network, so one IdP that is down costs the others nothing. The chosen IdP then
        // checks iss exactly, with everything else.
        auto token = jwt::decode(r.password.view());
        if (!token) return verdict(Status::auth_err, "the token is malformed");
        const jwt::Json& iss = token->claims.contains("iss") ? token->claims["iss"] : jwt::Json();
        if (!iss.is_string()) return verdict(Status::auth_err, "the token has no issuer");
        std::string issuer = iss.get<std::string>();
        if (!issuer.empty() && issuer.back() == '/') issuer.pop_back();
        // Several entries may share an issuer (one IdP, several clients): the audience decides.
        const jwt::Json& aud = token->claims.contains("aud") ? token->claims["aud"] : jwt::Json();
        auto audience_has = [&aud](const std::string& client_id) {
            if (aud.is_string()) return aud.get<std::string>() == client_id;
            if (aud.is_array())
                for (const auto& a : aud)
                    if (a.is_string() && a.get<std::string>() == client_id) return true;
            return false;
        };
        for (const auto& p : rt.oidc) {
            if (p->config().server_url != issuer) continue;
            if (idp == nullptr || (!audience_has(idp->config().client_id) && audience_has(p->config().client_id)))
                idp = p.get();
        }
        if (idp == nullptr)
            return verdict(Status::auth_err, "the token's issuer is not a configured identity provider");
    }
    OidcOutcome out = idp->token_login(r.password);
    if (out.status == Status::ok) {
        // The token must be the named user's: otherwise a login as bob with alice's token
        // would become alice behind the service's back.
        const std::string who = lower(r.user);
        if (who != lower(out.user.username) && who != lower(out.user.email) && r.user != out.user.subject) {
            log::warning("token login as ", log_safe(r.user), " with a token of ", log_safe(out.user.username),
                         " refused");
            return verdict(Status::auth_err, "the token belongs to another user");
        }
    }
    return oidc_verdict(rt, *idp, out, r.user, nullptr);
}

Reply Service::device_login(const std::shared_ptr<const Runtime>& rt, const Route& route,
                            const proto::AuthRequest& r) const {
    OidcProvider* idp = route.idp;
    auto start = idp->device_start();
    if (!start) return {verdict(status_of(start.error().code), start.error().detail), nullptr};
    DeviceFlowOptions options;
    options.idp_name = idp->config().name;
    options.qr = (r.flags & proto::flag_no_qr) == 0;
    options.ascii_only = (r.flags & proto::flag_ascii_only) != 0;
    if (r.timeout_ms != 0) options.client_wait_ms = r.timeout_ms;
    DeviceFlowDeps deps;
    // The flow keeps the runtime it started on alive, across a reload.
    deps.poll = [rt, idp](const DeviceAuthorization& a) { return idp->device_poll(a); };
    deps.approved = [this, rt, idp, login = r.user](const OidcOutcome& out) {
        return oidc_verdict(*rt, *idp, out, login, nullptr);
    };
    deps.monotonic_ms = [] { return proto::monotonic_ms(); };
    deps.wall_s = [] { return system_wall_clock(); };
    auto flow = std::make_unique<DeviceFlow>(std::move(*start), std::move(options), std::move(deps));
    proto::Prompt prompt = flow->first_prompt();
    return {std::move(prompt), std::move(flow)};
}

proto::Verdict Service::oidc_verdict(const Runtime& rt, const OidcProvider& idp, const OidcOutcome& out,
                                     const std::string& login, const Secret* password) const {
    if (out.status != Status::ok) {
        proto::Verdict v = verdict(out.status, out.message);
        if (out.status == Status::perm_denied) v.user = out.user.username;
        return v;
    }
    const OidcUser& u = out.user;
    if (accounts_)
        if (auto refused = accounts_->learned_oidc(rt, idp.config(), login, u, password))
            return refusal(u.username, *refused);
    proto::Verdict v = signed_in(u.username, u.role.role, u.email, u.first_name, u.last_name, idp.config().id);
    recent_->remember(idp.config().id, v, out.trace, system_wall_clock());
    return v;
}

proto::Verdict Service::saml_assertion_login(const Runtime& rt, const proto::AuthRequest& r) const {
    // Which IdP: the (untrusted) Issuer against each entity_id; that IdP then checks it all.
    const std::string issuer = saml_response_issuer(r.password.view());
    SamlProvider* idp = nullptr;
    for (const auto& p : rt.saml)
        if (p->config().entity_id == issuer && (r.idp.empty() || r.idp == p->config().id)) idp = p.get();
    if (idp == nullptr) return verdict(Status::auth_err, "the SAMLResponse's issuer is not a configured identity provider");
    SamlOutcome out = idp->assertion_login(r.password);
    if (out.status == Status::ok) {
        // As for tokens: the assertion must be the named user's.
        const std::string who = lower(r.user);
        if (who != lower(out.user.username) && who != lower(out.user.email) && r.user != out.user.name_id) {
            log::warning("SAML assertion login as ", log_safe(r.user), " with an assertion of ",
                         log_safe(out.user.username), " refused");
            return verdict(Status::auth_err, "the assertion belongs to another user");
        }
    }
    return saml_verdict(rt, *idp, out, r.user, nullptr);
}

proto::Verdict Service::saml_verdict(const Runtime& rt, const SamlProvider& idp, const SamlOutcome& out,
                                     const std::string& login, const Secret* password) const {
    for (const auto& line : out.trace) log::debug("saml ", idp.config().id, ": ", line);
    if (out.status != Status::ok) {
        proto::Verdict v = verdict(out.status, out.message);
        if (out.status == Status::perm_denied) v.user = out.user.username;
        return v;
    }
    const SamlUser& u = out.user;
    if (accounts_)
        if (auto refused = accounts_->learned_saml(rt, idp.config(), login, u, password))
            return refusal(u.username, *refused);
    proto::Verdict v = signed_in(u.username, u.role.role, u.email, u.first_name, u.last_name, idp.config().id);
    recent_->remember(idp.config().id, v, out.trace, system_wall_clock());
    return v;
}

proto::Verdict Service::lookup(const Runtime& rt, const std::string& user, const std::string& idp,
                               bool account_phase) const {
    std::string backend = idp;
    if (backend.empty()) {
        Route route = route_user(rt, user, "");
        if (route.kind == Route::Kind::none) return verdict(Status::user_unknown, route.why);
        backend = route.kind == Route::Kind::ldap ? "ldap" : route.idp_config()->id;
    }
    if (backend == "ldap") {
        if (!rt.ldap) return verdict(Status::unavailable, kNoLdap);
        const std::int64_t now = system_wall_clock();
        // Right after a sign-in (nginx: authenticate, then account, on every request) the
        // sign-in's answer stands for helper.verdict_ttl, as the verdict itself does. With the
        // verdict cache off it still answers the account phase of the same PAM transaction
        // (a sign-in within the same second): the directory was asked a moment ago, and asking
        // again doubled the cost of every login (a user search and the group walk).
        const std::int64_t window =
            std::max<std::int64_t>(rt.config.helper.verdict_ttl_ms / 1000, account_phase ? kSameTransactionS : 0);
        if (window > 0)
            if (auto v = recent_->find("ldap", user, now, nullptr, window)) return *v;
        LdapOutcome out = rt.ldap->lookup(user);
        if (out.status == Status::unavailable) {
            // The directory is down: a user who signed in (offline, or just before) stays in.
            if (auto v = recent_->find("ldap", user, now)) return *v;
        }
        if (out.status != Status::ok) return verdict(out.status, out.message);
        if (account_phase && out.user.account_status != Status::ok) {
            // Locked, expired, or the password must change: the account phase says so.
            proto::Verdict v = verdict(out.user.account_status, out.user.account_message);
            v.user = out.user.username;
            return v;
        }
        return ldap_verdict(out);
    }
    if (auto v = recent_->find(backend, user, system_wall_clock())) return *v;
    return verdict(Status::user_unknown, "no recent sign-in of " + user + " through " + backend);
}

proto::Response Service::account(const Runtime& rt, const proto::AccountRequest& r) const {
    if (!plausible_user_name(r.user)) return verdict(Status::user_unknown, "");
    proto::Verdict v = lookup(rt, r.user, r.idp, true);
    if (v.status == Status::ok && v.role < r.require_role) {
        v.status = Status::perm_denied;
        v.message = std::string("access requires the CVAT role ") + proto::role_name(r.require_role) +
                    "; " + v.user + " has the role " + proto::role_name(v.role);
    }
    return v;
}

Reply Service::change_password(const std::shared_ptr<const Runtime>& rt, const Peer& peer,
                               proto::PasswordRequest& r) const {
    // chauthtok has no PAM_RHOST on the wire: the peer is the client's uid.
    const Throttle::Keys keys = throttle_keys(peer, r.user, "");
    const ThrottleSettings& limits = rt->config.helper.rate_limit;
    if (auto held = gate_attempt(*throttle_, limits, keys, limits.max_delay_ms, "password change", "failed attempts", r.user,
                                 [&]() -> HeldLogin::Run {
                                     auto request = std::make_shared<proto::PasswordRequest>(std::move(r));
                                     return [this, rt, keys, request]() {
                                         return std::make_pair(checked_change(*rt, keys, *request), std::int64_t{0});
                                     };
                                 }))
        return std::move(*held);
    return {checked_change(*rt, keys, r), nullptr};
}

proto::Verdict Service::checked_change(const Runtime& rt, const Throttle::Keys& keys,
                                       const proto::PasswordRequest& r) const {
    proto::Verdict v = run_change(rt, r);
    if (v.status == Status::auth_err || v.status == Status::user_unknown)
        throttle_->failed(rt.config.helper.rate_limit, keys, proto::monotonic_ms());
    else if (v.status == Status::ok)
        throttle_->succeeded(keys);
    return v;
}

proto::Verdict Service::run_change(const Runtime& rt, const proto::PasswordRequest& r) const {
    if (!plausible_user_name(r.user)) return verdict(Status::user_unknown, "");
    if (r.new_password.empty()) return verdict(Status::authtok_err, "the new password is empty");
    Route route = route_user(rt, r.user, "");
    if (route.kind == Route::Kind::none) return verdict(Status::user_unknown, route.why);
    if (route.kind == Route::Kind::oidc) {
        const IdentityProvider& idp = route.idp->config();
        return verdict(Status::not_supported, "your password belongs to " + idp.name + ": change it at " +
                                                  idp.server_url);
    }
    if (route.kind == Route::Kind::saml)
        return verdict(Status::not_supported, "your password belongs to " + route.saml->config().name +
                                                  ": change it there");
    LdapOutcome out = rt.ldap->change_password(r.user, r.old_password, r.new_password);
    proto::Verdict v = verdict(out.status, out.message);
    v.user = out.user.username;
    if (out.status == Status::ok) {
        v.message = "password changed";
        // Neither a web server's cached verdict nor an offline hash may keep the old password.
        if (accounts_) {
            accounts_->forget_credentials(r.user);
            if (!out.user.username.empty() && out.user.username != r.user)
                accounts_->forget_credentials(out.user.username);
        }
    }
    return v;
}

proto::Response Service::session(const Runtime& rt, const proto::SessionRequest& r) const {
    if (!r.open) return verdict(Status::ok, "");
    if (!plausible_user_name(r.user)) return verdict(Status::user_unknown, "");
    return lookup(rt, r.user, r.idp);
}

proto::Response Service::status(const Runtime& rt, const Peer& peer) const {
    proto::StatusReply s;
    s.version = CVAT_AUTH_VERSION;
    s.uptime_s = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                std::chrono::steady_clock::now() - started_)
                                                .count());
    // Probing opens connections: only root and the daemon's user may ask for it.
    if (!privileged(peer)) {
        s.backends.push_back({"backends", false, "not shown: run as root to probe the servers"});
        return s;
    }
    if (rt.ldap) {
        for (auto& b : rt.ldap->probe()) s.backends.push_back(std::move(b));
    }
    const Throttle::Stats t = throttle_->stats();
    s.backends.push_back({"rate_limit", true,
                          std::to_string(t.users) + " user names and " + std::to_string(t.peers) +
                              " peers with recent failures (at most " +
                              std::to_string(rt.config.helper.rate_limit.max_entries) + " each); " +
                              std::to_string(t.delayed) + " logins delayed, " + std::to_string(t.refused) +
                              " refused"});
    for (const auto& p : rt.oidc) s.backends.push_back(p->probe());
    for (const auto& p : rt.saml) s.backends.push_back(p->probe());
    if (rt.config.sso.configured) {
        if (!rt.config.sso.enabled)
            s.backends.push_back({"sso", false, "sso.enabled is false: identity providers are not used"});
    }
    return s;
}

proto::Response Service::explain(const Runtime& rt, const Peer& peer, const proto::ExplainRequest& r) const {
    proto::ExplainReply e;
    if (!privileged(peer)) {
        e.status = Status::perm_denied;
        e.lines.push_back("explain shows group memberships: run it as root");
        return e;
    }
    if (!plausible_user_name(r.user)) {
        e.status = Status::user_unknown;
        e.lines.push_back("the user name is empty or holds control characters");
        return e;
    }
    Route route = route_user(rt, r.user, "");
    e.lines.push_back("backend: " + route.why);
    if (route.kind == Route::Kind::none) {
        e.status = Status::user_unknown;
        return e;
    }
    if (route.kind == Route::Kind::ldap) {
        LdapOutcome out = rt.ldap->explain(r.user);
        e.status = out.status;
        e.role = out.user.role.role;
        e.lines.insert(e.lines.end(), out.trace.begin(), out.trace.end());
        if (out.trace.empty() && !out.message.empty()) e.lines.push_back(out.message);
        return e;
    }
    const IdentityProvider& idp = *route.idp_config();
    if (route.kind == Route::Kind::saml) {
        const SamlSpIdentity& sp = route.saml->sp();
        e.lines.push_back("identity provider: " + idp.id + " (" + idp.name + "), SAML " + idp.entity_id);
        e.lines.push_back("our SP: " + sp.entity_id + ", ACS " + sp.acs_url);
        proto::BackendState b = route.saml->probe();
        e.lines.push_back("metadata: " + b.detail);
        std::string mapping;
        for (const auto& [k, v] : idp.attribute_mapping) mapping += (mapping.empty() ? "" : ", ") + k + "=" + v;
        e.lines.push_back("attribute_mapping: " + mapping);
        e.lines.push_back("role attribute: " + (idp.role_attribute.empty()
                                                    ? std::string("(none: every user gets default_role)")
                                                    : idp.role_attribute));
    } else {
        e.lines.push_back("identity provider: " + idp.id + " (" + idp.name + "), " + idp.server_url);
        e.lines.push_back("role claim: " + (idp.role_claim.empty() ? std::string("(none: every user gets default_role)")
                                                                   : idp.role_claim));
    }
    for (auto role : {Role::admin, Role::user, Role::worker}) {
        const auto& values = idp.role_values[static_cast<std::size_t>(role)];
        std::string list;
        for (const auto& v : values) list += (list.empty() ? "" : ", ") + v;
        if (!list.empty()) e.lines.push_back(std::string("role_values.") + proto::role_name(role) + ": " + list);
    }
    std::vector<std::string> trace;
    if (auto v = recent_->find(idp.id, r.user, system_wall_clock(), &trace)) {
        e.status = Status::ok;
        e.role = v->role;
        e.lines.push_back("last sign-in (within 10 minutes):");
        for (auto& line : trace) e.lines.push_back("  " + line);
        e.lines.push_back(std::string("role: ") + proto::role_name(v->role));
    } else {
        e.status = Status::user_unknown;
        e.lines.push_back("no sign-in through " + idp.id +
                          " lately: an IdP cannot be asked about a user without the user's credentials; "
                          "run `cvat-authctl login " + r.user + "` to see the claims and the role they give");
    }
    return e;
}

proto::Response Service::nss(const Runtime& rt, const proto::Request& request) const {
    return std::visit(
        [&](const auto& m) -> proto::Response {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, proto::PasswdByName>) {
                if (!accounts_) return proto::PasswdReply{Status::not_supported, {}, 0, 0, {}, {}, {}};
                return accounts_->passwd_by_name(rt, m.name);
            } else if constexpr (std::is_same_v<T, proto::PasswdByUid>) {
                if (!accounts_) return proto::PasswdReply{Status::not_supported, {}, 0, 0, {}, {}, {}};
                return accounts_->passwd_by_uid(rt, m.uid);
            } else if constexpr (std::is_same_v<T, proto::GroupByName>) {
                if (!accounts_) return proto::GroupReply{Status::not_supported, {}, 0, {}};
                return accounts_->group_by_name(rt, m.name);
            } else if constexpr (std::is_same_v<T, proto::GroupByGid>) {
                if (!accounts_) return proto::GroupReply{Status::not_supported, {}, 0, {}};
                return accounts_->group_by_gid(rt, m.gid);
            } else if constexpr (std::is_same_v<T, proto::InitGroups>) {
                if (!accounts_) return proto::GroupsReply{Status::not_supported, {}};
                return accounts_->init_groups(rt, m.user);
            } else {
                return verdict(Status::bad_request, "not an NSS request");
            }
        },
        request);
}

proto::Response Service::cache(const Runtime& rt, const Peer& peer, const proto::CacheRequest& r) const {
    proto::CacheReply c;
    if (!privileged(peer)) {
        c.status = Status::perm_denied;
        c.lines.push_back("the cache holds user data: run cvat-authctl cache as root");
        return c;
    }
    if (r.op == proto::CacheOp::expire || r.op == proto::CacheOp::flush) {
        recent_->clear();
        if (rt.ldap) rt.ldap->forget_groups();
    }
    if (!accounts_) {
        c.status = Status::not_supported;
        c.lines.push_back("this daemon runs without a cache");
        return c;
    }
    return accounts_->cache(rt, r);
}

std::string describe_response(const proto::Response& response) {
    return std::visit(
        [](const auto& m) -> std::string {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, proto::Verdict>) {
                std::string s = proto::status_name(m.status);
                if (!m.user.empty()) s += " user=" + log_safe(m.user);
                if (m.status == Status::ok) s += std::string(" role=") + proto::role_name(m.role);
                if (auto idp = m.attribute("idp"); !idp.empty()) s += " idp=" + log_safe(idp);
                if (m.status != Status::ok && !m.message.empty()) s += " (" + log_safe(m.message) + ")";
                return s;
            } else if constexpr (std::is_same_v<T, proto::Prompt>) {
                return "prompt";
            } else if constexpr (std::is_same_v<T, proto::StatusReply>) {
                return "status";
            } else {
                return proto::status_name(m.status);
            }
        },
        response);
}

}  // namespace cvat::helper
