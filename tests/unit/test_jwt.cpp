// SPDX-License-Identifier: GPL-3.0-or-later
// helper/jwt: tokens signed here with keys made here, checked against JWKS built here, at a
// `now` the test chooses. Covers the RFC 8725 attacks (none, HMAC with a public key, key
// confusion), every claim rule of OIDC Core §3.1.3.7, and the parser's refusals.
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.hpp"

#include "cmocka.hpp"

using namespace cvat::helper::jwt;

namespace {

template <auto F>
struct Free {
    template <typename T>
    void operator()(T* p) const noexcept {
        F(p);
    }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BnPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Free<ECDSA_SIG_free>>;
using BioPtr = std::unique_ptr<BIO, Free<BIO_free>>;

constexpr std::int64_t kNow = 1'700'000'000;
const std::string kIssuer = "https://idp.example.com/realms/cvat";
const std::string kClient = "cvat";

struct Keys {
    PkeyPtr rsa, rsa_b, rsa1024, p256, p384, p521, ed25519, ed448;
};
Keys* keys = nullptr;

#define expect_ok(expr)                                                                     \
    do {                                                                                    \
        auto&& r_ = (expr);                                                                 \
        if (!r_) {                                                                          \
            print_error("%s: unexpected %s: %s\n", #expr, failure_name(r_.error().failure), \
                        r_.error().detail.c_str());                                         \
            cmocka_fail();                                                                  \
        }                                                                                   \
    } while (0)

#define expect_failure(expr, code)                                                 \
    do {                                                                           \
        auto&& r_ = (expr);                                                        \
        if (r_) {                                                                  \
            print_error("%s: accepted, expected %s\n", #expr, failure_name(code)); \
            cmocka_fail();                                                         \
        }                                                                          \
        assert_string_equal(failure_name(r_.error().failure), failure_name(code)); \
    } while (0)

PkeyPtr keygen(const char* type, const char* param = nullptr, std::size_t bits = 0) {
    EVP_PKEY* k = nullptr;
    if (bits)
        k = EVP_PKEY_Q_keygen(nullptr, nullptr, type, bits);
    else if (param)
        k = EVP_PKEY_Q_keygen(nullptr, nullptr, type, param);
    else
        k = EVP_PKEY_Q_keygen(nullptr, nullptr, type);
    assert_non_null(k);
    return PkeyPtr(k);
}

std::string bn_bytes(EVP_PKEY* k, const char* name, int pad = 0) {
    BIGNUM* raw = nullptr;
    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &raw), 1);
    BnPtr bn(raw);
    std::string out(pad ? pad : BN_num_bytes(bn.get()), '\0');
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    if (pad)
        assert_int_equal(BN_bn2binpad(bn.get(), p, pad), pad);
    else
        BN_bn2bin(bn.get(), p);
    return out;
}

Json rsa_jwk(EVP_PKEY* k, const std::string& kid) {
    return {{"kty", "RSA"},
            {"kid", kid},
            {"use", "sig"},
            {"n", base64url_encode(bn_bytes(k, OSSL_PKEY_PARAM_RSA_N))},
            {"e", base64url_encode(bn_bytes(k, OSSL_PKEY_PARAM_RSA_E))}};
}

Json ec_jwk(EVP_PKEY* k, const std::string& crv, const std::string& kid) {
    const int size = crv == "P-256" ? 32 : crv == "P-384" ? 48 : 66;
    return {{"kty", "EC"},
            {"kid", kid},
            {"crv", crv},
            {"x", base64url_encode(bn_bytes(k, OSSL_PKEY_PARAM_EC_PUB_X, size))},
            {"y", base64url_encode(bn_bytes(k, OSSL_PKEY_PARAM_EC_PUB_Y, size))}};
}

Json okp_jwk(EVP_PKEY* k, const std::string& crv, const std::string& kid) {
    std::size_t len = 0;
    assert_int_equal(EVP_PKEY_get_raw_public_key(k, nullptr, &len), 1);
    std::string x(len, '\0');
    assert_int_equal(
        EVP_PKEY_get_raw_public_key(k, reinterpret_cast<unsigned char*>(x.data()), &len), 1);
    return {{"kty", "OKP"}, {"kid", kid}, {"crv", crv}, {"x", base64url_encode(x)}};
}

std::string jwks_text(const std::vector<Json>& members) {
    return Json{{"keys", members}}.dump();
}

// Every key of the fixture, one kid each.
std::string full_jwks() {
    return jwks_text({rsa_jwk(keys->rsa.get(), "rsa"), rsa_jwk(keys->rsa_b.get(), "rsa-b"),
                      ec_jwk(keys->p256.get(), "P-256", "p256"),
                      ec_jwk(keys->p384.get(), "P-384", "p384"),
                      ec_jwk(keys->p521.get(), "P-521", "p521"),
                      okp_jwk(keys->ed25519.get(), "Ed25519", "ed25519"),
                      okp_jwk(keys->ed448.get(), "Ed448", "ed448")});
}

KeySet parse_ok(const std::string& text) {
    auto ks = KeySet::parse(text);
    expect_ok(ks);
    return std::move(*ks);
}

const EVP_MD* md_for(const std::string& alg) {
    if (alg.ends_with("256")) return EVP_sha256();
    if (alg.ends_with("384")) return EVP_sha384();
    if (alg.ends_with("512")) return EVP_sha512();
    return nullptr;
}

// A JWS signature as RFC 7518 encodes it (ECDSA as raw R || S).
std::string sign(const std::string& alg, EVP_PKEY* k, const std::string& input) {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    assert_int_equal(EVP_DigestSignInit(ctx.get(), &pctx, md_for(alg), nullptr, k), 1);
    if (alg.starts_with("PS")) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
    }
    std::size_t len = 0;
    const auto* in = reinterpret_cast<const unsigned char*>(input.data());
    assert_int_equal(EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()), 1);
    std::string sig(len, '\0');
    assert_int_equal(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                                    in, input.size()),
                     1);
    sig.resize(len);
    if (!alg.starts_with("ES")) return sig;
    const int coord = EVP_PKEY_get_bits(k) == 256 ? 32 : EVP_PKEY_get_bits(k) == 384 ? 48 : 66;
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    EcdsaSigPtr es(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
    assert_non_null(es.get());
    std::string raw(2 * coord, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es.get()), out, coord), coord);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es.get()), out + coord, coord), coord);
    return raw;
}

Json claims_base() {
    return {{"iss", kIssuer},    {"aud", kClient},   {"sub", "user-1"},
            {"exp", kNow + 300}, {"iat", kNow - 10}, {"preferred_username", "alice"}};
}

std::string input_of(const Json& header, const Json& claims) {
    return base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
}

