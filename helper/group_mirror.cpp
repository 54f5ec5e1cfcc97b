// SPDX-License-Identifier: GPL-3.0-or-later
#include "group_mirror.hpp"

#include <algorithm>
#include <charconv>
#include <mutex>

#include <ldap.h>

#include "ldap_text.hpp"

namespace cvat::helper {

namespace {

// Bytes a group costs in the copy beyond its strings: the node, the index slots.
constexpr std::size_t kGroupOverhead = 160;
constexpr std::size_t kValueOverhead = sizeof(std::string) + 2 * sizeof(void*);

// caseExactIA5Match's insignificant spaces (RFC 4518 §2.6.1): none at either end, runs as one.
std::string squash_spaces(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
        out.push_back(c);
    }
    if (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

void sort_unique(std::vector<std::string>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
}

// A BER reader over its own copy of the bytes (null `ber`: no bytes, or out of memory). Values
// read with "m" point into the copy: they are copied out before the reader goes. liblber
// cannot read an empty value (ber_init gives an element without a buffer, and ber_scanf
// dereferences it), so none is given to it: a control without a value is refused here.
struct BerReader {
    BerElement* ber;
    explicit BerReader(const berval& v)
        : ber(v.bv_val == nullptr || v.bv_len == 0 ? nullptr : ber_init(const_cast<berval*>(&v))) {}
    ~BerReader() {
        if (ber != nullptr) ber_free(ber, 1);
    }
    BerReader(const BerReader&) = delete;
    BerReader& operator=(const BerReader&) = delete;
};

}  // namespace

Result<GroupSet::Group> GroupSet::make(const std::string& uuid, const MirrorEntry& entry) {
    Group g;
    g.dn = entry.dn;
    auto key = normalize_dn(entry.dn);
    if (!key) return fail(ErrorCode::protocol, "group DN does not parse: " + key.error().detail);
    g.key = std::move(*key);
    g.member_keys.reserve(entry.member.size());
    for (const std::string& m : entry.member) {
        // A value that is no DN matches no DN the walk asks about (the directory refuses such
        // values on write).
        auto k = normalize_dn(m);
        if (k) g.member_keys.push_back(std::move(*k));
    }
    sort_unique(g.member_keys);
    g.member_uids.reserve(entry.member_uid.size());
    for (const std::string& u : entry.member_uid) g.member_uids.push_back(squash_spaces(u));
    sort_unique(g.member_uids);
    g.gid = ldap_integer(entry.gid_number);
    g.bytes = kGroupOverhead + uuid.size() + g.dn.size() + g.key.size();
    for (const std::string& k : g.member_keys) g.bytes += k.size() + kValueOverhead;
    for (const std::string& u : g.member_uids) g.bytes += u.size() + kValueOverhead;
    return g;
}

Result<void> GroupSet::put(const std::string& uuid, const MirrorEntry& entry) {
    auto g = make(uuid, entry);
    if (!g) return tl::unexpected<Error>(g.error());
    return put(uuid, std::move(*g));
}

Result<void> GroupSet::put(const std::string& uuid, Group g) {
    const auto old = groups_.find(uuid);
    const std::size_t old_bytes = old == groups_.end() ? 0 : old->second.bytes;
    if (bytes_ - old_bytes + g.bytes > max_bytes_)
        return fail(ErrorCode::too_large, "the groups need more than " + std::to_string(max_bytes_ >> 20) + " MiB");
    erase(uuid);
    auto [it, inserted] = groups_.emplace(uuid, std::move(g));
    const Group* p = &it->second;
    for (const std::string& k : p->member_keys) by_member_[k].push_back(p);
    for (const std::string& u : p->member_uids) by_uid_[u].push_back(p);
    if (p->gid) by_gid_[*p->gid].push_back(p);
    bytes_ += p->bytes;
    return {};
}

template <typename Key>
void GroupSet::unindex(Index<Key>& index, const Key& key, const Group* g) {
    auto it = index.find(key);
    if (it == index.end()) return;
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), g), v.end());
    if (v.empty()) index.erase(it);
}

