// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: a JWT as the daemon gets it from a client (a token login) or the IdP (an ID
// token): helper/jwt.hpp decode, verify_signature against a fixed JWKS (fuzz_keys.hpp) and
// check_claims with a fixed clock, claim_strings. Properties: decode accepts only what
// looks_like_jwt accepts; a token that verifies stops verifying when one bit of its
// signature changes, and was signed with an allowed asymmetric algorithm by the key its kid
// names; a token whose claims pass has the right iss, our client id in aud, and an exp.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz.hpp"
#include "fuzz_keys.hpp"
#include "jwt.hpp"

using namespace cvat;
namespace jwt = cvat::helper::jwt;

namespace {

const jwt::KeySet& keys() {
    static const jwt::KeySet ks = [] {
        auto k = jwt::KeySet::parse(fuzz::kJwks);
        FUZZ_CHECK(k.has_value() && k->size() == 5);
        return std::move(*k);
    }();
    return ks;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::as_text(data, size);
    const bool looks = jwt::looks_like_jwt(text);
    auto token = jwt::decode(text);
    if (!token) return 0;
    FUZZ_CHECK(looks);
    FUZZ_CHECK(!token->alg.empty());

    auto sig = jwt::verify_signature(*token, keys());
    if (sig) {
        const auto& algs = jwt::default_algorithms();
        FUZZ_CHECK(std::find(algs.begin(), algs.end(), token->alg) != algs.end());
        if (!token->kid.empty()) FUZZ_CHECK(keys().find(token->kid) != nullptr);
        FUZZ_CHECK(!token->signature.empty());
        for (std::size_t at : {std::size_t{0}, token->signature.size() / 2, token->signature.size() - 1}) {
            jwt::Token changed = *token;
            changed.signature[at] = static_cast<char>(changed.signature[at] ^ 0x01);
            FUZZ_CHECK(!jwt::verify_signature(changed, keys()));
        }
        jwt::Token longer = *token;
        longer.signature.push_back('\0');
        FUZZ_CHECK(!jwt::verify_signature(longer, keys()));
    }
    // Algorithms narrowed by discovery: RS256 only.
    auto narrow = jwt::verify_signature(*token, keys(), {"RS256"});
    if (narrow) FUZZ_CHECK(token->alg == "RS256" && sig);

    jwt::ClaimRules rules;
    rules.issuer = fuzz::kIssuer;
    rules.client_id = fuzz::kClientId;
    rules.now = fuzz::kNow;
    auto claims = jwt::check_claims(*token, rules);
    if (claims) {
        FUZZ_CHECK(token->claims.is_object());
        auto iss = token->claims.find("iss");
        FUZZ_CHECK(iss != token->claims.end() && iss->is_string() && *iss == fuzz::kIssuer);
        auto aud = jwt::claim_strings(token->claims, "aud");
        FUZZ_CHECK(std::find(aud.begin(), aud.end(), fuzz::kClientId) != aud.end());
        FUZZ_CHECK(token->claims.contains("exp"));
    } else {
        FUZZ_CHECK(jwt::failure_name(claims.error().failure) != nullptr);
    }
    for (const char* path : {"realm_access.roles", "groups", "resource_access.cvat.roles", "email", "a..b", "."})
        (void)jwt::claim_strings(token->claims, path);
    return 0;
}
