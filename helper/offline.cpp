// SPDX-License-Identifier: GPL-3.0-or-later
#include "offline.hpp"

#include <array>
#include <charconv>
#include <vector>

#include <argon2.h>
#include <openssl/rand.h>

namespace cvat::helper {

namespace {

constexpr std::size_t kSaltLen = 16;
constexpr std::size_t kHashLen = 32;
// Bounds on what offline_verify accepts from a stored string: well above anything we write,
// well below what would exhaust the daemon.
constexpr std::uint32_t kMaxMemoryKib = 1024 * 1024;  // 1 GiB
constexpr std::uint32_t kMaxTime = 64;
constexpr std::uint32_t kMaxParallelism = 16;
constexpr std::size_t kMaxEncoded = 512;

// Reads "<key>=<decimal>" at the front of `s`, consuming it.
bool take_param(std::string_view& s, char key, std::uint32_t& out) {
    if (s.size() < 3 || s[0] != key || s[1] != '=') return false;
    const char* begin = s.data() + 2;
    auto [ptr, ec] = std::from_chars(begin, s.data() + s.size(), out);
    if (ec != std::errc() || ptr == begin) return false;
    s.remove_prefix(static_cast<std::size_t>(ptr - s.data()));
    return true;
}

// "$argon2id$v=19$m=M,t=T,p=P$" with M, T, P in bounds; the rest is checked by libargon2.
bool sane_header(std::string_view s) {
    constexpr std::string_view kPrefix = "$argon2id$v=19$";
    if (s.size() > kMaxEncoded || s.substr(0, kPrefix.size()) != kPrefix) return false;
    s.remove_prefix(kPrefix.size());
    std::uint32_t m = 0, t = 0, p = 0;
    if (!take_param(s, 'm', m) || s.empty() || s[0] != ',') return false;
    s.remove_prefix(1);
    if (!take_param(s, 't', t) || s.empty() || s[0] != ',') return false;
    s.remove_prefix(1);
    if (!take_param(s, 'p', p) || s.empty() || s[0] != '$') return false;
    return m >= 8 && m <= kMaxMemoryKib && t >= 1 && t <= kMaxTime && p >= 1 && p <= kMaxParallelism;
}

}  // namespace

Result<std::string> offline_hash(const Secret& password, const OfflineParams& p) {
    if (password.empty()) return fail(ErrorCode::invalid_argument, "offline hash: empty password");
    if (p.m_cost_kib > kMaxMemoryKib || p.t_cost > kMaxTime || p.parallelism > kMaxParallelism)
        return fail(ErrorCode::invalid_argument, "offline hash: Argon2id cost out of bounds");
    std::array<std::uint8_t, kSaltLen> salt{};
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1)
        return fail(ErrorCode::internal, "offline hash: no random bytes for the salt");
    const std::size_t len = argon2_encodedlen(p.t_cost, p.m_cost_kib, p.parallelism, kSaltLen, kHashLen, Argon2_id);
    std::vector<char> encoded(len + 1, '\0');
    const int rc = argon2id_hash_encoded(p.t_cost, p.m_cost_kib, p.parallelism, password.c_str(), password.size(),
                                         salt.data(), salt.size(), kHashLen, encoded.data(), encoded.size());
    if (rc != ARGON2_OK)
        return fail(ErrorCode::internal, std::string("offline hash: Argon2id failed: ") + argon2_error_message(rc));
    return std::string(encoded.data());
}

bool offline_verify(std::string_view encoded, const Secret& password) {
    if (password.empty() || !sane_header(encoded) || encoded.find('\0') != std::string_view::npos) return false;
    const std::string z(encoded);  // libargon2 wants a NUL-terminated string
    return argon2id_verify(z.c_str(), password.c_str(), password.size()) == ARGON2_OK;
}

std::int64_t offline_delay(unsigned failures) noexcept {
    constexpr std::int64_t kCap = 300;
    if (failures <= 2) return 0;
    const unsigned shift = failures - 2;
    if (shift >= 9) return kCap;  // 2^9 = 512 > 300
    const std::int64_t d = std::int64_t{1} << shift;
    return d < kCap ? d : kCap;
}

OfflineRecent::OfflineRecent(std::size_t max_users) : max_users_(max_users) {}

bool OfflineRecent::needs_rehash(std::string_view user, const Secret& password) const {
    const Digest d = hash_({user, password.view()});
    std::lock_guard lock(mutex_);
    auto it = last_.find(std::string(user));
    return it == last_.end() || !digest_equal(it->second, d);
}

void OfflineRecent::hashed(std::string_view user, const Secret& password) {
    if (max_users_ == 0) return;
    const Digest d = hash_({user, password.view()});
    std::lock_guard lock(mutex_);
    if (last_.size() >= max_users_ && last_.find(std::string(user)) == last_.end()) last_.clear();
    last_[std::string(user)] = d;
}

void OfflineRecent::forget(std::string_view user) {
    std::lock_guard lock(mutex_);
    last_.erase(std::string(user));
}

void OfflineRecent::clear() {
    std::lock_guard lock(mutex_);
    last_.clear();
}

}  // namespace cvat::helper