const GroupSet::Group* GroupSet::find(const std::string& uuid) const {
    auto it = groups_.find(uuid);
    return it == groups_.end() ? nullptr : &it->second;
}

bool GroupSet::erase(const std::string& uuid) {
    auto it = groups_.find(uuid);
    if (it == groups_.end()) return false;
    const Group* g = &it->second;
    for (const std::string& k : g->member_keys) unindex(by_member_, k, g);
    for (const std::string& u : g->member_uids) unindex(by_uid_, u, g);
    if (g->gid) unindex(by_gid_, *g->gid, g);
    bytes_ -= g->bytes;
    groups_.erase(it);
    return true;
}

const std::vector<const GroupSet::Group*>& GroupSet::with_member(const std::string& member_key) const {
    static const std::vector<const Group*> kNone;
    auto it = by_member_.find(member_key);
    return it == by_member_.end() ? kNone : it->second;
}

std::vector<const GroupSet::Group*> GroupSet::with_uid_or_gid(std::string_view uid,
                                                              std::optional<std::int64_t> gid) const {
    std::vector<const Group*> out;
    if (auto it = by_uid_.find(squash_spaces(uid)); it != by_uid_.end()) out = it->second;
    if (gid)
        if (auto it = by_gid_.find(*gid); it != by_gid_.end())
            for (const Group* g : it->second)
                if (std::find(out.begin(), out.end(), g) == out.end()) out.push_back(g);
    return out;
}

std::optional<std::int64_t> ldap_integer(std::string_view text) {
    if (text.empty() || text.front() == '+') return std::nullopt;
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
    return v;
}

WriterFirstLock::WriterFirstLock() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&rw_, &attr);
    pthread_rwlockattr_destroy(&attr);
}
WriterFirstLock::~WriterFirstLock() { pthread_rwlock_destroy(&rw_); }
void WriterFirstLock::lock() { pthread_rwlock_wrlock(&rw_); }
void WriterFirstLock::unlock() { pthread_rwlock_unlock(&rw_); }
void WriterFirstLock::lock_shared() { pthread_rwlock_rdlock(&rw_); }
void WriterFirstLock::unlock_shared() { pthread_rwlock_unlock(&rw_); }

std::optional<GroupMirror::View> GroupMirror::view() const {
    const auto now = Clock::now().time_since_epoch().count();
    if (now - heard_.load(std::memory_order_acquire) > believed_for_.count()) return std::nullopt;
    std::shared_lock lock(m_);
    if (!set_) return std::nullopt;
    return View(std::move(lock), set_.get(), &source_);
}

void GroupMirror::install(std::unique_ptr<GroupSet> set, std::string source) {
    std::unique_ptr<GroupSet> old;
    {
        std::unique_lock lock(m_);
        old = std::move(set_);
        set_ = std::move(set);
        source_ = std::move(source);
    }
    heard();
}  // the old copy is freed outside the lock

void GroupMirror::heard() noexcept {
    heard_.store(Clock::now().time_since_epoch().count(), std::memory_order_release);
}

void GroupMirror::down() {
    std::unique_ptr<GroupSet> old;
    std::unique_lock lock(m_);
    old = std::move(set_);
    lock.unlock();
}

bool GroupMirror::held() const {
    std::shared_lock lock(m_);
    return set_ != nullptr;
}

// --- messages ---------------------------------------------------------------------------------

Result<std::string> sync_request_value() {
    BerElement* ber = ber_alloc_t(LBER_USE_DER);
    if (ber == nullptr) return fail(ErrorCode::internal, "out of memory");
    std::string out;
    berval bv{};
    // syncRequestValue ::= SEQUENCE { mode ENUMERATED, cookie OPTIONAL, reloadHint DEFAULT FALSE }
    const bool ok = ber_printf(ber, "{e}", static_cast<ber_int_t>(LDAP_SYNC_REFRESH_AND_PERSIST)) != -1 &&
                    ber_flatten2(ber, &bv, 0) == 0;
    if (ok) out.assign(bv.bv_val, bv.bv_len);
    ber_free(ber, 1);
    if (!ok) return fail(ErrorCode::internal, "cannot encode the sync request control");
    return out;
}

