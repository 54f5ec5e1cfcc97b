// SPDX-License-Identifier: GPL-3.0-or-later
#include "throttle.hpp"

#include <algorithm>

namespace cvat::helper {

Throttle::Entry* Throttle::Table::find(const std::string& key, const ThrottleRule& rule, std::int64_t now_ms) {
    auto it = map.find(key);
    if (it == map.end()) return nullptr;
    Entry& e = it->second;
    // Quiet for a whole window, and no wait pending: forgotten.
    if (now_ms - e.last_failure_ms > rule.window_ms && e.next_at_ms <= now_ms) {
        lru.erase(e.lru);
        map.erase(it);
        return nullptr;
    }
    lru.splice(lru.begin(), lru, e.lru);
    return &e;
}

Throttle::Entry& Throttle::Table::get(const std::string& key, std::size_t max_entries) {
    auto it = map.find(key);
    if (it != map.end()) {
        lru.splice(lru.begin(), lru, it->second.lru);
        return it->second;
    }
    while (!lru.empty() && map.size() >= std::max<std::size_t>(max_entries, 1)) {
        map.erase(lru.back());
        lru.pop_back();
    }
    lru.push_front(key);
    Entry& e = map[key];
    e.lru = lru.begin();
    return e;
}

void Throttle::Table::erase(const std::string& key) {
    auto it = map.find(key);
    if (it == map.end()) return;
    lru.erase(it->second.lru);
    map.erase(it);
}

std::int64_t Throttle::delay_for(const ThrottleSettings& s, const ThrottleRule& rule, unsigned failures) noexcept {
    if (rule.failures == 0 || failures < rule.failures) return 0;
    const unsigned doublings = std::min(failures - rule.failures, 30u);
    return std::min<std::int64_t>(s.delay_ms << doublings, s.max_delay_ms);
}

Throttle::Gate Throttle::admit(const ThrottleSettings& s, const Keys& k, std::int64_t now_ms,
                               std::int64_t max_wait_ms) {
    std::lock_guard lock(mutex_);
    max_entries_ = s.max_entries;
    Entry* u = s.per_user.failures != 0 ? users_.find(k.user, s.per_user, now_ms) : nullptr;
    Entry* p = s.per_peer.failures != 0 && !k.peer.empty() ? peers_.find(k.peer, s.per_peer, now_ms) : nullptr;
    Gate g;
    g.at_ms = now_ms;
    if (u != nullptr) g.at_ms = std::max(g.at_ms, u->next_at_ms);
    if (p != nullptr) g.at_ms = std::max(g.at_ms, p->next_at_ms);
    if (g.at_ms - now_ms > std::min(s.max_delay_ms, max_wait_ms)) {
        ++refused_;
        g.refused = true;
        g.retry_in_ms = g.at_ms - now_ms - s.max_delay_ms;
        return g;
    }
    if (g.at_ms > now_ms) ++delayed_;
    // A key past its threshold takes one attempt per delay: this one reserves its slot, so
    // parallel attempts queue behind it (and past max_delay are refused) instead of all
    // being checked at once.
    if (u != nullptr) {
        if (auto d = delay_for(s, s.per_user, u->failures)) u->next_at_ms = g.at_ms + d;
    }
    if (p != nullptr) {
        if (auto d = delay_for(s, s.per_peer, p->failures)) p->next_at_ms = g.at_ms + d;
    }
    return g;
}

void Throttle::failed(const ThrottleSettings& s, const Keys& k, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    max_entries_ = s.max_entries;
    auto count = [&](Table& t, const std::string& key, const ThrottleRule& rule) {
        if (rule.failures == 0 || key.empty()) return;
        if (t.find(key, rule, now_ms) == nullptr) t.get(key, s.max_entries).last_failure_ms = now_ms;
        Entry& e = t.get(key, s.max_entries);
        ++e.failures;
        e.last_failure_ms = now_ms;
        e.next_at_ms = std::max(e.next_at_ms, now_ms + delay_for(s, rule, e.failures));
    };
    count(users_, k.user, s.per_user);
    count(peers_, k.peer, s.per_peer);
}

void Throttle::succeeded(const Keys& k) {
    std::lock_guard lock(mutex_);
    users_.erase(k.user);
}

Throttle::Stats Throttle::stats() const {
    std::lock_guard lock(mutex_);
    return Stats{users_.map.size(), peers_.map.size(), max_entries_, delayed_, refused_};
}

}  // namespace cvat::helper
