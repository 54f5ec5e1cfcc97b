// SPDX-License-Identifier: GPL-3.0-or-later
// The LDAP backend (DESIGN.md §4-§5): search-then-bind over two connection pools with
// failover across the URI list.
//
// - The service pool holds connections bound as bind_dn (or anonymous); every search runs
//   there. The user pool holds connections on which user passwords are bound; a connection
//   is rebound for the next user, so a login costs one bind, not a TCP+TLS handshake.
// - Opening a connection (TCP, TLS or StartTLS, service bind) must finish within
//   connect_timeout_ms per server: a server that accepts TCP and then says nothing counts as
//   down. Operations wait at most timeout_ms. A server that failed is skipped for
//   kServerRetryAfter, so a dead first server costs one timeout, not one per request.
// - A connection that fails is discarded; a reused one that fails is replaced once with a
//   fresh connection (idle connections die when servers restart or drop idle clients).
// - Every socket read and write of a connection is bounded by the deadline of the step it
//   belongs to (IoGuard below), including the TLS handshake that libldap 2.5 does blocking.
#include "ldap_backend.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "dns_srv.hpp"
#include "group_mirror.hpp"
#include "idmap.hpp"
#include "ldap_conn.hpp"
#include "ldap_text.hpp"
#include "log.hpp"
#include "password_policy.hpp"
#include "server_list.hpp"

namespace cvat::helper {

namespace {

using namespace ldapraii;
using proto::Role;
using proto::Status;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

// A server that failed is tried again after this long; until then the others go first.
constexpr auto kServerRetryAfter = std::chrono::seconds(30);
// AD closes connections idle for 15 minutes (MaxConnIdleTime 900 s): reopen before that.
constexpr auto kMaxIdle = std::chrono::minutes(10);
// Below AD's MaxPageSize (1000), so paged group searches never hit the server's limit.
constexpr int kPageSize = 500;
// The user search asks for 2 entries: one is the user, two means the filter is ambiguous.
constexpr int kUserSizeLimit = 2;
// member=... clauses per nested-group query: few queries for a user in thousands of groups
// (one clause costs an index lookup, one query a round trip), filters ~50 KB, well under
// AD's 10 MB MaxReceiveBuffer.
constexpr std::size_t kMembersPerQuery = 500;
// Pages of one paged search before it counts as cut: 20,000 entries at kPageSize, twice over.
constexpr std::size_t kMaxPages = 80;
// AD range retrieval (MS-ADTS 3.1.1.3.1.3.3): ranged reads of one attribute of one entry at
// most this many times (MaxValRange 1500 x 100 = 150,000 values).
constexpr std::size_t kMaxRangeRounds = 100;
// Values asked for per ranged read: AD's default MaxValRange (Windows 2003 and later).
constexpr unsigned long long kRangeWindow = 1500;
// Values of `member` read per group by the top-down role group check, and groups it visits.
constexpr std::size_t kMaxMemberValues = 100000;
constexpr std::size_t kMaxCheckedGroups = 1024;
// LDAP_MATCHING_RULE_IN_CHAIN (MS-ADTS 3.1.1.3.4.4.1) and LDAP_CAP_ACTIVE_DIRECTORY_OID in
// the root DSE's supportedCapabilities (AD and Samba; OpenLDAP has neither).
constexpr const char* kInChain = "1.2.840.113556.1.4.1941";
constexpr const char* kCapActiveDirectory = "1.2.840.113556.1.4.800";
// In-chain has no depth parameter: it is used only when max_nesting allows at least this
// (the default); a lower max_nesting asks for a depth bound only the walk can keep.
constexpr unsigned kInChainMinNesting = 16;
// Longest user name looked up (LOGIN_NAME_MAX, the protocol's cap).
constexpr std::size_t kMaxUserName = proto::kMaxName;
// The group graph cache (ldap.group_cache_ttl) holds at most this many bytes of group DNs; an
// entry that would pass it is not kept, and a full cache drops its expired entries first.
constexpr std::size_t kGroupCacheBytes = 8u << 20;
// The group mirror (ldap.group_mirror): at most this many bytes of groups (past it the feed is
// dropped and logins search); believed while the feed's connection was heard from within
// kMirrorBelievedFor, kept so by a root DSE read after kMirrorProbeAfter of silence; after a
// lost feed the next is tried after 1 s, doubling to kMirrorRetryMax; a directory without
// content synchronisation (or with more groups than fit) is asked again after kMirrorRecheck.
constexpr std::size_t kMirrorBytes = 64u << 20;
constexpr auto kMirrorProbeAfter = std::chrono::seconds(1);
constexpr auto kMirrorBelievedFor = std::chrono::seconds(3);
constexpr auto kMirrorRetryMax = std::chrono::seconds(60);
constexpr auto kMirrorRecheck = std::chrono::minutes(10);
// The copy is rebuilt every group_cache_ttl, and at least this often.
constexpr auto kMirrorRebuildMax = std::chrono::minutes(5);
// UUIDs in one syncIdSet message (20 bytes each on the wire: 2 MB).
constexpr std::size_t kMirrorMaxUuids = 100000;
// AD ACCOUNTDISABLE flag of userAccountControl (MS-ADTS 2.2.16).
constexpr long long kUacAccountDisable = 0x2;

// Appended to TLS handshake failures: libldap's GnuTLS back end rarely says why.
constexpr const char* kTlsHint = "; check tls.ca_file and that the server certificate names the host of the URI";

// A failure on the way: the status it maps to and words for the user/admin.
struct Failure {
    Status status;
    std::string message;
};
template <typename T>
using Outcome = tl::expected<T, Failure>;
// Accounts whose last password check here failed, for a while: their next login waits for the
// bind's answer before walking the groups, so that guessing at one account costs the directory
// a search and a bind per guess, as without the walk alongside the bind. Bounded (emptied when
// full); keys are user DNs, or "name:<login>" for names the directory does not know.
class RecentFailures {
public:
    bool has(const std::string& key) {
        std::lock_guard lock(m_);
        auto it = at_.find(key);
        if (it == at_.end()) return false;
        if (Clock::now() - it->second < kFor) return true;
        at_.erase(it);
        return false;
    }
    void add(const std::string& key) {
        std::lock_guard lock(m_);
        if (at_.size() >= kMax) at_.clear();
        at_[key] = Clock::now();
    }
    void drop(const std::string& key) {
        std::lock_guard lock(m_);
        at_.erase(key);
    }

private:
    static constexpr std::size_t kMax = 8192;
    static constexpr auto kFor = std::chrono::minutes(10);
    std::mutex m_;
    std::unordered_map<std::string, Clock::time_point> at_;
};

// How the directory names its users, learned from the user searches: "uid=<login>,ou=people,…"
// (the first RDN is the login name, escaped as a DN value, and the rest is the same for every
// user). Once two users in a row had DNs of that one shape, a lookup guesses the DN of the next
// user so that the search for the user's direct groups can go out with the user search (one
// round trip for both); the guess is used only where it is exactly the DN the search returns.
// Directories that name users otherwise (AD's "CN=Full Name,…") never get a guess.
class DnPattern {
public:
    std::optional<std::string> guess(std::string_view name) {
        std::lock_guard lock(m_);
        if (hits_ < kTrusted) return std::nullopt;
        return head_ + escape_dn_value(name) + tail_;
    }
    void learn(std::string_view name, const std::string& dn) {
        // The first RDN ends at the first comma that is not escaped.
        std::size_t comma = std::string::npos;
        for (std::size_t i = 0; i < dn.size(); ++i) {
            if (dn[i] == '\\') {
                ++i;
            } else if (dn[i] == ',') {
                comma = i;
                break;
            }
        }
        const std::size_t eq = dn.find('=');
        std::lock_guard lock(m_);
        if (comma == std::string::npos || eq == std::string::npos || eq > comma ||
            dn.compare(eq + 1, comma - eq - 1, escape_dn_value(name)) != 0) {
            hits_ = 0;
            return;
        }
        std::string_view head(dn.data(), eq + 1), tail(dn.data() + comma, dn.size() - comma);
        if (head == head_ && tail == tail_) {
            if (hits_ < kTrusted) ++hits_;
            return;
        }
        head_.assign(head);
        tail_.assign(tail);
        hits_ = 1;
    }

private:
    static constexpr int kTrusted = 2;
    std::mutex m_;
    std::string head_, tail_;  // "uid=", ",ou=people,dc=example,dc=com"
    int hits_ = 0;
};

// A group search answered ahead of the walk that would ask it (resolve() sends it with the user
// search), for group_dns() on the same thread to take instead of asking the directory again.
struct Prefetched {
    std::string filter;
    std::vector<std::string> dns;
    bool taken = false;
};
thread_local Prefetched* t_prefetched = nullptr;

// The groups above a set of groups, for the nested group types: found by the level-by-level
// walk, kept for ldap.group_cache_ttl. Keyed by the normalised DNs of the set: a user's direct
// groups (users of the same teams share an entry), so a login asks the directory only for the
// user's own groups; and each level the walk went through, so the first login of another team
// below the same groups asks only for that team's parents. A change of nesting higher up shows
// within the TTL (an entry built on another never outlives it). Thread-safe, bounded by
// kGroupCacheBytes.
class GroupGraphCache {
public:
    struct Upper {
        std::vector<std::string> groups;  // in the order the walk found them
        std::vector<std::string> keys;    // their normalised DNs (dn_key), so a hit parses none
        std::string incomplete;           // why the walk stopped early, or empty
        unsigned depth = 0;               // nesting levels the groups span above the set
        Clock::time_point expires{};      // filled in by find()
    };
    explicit GroupGraphCache(Ms ttl) : ttl_(ttl) {}
    bool enabled() const noexcept { return ttl_.count() > 0; }

    std::optional<Upper> find(const std::string& key) {
        std::lock_guard lock(m_);
        auto it = map_.find(key);
        if (it == map_.end()) return std::nullopt;
        if (it->second.expires <= Clock::now()) {
            drop(it);
            return std::nullopt;
        }
        Upper out = it->second.upper;
        out.expires = it->second.expires;
        return out;
    }
    // Kept for the TTL, or until `until` if that is sooner (an entry built on another).
    void put(const std::string& key, Upper upper, Clock::time_point until = Clock::time_point::max()) {
        std::size_t bytes = key.size() + upper.incomplete.size();
        for (const std::string& g : upper.groups) bytes += g.size() + sizeof(std::string);
        for (const std::string& k : upper.keys) bytes += k.size() + sizeof(std::string);
        if (bytes > kGroupCacheBytes / 4) return;
        std::lock_guard lock(m_);
        if (auto it = map_.find(key); it != map_.end()) drop(it);
        const auto now = Clock::now();
        if (bytes_ + bytes > kGroupCacheBytes)
            for (auto it = map_.begin(); it != map_.end();) it->second.expires <= now ? it = drop(it) : ++it;
        if (bytes_ + bytes > kGroupCacheBytes) {
            map_.clear();
            bytes_ = 0;
        }
        map_.emplace(key, Slot{std::min(now + ttl_, until), bytes, std::move(upper)});
        bytes_ += bytes;
    }
    void clear() {
        std::lock_guard lock(m_);
        map_.clear();
        bytes_ = 0;
    }

private:
    struct Slot {
        Clock::time_point expires;
        std::size_t bytes;
        Upper upper;
    };
    using Map = std::unordered_map<std::string, Slot>;
    Map::iterator drop(Map::iterator it) {
        bytes_ -= it->second.bytes;
        return map_.erase(it);
    }
    const Ms ttl_;
    std::mutex m_;
    Map map_;
    std::size_t bytes_ = 0;
};

tl::unexpected<Failure> failure(Status s, std::string message) {
    return tl::unexpected<Failure>(Failure{s, std::move(message)});
}

// An LDAP operation's error: libldap result code and words.
struct OpError {
    int rc = LDAP_OTHER;
    std::string text;
};
template <typename T>
using OpResult = tl::expected<T, OpError>;
tl::unexpected<OpError> op_error(int rc, std::string text) {
    return tl::unexpected<OpError>(OpError{rc, std::move(text)});
}

// Result codes after which the connection (or its server) is not to be used again: the
// caller fails over to a fresh connection on the next server.
bool is_connection_fault(int rc) noexcept {
    switch (rc) {
    case LDAP_SERVER_DOWN:
    case LDAP_TIMEOUT:
    case LDAP_CONNECT_ERROR:
    case LDAP_LOCAL_ERROR:
    case LDAP_ENCODING_ERROR:
    case LDAP_DECODING_ERROR:
    case LDAP_UNAVAILABLE:
    case LDAP_BUSY:
    case LDAP_TIMELIMIT_EXCEEDED:
        return true;
    default:
        return false;
    }
}

// "Can't contact LDAP server" plus the diagnostic message of the handle, if any.
std::string describe(LDAP* ld, int rc, const char* diag = nullptr) {
    std::string text = ldap_err2string(rc);
    LdapString own_diag;
    if (diag == nullptr && ld != nullptr) {
        char* d = nullptr;
        if (ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &d) == LDAP_OPT_SUCCESS) own_diag.reset(d);
        diag = own_diag.get();
    }
    if (diag != nullptr && *diag != '\0')
        text += *diag == '(' ? " " + log_safe(diag) : " (" + log_safe(diag) + ")";
    return text;
}

timeval to_timeval(Ms ms) {
    if (ms.count() < 1) ms = Ms(1);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

Ms remaining(Clock::time_point deadline) {
    return std::chrono::duration_cast<Ms>(deadline - Clock::now());
}

bool ascii_iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

int ldap_scope(Scope s) noexcept {
    switch (s) {
    case Scope::base: return LDAP_SCOPE_BASE;
    case Scope::onelevel: return LDAP_SCOPE_ONELEVEL;
    case Scope::subtree: return LDAP_SCOPE_SUBTREE;
    }
    return LDAP_SCOPE_SUBTREE;
}

const char* scope_name(Scope s) noexcept {
    switch (s) {
    case Scope::base: return "base";
    case Scope::onelevel: return "onelevel";
    case Scope::subtree: return "subtree";
    }
    return "subtree";
}

// group_search.filter as a filter component: "(objectClass=group)"; bare "a=b" gets parens.
std::string group_filter_part(const std::string& filter) {
    if (filter.empty()) return "(objectClass=*)";
    if (filter.front() == '(') return filter;
    return "(" + filter + ")";
}

// The groups matching `gf` (group_filter_part) with `dn` as a direct member.
std::string member_filter(const std::string& gf, const std::string& dn) {
    return "(&" + gf + "(member=" + escape_filter_value(dn) + "))";
}

// One directory entry: DN and the requested attributes (names lower-cased).
struct Entry {
    std::string dn;
    std::map<std::string, std::vector<std::string>> attrs;
    // AD range retrieval: attributes that came as "attr;range=LOW-HIGH", by lower-case name,
    // with where the rest starts ("1500"), or "" when the last range ended with "*".
    std::map<std::string, std::string> ranges;
    const std::vector<std::string>* values(const std::string& name) const {
        auto it = attrs.find(lower(name));
        return it == attrs.end() ? nullptr : &it->second;
    }
    std::string first(const std::string& name) const {
        const auto* v = values(name);
        return (v == nullptr || v->empty()) ? std::string() : v->front();
    }
};

// What one server URI says about itself.
struct ServerInfo {
    std::string uri;
    bool tls = false;        // ldaps://, or ldap:// with start_tls
    bool start_tls = false;  // StartTLS on this server
    bool local = false;      // loopback host or ldapi://: passwords never leave the machine
    std::string parse_error;
};

bool is_loopback_host(const std::string& host) {
    if (host.empty() || ascii_iequal(host, "localhost")) return true;  // empty: libldap's default, localhost
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    in6_addr a6{};
    std::string h = host;
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    if (inet_pton(AF_INET6, h.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

ServerInfo describe_server(const std::string& uri, bool start_tls) {
    ServerInfo s;
    s.uri = uri;
    LDAPURLDesc* raw = nullptr;
    if (ldap_url_parse(uri.c_str(), &raw) != LDAP_URL_SUCCESS || raw == nullptr) {
        s.parse_error = "not an LDAP URI";
        return s;
    }
    UrlPtr url(raw);
    std::string scheme = lower(url->lud_scheme != nullptr ? url->lud_scheme : "ldap");
    std::string host = url->lud_host != nullptr ? url->lud_host : "";
    if (scheme == "ldapi") {
        s.local = true;
    } else if (scheme == "ldaps") {
        s.tls = true;
        s.local = is_loopback_host(host);
    } else if (scheme == "ldap") {
        s.start_tls = start_tls;
        s.tls = start_tls;
        s.local = is_loopback_host(host);
    } else {
        s.parse_error = "unknown scheme " + scheme;
    }
    return s;
}

// AD reports why a bind failed in the diagnostic text: "... AcceptSecurityContext error,
// data 52e, v4563" (MS-ADTS; the codes SSSD and pam_ldap map the same way).
Status ad_bind_status(const std::string& diag, std::string& why) {
    auto pos = diag.find("data ");
    if (pos == std::string::npos) return Status::auth_err;
    std::string code;
    for (std::size_t i = pos + 5; i < diag.size() && std::isxdigit(static_cast<unsigned char>(diag[i])); ++i)
        code.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(diag[i]))));
    if (code == "525") { why = "unknown user"; return Status::user_unknown; }
    if (code == "530" || code == "531") { why = "logon not permitted now or from here"; return Status::perm_denied; }
    if (code == "532") { why = "password expired"; return Status::new_authtok_reqd; }
    if (code == "773") { why = "password must be changed"; return Status::new_authtok_reqd; }
    if (code == "533") { why = "account disabled"; return Status::perm_denied; }
    if (code == "701") { why = "account expired"; return Status::acct_expired; }
    if (code == "775") { why = "account locked"; return Status::perm_denied; }
    return Status::auth_err;
}

// The password policy response control among `ctrls`, if the server sent one.
void read_policy(LDAP* ld, LDAPControl** ctrls, PolicyResponse& out) {
    LDAPControl* c = ldap_control_find(LDAP_CONTROL_PASSWORDPOLICYRESPONSE, ctrls, nullptr);
    if (c == nullptr) return;
    ber_int_t expire = -1, grace = -1;
    LDAPPasswordPolicyError error = PP_noError;
    if (ldap_parse_passwordpolicy_control(ld, c, &expire, &grace, &error) != LDAP_SUCCESS) return;
    out.present = true;
    out.expire_s = expire;
    out.grace = grace;
    out.error = error == PP_noError ? -1 : static_cast<int>(error);
}

// The final answer to the operation `msgid`, waited for until `deadline`: result code, the
// server's words, its password policy control. Connection faults are errors (for failover).
struct OpReply {
    int err = LDAP_OTHER;
    std::string diag;
    PolicyResponse policy;
};
OpResult<OpReply> await_reply(LDAP* ld, int msgid, Clock::time_point deadline) {
    timeval tv = to_timeval(remaining(deadline));
    LDAPMessage* res_raw = nullptr;
    int rc = ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, &res_raw);
    MessagePtr res(res_raw);
    if (rc == 0) {
        ldap_abandon_ext(ld, msgid, nullptr, nullptr);
        return op_error(LDAP_TIMEOUT, "no answer in time");
    }
    if (rc < 0) {
        int err = LDAP_SERVER_DOWN;
        ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
        return op_error(is_connection_fault(err) ? err : LDAP_SERVER_DOWN, describe(ld, err));
    }
    OpReply reply;
    char* diag_raw = nullptr;
    LDAPControl** ctrls_raw = nullptr;
    rc = ldap_parse_result(ld, res.get(), &reply.err, nullptr, &diag_raw, nullptr, &ctrls_raw, 0);
    LdapString diag(diag_raw);
    ControlsPtr ctrls(ctrls_raw);
    if (rc != LDAP_SUCCESS) return op_error(rc, describe(ld, rc));
    if (diag) reply.diag = diag.get();  // raw: callers log_safe() it into messages
    read_policy(ld, ctrls.get(), reply.policy);
    if (is_connection_fault(reply.err)) return op_error(reply.err, describe(ld, reply.err, diag.get()));
    return reply;
}

// --- connections and pools ---------------------------------------------------------------

// Deadlines for a connection's socket I/O. libldap 2.5 as Debian builds it (without
// LDAP_USE_NON_BLOCKING_TLS) does the TLS handshake with blocking reads and no timeout, so a
// server that accepts TCP and never answers would hang an ldaps:// connect or a StartTLS
// forever. A Sockbuf I/O layer of our own, pushed from the connect callback under the TLS
// layer, waits with poll() until the deadline and then fails the read with ETIMEDOUT; it also
// writes with MSG_NOSIGNAL, so a server that went away cannot SIGPIPE the daemon.
struct IoGuard {
    ldap_conncb cb{};
    Clock::time_point deadline = Clock::time_point::max();  // max: no deadline
    bool tcp_connected = false;  // the connect callback ran: TCP is up, TLS may have failed

