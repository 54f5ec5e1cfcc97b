// SPDX-License-Identifier: GPL-3.0-or-later
// JWT/JWS/JWK checks for token login (DESIGN.md §2, §6.4). Every function stops exceptions
// at its boundary; every OpenSSL object lives in a unique_ptr; every OpenSSL result is checked.
#include "jwt.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <utility>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "log.hpp"

namespace cvat::helper::jwt {

namespace {

template <auto F>
struct Free {
    template <typename T>
    void operator()(T* p) const noexcept {
        F(p);
    }
};
using BnPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Free<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, Free<OSSL_PARAM_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free<EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Free<ECDSA_SIG_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// RSA moduli: under 2048 bits is too weak (RFC 7518 §3.3); over 8192 no IdP publishes, and
// the cap bounds the cost of one verification.
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;
// JSON nesting in a header, payload or JWKS; real documents nest 3-4 deep.
constexpr int kMaxJsonDepth = 32;
// claim_strings answers at most this many values.
constexpr std::size_t kMaxClaimValues = 1024;
// Outside strings quoted in error details (alg, kid, iss, aud) are cut to this many bytes.
constexpr std::size_t kMaxQuoted = 80;

tl::unexpected<Error> fail(Failure f, std::string detail) {
    ERR_clear_error();  // leave no OpenSSL errors behind for the next user of the thread
    return tl::unexpected<Error>(Error{f, std::move(detail)});
}

// An outside string for an error detail: printable, quoted, short.
std::string quote(std::string_view text) {
    return "\"" + log_safe(text.substr(0, kMaxQuoted)) +
           (text.size() > kMaxQuoted ? "...\"" : "\"");
}

// ---- base64url (RFC 7515 §2, RFC 4648 §5) ----

constexpr std::array<signed char, 256> make_b64url_table() {
    std::array<signed char, 256> t{};
    for (auto& v : t) v = -1;
    for (int i = 0; i < 26; ++i) t['A' + i] = static_cast<signed char>(i);
    for (int i = 0; i < 26; ++i) t['a' + i] = static_cast<signed char>(26 + i);
    for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<signed char>(52 + i);
    t['-'] = 62;
    t['_'] = 63;
    return t;
}
constexpr auto kB64url = make_b64url_table();

bool is_b64url_char(char c) noexcept {
    return kB64url[static_cast<unsigned char>(c)] >= 0;
}

// Strict: the url-safe alphabet only, no '=' padding, no whitespace, and the unused low bits of
// the last character zero, so each byte string has exactly one encoding.
bool b64url_decode_into(std::string_view text, std::string& out) {
    if (text.size() % 4 == 1) return false;
    out.clear();
    out.reserve(text.size() / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        const int v = kB64url[static_cast<unsigned char>(c)];
        if (v < 0) return false;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return (acc & ((1u << bits) - 1)) == 0;
}

// Deepest nesting of a JSON text, counted outside strings. Keeps recursive consumers of the
// parsed value (copy, dump) on a short stack.
int json_depth(std::string_view text) noexcept {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            deepest = std::max(deepest, ++depth);
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return deepest;
}

// A JSON object, or a discarded value. Never throws for bad input (allow_exceptions=false).
Json parse_object(std::string_view text) {
    if (json_depth(text) > kMaxJsonDepth) return Json(Json::value_t::discarded);
    Json j = Json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Json(Json::value_t::discarded);
    return j;
}

const std::string* string_member(const Json& obj, const char* name) {
    auto it = obj.find(name);
    if (it == obj.end() || !it->is_string()) return nullptr;
    return it->get_ptr<const std::string*>();
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
               return lower(x) == lower(y);
           });
}

// ---- algorithms (RFC 7518 §3, RFC 8037 §3.1) ----

enum class Family { rsa_pkcs1, rsa_pss, ecdsa, eddsa };
struct AlgSpec {
    std::string_view name;
    Family family;
    const EVP_MD* (*md)();
    std::string_view crv;    // ECDSA: the only curve this algorithm uses (RFC 7518 §3.4)
    std::size_t coord_size;  // ECDSA: bytes of R and of S
};
constexpr std::array<AlgSpec, 10> kAlgs{{
    {"RS256", Family::rsa_pkcs1, EVP_sha256, {}, 0},
    {"RS384", Family::rsa_pkcs1, EVP_sha384, {}, 0},
    {"RS512", Family::rsa_pkcs1, EVP_sha512, {}, 0},
    {"PS256", Family::rsa_pss, EVP_sha256, {}, 0},
    {"PS384", Family::rsa_pss, EVP_sha384, {}, 0},
    {"PS512", Family::rsa_pss, EVP_sha512, {}, 0},
    {"ES256", Family::ecdsa, EVP_sha256, "P-256", 32},
    {"ES384", Family::ecdsa, EVP_sha384, "P-384", 48},
    {"ES512", Family::ecdsa, EVP_sha512, "P-521", 66},
    {"EdDSA", Family::eddsa, nullptr, {}, 0},
}};

const AlgSpec* find_alg(std::string_view name) noexcept {
    for (const auto& a : kAlgs)
        if (a.name == name) return &a;
    return nullptr;
}

// Whether a key of this type/curve may verify this algorithm.
bool key_fits(const AlgSpec& a, std::string_view kty, std::string_view crv) noexcept {
    switch (a.family) {
        case Family::rsa_pkcs1:
        case Family::rsa_pss:
            return kty == "RSA";
        case Family::ecdsa:
            return kty == "EC" && crv == a.crv;
        case Family::eddsa:
            return kty == "OKP" && (crv == "Ed25519" || crv == "Ed448");
    }
    return false;
}

// ---- JWK → EVP_PKEY (RFC 7518 §6, RFC 8037 §2) ----

using KeyResult = tl::expected<PkeyPtr, std::string>;

bool b64url_member(const Json& jwk, const char* name, std::string& out) {
    const std::string* s = string_member(jwk, name);
    return s && b64url_decode_into(*s, out);
}

BnPtr to_bn(const std::string& bytes) {
    return BnPtr(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                           static_cast<int>(bytes.size()), nullptr));
}

