// SPDX-License-Identifier: GPL-3.0-or-later
// Accounts: what the daemon knows about users between logins. It answers the NSS requests
// (getpwnam, getpwuid, getgrnam, getgrgid, initgroups) from the persistent cache and the
// backends, keeps that cache fresh (TTLs, negative entries, background refresh), publishes the
// memory-mapped file nss_cvat reads for warm lookups, and holds the login caches: the
// web-server verdict cache and the offline-login hashes (DESIGN.md §5 "Caches").
//
// Thread-safe: workers call it concurrently. Two threads of its own: the publisher (rewrites
// the mapped file, coalescing bursts of changes) and the refresher (re-reads users whose cache
// entry is getting old, so callers are answered from the cache at once).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cache_store.hpp"
#include "nss_mc_writer.hpp"
#include "offline.hpp"
#include "protocol.hpp"
#include "secret.hpp"
#include "verdict_cache.hpp"

namespace cvat::helper {

struct Runtime;
struct LdapUser;
struct OidcUser;
struct SamlUser;
struct IdentityProvider;

class Accounts {
public:
    // Opens (or creates) the store under `cache_dir`. `mc_path`: where the mapped file for
    // nss_cvat goes (the socket's directory + "/nss.mc"); empty: not published.
    [[nodiscard]] static Result<std::unique_ptr<Accounts>> open(const std::string& cache_dir, std::string mc_path);
    ~Accounts();
    Accounts(const Accounts&) = delete;
    Accounts& operator=(const Accounts&) = delete;

    // The configuration in force: at start and after each reload. A reload clears the verdict
    // cache (a changed role mapping must not be answered from before) and republishes.
    void use(std::shared_ptr<const Runtime> rt);

    // ---- NSS
    proto::PasswdReply passwd_by_name(const Runtime& rt, const std::string& name);
    proto::PasswdReply passwd_by_uid(const Runtime& rt, std::uint32_t uid);
    proto::GroupReply group_by_name(const Runtime& rt, const std::string& name);
    proto::GroupReply group_by_gid(const Runtime& rt, std::uint32_t gid);
    proto::GroupsReply init_groups(const Runtime& rt, const std::string& user);

    // ---- what logins teach
    // A successful online login: the user's entry (stable ID, role, attributes) is stored,
    // and with offline logins on, an Argon2id hash of the password (skipped when this process
    // already hashed the same password).
    void learned_ldap(const Runtime& rt, const std::string& login, const LdapUser& user, const Secret* password);

    // Why an IdP login must not go on although the IdP signed the user in.
    struct Refusal {
        proto::Status status;  // perm_denied: the name is another subject's; unavailable: the cache failed
        std::string message;   // for the user's screen
    };
    // The same for an IdP user (immutable id "oidc:<iss> <sub>"; SAML: "saml:<entity id> <uid
    // attribute or NameID>", the subject). With nss.provisional_users the UID comes from the
    // name (see name_seed) and the subject is bound to the name at the first login: a login of
    // the same name with another subject is refused (the IdP gave the name to someone else)
    // until an admin expires or flushes the entry. nullopt: the login stands.
    [[nodiscard]] std::optional<Refusal> learned_oidc(const Runtime& rt, const IdentityProvider& idp,
                                                      const std::string& login, const OidcUser& user,
                                                      const Secret* password);
    [[nodiscard]] std::optional<Refusal> learned_saml(const Runtime& rt, const IdentityProvider& idp,
                                                      const std::string& login, const SamlUser& user,
                                                      const Secret* password);

    // The web-server verdict cache (helper.verdict_ttl).
    std::optional<proto::Verdict> cached_verdict(const Runtime& rt, const std::string& backend,
                                                 const std::string& service, const std::string& user,
                                                 const Secret& password);
    void remember_verdict(const Runtime& rt, const std::string& backend, const std::string& service,
                          const std::string& user, const Secret& password, const proto::Verdict& v);
    void forget_verdicts(const std::string& user);
    // After a password change: the user's cached verdicts and offline hash go, so the old
    // password opens nothing any more.
    void forget_credentials(const std::string& user);