    void until(Clock::time_point t) { deadline = t; }
};

// Waits until `fd` is ready for `events` or the guard's deadline passes (errno ETIMEDOUT).
bool guard_wait(const IoGuard* g, int fd, short events) {
    if (g == nullptr || g->deadline == Clock::time_point::max()) return true;
    for (;;) {
        auto left = std::chrono::duration_cast<Ms>(g->deadline - Clock::now()).count();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return false;
        }
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60000)));
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return false;
    }
}

int sb_fd(Sockbuf_IO_Desc* d) {
    ber_socket_t fd = -1;
    ber_sockbuf_ctrl(d->sbiod_sb, LBER_SB_OPT_GET_FD, &fd);
    return fd;
}

extern "C" int guard_setup(Sockbuf_IO_Desc* d, void* arg) {
    d->sbiod_pvt = arg;
    return 0;
}
extern "C" int guard_ctrl(Sockbuf_IO_Desc* d, int opt, void* arg) { return LBER_SBIOD_CTRL_NEXT(d, opt, arg); }
extern "C" ber_slen_t guard_read(Sockbuf_IO_Desc* d, void* buf, ber_len_t len) {
    const auto* g = static_cast<const IoGuard*>(d->sbiod_pvt);
    if (g == nullptr || g->deadline == Clock::time_point::max()) return LBER_SBIOD_READ_NEXT(d, buf, len);
    // libldap polls before it reads an answer, so the bytes are usually here: try first, and
    // wait (bounded) only when there is nothing yet. The layer below is the socket itself (this
    // one sits under TLS), whose read is recv() without flags.
    const int fd = sb_fd(d);
    ssize_t n = ::recv(fd, buf, len, MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    if (!guard_wait(g, fd, POLLIN)) return -1;
    return LBER_SBIOD_READ_NEXT(d, buf, len);
}
extern "C" ber_slen_t guard_write(Sockbuf_IO_Desc* d, void* buf, ber_len_t len) {
    // A request fits the socket's send buffer almost always: send first, wait only when full.
    int fd = sb_fd(d);
    ssize_t n = ::send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    if (!guard_wait(static_cast<const IoGuard*>(d->sbiod_pvt), fd, POLLOUT)) return -1;
    return ::send(fd, buf, len, MSG_NOSIGNAL);
}
Sockbuf_IO kGuardIo = {guard_setup, nullptr, guard_ctrl, guard_read, guard_write, nullptr};

// LDAP_OPT_CONNECT_CB: runs right after the TCP connect, before libldap adds the TLS layer.
// Also pushes liblber's readahead layer on top (above TLS, which libldap adds later at the
// transport level): libber reads a message as a few small reads (its header, then the rest),
// and libldap polls before each message; with the layer an answer of several messages (a
// search's entries and its result) is one recv(), and libldap asks the layer, not poll(),
// whether more is already here. About half the system calls per LDAP operation.
extern "C" int guard_conn_add(LDAP*, Sockbuf* sb, LDAPURLDesc*, sockaddr*, ldap_conncb* ctx) {
    static_cast<IoGuard*>(ctx->lc_arg)->tcp_connected = true;
    if (ber_sockbuf_add_io(sb, &kGuardIo, LBER_SBIOD_LEVEL_TRANSPORT, ctx->lc_arg) != 0) return -1;
    return ber_sockbuf_add_io(sb, &ber_sockbuf_io_readahead, LBER_SBIOD_LEVEL_APPLICATION, nullptr) == 0 ? 0 : -1;
}
extern "C" void guard_conn_del(LDAP*, Sockbuf*, ldap_conncb*) {}

// Holds a deadline on a connection's I/O for one scope.
class GuardScope {
public:
    GuardScope(IoGuard& g, Clock::time_point t) : g_(g), saved_(g.deadline) { g_.until(std::min(t, saved_)); }
    ~GuardScope() { g_.until(saved_); }
    GuardScope(const GuardScope&) = delete;
    GuardScope& operator=(const GuardScope&) = delete;

private:
    IoGuard& g_;
    Clock::time_point saved_;
};

struct Conn {
    std::unique_ptr<IoGuard> guard;  // declared before `ld`: outlives the handle that points to it
    LdapPtr ld;
    std::size_t server = 0;     // index into the server list
    std::uint64_t generation = 0;  // of the DNS SRV targets when opened (0: no dns_srv)
    Clock::time_point idle_since;
    bool reused = false;        // came from the pool (may have died while idle)
};
using ConnPtr = std::unique_ptr<Conn>;

// A fixed number of slots; a slot is idle (a ready connection) or leased.
class Pool {
public:
    Pool(const char* name, unsigned capacity) : name_(name), capacity_(std::max(1u, capacity)) {}

    // Waits until `deadline` for a slot. On success the slot is leased: `conn` is a ready
    // connection, or null when the caller must open one.
    bool acquire(Clock::time_point deadline, ConnPtr& conn) {
        std::vector<ConnPtr> stale;
        {
            std::unique_lock lock(m_);
            if (!cv_.wait_until(lock, deadline, [&] { return !idle_.empty() || leased_ + idle_.size() < capacity_; }))
                return false;
            auto now = Clock::now();
            while (!idle_.empty() && now - idle_.front()->idle_since > kMaxIdle) {
                stale.push_back(std::move(idle_.front()));
                idle_.erase(idle_.begin());
            }
            ++leased_;
            if (!idle_.empty()) {
                conn = std::move(idle_.back());  // the most recently used: likely still alive
                idle_.pop_back();
                conn->reused = true;
            }
        }
        return true;  // `stale` closes here, outside the lock
    }

    // Ends a lease: a connection goes back to the idle list, null frees the slot.
    void release(ConnPtr conn) {
        {
            std::lock_guard lock(m_);
            --leased_;
            if (conn) {
                conn->idle_since = Clock::now();
                idle_.push_back(std::move(conn));
            }
        }
        cv_.notify_one();
    }

    const char* name() const { return name_; }

private:
    const char* name_;
    unsigned capacity_;
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<ConnPtr> idle_;  // oldest first
    unsigned leased_ = 0;
};

// One leased slot; returns it on destruction. A connection marked broken is closed.
class Lease {
public:
    // `conn` came from pool.acquire() (null: the slot is leased, no connection yet).
    Lease(Pool& pool, ConnPtr conn) : pool_(&pool), conn_(std::move(conn)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_->release(broken_ ? nullptr : std::move(conn_)); }
    ConnPtr& conn() { return conn_; }
    void set(ConnPtr c) {
        conn_ = std::move(c);
        broken_ = false;
    }
    void discard() {
        conn_.reset();
        broken_ = true;
    }

private:
    Pool* pool_;
    ConnPtr conn_;
    bool broken_ = false;
};

enum class Purpose { service, user_bind, probe };

// The steps of one request, for `cvat-authctl explain` (null: not collected).
class Trace {
public:
    explicit Trace(std::vector<std::string>* out) : out_(out) {}
    bool on() const { return out_ != nullptr; }
    template <typename... Parts>
    void add(const Parts&... parts) {
        if (out_ != nullptr) out_->push_back((std::string() + ... + std::string(parts)));
    }

private:
    std::vector<std::string>* out_;
};

class LdapBackendImpl final : public LdapBackend {
public:
    explicit LdapBackendImpl(LdapConfig config)
        : cfg_(std::move(config)),
          service_pool_("service", cfg_.pool_size),
          user_pool_("user-bind", cfg_.pool_size),
          servers_(cfg_.server_uri, make_discovery(cfg_),
                   [this](const std::string& uri) { return describe_server(uri, cfg_.start_tls); }),
          group_graph_(std::chrono::seconds(cfg_.group_cache_ttl_s)),
          mirror_(kMirrorBelievedFor) {
        fill_default_attr("user_name", "uid");
        fill_default_attr("email", "mail");
        fill_default_attr("first_name", "givenName");
        fill_default_attr("last_name", "sn");
    }
    ~LdapBackendImpl() override {
        {
            std::lock_guard lock(mirror_m_);
            mirror_stop_ = true;
        }
        mirror_cv_.notify_all();
        if (mirror_thread_.joinable()) mirror_thread_.join();
    }
    LdapBackendImpl(const LdapBackendImpl&) = delete;
    LdapBackendImpl& operator=(const LdapBackendImpl&) = delete;

    LdapOutcome authenticate(std::string_view user, const Secret& password) override {
        return guarded([&](LdapOutcome& out) { resolve(user, &password, out, Trace(nullptr)); });
    }
    LdapOutcome change_password(std::string_view user, const Secret& old_password,
                                const Secret& new_password) override {
        return guarded([&](LdapOutcome& out) { change(user, old_password, new_password, out); });
    }
    LdapOutcome lookup(std::string_view user) override {
        return guarded([&](LdapOutcome& out) { resolve(user, nullptr, out, Trace(nullptr)); });
    }
    void forget_groups() override { group_graph_.clear(); }
    LdapOutcome lookup_uid(std::uint32_t uid) override {
        return guarded([&](LdapOutcome& out) { resolve_uid(uid, out); });
    }
    LdapOutcome explain(std::string_view user) override {
        return guarded([&](LdapOutcome& out) { resolve(user, nullptr, out, Trace(&out.trace)); });
    }
    std::vector<proto::BackendState> probe() override;

    Result<void> validate() const {
        if (servers_.empty() && !servers_.discovers()) return fail(ErrorCode::config, "ldap.server_uri: no server");
        for (std::size_t i = 0; i < servers_.size(); ++i)
            if (const ServerInfo& s = servers_[i]; !s.parse_error.empty())
                return fail(ErrorCode::config, "ldap.server_uri: " + log_safe(s.uri) + ": " + s.parse_error);
        if (auto f = expand_user_filter(cfg_.user_search.filter, "x"); !f)
            return fail(ErrorCode::config, "ldap.user_search.filter: " + f.error().detail);
        return {};
    }

private:
    void fill_default_attr(const char* key, const char* attr) {
        auto it = cfg_.user_attr_map.find(key);
        if (it == cfg_.user_attr_map.end() || it->second.empty()) cfg_.user_attr_map[key] = attr;
    }
    const std::string& attr_for(const char* key) const { return cfg_.user_attr_map.at(key); }

    template <typename Fn>
    LdapOutcome guarded(Fn&& fn) noexcept {
        LdapOutcome out;
        try {
            fn(out);
        } catch (const std::exception& e) {
            out = LdapOutcome{};
            out.status = Status::internal;
            out.message = "internal error in the LDAP backend";
            log::error("ldap: internal error: ", log_safe(e.what()));
        } catch (...) {
            out = LdapOutcome{};
            out.status = Status::internal;
            out.message = "internal error in the LDAP backend";
            log::error("ldap: internal error");
        }
        return out;
    }

    Ms connect_timeout() const { return Ms(std::max(1, cfg_.connect_timeout_ms)); }
    Ms op_timeout() const { return Ms(std::max(1, cfg_.timeout_ms)); }

    // The SRV targets' resolver (null without dns_srv). A DNS lookup waits at most
    // connect_timeout (whole seconds, 1-5) per try, two tries.
    static std::unique_ptr<SrvDiscovery> make_discovery(const LdapConfig& c) {
        if (c.dns_srv.empty()) return nullptr;
        return std::make_unique<SrvDiscovery>(c.dns_srv, std::clamp((c.connect_timeout_ms + 999) / 1000, 1, 5), 2);
    }

    // Servers to try, best first: those not recently failed in list order (SRV targets by
    // RFC 2782, then server_uri), then the rest.
    std::vector<std::size_t> server_order(std::uint64_t* generation = nullptr, std::string* problem = nullptr) {
        std::vector<std::size_t> up, down;
        const std::vector<std::size_t> order = servers_.order(generation, problem);
        auto now = Clock::now();
        std::lock_guard lock(servers_m_);
        for (std::size_t i : order) (down_until_[i] > now ? down : up).push_back(i);
        up.insert(up.end(), down.begin(), down.end());
        return up;
    }
    void mark_down(std::size_t i, const std::string& why) {
        bool was_up;
        {
            std::lock_guard lock(servers_m_);
            was_up = down_until_[i] <= Clock::now();
            down_until_[i] = Clock::now() + kServerRetryAfter;
        }
        if (was_up) log::warning("ldap: server ", log_safe(servers_[i].uri), " failed: ", why);
    }
    void mark_up(std::size_t i) {
        bool was_down;
        {
            std::lock_guard lock(servers_m_);
            was_down = down_until_[i] != Clock::time_point{};
            down_until_[i] = Clock::time_point{};
        }
        if (was_down) log::info("ldap: server ", log_safe(servers_[i].uri), " answers again");
    }

    // Connects to server `i`: handle options, TCP (+TLS), StartTLS, service bind; all within
    // connect_timeout_ms. `fatal` is set when the failure is the config's, not the server's.
    Outcome<ConnPtr> open_server(std::size_t i, bool& fatal);
    // Connects to the first server that answers (failover).
    Outcome<ConnPtr> open_any(Purpose purpose);

    // Simple bind with a deadline. The password is passed by pointer, never copied. With
    // `policy`, the bind carries the password policy request control and `policy` gets the
    // server's response control (user binds).
    // `meanwhile`, if given, runs once the bind request is on its way and before its answer
    // is read (the answer then gets op_timeout from when `meanwhile` returned).
    OpResult<void> bind(Conn& conn, const std::string& dn, const char* pw, std::size_t pw_len,
                        Clock::time_point deadline, std::string* diag_out = nullptr,
                        PolicyResponse* policy = nullptr, const std::function<void()>& meanwhile = {});
    // Search with a deadline, paged when `paged`, stopping after `max_entries`.
    OpResult<std::vector<Entry>> search(Conn& conn, const std::string& base, Scope scope,
                                        const std::string& filter, const std::vector<std::string>& attrs,
                                        int size_limit, std::size_t max_entries, bool paged,
                                        bool* truncated);

    // Runs `op` (OpResult<T>(Conn&)) on a connection of `pool`, failing over to a fresh
    // connection on connection faults; other errors become map(error).
    template <typename T, typename Op, typename Map>
    Outcome<T> with_connection(Pool& pool, Purpose purpose, Op&& op, Map&& map);

    // Group DNs matching `filter` under group_search.base (paged, attribute-less, at most
    // `max`). A missing base gives none, with a warning.
    // `incomplete` gets the reason when the result was cut (max, or the server's size limit).
    Outcome<std::vector<std::string>> group_dns(const std::string& filter, std::size_t max,
                                                std::string& incomplete, Trace& trace);
    // The group search group_dns(filter, max) would make, sent now on `conn` without waiting
    // (unpaged, at most `max` entries); -1 when it could not be sent.
    int send_group_search(Conn& conn, const std::string& filter, std::size_t max);
    // The answer to send_group_search(): the group DNs when the search completed with fewer
    // than `max` entries, nothing otherwise (then the walk asks as it always does).
    std::optional<std::vector<std::string>> take_group_search(Conn& conn, int msgid, std::size_t max);

    void resolve(std::string_view name, const Secret* password, LdapOutcome& out, Trace trace);

    // Password change (change_password()): the user's entry, the directory's kind, then one
    // of the two ways on a user-bind connection.
    void change(std::string_view name, const Secret& old_pw, const Secret& new_pw, LdapOutcome& out);
    // True when the root DSE lists the Active Directory capability; asked once per backend.
    Outcome<bool> is_active_directory();
    // Bind as `dn` with the old password, then RFC 3062 Password Modify.
    OpResult<AccountVerdict> change_by_exop(Conn& c, const std::string& dn, const Secret& old_pw,
                                            const Secret& new_pw);
    // Bind as `dn` (or, for a password AD says must change, as bind_dn), then the unicodePwd
    // delete-old/add-new modify (MS-ADTS 3.1.1.3.1.5.2): the old value is the proof.
    OpResult<AccountVerdict> change_on_ad(Conn& c, const std::string& dn, const Secret& old_pw,
                                          const Secret& new_pw);
    void resolve_uid(std::uint32_t uid, LdapOutcome& out);
    // The user's groups per group_type. `incomplete` gets a reason when the walk stopped
    // early (max_groups, max_nesting, the server's size limit); it stays empty otherwise.
    Outcome<void> collect_groups(const Entry& entry, LdapUser& user, std::string& incomplete, Trace& trace);
    Outcome<void> nested_walk(const std::string& user_dn, std::vector<std::string>& groups,
                              std::string& incomplete, Trace& trace);
    // What a walk met, for the group graph cache: a group found that was already `seen`, and
    // the walk stopped (max_nesting, max_groups) before its frontier was done.
    struct WalkNotes {
        bool revisited = false;
        bool stopped = false;
    };
    // The walk's levels from `level` on (only that one with `one_level`): each asks which
    // groups not `seen` have a member in `frontier`, which then holds the new ones.
    Outcome<void> walk_levels(std::set<std::string>& seen, std::vector<std::string>& frontier, unsigned level,
                              bool one_level, std::vector<std::string>& groups, std::string& incomplete,
                              Trace& trace, WalkNotes* notes = nullptr);
    void explain_role(const RoleDecision& d, Trace& trace) const;

    // Whether the server of `conn` is Active Directory (LDAP_CAP_ACTIVE_DIRECTORY_OID in the
    // root DSE), asked once per server. A root DSE that cannot be read: not AD.
    OpResult<bool> server_is_ad(Conn& conn);
    // Every value of `attr` of entry `dn`, by AD range retrieval when the server ranges it:
    // `values` holds those read so far and `from` where the next range starts ("0": ranged
    // from the start; "": a plain read, continued in ranges if the server cut it). Stops at
    // `max` values or kMaxRangeRounds reads with `truncated` set.
    OpResult<void> read_values(Conn& conn, const std::string& dn, const std::string& attr,
                               std::vector<std::string>& values, std::string from, std::size_t max,
                               bool& truncated);
    // When the group list came out incomplete: is the user in role group `group` after all?
    // Asked from the group down (DESIGN.md §5, bounded: max_nesting levels, kMaxCheckedGroups
    // groups, kMaxMemberValues values of member per group); unknown when a bound cut it.
    enum class Membership { member, not_member, unknown };
    Outcome<Membership> check_role_group(const std::string& group, const Entry& entry, const LdapUser& user,
                                         Trace& trace);

    // --- the group mirror (group_mirror.hpp) ---
    // member_of reads the user's own entry: nothing to mirror.
    bool mirror_wanted() const {
        return cfg_.group_mirror && cfg_.group_type != GroupType::member_of && cfg_.group_cache_ttl_s > 0;
    }
    // The believed copy for a group walk, or none (then the walk searches). The first call
    // starts the feed.
    std::optional<GroupMirror::View> mirror_view();
    // The user's groups from the copy, as collect_groups() would find them by searching; false
    // (nothing added) when the copy cannot answer for this user, who is then searched.
    bool groups_from_mirror(const GroupMirror::View& view, const Entry& entry, LdapUser& user,
                            std::string& incomplete, Trace& trace) const;
    // The feed's thread: a server, a refresh, then changes as they come, until the feed is lost;
    // again after a pause.
    void mirror_feed();
    // The thread's body: mirror_feed() again after an exception, which must not end the daemon.
    void mirror_thread() noexcept;
    // lost: the connection or the feed failed; unsupported: no RFC 4533 here; too_big: past the
    // copy's bounds or the size limit; unreadable: member values the bind DN may not read;
    // moved: logins now prefer another server, the feed follows.
    enum class FeedEnd { stopped, lost, unsupported, too_big, unreadable, moved };
    // Whether the copy holds the values the directory has: a group that came without any is
    // asked (up to 64 such) whether the directory sees some. Not: the bind DN may search them
    // but not read them, and the copy would hold groups without members.
    Result<void> mirror_readable(Conn& conn, const GroupSet& set);
    FeedEnd mirror_session(Conn& conn, const std::string& uri, std::string& why);
    // One entry of the feed into `building` (the refresh's copy) or, when null, the believed one.
    // `moved` is set when a group of the believed copy went or changed its DN; `uuid` gets the
    // entry's entryUUID.
    Result<void> mirror_entry(LDAP* ld, LDAPMessage* e, GroupSet* building, bool& moved, std::string& uuid);
    // Waits `d` unless the backend is going away; false when it is.
    bool mirror_pause(Clock::duration d);
    bool mirror_stopping() {
        std::lock_guard lock(mirror_m_);
        return mirror_stop_;
    }

    LdapConfig cfg_;
    Pool service_pool_;
    Pool user_pool_;
    ServerList<ServerInfo> servers_;
    std::mutex servers_m_;
    std::map<std::size_t, Clock::time_point> down_until_;  // by server index; guarded by servers_m_
    std::map<std::size_t, bool> server_ad_;  // by server index: Active Directory?; guarded by servers_m_
    GroupGraphCache group_graph_;
    RecentFailures recent_failures_;
    DnPattern dn_pattern_;
    GroupMirror mirror_;
    std::once_flag mirror_once_;
    std::mutex mirror_m_;
    std::condition_variable mirror_cv_;
    bool mirror_stop_ = false;  // guarded by mirror_m_
    std::string mirror_state_;  // for probe(): what the feed is doing; guarded by mirror_m_
    std::thread mirror_thread_;  // last: joined in the destructor before the members go
};

Outcome<ConnPtr> LdapBackendImpl::open_server(std::size_t i, bool& fatal) {
    fatal = false;
    const ServerInfo& s = servers_[i];
    const auto deadline = Clock::now() + connect_timeout();
    LDAP* raw = nullptr;
    int rc = ldap_initialize(&raw, s.uri.c_str());
    if (rc != LDAP_SUCCESS || raw == nullptr) {
        fatal = true;
        return failure(Status::internal, "bad URI: " + describe(nullptr, rc));
    }
    auto conn = std::make_unique<Conn>();
    conn->guard = std::make_unique<IoGuard>();
    conn->ld.reset(raw);
    conn->server = i;
    LDAP* ld = raw;
    conn->guard->cb.lc_add = guard_conn_add;
    conn->guard->cb.lc_del = guard_conn_del;
    conn->guard->cb.lc_arg = conn->guard.get();
    if (ldap_set_option(ld, LDAP_OPT_CONNECT_CB, &conn->guard->cb) != LDAP_OPT_SUCCESS) {
        fatal = true;
        return failure(Status::internal, "cannot set the connect callback");
    }

    auto set = [&](int option, const void* value, const char* what) -> bool {
        if (ldap_set_option(ld, option, value) == LDAP_OPT_SUCCESS) return true;
        log::error("ldap: cannot set ", what, " on a connection to ", log_safe(s.uri));
        return false;
    };
    const int version = LDAP_VERSION3;
    const timeval net_tv = to_timeval(connect_timeout());
    const timeval op_tv = to_timeval(op_timeout());
    const int time_limit = static_cast<int>((op_timeout().count() + 999) / 1000);
    bool ok = set(LDAP_OPT_PROTOCOL_VERSION, &version, "protocol version") &&
              set(LDAP_OPT_NETWORK_TIMEOUT, &net_tv, "network timeout") &&
              set(LDAP_OPT_TIMEOUT, &op_tv, "operation timeout") &&
              set(LDAP_OPT_TIMELIMIT, &time_limit, "time limit") &&
              set(LDAP_OPT_REFERRALS, cfg_.referrals ? LDAP_OPT_ON : LDAP_OPT_OFF, "referrals") &&
              set(LDAP_OPT_RESTART, LDAP_OPT_ON, "restart");
    if (ok && s.tls) {
        const int require = cfg_.tls.require_cert ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
        const int min_proto = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2;
        ok = set(LDAP_OPT_X_TLS_REQUIRE_CERT, &require, "TLS certificate check") &&
             set(LDAP_OPT_X_TLS_PROTOCOL_MIN, &min_proto, "TLS minimum version") &&
             (cfg_.tls.ca_file.empty() || set(LDAP_OPT_X_TLS_CACERTFILE, cfg_.tls.ca_file.c_str(), "TLS CA file"));
        // Per-handle TLS options take effect only in a context of their own.
        const int is_server = 0;
        if (ok && ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &is_server) != LDAP_OPT_SUCCESS) {
            fatal = true;
            return failure(Status::unavailable,
                           "TLS setup failed (ca_file " + log_safe(cfg_.tls.ca_file) + " unreadable?)");
        }
    }
    if (!ok) {
        fatal = true;
        return failure(Status::internal, "cannot set connection options");
    }

    // TCP connect (bounded by the network timeout) and, for ldaps://, the TLS handshake
    // (bounded by the I/O guard): everything up to the end of the service bind shares one
    // deadline.
    GuardScope io(*conn->guard, deadline);
    rc = ldap_connect(ld);
    if (rc != LDAP_SUCCESS) {
        if (Clock::now() >= deadline) return failure(Status::unavailable, "no answer within connect_timeout_ms");
        if (conn->guard->tcp_connected && s.tls)
            return failure(Status::unavailable, "TLS handshake failed: " + describe(ld, rc) + kTlsHint);
        return failure(Status::unavailable, describe(ld, rc));
    }

    if (s.start_tls) {
        int msgid = -1;
        rc = ldap_start_tls(ld, nullptr, nullptr, &msgid);
        if (rc != LDAP_SUCCESS) return failure(Status::unavailable, "StartTLS: " + describe(ld, rc));
        timeval tv = to_timeval(remaining(deadline));
        LDAPMessage* res_raw = nullptr;
        rc = ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, &res_raw);
        MessagePtr res(res_raw);
        if (rc == 0) return failure(Status::unavailable, "StartTLS: no answer within connect_timeout_ms");
        if (rc < 0) {
            int err = LDAP_SERVER_DOWN;
            ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
            return failure(Status::unavailable, "StartTLS: " + describe(ld, err));
        }
        int err = LDAP_OTHER;
        char* diag_raw = nullptr;
        rc = ldap_parse_result(ld, res.get(), &err, nullptr, &diag_raw, nullptr, nullptr, 0);
        LdapString diag(diag_raw);
        if (rc != LDAP_SUCCESS) return failure(Status::unavailable, "StartTLS: " + describe(ld, rc));
        if (err != LDAP_SUCCESS) {
            fatal = !is_connection_fault(err);  // e.g. the server has no certificate: config
            return failure(Status::unavailable, "StartTLS refused: " + describe(ld, err, diag.get()));
        }
        rc = ldap_install_tls(ld);
        if (rc != LDAP_SUCCESS) {
            if (Clock::now() >= deadline)
                return failure(Status::unavailable, "StartTLS: no answer within connect_timeout_ms");
            return failure(Status::unavailable, "StartTLS handshake failed: " + describe(ld, rc) + kTlsHint);
        }
    }

    // The service bind proves the server answers; on user-bind connections it is replaced
    // by the user's bind.
    auto bound = bind(*conn, cfg_.bind_dn, cfg_.bind_password.c_str(), cfg_.bind_password.size(), deadline);
    if (!bound) {
        const OpError& e = bound.error();
        if (is_connection_fault(e.rc)) {
            if (e.rc == LDAP_TIMEOUT) return failure(Status::unavailable, "no answer within connect_timeout_ms");
            return failure(Status::unavailable, e.text);
        }
        fatal = true;
        std::string who = cfg_.bind_dn.empty() ? std::string("anonymous") : "as " + log_safe(cfg_.bind_dn);
        if (e.rc == LDAP_INVALID_CREDENTIALS)
            return failure(Status::unavailable, "service bind " + who + " failed: invalid credentials");
        return failure(Status::unavailable, "service bind " + who + " failed: " + e.text);
    }
    conn->idle_since = Clock::now();
    return conn;
}

