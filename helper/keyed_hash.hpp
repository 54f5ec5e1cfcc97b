// SPDX-License-Identifier: GPL-3.0-or-later
// HMAC-SHA256 under a random key made for this process: lets memory-only caches recognise a
// password they saw before without keeping it. The key never leaves the object.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "secret.hpp"

namespace cvat::helper {

using Digest = std::array<std::uint8_t, 32>;

class KeyedHash {
public:
    // A fresh 32-byte key from RAND_bytes; aborts the process if OpenSSL has no randomness
    // (a predictable key would make every cached verdict forgeable offline).
    KeyedHash();

    // HMAC over the parts, each prefixed with its 32-bit length so that ("ab","c") and
    // ("a","bc") differ. The message is assembled in a zeroing buffer.
    Digest operator()(std::initializer_list<std::string_view> parts) const;

private:
    SecureBytes key_;
};

// Constant-time equality (CRYPTO_memcmp).
bool digest_equal(const Digest& a, const Digest& b) noexcept;

}  // namespace cvat::helper