KeyResult pkey_from_params(const char* type, OSSL_PARAM_BLD* bld) {
    ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1 || !raw) {
        ERR_clear_error();
        return tl::unexpected<std::string>("OpenSSL refused the key");
    }
    return PkeyPtr(raw);
}

// RFC 7518 §6.3.1: n and e, big-endian unsigned.
KeyResult rsa_key(const Json& jwk) {
    std::string n, e;
    if (!b64url_member(jwk, "n", n) || !b64url_member(jwk, "e", e))
        return tl::unexpected<std::string>("RSA key without valid base64url n and e");
    BnPtr bn_n = to_bn(n), bn_e = to_bn(e);
    if (!bn_n || !bn_e) return tl::unexpected<std::string>("out of memory");
    const int bits = BN_num_bits(bn_n.get());
    if (bits < kMinRsaBits)
        return tl::unexpected<std::string>("RSA key of " + std::to_string(bits) +
                                           " bits, under 2048");
    if (bits > kMaxRsaBits)
        return tl::unexpected<std::string>("RSA key of " + std::to_string(bits) +
                                           " bits, over 8192");
    if (!BN_is_odd(bn_n.get()) || !BN_is_odd(bn_e.get()) || BN_num_bits(bn_e.get()) < 2 ||
        BN_num_bits(bn_e.get()) > 64)
        return tl::unexpected<std::string>("RSA key with an implausible n or e");
    ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
        ERR_clear_error();
        return tl::unexpected<std::string>("out of memory");
    }
    return pkey_from_params("RSA", bld.get());
}