std::string make_token(const Json& header, const Json& claims, EVP_PKEY* k) {
    const std::string input = input_of(header, claims);
    return input + "." + base64url_encode(sign(header["alg"].get<std::string>(), k, input));
}

std::string token_for(const std::string& alg, const std::string& kid, EVP_PKEY* k,
                      const Json& claims = claims_base()) {
    return make_token(Json{{"alg", alg}, {"typ", "JWT"}, {"kid", kid}}, claims, k);
}

ClaimRules rules(std::int64_t now = kNow) {
    ClaimRules r;
    r.issuer = kIssuer;
    r.client_id = kClient;
    r.now = now;
    r.leeway = 60;
    return r;
}

// decode + verify_signature + check_claims, as the OIDC code runs them.
Result<void> validate(const std::string& compact, const KeySet& ks, const ClaimRules& r = rules()) {
    auto t = decode(compact);
    if (!t) return tl::unexpected(t.error());
    if (auto v = verify_signature(*t, ks); !v) return v;
    return check_claims(*t, r);
}

Result<void> check(const Json& claims, const ClaimRules& r = rules()) {
    Token t;
    t.claims = claims;
    return check_claims(t, r);
}

int setup_keys(void**) {
    keys = new Keys;
    keys->rsa = keygen("RSA", nullptr, 2048);
    keys->rsa_b = keygen("RSA", nullptr, 2048);
    keys->rsa1024 = keygen("RSA", nullptr, 1024);
    keys->p256 = keygen("EC", "P-256");
    keys->p384 = keygen("EC", "P-384");
    keys->p521 = keygen("EC", "P-521");
    keys->ed25519 = keygen("ED25519");
    keys->ed448 = keygen("ED448");
    return 0;
}

int teardown_keys(void**) {
    delete keys;
    keys = nullptr;
    return 0;
}

// ---- base64url ----

void test_base64url(void**) {
    // RFC 4648 §10 vectors without padding, and the two url-safe characters.
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (auto [plain, encoded] : vectors) {
        assert_string_equal(base64url_encode(plain).c_str(), encoded);
        std::string out = "junk";
        assert_true(base64url_decode(encoded, out));
        assert_string_equal(out.c_str(), plain);
    }
    for (const char* bad : {"Zg==", "Zm8=", "+_8", "-/8", "Zm9 v", "Zm9v\n", " Zm9v", "Zm9v\t", "Z",
                            "Zm9vY", "Zh", "Zm9", "Zm9v\x80"}) {
        std::string out = "untouched";
        assert_false(base64url_decode(bad, out));
        assert_string_equal(out.c_str(), "untouched");  // out-parameter kept on failure
    }
    std::string out = "untouched";
    assert_false(base64url_decode(std::string_view("Zm\0v", 4), out));
    assert_string_equal(out.c_str(), "untouched");
    // Every byte value round-trips.
    std::string all;
    for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
    assert_true(base64url_decode(base64url_encode(all), out));
    assert_true(out == all);
}

// ---- valid tokens ----

void test_valid_algorithms(void**) {
    const KeySet ks = parse_ok(full_jwks());
    assert_int_equal(ks.size(), 7);
    const struct {
        const char* alg;
        const char* kid;
        EVP_PKEY* key;
    } cases[] = {
        {"RS256", "rsa", keys->rsa.get()},     {"RS384", "rsa", keys->rsa.get()},
        {"RS512", "rsa", keys->rsa.get()},     {"PS256", "rsa", keys->rsa.get()},
        {"PS384", "rsa", keys->rsa.get()},     {"PS512", "rsa", keys->rsa.get()},
        {"ES256", "p256", keys->p256.get()},   {"ES384", "p384", keys->p384.get()},
        {"ES512", "p521", keys->p521.get()},   {"EdDSA", "ed25519", keys->ed25519.get()},
        {"EdDSA", "ed448", keys->ed448.get()},
    };
    for (const auto& c : cases) {
        const std::string tok = token_for(c.alg, c.kid, c.key);
        assert_true(looks_like_jwt(tok));
        auto t = decode(tok);
        expect_ok(t);
        assert_string_equal(t->alg.c_str(), c.alg);
        assert_string_equal(t->kid.c_str(), c.kid);
        assert_string_equal(t->claims["preferred_username"].get<std::string>().c_str(), "alice");
        assert_true(t->signing_input == tok.substr(0, tok.rfind('.')));
        expect_ok(verify_signature(*t, ks));
        expect_ok(check_claims(*t, rules()));
        // Signed by the wrong key of the right type: refused.
        if (std::string(c.kid) == "rsa") {
            const std::string other = token_for(c.alg, "rsa", keys->rsa_b.get());
            expect_failure(validate(other, ks), Failure::bad_signature);
        }
    }
}

void test_typ_values(void**) {
    const KeySet ks = parse_ok(full_jwks());
    for (const char* typ : {"JWT", "jwt", "at+jwt", "at+JWT", "application/jwt", "Application/JWT",
                            "application/at+jwt"}) {
        const std::string tok = make_token(Json{{"alg", "ES256"}, {"kid", "p256"}, {"typ", typ}},
                                           claims_base(), keys->p256.get());
        expect_ok(validate(tok, ks));
    }
    // No typ at all is fine too (Okta's ID tokens).
    expect_ok(validate(
        make_token(Json{{"alg", "ES256"}, {"kid", "p256"}}, claims_base(), keys->p256.get()), ks));
    for (Json typ : {Json("dpop+jwt"), Json("logout+jwt"), Json("JOSE+JSON"), Json(""), Json(1),
                     Json::array({"JWT"})}) {
        const std::string tok = make_token(Json{{"alg", "ES256"}, {"kid", "p256"}, {"typ", typ}},
                                           claims_base(), keys->p256.get());
        expect_failure(decode(tok), Failure::malformed);
    }
}

