// SPDX-License-Identifier: GPL-3.0-or-later
// Token forgery for tests (jwt_forge.hpp), with OpenSSL's EVP API only.
#include "jwt_forge.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "fixture.hpp"

namespace cvat::test {
namespace {

[[noreturn]] void die(const std::string& why) {
    std::fflush(stdout);
    std::fprintf(stderr, "jwt_forge: %s\n", why.c_str());
    std::printf("Bail out! jwt_forge: %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(1);
}

struct PkeyFree {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* c) const noexcept { EVP_PKEY_CTX_free(c); }
};
struct BioFree {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey load_private_key(const std::string& path) {
    std::string pem = read_file(path);
    if (pem.empty()) die("cannot read key " + path);
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    Pkey key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) die("no private key in " + path);
    return key;
}

std::string sign_rs256(const std::string& input, const std::string& key_path) {
    Pkey key = load_private_key(key_path);
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    std::size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
        die("RS256 signing set-up failed with " + key_path);
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
        die("RS256 signing failed with " + key_path);
    sig.resize(len);
    return sig;
}

std::string sign_hs256(const std::string& input, const std::string& secret) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len) == nullptr)
        die("HS256 failed");
    return std::string(reinterpret_cast<const char*>(mac), len);
}

}  // namespace

std::string base64url(std::string_view bytes) {
    static const char* const table =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(bytes[k])); };
    for (; i + 2 < bytes.size(); i += 3) {
        unsigned v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
        for (int s = 18; s >= 0; s -= 6) out += table[(v >> s) & 63];
    }
    if (bytes.size() - i == 1) {
        unsigned v = byte(i) << 16;
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
    } else if (bytes.size() - i == 2) {
        unsigned v = byte(i) << 16 | byte(i + 1) << 8;
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
    }
    return out;
}

std::string forge_jwt(const std::string& header_json, const std::string& claims_json,
                      const std::string& key, JwtAlg alg) {
    std::string input = base64url(header_json) + "." + base64url(claims_json);
    std::string sig;
    switch (alg) {
    case JwtAlg::rs256:
        sig = sign_rs256(input, key);
        break;
    case JwtAlg::hs256:
        sig = sign_hs256(input, key);
        break;
    case JwtAlg::none:
        break;
    }
    return input + "." + base64url(sig);
}

void make_rsa_key(const std::string& path, int bits) {
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), bits) != 1 ||
        EVP_PKEY_keygen(ctx.get(), &raw) != 1)
        die("RSA key generation failed");
    Pkey key(raw);
    std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
        die("PEM encoding failed");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    write_file(path, std::string(data, static_cast<std::size_t>(len)), 0600);
}

}  // namespace cvat::test