Outcome<ConnPtr> LdapBackendImpl::open_any(Purpose purpose) {
    std::string errors;
    std::uint64_t generation = 0;
    std::string dns_problem;
    for (std::size_t i : server_order(&generation, &dns_problem)) {
        const ServerInfo& s = servers_[i];
        if (!errors.empty()) errors += "; ";
        // Belt and braces with the config loader: a password goes over plain LDAP only to
        // this machine, or when the config allows it.
        if (purpose == Purpose::user_bind && !s.tls && !s.local && !cfg_.allow_cleartext_password) {
            errors += s.uri + ": refusing to send a password in clear text (use ldaps:// or start_tls)";
            continue;
        }
        bool fatal = false;
        auto conn = open_server(i, fatal);
        if (conn) {
            mark_up(i);
            (*conn)->generation = generation;
            return conn;
        }
        if (fatal) {
            log::error("ldap: ", log_safe(s.uri), ": ", conn.error().message);
            return failure(conn.error().status, conn.error().message);
        }
        mark_down(i, conn.error().message);
        errors += s.uri + ": " + conn.error().message;
    }
    servers_.all_failed();  // DNS may know better servers now
    if (!dns_problem.empty()) errors += (errors.empty() ? "dns_srv: " : "; dns_srv: ") + dns_problem;
    return failure(Status::unavailable, "directory unreachable: " + log_safe(errors));
}