void test_kid_selection(void**) {
    // One key, token without kid: that key.
    const KeySet one = parse_ok(jwks_text({rsa_jwk(keys->rsa.get(), "only")}));
    assert_non_null(one.find(""));
    assert_non_null(one.find("only"));
    assert_null(one.find("other"));
    expect_ok(validate(make_token(Json{{"alg", "RS256"}}, claims_base(), keys->rsa.get()), one));

    // Several keys, token without kid: the one key that fits the algorithm, else refused.
    const KeySet ks = parse_ok(full_jwks());
    assert_null(ks.find(""));
    assert_non_null(ks.find("p384"));
    expect_ok(validate(make_token(Json{{"alg", "ES256"}}, claims_base(), keys->p256.get()), ks));
    expect_failure(validate(make_token(Json{{"alg", "RS256"}}, claims_base(), keys->rsa.get()), ks),
                   Failure::unknown_key);  // two RSA keys: ambiguous

    // Unknown kid: unknown_key (the caller refreshes the JWKS once).
    expect_failure(validate(token_for("RS256", "rotated-away", keys->rsa.get()), ks),
                   Failure::unknown_key);
    // A kid given but the JWKS's keys have none: no match.
    Json anon = rsa_jwk(keys->rsa.get(), "x");
    anon.erase("kid");
    const KeySet anon_ks = parse_ok(jwks_text({anon}));
    expect_failure(validate(token_for("RS256", "some-kid", keys->rsa.get()), anon_ks),
                   Failure::unknown_key);
    expect_ok(
        validate(make_token(Json{{"alg", "RS256"}}, claims_base(), keys->rsa.get()), anon_ks));

    // Two keys sharing a kid (one RSA, one EC): each algorithm finds its own.
    const KeySet shared = parse_ok(
        jwks_text({rsa_jwk(keys->rsa.get(), "k1"), ec_jwk(keys->p256.get(), "P-256", "k1")}));
    expect_ok(validate(token_for("RS256", "k1", keys->rsa.get()), shared));
    expect_ok(validate(token_for("ES256", "k1", keys->p256.get()), shared));
    expect_failure(validate(token_for("ES384", "k1", keys->p384.get()), shared),
                   Failure::bad_algorithm);
}

// ---- claims ----

void test_expiry(void**) {
    const KeySet ks = parse_ok(full_jwks());
    Json c = claims_base();
    c["exp"] = kNow - 30;
    const std::string tok = token_for("RS256", "rsa", keys->rsa.get(), c);
    expect_ok(validate(tok, ks));                    // 30 s past exp, within the 60 s leeway
    expect_ok(validate(tok, ks, rules(kNow + 29)));  // 59 s past exp
    expect_failure(validate(tok, ks, rules(kNow + 30)), Failure::expired);  // 60 s past exp
    auto strict = rules();
    strict.leeway = 0;
    expect_failure(validate(tok, ks, strict), Failure::expired);
    // Boundaries: valid while now < exp + leeway.
    expect_ok(check(c, rules(kNow - 30 + 59)));
    expect_failure(check(c, rules(kNow - 30 + 60)), Failure::expired);
    // A negative leeway counts as none.
    auto negative = rules(kNow - 31);
    negative.leeway = -1000;
    Json no_iat = c;
    no_iat.erase("iat");
    expect_ok(check(no_iat, negative));
    negative.now = kNow - 30;
    expect_failure(check(no_iat, negative), Failure::expired);
    // Non-integer NumericDate (RFC 7519 §2) and huge values.
    c["exp"] = static_cast<double>(kNow) + 0.5;
    strict.now = kNow;
    expect_ok(check(c, strict));
    strict.now = kNow + 1;
    expect_failure(check(c, strict), Failure::expired);
    c["exp"] = 1e300;
    expect_ok(check(c));
    c["exp"] = std::numeric_limits<std::uint64_t>::max();
    expect_ok(check(c));
    c["exp"] = -1e300;
    expect_failure(check(c), Failure::expired);
    // Missing exp: refused; exp of the wrong type: malformed.
    c.erase("exp");
    expect_failure(check(c), Failure::expired);
    expect_failure(validate(token_for("RS256", "rsa", keys->rsa.get(), c), ks), Failure::expired);
    for (Json bad : {Json("1700000300"), Json(true), Json(nullptr), Json::array({kNow + 300})}) {
        c["exp"] = bad;
        expect_failure(check(c), Failure::malformed);
    }
}

void test_not_before_and_issued_at(void**) {
    Json c = claims_base();
    c["nbf"] = kNow + 30;
    expect_ok(check(c));  // within leeway
    c["nbf"] = kNow + 60;
    expect_ok(check(c));  // exactly at the edge
    c["nbf"] = kNow + 61;
    expect_failure(check(c), Failure::not_yet_valid);
    c["nbf"] = "soon";
    expect_failure(check(c), Failure::malformed);
    c.erase("nbf");

    c["iat"] = kNow + 60;
    expect_ok(check(c));
    c["iat"] = kNow + 61;
    expect_failure(check(c), Failure::not_yet_valid);
    c["iat"] = kNow + 3600;
    expect_failure(check(c), Failure::not_yet_valid);
    c["iat"] = false;
    expect_failure(check(c), Failure::malformed);
    c.erase("iat");
    expect_ok(check(c));  // iat is optional

    // Through the whole pipeline, signed.
    const KeySet ks = parse_ok(full_jwks());
    c["nbf"] = kNow + 600;
    c["exp"] = kNow + 900;
    expect_failure(validate(token_for("ES256", "p256", keys->p256.get(), c), ks),
                   Failure::not_yet_valid);
    expect_ok(validate(token_for("ES256", "p256", keys->p256.get(), c), ks, rules(kNow + 600)));
}

void test_issuer(void**) {
    Json c = claims_base();
    for (const char* iss :
         {"https://idp.example.com/realms/cvat/", "https://IDP.example.com/realms/cvat",
          "https://idp.example.com/realms/cvat2", "http://idp.example.com/realms/cvat", ""}) {
        c["iss"] = iss;
        expect_failure(check(c), Failure::wrong_issuer);
    }
    c["iss"] = Json::array({kIssuer});
    expect_failure(check(c), Failure::malformed);
    c.erase("iss");
    expect_failure(check(c), Failure::missing_claim);
    // No issuer configured: nothing matches.
    auto r = rules();
    r.issuer.clear();
    expect_failure(check(claims_base(), r), Failure::wrong_issuer);
    Json empty_iss = claims_base();
    empty_iss["iss"] = "";
    expect_failure(check(empty_iss, r), Failure::wrong_issuer);  // "" never matches ""
    // The detail names both issuers, for the admin.
    c["iss"] = "https://evil.example.net";
    auto res = check(c);
    assert_false(res.has_value());
    assert_non_null(std::strstr(res.error().detail.c_str(), "evil.example.net"));
    assert_non_null(std::strstr(res.error().detail.c_str(), kIssuer.c_str()));
}

void test_audience(void**) {
    Json c = claims_base();
    c["aud"] = "other-client";
    expect_failure(check(c), Failure::wrong_audience);
    c["aud"] = Json::array({"other-client", "account"});
    expect_failure(check(c), Failure::wrong_audience);
    c["aud"] = Json::array();
    expect_failure(check(c), Failure::wrong_audience);
    c["aud"] = Json::array({kClient});
    expect_ok(check(c));
    c["aud"] = "CVAT";  // exact, case-sensitive
    expect_failure(check(c), Failure::wrong_audience);
    c["aud"] = 42;
    expect_failure(check(c), Failure::malformed);
    c["aud"] = Json::array({kClient, 42});
    expect_failure(check(c), Failure::malformed);
    c.erase("aud");
    expect_failure(check(c), Failure::missing_claim);
    auto r = rules();
    r.client_id.clear();
    expect_failure(check(claims_base(), r), Failure::wrong_audience);
    Json empty_aud = claims_base();
    empty_aud["aud"] = "";
    expect_failure(check(empty_aud, r), Failure::wrong_audience);  // "" never matches ""
}