// RFC 7518 §6.2.1: x and y are the full field size; the point must lie on the curve.
KeyResult ec_key(const Json& jwk, const std::string& crv) {
    const char* group = nullptr;
    std::size_t size = 0;
    if (crv == "P-256")
        group = "prime256v1", size = 32;
    else if (crv == "P-384")
        group = "secp384r1", size = 48;
    else if (crv == "P-521")
        group = "secp521r1", size = 66;
    else
        return tl::unexpected<std::string>("EC curve " + quote(crv) + " not supported");
    std::string x, y;
    if (!b64url_member(jwk, "x", x) || !b64url_member(jwk, "y", y))
        return tl::unexpected<std::string>("EC key without valid base64url x and y");
    if (x.size() != size || y.size() != size)
        return tl::unexpected<std::string>("EC key coordinates not " + std::to_string(size) +
                                           " bytes");
    std::string point = "\x04" + x + y;  // SEC 1 §2.3.3 uncompressed point
    ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1) {
        ERR_clear_error();
        return tl::unexpected<std::string>("out of memory");
    }
    auto key = pkey_from_params("EC", bld.get());
    if (!key) return tl::unexpected<std::string>("EC point not on " + crv);
    // Belt and braces: on the curve, not infinity, in the right subgroup.
    PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key->get(), nullptr));
    if (!check || EVP_PKEY_public_check(check.get()) != 1) {
        ERR_clear_error();
        return tl::unexpected<std::string>("EC point not on " + crv);
    }
    return key;
}

// RFC 8037 §2: x is the raw public key.
KeyResult okp_key(const Json& jwk, const std::string& crv) {
    int type = 0;
    std::size_t size = 0;
    if (crv == "Ed25519")
        type = EVP_PKEY_ED25519, size = 32;
    else if (crv == "Ed448")
        type = EVP_PKEY_ED448, size = 57;
    else
        return tl::unexpected<std::string>("OKP curve " + quote(crv) + " not for signatures");
    std::string x;
    if (!b64url_member(jwk, "x", x) || x.size() != size)
        return tl::unexpected<std::string>("OKP key without a valid " + std::to_string(size) +
                                           "-byte x");
    EVP_PKEY* raw = EVP_PKEY_new_raw_public_key(
        type, nullptr, reinterpret_cast<const unsigned char*>(x.data()), x.size());
    if (!raw) {
        ERR_clear_error();
        return tl::unexpected<std::string>("OpenSSL refused the key");
    }
    return PkeyPtr(raw);
}

// One JWKS member → a usable Jwk, or why not.
tl::expected<Jwk, std::string> parse_jwk(const Json& j) {
    using Skip = tl::unexpected<std::string>;
    if (!j.is_object()) return Skip("not an object");
    Jwk k;
    for (auto [name, field] :
         {std::pair{"kid", &k.kid}, std::pair{"kty", &k.kty}, std::pair{"alg", &k.alg},
          std::pair{"use", &k.use}, std::pair{"crv", &k.crv}}) {
        auto it = j.find(name);
        if (it == j.end()) continue;
        if (!it->is_string()) return Skip(std::string(name) + " not a string");
        *field = it->get<std::string>();
    }
    // RFC 7517 §4.2/§4.3: a key meant for encryption, or not for verification, is not ours.
    if (!k.use.empty() && k.use != "sig") return Skip("use=" + quote(k.use));
    if (auto ops = j.find("key_ops"); ops != j.end()) {
        if (!ops->is_array()) return Skip("key_ops not an array");
        if (std::find(ops->begin(), ops->end(), Json("verify")) == ops->end())
            return Skip("key_ops without \"verify\"");
    }
    KeyResult key = tl::unexpected<std::string>("");
    if (k.kty == "RSA") {
        k.crv.clear();
        key = rsa_key(j);
    } else if (k.kty == "EC") {
        key = ec_key(j, k.crv);
    } else if (k.kty == "OKP") {
        key = okp_key(j, k.crv);
    } else {
        // "oct" (a shared secret) above all: never a verification key here (RFC 8725 §3.1).
        return Skip("kty " + quote(k.kty) + " not supported");
    }
    if (!key) return Skip(key.error());
    if (!k.alg.empty()) {
        const AlgSpec* a = find_alg(k.alg);
        if (!a) return Skip("alg " + quote(k.alg) + " not an allowed signature algorithm");
        if (!key_fits(*a, k.kty, k.crv))
            return Skip("alg " + quote(k.alg) + " does not fit the key");
    }
    // Private members (d, p, q, dp, dq, qi) of a misconfigured IdP's JWKS are never read.
    k.key = std::shared_ptr<EVP_PKEY>(key->release(), PkeyFree{});
    return k;
}