OpResult<void> LdapBackendImpl::bind(Conn& conn, const std::string& dn, const char* pw, std::size_t pw_len,
                                     Clock::time_point deadline, std::string* diag_out, PolicyResponse* policy,
                                     const std::function<void()>& meanwhile) {
    LDAP* ld = conn.ld.get();
    std::optional<GuardScope> io(std::in_place, *conn.guard, deadline);
    berval cred{};
    cred.bv_len = pw_len;
    cred.bv_val = const_cast<char*>(pw);  // libldap takes a non-const berval; it only reads
    ControlPtr request;
    if (policy != nullptr) {
        *policy = PolicyResponse{};
        LDAPControl* c = nullptr;
        int crc = ldap_create_passwordpolicy_control(ld, &c);
        if (crc != LDAP_SUCCESS) return op_error(crc, describe(ld, crc));
        request.reset(c);
    }
    LDAPControl* server_ctrls[2] = {request.get(), nullptr};
    int msgid = -1;
    int rc = ldap_sasl_bind(ld, dn.c_str(), LDAP_SASL_SIMPLE, &cred, request ? server_ctrls : nullptr, nullptr,
                            &msgid);
    if (rc != LDAP_SUCCESS) return op_error(rc, describe(ld, rc));
    if (meanwhile) {
        io.reset();
        meanwhile();
        deadline = Clock::now() + op_timeout();
        io.emplace(*conn.guard, deadline);
    }
    auto reply = await_reply(ld, msgid, deadline);
    if (!reply) {
        if (reply.error().rc == LDAP_TIMEOUT) return op_error(LDAP_TIMEOUT, "no answer to the bind in time");
        return tl::unexpected<OpError>(reply.error());
    }
    if (diag_out != nullptr) *diag_out = reply->diag;
    if (policy != nullptr) *policy = reply->policy;
    if (reply->err != LDAP_SUCCESS)
        return op_error(reply->err, describe(ld, reply->err, reply->diag.empty() ? nullptr : reply->diag.c_str()));
    return {};
}

OpResult<std::vector<Entry>> LdapBackendImpl::search(Conn& conn, const std::string& base, Scope scope,
                                                     const std::string& filter,
                                                     const std::vector<std::string>& attrs, int size_limit,
                                                     std::size_t max_entries, bool paged, bool* truncated) {
    LDAP* ld = conn.ld.get();
    std::vector<char*> attr_ptrs;
    for (const std::string& a : attrs) attr_ptrs.push_back(const_cast<char*>(a.c_str()));
    attr_ptrs.push_back(nullptr);

    std::vector<Entry> entries;
    berval cookie{};
    struct CookieGuard {
        berval& c;
        ~CookieGuard() { BervalContentFree{}(&c); }
    } cookie_guard{cookie};
    if (truncated != nullptr) *truncated = false;

    for (std::size_t pages = 0;; ++pages) {
        if (pages >= kMaxPages) {
            if (truncated != nullptr) *truncated = true;
            return entries;
        }
        ControlPtr page;
        if (paged) {
            LDAPControl* c = nullptr;
            int rc = ldap_create_page_control(ld, kPageSize, cookie.bv_val != nullptr ? &cookie : nullptr, 0, &c);
            if (rc != LDAP_SUCCESS) return op_error(rc, describe(ld, rc));
            page.reset(c);
        }
        LDAPControl* server_ctrls[2] = {page.get(), nullptr};
        timeval tv = to_timeval(op_timeout());
        GuardScope io(*conn.guard, Clock::now() + op_timeout());
        LDAPMessage* res_raw = nullptr;
        int rc = ldap_search_ext_s(ld, base.c_str(), ldap_scope(scope), filter.c_str(), attr_ptrs.data(), 0,
                                   paged ? server_ctrls : nullptr, nullptr, &tv, size_limit, &res_raw);
        MessagePtr res(res_raw);
        if (!res) return op_error(rc == LDAP_SUCCESS ? LDAP_OTHER : rc, describe(ld, rc));

        for (LDAPMessage* e = ldap_first_entry(ld, res.get()); e != nullptr; e = ldap_next_entry(ld, e)) {
            if (entries.size() >= max_entries) {
                if (truncated != nullptr) *truncated = true;
                break;
            }
            Entry entry;
            LdapString dn(ldap_get_dn(ld, e));
            if (!dn) continue;
            entry.dn = dn.get();
            BerElement* ber_raw = nullptr;
            LdapString a(ldap_first_attribute(ld, e, &ber_raw));
            BerPtr ber(ber_raw);
            for (; a; a.reset(ldap_next_attribute(ld, e, ber.get()))) {
                ValuesPtr vals(ldap_get_values_len(ld, e, a.get()));
                std::string name = lower(a.get());
                if (auto r = name.find(";range="); r != std::string::npos) {
                    // "member;range=0-1499": the rest starts at 1500; "member;range=1500-*": done.
                    std::string hi = name.substr(name.find('-', r) == std::string::npos ? name.size()
                                                                                         : name.find('-', r) + 1);
                    name.resize(r);
                    unsigned long long last = 0;
                    auto [p, ec] = std::from_chars(hi.data(), hi.data() + hi.size(), last);
                    entry.ranges[name] = hi == "*" ? std::string()
                                         : (ec == std::errc() && p == hi.data() + hi.size() && !hi.empty())
                                             ? std::to_string(last + 1)
                                             : std::string();
                }
                auto& out = entry.attrs[name];
                for (berval** v = vals.get(); v != nullptr && *v != nullptr; ++v)
                    out.emplace_back((*v)->bv_val, (*v)->bv_len);
            }
            entries.push_back(std::move(entry));
        }

        // Search result references (RFC 4511 §4.5.3; Samba sends one to its Configuration
        // partition from the domain root) are skipped above: with referrals off nothing follows
        // them, with referrals on libldap has chased them before this point.
        if (const int refs = ldap_count_references(ld, res.get()); refs > 0)
            log::debug("ldap: search under ", log_safe(base), ": ", std::to_string(refs),
                       cfg_.referrals ? " referral(s) chased by libldap" : " referral(s) ignored (referrals: false)");

        int err = LDAP_OTHER;
        char* diag_raw = nullptr;
        LDAPControl** ctrls_raw = nullptr;
        int prc = ldap_parse_result(ld, res.get(), &err, nullptr, &diag_raw, nullptr, &ctrls_raw, 0);
        LdapString diag(diag_raw);
        ControlsPtr ctrls(ctrls_raw);
        if (prc != LDAP_SUCCESS) return op_error(prc, describe(ld, prc));
        if (err == LDAP_SIZELIMIT_EXCEEDED) {
            if (truncated != nullptr) *truncated = true;
            return entries;
        }
        if (err != LDAP_SUCCESS) return op_error(err, describe(ld, err, diag.get()));
        if (truncated != nullptr && *truncated) return entries;
        if (!paged) return entries;
        LDAPControl* pr = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls.get(), nullptr);
        if (pr == nullptr) return entries;  // the server ignored paging: all results are here
        BervalContentFree{}(&cookie);
        cookie = berval{};
        ber_int_t estimate = 0;
        if (ldap_parse_pageresponse_control(ld, pr, &estimate, &cookie) != LDAP_SUCCESS)
            return op_error(LDAP_DECODING_ERROR, "bad paged-results control from the server");
        if (cookie.bv_val == nullptr || cookie.bv_len == 0) return entries;
    }
}

template <typename T, typename Op, typename Map>
Outcome<T> LdapBackendImpl::with_connection(Pool& pool, Purpose purpose, Op&& op, Map&& map) {
    // Wait for a busy pool only as long as one operation may take.
    ConnPtr first;
    if (!pool.acquire(Clock::now() + op_timeout(), first)) {
        log::warning("ldap: all ", std::to_string(std::max(1u, cfg_.pool_size)), " ", pool.name(),
                     " connections stayed busy for ", std::to_string(op_timeout().count()), " ms");
        return failure(Status::unavailable, "directory busy: no free LDAP connection");
    }
    Lease lease(pool, std::move(first));
    // A pooled connection to the targets of an older SRV answer: the record changed, follow it.
    if (lease.conn() && lease.conn()->generation != servers_.generation()) lease.discard();
    // A fresh connection per server at most, plus one retry for a stale pooled one.
    const std::size_t max_attempts = servers_.size() + 1;
    for (std::size_t attempt = 0; attempt < max_attempts; ++attempt) {
        if (!lease.conn()) {
            auto fresh = open_any(purpose);
            if (!fresh) return tl::unexpected<Failure>(fresh.error());
            lease.set(std::move(*fresh));
        }
        Conn& conn = *lease.conn();
        OpResult<T> r = op(conn);
        if (r) return std::move(*r);
        const OpError e = r.error();
        if (!is_connection_fault(e.rc)) return tl::unexpected<Failure>(map(e));
        const std::size_t server = conn.server;
        const bool was_reused = conn.reused;
        lease.discard();
        if (was_reused)
            log::info("ldap: pooled connection to ", log_safe(servers_[server].uri), " failed (", e.text,
                      "); reconnecting");
        else
            mark_down(server, e.text);
    }
    return failure(Status::unavailable, "directory unreachable: every server failed during the operation");
}

Failure map_bind_error(const OpError& e, const std::string& diag) {
    switch (e.rc) {
    case LDAP_INVALID_CREDENTIALS: {
        std::string why;
        Status s = ad_bind_status(diag, why);
        return Failure{s, s == Status::auth_err ? std::string("invalid credentials") : why};
    }
    case LDAP_INAPPROPRIATE_AUTH:
    case LDAP_UNWILLING_TO_PERFORM:
        return Failure{Status::auth_err, "the directory refused the bind: " + e.text};
    case LDAP_CONFIDENTIALITY_REQUIRED:
    case LDAP_STRONG_AUTH_REQUIRED:
        return Failure{Status::unavailable, "the directory requires a protected connection: " + e.text};
    default:
        return Failure{Status::unavailable, "bind failed: " + e.text};
    }
}

// Whether the server a service connection reaches is Active Directory (its root DSE, read
// once per server; see server_is_ad).
Outcome<bool> LdapBackendImpl::is_active_directory() {
    return with_connection<bool>(
        service_pool_, Purpose::service, [&](Conn& c) { return server_is_ad(c); },
        [&](const OpError& e) { return Failure{Status::unavailable, "reading the root DSE failed: " + e.text}; });
}

// The words for a refused bind of the password's owner during a change.
AccountVerdict refused_owner_bind(const OpError& e, const std::string& diag, const PolicyResponse& policy) {
    if (policy.error == PP_passwordExpired)
        return {Status::authtok_err,
                "your password has expired and no grace logins are left: ask an administrator to reset it"};
    if (auto v = bind_policy_verdict(false, policy)) return *v;
    Failure f = map_bind_error(e, diag);
    if (f.status == Status::auth_err) f.message = "the current password is wrong";
    return {f.status, f.message};
}

OpResult<AccountVerdict> LdapBackendImpl::change_by_exop(Conn& c, const std::string& dn, const Secret& old_pw,
                                                         const Secret& new_pw) {
    const auto deadline = Clock::now() + op_timeout();
    std::string diag;
    PolicyResponse policy;
    auto bound = bind(c, dn, old_pw.c_str(), old_pw.size(), deadline, &diag, &policy);
    if (!bound) {
        if (is_connection_fault(bound.error().rc)) return tl::unexpected<OpError>(bound.error());
        return refused_owner_bind(bound.error(), diag, policy);
    }
    // After a changeAfterReset bind the server allows nothing but this operation.
    LDAP* ld = c.ld.get();
    GuardScope io(*c.guard, deadline);
    berval id{dn.size(), const_cast<char*>(dn.data())};
    berval old_bv{old_pw.size(), const_cast<char*>(old_pw.c_str())};  // read only
    berval new_bv{new_pw.size(), const_cast<char*>(new_pw.c_str())};
    LDAPControl* raw = nullptr;
    int rc = ldap_create_passwordpolicy_control(ld, &raw);
    if (rc != LDAP_SUCCESS) return op_error(rc, describe(ld, rc));
    ControlPtr request(raw);
    LDAPControl* ctrls[2] = {request.get(), nullptr};
    int msgid = -1;
    rc = ldap_passwd(ld, &id, &old_bv, &new_bv, ctrls, nullptr, &msgid);
    if (rc != LDAP_SUCCESS) return op_error(is_connection_fault(rc) ? rc : LDAP_SERVER_DOWN, describe(ld, rc));
    auto reply = await_reply(ld, msgid, deadline);
    if (!reply) return tl::unexpected<OpError>(reply.error());
    if (reply->err == LDAP_SUCCESS) return AccountVerdict{};
    std::string words = policy_error_words(reply->policy.error);
    if (words.empty()) words = "the directory refused the new password";
    if (!reply->diag.empty()) words += " (" + log_safe(reply->diag) + ")";
    return AccountVerdict{Status::authtok_err, words};
}

OpResult<AccountVerdict> LdapBackendImpl::change_on_ad(Conn& c, const std::string& dn, const Secret& old_pw,
                                                       const Secret& new_pw) {
    if (!servers_[c.server].tls)
        return AccountVerdict{Status::authtok_err,
                              "Active Directory changes passwords only over an encrypted connection: use an "
                              "ldaps:// server_uri or start_tls"};
    auto old_value = ad_unicode_pwd(old_pw.view());
    auto new_value = ad_unicode_pwd(new_pw.view());
    if (!old_value) return AccountVerdict{Status::auth_err, "the current password is wrong"};
    if (!new_value) return AccountVerdict{Status::authtok_err, "the new password is not valid UTF-8 text"};
    const auto deadline = Clock::now() + op_timeout();
    std::string diag;
    auto bound = bind(c, dn, old_pw.c_str(), old_pw.size(), deadline, &diag);
    if (!bound) {
        if (is_connection_fault(bound.error().rc)) return tl::unexpected<OpError>(bound.error());
        AccountVerdict v = refused_owner_bind(bound.error(), diag, PolicyResponse{});
        if (v.status != Status::new_authtok_reqd) return v;
        // 773/532: the password is right but may only be changed. AD grants User-Change-
        // Password to Everyone on user objects: the service account performs the change and
        // the old value it deletes is the proof.
        if (cfg_.bind_dn.empty())
            return AccountVerdict{Status::authtok_err,
                                  "your password must be changed, which needs ldap.bind_dn: ask an administrator"};
        auto service = bind(c, cfg_.bind_dn, cfg_.bind_password.c_str(), cfg_.bind_password.size(), deadline);
        if (!service) {
            if (is_connection_fault(service.error().rc)) return tl::unexpected<OpError>(service.error());
            return AccountVerdict{Status::unavailable, "service bind failed: " + service.error().text};
        }
    }
    LDAP* ld = c.ld.get();
    GuardScope io(*c.guard, deadline);
    berval old_bv{old_value->size(), const_cast<char*>(old_value->c_str())};
    berval new_bv{new_value->size(), const_cast<char*>(new_value->c_str())};
    berval* old_vals[2] = {&old_bv, nullptr};
    berval* new_vals[2] = {&new_bv, nullptr};
    char attr[] = "unicodePwd";
    LDAPMod del{};
    del.mod_op = LDAP_MOD_DELETE | LDAP_MOD_BVALUES;
    del.mod_type = attr;
    del.mod_vals.modv_bvals = old_vals;
    LDAPMod add{};
    add.mod_op = LDAP_MOD_ADD | LDAP_MOD_BVALUES;
    add.mod_type = attr;
    add.mod_vals.modv_bvals = new_vals;
    LDAPMod* mods[3] = {&del, &add, nullptr};
    int msgid = -1;
    int rc = ldap_modify_ext(ld, dn.c_str(), mods, nullptr, nullptr, &msgid);
    if (rc != LDAP_SUCCESS) return op_error(is_connection_fault(rc) ? rc : LDAP_SERVER_DOWN, describe(ld, rc));
    auto reply = await_reply(ld, msgid, deadline);
    if (!reply) return tl::unexpected<OpError>(reply.error());
    if (reply->err == LDAP_SUCCESS) return AccountVerdict{};
    return ad_change_refusal(reply->err, log_safe(reply->diag));
}

void LdapBackendImpl::change(std::string_view name, const Secret& old_pw, const Secret& new_pw, LdapOutcome& out) {
    // Local checks first (an empty simple bind would be an anonymous "success").
    if (new_pw.empty()) {
        out.status = Status::authtok_err;
        out.message = "the new password is empty";
        return;
    }
    if (old_pw.empty()) {
        out.status = Status::auth_err;
        out.message = "the current password is empty";
        return;
    }
    resolve(name, nullptr, out, Trace(nullptr));
    if (out.status != Status::ok) return;  // unknown, disabled, no role, unreachable
    const LdapUser& user = out.user;
    if (user.account_status == Status::perm_denied || user.account_status == Status::acct_expired) {
        out.status = user.account_status;
        out.message = user.account_message;
        return;
    }
    auto ad = is_active_directory();
    if (!ad) {
        out.status = ad.error().status;
        out.message = ad.error().message;
        return;
    }
    const std::string dn = user.dn;
    auto done = with_connection<AccountVerdict>(
        user_pool_, Purpose::user_bind,
        [&](Conn& c) { return *ad ? change_on_ad(c, dn, old_pw, new_pw) : change_by_exop(c, dn, old_pw, new_pw); },
        [&](const OpError& e) { return Failure{Status::unavailable, "password change failed: " + e.text}; });
    if (!done) {
        out.status = done.error().status;
        out.message = done.error().message;
    } else {
        out.status = done->status;
        out.message = done->message;
    }
    if (out.status == Status::ok)
        log::info("ldap: password of ", log_safe(dn), " changed", *ad ? " (unicodePwd)" : " (RFC 3062)");
    else
        log::info("ldap: password change of ", log_safe(dn), " refused: ", out.message);
}