void test_authorized_party(void**) {
    Json c = claims_base();
    // Several audiences: azp required and equal to the client id.
    c["aud"] = Json::array({kClient, "account"});
    expect_failure(check(c), Failure::wrong_audience);
    c["azp"] = "account";
    expect_failure(check(c), Failure::wrong_audience);
    c["azp"] = kClient;
    expect_ok(check(c));
    c["azp"] = 7;
    expect_failure(check(c), Failure::malformed);
    // One audience: azp optional, but if present it must be the client id.
    c["aud"] = kClient;
    c.erase("azp");
    expect_ok(check(c));
    c["azp"] = "other-client";
    expect_failure(check(c), Failure::wrong_audience);
    c["azp"] = kClient;
    expect_ok(check(c));
    // The same audience twice is one audience.
    c.erase("azp");
    c["aud"] = Json::array({kClient, kClient});
    expect_ok(check(c));
    // Signed, through the pipeline.
    const KeySet ks = parse_ok(full_jwks());
    c["aud"] = Json::array({kClient, "account"});
    expect_failure(validate(token_for("PS256", "rsa", keys->rsa.get(), c), ks),
                   Failure::wrong_audience);
}

void test_sub_type(void**) {
    Json c = claims_base();
    c["sub"] = 12345;
    expect_failure(check(c), Failure::malformed);
    c.erase("sub");
    expect_ok(check(c));
}

// ---- algorithm attacks (RFC 8725 §2.1, §3.1) ----

std::string with_signature(const Json& header, const Json& claims, const std::string& sig) {
    return input_of(header, claims) + "." + base64url_encode(sig);
}

void test_alg_none(void**) {
    const KeySet ks = parse_ok(full_jwks());
    const std::vector<std::string> everything = {"none", "None", "NONE", "HS256", "RS256"};
    for (const char* alg : {"none", "None", "NONE", "nOnE"}) {
        for (const std::string& sig : {std::string(), std::string("garbage-signature")}) {
            for (const Json& header : {Json{{"alg", alg}}, Json{{"alg", alg}, {"kid", "rsa"}}}) {
                const std::string tok = with_signature(header, claims_base(), sig);
                auto t = decode(tok);
                expect_ok(t);  // well-formed; refused for its algorithm
                expect_failure(verify_signature(*t, ks), Failure::bad_algorithm);
                // Even when the caller's list (wrongly) names it.
                expect_failure(verify_signature(*t, ks, everything), Failure::bad_algorithm);
            }
        }
    }
    // Empty alg, and an alg of the wrong type, are malformed.
    expect_failure(decode(with_signature(Json{{"alg", ""}}, claims_base(), "")),
                   Failure::malformed);
    expect_failure(decode(with_signature(Json{{"alg", nullptr}}, claims_base(), "")),
                   Failure::malformed);
    expect_failure(decode(with_signature(Json{{"typ", "JWT"}}, claims_base(), "x")),
                   Failure::malformed);
}

std::string hmac256(const std::string& secret, const std::string& input) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    assert_non_null(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                         reinterpret_cast<const unsigned char*>(input.data()), input.size(), out,
                         &len));
    return std::string(reinterpret_cast<char*>(out), len);
}

void test_hmac_with_public_key(void**) {
    EVP_PKEY* k = keys->rsa.get();
    BioPtr bio(BIO_new(BIO_s_mem()));
    assert_int_equal(PEM_write_bio_PUBKEY(bio.get(), k), 1);
    char* pem_data = nullptr;
    const long pem_len = BIO_get_mem_data(bio.get(), &pem_data);
    const std::string pem(pem_data, static_cast<std::size_t>(pem_len));
    unsigned char* der_data = nullptr;
    const int der_len = i2d_PUBKEY(k, &der_data);
    assert_true(der_len > 0);
    const std::string der(reinterpret_cast<char*>(der_data), static_cast<std::size_t>(der_len));
    OPENSSL_free(der_data);
    const std::string jwk = rsa_jwk(k, "rsa").dump();

    const KeySet ks = parse_ok(full_jwks());
    // The JWKS also offers the public key as an "oct" secret: skipped at parse time.
    const KeySet with_oct = parse_ok(jwks_text(
        {rsa_jwk(k, "rsa"),
         Json{
             {"kty", "oct"}, {"kid", "rsa-oct"}, {"k", base64url_encode(pem)}, {"alg", "HS256"}}}));
    assert_int_equal(with_oct.size(), 1);
    assert_null(with_oct.find("rsa-oct"));
    assert_int_equal(with_oct.skipped().size(), 1);

    for (const std::string& secret : {pem, der, jwk}) {
        for (const char* alg : {"HS256", "HS384", "HS512"}) {
            for (const char* kid : {"rsa", "rsa-oct"}) {
                const Json header = {{"alg", alg}, {"kid", kid}};
                const std::string input = input_of(header, claims_base());
                const std::string tok = input + "." + base64url_encode(hmac256(secret, input));
                auto t = decode(tok);
                expect_ok(t);
                expect_failure(verify_signature(*t, ks), Failure::bad_algorithm);
                expect_failure(verify_signature(*t, with_oct), Failure::bad_algorithm);
                expect_failure(verify_signature(*t, ks, {alg}), Failure::bad_algorithm);
            }
        }
    }
    // A JWKS of only secrets has no usable key.
    expect_failure(KeySet::parse(jwks_text({Json{{"kty", "oct"}, {"k", "c2VjcmV0"}}})),
                   Failure::unknown_key);
}

