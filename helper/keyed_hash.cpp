// SPDX-License-Identifier: GPL-3.0-or-later
#include "keyed_hash.hpp"

#include <cstdlib>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "log.hpp"

namespace cvat::helper {

KeyedHash::KeyedHash() : key_(32) {
    if (RAND_bytes(key_.data(), static_cast<int>(key_.size())) != 1) {
        log::error("keyed hash: RAND_bytes failed; refusing to run with a predictable key");
        std::abort();
    }
}

Digest KeyedHash::operator()(std::initializer_list<std::string_view> parts) const {
    std::size_t total = 0;
    for (auto p : parts) total += 4 + p.size();
    SecureBytes msg;
    msg.reserve(total);
    for (auto p : parts) {
        auto n = static_cast<std::uint32_t>(p.size());
        for (int shift = 24; shift >= 0; shift -= 8) msg.push_back(static_cast<std::uint8_t>(n >> shift));
        msg.insert(msg.end(), p.begin(), p.end());
    }
    Digest out{};
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), msg.data(), msg.size(),
             out.data(), &len) == nullptr ||
        len != out.size()) {
        // Cannot happen with a built-in digest; a failure must never make two inputs equal.
        log::error("keyed hash: HMAC failed");
        std::abort();
    }
    return out;
}

bool digest_equal(const Digest& a, const Digest& b) noexcept {
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace cvat::helper