// Key for the visited set of the group walk: the normalised DN (raw, lower-cased, if the
// server sent something unparsable).
std::string dn_key(const std::string& dn) {
    auto n = normalize_dn(dn);
    return n ? *n : lower(dn);
}

bool acceptable_name(std::string_view v) {
    if (v.empty() || v.size() > kMaxUserName) return false;
    return std::none_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

Outcome<std::vector<std::string>> LdapBackendImpl::group_dns(const std::string& filter, std::size_t max,
                                                             std::string& incomplete, Trace& trace) {
    if (Prefetched* p = t_prefetched; p != nullptr && !p->taken && p->filter == filter && p->dns.size() < max) {
        p->taken = true;
        log::debug("ldap: group search answered with the user search: ", log_safe(filter));
        return std::move(p->dns);
    }
    bool missing = false;
    bool truncated = false;
    static const std::vector<std::string> kNoAttrs = {"1.1"};  // RFC 4511 §4.5.1.8: no attributes
    auto r = with_connection<std::vector<Entry>>(
        service_pool_, Purpose::service,
        [&](Conn& c) -> OpResult<std::vector<Entry>> {
            auto found = search(c, cfg_.group_search.base, cfg_.group_search.scope, filter, kNoAttrs, 0,
                                max, true, &truncated);
            if (!found && (found.error().rc == LDAP_NO_SUCH_OBJECT || found.error().rc == LDAP_REFERRAL)) {
                missing = true;
                return std::vector<Entry>{};
            }
            return found;
        },
        [&](const OpError& e) { return Failure{Status::unavailable, "group search failed: " + e.text}; });
    if (!r) return tl::unexpected<Failure>(r.error());
    if (missing) {
        log::warning("ldap: group_search.base ", log_safe(cfg_.group_search.base),
                     " does not exist or is not visible to the bind DN");
        trace.add("group_search.base \"", cfg_.group_search.base, "\" does not exist (or is not visible)");
    }
    if (truncated && incomplete.empty())
        incomplete = r->size() >= max ? "more than max_groups " + std::to_string(max) + " groups"
                                      : "the directory's size limit cut a group search after " +
                                            std::to_string(r->size()) + " entries";
    std::vector<std::string> dns;
    dns.reserve(r->size());
    for (Entry& e : *r) dns.push_back(std::move(e.dn));
    return dns;
}

int LdapBackendImpl::send_group_search(Conn& conn, const std::string& filter, std::size_t max) {
    static char kNoAttr[] = "1.1";  // RFC 4511 §4.5.1.8: no attributes
    char* attrs[] = {kNoAttr, nullptr};
    timeval tv = to_timeval(op_timeout());
    GuardScope io(*conn.guard, Clock::now() + op_timeout());
    int msgid = -1;
    const int rc = ldap_search_ext(conn.ld.get(), cfg_.group_search.base.c_str(), ldap_scope(cfg_.group_search.scope),
                                   filter.c_str(), attrs, 0, nullptr, nullptr, &tv,
                                   static_cast<int>(std::min<std::size_t>(max, 1u << 30)), &msgid);
    return rc == LDAP_SUCCESS ? msgid : -1;
}

std::optional<std::vector<std::string>> LdapBackendImpl::take_group_search(Conn& conn, int msgid, std::size_t max) {
    LDAP* ld = conn.ld.get();
    const auto deadline = Clock::now() + op_timeout();
    GuardScope io(*conn.guard, deadline);
    timeval tv = to_timeval(remaining(deadline));
    LDAPMessage* res_raw = nullptr;
    const int rc = ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, &res_raw);
    MessagePtr res(res_raw);
    if (rc <= 0) {
        ldap_abandon_ext(ld, msgid, nullptr, nullptr);
        return std::nullopt;
    }
    int err = LDAP_OTHER;
    if (ldap_parse_result(ld, res.get(), &err, nullptr, nullptr, nullptr, nullptr, 0) != LDAP_SUCCESS ||
        err != LDAP_SUCCESS)
        return std::nullopt;
    std::vector<std::string> dns;
    for (LDAPMessage* e = ldap_first_entry(ld, res.get()); e != nullptr; e = ldap_next_entry(ld, e)) {
        LdapString dn(ldap_get_dn(ld, e));
        if (!dn) return std::nullopt;
        dns.emplace_back(dn.get());
    }
    if (dns.size() >= max) return std::nullopt;
    return dns;
}

OpResult<bool> LdapBackendImpl::server_is_ad(Conn& conn) {
    {
        std::lock_guard lock(servers_m_);
        if (auto it = server_ad_.find(conn.server); it != server_ad_.end()) return it->second;
    }
    static const std::vector<std::string> kCaps = {"supportedCapabilities"};
    auto r = search(conn, "", Scope::base, "(objectClass=*)", kCaps, 1, 1, false, nullptr);
    if (!r && is_connection_fault(r.error().rc)) return tl::unexpected<OpError>(r.error());
    bool ad = false;
    if (r && !r->empty())
        if (const auto* caps = r->front().values("supportedCapabilities"))
            ad = std::find(caps->begin(), caps->end(), kCapActiveDirectory) != caps->end();
    std::lock_guard lock(servers_m_);
    server_ad_[conn.server] = ad;
    return ad;
}

OpResult<void> LdapBackendImpl::read_values(Conn& conn, const std::string& dn, const std::string& attr,
                                            std::vector<std::string>& values, std::string from, std::size_t max,
                                            bool& truncated) {
    truncated = false;
    const std::string key = lower(attr);
    for (std::size_t round = 0;; ++round) {
        if (round >= kMaxRangeRounds || values.size() >= max) {
            truncated = true;
            return {};
        }
        // A window of kRangeWindow values, as ADSI asks: AD answers at most MaxValRange of them
        // under the name it really served ("member;range=0-999" on a server with a lower
        // MaxValRange, "member;range=1500-*" for the last); Samba, which never cuts a plain
        // or open-ended read, honours windows too.
        std::string wanted = attr;
        if (!from.empty()) {
            unsigned long long lo = 0;
            std::from_chars(from.data(), from.data() + from.size(), lo);
            wanted += ";range=" + from + "-" + std::to_string(lo + kRangeWindow - 1);
        }
        if (!from.empty())
            log::debug("ldap: range retrieval: ", log_safe(dn), " ", wanted, " (", std::to_string(values.size()),
                       " values so far)");
        auto r = search(conn, dn, Scope::base, "(objectClass=*)", {wanted}, 1, 1, false, nullptr);
        if (!r) {
            if (r.error().rc == LDAP_NO_SUCH_OBJECT) return {};
            return tl::unexpected<OpError>(r.error());
        }
        if (r->empty()) return {};
        const Entry& e = r->front();
        if (const auto* v = e.values(key))
            for (const std::string& x : *v) {
                if (values.size() >= max) {
                    truncated = true;
                    return {};
                }
                values.push_back(x);
            }
        auto next = e.ranges.find(key);
        if (next == e.ranges.end() || next->second.empty()) return {};  // plain, or the last range
        from = next->second;
    }
}

Outcome<LdapBackendImpl::Membership> LdapBackendImpl::check_role_group(const std::string& group,
                                                                       const Entry& entry,
                                                                       const LdapUser& user, Trace& trace) {
    const std::string gf = group_filter_part(cfg_.group_search.filter);
    const bool nested = cfg_.group_type == GroupType::nested_active_directory ||
                        cfg_.group_type == GroupType::nested_group_of_names;
    static const std::vector<std::string> kNoAttrs = {"1.1"};
    // The test of one group: its entry matches this filter when the user is a direct member.
    std::string direct;
    std::string base_of_test;  // the entry the filter is tried on
    switch (cfg_.group_type) {
    case GroupType::member_of:
        direct = "(memberOf=" + escape_filter_value(group) + ")";
        base_of_test = user.dn;
        break;
    case GroupType::posix_group: {
        std::string uid = entry.first("uid");
        if (uid.empty()) uid = user.username;
        direct = "(&" + gf + "(|(memberUid=" + escape_filter_value(uid) + ")";
        if (std::string gid = entry.first("gidNumber"); !gid.empty())
            direct += "(gidNumber=" + escape_filter_value(gid) + ")";
        direct += "))";
        break;
    }
    default:
        direct = member_filter(gf, user.dn);
        break;
    }
    std::string how;
    auto r = with_connection<Membership>(
        service_pool_, Purpose::service,
        [&](Conn& c) -> OpResult<Membership> {
            auto test = [&](const std::string& dn, const std::string& filter) -> OpResult<bool> {
                auto found = search(c, dn, Scope::base, filter, kNoAttrs, 1, 1, false, nullptr);
                if (!found) {
                    if (found.error().rc == LDAP_NO_SUCH_OBJECT || found.error().rc == LDAP_REFERRAL) return false;
                    return tl::unexpected<OpError>(found.error());
                }
                return !found->empty();
            };
            if (!nested) {
                auto hit = test(base_of_test.empty() ? group : base_of_test, direct);
                if (!hit) return tl::unexpected<OpError>(hit.error());
                how = "direct membership asked of the group";
                return *hit ? Membership::member : Membership::not_member;
            }
            auto ad = server_is_ad(c);
            if (!ad) return tl::unexpected<OpError>(ad.error());
            // Down from the role group, level by level: is the user a direct member of a group
            // of this level? If not, the next level is the groups among this level's members.
            std::set<std::string> seen{dn_key(group)};
            std::vector<std::string> level{group};
            std::size_t visited = 0;
            for (unsigned depth = 0; !level.empty(); ++depth) {
                for (const std::string& g : level) {
                    auto hit = test(g, direct);
                    if (!hit) return tl::unexpected<OpError>(hit.error());
                    if (*hit) {
                        how = depth == 0 ? "direct member" : "member of " + g + ", " + std::to_string(depth) +
                                                                 " level(s) below";
                        return Membership::member;
                    }
                }
                if (depth >= cfg_.max_nesting) {
                    how = "deeper than max_nesting " + std::to_string(cfg_.max_nesting);
                    return Membership::unknown;
                }
                std::vector<std::string> next;
                for (const std::string& g : level) {
                    std::vector<std::string> members;
                    bool cut = false;
                    // On AD ask for a range outright: Windows cuts a plain read at MaxValRange
                    // (and says so), Samba answers ranged requests but never cuts plain ones.
                    auto read = read_values(c, g, "member", members, *ad ? "0" : "", kMaxMemberValues, cut);
                    if (!read) return tl::unexpected<OpError>(read.error());
                    if (cut) {
                        how = "group " + g + " has more than " + std::to_string(kMaxMemberValues) + " members";
                        return Membership::unknown;
                    }
                    // Which members are groups: asked in batches by DN (AD's distinguishedName,
                    // OpenLDAP's and 389-ds's entryDN).
                    const char* dn_attr = *ad ? "distinguishedName" : "entryDN";
                    for (std::size_t from = 0; from < members.size(); from += kMembersPerQuery) {
                        std::string any;
                        const std::size_t to = std::min(members.size(), from + kMembersPerQuery);
                        for (std::size_t i = from; i < to; ++i)
                            if (!seen.count(dn_key(members[i])))
                                any += std::string("(") + dn_attr + "=" + escape_filter_value(members[i]) + ")";
                        if (any.empty()) continue;
                        bool cut_groups = false;
                        auto groups = search(c, cfg_.group_search.base, cfg_.group_search.scope,
                                             "(&" + gf + "(|" + any + "))", kNoAttrs, 0, kMaxCheckedGroups, true,
                                             &cut_groups);
                        if (!groups) {
                            if (groups.error().rc == LDAP_NO_SUCH_OBJECT) break;
                            return tl::unexpected<OpError>(groups.error());
                        }
                        for (Entry& sub : *groups) {
                            if (!seen.insert(dn_key(sub.dn)).second) continue;
                            if (++visited > kMaxCheckedGroups || cut_groups) {
                                how = "more than " + std::to_string(kMaxCheckedGroups) + " groups below it";
                                return Membership::unknown;
                            }
                            next.push_back(std::move(sub.dn));
                        }
                    }
                }
                level = std::move(next);
            }
            how = "not a member at any level";
            return Membership::not_member;
        },
        [&](const OpError& e) { return Failure{Status::unavailable, "role group check failed: " + e.text}; });
    if (!r) return tl::unexpected<Failure>(r.error());
    trace.add("role group check of ", group, ": ",
              *r == Membership::member ? "member" : *r == Membership::not_member ? "not a member" : "unknown",
              " (", how, ")");
    log::debug("ldap: role group check of ", log_safe(group), " for ", log_safe(user.dn), ": ", how);
    return *r;
}

Outcome<void> LdapBackendImpl::walk_levels(std::set<std::string>& seen, std::vector<std::string>& frontier,
                                           unsigned level, bool one_level, std::vector<std::string>& groups,
                                           std::string& incomplete, Trace& trace, WalkNotes* notes) {
    const std::string gf = group_filter_part(cfg_.group_search.filter);
    for (; !frontier.empty(); ++level) {
        if (level > cfg_.max_nesting) {
            incomplete = "groups nest deeper than max_nesting " + std::to_string(cfg_.max_nesting);
            if (notes != nullptr) notes->stopped = true;
            return {};
        }
        std::vector<std::string> next;
        // explain asks per parent so it can say which group led where; a login asks in batches.
        const std::size_t batch = trace.on() ? 1 : kMembersPerQuery;
        for (std::size_t from = 0; from < frontier.size(); from += batch) {
            const std::size_t to = std::min(frontier.size(), from + batch);
            std::string filter;
            if (to - from == 1) {
                filter = member_filter(gf, frontier[from]);
            } else {
                filter = "(&" + gf + "(|";
                for (std::size_t i = from; i < to; ++i) filter += "(member=" + escape_filter_value(frontier[i]) + ")";
                filter += "))";
            }
            auto found = group_dns(filter, cfg_.max_groups, incomplete, trace);
            if (!found) return tl::unexpected<Failure>(found.error());
            for (std::string& g : *found) {
                if (!seen.insert(dn_key(g)).second) {
                    if (notes != nullptr) notes->revisited = true;
                    if (trace.on() && level > 0)
                        trace.add("group ", g, " seen before (cycle or diamond): not followed again");
                    continue;
                }
                if (level == 0)
                    trace.add("group: ", g, " (direct member)");
                else
                    trace.add("group: ", g, " (nesting level ", std::to_string(level), ", via ", frontier[from], ")");
                groups.push_back(g);
                next.push_back(std::move(g));
                if (groups.size() >= cfg_.max_groups) {
                    incomplete = "more than max_groups " + std::to_string(cfg_.max_groups) + " groups";
                    if (notes != nullptr) notes->stopped = true;
                    return {};
                }
            }
        }
        frontier = std::move(next);
        if (one_level) break;
    }
    return {};
}

Outcome<void> LdapBackendImpl::nested_walk(const std::string& user_dn, std::vector<std::string>& groups,
                                           std::string& incomplete, Trace& trace) {
    std::set<std::string> seen{dn_key(user_dn)};
    std::vector<std::string> frontier{user_dn};
    // explain (trace on) shows the live walk; without the cache the walk goes on as one.
    const bool cached = group_graph_.enabled() && !trace.on();
    if (auto r = walk_levels(seen, frontier, 0, cached, groups, incomplete, trace); !r || !cached)
        return r;
    if (!incomplete.empty() || frontier.empty()) return {};

    // The user's direct groups are the directory's answer of now; what lies above them may come
    // from the group graph cache: for the direct groups' set, or for any level's set on the way up.
    auto key_of = [](const std::vector<std::string>& set) {
        std::vector<std::string> keys;
        keys.reserve(set.size());
        for (const std::string& g : set) keys.push_back(dn_key(g));
        std::sort(keys.begin(), keys.end());
        std::string key;
        for (const std::string& k : keys) (key += k) += '\n';
        return key;
    };
    struct Walked {
        std::string key;        // the level's set
        std::size_t above;      // where the groups above it begin in `groups`
        bool found = false;     // the search for its parents found a group not seen before
    };
    std::vector<Walked> walked;
    auto until = Clock::time_point::max();
    unsigned depth_above = 0;  // levels above the last set walked, from a cache hit
    // A group reached twice (a cycle, or two paths of different length) is listed once, under the
    // lower level: then what was found above a higher level is not all that lies above it, and
    // only the direct groups' entry (which that does not change) is kept.
    WalkNotes notes;
    for (unsigned level = 1;; ++level) {
        std::string key = key_of(frontier);
        auto hit = group_graph_.find(key);
        // What the live walk from here would give: a complete entry covers `depth` levels and
        // the empty search above them, so it holds where level + depth stays within
        // max_nesting (a walk that reaches a group at level max_nesting stops there unasked,
        // incomplete); an incomplete one only where such entries are made, at the user's direct
        // groups. Otherwise this walk goes on by itself.
        if (hit && (hit->incomplete.empty() ? level + hit->depth > cfg_.max_nesting : level > 1)) hit.reset();
        if (hit) {
            for (std::size_t i = 0; i < hit->groups.size(); ++i) {
                if (!seen.insert(std::move(hit->keys[i])).second) {
                    notes.revisited = true;
                    continue;
                }
                groups.push_back(std::move(hit->groups[i]));
                if (groups.size() >= cfg_.max_groups) {
                    incomplete = "more than max_groups " + std::to_string(cfg_.max_groups) + " groups";
                    break;
                }
            }
            if (incomplete.empty()) incomplete = std::move(hit->incomplete);
            until = hit->expires;
            depth_above = hit->depth;
            break;
        }
        walked.push_back(Walked{std::move(key), groups.size()});
        if (auto r = walk_levels(seen, frontier, level, true, groups, incomplete, trace, &notes); !r) return r;
        walked.back().found = groups.size() > walked.back().above;
        // A search the directory cut short (its size limit) leaves the list incomplete but the
        // walk goes on, as it does uncached; max_nesting and max_groups end it.
        if (notes.stopped || frontier.empty()) break;
    }
    // How many levels of groups lie above each set walked (one that max_nesting stopped before
    // searching is not one).
    std::vector<unsigned> depth(walked.size() + 1, depth_above);
    for (std::size_t i = walked.size(); i-- > 0;) depth[i] = depth[i + 1] + (walked[i].found ? 1u : 0u);
    for (std::size_t i = 0; i < walked.size(); ++i) {
        // Above a higher level only from a whole, clean walk: max_nesting counts from the user.
        if (i > 0 && (notes.revisited || !incomplete.empty())) break;
        GroupGraphCache::Upper upper{
            std::vector<std::string>(groups.begin() + static_cast<std::ptrdiff_t>(walked[i].above), groups.end()), {},
            incomplete, depth[i], {}};
        upper.keys.reserve(upper.groups.size());
        for (const std::string& g : upper.groups) upper.keys.push_back(dn_key(g));
        group_graph_.put(walked[i].key, std::move(upper), until);
    }
    return {};
}