void test_algorithm_key_mismatch(void**) {
    const KeySet ks = parse_ok(full_jwks());
    // RS256 naming an EC key (signed with the RSA key, to make the signature plausible).
    expect_failure(validate(token_for("RS256", "p256", keys->rsa.get()), ks),
                   Failure::bad_algorithm);
    // ES256 whose kid names a P-384 key (even with a correct P-384 signature over SHA-256).
    {
        const Json header = {{"alg", "ES256"}, {"kid", "p384"}};
        const std::string input = input_of(header, claims_base());
        std::string sig = sign("ES256", keys->p384.get(), input);
        assert_int_equal(sig.size(), 96);
        expect_failure(validate(input + "." + base64url_encode(sig), ks), Failure::bad_algorithm);
    }
    expect_failure(validate(token_for("ES384", "p256", keys->p256.get()), ks),
                   Failure::bad_algorithm);
    expect_failure(validate(token_for("ES512", "p384", keys->p384.get()), ks),
                   Failure::bad_algorithm);
    // EdDSA naming an RSA key; PS256 naming an OKP key.
    expect_failure(validate(token_for("EdDSA", "rsa", keys->ed25519.get()), ks),
                   Failure::bad_algorithm);
    expect_failure(validate(token_for("PS256", "ed25519", keys->rsa.get()), ks),
                   Failure::bad_algorithm);

    // A JWK that names RS512 verifies RS512 only.
    Json j = rsa_jwk(keys->rsa.get(), "rs512-only");
    j["alg"] = "RS512";
    const KeySet pinned = parse_ok(jwks_text({j}));
    expect_failure(validate(token_for("RS256", "rs512-only", keys->rsa.get()), pinned),
                   Failure::bad_algorithm);
    expect_failure(validate(token_for("PS512", "rs512-only", keys->rsa.get()), pinned),
                   Failure::bad_algorithm);
    expect_ok(validate(token_for("RS512", "rs512-only", keys->rsa.get()), pinned));

    // Algorithms off the allow-list, and the caller's narrower list.
    for (const char* alg : {"ES256K", "RS1", "PS256 ", "rs256", "Ed25519", "ES256\x01"}) {
        const std::string tok =
            with_signature(Json{{"alg", alg}, {"kid", "rsa"}}, claims_base(), "xxxx");
        auto t = decode(tok);
        expect_ok(t);
        expect_failure(verify_signature(*t, ks), Failure::bad_algorithm);
    }
    const std::string rs = token_for("RS256", "rsa", keys->rsa.get());
    auto t = decode(rs);
    expect_ok(t);
    expect_ok(verify_signature(*t, ks, {"RS256"}));
    expect_failure(verify_signature(*t, ks, {"ES256", "PS256"}), Failure::bad_algorithm);
    expect_failure(verify_signature(*t, ks, {}), Failure::bad_algorithm);
    // RFC 8725 §3.10: keys offered by the token itself (jwk, jku, x5u) are never used.
    {
        const PkeyPtr attacker = keygen("EC", "P-256");
        const Json header = {{"alg", "ES256"},
                             {"kid", "p256"},
                             {"jwk", ec_jwk(attacker.get(), "P-256", "p256")},
                             {"jku", "https://evil.example.net/jwks"}};
        expect_failure(validate(make_token(header, claims_base(), attacker.get()), ks),
                       Failure::bad_signature);
        Json anon = header;
        anon.erase("kid");
        const KeySet one = parse_ok(jwks_text({ec_jwk(keys->p256.get(), "P-256", "p256")}));
        expect_failure(validate(make_token(anon, claims_base(), attacker.get()), one),
                       Failure::bad_signature);
    }
    // The algorithm is judged before the kid: an HMAC with an unknown kid is bad_algorithm.
    auto h = decode(with_signature(Json{{"alg", "HS256"}, {"kid", "nope"}}, claims_base(), "x"));
    expect_ok(h);
    expect_failure(verify_signature(*h, ks), Failure::bad_algorithm);
}

// ---- signatures ----

std::string replace_part(const std::string& tok, int index, const std::string& part) {
    const auto d1 = tok.find('.'), d2 = tok.find('.', d1 + 1);
    std::string p[3] = {tok.substr(0, d1), tok.substr(d1 + 1, d2 - d1 - 1), tok.substr(d2 + 1)};
    p[index] = part;
    return p[0] + "." + p[1] + "." + p[2];
}

std::string signature_of(const std::string& tok) {
    std::string sig;
    assert_true(base64url_decode(tok.substr(tok.rfind('.') + 1), sig));
    return sig;
}

void test_tampering(void**) {
    const KeySet ks = parse_ok(full_jwks());
    const struct {
        const char* alg;
        const char* kid;
        EVP_PKEY* key;
    } cases[] = {{"RS256", "rsa", keys->rsa.get()},         {"PS384", "rsa", keys->rsa.get()},
                 {"ES256", "p256", keys->p256.get()},       {"ES512", "p521", keys->p521.get()},
                 {"EdDSA", "ed25519", keys->ed25519.get()}, {"EdDSA", "ed448", keys->ed448.get()}};
    for (const auto& c : cases) {
        const std::string tok = token_for(c.alg, c.kid, c.key);
        expect_ok(validate(tok, ks));
        // Payload changed (alice → admin), signature kept.
        Json evil = claims_base();
        evil["preferred_username"] = "admin";
        expect_failure(validate(replace_part(tok, 1, base64url_encode(evil.dump())), ks),
                       Failure::bad_signature);
        // Header changed (a harmless extra member), signature kept.
        expect_failure(
            validate(replace_part(
                         tok, 0,
                         base64url_encode(Json{{"alg", c.alg}, {"kid", c.kid}, {"x", 1}}.dump())),
                     ks),
            Failure::bad_signature);
        const std::string sig = signature_of(tok);
        // One bit flipped.
        std::string flipped = sig;
        flipped[flipped.size() / 2] ^= 0x01;
        expect_failure(validate(replace_part(tok, 2, base64url_encode(flipped)), ks),
                       Failure::bad_signature);
        // Truncated, extended, empty, all zero.
        expect_failure(
            validate(replace_part(tok, 2, base64url_encode(sig.substr(0, sig.size() - 1))), ks),
            Failure::bad_signature);
        expect_failure(validate(replace_part(tok, 2, base64url_encode(sig + '\0')), ks),
                       Failure::bad_signature);
        expect_failure(validate(replace_part(tok, 2, ""), ks), Failure::bad_signature);
        expect_failure(
            validate(replace_part(tok, 2, base64url_encode(std::string(sig.size(), '\0'))), ks),
            Failure::bad_signature);
        // Detail never carries the signature or the payload.
        auto r = validate(replace_part(tok, 2, base64url_encode(flipped)), ks);
        assert_false(r.has_value());
        assert_null(std::strstr(r.error().detail.c_str(), base64url_encode(flipped).c_str()));
        assert_null(std::strstr(r.error().detail.c_str(), "alice"));
    }
    // ECDSA: R || S with R = S = 0 ("psychic signatures", CVE-2022-21449), and the DER form
    // that OpenSSL would take but JWS does not.
    const std::string es = token_for("ES256", "p256", keys->p256.get());
    expect_failure(validate(replace_part(es, 2, base64url_encode(std::string(64, '\0'))), ks),
                   Failure::bad_signature);
    const Json header = {{"alg", "ES256"}, {"kid", "p256"}};
    const std::string input = input_of(header, claims_base());
    MdCtxPtr ctx(EVP_MD_CTX_new());
    assert_int_equal(
        EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, keys->p256.get()), 1);
    std::size_t len = 0;
    assert_int_equal(
        EVP_DigestSign(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()),
        1);
    std::string der(len, '\0');
    assert_int_equal(
        EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()),
        1);
    der.resize(len);
    expect_failure(validate(input + "." + base64url_encode(der), ks), Failure::bad_signature);
    // PS256 verified as RS256 (same key, same hash, other padding) and the reverse.
    const std::string ps = token_for("PS256", "rsa", keys->rsa.get());
    const std::string rs_header = base64url_encode(Json{{"alg", "RS256"}, {"kid", "rsa"}}.dump());
    expect_failure(validate(replace_part(ps, 0, rs_header), ks), Failure::bad_signature);
}

