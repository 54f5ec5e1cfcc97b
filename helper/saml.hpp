// SPDX-License-Identifier: GPL-3.0-or-later
// One SAML 2.0 identity provider of the sso: section (issue 9): IdP metadata (metadata_url,
// or x509_cert + sso_url), ECP password logins (SAML 2.0 ECP profile, PAOS/SOAP binding: the
// daemon is SP and ECP client at once), a base64 SAMLResponse given as the password, and
// attributes → CVAT user and role. Lasso (liblasso3) builds the request and checks the
// signatures; the checks Lasso leaves out are ours (saml.cpp says which is which). Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config.hpp"
#include "oidc.hpp"   // WallClock
#include "protocol.hpp"
#include "roles.hpp"
#include "secret.hpp"

namespace cvat::helper {

// Attribute name → values, in document order, as the assertion gave them.
using SamlAttributes = std::vector<std::pair<std::string, std::vector<std::string>>>;

struct SamlUser {
    std::string username;     // attribute_mapping username, else uid, else NameID (email under
                              // selection_mode email_address when the login name was one)
    std::string name_id;      // Subject/NameID
    std::string issuer;       // the IdP's entity ID
    std::string uid;          // attribute_mapping uid
    std::string email;
    std::string first_name;
    std::string last_name;
    bool email_verified = false;
    std::vector<std::string> role_attribute_values;  // what role_attribute held
    RoleDecision role;                                // RoleMatch.group: the value that matched
    // The immutable id NSS keeps: "saml:<entity id> <uid attribute or NameID>".
    std::string immutable_id() const { return "saml:" + issuer + " " + (uid.empty() ? name_id : uid); }
};

struct SamlOutcome {
    proto::Status status = proto::Status::internal;
    std::string message;              // for the user's screen; never an assertion or password
    SamlUser user;
    std::vector<std::string> trace;   // steps and attributes seen, for explain and debug logs
};

// Our SP identity at one IdP: as CVAT registers itself there, unless overridden.
struct SamlSpIdentity {
    std::string entity_id;   // <base>/api/auth/saml/<idp-id>/metadata/ (or sp_entity_id)
    std::string acs_url;     // <base>/api/auth/saml/<idp-id>/acs/ (or acs_url)
};

class SamlProvider {
public:
    // `cvat_base_url`: helper.cvat_base_url, else $CVAT_BASE_URL (the caller picks). No
    // network yet: metadata is fetched on first use and cached. Fails when neither a base URL
    // nor sp_entity_id + acs_url give our SP identity, or the x509_cert does not load.
    [[nodiscard]] static Result<std::unique_ptr<SamlProvider>> create(IdentityProvider idp, const SsoConfig& sso,
                                                                      const std::string& cvat_base_url,
                                                                      WallClock clock = system_wall_clock);
    virtual ~SamlProvider() = default;

    virtual const IdentityProvider& config() const = 0;
    virtual const SamlSpIdentity& sp() const = 0;

    // ECP. A wrong password in any form (Responder/AuthnFailed status, SOAP fault, 401/403)
    // → auth_err; IdP unreachable, timeout, no SOAP endpoint → unavailable, with words.
    virtual SamlOutcome password_login(std::string_view user, const Secret& password) = 0;

    // A base64 SAMLResponse (HTTP-POST binding) as the password: validated locally, never sent.
    virtual SamlOutcome assertion_login(const Secret& saml_response) = 0;

    // The SP metadata to register at the IdP (`cvat-authctl saml-metadata ID`).
    virtual std::string sp_metadata() const = 0;

    // Metadata state for `cvat-authctl status`.
    virtual proto::BackendState probe() = 0;
};

// --- pure pieces, exposed for unit tests -------------------------------------------------

// Cheap: base64 whose decoding is XML with a Response root element in the SAML 2.0 protocol
// namespace. Never throws; parses nothing beyond the root element's start tag.
bool looks_like_saml_response(std::string_view password);

// The Issuer of a base64 SAMLResponse, unverified (for routing to the IdP that then checks
// everything); empty when there is none.
std::string saml_response_issuer(std::string_view password);

// attribute_mapping → user fields. The mapping's values are attribute names (URIs or plain);
// a name matches an attribute whose Name or FriendlyName equals it.
SamlUser map_saml_user(const IdentityProvider& idp, SelectionMode mode, std::string_view login,
                       std::string_view issuer, std::string_view name_id, const SamlAttributes& attributes);

// The role from role_attribute's values (role_values, highest wins, default_role).
void resolve_saml_role(const IdentityProvider& idp, const SamlAttributes& attributes, SamlUser& user);

// The SP identity for an IdP: per-IdP overrides, else from the base URL; empty fields when
// neither gives them.
SamlSpIdentity saml_sp_identity(const IdentityProvider& idp, const std::string& cvat_base_url);

// What the validation of one response needs to know besides the message.
struct SamlCheck {
    std::string idp_entity_id;
    SamlSpIdentity sp;
    std::string request_id;       // empty: unsolicited (assertion as password), not checked
    std::int64_t now_s = 0;
    std::int64_t leeway_s = 60;
    bool allow_sha1 = false;
};

// The checks on the decoded response XML that Lasso does not make (saml.cpp lists them),
// before Lasso sees it: no DTD, one Response root, at most one Assertion, no duplicate IDs,
// algorithms from the allow-list, no comment or processing instruction inside a NameID,
// Issuer, Audience or AttributeValue. Empty when fine, else why not.
std::string saml_precheck(std::string_view xml, bool allow_sha1);

// Bounded replay cache of assertion IDs, each kept until its NotOnOrAfter. Thread-safe.
class SamlReplayCache {
public:
    explicit SamlReplayCache(std::size_t max_entries = 100000) : max_(max_entries) {}
    // False when `id` was seen and has not expired, or the cache is full of live entries.
    bool insert(const std::string& id, std::int64_t expires_s, std::int64_t now_s);

private:
    std::size_t max_;
    std::mutex mutex_;
    std::map<std::string, std::int64_t> seen_;
};

}  // namespace cvat::helper