Outcome<void> LdapBackendImpl::collect_groups(const Entry& entry, LdapUser& user, std::string& incomplete,
                                              Trace& trace) {
    const std::string gf = group_filter_part(cfg_.group_search.filter);
    trace.add("group_type ", group_type_name(cfg_.group_type), ": group_search base \"", cfg_.group_search.base,
              "\" scope ", scope_name(cfg_.group_search.scope), " filter ", gf);
    // While the directory's change feed is up, the groups come from its copy (no round trip).
    if (cfg_.group_type != GroupType::member_of)
        if (auto view = mirror_view(); view && groups_from_mirror(*view, entry, user, incomplete, trace))
            return {};
    std::string filter;
    switch (cfg_.group_type) {
    case GroupType::member_of: {
        const auto* vals = entry.values("memberOf");
        if (vals == nullptr) return {};
        std::vector<std::string> all;
        if (auto next = entry.ranges.find("memberof"); next != entry.ranges.end() && !next->second.empty()) {
            // AD cut the user's memberOf at MaxValRange ("memberOf;range=0-1499"): read the rest.
            all = *vals;
            bool cut = false;
            auto r = with_connection<bool>(
                service_pool_, Purpose::service,
                [&](Conn& c) -> OpResult<bool> {
                    all.resize(vals->size());
                    auto read = read_values(c, user.dn, "memberOf", all, next->second, cfg_.max_groups + 1, cut);
                    if (!read) return tl::unexpected<OpError>(read.error());
                    return true;
                },
                [&](const OpError& e) { return Failure{Status::unavailable, "reading memberOf failed: " + e.text}; });
            if (!r) return tl::unexpected<Failure>(r.error());
            trace.add("memberOf read by range retrieval: ", std::to_string(all.size()), " values");
            if (cut) incomplete = "memberOf has more values than were read";
            vals = &all;
        }
        for (const std::string& g : *vals) {
            if (user.groups.size() >= cfg_.max_groups) {
                incomplete = "more than max_groups " + std::to_string(cfg_.max_groups) + " groups";
                break;
            }
            trace.add("group: ", g, " (memberOf of the user entry)");
            user.groups.push_back(g);
        }
        return {};
    }
    case GroupType::nested_active_directory: {
        // On AD one search finds the groups of every level (the server follows the chain and
        // its cycles). It has no depth parameter: a max_nesting below the default asks for a
        // bound only the walk keeps. max_groups bounds it as any group search.
        bool ad = false;
        if (cfg_.max_nesting >= kInChainMinNesting) {
            auto probe = with_connection<bool>(
                service_pool_, Purpose::service, [&](Conn& c) { return server_is_ad(c); },
                [&](const OpError& e) { return Failure{Status::unavailable, "root DSE: " + e.text}; });
            if (!probe) return tl::unexpected<Failure>(probe.error());
            ad = *probe;
        }
        if (!ad) return nested_walk(user.dn, user.groups, incomplete, trace);
        filter = "(&" + gf + "(member:" + kInChain + ":=" + escape_filter_value(user.dn) + "))";
        trace.add("groups by LDAP_MATCHING_RULE_IN_CHAIN (Active Directory): one search ", filter);
        auto found = group_dns(filter, cfg_.max_groups, incomplete, trace);
        if (!found) return tl::unexpected<Failure>(found.error());
        for (std::string& g : *found) {
            trace.add("group: ", g, " (member at some nesting level, in chain)");
            user.groups.push_back(std::move(g));
        }
        return {};
    }
    case GroupType::nested_group_of_names:
        return nested_walk(user.dn, user.groups, incomplete, trace);
    case GroupType::active_directory:
    case GroupType::group_of_names:
        filter = member_filter(gf, user.dn);
        break;
    case GroupType::posix_group: {
        // django-auth-ldap's PosixGroupType: memberUid is the uid attribute, or the user's
        // primary gidNumber names the group.
        std::string uid = entry.first("uid");
        if (uid.empty()) uid = user.username;
        std::string gid = entry.first("gidNumber");
        filter = "(&" + gf + "(|(memberUid=" + escape_filter_value(uid) + ")";
        if (!gid.empty()) filter += "(gidNumber=" + escape_filter_value(gid) + ")";
        filter += "))";
        break;
    }
    }
    auto found = group_dns(filter, cfg_.max_groups, incomplete, trace);
    if (!found) return tl::unexpected<Failure>(found.error());
    for (std::string& g : *found) {
        trace.add("group: ", g, " (direct member)");
        user.groups.push_back(std::move(g));
    }
    return {};
}

void LdapBackendImpl::explain_role(const RoleDecision& d, Trace& trace) const {
    if (!trace.on()) return;
    std::string matched;
    for (const RoleMatch& m : d.matches) {
        const std::string key = dn_key(m.group);
        std::string configured = m.group;
        for (const std::string& c : cfg_.role_groups[static_cast<std::size_t>(m.role)])
            if (auto n = normalize_dn(c); n && *n == key) configured = c;
        trace.add("role_groups.", proto::role_name(m.role), ": \"", configured, "\" matches group ", m.group);
        if (!matched.empty()) matched += ", ";
        matched += proto::role_name(m.role);
    }
    if (!d.from_default)
        trace.add("role: ", proto::role_name(d.role), " (highest of the matched roles: ", matched, ")");
    else if (d.role != Role::none && d.role == cfg_.default_role)
        trace.add("role: ", proto::role_name(d.role), " (no role group matched; default_role ",
                  proto::role_name(d.role), " applied)");
    else if (d.role != Role::none)
        trace.add("role: ", proto::role_name(d.role), " (no role group matched in an incomplete group list)");
    else
        trace.add("role: none (no role group matched and default_role is none: refused)");
}

namespace {

// Attributes that name an account for good (renames and moves keep them), most specific first.
constexpr const char* kImmutableIdAttrs[] = {"objectSid", "objectGUID", "ipaUniqueID", "entryUUID", "nsUniqueId"};
// The account state (password_policy.hpp): AD's attributes and OpenLDAP ppolicy's operational
// ones, which a search returns only when named.
constexpr const char* kAccountStateAttrs[] = {"accountExpires", "lockoutTime", "pwdLastSet", "pwdAccountLockedTime",
                                              "pwdReset"};

// A uidNumber/gidNumber value: decimal, 1..2^31-2 (tools keep IDs in signed ints; 0 is root's).
std::optional<std::uint32_t> posix_id(const std::string& text) {
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v == 0 || v > 2147483646u)
        return std::nullopt;
    return v;
}

// LdapUser::immutable_id of an entry.
std::string immutable_id(const Entry& entry) {
    if (auto sid = sid_to_text(entry.first("objectSid"))) return "sid:" + *sid;
    if (auto guid = guid_to_text(entry.first("objectGUID"))) return "guid:" + *guid;
    static constexpr std::pair<const char*, const char*> kTextIds[] = {
        {"ipaUniqueID", "ipa:"}, {"entryUUID", "uuid:"}, {"nsUniqueId", "nsuniqueid:"}};
    for (const auto& [attr, prefix] : kTextIds) {
        std::string v = entry.first(attr);
        if (!v.empty() && v.size() <= 128 && acceptable_name(v)) return prefix + lower(v);
    }
    auto normal = normalize_dn(entry.dn);
    return "dn:" + (normal ? *normal : lower(entry.dn));
}

}  // namespace

void LdapBackendImpl::resolve(std::string_view name, const Secret* password, LdapOutcome& out, Trace trace) {
    auto finish = [&](Status s, std::string message) {
        out.status = s;
        out.message = std::move(message);
        if (s != Status::ok) trace.add("stopped: ", out.message);
    };
    // Local checks first: nothing here needs the directory.
    if (name.empty()) return finish(Status::user_unknown, "empty user name");
    if (name.size() > kMaxUserName) return finish(Status::user_unknown, "user name too long");
    if (name.find('\0') != std::string_view::npos) return finish(Status::user_unknown, "user name contains NUL");
    // An empty password makes a simple bind anonymous and "successful" (RFC 4513 §5.1.2).
    if (password != nullptr && password->empty()) return finish(Status::auth_err, "empty password refused");

    auto filter = expand_user_filter(cfg_.user_search.filter, name);
    if (!filter) return finish(Status::internal, "ldap.user_search.filter: " + filter.error().detail);

    std::vector<std::string> attrs = {"userAccountControl", "memberOf", "uid", "gidNumber", "uidNumber"};
    attrs.insert(attrs.end(), std::begin(kImmutableIdAttrs), std::end(kImmutableIdAttrs));
    attrs.insert(attrs.end(), std::begin(kAccountStateAttrs), std::end(kAccountStateAttrs));
    for (const auto& kv : cfg_.user_attr_map) {
        const std::string& attr = kv.second;
        if (std::none_of(attrs.begin(), attrs.end(), [&](const std::string& a) { return ascii_iequal(a, attr); }))
            attrs.push_back(attr);
    }

    trace.add("user search: base \"", cfg_.user_search.base, "\" scope ", scope_name(cfg_.user_search.scope),
              " filter ", *filter);
    // A lookup (no password: no bind to walk the groups alongside) of a directory whose user
    // DNs follow one shape sends the search for the user's direct groups with the user search:
    // exactly the search the walk below would make for that DN (same filter, base, scope and
    // bound), answered on the same service connection, and taken by the walk only when the
    // user search found that DN. Not for explain, which shows the live walk.
    Prefetched prefetched;
    const bool dn_groups = cfg_.group_type == GroupType::nested_group_of_names ||
                           cfg_.group_type == GroupType::group_of_names ||
                           cfg_.group_type == GroupType::active_directory;
    if (password == nullptr && !trace.on() && dn_groups && !mirror_view()) {
        if (auto dn = dn_pattern_.guess(name))
            prefetched.filter = member_filter(group_filter_part(cfg_.group_search.filter), *dn);
    }
    std::string server;
    bool missing_base = false, ambiguous = false;
    auto found = with_connection<std::vector<Entry>>(
        service_pool_, Purpose::service,
        [&](Conn& c) -> OpResult<std::vector<Entry>> {
            server = servers_[c.server].uri;
            const int ahead =
                prefetched.filter.empty() ? -1 : send_group_search(c, prefetched.filter, cfg_.max_groups);
            auto r = search(c, cfg_.user_search.base, cfg_.user_search.scope, *filter, attrs,
                            kUserSizeLimit, kUserSizeLimit, false, &ambiguous);
            if (ahead >= 0) {
                // Always read (or abandon), so that no answer is left queued on the connection.
                auto dns = take_group_search(c, ahead, cfg_.max_groups);
                if (dns) prefetched.dns = std::move(*dns);
                else prefetched.filter.clear();
            }
            if (!r && (r.error().rc == LDAP_NO_SUCH_OBJECT || r.error().rc == LDAP_REFERRAL)) {
                missing_base = true;
                return std::vector<Entry>{};
            }
            return r;
        },
        [&](const OpError& e) { return Failure{Status::unavailable, "user search failed: " + e.text}; });
    if (!found) return finish(found.error().status, found.error().message);
    trace.add("server: ", server);

    if (missing_base) {
        log::warning("ldap: user_search.base ", log_safe(cfg_.user_search.base),
                     " does not exist or is not visible to the bind DN");
        trace.add("user_search.base does not exist (or is not visible to the bind DN)");
    }
    if (ambiguous || found->size() > 1) {
        log::warning("ldap: user filter matched several entries for ", log_safe(name),
                     ": refused as ambiguous (fix ldap.user_search.filter)");
        trace.add("several entries matched: ambiguous");
        return finish(Status::user_unknown, "ambiguous user name: several directory entries match");
    }
    if (found->empty()) {
        trace.add("no entry matched filter ", *filter, " under base \"", cfg_.user_search.base, "\"");
        // No user enumeration by timing (issue 6): a login of a known name costs a search and
        // a bind, so an unknown one pays the same bind, to a DN that cannot exist and with a
        // fixed password (the user's own never goes to a DN it was not meant for). Its answer
        // is ignored.
        if (password != nullptr) {
            static constexpr char kPad[] = "cvat-authd: timing pad, not a password";
            const std::string dn = "cn=cvat-authd-no-such-user-" + std::to_string(password->size()) +
                                   (cfg_.user_search.base.empty() ? "" : "," + cfg_.user_search.base);
            // A known user's bind goes along with a group walk (below): so does this one, unless
            // the name failed a moment ago (as a known user's would not, then).
            Entry nobody;
            nobody.dn = dn;
            const std::string failure_key = "name:" + lower(std::string(name));
            bool padded = recent_failures_.has(failure_key);
            recent_failures_.add(failure_key);
            auto pad_walk = [&] {
                LdapUser ignored;
                std::string ignored_incomplete;
                Trace quiet(nullptr);
                padded = true;
                (void)collect_groups(nobody, ignored, ignored_incomplete, quiet);
            };
            (void)with_connection<bool>(
                user_pool_, Purpose::user_bind,
                [&](Conn& c) -> OpResult<bool> {
                    std::string diag;
                    PolicyResponse policy;  // asked for as the real bind asks, and ignored
                    auto r = bind(c, dn, kPad, sizeof kPad - 1, Clock::now() + op_timeout(), &diag, &policy,
                                  padded ? std::function<void()>() : std::function<void()>(pad_walk));
                    if (!r) return tl::unexpected<OpError>(r.error());
                    return true;
                },
                [&](const OpError& e) { return Failure{Status::user_unknown, e.text}; });
        }
        return finish(Status::user_unknown, "unknown user");
    }
    const Entry& entry = found->front();
    if (entry.dn.empty()) return finish(Status::internal, "the directory returned an entry without a DN");
    dn_pattern_.learn(name, entry.dn);

    LdapUser& user = out.user;
    user.dn = entry.dn;
    trace.add("user DN: ", user.dn);
    const std::string& name_attr = attr_for("user_name");
    if (const auto* vals = entry.values(name_attr)) {
        for (const std::string& v : *vals)
            if (ascii_iequal(v, name)) user.username = v;
        if (user.username.empty() && !vals->empty()) user.username = vals->front();
    }
    if (!acceptable_name(user.username)) {
        if (!user.username.empty())
            log::warning("ldap: ", log_safe(user.dn), ": unusable ", name_attr, " value; keeping the login name");
        user.username = std::string(name);
    }
    trace.add("user name: ", user.username, " (", name_attr, ")");
    user.email = entry.first(attr_for("email"));
    user.first_name = entry.first(attr_for("first_name"));
    user.last_name = entry.first(attr_for("last_name"));
    user.uid_number = posix_id(entry.first("uidNumber"));
    user.gid_number = posix_id(entry.first("gidNumber"));
    user.immutable_id = immutable_id(entry);
    if (trace.on()) {
        // AD's binary identifiers in the text forms AD's own tools print.
        if (auto sid = sid_to_text(entry.first("objectSid"))) trace.add("objectSid: ", *sid);
        if (auto guid = guid_to_text(entry.first("objectGUID"))) trace.add("objectGUID: ", *guid);
        trace.add("immutable id: ", user.immutable_id);
    }

    if (std::string uac = entry.first("userAccountControl"); !uac.empty()) {
        long long flags = 0;
        auto [p, ec] = std::from_chars(uac.data(), uac.data() + uac.size(), flags);
        if (ec != std::errc() || p != uac.data() + uac.size()) {
            // An unreadable flag word cannot prove the account enabled.
            log::warning("ldap: ", log_safe(user.dn), ": unreadable userAccountControl; treated as disabled");
            flags = kUacAccountDisable;
        }
        user.disabled = (flags & kUacAccountDisable) != 0;
        trace.add("userAccountControl: ", uac, user.disabled ? " (ACCOUNTDISABLE set)" : " (enabled)");
    }

    std::string notice;  // a password policy warning for the user's screen
    std::string incomplete;
    // The groups are walked while the server checks the password (one round trip fewer per
    // login); what the walk found is used only once the bind has succeeded.
    std::optional<Outcome<void>> walked;
    auto walk = [&] { walked = collect_groups(entry, user, incomplete, trace); };
    if (password != nullptr) {
        std::string diag;
        PolicyResponse policy;
        const std::string failure_key = dn_key(user.dn);
        const bool walk_alongside = !recent_failures_.has(failure_key);
        auto bound = with_connection<bool>(
            user_pool_, Purpose::user_bind,
            [&](Conn& c) -> OpResult<bool> {
                diag.clear();
                auto r = bind(c, user.dn, password->c_str(), password->size(), Clock::now() + op_timeout(), &diag,
                              &policy, walked || !walk_alongside ? std::function<void()>() : std::function<void()>(walk));
                if (!r) return tl::unexpected<OpError>(r.error());
                return true;
            },
            [&](const OpError& e) {
                if (auto v = bind_policy_verdict(false, policy)) return Failure{v->status, v->message};
                return map_bind_error(e, diag);
            });
        if (!bound) {
            log::debug("ldap: bind as ", log_safe(user.dn), " refused: ", bound.error().message);
            if (bound.error().status == Status::auth_err) recent_failures_.add(failure_key);
            user = LdapUser{};  // nothing about the account for someone who could not bind
            return finish(bound.error().status, bound.error().message);
        }
        recent_failures_.drop(failure_key);
        if (auto v = bind_policy_verdict(true, policy); v && v->status != Status::ok) {
            trace.add("password policy: ", v->message);
            return finish(v->status, v->message);
        } else if (v) {
            notice = v->message;
        }
    } else {
        const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count();
        AccountVerdict state = directory_account_state(entry.attrs, now_s);
        user.account_status = state.status;
        user.account_message = std::move(state.message);
        if (state.status != Status::ok) trace.add("account state: ", user.account_message);
    }
    // Only now, with the password proven (or for an account check), may the answer depend on
    // the disabled flag: before the bind it would tell strangers which accounts exist.
    if (user.disabled) return finish(Status::perm_denied, "account disabled");

    if (!walked) {
        // The group search sent with the user search, if it was for this DN (group_dns() compares
        // the filter the walk builds, member_filter() of the DN found, with the one sent).
        struct Offer {
            explicit Offer(Prefetched* offered) { t_prefetched = offered; }
            ~Offer() { t_prefetched = nullptr; }
            Offer(const Offer&) = delete;
            Offer& operator=(const Offer&) = delete;
        } offer(prefetched.filter.empty() ? nullptr : &prefetched);
        walk();
    }
    if (const Outcome<void>& g = *walked; !g) return finish(g.error().status, g.error().message);
    user.role = resolve_role(user.groups, cfg_.role_groups, cfg_.default_role);
    bool settled = incomplete.empty();
    if (!incomplete.empty()) {
        log::warning("ldap: group list of ", log_safe(user.dn), " is incomplete: ", incomplete);
        trace.add("group list incomplete: ", incomplete);
        // Only role groups decide the role: ask each one that could raise it whether the user
        // is in it. When every such answer is certain, the role is too.
        // Highest role first; a role found ends the checks (lower ones cannot change the
        // answer), an unknown answer above it leaves the role uncertain.
        bool uncertain = false;
        const Role seen = user.role.from_default ? Role::none : user.role.role;
        for (Role r : {Role::admin, Role::user, Role::worker}) {
            if (r <= seen) break;
            std::vector<std::string> confirmed;
            bool unknown = false;
            for (const std::string& group : cfg_.role_groups[static_cast<std::size_t>(r)]) {
                auto m = check_role_group(group, entry, user, trace);
                if (!m) return finish(m.error().status, m.error().message);
                if (*m == Membership::member) {
                    confirmed.push_back(group);
                    break;
                }
                unknown = unknown || *m == Membership::unknown;
            }
            if (!confirmed.empty()) {
                user.groups.insert(user.groups.end(), confirmed.begin(), confirmed.end());
                user.role = resolve_role(user.groups, cfg_.role_groups, cfg_.default_role);
                break;
            }
            uncertain = uncertain || unknown;
        }
        settled = !uncertain;
        trace.add(settled ? "role settled by the role group check"
                          : "role group check left the role uncertain");
    }
    if (!settled) {
        // A group not seen may hold any role. Matched roles stand (the true role is at least
        // that), but default_role would be a guess: a missed worker group must not turn into
        // default_role user. The lowest role is what the user has at least.
        if (user.role.from_default && user.role.role > Role::worker) {
            user.role.role = Role::worker;
            trace.add("default_role ", proto::role_name(cfg_.default_role),
                      " not applied to an incomplete group list: role worker, the lowest");
        }
    }
    explain_role(user.role, trace);
    if (user.role.role == Role::none)
        return finish(Status::perm_denied, "no CVAT role: user is in no role group and default_role is none");
    finish(Status::ok, notice);
}

