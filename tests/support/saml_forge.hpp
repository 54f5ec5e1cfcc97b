// SPDX-License-Identifier: GPL-3.0-or-later
// Hand-made SAML responses for unit tests: a Response with one Assertion, signed (or not) with
// xmlsec1 by tests/support/saml-test.key (the "IdP") or saml-other.key (an attacker), and the
// XML signature wrapping rewrites of "On Breaking SAML" (USENIX Security 2012) applied to it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cvat::test {

struct SamlForge {
    std::string issuer = "https://idp.example.test/saml2/idp";
    std::string audience = "https://cvat.example.test/api/auth/saml/corp/metadata/";
    std::string recipient = "https://cvat.example.test/api/auth/saml/corp/acs/";
    std::string destination = "https://cvat.example.test/api/auth/saml/corp/acs/";
    std::string name_id = "alice";      // inserted as raw XML: a test may put a comment inside
    std::string assertion_id = "_a0001";
    std::string response_id = "_r0001";
    std::int64_t now = 1800000000;      // IssueInstant; NotBefore = now - 10, NotOnOrAfter = now + 300
    std::vector<std::pair<std::string, std::vector<std::string>>> attributes = {
        {"uid", {"alice"}}, {"mail", {"alice@example.test"}}, {"groups", {"admins", "staff"}}};
    std::string key = "saml-test";      // which key signs: saml-test (the IdP's) or saml-other
    bool sign_assertion = true;
    bool sha1 = false;                  // rsa-sha1 + sha1 digest

    // The Response XML (signed as configured).
    std::string xml() const;
    // base64 of xml(), as a SAMLResponse password.
    std::string b64() const;
};

// Path of a file in tests/support ($CVAT_SOURCE_ROOT/tests/support/NAME).
std::string saml_support_file(const std::string& name);
// PEM text of tests/support/NAME.
std::string saml_read_file(const std::string& name);
std::string saml_base64(const std::string& bytes);

// XSW variants built from a valid signed response: an evil assertion (NameID "mallory") put
// where the code reads, the signed original moved elsewhere. Each returns the new XML.
std::vector<std::pair<std::string, std::string>> saml_xsw_variants(const SamlForge& valid);

}  // namespace cvat::test