// ---- signatures ----

// RFC 7518 §3.4: JWS carries R || S, each the curve's size; OpenSSL wants DER.
bool ecdsa_raw_to_der(std::string_view sig, std::size_t coord, std::string& der) {
    if (sig.size() != 2 * coord) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    BnPtr r(BN_bin2bn(p, static_cast<int>(coord), nullptr));
    BnPtr s(BN_bin2bn(p + coord, static_cast<int>(coord), nullptr));
    EcdsaSigPtr es(ECDSA_SIG_new());
    if (!r || !s || !es || ECDSA_SIG_set0(es.get(), r.get(), s.get()) != 1) return false;
    r.release();  // owned by es now
    s.release();
    const int len = i2d_ECDSA_SIG(es.get(), nullptr);
    if (len <= 0) return false;
    der.assign(static_cast<std::size_t>(len), '\0');
    auto* out = reinterpret_cast<unsigned char*>(der.data());
    return i2d_ECDSA_SIG(es.get(), &out) == len;
}

bool verify_with(const AlgSpec& a, EVP_PKEY* pkey, std::string_view input, std::string_view sig) {
    std::string der;
    if (a.family == Family::ecdsa) {
        if (!ecdsa_raw_to_der(sig, a.coord_size, der)) return false;
        sig = der;
    } else if (a.family != Family::eddsa) {
        // RFC 8017 §8.2.2: the signature is exactly the modulus size.
        if (sig.size() != static_cast<std::size_t>(EVP_PKEY_get_size(pkey))) return false;
    }
    MdCtxPtr ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, a.md ? a.md() : nullptr, nullptr, pkey) != 1)
        return false;
    if (a.family == Family::rsa_pss) {
        // RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, a.md()) != 1)
            return false;
    }
    return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                            sig.size(), reinterpret_cast<const unsigned char*>(input.data()),
                            input.size()) == 1;
}

// ---- claims ----

enum class Got { absent, ok, wrong_type };

// RFC 7519 §2 NumericDate: a JSON number, possibly non-integer. Compared as double, which is
// exact for any date in range and cannot overflow.
Got numeric_date(const Json& claims, const char* name, double& out) {
    auto it = claims.find(name);
    if (it == claims.end()) return Got::absent;
    if (!it->is_number()) return Got::wrong_type;  // booleans are not numbers here
    out = it->get<double>();
    return Got::ok;
}

template <typename F>
auto guarded(F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const std::exception& e) {
        return fail(Failure::malformed, std::string("internal error: ") + e.what());
    } catch (...) {
        return fail(Failure::malformed, "internal error");
    }
}

}  // namespace

const char* failure_name(Failure f) noexcept {
    switch (f) {
        case Failure::malformed:
            return "malformed";
        case Failure::too_large:
            return "too_large";
        case Failure::bad_algorithm:
            return "bad_algorithm";
        case Failure::unknown_key:
            return "unknown_key";
        case Failure::bad_signature:
            return "bad_signature";
        case Failure::expired:
            return "expired";
        case Failure::not_yet_valid:
            return "not_yet_valid";
        case Failure::wrong_issuer:
            return "wrong_issuer";
        case Failure::wrong_audience:
            return "wrong_audience";
        case Failure::missing_claim:
            return "missing_claim";
    }
    return "unknown";
}