void LdapBackendImpl::resolve_uid(std::uint32_t uid, LdapOutcome& out) {
    auto any = any_user_filter(cfg_.user_search.filter);
    if (!any) {
        out.status = Status::internal;
        out.message = "ldap.user_search.filter: " + any.error().detail;
        return;
    }
    const std::string filter = "(&" + *any + "(uidNumber=" + std::to_string(uid) + "))";
    const std::vector<std::string> attrs = {attr_for("user_name")};
    bool ambiguous = false;
    auto found = with_connection<std::vector<Entry>>(
        service_pool_, Purpose::service,
        [&](Conn& c) -> OpResult<std::vector<Entry>> {
            auto r = search(c, cfg_.user_search.base, cfg_.user_search.scope, filter, attrs, kUserSizeLimit,
                            kUserSizeLimit, false, &ambiguous);
            if (!r && (r.error().rc == LDAP_NO_SUCH_OBJECT || r.error().rc == LDAP_REFERRAL))
                return std::vector<Entry>{};
            return r;
        },
        [&](const OpError& e) { return Failure{Status::unavailable, "user search failed: " + e.text}; });
    if (!found) {
        out.status = found.error().status;
        out.message = found.error().message;
        return;
    }
    if (ambiguous || found->size() > 1) {
        log::warning("ldap: several entries have uidNumber ", std::to_string(uid), ": none is shown");
        out.status = Status::user_unknown;
        out.message = "several directory entries have uidNumber " + std::to_string(uid);
        return;
    }
    std::string name = found->empty() ? std::string() : found->front().first(attr_for("user_name"));
    if (name.empty() || !acceptable_name(name)) {
        out.status = Status::user_unknown;
        out.message = "no user has uidNumber " + std::to_string(uid);
        return;
    }
    resolve(name, nullptr, out, Trace(nullptr));
    // The name may now resolve to someone else (a filter on another attribute): only the
    // entry that really has the number answers.
    if (out.status == Status::ok && out.user.uid_number != uid) {
        out = LdapOutcome{};
        out.status = Status::user_unknown;
        out.message = "no user has uidNumber " + std::to_string(uid);
    }
}

// --- the group mirror ------------------------------------------------------------------------

std::optional<GroupMirror::View> LdapBackendImpl::mirror_view() {
    // group_cache_ttl 0 asks the directory every time; the copy may lag by up to it.
    if (!mirror_wanted()) return std::nullopt;
    std::call_once(mirror_once_, [this] { mirror_thread_ = std::thread([this] { mirror_thread(); }); });
    return mirror_.view();
}

