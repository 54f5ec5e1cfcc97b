// SPDX-License-Identifier: GPL-3.0-or-later
#include "verdict_cache.hpp"

namespace cvat::helper {

VerdictCache::VerdictCache(std::size_t max_entries) : max_entries_(max_entries) {}

void VerdictCache::erase(Map::iterator it) {
    age_.erase(it->second.age);
    slots_.erase(it);
}

std::optional<proto::Verdict> VerdictCache::find(std::string_view backend, std::string_view service,
                                                 std::string_view user, const Secret& password,
                                                 std::int64_t now_ms, std::int64_t ttl_ms) {
    // Hash before taking the lock: the HMAC is the costly part and needs no shared state.
    const Digest tag = hash_({backend, service, user, password.view()});
    std::lock_guard lock(mutex_);
    auto it = slots_.find(Key{std::string(user), std::string(backend), std::string(service)});
    if (it == slots_.end()) return std::nullopt;
    const std::int64_t age = now_ms - it->second.stored_ms;
    if (ttl_ms <= 0 || age < 0 || age >= ttl_ms) {  // a clock that went back also expires
        erase(it);
        return std::nullopt;
    }
    if (!digest_equal(it->second.tag, tag)) return std::nullopt;
    return it->second.verdict;
}

void VerdictCache::remember(std::string_view backend, std::string_view service, std::string_view user,
                            const Secret& password, const proto::Verdict& ok_verdict, std::int64_t now_ms) {
    if (ok_verdict.status != proto::Status::ok || max_entries_ == 0) return;
    const Digest tag = hash_({backend, service, user, password.view()});
    std::lock_guard lock(mutex_);
    Key key{std::string(user), std::string(backend), std::string(service)};
    if (auto it = slots_.find(key); it != slots_.end()) erase(it);
    while (slots_.size() >= max_entries_) erase(slots_.find(*age_.front()));
    auto [it, inserted] = slots_.emplace(std::move(key), Entry{tag, ok_verdict, now_ms, {}});
    (void)inserted;
    it->second.age = age_.insert(age_.end(), &it->first);
}

void VerdictCache::forget_user(std::string_view user) {
    std::lock_guard lock(mutex_);
    auto it = slots_.lower_bound(Key{std::string(user), {}, {}});
    while (it != slots_.end() && it->first.user == user) {
        auto next = std::next(it);
        erase(it);
        it = next;
    }
}

void VerdictCache::clear() {
    std::lock_guard lock(mutex_);
    slots_.clear();
    age_.clear();
}

std::size_t VerdictCache::size() const {
    std::lock_guard lock(mutex_);
    return slots_.size();
}

}  // namespace cvat::helper