// ---- structure ----

void test_malformed(void**) {
    const KeySet ks = parse_ok(full_jwks());
    const std::string tok = token_for("RS256", "rsa", keys->rsa.get());
    expect_ok(decode(tok));
    const auto d1 = tok.find('.'), d2 = tok.find('.', d1 + 1);
    const std::string h = tok.substr(0, d1), p = tok.substr(d1 + 1, d2 - d1 - 1),
                      s = tok.substr(d2 + 1);
    const std::vector<std::string> bad = {
        h + "=." + p + "." + s,        // padding
        h + "." + p + "==." + s,       // padding
        h + "." + p + "." + s + "=",   // padding
        h + "." + p + "." + s + "==",  // padding
        "+" + h.substr(1) + "." + p + "." + s,
        h + "." + p.substr(0, 4) + "/" + p.substr(5) + "." + s,
        h + "." + p + "." + s.substr(0, 4) + "+" + s.substr(5),
        h + " ." + p + "." + s,  // whitespace
        h + ".\n" + p + "." + s,
        h + "." + p + "." + s + "\n",
        " " + tok,
        h + "." + p,                      // 2 parts
        h + "." + p + ".",                // 3 parts, but ...
        h + "." + p + "." + s + ".",      // 4 parts
        h + "." + p + "." + s + "." + s,  // 4 parts
        h + "." + p + "." + s + "..",     // 5 parts (a JWE's shape)
        "." + p + "." + s,                // empty header
        h + ".." + s,                     // empty payload
        "",
        "..",
        tok + std::string("\0", 1),
    };
    for (std::size_t i = 0; i < bad.size(); ++i) {
        auto r = decode(bad[i]);
        if (i == 12) {  // "h.p." is a token with an empty signature: decodes, then fails to verify
            expect_ok(r);
            expect_failure(verify_signature(*r, ks), Failure::bad_signature);
            continue;
        }
        if (r) {
            print_error("case %zu accepted\n", i);
            cmocka_fail();
        }
        assert_string_equal(failure_name(r.error().failure), "malformed");
    }
    // Non-object JSON header or payload, invalid JSON, invalid UTF-8.
    for (const std::string& text :
         {std::string("[]"), std::string("\"RS256\""), std::string("42"), std::string("null"),
          std::string("{\"alg\":\"RS256\""), std::string("{\"alg\":\"RS256\"}x"),
          std::string("{\"alg\":\"RS\xff\"}"), std::string("")}) {
        expect_failure(decode(base64url_encode(text) + "." + p + "." + s), Failure::malformed);
        expect_failure(decode(h + "." + base64url_encode(text) + "." + s), Failure::malformed);
    }
    // Header members we refuse.
    for (const Json& header :
         {Json{{"alg", "RS256"}, {"kid", "rsa"}, {"crit", Json::array({"exp"})}, {"exp", 1}},
          Json{{"alg", "RS256"}, {"crit", Json::array()}}, Json{{"alg", "RS256"}, {"kid", 17}},
          Json{{"alg", "RS256"}, {"enc", "A128GCM"}}, Json{{"alg", "RS256"}, {"cty", "JWT"}},
          Json{{"alg", "RS256"}, {"cty", 1}}, Json{{"alg", Json::array({"RS256"})}}}) {
        const std::string t = make_token(
            header.contains("alg") && header["alg"].is_string() ? header : Json{{"alg", "RS256"}},
            claims_base(), keys->rsa.get());
        // Sign with a valid header, then swap in the refused one: decode must refuse it first.
        expect_failure(decode(replace_part(t, 0, base64url_encode(header.dump()))),
                       Failure::malformed);
    }
    // Deeply nested JSON is refused before anything recursive touches it.
    std::string nest(40, '[');
    nest += std::string(40, ']');
    const std::string deep_payload = base64url_encode(R"({"iss":"x","deep":)" + nest + "}");
    expect_failure(decode(h + "." + deep_payload + "." + s), Failure::malformed);
    // ... but brackets inside strings do not count.
    Json brackety = claims_base();
    brackety["name"] = std::string(100, '[');
    expect_ok(validate(token_for("RS256", "rsa", keys->rsa.get(), brackety), ks));
}

void test_size_caps(void**) {
    const KeySet ks = parse_ok(full_jwks());
    // A token of exactly kMaxToken bytes is taken; one byte more is not.
    std::string at_cap;
    for (std::size_t pad = 11000; pad < 13000 && at_cap.empty(); ++pad) {
        Json c = claims_base();
        c["pad"] = std::string(pad, 'p');
        std::string t = token_for("ES256", "p256", keys->p256.get(), c);
        if (t.size() == kMaxToken) at_cap = t;
        if (t.size() > kMaxToken) break;
    }
    assert_int_equal(at_cap.size(), kMaxToken);
    expect_ok(validate(at_cap, ks));
    Json c = claims_base();
    c["pad"] = std::string(kMaxToken, 'p');
    const std::string big = token_for("ES256", "p256", keys->p256.get(), c);
    expect_failure(decode(big), Failure::too_large);
    expect_failure(decode(at_cap + "A"), Failure::too_large);
    assert_false(looks_like_jwt(big));

    // JWKS: over 256 KiB, over 64 keys.
    const Json ec = ec_jwk(keys->p256.get(), "P-256", "k");
    std::vector<Json> members;
    for (std::size_t i = 0; i < kMaxKeys; ++i) {
        Json m = ec;
        m["kid"] = "k" + std::to_string(i);
        members.push_back(m);
    }
    const KeySet full = parse_ok(jwks_text(members));
    assert_int_equal(full.size(), kMaxKeys);
    expect_ok(validate(token_for("ES256", "k63", keys->p256.get()), full));
    members.push_back(ec);
    expect_failure(KeySet::parse(jwks_text(members)), Failure::too_large);
    Json padded = {{"keys", Json::array({ec})}, {"pad", std::string(kMaxJwks, ' ')}};
    expect_failure(KeySet::parse(padded.dump()), Failure::too_large);
    std::string spaces = jwks_text({ec});
    spaces.append(kMaxJwks - spaces.size(), ' ');
    expect_ok(KeySet::parse(spaces));  // exactly at the cap
    spaces.push_back(' ');
    expect_failure(KeySet::parse(spaces), Failure::too_large);
}