std::string base64url_encode(std::string_view bytes) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    try {
        std::string out;
        out.reserve((bytes.size() + 2) / 3 * 4);
        std::uint32_t acc = 0;
        int bits = 0;
        for (unsigned char c : bytes) {
            acc = (acc << 8) | c;
            bits += 8;
            while (bits >= 6) {
                bits -= 6;
                out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
            }
        }
        if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
        return out;
    } catch (...) {
        return {};
    }
}

bool base64url_decode(std::string_view text, std::string& out) {
    try {
        std::string tmp;
        if (!b64url_decode_into(text, tmp)) return false;
        out.swap(tmp);  // out untouched on failure
        return true;
    } catch (...) {
        return false;
    }
}

bool looks_like_jwt(std::string_view text) noexcept {
    try {
        if (text.size() > kMaxToken) return false;
        const auto dot1 = text.find('.');
        if (dot1 == std::string_view::npos) return false;
        const auto dot2 = text.find('.', dot1 + 1);
        if (dot2 == std::string_view::npos || text.find('.', dot2 + 1) != std::string_view::npos)
            return false;
        if (dot1 == 0 || dot2 == dot1 + 1) return false;  // header and payload are never empty
        for (char c : text)
            if (c != '.' && !is_b64url_char(c)) return false;
        std::string header;
        if (!b64url_decode_into(text.substr(0, dot1), header)) return false;
        const Json h = parse_object(header);
        return !h.is_discarded() && string_member(h, "alg") != nullptr;
    } catch (...) {
        return false;
    }
}

Result<Token> decode(std::string_view compact) {
    return guarded([&]() -> Result<Token> {
        if (compact.size() > kMaxToken)
            return fail(Failure::too_large, "token of " + std::to_string(compact.size()) +
                                                " bytes, over " + std::to_string(kMaxToken));
        // RFC 7515 §7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature)
        const auto parts = std::count(compact.begin(), compact.end(), '.') + 1;
        if (parts != 3)
            return fail(Failure::malformed,
                        std::to_string(parts) + " parts, a JWS has 3" +
                            (parts == 5 ? " (encrypted JWTs not supported)" : ""));
        const auto dot1 = compact.find('.');
        const auto dot2 = compact.find('.', dot1 + 1);
        const std::string_view h64 = compact.substr(0, dot1);
        const std::string_view p64 = compact.substr(dot1 + 1, dot2 - dot1 - 1);
        const std::string_view s64 = compact.substr(dot2 + 1);

        Token t;
        std::string header_text, payload_text;
        if (!b64url_decode_into(h64, header_text))
            return fail(Failure::malformed, "header is not base64url");
        if (!b64url_decode_into(p64, payload_text))
            return fail(Failure::malformed, "payload is not base64url");
        if (!b64url_decode_into(s64, t.signature))
            return fail(Failure::malformed, "signature is not base64url");

        t.header = parse_object(header_text);
        if (t.header.is_discarded()) return fail(Failure::malformed, "header is not a JSON object");
        t.claims = parse_object(payload_text);
        OPENSSL_cleanse(payload_text.data(), payload_text.size());
        if (t.claims.is_discarded())
            return fail(Failure::malformed, "payload is not a JSON object");

        // RFC 7515 §4.1.1: alg is required.
        const std::string* alg = string_member(t.header, "alg");
        if (!alg || alg->empty()) return fail(Failure::malformed, "header without a string alg");
        t.alg = *alg;
        if (auto it = t.header.find("kid"); it != t.header.end()) {
            if (!it->is_string()) return fail(Failure::malformed, "header kid is not a string");
            t.kid = it->get<std::string>();
        }
        // RFC 7515 §4.1.11: extensions we do not understand make the JWS invalid; we know none.
        if (t.header.contains("crit"))
            return fail(Failure::malformed, "header has crit: no extensions are supported");
        // An encryption header (RFC 7516 §4.1.2) has no business in a JWS.
        if (t.header.contains("enc")) return fail(Failure::malformed, "header has enc (a JWE)");
        // RFC 7519 §5.1, RFC 9068 §2.1: typ, if any, says JWT or access-token JWT.
        if (auto it = t.header.find("typ"); it != t.header.end()) {
            const bool ok = it->is_string() && [&] {
                const auto& typ = it->get_ref<const std::string&>();
                for (std::string_view good :
                     {"JWT", "at+jwt", "application/jwt", "application/at+jwt"})
                    if (iequals(typ, good)) return true;
                return false;
            }();
            if (!ok)
                return fail(Failure::malformed,
                            "header typ " +
                                (it->is_string() ? quote(it->get<std::string>())
                                                 : std::string("not a string")) +
                                " is not a JWT type");
        }
        // RFC 7519 §5.2: cty "JWT" announces a nested JWT, which we do not unwrap.
        if (auto it = t.header.find("cty"); it != t.header.end()) {
            if (!it->is_string() || iequals(it->get_ref<const std::string&>(), "JWT"))
                return fail(Failure::malformed, "nested JWT (cty) not supported");
        }
        // jwk, jku, x5u, x5c are never read: keys come from the configured JWKS only
        // (RFC 8725 §3.10).
        t.signing_input.assign(compact.substr(0, dot2));
        return t;
    });
}

