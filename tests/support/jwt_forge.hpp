// SPDX-License-Identifier: GPL-3.0-or-later
// Forged JSON Web Tokens for tests that attack the daemon's token validation: any header and
// claims, signed RS256 with a given PEM key, HS256 with any byte string as the secret, or not
// at all (`alg: none`). Written against OpenSSL alone, apart from the code under test.
#pragma once

#include <string>
#include <string_view>

namespace cvat::test {

enum class JwtAlg { rs256, hs256, none };

// base64url without padding (RFC 7515 §2).
std::string base64url(std::string_view bytes);

// header_json and claims_json are used byte for byte (so a test can lie in the header: the
// header's "alg" is not looked at). `key`: rs256 — path of a PEM private key (RSA); hs256 —
// the secret itself (e.g. the IdP's public key PEM); none — ignored, the signature is empty.
// Aborts the test program if the key cannot be used.
std::string forge_jwt(const std::string& header_json, const std::string& claims_json,
                      const std::string& key, JwtAlg alg);

// Writes a fresh RSA private key (PEM, mode 0600) to `path`.
void make_rsa_key(const std::string& path, int bits = 2048);

}  // namespace cvat::test