// ---- JWKS ----

void test_jwks_skips(void**) {
    const Json good = ec_jwk(keys->p256.get(), "P-256", "good");
    // RSA under 2048 bits.
    const KeySet small = parse_ok(jwks_text({rsa_jwk(keys->rsa1024.get(), "weak"), good}));
    assert_int_equal(small.size(), 1);
    assert_null(small.find("weak"));
    assert_int_equal(small.skipped().size(), 1);
    assert_non_null(std::strstr(small.skipped()[0].c_str(), "1024"));
    assert_non_null(std::strstr(small.skipped()[0].c_str(), "weak"));
    expect_failure(validate(token_for("RS256", "weak", keys->rsa1024.get()), small),
                   Failure::unknown_key);
    expect_failure(KeySet::parse(jwks_text({rsa_jwk(keys->rsa1024.get(), "weak")})),
                   Failure::unknown_key);

    auto skipped_alone = [&](const Json& member) {
        const KeySet ks = parse_ok(jwks_text({member, good}));
        const auto kid = member.contains("kid") && member["kid"].is_string()
                             ? member["kid"].get<std::string>()
                             : std::string("-");
        if (ks.size() != 1 || ks.find("good") == nullptr || ks.find(kid) != nullptr ||
            ks.skipped().size() != 1) {
            print_error("key not skipped: %s\n", member.dump().c_str());
            cmocka_fail();
        }
        expect_failure(KeySet::parse(jwks_text({member})), Failure::unknown_key);
    };
    Json m = rsa_jwk(keys->rsa.get(), "enc");
    m["use"] = "enc";
    skipped_alone(m);
    m = rsa_jwk(keys->rsa.get(), "ops");
    m.erase("use");
    m["key_ops"] = Json::array({"encrypt", "wrapKey"});
    skipped_alone(m);
    m["key_ops"] = "verify";
    skipped_alone(m);
    m = rsa_jwk(keys->rsa.get(), "oaep");
    m["alg"] = "RSA-OAEP";
    skipped_alone(m);
    m["alg"] = "HS256";
    skipped_alone(m);
    m["alg"] = "ES256";  // an RSA key claiming an EC algorithm
    skipped_alone(m);
    m = rsa_jwk(keys->rsa.get(), "no-e");
    m.erase("e");
    skipped_alone(m);
    m = rsa_jwk(keys->rsa.get(), "padded-n");
    m["n"] = m["n"].get<std::string>() + "=";
    skipped_alone(m);
    m = rsa_jwk(keys->rsa.get(), "even-e");
    m["e"] = base64url_encode(std::string("\x01\x00\x00", 3));
    skipped_alone(m);
    m = rsa_jwk(keys->rsa.get(), "kty-case");
    m["kty"] = "rsa";
    skipped_alone(m);
    m = rsa_jwk(keys->rsa.get(), "kid-type");
    m["kid"] = 5;
    skipped_alone(m);
    // EC: point off the curve, short coordinates, unknown curve, curve mismatch.
    m = ec_jwk(keys->p256.get(), "P-256", "off-curve");
    std::string y;
    assert_true(base64url_decode(m["y"].get<std::string>(), y));
    y[31] ^= 0x01;
    m["y"] = base64url_encode(y);
    skipped_alone(m);
    m = ec_jwk(keys->p256.get(), "P-256", "short");
    m["x"] = base64url_encode(std::string(31, '\x01'));
    skipped_alone(m);
    m = ec_jwk(keys->p256.get(), "P-256", "k1");
    m["crv"] = "secp256k1";
    skipped_alone(m);
    m = ec_jwk(keys->p256.get(), "P-256", "labelled-384");
    m["crv"] = "P-384";
    skipped_alone(m);
    m = ec_jwk(keys->p256.get(), "P-256", "no-crv");
    m.erase("crv");
    skipped_alone(m);
    // OKP: X25519 is for key agreement; wrong length.
    m = okp_jwk(keys->ed25519.get(), "Ed25519", "x25519");
    m["crv"] = "X25519";
    skipped_alone(m);
    m = okp_jwk(keys->ed25519.get(), "Ed25519", "short-okp");
    m["x"] = base64url_encode(std::string(31, 'x'));
    skipped_alone(m);
    // Unknown kty, not an object.
    skipped_alone(Json{{"kty", "oct"}, {"kid", "oct"}, {"k", "c2VjcmV0"}});
    skipped_alone(Json{{"kty", "PQC"}, {"kid", "pqc"}});
    const KeySet odd = parse_ok(jwks_text({Json("a string"), Json(17), good}));
    assert_int_equal(odd.size(), 1);
    assert_int_equal(odd.skipped().size(), 2);

    // use=sig, key_ops with verify, and an alg that fits are all fine.
    m = rsa_jwk(keys->rsa.get(), "fine");
    m["key_ops"] = Json::array({"verify"});
    m["alg"] = "PS256";
    m["x5c"] = Json::array({"ignored"});
    const KeySet fine = parse_ok(jwks_text({m}));
    assert_int_equal(fine.size(), 1);
    assert_string_equal(fine.find("fine")->alg.c_str(), "PS256");
    assert_string_equal(fine.find("fine")->kty.c_str(), "RSA");
    expect_ok(validate(token_for("PS256", "fine", keys->rsa.get()), fine));

    // A misconfigured IdP that publishes the private part: the public part is used.
    m = ec_jwk(keys->p384.get(), "P-384", "leaky");
    m["d"] = base64url_encode(bn_bytes(keys->p384.get(), OSSL_PKEY_PARAM_PRIV_KEY, 48));
    const KeySet leaky = parse_ok(jwks_text({m}));
    assert_int_equal(leaky.size(), 1);
    assert_int_equal(EVP_PKEY_get_bits(leaky.find("leaky")->key.get()), 384);
    expect_ok(validate(token_for("ES384", "leaky", keys->p384.get()), leaky));
    // The key held is public only.
    BIGNUM* d = nullptr;
    assert_int_not_equal(
        EVP_PKEY_get_bn_param(leaky.find("leaky")->key.get(), OSSL_PKEY_PARAM_PRIV_KEY, &d), 1);
    BN_free(d);
}

