#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Writes the JWT/JWKS/OIDC seeds of the fuzz corpora and fuzz_keys.hpp (the JWKS the fuzz
# targets check tokens against), from the test-only keys in keys/ (made here if missing).
# Tokens are signed for the fixed clock of the targets (kNow in fuzz_keys.hpp).
# Usage: tests/fuzz/make-jwt-seeds.py        (rewrites its files; commit the result)
import base64, hashlib, json, os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "keys")
CORPUS = os.path.join(HERE, "corpus")
NOW = 1767225600  # 2026-01-01T00:00:00Z
ISS = "https://idp.example.test/api/oidc"
AUD = "cvat"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def uint(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(size, "big"))


def key(name, make):
    path = os.path.join(KEYS, name + ".pem")
    if not os.path.exists(path):
        k = make()
        with open(path, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


os.makedirs(KEYS, exist_ok=True)
rsa_key = key("rsa", lambda: rsa.generate_private_key(65537, 2048))
ec_key = key("p256", lambda: ec.generate_private_key(ec.SECP256R1()))
ec384_key = key("p384", lambda: ec.generate_private_key(ec.SECP384R1()))
ed_key = key("ed25519", ed25519.Ed25519PrivateKey.generate)


def jwk_rsa(k, kid, alg=None):
    n = k.public_key().public_numbers()
    j = {"kty": "RSA", "kid": kid, "use": "sig", "n": uint(n.n), "e": uint(n.e)}
    if alg:
        j["alg"] = alg
    return j


def jwk_ec(k, kid, crv, size):
    n = k.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "crv": crv, "x": uint(n.x, size), "y": uint(n.y, size)}


def jwk_ed(k, kid):
    raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(raw)}


JWKS = {"keys": [jwk_rsa(rsa_key, "rsa1", "RS256"), jwk_rsa(rsa_key, "rsa-ps"), jwk_ec(ec_key, "ec1", "P-256", 32),
                 jwk_ec(ec384_key, "ec2", "P-384", 48), jwk_ed(ed_key, "ed1")]}