bool LdapBackendImpl::groups_from_mirror(const GroupMirror::View& view, const Entry& entry, LdapUser& user,
                                         std::string& incomplete, Trace& trace) const {
    const GroupSet& set = view.groups();
    // normalize_dn folds ASCII case only; the directory folds and normalises Unicode too. A DN
    // with other bytes could match there and not here: such a login searches.
    auto ascii = [](const std::string& dn) {
        return std::none_of(dn.begin(), dn.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    };
    const std::size_t had = user.groups.size();
    auto give_up = [&](const std::string& dn) {
        user.groups.resize(had);
        incomplete.clear();
        trace.add("not from the group mirror: ", dn, " has non-ASCII characters, which the directory compares "
                  "by its own Unicode rules");
        return false;
    };
    if (!ascii(user.dn)) return give_up(user.dn);
    trace.add("groups from the group mirror of ", view.source(), " (", std::to_string(set.size()),
              " groups, kept current by the directory's change feed)");
    const bool nested = cfg_.group_type == GroupType::nested_group_of_names ||
                        cfg_.group_type == GroupType::nested_active_directory;
    // max_groups as the search path counts it: the walk stops once it holds max_groups; one
    // search is cut only past max_groups.
    auto take = [&](const GroupSet::Group& g, const std::string& how) {
        if (!nested && user.groups.size() - had >= cfg_.max_groups) {
            incomplete = "more than max_groups " + std::to_string(cfg_.max_groups) + " groups";
            return false;
        }
        trace.add("group: ", g.dn, " (", how, ")");
        user.groups.push_back(g.dn);
        if (!nested || user.groups.size() - had < cfg_.max_groups) return true;
        incomplete = "more than max_groups " + std::to_string(cfg_.max_groups) + " groups";
        return false;
    };
    if (cfg_.group_type == GroupType::posix_group) {
        // As the search: (|(memberUid=<uid>)(gidNumber=<the user's gidNumber>)).
        std::string uid = entry.first("uid");
        if (uid.empty()) uid = user.username;
        if (!ascii(uid)) return give_up(uid);
        for (const GroupSet::Group* g : set.with_uid_or_gid(uid, ldap_integer(entry.first("gidNumber"))))
            if (!take(*g, "direct member")) break;
        return true;
    }
    // The member types, level by level as walk_levels() searches: level 0 is the user's own
    // groups; the nested types go on to the groups those are members of.
    std::set<std::string> seen{dn_key(user.dn)};
    std::vector<const std::string*> frontier;
    const std::string user_key = dn_key(user.dn);
    frontier.push_back(&user_key);
    std::vector<std::string> via{user.dn};
    for (unsigned level = 0; !frontier.empty(); ++level) {
        if (level > cfg_.max_nesting) {
            incomplete = "groups nest deeper than max_nesting " + std::to_string(cfg_.max_nesting);
            return true;
        }
        std::vector<const std::string*> next;
        std::vector<std::string> next_via;
        for (std::size_t i = 0; i < frontier.size(); ++i) {
            for (const GroupSet::Group* g : set.with_member(*frontier[i])) {
                if (!seen.insert(g->key).second) continue;
                if (nested && !ascii(g->dn)) return give_up(g->dn);
                if (!take(*g, level == 0 ? std::string("direct member")
                                         : "nesting level " + std::to_string(level) + ", via " + via[i]))
                    return true;
                next.push_back(&g->key);
                next_via.push_back(g->dn);
            }
        }
        if (!nested) return true;
        frontier = std::move(next);
        via = std::move(next_via);
    }
    return true;
}

void LdapBackendImpl::mirror_thread() noexcept {
    // An exception must not end the daemon (std::terminate): the copy goes, logins search, and
    // the feed starts again a minute later.
    for (;;) {
        try {
            mirror_feed();
            return;
        } catch (const std::exception& e) {
            try {
                log::error("ldap: group mirror: internal error: ", log_safe(e.what()), "; logins search");
            } catch (...) {
            }
        } catch (...) {
            try {
                log::error("ldap: group mirror: internal error; logins search");
            } catch (...) {
            }
        }
        try {
            mirror_.down();
        } catch (...) {
        }
        if (!mirror_pause(kMirrorRetryMax)) return;
    }
}

bool LdapBackendImpl::mirror_pause(Clock::duration d) {
    std::unique_lock lock(mirror_m_);
    return !mirror_cv_.wait_for(lock, d, [this] { return mirror_stop_; });
}

void LdapBackendImpl::mirror_feed() {
    Clock::duration retry = std::chrono::seconds(1);
    bool said_unsupported = false;
    std::string said;  // the last reason logged for a feed that would not start
    for (;;) {
        if (mirror_stopping()) return;
        std::string why;
        std::string uri;
        FeedEnd end = FeedEnd::lost;
        {
            ConnPtr conn;
            for (std::size_t i : server_order()) {
                if (mirror_stopping()) return;
                if (!servers_[i].parse_error.empty()) continue;
                bool fatal = false;
                auto c = open_server(i, fatal);
                if (c) {
                    conn = std::move(*c);
                    uri = servers_[i].uri;
                    break;
                }
                if (!why.empty()) why += "; ";
                why += servers_[i].uri + ": " + c.error().message;
                if (fatal) break;
            }
            if (conn) {
                end = mirror_session(*conn, uri, why);
                // The unbind as the connection goes writes too: not past ldap.timeout.
                conn->guard->until(Clock::now() + op_timeout());
            }
        }
        const bool was_held = mirror_.held();
        mirror_.down();
        Clock::duration pause = retry;
        switch (end) {
        case FeedEnd::stopped:
            return;
        case FeedEnd::unsupported:
            if (!said_unsupported)
                log::info("ldap: group mirror: ", log_safe(uri),
                          " offers no content synchronisation (RFC 4533 syncprov) to the bind DN: logins search "
                          "the directory for groups (asked again every 10 minutes)");
            said_unsupported = true;
            why = "the directory offers no content synchronisation (RFC 4533)";
            pause = kMirrorRecheck;
            break;
        case FeedEnd::too_big:
        case FeedEnd::unreadable:
            log::warning("ldap: group mirror: ", log_safe(why), ": logins search the directory for groups (tried again "
                         "in 10 minutes)");
            pause = kMirrorRecheck;
            break;
        case FeedEnd::moved:
            log::info("ldap: group mirror: ", log_safe(why));
            pause = Clock::duration::zero();
            break;
        case FeedEnd::lost:
            if (was_held)
                log::warning("ldap: group mirror: the feed from ", log_safe(uri), " was lost (", log_safe(why),
                             "): logins search the directory for groups until it is back");
            // A feed that was up starts again at once, one that failed waits longer each time.
            retry = was_held ? std::chrono::seconds(1) : std::min<Clock::duration>(retry * 2, kMirrorRetryMax);
            pause = was_held ? std::chrono::seconds(1) : retry;
            if (!was_held && why != said)  // each new reason once, the repeats at debug
                log::info("ldap: group mirror: no feed (", log_safe(why), "): logins search the directory for groups");
            else if (!was_held)
                log::debug("ldap: group mirror: no feed (", log_safe(why), ")");
            said = was_held ? std::string() : why;
            break;
        }
        {
            std::lock_guard lock(mirror_m_);
            mirror_state_ = why;
        }
        if (!mirror_pause(pause)) return;
    }
}

Result<void> LdapBackendImpl::mirror_entry(LDAP* ld, LDAPMessage* e, GroupSet* building, bool& moved,
                                           std::string& uuid) {
    LDAPControl** raw = nullptr;
    if (ldap_get_entry_controls(ld, e, &raw) != LDAP_SUCCESS) return fail(ErrorCode::protocol, "unreadable entry");
    ControlsPtr ctrls(raw);
    const LDAPControl* c = ldap_control_find(LDAP_CONTROL_SYNC_STATE, ctrls.get(), nullptr);
    if (c == nullptr) return fail(ErrorCode::protocol, "an entry without a sync state control");
    auto state = parse_sync_state(c->ldctl_value);
    if (!state) return tl::unexpected<Error>(state.error());
    uuid = state->uuid;
    if (state->state == LDAP_SYNC_DELETE) {
        if (building != nullptr) building->erase(state->uuid);
        else mirror_.update([&](GroupSet& s) { moved = s.erase(state->uuid) || moved; return true; });
        return {};
    }
    // A refresh without a cookie sends every entry whole (add); present comes only with one.
    if (state->state == LDAP_SYNC_PRESENT) return fail(ErrorCode::protocol, "an entry in state present");
    MirrorEntry entry;
    LdapString dn(ldap_get_dn(ld, e));
    if (!dn) return fail(ErrorCode::protocol, "an entry without a DN");
    entry.dn = dn.get();
    auto values = [&](const char* attr, std::vector<std::string>& out) {
        ValuesPtr vals(ldap_get_values_len(ld, e, attr));
        for (berval** v = vals.get(); v != nullptr && *v != nullptr; ++v) out.emplace_back((*v)->bv_val, (*v)->bv_len);
    };
    values("member", entry.member);
    values("memberUid", entry.member_uid);
    std::vector<std::string> gid;
    values("gidNumber", gid);
    if (!gid.empty()) entry.gid_number = gid.front();
    // Normalised outside the copy's lock: logins read on meanwhile.
    auto group = GroupSet::make(state->uuid, entry);
    if (!group) return tl::unexpected<Error>(group.error());
    if (building != nullptr) return building->put(state->uuid, std::move(*group));
    Result<void> put;
    mirror_.update([&](GroupSet& s) {
        const GroupSet::Group* was = s.find(state->uuid);
        moved = moved || (was != nullptr && was->dn != entry.dn);
        put = s.put(state->uuid, std::move(*group));
        return put.has_value();  // a copy that cannot take a change is not believed any more
    });
    return put;
}

Result<void> LdapBackendImpl::mirror_readable(Conn& conn, const GroupSet& set) {
    constexpr std::size_t kMaxAsked = 64;
    const bool posix = cfg_.group_type == GroupType::posix_group;
    const std::string filter = posix ? "(|(memberUid=*)(gidNumber=*))" : "(member=*)";
    static const std::vector<std::string> kNoAttrs = {"1.1"};
    std::size_t asked = 0;
    std::string unreadable;
    Result<void> failed;
    set.each([&](const GroupSet::Group& g) {
        if (asked >= kMaxAsked || !unreadable.empty() || !failed) return;
        if (posix ? (!g.member_uids.empty() || g.gid) : !g.member_keys.empty()) return;
        ++asked;
        auto r = search(conn, g.dn, Scope::base, filter, kNoAttrs, 1, 1, false, nullptr);
        if (!r) {
            if (r.error().rc != LDAP_NO_SUCH_OBJECT) failed = fail(ErrorCode::unavailable, r.error().text);
        } else if (!r->empty()) {
            unreadable = g.dn;
        }
    });
    if (!failed) return failed;
    if (!unreadable.empty())
        return fail(ErrorCode::permission_denied,
                    std::string("the bind DN may search but not read ") + (posix ? "memberUid" : "member") +
                        " values (give it read access, or set ldap.group_mirror: false): group " + unreadable +
                        " came without the values the directory has");
    return {};
}

LdapBackendImpl::FeedEnd LdapBackendImpl::mirror_session(Conn& conn, const std::string& uri, std::string& why) {
    LDAP* ld = conn.ld.get();
    static const std::vector<std::string> kControls = {"supportedControl"};
    auto dse = search(conn, "", Scope::base, "(objectClass=*)", kControls, 1, 1, false, nullptr);
    if (!dse) {
        why = dse.error().text;
        return FeedEnd::lost;
    }
    const auto* offered = dse->empty() ? nullptr : dse->front().values("supportedControl");
    if (offered == nullptr || std::find(offered->begin(), offered->end(), LDAP_CONTROL_SYNC) == offered->end())
        return FeedEnd::unsupported;

    // A refresh may take longer than ldap.timeout (the handle's time limit): none on this
    // connection's requests. One message is bounded instead (a group's values come whole).
    int no_limit = 0;
    ber_len_t max_message = kMirrorBytes / 4;
    Sockbuf* sb = nullptr;
    if (ldap_set_option(ld, LDAP_OPT_TIMELIMIT, &no_limit) != LDAP_OPT_SUCCESS ||
        ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || sb == nullptr ||
        ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_MAX_INCOMING, &max_message) != 1) {
        why = "cannot set the feed connection's limits";
        return FeedEnd::lost;
    }
    auto value = sync_request_value();
    if (!value) {
        why = value.error().detail;
        return FeedEnd::lost;
    }
    // One feed: a refresh into `building`, then changes into the believed copy.
    struct Feed {
        int id = -1;
        std::unique_ptr<GroupSet> building;
        Clock::time_point started{};
    };
    auto start_feed = [&](Feed& f) -> bool {
        LDAPControl request{const_cast<char*>(LDAP_CONTROL_SYNC), {value->size(), value->data()}, 1};
        LDAPControl* server_ctrls[] = {&request, nullptr};
        // What the group types compare, nothing more.
        static char kMember[] = "member", kMemberUid[] = "memberUid", kGidNumber[] = "gidNumber";
        char* member_attrs[] = {kMember, nullptr};
        char* posix_attrs[] = {kMemberUid, kGidNumber, nullptr};
        char** attrs = cfg_.group_type == GroupType::posix_group ? posix_attrs : member_attrs;
        const std::string filter = group_filter_part(cfg_.group_search.filter);
        GuardScope io(*conn.guard, Clock::now() + op_timeout());
        const int rc = ldap_search_ext(ld, cfg_.group_search.base.c_str(), ldap_scope(cfg_.group_search.scope),
                                       filter.c_str(), attrs, 0, server_ctrls, nullptr, nullptr, 0, &f.id);
        if (rc != LDAP_SUCCESS) {
            why = describe(ld, rc);
            return false;
        }
        f.building = std::make_unique<GroupSet>(kMirrorBytes);
        f.started = Clock::now();
        return true;
    };
    // The feed tells every change a client made, but not those a directory's overlays make
    // on their own and leave to each replica to redo (slapd's memberof and refint: the member
    // values of a renamed or deleted entry), nor a renamed container above the groups. So a
    // copy is rebuilt by a second feed on the same connection every group_cache_ttl (at most
    // kMirrorRebuildMax), and at once when a group goes or moves; the first feed is dropped
    // once the second's refresh is done. A rebuild must be done within that time plus
    // ldap.timeout, or the copy goes.
    const auto rebuild_after =
        std::min<Clock::duration>(std::chrono::seconds(cfg_.group_cache_ttl_s), kMirrorRebuildMax);
    Feed current, next;
    bool again = false;               // a group went or moved while `next` was refreshing
    std::set<std::string> changed;    // groups `current` changed while `next` refreshed
    if (!start_feed(current)) return FeedEnd::lost;
    {
        std::lock_guard lock(mirror_m_);
        mirror_state_ = "refreshing from " + uri;
    }
    auto installed = Clock::time_point{};
    int probe = -1;
    auto probe_sent = Clock::time_point{};
    auto last_heard = Clock::now();
    auto rebuild = [&]() -> bool {
        changed.clear();
        again = false;
        return start_feed(next);
    };
    auto rebuild_soon = [&]() -> bool {
        if (current.building) return true;  // the first refresh is still on
        if (next.id >= 0) {
            again = true;
            return true;
        }
        return rebuild();
    };
    while (!mirror_stopping()) {
        timeval tv{0, 200000};
        LDAPMessage* raw = nullptr;
        int rc;
        {
            // A message that began to arrive is read whole within ldap.timeout.
            GuardScope io(*conn.guard, Clock::now() + op_timeout());
            rc = ldap_result(ld, LDAP_RES_ANY, LDAP_MSG_ONE, &tv, &raw);
        }
        MessagePtr msg(raw);
        const auto now = Clock::now();
        if (rc < 0) {
            int err = LDAP_SERVER_DOWN;
            ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
            why = describe(ld, err);
            return FeedEnd::lost;
        }
        if (!current.building && next.id < 0 && now - installed >= rebuild_after) {
            // Logins went back to a server preferred over this one (it failed, and answers
            // again): the feed follows them there.
            const std::vector<std::size_t> order = server_order();
            if (!order.empty() && order.front() != conn.server) {
                why = "moving the feed from " + uri + " to " + servers_[order.front()].uri + ", which logins use";
                return FeedEnd::moved;
            }
            if (!rebuild()) return FeedEnd::lost;
        }
        if (next.id >= 0 && now - next.started > rebuild_after + op_timeout()) {
            why = "a rebuild of the copy took longer than group_cache_ttl and ldap.timeout";
            return FeedEnd::lost;
        }
        if (rc == 0) {
            // Silence: is the server still there? (A connection that died without a word would
            // otherwise leave a copy believed that no change can reach.)
            if (probe >= 0 && now - probe_sent > op_timeout()) {
                why = "no answer to a keepalive within ldap.timeout";
                return FeedEnd::lost;
            }
            if (probe < 0 && now - last_heard >= kMirrorProbeAfter) {
                static char kNoAttr[] = "1.1";
                char* none[] = {kNoAttr, nullptr};
                GuardScope io(*conn.guard, now + op_timeout());
                rc = ldap_search_ext(ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", none, 0, nullptr, nullptr, nullptr,
                                     1, &probe);
                if (rc != LDAP_SUCCESS) {
                    why = "keepalive: " + describe(ld, rc);
                    return FeedEnd::lost;
                }
                probe_sent = now;
            }
            continue;
        }
        last_heard = now;
        if (!current.building) mirror_.heard();
        const int id = ldap_msgid(msg.get());
        if (id == probe) {
            if (rc == LDAP_RES_SEARCH_RESULT) probe = -1;
            continue;
        }
        Feed* f = id == current.id ? &current : id == next.id ? &next : nullptr;
        if (f == nullptr) continue;  // an abandoned feed's last words
        // A change `current` applies while `next` refreshes may miss `next` (sent before it):
        // noted, and carried over when `next` is installed.
        auto note = [&](const std::string& uuid) {
            if (f == &current && !current.building && next.id >= 0) changed.insert(uuid);
        };
        switch (rc) {
        case LDAP_RES_SEARCH_ENTRY: {
            bool moved = false;
            std::string uuid;
            if (auto r = mirror_entry(ld, msg.get(), f->building.get(), moved, uuid); !r) {
                why = r.error().detail;
                return r.error().code == ErrorCode::too_large ? FeedEnd::too_big : FeedEnd::lost;
            }
            note(uuid);
            // The member values naming a group that went or moved may change unannounced
            // (memberof, refint): rebuild now rather than at the next period.
            if (moved && !rebuild_soon()) return FeedEnd::lost;
            break;
        }
        case LDAP_RES_INTERMEDIATE: {
            char* oid_raw = nullptr;
            berval* data = nullptr;
            rc = ldap_parse_intermediate(ld, msg.get(), &oid_raw, &data, nullptr, 0);
            LdapString oid(oid_raw);
            std::unique_ptr<berval, decltype(&ber_bvfree)> data_owner(data, &ber_bvfree);
            if (rc != LDAP_SUCCESS || !oid || std::string_view(oid.get()) != LDAP_SYNC_INFO || data == nullptr)
                break;  // not the feed's
            auto info = parse_sync_info(*data, kMirrorMaxUuids);
            if (!info) {
                why = info.error().detail;
                return FeedEnd::lost;
            }
            if (info->kind == SyncInfo::Kind::id_set && info->refresh_deletes) {
                if (f->building) {
                    for (const std::string& u : info->uuids) f->building->erase(u);
                } else {
                    bool gone = false;
                    mirror_.update([&](GroupSet& set) {
                        for (const std::string& u : info->uuids) gone = set.erase(u) || gone;
                        return true;
                    });
                    for (const std::string& u : info->uuids) note(u);
                    if (gone && !rebuild_soon()) return FeedEnd::lost;
                }
            }
            const bool refresh_end = (info->kind == SyncInfo::Kind::refresh_delete ||
                                      info->kind == SyncInfo::Kind::refresh_present) && info->refresh_done;
            if (!refresh_end || !f->building) break;
            if (auto ok = mirror_readable(conn, *f->building); !ok) {
                why = ok.error().detail;
                return ok.error().code == ErrorCode::permission_denied ? FeedEnd::unreadable : FeedEnd::lost;
            }
            if (f == &next) {
                // What `current` changed meanwhile, as `current` has it (as new as any).
                bool carried = true;
                mirror_.update([&](GroupSet& live) {
                    for (const std::string& u : changed) {
                        if (const GroupSet::Group* g = live.find(u)) {
                            if (!next.building->put(u, *g)) carried = false;
                        } else {
                            next.building->erase(u);
                        }
                    }
                    return true;
                });
                if (!carried) {
                    why = "the rebuilt copy is past its bound";
                    return FeedEnd::too_big;
                }
            }
            const std::size_t n = f->building->size(), bytes = f->building->bytes();
            const auto took = std::chrono::duration_cast<Ms>(now - f->started).count();
            mirror_.install(std::move(f->building), uri);
            installed = now;
            if (f == &next) {
                // The rebuilt copy is believed now; the old feed goes.
                {
                    GuardScope io(*conn.guard, Clock::now() + op_timeout());
                    ldap_abandon_ext(ld, current.id, nullptr, nullptr);
                }
                current = std::move(next);
                next = Feed{};
                changed.clear();
                log::debug("ldap: group mirror: rebuilt, ", std::to_string(n), " groups in ", std::to_string(took),
                           " ms");
                if (again && !rebuild()) return FeedEnd::lost;
                break;
            }
            {
                std::lock_guard lock(mirror_m_);
                mirror_state_.clear();
            }
            log::info("ldap: group mirror: ", std::to_string(n), " groups (", std::to_string((bytes + 1023) / 1024),
                      " KiB) from ", log_safe(uri), " in ", std::to_string(took),
                      " ms; logins take their groups from it while its change feed is up");
            break;
        }
        case LDAP_RES_SEARCH_RESULT: {
            int err = LDAP_OTHER;
            char* diag_raw = nullptr;
            ldap_parse_result(ld, msg.get(), &err, nullptr, &diag_raw, nullptr, nullptr, 0);
            LdapString diag(diag_raw);
            why = "the directory ended the feed: " + describe(ld, err, diag.get());
            if (err == LDAP_SIZELIMIT_EXCEEDED)
                why += " (the bind DN's size limit is below the number of groups: raise it, as "
                       "limits dn.exact=... size=unlimited, or set ldap.group_mirror: false)";
            return err == LDAP_SIZELIMIT_EXCEEDED ? FeedEnd::too_big : FeedEnd::lost;
        }
        default:
            break;
        }
    }
    return FeedEnd::stopped;
}

std::vector<proto::BackendState> LdapBackendImpl::probe() {
    std::vector<proto::BackendState> states;
    try {
        std::string dns_problem;
        // Up to 64 SRV targets: probe the first few (the status reply and the wait are bounded).
        constexpr std::size_t kMaxProbed = 16;
        const std::vector<std::size_t> order = server_order(nullptr, &dns_problem);
        for (std::size_t i : order) {
            if (states.size() == kMaxProbed) {
                states.back().detail += " (" + std::to_string(order.size() - kMaxProbed) + " more servers not probed)";
                break;
            }
            const ServerInfo& s = servers_[i];
            proto::BackendState st;
            st.name = "ldap " + s.uri;
            if (!s.parse_error.empty()) {
                st.detail = s.parse_error;
                states.push_back(std::move(st));
                continue;
            }
            const auto t0 = Clock::now();
            bool fatal = false;
            auto conn = open_server(i, fatal);
            const auto ms = std::chrono::duration_cast<Ms>(Clock::now() - t0).count();
            if (conn) {
                mark_up(i);
                st.up = true;
                st.detail = std::string(s.tls ? (s.start_tls ? "StartTLS" : "TLS") : "plain") + ", bound " +
                            (cfg_.bind_dn.empty() ? std::string("anonymously") : "as " + log_safe(cfg_.bind_dn)) +
                            ", " + std::to_string(ms) + " ms";
            } else {
                if (!fatal) mark_down(i, conn.error().message);
                st.detail = conn.error().message;
            }
            states.push_back(std::move(st));
        }
        if (!dns_problem.empty()) states.push_back(proto::BackendState{"ldap dns_srv " + cfg_.dns_srv, false, dns_problem});
        if (states.empty()) states.push_back(proto::BackendState{"ldap", false, "no server configured"});
        // The group mirror is a shortcut, not a server: without it logins search, so it is
        // never reported down.
        if (mirror_wanted()) {
            std::string detail;
            if (auto view = mirror_.view()) {
                detail = std::to_string(view->groups().size()) + " groups from " + log_safe(view->source()) +
                         ", kept current by its change feed";
            } else {
                std::lock_guard lock(mirror_m_);
                detail = "not in use (logins search the directory): " +
                         (mirror_state_.empty() ? std::string("not started; the first login starts it")
                                                : log_safe(mirror_state_));
            }
            states.push_back(proto::BackendState{"ldap group mirror", true, std::move(detail)});
        }
    } catch (const std::exception& e) {
        log::error("ldap: probe failed: ", log_safe(e.what()));
    } catch (...) {
        log::error("ldap: probe failed");
    }
    return states;
}

}  // namespace

Result<std::unique_ptr<LdapBackend>> LdapBackend::create(LdapConfig config) {
    try {
        // libldap reads ldap.conf and initialises its globals on first use; do it here, before
        // worker threads race to it.
        int version = 0;
        ldap_get_option(nullptr, LDAP_OPT_PROTOCOL_VERSION, &version);
        auto backend = std::make_unique<LdapBackendImpl>(std::move(config));
        if (auto v = backend->validate(); !v) return tl::unexpected<Error>(v.error());
        return std::unique_ptr<LdapBackend>(std::move(backend));
    } catch (const std::exception& e) {
        return fail(ErrorCode::internal, std::string("LDAP backend: ") + e.what());
    }
}

}  // namespace cvat::helper
