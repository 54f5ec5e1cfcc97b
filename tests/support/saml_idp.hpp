// SPDX-License-Identifier: GPL-3.0-or-later
// The SAML IdP of the tests (tests/fixtures/saml-idp.sh: SimpleSAMLphp 1.19 with ECP under
// `php -S` on 127.0.0.1; users in tests/fixtures/README.md) and forged responses made from its
// real ones (tests/fixtures/saml-forge.py: lxml + the xmlsec1 CLI).
#pragma once

#include <string>
#include <vector>

namespace cvat::test {

// Password of a SAML fixture user ("alice" → "alice-secret").
std::string saml_password(const std::string& user);

class SamlIdp {
public:
    // saml-idp.sh start DIR; skips the test program (77) when simplesamlphp, php, xmlsec1 or
    // python3-lxml is missing, aborts it when the start fails.
    explicit SamlIdp(const std::string& dir);
    ~SamlIdp();
    SamlIdp(const SamlIdp&) = delete;
    SamlIdp& operator=(const SamlIdp&) = delete;

    std::string get(const std::string& key) const;  // a value from DIR/env
    std::string entity_id() const { return get("SAML_IDP_ENTITY_ID"); }
    std::string metadata_url() const { return get("SAML_IDP_METADATA_URL"); }
    std::string sso_url() const { return get("SAML_IDP_SSO_URL"); }
    std::string cert_path() const { return get("SAML_IDP_CERT"); }
    std::string cert_pem() const;                     // the IdP's signing certificate, PEM
    std::string sp_entity_id() const { return get("SAML_SP_ENTITY_ID"); }
    std::string acs() const { return get("SAML_SP_ACS_PAOS"); }
    double start_seconds() const;

    // A login with curl alone (saml-idp.sh login DIR ecp|post USER PASSWORD): the
    // samlp:Response XML, or "" when refused or failed.
    std::string response_xml(const std::string& mode, const std::string& user,
                             const std::string& password) const;

    // saml-forge.py VARIANT from `response_xml` (see its --help): `count` distinct base64
    // responses (each with fresh IDs), or none on failure. `xml`: one XML document instead.
    std::vector<std::string> forge(const std::string& response_xml, const std::string& variant,
                                   int count = 1, bool xml = false) const;

    void stop();  // by PID; the IdP is then down

private:
    std::string dir_;
    bool running_ = false;
};

}  // namespace cvat::test