    // Offline login (helper.offline), tried when no server of `backend` answered. ok with a
    // message saying it was offline; auth_err for a wrong password (later tries delayed);
    // unavailable when there is no usable entry (none, expired, offline logins off).
    proto::Verdict offline_login(const Runtime& rt, const std::string& backend, const std::string& login,
                                 const Secret& password);

    // ---- cvat-authctl cache
    proto::CacheReply cache(const Runtime& rt, const proto::CacheRequest& r);

private:
    // What an IdP login tells about a user (OIDC or SAML).
    struct IdpUserFacts {
        std::string username, immutable_id;
        proto::Role role;
        std::string email, first_name, last_name;
        bool has_subject;
    };
    std::optional<Refusal> learned_idp(const Runtime& rt, const IdentityProvider& idp, const std::string& login,
                                       const IdpUserFacts& f, const Secret* password);

    Accounts(std::unique_ptr<CacheStore> store, std::string mc_path);

    enum class Fetch { found, not_found, unavailable };
    // The user named `name`, from the cache when fresh, else from its backend.
    Fetch resolve_name(const Runtime& rt, const std::string& name, CachedUser& out);
    Fetch fetch_ldap(const Runtime& rt, const std::string& name, CachedUser& out);
    Fetch store_ldap(const Runtime& rt, const LdapUser& u, CachedUser& out);
    std::optional<CachedUser> provisional(const Runtime& rt, const std::string& name, const std::string& idp);
    bool assign_ids(const Runtime& rt, CachedUser& u, std::optional<std::uint32_t> uid_number,
                    std::optional<std::uint32_t> gid_number);
    void fill_posix(const Runtime& rt, CachedUser& u) const;
    // Stores an Argon2id hash of `password` with `e` (role, attributes) for offline logins.
    void keep_offline(const Runtime& rt, const std::string& login, const Secret* password, OfflineEntry e);
    std::vector<std::uint32_t> reserved_ids(const Runtime& rt) const;
    bool fresh(const CachedUser& u, std::int64_t now) const;
    // Whether the published file lists `u` with its groups (a fresh, not provisional entry).
    bool listed(const std::optional<CachedUser>& u, std::int64_t now) const;
    void maybe_refresh(const Runtime& rt, const CachedUser& u, std::int64_t now);

    proto::PasswdReply passwd_reply(const CachedUser& u) const;
    std::vector<std::uint32_t> supplementary_gids(const Runtime& rt, const CachedUser& u) const;
    // A directory group (nss.directory_groups) by name, or by gid when `name` is empty, from
    // the cached users who hold it; `r` is left alone when none does.
    void directory_group(const std::string& name, std::uint32_t gid, proto::GroupReply& r);
    std::optional<proto::GroupReply> role_group(const Runtime& rt, std::optional<std::string> name,
                                                std::optional<std::uint32_t> gid);

    void changed();  // the publisher rewrites the mapped file soon
    void publish_now();
    // Removes the published file at once (readers ask the daemon until the next publication).
    void withdraw_now();
    void publisher_loop();
    void refresher_loop();
    std::shared_ptr<const Runtime> current() const;

    std::unique_ptr<CacheStore> store_;
    nss_mc::Slot mc_;  // path empty: no file is published
    VerdictCache verdicts_;
    OfflineRecent offline_recent_;

    std::mutex publish_mutex_;  // one publication at a time
    std::atomic<std::int64_t> publish_took_us_{0};  // the last publication's duration
    std::mutex learn_mutex_;  // an IdP login's subject check and its store are one step
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::shared_ptr<const Runtime> rt_;
    bool dirty_ = false;
    bool stopping_ = false;
    std::deque<std::string> refresh_queue_;
    std::set<std::string> refresh_pending_;
    std::thread publisher_;
    std::thread refresher_;
};

// The ID map key of an IdP user's UID under nss.provisional_users: "provisional:<idp id>:<lower-
// cased name>", the same for the provisional entry and the permanent one, so every host with
// that setting derives the same UID with or without a lookup before the first login.
std::string name_seed(const std::string& idp, const std::string& name);

// The name a directory group is shown under: the value of its DN's first RDN
// ("CN=CVAT Users,DC=…" → "CVAT Users"), or empty when that is not usable as a group name.
std::string directory_group_name(const std::string& dn);

}  // namespace cvat::helper