const std::vector<std::string>& default_algorithms() {
    static const std::vector<std::string> algs = [] {
        std::vector<std::string> v;
        for (const auto& a : kAlgs) v.emplace_back(a.name);
        return v;
    }();
    return algs;
}

Result<KeySet> KeySet::parse(std::string_view json) {
    return guarded([&]() -> Result<KeySet> {
        if (json.size() > kMaxJwks)
            return fail(Failure::too_large, "JWKS of " + std::to_string(json.size()) +
                                                " bytes, over " + std::to_string(kMaxJwks));
        const Json doc = parse_object(json);
        if (doc.is_discarded()) return fail(Failure::malformed, "JWKS is not a JSON object");
        auto keys = doc.find("keys");
        if (keys == doc.end() || !keys->is_array())
            return fail(Failure::malformed, "JWKS without a keys array");  // RFC 7517 §5.1
        if (keys->size() > kMaxKeys)
            return fail(Failure::too_large, "JWKS with " + std::to_string(keys->size()) +
                                                " keys, over " + std::to_string(kMaxKeys));
        KeySet set;
        std::size_t index = 0;
        for (const auto& j : *keys) {
            auto k = parse_jwk(j);
            if (k) {
                set.keys_.push_back(std::move(*k));
            } else {
                std::string where = "key " + std::to_string(index);
                if (const std::string* kid = j.is_object() ? string_member(j, "kid") : nullptr)
                    where += " (kid " + quote(*kid) + ")";
                set.skipped_.push_back(where + ": " + k.error());
            }
            ++index;
        }
        if (set.keys_.empty()) {
            std::string why = "JWKS has no usable signature key";
            if (!set.skipped_.empty()) why += ": " + set.skipped_.front();
            return fail(Failure::unknown_key, why);
        }
        return set;
    });
}

const Jwk* KeySet::find(std::string_view kid) const noexcept {
    if (kid.empty()) return keys_.size() == 1 ? &keys_.front() : nullptr;
    for (const auto& k : keys_)
        if (k.kid == kid) return &k;
    return nullptr;
}

