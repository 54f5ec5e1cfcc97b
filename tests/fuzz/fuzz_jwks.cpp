// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: a JWKS document as fetched from the IdP's jwks_uri (helper/jwt.hpp
// KeySet::parse), then the fixed valid tokens of fuzz_keys.hpp checked against it.
// Properties: parsing never throws or crashes, a parsed set holds at most kMaxKeys usable
// keys, each with an EVP key; a token verifies only when the set holds the very public key
// that signed it (nobody can make one verify with a key of their own).
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz.hpp"
#include "fuzz_keys.hpp"
#include "jwt.hpp"

using namespace cvat;
namespace jwt = cvat::helper::jwt;

namespace {

const jwt::KeySet& real_keys() {
    static const jwt::KeySet ks = [] {
        auto k = jwt::KeySet::parse(fuzz::kJwks);
        FUZZ_CHECK(k.has_value());
        return std::move(*k);
    }();
    return ks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto ks = jwt::KeySet::parse(fuzz::as_text(data, size));
    if (!ks) {
        FUZZ_CHECK(ks.error().failure == jwt::Failure::malformed || ks.error().failure == jwt::Failure::too_large ||
                   ks.error().failure == jwt::Failure::unknown_key);
        return 0;
    }
    FUZZ_CHECK(ks->size() >= 1 && ks->size() <= jwt::kMaxKeys);
    for (const auto& k : ks->keys()) FUZZ_CHECK(k.key != nullptr && k.use != "enc");
    for (const char* compact : fuzz::kTokens) {
        auto token = jwt::decode(compact);
        FUZZ_CHECK(token.has_value());
        if (!jwt::verify_signature(*token, *ks)) continue;
        // A set may name several keys with one kid (rotation): one of them must be the real key.
        const jwt::Jwk* real = real_keys().find(token->kid);
        FUZZ_CHECK(real != nullptr);
        bool has_real = false;
        for (const auto& k : ks->keys())
            has_real = has_real || (k.kid == token->kid && EVP_PKEY_eq(k.key.get(), real->key.get()) == 1);
        FUZZ_CHECK(has_real);
    }
    return 0;
}
