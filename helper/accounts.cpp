// SPDX-License-Identifier: GPL-3.0-or-later
#include "accounts.hpp"

#include <algorithm>
#include <chrono>
#include <map>

#include <csignal>
#include <cstring>
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <pthread.h>

#include "ldap_backend.hpp"
#include "ldap_text.hpp"
#include "log.hpp"
#include "nss_mc_writer.hpp"
#include "oidc.hpp"
#include "saml.hpp"
#include "service.hpp"
#include "transport.hpp"

namespace cvat::helper {

using proto::Role;
using proto::Status;

namespace {

constexpr std::size_t kMaxCachedUsers = 1'000'000;   // published and listed at most
constexpr std::size_t kMaxRefreshQueue = 1000;
constexpr std::int64_t kPermanent = std::int64_t{1} << 62;  // IdP users: kept until a login or flush
constexpr auto kCoalesce = std::chrono::milliseconds(200);   // changes within this share one publish
// ... or within kCoalesceFactor times what the last publication took, if that is longer (up to
// kCoalesceMax): a publication reads and rewrites every cached user (about 10 us each), so with
// tens of thousands cached and logins of new users arriving without pause, a fixed 200 ms
// would keep a core busy publishing. Capped near 10 % of a core; the users a pending
// publication would add are answered through the socket meanwhile (from the cache).
constexpr int kCoalesceFactor = 9;
constexpr auto kCoalesceMax = std::chrono::seconds(5);
constexpr int kPublisherNice = 10;  // the publisher thread's nice value (see publisher_loop)
constexpr auto kCheckpointEvery = std::chrono::seconds(1);  // without publications (publisher_loop)

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::int64_t now_s() { return system_wall_clock(); }

// %u of the home template: a name is a path component, never a path.
std::string path_safe(std::string_view name) {
    std::string out(name);
    for (char& c : out)
        if (c == '/') c = '_';
    if (out == "." || out == "..") out = "_" + out;
    return out;
}

template <typename T>
std::optional<T> logged(Result<T> r, const char* what) {
    if (!r) {
        log::error("cache: ", what, ": ", r.error().detail);
        return std::nullopt;
    }
    return std::move(*r);
}

bool logged(Result<void> r, const char* what) {
    if (!r) {
        log::error("cache: ", what, ": ", r.error().detail);
        return false;
    }
    return true;
}

std::string describe_time(std::int64_t t) {
    if (t <= 0) return "expired";
    if (t >= kPermanent) return "until the next login or flush";
    char buf[32];
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// A subject (immutable id) as a log may show it: the first 12 hex digits of its SHA-256, enough
// to tell two apart and to match a line against `cache show`, without writing out a pairwise
// sub or a NameID.
std::string subject_tag(std::string_view subject) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(subject.data(), subject.size(), md, &len, EVP_sha256(), nullptr) != 1 || len < 6) return "?";
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned i = 0; i < 6; ++i) {
        out += kHex[md[i] >> 4];
        out += kHex[md[i] & 0xf];
    }
    return out;
}

}  // namespace

std::string name_seed(const std::string& idp, const std::string& name) { return "provisional:" + idp + ":" + lower(name); }

std::string directory_group_name(const std::string& dn) {
    // The first RDN's value, unescaped the simple way: DNs with escapes in the first RDN
    // are rare for groups and are skipped rather than guessed.
    auto eq = dn.find('=');
    if (eq == std::string::npos) return {};
    std::string value;
    for (std::size_t i = eq + 1; i < dn.size(); ++i) {
        char c = dn[i];
        if (c == ',' || c == '+') break;
        if (c == '\\' || c == '"') return {};
        value.push_back(c);
    }
    while (!value.empty() && value.back() == ' ') value.pop_back();
    if (value.empty() || value.size() > 64 || !plausible_user_name(value) || value.find(':') != std::string::npos)
        return {};
    return value;
}

Result<std::unique_ptr<Accounts>> Accounts::open(const std::string& cache_dir, std::string mc_path) {
    auto store = CacheStore::open(cache_dir);
    if (!store) return tl::unexpected(store.error());
    return std::unique_ptr<Accounts>(new Accounts(std::move(*store), std::move(mc_path)));
}