Result<SyncState> parse_sync_state(const berval& value) {
    // syncStateValue ::= SEQUENCE { state ENUMERATED, entryUUID OCTET STRING (16), cookie OPTIONAL }
    BerReader r(value);
    if (r.ber == nullptr) return fail(ErrorCode::protocol, "sync state control without a value");
    ber_int_t state = -1;
    berval uuid{};
    if (ber_scanf(r.ber, "{em", &state, &uuid) == LBER_ERROR)
        return fail(ErrorCode::protocol, "malformed sync state control");
    if (state < LDAP_SYNC_PRESENT || state > LDAP_SYNC_DELETE)
        return fail(ErrorCode::protocol, "sync state control: unknown state " + std::to_string(state));
    if (uuid.bv_len != 16) return fail(ErrorCode::protocol, "sync state control: entryUUID is not 16 bytes");
    return SyncState{state, std::string(uuid.bv_val, uuid.bv_len)};
}

Result<SyncInfo> parse_sync_info(const berval& value, std::size_t max_uuids) {
    BerReader r(value);
    if (r.ber == nullptr) return fail(ErrorCode::protocol, "sync info message without a value");
    SyncInfo info;
    ber_len_t len = 0;
    const ber_tag_t tag = ber_peek_tag(r.ber, &len);
    auto malformed = [] { return fail(ErrorCode::protocol, "malformed sync info message"); };
    // The optional cookie, which this consumer never sends back (it refreshes in full).
    auto skip_cookie = [&]() -> bool {
        if (ber_peek_tag(r.ber, &len) != LDAP_TAG_SYNC_COOKIE) return true;
        berval cookie{};
        return ber_scanf(r.ber, "m", &cookie) != LBER_ERROR;
    };
    auto read_flag = [&](bool& flag) -> bool {
        if (ber_peek_tag(r.ber, &len) != LBER_BOOLEAN) return true;
        ber_int_t b = 0;
        if (ber_scanf(r.ber, "b", &b) == LBER_ERROR) return false;
        flag = b != 0;
        return true;
    };
    switch (tag) {
    case LDAP_TAG_SYNC_NEW_COOKIE: {
        info.kind = SyncInfo::Kind::new_cookie;
        berval cookie{};
        if (ber_scanf(r.ber, "m", &cookie) == LBER_ERROR) return malformed();
        return info;
    }
    case LDAP_TAG_SYNC_REFRESH_DELETE:
    case LDAP_TAG_SYNC_REFRESH_PRESENT:
        info.kind = tag == LDAP_TAG_SYNC_REFRESH_DELETE ? SyncInfo::Kind::refresh_delete
                                                        : SyncInfo::Kind::refresh_present;
        if (ber_scanf(r.ber, "{") == LBER_ERROR || !skip_cookie() || !read_flag(info.refresh_done))
            return malformed();
        return info;
    case LDAP_TAG_SYNC_ID_SET: {
        info.kind = SyncInfo::Kind::id_set;
        if (ber_scanf(r.ber, "{") == LBER_ERROR || !skip_cookie() || !read_flag(info.refresh_deletes))
            return malformed();
        if (ber_peek_tag(r.ber, &len) != LBER_SET) return malformed();
        char* last = nullptr;
        for (ber_tag_t t = ber_first_element(r.ber, &len, &last); t != LBER_DEFAULT;
             t = ber_next_element(r.ber, &len, last)) {
            if (info.uuids.size() >= max_uuids)
                return fail(ErrorCode::too_large, "sync info message: more than " + std::to_string(max_uuids) + " UUIDs");
            berval uuid{};
            if (t != LBER_OCTETSTRING || ber_scanf(r.ber, "m", &uuid) == LBER_ERROR || uuid.bv_len != 16)
                return malformed();
            info.uuids.emplace_back(uuid.bv_val, uuid.bv_len);
        }
        return info;
    }
    default:
        return malformed();
    }
}

}  // namespace cvat::helper