Result<void> verify_signature(const Token& token, const KeySet& keys,
                              const std::vector<std::string>& allowed) {
    return guarded([&]() -> Result<void> {
        // The algorithm first, before any key is touched (RFC 8725 §3.1, §2.1): `none` and
        // HMAC are refused whatever the JWKS holds, so a public key can never be an HMAC secret.
        const AlgSpec* a = find_alg(token.alg);
        if (!a || iequals(token.alg, "none") || token.alg.starts_with("HS"))
            return fail(Failure::bad_algorithm, "alg " + quote(token.alg) + " not allowed");
        if (std::find(allowed.begin(), allowed.end(), token.alg) == allowed.end())
            return fail(Failure::bad_algorithm, "alg " + quote(token.alg) + " not allowed here");

        // RFC 7515 §4.1.4: the key by kid; several keys may share a kid (one per type).
        const Jwk* key = nullptr;
        std::size_t candidates = 0;
        const Jwk* refused = nullptr;
        for (const auto& k : keys.keys()) {
            if (k.kid != token.kid && !token.kid.empty()) continue;
            ++candidates;
            // RFC 7517 §4.4: a JWK that names its alg verifies that algorithm only.
            if (key_fits(*a, k.kty, k.crv) && (k.alg.empty() || k.alg == token.alg)) {
                if (key && token.kid.empty())
                    return fail(Failure::unknown_key,
                                "token has no kid and several keys fit alg " + quote(token.alg));
                if (!key) key = &k;
            } else if (!refused) {
                refused = &k;
            }
        }
        if (candidates == 0)
            return fail(Failure::unknown_key, token.kid.empty()
                                                  ? std::string("token has no kid")
                                                  : "no key with kid " + quote(token.kid));
        if (!key)
            return fail(Failure::bad_algorithm,
                        "alg " + quote(token.alg) + " does not fit key" +
                            (token.kid.empty() ? "" : " " + quote(token.kid)) + " (kty " +
                            quote(refused->kty) +
                            (refused->crv.empty() ? "" : ", crv " + quote(refused->crv)) +
                            (refused->alg.empty() ? "" : ", alg " + quote(refused->alg)) + ")");
        if (!verify_with(*a, key->key.get(), token.signing_input, token.signature))
            return fail(Failure::bad_signature, "signature does not verify (alg " +
                                                    quote(token.alg) + ", kid " + quote(key->kid) +
                                                    ")");
        ERR_clear_error();
        return {};
    });
}

