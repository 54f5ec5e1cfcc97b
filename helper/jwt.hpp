// SPDX-License-Identifier: GPL-3.0-or-later
// JSON Web Tokens as an OpenID Connect relying party must check them (RFC 7515/7517/7518/7519,
// RFC 8725, OpenID Connect Core §3.1.3.7), the way mod_auth_openidc does: signature against
// the IdP's JWKS by `kid` with an algorithm allow-list, never `none`, never an HMAC keyed with
// a public key; `iss` exact, `aud` holds the client id, `azp` when there are several
// audiences, `exp` required, `iat`/`nbf` with a small leeway. Time is a parameter.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <tl/expected.hpp>

namespace cvat::helper::jwt {

using Json = nlohmann::json;

// Why a token was refused; the OIDC code branches on it (unknown_key → refresh JWKS once).
enum class Failure {
    malformed,       // not three base64url parts, bad JSON, a claim of the wrong type, a
                     // `crit` header, an unexpected `typ`
    too_large,       // token or JWKS over its cap
    bad_algorithm,   // `none`, an HMAC, or an algorithm not on the allow-list / not the key's
    unknown_key,     // no key in the JWKS with this `kid` (or no usable key at all)
    bad_signature,   // also a signature of the wrong length
    expired,         // exp missing or in the past (beyond leeway)
    not_yet_valid,   // nbf/iat in the future (beyond leeway)
    wrong_issuer,    // iss not the configured issuer (or no issuer configured)
    wrong_audience,  // aud lacks the client id, azp wrong, or several auds and no azp
    missing_claim,   // iss or aud absent
};
const char* failure_name(Failure f) noexcept;

struct Error {
    Failure failure;
    std::string detail;  // for logs and `cvat-authctl explain`; never the token
};
template <typename T>
using Result = tl::expected<T, Error>;

// Caps: a JWT over 16 KiB or a JWKS over 256 KiB / 64 keys is refused.
inline constexpr std::size_t kMaxToken = 16 * 1024;
inline constexpr std::size_t kMaxJwks = 256 * 1024;
inline constexpr std::size_t kMaxKeys = 64;

struct PkeyFree {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};

// One public key from a JWKS: RSA (n, e), EC (P-256/384/521: x, y) or OKP (Ed25519/Ed448: x).
struct Jwk {
    std::string kid;  // may be empty
    std::string kty;  // RSA, EC, OKP
    std::string alg;  // when the JWKS names one, the only algorithm this key may verify
    std::string use;  // "sig" or empty; "enc" keys are skipped
    std::shared_ptr<EVP_PKEY> key;
    std::string crv;  // EC: P-256, P-384, P-521; OKP: Ed25519, Ed448; RSA: empty
};

// A parsed JWKS. Keys that cannot be used (unknown kty/crv, use=enc, key_ops without
// "verify", an alg off the allow-list, RSA under 2048 bits, a point off its curve) are
// skipped, not fatal; a document with no usable key is an error (unknown_key). Private
// members of a key (`d`, `p`, …) are ignored. Over kMaxJwks bytes or kMaxKeys keys: too_large.
class KeySet {
public:
    static Result<KeySet> parse(std::string_view json);
    // The key with this kid; with an empty kid, the only key if there is exactly one.
    const Jwk* find(std::string_view kid) const noexcept;
    std::size_t size() const noexcept { return keys_.size(); }
    const std::vector<Jwk>& keys() const noexcept { return keys_; }
    // Why each skipped key was skipped ("key 2 (kid \"x\"): use=enc"), for config checks.
    const std::vector<std::string>& skipped() const noexcept { return skipped_; }

private:
    std::vector<Jwk> keys_;
    std::vector<std::string> skipped_;
};

// A token taken apart, not yet trusted.
struct Token {
    Json header;
    Json claims;
    std::string alg;
    std::string kid;
    std::string signing_input;  // base64url(header) "." base64url(payload)
    std::string signature;      // raw bytes
};

// True when `text` has the shape of a compact JWS (three base64url parts, a JSON header with
// "alg"): how the daemon tells a token from a password. Cheap; no signature work.
bool looks_like_jwt(std::string_view text) noexcept;

// Splits and decodes; checks structure and sizes only.
Result<Token> decode(std::string_view compact);

// Asymmetric algorithms only: RS256/384/512, PS256/384/512, ES256/384/512, EdDSA.
const std::vector<std::string>& default_algorithms();

// Checks the signature with the key the header's kid names. `allowed` narrows the
// algorithms further (e.g. id_token_signing_alg_values_supported from discovery).
// The algorithm is judged before any key is looked up: `none` and HS* are bad_algorithm
// whatever the JWKS holds (RFC 8725 §3.1, §3.2). The key must fit the algorithm (RS*/PS* RSA,
// ES256/384/512 EC P-256/384/521, EdDSA OKP) and the JWK's own `alg`, if any. A kid absent
// from the JWKS is unknown_key (refresh the JWKS once); without a kid, the one key that fits.
Result<void> verify_signature(const Token& token, const KeySet& keys,
                              const std::vector<std::string>& allowed = default_algorithms());

struct ClaimRules {
    std::string issuer;        // exact match
    std::string client_id;     // must be in aud; equal to azp when present with several auds
    std::int64_t now = 0;      // seconds since the epoch (a parameter, so tests set it)
    std::int64_t leeway = 60;  // seconds allowed for clock skew on exp, nbf, iat
};
Result<void> check_claims(const Token& token, const ClaimRules& rules);

// Value of a claim by dotted path ("realm_access.roles"): strings, or the strings of an array.
std::vector<std::string> claim_strings(const Json& claims, std::string_view dotted_path);

// base64url without padding (RFC 7515 §2), decoding refuses anything else.
std::string base64url_encode(std::string_view bytes);
bool base64url_decode(std::string_view text, std::string& out);

}  // namespace cvat::helper::jwt