void test_jwks_documents(void**) {
    for (const char* doc : {"", "[]", "{}", "{\"keys\":{}}", "{\"keys\":\"x\"}", "not json",
                            "{\"keys\":[]", "null", "{\"keys\":[{\"kty\":\"RSA\"}]}x"})
        expect_failure(KeySet::parse(doc), Failure::malformed);
    expect_failure(KeySet::parse("{\"keys\":[]}"), Failure::unknown_key);
    // Real-world shape: Keycloak publishes a signing key and an encryption key.
    Json enc = rsa_jwk(keys->rsa_b.get(), "enc-key");
    enc["use"] = "enc";
    enc["alg"] = "RSA-OAEP";
    Json sig = rsa_jwk(keys->rsa.get(), "sig-key");
    sig["alg"] = "RS256";
    const KeySet kc = parse_ok(jwks_text({enc, sig}));
    assert_int_equal(kc.size(), 1);
    expect_ok(validate(token_for("RS256", "sig-key", keys->rsa.get()), kc));
    expect_failure(validate(token_for("RS256", "enc-key", keys->rsa_b.get()), kc),
                   Failure::unknown_key);
}

// ---- claim_strings ----

void test_claim_strings(void**) {
    Json c = claims_base();
    c["realm_access"] = {{"roles", Json::array({"cvat-admin", 7, "offline_access", nullptr,
                                                Json::array({"nested"}), "uma_authorization"})}};
    c["resource_access"] = {{"cvat-client", {{"roles", Json::array({"annotator"})}}}};
    c["groups"] = "single";
    c["https://cvat.example.com/roles"] = Json::array({"worker"});
    c["number"] = 5;
    c["obj"] = {{"a", 1}};
    c["a.b"] = "dotted top-level";

    auto v = claim_strings(c, "realm_access.roles");
    assert_int_equal(v.size(), 3);
    assert_string_equal(v[0].c_str(), "cvat-admin");
    assert_string_equal(v[1].c_str(), "offline_access");
    assert_string_equal(v[2].c_str(), "uma_authorization");
    v = claim_strings(c, "resource_access.cvat-client.roles");
    assert_int_equal(v.size(), 1);
    assert_string_equal(v[0].c_str(), "annotator");
    v = claim_strings(c, "groups");
    assert_int_equal(v.size(), 1);
    assert_string_equal(v[0].c_str(), "single");
    v = claim_strings(c, "https://cvat.example.com/roles");
    assert_int_equal(v.size(), 1);
    assert_string_equal(v[0].c_str(), "worker");
    v = claim_strings(c, "a.b");
    assert_int_equal(v.size(), 1);
    assert_string_equal(v[0].c_str(), "dotted top-level");
    for (const char* path : {"missing", "realm_access.missing", "realm_access", "number", "obj",
                             "groups.x", "realm_access.roles.x", "", ".", "realm_access.",
                             ".realm_access", "realm_access..roles", "obj.a"})
        assert_int_equal(claim_strings(c, path).size(), 0);
    assert_int_equal(claim_strings(Json::array({"x"}), "x").size(), 0);
    assert_int_equal(claim_strings(Json("x"), "x").size(), 0);
    // Bounded.
    Json many = Json::array();
    for (int i = 0; i < 2000; ++i) many.push_back("g" + std::to_string(i));
    c["many"] = many;
    v = claim_strings(c, "many");
    assert_int_equal(v.size(), 1024);
    assert_string_equal(v[1023].c_str(), "g1023");
}

// ---- looks_like_jwt ----

void test_looks_like_jwt(void**) {
    for (const char* pw :
         {"hunter2", "a.b.c", "", "..", "correct.horse.battery", "eyJhbGciOiJSUzI1NiJ9..",
          "eyJhbGciOiJSUzI1NiJ9.e30", "eyJhbGciOiJSUzI1NiJ9.e30.x.y", "eyJhbGciOiJSUzI1NiJ9 .e30.",
          "eyJ0eXAiOiJKV1QifQ.e30.",  // header without alg
          "WyJhbGciXQ.e30.",          // header is an array
          "eyJhbGciOjF9.e30.",        // alg not a string
          "P@ssw0rd!.with.dots", "ZXlK.ZXlK.ZXlK"})
        assert_false(looks_like_jwt(pw));
    // A real token does, and so does the shape of an unsigned one (rejected later).
    const std::string tok = token_for("ES256", "p256", keys->p256.get());
    assert_true(looks_like_jwt(tok));
    assert_true(looks_like_jwt(base64url_encode(R"({"alg":"none"})") + ".e30."));
    // 10 KB passwords: no dots, dots in the wrong places, a base64url-only blob.
    const std::string plain(10 * 1024, 'a');
    std::string dotted = plain;
    dotted[100] = '.';
    dotted[200] = '.';
    std::string blob = "eyJ" + std::string(10 * 1024, 'A') + ".e30.";
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) {
        assert_false(looks_like_jwt(plain));
        assert_false(looks_like_jwt(dotted));
        assert_false(looks_like_jwt(blob));
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    // 3000 checks of 10 KB: well under a second even under ASan.
    assert_true(ms < 5000);
    // Every byte value as a one-character password.
    for (int i = 0; i < 256; ++i)
        assert_false(looks_like_jwt(std::string(1, static_cast<char>(i))));
}

void test_failure_names(void**) {
    const Failure all[] = {Failure::malformed,     Failure::too_large,     Failure::bad_algorithm,
                           Failure::unknown_key,   Failure::bad_signature, Failure::expired,
                           Failure::not_yet_valid, Failure::wrong_issuer,  Failure::wrong_audience,
                           Failure::missing_claim};
    for (std::size_t i = 0; i < std::size(all); ++i) {
        assert_string_not_equal(failure_name(all[i]), "unknown");
        for (std::size_t j = 0; j < i; ++j)
            assert_string_not_equal(failure_name(all[i]), failure_name(all[j]));
    }
    assert_string_equal(failure_name(Failure::unknown_key), "unknown_key");
    assert_int_equal(default_algorithms().size(), 10);
    for (const auto& a : default_algorithms()) {
        assert_false(a.starts_with("HS"));
        assert_string_not_equal(a.c_str(), "none");
    }
}

}  // namespace

int main() {
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_valid_algorithms),
        cmocka_unit_test(test_typ_values),
        cmocka_unit_test(test_kid_selection),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_not_before_and_issued_at),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_authorized_party),
        cmocka_unit_test(test_sub_type),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_hmac_with_public_key),
        cmocka_unit_test(test_algorithm_key_mismatch),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_size_caps),
        cmocka_unit_test(test_jwks_skips),
        cmocka_unit_test(test_jwks_documents),
        cmocka_unit_test(test_claim_strings),
        cmocka_unit_test(test_looks_like_jwt),
        cmocka_unit_test(test_failure_names),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