Result<void> check_claims(const Token& token, const ClaimRules& rules) {
    return guarded([&]() -> Result<void> {
        const Json& c = token.claims;
        if (!c.is_object()) return fail(Failure::malformed, "claims are not a JSON object");
        const double now = static_cast<double>(rules.now);
        const double leeway = static_cast<double>(std::max<std::int64_t>(rules.leeway, 0));

        // OIDC Core §3.1.3.7 step 2: iss exactly the configured issuer.
        if (rules.issuer.empty()) return fail(Failure::wrong_issuer, "no issuer configured");
        auto iss = c.find("iss");
        if (iss == c.end()) return fail(Failure::missing_claim, "no iss");
        if (!iss->is_string()) return fail(Failure::malformed, "iss is not a string");
        if (iss->get_ref<const std::string&>() != rules.issuer)
            return fail(Failure::wrong_issuer, "iss " + quote(iss->get_ref<const std::string&>()) +
                                                   " is not " + quote(rules.issuer));

        // Step 3: aud (a string or an array of strings, RFC 7519 §4.1.3) holds the client id.
        if (rules.client_id.empty())
            return fail(Failure::wrong_audience, "no client id configured");
        auto aud = c.find("aud");
        if (aud == c.end()) return fail(Failure::missing_claim, "no aud");
        std::vector<std::string_view> auds;
        if (aud->is_string()) {
            auds.push_back(aud->get_ref<const std::string&>());
        } else if (aud->is_array()) {
            for (const auto& v : *aud) {
                if (!v.is_string()) return fail(Failure::malformed, "aud holds a non-string");
                auds.push_back(v.get_ref<const std::string&>());
            }
        } else {
            return fail(Failure::malformed, "aud is neither a string nor an array");
        }
        if (std::find(auds.begin(), auds.end(), rules.client_id) == auds.end())
            return fail(Failure::wrong_audience,
                        "aud " +
                            (auds.size() == 1 ? quote(auds.front())
                                              : std::to_string(auds.size()) + " values") +
                            " lacks client id " + quote(rules.client_id));
        // Steps 4-5: azp, when present, is the client id; with several audiences it must be there.
        auto azp = c.find("azp");
        if (azp != c.end() && !azp->is_string())
            return fail(Failure::malformed, "azp is not a string");
        std::sort(auds.begin(), auds.end());
        const bool several = std::unique(auds.begin(), auds.end()) - auds.begin() > 1;
        if (azp == c.end() && several)
            return fail(Failure::wrong_audience, "several audiences and no azp");
        if (azp != c.end() && azp->get_ref<const std::string&>() != rules.client_id)
            return fail(Failure::wrong_audience, "azp " +
                                                     quote(azp->get_ref<const std::string&>()) +
                                                     " is not " + quote(rules.client_id));

        // Step 9 / RFC 7519 §4.1.4: exp required, now before it (plus leeway).
        double exp = 0;
        switch (numeric_date(c, "exp", exp)) {
            case Got::absent:
                return fail(Failure::expired, "no exp");
            case Got::wrong_type:
                return fail(Failure::malformed, "exp is not a number");
            case Got::ok:
                break;
        }
        if (!(now < exp + leeway)) return fail(Failure::expired, "expired");
        // RFC 7519 §4.1.5: not before nbf (minus leeway).
        double nbf = 0;
        switch (numeric_date(c, "nbf", nbf)) {
            case Got::wrong_type:
                return fail(Failure::malformed, "nbf is not a number");
            case Got::ok:
                if (!(now + leeway >= nbf))
                    return fail(Failure::not_yet_valid, "nbf in the future");
                break;
            case Got::absent:
                break;
        }
        // Step 10 / RFC 7519 §4.1.6: not issued in the future (beyond leeway).
        double iat = 0;
        switch (numeric_date(c, "iat", iat)) {
            case Got::wrong_type:
                return fail(Failure::malformed, "iat is not a number");
            case Got::ok:
                if (iat > now + leeway) return fail(Failure::not_yet_valid, "iat in the future");
                break;
            case Got::absent:
                break;
        }
        // RFC 7519 §4.1.2: sub, when present, is a string (the caller may use it as the name).
        if (auto sub = c.find("sub"); sub != c.end() && !sub->is_string())
            return fail(Failure::malformed, "sub is not a string");
        return {};
    });
}

std::vector<std::string> claim_strings(const Json& claims, std::string_view dotted_path) {
    std::vector<std::string> out;
    try {
        if (!claims.is_object() || dotted_path.empty()) return out;
        // A top-level name that itself holds dots wins (Auth0's namespaced claims are URLs:
        // "https://cvat.example.com/roles"); otherwise each dot steps into an object.
        const Json* node = nullptr;
        if (auto it = claims.find(dotted_path); it != claims.end()) {
            node = &*it;
        } else {
            node = &claims;
            std::string_view rest = dotted_path;
            while (node) {
                const auto dot = rest.find('.');
                const std::string_view name = rest.substr(0, dot);
                if (!node->is_object()) return out;
                auto it2 = node->find(name);
                if (it2 == node->end()) return out;
                node = &*it2;
                if (dot == std::string_view::npos) break;
                rest.remove_prefix(dot + 1);
            }
        }
        if (node->is_string()) {
            out.push_back(node->get<std::string>());
        } else if (node->is_array()) {
            for (const auto& v : *node) {
                if (out.size() >= kMaxClaimValues) break;
                if (v.is_string()) out.push_back(v.get<std::string>());
            }
        }
    } catch (...) {
        out.clear();
    }
    return out;
}

}  // namespace cvat::helper::jwt