def sign(alg, kid, claims, header_extra=None):
    h = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        h["kid"] = kid
    h.update(header_extra or {})
    si = (b64u(json.dumps(h, separators=(",", ":")).encode()) + "." +
          b64u(json.dumps(claims, separators=(",", ":")).encode())).encode()
    if alg == "RS256":
        sig = rsa_key.sign(si, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        sig = rsa_key.sign(si, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    elif alg in ("ES256", "ES384"):
        k, h_, size = (ec_key, hashes.SHA256(), 32) if alg == "ES256" else (ec384_key, hashes.SHA384(), 48)
        r, s = utils.decode_dss_signature(k.sign(si, ec.ECDSA(h_)))
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif alg == "EdDSA":
        sig = ed_key.sign(si)
    else:
        sig = b""
    return si.decode() + "." + b64u(sig)


def claims(**extra):
    c = {"iss": ISS, "aud": AUD, "sub": "a1b2c3", "exp": NOW + 3600, "iat": NOW - 10, "nbf": NOW - 10,
         "preferred_username": "alice", "email": "alice@example.test", "email_verified": True,
         "given_name": "Alice", "family_name": "Liddell", "realm_access": {"roles": ["cvat-admin", "x"]},
         "groups": ["cvat-users"]}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


tokens = {
    "rs256": sign("RS256", "rsa1", claims()),
    "ps256": sign("PS256", "rsa-ps", claims()),
    "es256": sign("ES256", "ec1", claims()),
    "es384": sign("ES384", "ec2", claims()),
    "eddsa": sign("EdDSA", "ed1", claims()),
    "rs256-nokid": sign("RS256", None, claims()),
    "multi-aud-azp": sign("ES256", "ec1", claims(aud=[AUD, "other"], azp=AUD)),
    "multi-aud-no-azp": sign("ES256", "ec1", claims(aud=[AUD, "other"])),
    "expired": sign("ES256", "ec1", claims(exp=NOW - 3600)),
    "not-yet": sign("ES256", "ec1", claims(nbf=NOW + 3600)),
    "wrong-iss": sign("ES256", "ec1", claims(iss="https://evil.example")),
    "wrong-aud": sign("ES256", "ec1", claims(aud="other")),
    "no-exp": sign("EdDSA", "ed1", claims(exp=None)),
    "exp-float": sign("EdDSA", "ed1", claims(exp=NOW + 0.5)),
    "exp-string": sign("EdDSA", "ed1", claims(exp=str(NOW + 60))),
    "alg-none": sign("none", None, claims()),
    "hs256-confusion": sign("HS256", "rsa1", claims()),
    "unknown-kid": sign("ES256", "nope", claims()),
    "kid-alg-mismatch": sign("RS256", "ec1", claims()),
    "crit": sign("ES256", "ec1", claims(), {"crit": ["exp"]}),
    "typ-bad": sign("ES256", "ec1", claims(), {"typ": "JOSE+JSON"}),
    "nested-cty": sign("ES256", "ec1", claims(), {"cty": "JWT"}),
}
for name, t in tokens.items():
    write("jwt", name, t)
# A signature with its last byte changed, and structural breakage.
t = tokens["es256"]
write("jwt", "bad-signature", t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1])
write("jwt", "four-parts", t + ".x")
write("jwt", "jwe-five-parts", "a.b.c.d.e")
write("jwt", "padding", t.replace(".", "=.", 1))

jwks_text = json.dumps(JWKS, indent=1)
write("jwks", "real", jwks_text)
write("jwks", "one-rsa", json.dumps({"keys": [jwk_rsa(rsa_key, "rsa1", "RS256")]}))
small = rsa.generate_private_key(65537, 1024)
write("jwks", "hostile", json.dumps({"keys": [
    jwk_rsa(small, "small"),                                            # under 2048 bits
    dict(jwk_ec(ec_key, "enc", "P-256", 32), use="enc"),
    dict(jwk_ec(ec_key, "offcurve", "P-256", 32), y=uint(5, 32)),      # a point off the curve
    {"kty": "oct", "kid": "hmac", "k": b64u(b"secret")},
    {"kty": "RSA", "kid": "e-huge", "n": uint(rsa_key.public_key().public_numbers().n), "e": b64u(b"\xff" * 600)},
    dict(jwk_ed(ed_key, "ops"), key_ops=["encrypt"]),
    {"kty": "EC", "kid": "badcrv", "crv": "P-192", "x": "AA", "y": "AA"},
    dict(jwk_rsa(rsa_key, "alg-hs", None), alg="HS256"),
    dict(jwk_rsa(rsa_key, "private", None), d="AAAA", p="AAAA"),
]}))
write("jwks", "not-object", "[1,2,3]")
write("jwks", "no-keys", "{\"keys\": []}")

# OIDC answers: selector byte, then the body (see fuzz_oidc.cpp).
disc = {"issuer": ISS, "authorization_endpoint": ISS + "/auth", "token_endpoint": ISS + "/token",
        "device_authorization_endpoint": ISS + "/device_authorization", "userinfo_endpoint": ISS + "/userinfo",
        "jwks_uri": ISS + "/jwks", "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["authorization_code", "password", "urn:ietf:params:oauth:grant-type:device_code"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "HS256", "none"]}
write("oidc", "discovery", "D" + json.dumps(disc))
write("oidc", "discovery-trailing-slash", "D" + json.dumps(dict(disc, issuer=ISS + "/")))
write("oidc", "discovery-bad-endpoints", "D" + json.dumps(dict(disc, token_endpoint="http://evil.example/token",
                                                                userinfo_endpoint="javascript:alert(1)",
                                                                device_authorization_endpoint="http://127.0.0.1:8080/d")))
write("oidc", "discovery-http-jwks", "D" + json.dumps(dict(disc, jwks_uri="http://idp.example.test/jwks")))
write("oidc", "discovery-wrong-issuer", "D" + json.dumps(dict(disc, issuer="https://evil.example")))
write("oidc", "discovery-no-algs", "D" + json.dumps(dict(disc, id_token_signing_alg_values_supported=["HS256"])))
write("oidc", "token", "T" + json.dumps({"access_token": tokens["rs256"], "id_token": tokens["es256"],
                                           "token_type": "Bearer", "expires_in": 300, "refresh_token": "r"}))
write("oidc", "token-no-id", "T" + json.dumps({"access_token": "opaque", "token_type": "Bearer"}))
write("oidc", "token-not-json", "T<html>502</html>")
write("oidc", "device", "A" + json.dumps({"device_code": "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS",
                                            "user_code": "WDJB-MJHT", "verification_uri": "https://idp.example.test/device",
                                            "verification_uri_complete": "https://idp.example.test/device?user_code=WDJB-MJHT",
                                            "expires_in": 1800, "interval": 5}))
write("oidc", "device-google", "A" + json.dumps({"device_code": "x", "user_code": "ABCD", "verification_url":
                                                   "https://www.google.com/device", "expires_in": "1800", "interval": 5.5}))
write("oidc", "device-hostile", "A" + json.dumps({"device_code": "x", "user_code": "AB\u001b[2J",
                                                    "verification_uri": "https://x\n", "expires_in": -1, "interval": 1e308}))
write("oidc", "error-invalid-grant", "E\x01\x90" + json.dumps({"error": "invalid_grant", "error_description": "AADSTS50076: MFA"}))
write("oidc", "error-pending", "E\x01\x90" + json.dumps({"error": "authorization_pending"}))
write("oidc", "error-bare-401", "E\x01\x91Unauthorized")
write("oidc", "error-503", "E\x01\xf7" + json.dumps({"error": "server_error", "error_description": "x" * 300}))

with open(os.path.join(HERE, "fuzz_keys.hpp"), "w") as f:
    f.write("// SPDX-License-Identifier: GPL-3.0-or-later\n")
    f.write("// Written by make-jwt-seeds.py: the public keys (test-only, private halves in keys/) that the\n")
    f.write("// JWT fuzz targets check tokens against, and the fixed clock and claims the seeds are made for.\n")
    f.write("#pragma once\n\n#include <cstdint>\n\nnamespace cvat::fuzz {\n\n")
    f.write("inline constexpr std::int64_t kNow = %d;\n" % NOW)
    f.write("inline constexpr const char* kIssuer = \"%s\";\n" % ISS)
    f.write("inline constexpr const char* kClientId = \"%s\";\n" % AUD)
    f.write("inline constexpr const char* kJwks = R\"json(%s)json\";\n" % json.dumps(JWKS))
    f.write("// Valid tokens, one per key (fuzz_jwks checks them against the JWKS it is given).\n")
    f.write("inline constexpr const char* kTokens[] = {\n")
    for n in ("rs256", "ps256", "es256", "es384", "eddsa"):
        f.write("    \"%s\",\n" % tokens[n])
    f.write("};\n\n}  // namespace cvat::fuzz\n")
print("written")