Accounts::Accounts(std::unique_ptr<CacheStore> store, std::string mc_path)
    : store_(std::move(store)), mc_(std::move(mc_path)) {
    // The threads take no signals: SIGHUP and SIGTERM belong to the server's signalfd, and a
    // thread that left them unblocked would die of them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    publisher_ = std::thread([this] { publisher_loop(); });
    refresher_ = std::thread([this] { refresher_loop(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

Accounts::~Accounts() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (publisher_.joinable()) publisher_.join();
    if (refresher_.joinable()) refresher_.join();
}

void Accounts::use(std::shared_ptr<const Runtime> rt) {
    {
        std::lock_guard lock(mutex_);
        rt_ = std::move(rt);
        dirty_ = true;
    }
    verdicts_.clear();
    wake_.notify_all();
}

std::shared_ptr<const Runtime> Accounts::current() const {
    std::lock_guard lock(mutex_);
    return rt_;
}

// ---- building entries

std::vector<std::uint32_t> Accounts::reserved_ids(const Runtime& rt) const {
    std::vector<std::uint32_t> ids;
    for (std::size_t r = 1; r < rt.config.nss.role_groups.size(); ++r) ids.push_back(rt.config.nss.role_groups[r].gid);
    return ids;
}

void Accounts::fill_posix(const Runtime& rt, CachedUser& u) const {
    const NssSettings& nss = rt.config.nss;
    std::string gecos = u.first_name;
    if (!u.last_name.empty()) gecos += (gecos.empty() ? "" : " ") + u.last_name;
    // ':' and newlines would break every passwd parser downstream.
    for (char& c : gecos)
        if (c == ':' || c == '\n' || c == ',') c = ' ';
    u.gecos = gecos;
    std::string home;
    for (std::size_t i = 0; i < nss.home.size(); ++i) {
        if (nss.home[i] == '%' && i + 1 < nss.home.size() && nss.home[i + 1] == 'u') {
            home += path_safe(u.name);
            ++i;
        } else {
            home.push_back(nss.home[i]);
        }
    }
    u.home = home;
    u.shell = nss.shell;
}

bool Accounts::assign_ids(const Runtime& rt, CachedUser& u, std::optional<std::uint32_t> uid_number,
                          std::optional<std::uint32_t> gid_number) {
    const NssSettings& nss = rt.config.nss;
    if (uid_number) {
        u.uid = *uid_number;
    } else {
        auto id = logged(store_->assign_id(u.immutable_id, IdRange{nss.id_min, nss.id_max}, reserved_ids(rt)),
                         "assigning an ID");
        if (!id) return false;
        u.uid = *id;
    }
    // Without a gidNumber the primary group is the user's own (a user private group, gid = uid).
    u.gid = gid_number ? *gid_number : u.uid;
    return true;
}

namespace {

// "root" is the host's own superuser, never a directory's or an IdP's user (as SSSD's default
// filter_users): no lookup of that name asks a backend, and no answer under it is stored,
// published or given, so the NSS module never names a directory account root, and initgroups
// of root never adds a directory's groups.
bool reserved_name(const std::string& name) { return name == "root"; }

}  // namespace

Accounts::Fetch Accounts::store_ldap(const Runtime& rt, const LdapUser& lu, CachedUser& out) {
    if (reserved_name(lu.username)) {
        log::warning("nss: the directory's ", log_safe(lu.dn), " is named root: not a user of this host");
        return Fetch::not_found;
    }
    const NssSettings& nss = rt.config.nss;
    const std::int64_t now = now_s();
    CachedUser u;
    u.name = lu.username;
    u.backend = "ldap";
    u.immutable_id = lu.immutable_id.empty() ? "dn:" + lower(lu.dn) : lu.immutable_id;
    u.role = lu.role.role;
    u.email = lu.email;
    u.first_name = lu.first_name;
    u.last_name = lu.last_name;
    u.dn = lu.dn;
    if (nss.directory_groups) {
        for (const std::string& dn : lu.groups) {
            std::string gname = directory_group_name(dn);
            if (gname.empty()) continue;
            auto normal = normalize_dn(dn);
            auto gid = logged(store_->assign_id("group:" + (normal ? *normal : lower(dn)),
                                                IdRange{nss.id_min, nss.id_max}, reserved_ids(rt)),
                              "assigning a group ID");
            if (gid) u.groups.emplace_back(gname, *gid);
        }
    }
    u.fetched_at = now;
    u.expires_at = now + nss.cache_ttl_s;
    fill_posix(rt, u);
    if (!assign_ids(rt, u, lu.uid_number, lu.gid_number)) return Fetch::unavailable;
    // A login that learns what the cache already holds leaves the row and the published file
    // alone (no write, no republish) while the row is young: under half of the time after
    // which it leaves nss.mc (refresh_percent of cache_ttl), so a user who keeps logging in
    // still has the expiry moved on in time.
    const std::int64_t young = nss.cache_ttl_s * (nss.refresh_percent > 0 ? nss.refresh_percent : 100) / 200;
    // Known without a read transaction when the store wrote or read the row last.
    if (auto t = store_->same_as_stored(u); t && t->expires_at > now && now - t->fetched_at < young) {
        u.fetched_at = t->fetched_at;
        u.expires_at = t->expires_at;
        out = std::move(u);
        return Fetch::found;
    }
    std::optional<CachedUser> before;
    if (auto b = logged(store_->user_by_name(u.name), "reading a user")) before = std::move(*b);
    if (before && before->expires_at > now && now - before->fetched_at < young && facts_of(*before) == facts_of(u)) {
        out = std::move(*before);
        return Fetch::found;
    }
    if (!logged(store_->put_user(u), "storing a user")) return Fetch::unavailable;
    // Before the answer goes out, so that a getgrnam() or initgroups() that follows is not
    // answered by the file of 200 ms ago: a user the published file shows with other groups
    // (another role, a group lost) takes the file away; a user new to it only marks its
    // groups stale (the file's other users are still right, and this one is not in it).
    const bool in_file = listed(before, now);
    if (in_file && (before->role != u.role || before->groups != u.groups || before->gid != u.gid || before->uid != u.uid))
        withdraw_now();
    else if (!in_file && !mc_.path().empty() && (u.role != Role::none || !u.groups.empty()))
        mc_.groups_joined();
    changed();
    out = std::move(u);
    return Fetch::found;
}

Accounts::Fetch Accounts::fetch_ldap(const Runtime& rt, const std::string& name, CachedUser& out) {
    if (!rt.ldap) return Fetch::not_found;
    LdapOutcome o = rt.ldap->lookup(name);
    switch (o.status) {
        case Status::ok: return store_ldap(rt, o.user, out);
        case Status::user_unknown:
        case Status::perm_denied:  // disabled, or no CVAT role: not a CVAT user of this host
        case Status::acct_expired: {
            const std::int64_t now = now_s();
            // A user the published file still shows (in a role group too) takes it away before
            // the answer goes out; a row that had expired already is not in it.
            auto shown = [&](const std::string& n) {
                auto u = store_->user_by_name(n);
                return u && listed(*u, now);
            };
            bool gone = false;
            if (!o.user.username.empty() && o.user.username != name) {
                gone = shown(o.user.username);
                (void)store_->expire(o.user.username);
            }
            gone = shown(name) || gone;
            (void)store_->expire(name);
            if (gone) withdraw_now();
            if (rt.config.nss.negative_ttl_s > 0)
                logged(store_->put_negative("user", name, now + rt.config.nss.negative_ttl_s), "negative entry");
            changed();
            return Fetch::not_found;
        }
        default:
            log::debug("nss: lookup of ", log_safe(name), " in the directory: ", o.message);
            return Fetch::unavailable;
    }
}

std::optional<CachedUser> Accounts::provisional(const Runtime& rt, const std::string& name, const std::string& idp) {
    const std::int64_t now = now_s();
    CachedUser u;
    u.name = name;
    u.backend = idp;
    u.immutable_id = name_seed(idp, name);
    u.role = Role::none;
    u.provisional = true;
    u.fetched_at = now;
    u.expires_at = now + rt.config.nss.cache_ttl_s;
    fill_posix(rt, u);
    if (!assign_ids(rt, u, std::nullopt, std::nullopt)) return std::nullopt;
    if (!logged(store_->put_user(u), "storing a provisional user")) return std::nullopt;
    changed();
    return u;
}

bool Accounts::fresh(const CachedUser& u, std::int64_t now) const { return u.expires_at > now; }

bool Accounts::listed(const std::optional<CachedUser>& u, std::int64_t now) const {
    return u && fresh(*u, now) && !u->provisional;
}

void Accounts::maybe_refresh(const Runtime& rt, const CachedUser& u, std::int64_t now) {
    const NssSettings& nss = rt.config.nss;
    if (u.backend != "ldap" || nss.refresh_percent == 0) return;
    if ((now - u.fetched_at) * 100 < nss.cache_ttl_s * static_cast<std::int64_t>(nss.refresh_percent)) return;
    {
        std::lock_guard lock(mutex_);
        if (refresh_queue_.size() >= kMaxRefreshQueue || !refresh_pending_.insert(u.name).second) return;
        refresh_queue_.push_back(u.name);
    }
    wake_.notify_all();
}

Accounts::Fetch Accounts::resolve_name(const Runtime& rt, const std::string& name, CachedUser& out) {
    const std::int64_t now = now_s();
    std::optional<CachedUser> cached;
    if (auto c = logged(store_->user_by_name(name), "reading a user")) cached = std::move(*c);
    if (cached && fresh(*cached, now)) {
        maybe_refresh(rt, *cached, now);
        out = std::move(*cached);
        return Fetch::found;
    }
    if (auto neg = logged(store_->negative("user", name, now), "reading a negative entry"); neg && *neg)
        return Fetch::not_found;

    Route route = route_user(rt, name, "");
    switch (route.kind) {
        case Route::Kind::ldap: {
            Fetch f = fetch_ldap(rt, name, out);
            // The directory is down: what the cache knows still stands (offline).
            if (f == Fetch::unavailable && cached && cached->backend == "ldap" && cached->expires_at > 0) {
                out = std::move(*cached);
                return Fetch::found;
            }
            return f;
        }
        case Route::Kind::oidc:
        case Route::Kind::saml: {
            // An IdP cannot be asked about a user: its users are known from their logins.
            const std::string idp = route.idp_config()->id;
            if (cached && cached->backend == idp && cached->expires_at > 0) {
                out = std::move(*cached);
                return Fetch::found;
            }
            if (rt.config.nss.provisional_users) {
                if (auto p = provisional(rt, name, idp)) {
                    out = std::move(*p);
                    return Fetch::found;
                }
                return Fetch::unavailable;
            }
            break;
        }
        case Route::Kind::none: break;
    }
    if (rt.config.nss.negative_ttl_s > 0)
        logged(store_->put_negative("user", name, now + rt.config.nss.negative_ttl_s), "negative entry");
    return Fetch::not_found;
}

// ---- NSS answers

proto::PasswdReply Accounts::passwd_reply(const CachedUser& u) const {
    proto::PasswdReply r;
    r.status = Status::ok;
    r.name = u.name;
    r.uid = u.uid;
    r.gid = u.gid;
    r.gecos = u.gecos;
    r.dir = u.home;
    r.shell = u.shell;
    return r;
}

namespace {

bool nss_name_ok(const std::string& name) {
    return plausible_user_name(name) && name.size() <= 255 && name.find(':') == std::string::npos &&
           !reserved_name(name);
}

}  // namespace

proto::PasswdReply Accounts::passwd_by_name(const Runtime& rt, const std::string& name) {
    proto::PasswdReply r;
    if (!nss_name_ok(name)) return r;  // not_found
    CachedUser u;
    switch (resolve_name(rt, name, u)) {
        case Fetch::found: return passwd_reply(u);
        case Fetch::not_found: return r;
        case Fetch::unavailable: r.status = Status::unavailable; return r;
    }
    return r;
}

proto::PasswdReply Accounts::passwd_by_uid(const Runtime& rt, std::uint32_t uid) {
    proto::PasswdReply r;
    if (uid == 0) return r;
    const std::int64_t now = now_s();
    if (auto c = logged(store_->user_by_uid(uid), "reading a user"); c && *c) {
        CachedUser u = std::move(**c);
        if (fresh(u, now)) {
            maybe_refresh(rt, u, now);
            return passwd_reply(u);
        }
        CachedUser again;
        Fetch f = resolve_name(rt, u.name, again);
        if (f == Fetch::found && again.uid == uid) return passwd_reply(again);
        if (f == Fetch::unavailable) {
            if (u.expires_at > 0) return passwd_reply(u);
            r.status = Status::unavailable;
        }
        return r;
    }
    const std::string key = std::to_string(uid);
    if (auto neg = logged(store_->negative("uid", key, now), "reading a negative entry"); neg && *neg) return r;
    if (!rt.ldap) return r;
    LdapOutcome o = rt.ldap->lookup_uid(uid);
    if (o.status == Status::ok) {
        CachedUser u;
        const Fetch f = store_ldap(rt, o.user, u);
        if (f == Fetch::found && u.uid == uid) return passwd_reply(u);
        if (f != Fetch::not_found) r.status = Status::unavailable;
        return r;
    }
    if (o.status == Status::unavailable || o.status == Status::internal) {
        r.status = Status::unavailable;
        return r;
    }
    if (rt.config.nss.negative_ttl_s > 0)
        logged(store_->put_negative("uid", key, now + rt.config.nss.negative_ttl_s), "negative entry");
    return r;
}

std::vector<std::uint32_t> Accounts::supplementary_gids(const Runtime& rt, const CachedUser& u) const {
    std::vector<std::uint32_t> gids;
    if (u.role != Role::none) gids.push_back(rt.config.nss.role_groups[static_cast<std::size_t>(u.role)].gid);
    if (rt.config.nss.directory_groups)
        for (const auto& g : u.groups) gids.push_back(g.second);
    std::sort(gids.begin(), gids.end());
    gids.erase(std::unique(gids.begin(), gids.end()), gids.end());
    return gids;
}

std::optional<proto::GroupReply> Accounts::role_group(const Runtime& rt, std::optional<std::string> name,
                                                      std::optional<std::uint32_t> gid) {
    const auto& groups = rt.config.nss.role_groups;
    for (std::size_t r = 1; r < groups.size(); ++r) {
        if ((name && *name != groups[r].name) || (gid && *gid != groups[r].gid)) continue;
        proto::GroupReply g;
        g.status = Status::ok;
        g.name = groups[r].name;
        g.gid = groups[r].gid;
        if (auto members = logged(store_->role_members(static_cast<int>(r), proto::kMaxMembers + 1), "listing a role's members")) {
            g.members = std::move(*members);
            if (g.members.size() > proto::kMaxMembers) {
                log::warning("nss: group ", g.name, " has more than ", std::to_string(proto::kMaxMembers),
                             " cached members; the socket answer lists the first ones");
                g.members.resize(proto::kMaxMembers);
            }
        }
        return g;
    }
    return std::nullopt;
}

proto::GroupReply Accounts::group_by_name(const Runtime& rt, const std::string& name) {
    proto::GroupReply r;
    if (!nss_name_ok(name)) return r;
    if (auto g = role_group(rt, name, std::nullopt)) return *g;
    // The user's private group.
    if (auto c = logged(store_->user_by_name(name), "reading a user"); c && *c && (*c)->gid == (*c)->uid &&
                                                                        (*c)->expires_at > 0) {
        r.status = Status::ok;
        r.name = (*c)->name;
        r.gid = (*c)->gid;
        return r;
    }
    if (rt.config.nss.directory_groups) directory_group(name, 0, r);
    return r;
}

void Accounts::directory_group(const std::string& name, std::uint32_t gid, proto::GroupReply& r) {
    auto found = logged(store_->group_members(name, gid, proto::kMaxMembers), "listing a group's members");
    if (!found || found->name.empty()) return;
    r.status = Status::ok;
    r.name = std::move(found->name);
    r.gid = found->gid;
    r.members = std::move(found->members);
}

proto::GroupReply Accounts::group_by_gid(const Runtime& rt, std::uint32_t gid) {
    proto::GroupReply r;
    if (gid == 0) return r;
    if (auto g = role_group(rt, std::nullopt, gid)) return *g;
    if (auto c = logged(store_->user_by_uid(gid), "reading a user"); c && *c && (*c)->gid == gid &&
                                                                       (*c)->expires_at > 0) {
        r.status = Status::ok;
        r.name = (*c)->name;
        r.gid = gid;
        return r;
    }
    if (rt.config.nss.directory_groups) directory_group("", gid, r);
    return r;
}

proto::GroupsReply Accounts::init_groups(const Runtime& rt, const std::string& user) {
    proto::GroupsReply r;
    if (!nss_name_ok(user)) return r;
    CachedUser u;
    switch (resolve_name(rt, user, u)) {
        case Fetch::found:
            r.status = Status::ok;
            r.gids = supplementary_gids(rt, u);
            return r;
        case Fetch::not_found: return r;
        case Fetch::unavailable: r.status = Status::unavailable; return r;
    }
    return r;
}

// ---- what logins teach

void Accounts::learned_ldap(const Runtime& rt, const std::string& login, const LdapUser& user,
                            const Secret* password) {
    CachedUser u;
    store_ldap(rt, user, u);
    OfflineEntry e;
    e.backend = "ldap";
    e.role = user.role.role;
    e.email = user.email;
    e.first_name = user.first_name;
    e.last_name = user.last_name;
    keep_offline(rt, login, password, std::move(e));
}

void Accounts::keep_offline(const Runtime& rt, const std::string& login, const Secret* password, OfflineEntry e) {
    if (password == nullptr || password->empty() || !rt.config.helper.offline.enabled) return;
    const std::string key = lower(login);
    if (!offline_recent_.needs_rehash(key, *password)) return;  // this process hashed the same password
    auto hash = logged(offline_hash(*password), "hashing for offline logins");
    if (!hash) return;
    e.name = key;
    e.hash = std::move(*hash);
    e.stored_at = now_s();
    if (logged(store_->put_offline(e), "storing offline credentials")) offline_recent_.hashed(key, *password);
}

std::optional<Accounts::Refusal> Accounts::learned_idp(const Runtime& rt, const IdentityProvider& idp,
                                                       const std::string& login, const IdpUserFacts& f,
                                                       const Secret* password) {
    const NssSettings& nss = rt.config.nss;
    const std::int64_t now = now_s();
    CachedUser u;
    u.name = f.username;
    u.backend = idp.id;
    u.immutable_id = f.immutable_id;
    u.role = f.role;
    u.email = f.email;
    u.first_name = f.first_name;
    u.last_name = f.last_name;
    u.fetched_at = now;
    u.expires_at = kPermanent;
    fill_posix(rt, u);
    if (!f.has_subject || !nss_name_ok(u.name)) return std::nullopt;
    bool republish = false, joined = false;
    {
        std::lock_guard lock(learn_mutex_);
        auto read = logged(store_->user_by_name(u.name), "reading a user");
        if (!read) return Refusal{Status::unavailable, "the host's user cache cannot be read; try again later"};
        const std::optional<CachedUser>& known = *read;
        // New to the published file: its role group's member list is behind until the next one.
        joined = u.role != Role::none && !listed(known, now);
        if (!nss.provisional_users) {
            // The UID follows the subject (iss + sub): a name the IdP hands to someone else
            // becomes another user of the host.
            if (!assign_ids(rt, u, std::nullopt, std::nullopt)) return std::nullopt;
        } else {
            // The UID follows the name (name_seed), as the provisional entry's did; the subject
            // recorded at the first login must not change under it.
            const bool bound = known && known->backend == idp.id && !known->provisional;
            if (bound && known->expires_at > 0 && known->immutable_id != u.immutable_id) {
                log::warning("login of ", log_safe(u.name), " at ", idp.id, " refused: on this host the name belongs to ",
                             "subject ", subject_tag(known->immutable_id), " (uid ", std::to_string(known->uid),
                             "), the IdP now signed in subject ", subject_tag(u.immutable_id),
                             "; if the IdP gave the name to someone else, `cvat-authctl cache expire ", log_safe(u.name),
                             "` hands it over, with its uid");
                return Refusal{Status::perm_denied, "On this host the name " + u.name + " belongs to another " + idp.name +
                                                        " account; ask an administrator"};
            }
            if (bound && known->immutable_id == u.immutable_id) {
                // The same user again: the entry keeps its IDs (one made while provisional_users
                // was off keeps the UID from its subject).
                u.uid = known->uid;
                u.gid = known->gid;
            } else {
                // First login, or after a provisional entry or an admin's expire/flush: the ID
                // map's entry for the name if it has one (collisions make it differ from
                // candidate 0), else the first free candidate.
                auto id = logged(store_->assign_id(name_seed(idp.id, u.name), IdRange{nss.id_min, nss.id_max},
                                                   reserved_ids(rt)),
                                 "assigning an ID");
                if (!id) return std::nullopt;
                u.uid = *id;
                u.gid = u.uid;
            }
            // The mapped file still shows a provisional entry (no role group) or an old role:
            // rewritten before the verdict goes out, so the initgroups() that follows a login
            // (sshd's session) sees the new one, not the file of 200 ms from now.
            republish = known && fresh(*known, now) && (known->provisional || known->role != u.role ||
                                                       known->uid != u.uid || known->gid != u.gid);
        }
        if (!logged(store_->put_user(u), "storing a user")) return std::nullopt;
    }
    if (republish) {
        publish_now();
    } else {
        if (joined && !mc_.path().empty()) mc_.groups_joined();
        changed();
    }
    OfflineEntry e;
    e.backend = idp.id;
    e.role = f.role;
    e.email = f.email;
    e.first_name = f.first_name;
    e.last_name = f.last_name;
    keep_offline(rt, login, password, std::move(e));
    return std::nullopt;
}

std::optional<Accounts::Refusal> Accounts::learned_oidc(const Runtime& rt, const IdentityProvider& idp,
                                                        const std::string& login, const OidcUser& ou,
                                                        const Secret* password) {
    return learned_idp(rt, idp, login,
                       {ou.username, "oidc:" + ou.issuer + " " + ou.subject, ou.role.role, ou.email, ou.first_name,
                        ou.last_name, !ou.subject.empty()},
                       password);
}

std::optional<Accounts::Refusal> Accounts::learned_saml(const Runtime& rt, const IdentityProvider& idp,
                                                        const std::string& login, const SamlUser& su,
                                                        const Secret* password) {
    return learned_idp(rt, idp, login,
                       {su.username, su.immutable_id(), su.role.role, su.email, su.first_name, su.last_name,
                        !su.name_id.empty() || !su.uid.empty()},
                       password);
}

std::optional<proto::Verdict> Accounts::cached_verdict(const Runtime& rt, const std::string& backend,
                                                       const std::string& service, const std::string& user,
                                                       const Secret& password) {
    const int ttl = rt.config.helper.verdict_ttl_ms;
    if (ttl <= 0 || password.empty()) return std::nullopt;
    return verdicts_.find(backend, service, user, password, proto::monotonic_ms(), ttl);
}

void Accounts::remember_verdict(const Runtime& rt, const std::string& backend, const std::string& service,
                                const std::string& user, const Secret& password, const proto::Verdict& v) {
    if (rt.config.helper.verdict_ttl_ms <= 0 || password.empty() || v.status != Status::ok) return;
    verdicts_.remember(backend, service, user, password, v, proto::monotonic_ms());
}

void Accounts::forget_verdicts(const std::string& user) { verdicts_.forget_user(user); }

void Accounts::forget_credentials(const std::string& user) {
    verdicts_.forget_user(user);
    const std::string key = lower(user);
    offline_recent_.forget(key);
    logged(store_->drop_offline(key), "dropping offline credentials");
}

proto::Verdict Accounts::offline_login(const Runtime& rt, const std::string& backend, const std::string& login,
                                       const Secret& password) {
    proto::Verdict v;
    v.status = Status::unavailable;
    const auto& off = rt.config.helper.offline;
    if (!off.enabled) return v;
    const std::string key = lower(login);
    auto entry = logged(store_->offline(key), "reading offline credentials");
    if (!entry || !*entry || (*entry)->backend != backend) return v;
    OfflineEntry& e = **entry;
    const std::int64_t now = now_s();
    if (now - e.stored_at > off.max_age_s) {
        log::info("offline login of ", log_safe(login), " refused: the cached credentials are older than ",
                    "helper.offline.max_age; removed");
        (void)store_->drop_offline(key);
        v.message = "the directory is unreachable and the offline credentials have expired";
        return v;
    }
    if (e.next_try_at > now) {
        log::warning("offline login of ", log_safe(login), " refused without checking: ", std::to_string(e.failures),
                     " failed attempts, next try allowed in ", std::to_string(e.next_try_at - now), " s");
        v.status = Status::auth_err;
        return v;
    }
    if (password.empty() || !offline_verify(e.hash, password)) {
        logged(store_->offline_failure(key, now), "recording an offline failure");
        log::info("offline login of ", log_safe(login), " failed: wrong password");
        v.status = Status::auth_err;
        return v;
    }
    logged(store_->offline_success(key), "recording an offline success");
    std::string canonical = login;
    if (auto c = logged(store_->user_by_name(login), "reading a user"); c && *c) canonical = (*c)->name;
    v.status = Status::ok;
    v.user = canonical;
    v.role = e.role;
    v.message = "Signed in offline: the login server could not be reached, so the password was checked "
                "against the credentials cached at your last login.";
    auto add = [&v](const char* k, const std::string& value) {
        if (!value.empty()) v.attributes.emplace_back(k, value);
    };
    add("email", e.email);
    add("first_name", e.first_name);
    add("last_name", e.last_name);
    add("idp", backend);
    v.attributes.emplace_back("offline", "1");
    log::info("offline login of ", log_safe(canonical), " as ", proto::role_name(v.role), " (", backend,
                " unreachable)");
    return v;
}

// ---- cvat-authctl cache

proto::CacheReply Accounts::cache(const Runtime& rt, const proto::CacheRequest& r) {
    (void)rt;
    proto::CacheReply out;
    out.status = Status::ok;
    const std::int64_t now = now_s();
    switch (r.op) {
        case proto::CacheOp::list: {
            auto users = logged(store_->users(kMaxCachedUsers), "listing users");
            if (!users) {
                out.status = Status::internal;
                out.lines.push_back("the cache could not be read (see the daemon's log)");
                return out;
            }
            out.lines.push_back("NAME\tUID\tGID\tROLE\tBACKEND\tSTATE");
            for (const auto& u : *users) {
                if (out.lines.size() + 1 >= proto::kMaxLines) {
                    out.lines.push_back("... " + std::to_string(users->size()) + " users in all");
                    break;
                }
                std::string state = u.provisional ? "provisional" : fresh(u, now) ? "fresh" : u.expires_at > 0 ? "stale" : "expired";
                out.lines.push_back(u.name + "\t" + std::to_string(u.uid) + "\t" + std::to_string(u.gid) + "\t" +
                                    proto::role_name(u.role) + "\t" + u.backend + "\t" + state);
            }
            return out;
        }
        case proto::CacheOp::show: {
            auto c = logged(store_->user_by_name(r.name), "reading a user");
            if (!c || !*c) {
                out.status = Status::not_found;
                out.lines.push_back(r.name + " is not in the cache");
            } else {
                const CachedUser& u = **c;
                out.lines.push_back("name: " + u.name);
                out.lines.push_back("backend: " + u.backend + (u.provisional ? " (provisional entry)" : ""));
                out.lines.push_back("immutable id: " + u.immutable_id);
                out.lines.push_back("uid: " + std::to_string(u.uid) + "  gid: " + std::to_string(u.gid));
                out.lines.push_back(std::string("role: ") + proto::role_name(u.role));
                out.lines.push_back("gecos: " + u.gecos + "  home: " + u.home + "  shell: " + u.shell);
                if (!u.email.empty()) out.lines.push_back("email: " + u.email);
                if (!u.dn.empty()) out.lines.push_back("dn: " + u.dn);
                for (const auto& [g, gid] : u.groups) out.lines.push_back("group: " + g + " (" + std::to_string(gid) + ")");
                out.lines.push_back("fetched: " + describe_time(u.fetched_at) + "  fresh until: " +
                                    describe_time(u.expires_at));
            }
            if (auto e = logged(store_->offline(lower(r.name)), "reading offline credentials"); e && *e) {
                out.status = Status::ok;
                out.lines.push_back("offline credentials: stored " + describe_time((*e)->stored_at) + ", " +
                                    std::to_string((*e)->failures) + " failed offline attempts");
            }
            return out;
        }
        case proto::CacheOp::expire: {
            auto n = logged(store_->expire(r.name), "expiring");
            if (!n) {
                out.status = Status::internal;
                out.lines.push_back("expiring failed (see the daemon's log)");
                return out;
            }
            if (r.name.empty()) verdicts_.clear();
            else verdicts_.forget_user(r.name);
            out.lines.push_back("expired " + std::to_string(*n) + " entr" + (*n == 1 ? "y" : "ies") +
                                "; the next lookup asks the directory");
            publish_now();  // before answering: "the next lookup" must not be a warm one
            return out;
        }
        case proto::CacheOp::flush: {
            if (!logged(store_->flush(), "flushing")) {
                out.status = Status::internal;
                out.lines.push_back("flushing failed (see the daemon's log)");
                return out;
            }
            verdicts_.clear();
            offline_recent_.clear();
            out.lines.push_back("cache flushed: users, negative entries and offline credentials removed "
                                "(assigned IDs are kept)");
            publish_now();
            return out;
        }
    }
    return out;
}

// ---- the mapped file and the refresher

void Accounts::changed() {
    bool was_dirty;
    {
        std::lock_guard lock(mutex_);
        was_dirty = dirty_;
        dirty_ = true;
    }
    // Only the first change wakes the publisher: after it, the publisher is letting changes
    // settle or publishing, and sees dirty_ when it next waits. Waking it for every change
    // cost the lookup or login that made it a context switch (17 us of a cold lookup's 330).
    if (!was_dirty) wake_.notify_all();
}

void Accounts::withdraw_now() {
    // Without waiting for a publication being built: one that began before the change is
    // dropped instead of put in place (and made again), one that begins after it includes it.
    if (mc_.path().empty()) return;
    // The caller's changed() has the publisher make the next one.
    if (auto w = mc_.withdraw(); !w) log::warning("nss: withdrawing ", mc_.path(), " failed: ", w.error().detail);
}

void Accounts::publish_now() {
    // One publication at a time: snapshot and rename together, so an older snapshot never
    // replaces a newer file.
    std::lock_guard publishing(publish_mutex_);
    auto rt = current();
    if (!rt || mc_.path().empty()) return;
    const auto started = std::chrono::steady_clock::now();
    const nss_mc::Slot::Ticket ticket = mc_.ticket();
    const NssSettings& nss = rt->config.nss;
    const std::int64_t now = now_s();
    auto users = logged(store_->users(kMaxCachedUsers), "listing users for the NSS cache file");
    if (!users) return;
    std::vector<nss_mc::PasswdEntry> pw;
    std::vector<nss_mc::GroupEntry> gr;
    std::map<std::uint32_t, nss_mc::GroupEntry> dir_groups;
    std::array<nss_mc::GroupEntry, 4> roles;
    const std::int64_t group_expiry = now + nss.cache_ttl_s;
    for (std::size_t r = 1; r < roles.size(); ++r) {
        roles[r].name = nss.role_groups[r].name;
        roles[r].gid = nss.role_groups[r].gid;
        roles[r].expires = group_expiry;
    }
    for (const auto& u : *users) {
        if (!fresh(u, now)) continue;  // stale ones are the daemon's to answer (or refresh)
        nss_mc::PasswdEntry e;
        e.name = u.name;
        e.uid = u.uid;
        e.gid = u.gid;
        e.gecos = u.gecos;
        e.dir = u.home;
        e.shell = u.shell;
        e.groups = supplementary_gids(*rt, u);
        e.expires = std::min(u.expires_at, now + nss.cache_ttl_s);
        // Past refresh_percent of its life a directory entry leaves the file: the next lookup
        // then reaches the daemon, which answers from the cache at once and refreshes it
        // behind the caller (warm lookups never reach the daemon, so could never trigger that).
        if (u.backend == "ldap" && nss.refresh_percent > 0)
            e.expires = std::min(e.expires, u.fetched_at + nss.cache_ttl_s * nss.refresh_percent / 100);
        pw.push_back(std::move(e));
        if (u.role != Role::none && !u.provisional) roles[static_cast<std::size_t>(u.role)].members.push_back(u.name);
        bool clashes = false;
        for (std::size_t r = 1; r < roles.size(); ++r) clashes = clashes || roles[r].name == u.name;
        if (u.gid == u.uid && !clashes) gr.push_back({u.name, u.gid, {}, std::min(u.expires_at, group_expiry)});
        if (nss.directory_groups) {
            for (const auto& [gname, gid] : u.groups) {
                auto& g = dir_groups[gid];
                g.name = gname;
                g.gid = gid;
                g.expires = group_expiry;
                g.members.push_back(u.name);
            }
        }
    }
    for (std::size_t r = 1; r < roles.size(); ++r) gr.push_back(std::move(roles[r]));
    for (auto& [gid, g] : dir_groups) gr.push_back(std::move(g));
    auto p = mc_.publish(ticket, pw, gr, nss.enumerate);
    if (!p)
        log::warning("nss: publishing ", mc_.path(), " failed: ", p.error().detail,
                     " (lookups still work through the socket)");
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
    publish_took_us_.store(took.count(), std::memory_order_relaxed);
    if (p && *p)
        log::debug("nss: published ", std::to_string(pw.size()), " users and ", std::to_string(gr.size()), " groups to ",
                   mc_.path(), " in ", std::to_string(took.count()), " us");
    else if (p)  // a change withdrew the file meanwhile; the publisher makes the next one
        log::debug("nss: publication of ", mc_.path(), " dropped: withdrawn while it was built");
}

void Accounts::publisher_loop() {
    // A publication rereads and rewrites every cached user (tens of milliseconds of CPU with
    // tens of thousands); at a lower priority it takes the cores' spare time instead of the
    // lookups' and logins' (Linux: a thread's own nice value).
    if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kPublisherNice) != 0)
        log::debug("nss: cannot lower the publisher's priority: ", std::strerror(errno));
    // What writes left in the cache's log goes into the database here, off the lookups' and
    // logins' path (CacheStore::checkpoint).
    auto checkpoint = [this] {
        if (auto c = store_->checkpoint(); !c) log::warning("cache: ", c.error().detail);
    };
    std::unique_lock lock(mutex_);
    auto last = std::chrono::steady_clock::now();
    while (!stopping_) {
        // Republished now and then even without changes, so records' expiry moves on.
        std::int64_t period_s = 600;
        if (rt_) period_s = std::clamp<std::int64_t>(rt_->config.nss.cache_ttl_s / 2, 5, 600);
        const auto due = last + std::chrono::seconds(period_s);
        wake_.wait_until(lock, std::min(due, std::chrono::steady_clock::now() + kCheckpointEvery),
                         [this] { return stopping_ || dirty_; });
        if (stopping_) break;
        if (!dirty_ && std::chrono::steady_clock::now() < due) {
            // Nothing to publish; other writes (negative entries, offline hashes, assigned IDs)
            // are checkpointed all the same.
            lock.unlock();
            checkpoint();
            lock.lock();
            continue;
        }
        // Let a burst of changes settle into one rewrite.
        const auto took = std::chrono::microseconds(publish_took_us_.load(std::memory_order_relaxed));
        const auto settle = std::clamp<std::chrono::microseconds>(kCoalesceFactor * took, kCoalesce, kCoalesceMax);
        wake_.wait_for(lock, settle, [this] { return stopping_; });
        if (stopping_) break;
        dirty_ = false;
        lock.unlock();
        publish_now();
        checkpoint();
        // A publication builds and drops copies of every cached user; the worker threads'
        // arenas keep what lookups and logins freed. Both go back to the system here, at most
        // once per kCoalesce, so the daemon's memory follows what it holds, not its peaks.
#if !defined(__SANITIZE_ADDRESS__)
        ::malloc_trim(0);
#endif
        lock.lock();
        last = std::chrono::steady_clock::now();
    }
}

void Accounts::refresher_loop() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        wake_.wait(lock, [this] { return stopping_ || !refresh_queue_.empty(); });
        if (stopping_) break;
        std::string name = std::move(refresh_queue_.front());
        refresh_queue_.pop_front();
        auto rt = rt_;
        lock.unlock();
        if (rt) {
            CachedUser u;
            Fetch f = fetch_ldap(*rt, name, u);
            log::debug("nss: background refresh of ", log_safe(name), ": ",
                       f == Fetch::found ? "updated" : f == Fetch::not_found ? "gone" : "directory unreachable");
        }
        lock.lock();
        refresh_pending_.erase(name);
    }
}

}  // namespace cvat::helper
