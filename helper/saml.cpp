// SPDX-License-Identifier: GPL-3.0-or-later
// SAML 2.0 identity provider (see saml.hpp).
//
// Who checks what. Lasso 2.8.1 (read in lasso/saml-2.0/login.c, id-ff/provider.c,
// xml/tools.c):
//  - lasso_login_process_paos_response_msg / _process_authn_response_msg: parse the message
//    into GObjects that keep a copy of each element's original XML; verify the Response's
//    enveloped signature with the IdP provider's public keys only (lasso_verify_signature is
//    given the key as dsigCtx->signKey and no keys manager, so xmlsec never takes a key from
//    the message's KeyInfo); the signature must be a direct child of the signed element and
//    its first Reference must be "#<that element's ID>"; transforms limited to C14N and
//    enveloped-signature.
//  - lasso_saml20_login_process_response_status_and_assertion: StatusCode must be Success;
//    at least one Assertion; every Assertion's Issuer must equal the Response's Issuer (a known
//    provider: our LassoServer knows exactly this one IdP); with VERIFY_HINT_MAYBE an Assertion
//    is accepted when the Response signature verified (the Assertion is inside what was signed)
//    or, the Response being unsigned, when the Assertion's own signature verifies (checked on a
//    detached copy of that very Assertion, so an ID elsewhere in the document cannot be what
//    the Reference resolves to); an Assertion signature present and invalid always refuses.
//    The objects we then read (Subject, Conditions, AttributeStatement) are those Assertions.
//  - Not checked by Lasso, so checked here: Audience, Conditions NotBefore/NotOnOrAfter,
//    SubjectConfirmation method bearer + Recipient + NotOnOrAfter, the Response's Destination,
//    InResponseTo of the Response and of the SubjectConfirmationData (Lasso compares only the
//    latter, and only when it has a request_id, which it does not set on the PAOS path),
//    Issuer == entity_id, one Assertion only, the replay cache (Lasso's lives in a
//    LassoSession we do not keep), and before parsing (saml_precheck): no DTD, no duplicate IDs,
//    signature/digest algorithms from our allow-list (Lasso's allows sha1 globally), and no
//    comment or PI inside NameID/Issuer/Audience/AttributeValue (libxml2's content of
//    "ali<!---->ce" is "alice", but a comment is outside what C14N signs: refused, never read).
#include "saml.hpp"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <mutex>
#include <set>

// libxml2/xmlsec/glib first: Lasso's headers include them inside extern "C", where ICU's
// C++ templates (pulled in by libxml2's encoding.h) do not compile.
#include <glib.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/crypto.h>

#include <lasso/lasso.h>
#include <lasso/xml/saml-2.0/samlp2_authn_request.h>
#include <lasso/saml-2.0/ecp.h>
#include <lasso/xml/misc_text_node.h>
#include <lasso/xml/saml-2.0/samlp2_response.h>
#include <lasso/xml/saml-2.0/saml2_assertion.h>
#include <lasso/xml/saml-2.0/saml2_attribute.h>
#include <lasso/xml/saml-2.0/saml2_attribute_statement.h>
#include <lasso/xml/saml-2.0/saml2_attribute_value.h>
#include <lasso/xml/saml-2.0/saml2_audience_restriction.h>
#include <lasso/xml/saml-2.0/saml2_subject_confirmation_data.h>

#include "http.hpp"
#include "log.hpp"

namespace cvat::helper {

using proto::Status;

namespace {

constexpr const char* kProtocolNs = "urn:oasis:names:tc:SAML:2.0:protocol";
constexpr const char* kAssertionNs = "urn:oasis:names:tc:SAML:2.0:assertion";
constexpr const char* kMetadataNs = "urn:oasis:names:tc:SAML:2.0:metadata";
constexpr const char* kDsigNs = "http://www.w3.org/2000/09/xmldsig#";
constexpr const char* kBindingSoap = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP";
constexpr const char* kBindingPaos = "urn:oasis:names:tc:SAML:2.0:bindings:PAOS";
constexpr const char* kBindingPost = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
constexpr const char* kBindingRedirect = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
constexpr const char* kBearer = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
// A SAMLResponse larger than this is not a password (IdPs send a few KB; Entra ~10 KB).
constexpr std::size_t kMaxResponse = 256 * 1024;
constexpr std::int64_t kDefaultMetadataTtlS = 3600;   // when metadata gives no cacheDuration
constexpr std::int64_t kMetadataRetryS = 60;          // after a failed refresh, keep the old copy this long

// ---- small XML helpers over libxml2 -------------------------------------------------------

struct DocFree {
    void operator()(xmlDoc* d) const noexcept { xmlFreeDoc(d); }
};
using DocPtr = std::unique_ptr<xmlDoc, DocFree>;

// No network, no entity substitution, no DTD loading; huge documents refused by the caller.
DocPtr parse_xml(std::string_view text) {
    if (text.size() > (8u << 20)) return nullptr;
    return DocPtr(xmlReadMemory(text.data(), static_cast<int>(text.size()), "noname.xml", nullptr,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
}

bool is(const xmlNode* n, const char* ns, const char* name) {
    return n != nullptr && n->type == XML_ELEMENT_NODE && n->ns != nullptr &&
           std::strcmp(reinterpret_cast<const char*>(n->ns->href), ns) == 0 &&
           std::strcmp(reinterpret_cast<const char*>(n->name), name) == 0;
}

std::string prop(const xmlNode* n, const char* name) {
    xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
    if (v == nullptr) return {};
    std::string s(reinterpret_cast<const char*>(v));
    xmlFree(v);
    return s;
}

std::vector<const xmlNode*> children(const xmlNode* n, const char* ns, const char* name) {
    std::vector<const xmlNode*> out;
    if (n == nullptr) return out;
    for (const xmlNode* c = n->children; c != nullptr; c = c->next)
        if (is(c, ns, name)) out.push_back(c);
    return out;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return out;
}

bool decode_base64(std::string_view text, std::string& out) {
    std::string clean;
    clean.reserve(text.size());
    for (char c : text) {
        if (c == '\r' || c == '\n' || c == ' ' || c == '\t') continue;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
              c == '='))
            return false;
        clean.push_back(c);
    }
    if (clean.empty() || clean.size() % 4 != 0) return false;
    out.resize(clean.size() / 4 * 3);
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
    if (n < 0) return false;
    std::size_t len = static_cast<std::size_t>(n);
    if (clean.size() >= 1 && clean[clean.size() - 1] == '=') --len;
    if (clean.size() >= 2 && clean[clean.size() - 2] == '=') --len;
    out.resize(len);
    return true;
}

// xsd:dateTime as SAML uses it (UTC, "Z", optional fraction) → seconds; -1 when malformed.
std::int64_t parse_time(const char* text) {
    if (text == nullptr) return -1;
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, used = 0;
    if (std::sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &used) != 6) return -1;
    const char* rest = text + used;
    if (*rest == '.')
        for (++rest; *rest >= '0' && *rest <= '9'; ++rest) {}
    if (std::strcmp(rest, "Z") != 0 && std::strcmp(rest, "+00:00") != 0) return -1;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return static_cast<std::int64_t>(timegm(&tm));
}

std::string iso_time(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// xsd:duration, the parts metadata uses (PnDTnHnMnS) → seconds; -1 when malformed.
std::int64_t parse_duration(const std::string& text) {
    if (text.size() < 2 || text[0] != 'P') return -1;
    std::int64_t total = 0, num = 0;
    bool in_time = false, have = false;
    for (std::size_t i = 1; i < text.size(); ++i) {
        char c = text[i];
        if (c >= '0' && c <= '9') {
            num = num * 10 + (c - '0');
            have = true;
            if (num > 100000000) return -1;
            continue;
        }
        if (c == '.') {  // fractional seconds: skip to S
            while (i + 1 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '9') ++i;
            continue;
        }
        if (c == 'T') { in_time = true; continue; }
        if (!have) return -1;
        switch (c) {
            case 'Y': total += num * 365 * 86400; break;
            case 'M': total += in_time ? num * 60 : num * 30 * 86400; break;
            case 'W': total += num * 7 * 86400; break;
            case 'D': total += num * 86400; break;
            case 'H': total += num * 3600; break;
            case 'S': total += num; break;
            default: return -1;
        }
        num = 0;
        have = false;
    }
    return total;
}

bool url_host(const std::string& url, std::string& scheme, std::string& host) {
    auto p = url.find("://");
    if (p == std::string::npos) return false;
    scheme = lower(url.substr(0, p));
    std::string rest = url.substr(p + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (auto at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
    if (!rest.empty() && rest[0] == '[') {
        host = rest.substr(1, rest.find(']') - 1);
    } else {
        host = rest.substr(0, rest.find(':'));
    }
    return !host.empty();
}

bool loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// "" when a password may go to `url`: https://, or http:// to loopback or when allowed.
std::string url_refusal(const std::string& url, bool allow_http) {
    std::string scheme, host;
    if (!url_host(url, scheme, host)) return "not a URL: " + log_safe(url);
    if (scheme == "https") return "";
    if (scheme == "http" && (loopback(host) || allow_http)) return "";
    if (scheme == "http")
        return "refusing http:// to " + log_safe(host) +
               " (not loopback; set allow_insecure_http: true to accept it anyway)";
    return "unsupported URL scheme in " + log_safe(url);
}

std::string xml_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

// PEM text or a path to one → the base64 body (for metadata's ds:X509Certificate); empty on error.
std::string pem_body(const std::string& cert_or_path, std::string& why) {
    std::string pem = cert_or_path;
    if (pem.find("BEGIN CERTIFICATE") == std::string::npos && !pem.empty() && pem[0] != '/') {
        // CVAT's form (python3-saml's x509cert): the certificate's base64 body alone.
        std::string body;
        for (char c : pem)
            if (c != '\n' && c != '\r' && c != ' ' && c != '\t') body += c;
        std::string der;
        if (!decode_base64(body, der) || der.empty()) {
            why = "x509_cert is neither a PEM certificate, its base64 body, nor a path";
            return {};
        }
        return body;
    }
    if (pem.find("BEGIN CERTIFICATE") == std::string::npos) {
        FILE* f = std::fopen(cert_or_path.c_str(), "re");
        if (f == nullptr) {
            why = "x509_cert is neither a PEM certificate nor a readable file: " + log_safe(cert_or_path);
            return {};
        }
        pem.clear();
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && pem.size() < (1u << 20)) pem.append(buf, n);
        std::fclose(f);
    }
    auto b = pem.find("-----BEGIN CERTIFICATE-----");
    auto e = pem.find("-----END CERTIFICATE-----");
    if (b == std::string::npos || e == std::string::npos || e < b) {
        why = "x509_cert holds no PEM certificate";
        return {};
    }
    std::string body;
    for (char c : pem.substr(b + 27, e - b - 27))
        if (c != '\n' && c != '\r' && c != ' ' && c != '\t') body += c;
    std::string der;
    if (!decode_base64(body, der)) {
        why = "x509_cert: the PEM body is not base64";
        return {};
    }
    return body;
}

// ---- Lasso glue ---------------------------------------------------------------------------

std::once_flag g_lasso_once;
int g_lasso_rc = -1;

extern "C" void lasso_log_to_ours(const gchar*, GLogLevelFlags level, const gchar* message, gpointer) {
    // Lasso logs at CRITICAL things that are not (see the recipe's note on LassoEcp on an SP
    // server); everything goes to the debug log, our own checks say what matters.
    (void)level;
    log::debug("lasso: ", log_safe(message != nullptr ? message : ""));
}

bool lasso_ready() {
    std::call_once(g_lasso_once, [] {
        g_lasso_rc = lasso_init();
        g_log_set_handler("Lasso", static_cast<GLogLevelFlags>(G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL |
                                                                G_LOG_FLAG_RECURSION),
                          lasso_log_to_ours, nullptr);
    });
    return g_lasso_rc == 0;
}

template <typename T>
struct GObjectFree {
    void operator()(T* p) const noexcept {
        if (p != nullptr) g_object_unref(p);
    }
};
using ServerPtr = std::unique_ptr<LassoServer, GObjectFree<LassoServer>>;
using LoginPtr = std::unique_ptr<LassoLogin, GObjectFree<LassoLogin>>;
using EcpPtr = std::unique_ptr<LassoEcp, GObjectFree<LassoEcp>>;

std::string lasso_words(int rc) {
    const char* s = lasso_strerror(rc);
    return std::string(s != nullptr ? s : "error") + " (lasso " + std::to_string(rc) + ")";
}

// A Lasso refusal that means "the IdP said no" (wrong password, unknown user, denied).
bool is_status_refusal(int rc) {
    return rc == LASSO_LOGIN_ERROR_STATUS_NOT_SUCCESS || rc == LASSO_LOGIN_ERROR_REQUEST_DENIED ||
           rc == LASSO_LOGIN_ERROR_UNKNOWN_PRINCIPAL || rc == LASSO_LOGIN_ERROR_FEDERATION_NOT_FOUND ||
           rc == LASSO_PROFILE_ERROR_STATUS_NOT_SUCCESS;
}

// The text of an attribute value: a text node (the usual xs:string), else the XML content.
std::string attribute_value_text(LassoSaml2AttributeValue* v) {
    std::string out;
    for (GList* a = v->any; a != nullptr; a = a->next) {
        if (LASSO_IS_MISC_TEXT_NODE(a->data)) {
            const char* c = LASSO_MISC_TEXT_NODE(a->data)->content;
            if (c != nullptr) out += c;
        }
    }
    return out;
}

// ---- the algorithm allow-list ---------------------------------------------------------------

bool allowed_signature(const std::string& alg, bool sha1) {
    static const std::set<std::string> ok = {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"};
    return ok.count(alg) != 0 || (sha1 && alg == "http://www.w3.org/2000/09/xmldsig#rsa-sha1");
}

bool allowed_digest(const std::string& alg, bool sha1) {
    static const std::set<std::string> ok = {"http://www.w3.org/2001/04/xmlenc#sha256",
                                             "http://www.w3.org/2001/04/xmldsig-more#sha384",
                                             "http://www.w3.org/2001/04/xmlenc#sha512"};
    return ok.count(alg) != 0 || (sha1 && alg == "http://www.w3.org/2000/09/xmldsig#sha1");
}

struct Prescan {
    std::string why;
    std::set<std::string> ids;
    int assertions = 0;
    bool sha1 = false;
};

bool guarded_text_element(const xmlNode* n) {
    return is(n, kAssertionNs, "NameID") || is(n, kAssertionNs, "Issuer") || is(n, kAssertionNs, "Audience") ||
           is(n, kAssertionNs, "AttributeValue");
}

void prescan(const xmlNode* n, Prescan& p, bool guarded) {
    for (; n != nullptr && p.why.empty(); n = n->next) {
        if (guarded && (n->type == XML_COMMENT_NODE || n->type == XML_PI_NODE || n->type == XML_ENTITY_REF_NODE)) {
            p.why = "a comment, processing instruction or entity inside " +
                    std::string(reinterpret_cast<const char*>(n->parent->name)) +
                    " (it would change the name read without changing the signature)";
            return;
        }
        if (n->type != XML_ELEMENT_NODE) continue;
        for (const char* idname : {"ID", "AssertionID", "ResponseID"}) {
            std::string id = prop(n, idname);
            if (!id.empty() && !p.ids.insert(id).second) {
                p.why = "the ID " + log_safe(id) + " appears twice (an XML signature wrapping attempt)";
                return;
            }
        }
        if (is(n, kAssertionNs, "Assertion") || is(n, kAssertionNs, "EncryptedAssertion")) ++p.assertions;
        if (is(n, kDsigNs, "SignatureMethod")) {
            std::string alg = prop(n, "Algorithm");
            if (!allowed_signature(alg, p.sha1)) {
                p.why = "signature algorithm not allowed: " + log_safe(alg);
                return;
            }
        }
        if (is(n, kDsigNs, "DigestMethod")) {
            std::string alg = prop(n, "Algorithm");
            if (!allowed_digest(alg, p.sha1)) {
                p.why = "digest algorithm not allowed: " + log_safe(alg);
                return;
            }
        }
        prescan(n->children, p, guarded || guarded_text_element(n));
    }
}

// The Response element inside a SOAP envelope, or the root itself.
const xmlNode* find_response(const xmlNode* root) {
    if (is(root, kProtocolNs, "Response")) return root;
    constexpr const char* kSoap = "http://schemas.xmlsoap.org/soap/envelope/";
    if (is(root, kSoap, "Envelope"))
        for (const xmlNode* b : children(root, kSoap, "Body"))
            for (const xmlNode* c = b->children; c != nullptr; c = c->next)
                if (is(c, kProtocolNs, "Response")) return c;
    return nullptr;
}

bool has_soap_fault(std::string_view body) {
    DocPtr doc = parse_xml(body);
    if (!doc) return false;
    constexpr const char* kSoap = "http://schemas.xmlsoap.org/soap/envelope/";
    const xmlNode* root = xmlDocGetRootElement(doc.get());
    if (!is(root, kSoap, "Envelope")) return false;
    for (const xmlNode* b : children(root, kSoap, "Body"))
        if (!children(b, kSoap, "Fault").empty()) return true;
    return false;
}

// ---- metadata -----------------------------------------------------------------------------

struct Metadata {
    std::string xml;              // one EntityDescriptor, for Lasso
    std::string soap_sso;         // SOAP SingleSignOnService Location (ECP)
    std::int64_t loaded_at = 0;
    std::int64_t refresh_at = 0;  // cacheDuration/validUntil/default
    std::int64_t valid_until = 0; // 0: not given
    std::string source;           // "metadata_url" or "x509_cert + sso_url"
};

// Verifies the metadata's enveloped signature with the pinned certificate only.
std::string verify_metadata_signature(xmlDoc* doc, xmlNode* signed_node, const std::string& cert_path) {
    xmlNode* sig = xmlSecFindChild(signed_node, xmlSecNodeSignature, xmlSecDSigNs);
    if (sig == nullptr) return "the metadata is not signed, and metadata_signing_cert is set";
    std::string id = prop(signed_node, "ID");
    if (!id.empty()) {
        xmlAttr* attr = xmlHasProp(signed_node, reinterpret_cast<const xmlChar*>("ID"));
        xmlAddID(nullptr, doc, reinterpret_cast<const xmlChar*>(id.c_str()), attr);
    }
    xmlSecKeyPtr key = xmlSecCryptoAppKeyLoad(cert_path.c_str(), xmlSecKeyDataFormatCertPem, nullptr, nullptr, nullptr);
    if (key == nullptr) return "metadata_signing_cert " + log_safe(cert_path) + " does not load";
    xmlSecDSigCtxPtr ctx = xmlSecDSigCtxCreate(nullptr);
    if (ctx == nullptr) {
        xmlSecKeyDestroy(key);
        return "xmlsec context";
    }
    ctx->signKey = key;  // the pinned key only: KeyInfo in the document is not read for a key
    ctx->enabledReferenceUris = static_cast<xmlSecTransformUriType>(xmlSecTransformUriTypeSameDocument |
                                                                     xmlSecTransformUriTypeEmpty);
    std::string why;
    if (xmlSecDSigCtxVerify(ctx, sig) < 0 || ctx->status != xmlSecDSigStatusSucceeded) {
        why = "the metadata's signature does not verify with metadata_signing_cert";
    } else {
        auto* ref = static_cast<xmlSecDSigReferenceCtxPtr>(xmlSecPtrListGetItem(&ctx->signedInfoReferences, 0));
        std::string uri = ref != nullptr && ref->uri != nullptr ? reinterpret_cast<const char*>(ref->uri) : "?";
        if (!(uri == "" || (!id.empty() && uri == "#" + id)))
            why = "the metadata's signature covers another element (" + log_safe(uri) + ")";
    }
    xmlSecDSigCtxDestroy(ctx);
    return why;
}

}  // namespace

// ---- pure pieces ---------------------------------------------------------------------------

bool looks_like_saml_response(std::string_view password) {
    if (password.size() < 64 || password.size() > kMaxResponse) return false;
    // Base64 of "<" is "P"; of "<?xml" "PD94"; of a BOM+"<" "77u/". Cheap first gate.
    if (password[0] != 'P' && password.substr(0, 4) != "77u/") return false;
    std::string xml;
    if (!decode_base64(password, xml)) return false;
    // The root start tag: a Response in the protocol namespace, by prefix binding or default.
    auto lt = xml.find('<');
    while (lt != std::string::npos && lt + 1 < xml.size() && (xml[lt + 1] == '?' || xml[lt + 1] == '!'))
        lt = xml.find('<', xml.find('>', lt));
    if (lt == std::string::npos) return false;
    auto gt = xml.find('>', lt);
    if (gt == std::string::npos) return false;
    std::string tag = xml.substr(lt + 1, gt - lt - 1);
    std::string name = tag.substr(0, tag.find_first_of(" \t\r\n/"));
    std::string prefix;
    if (auto c = name.find(':'); c != std::string::npos) {
        prefix = name.substr(0, c);
        name = name.substr(c + 1);
    }
    if (name != "Response") return false;
    std::string decl = prefix.empty() ? "xmlns=" : "xmlns:" + prefix + "=";
    auto d = tag.find(decl);
    // The value after its opening quote; `xmlns:p=` ending the tag has none (compare() past
    // the end would throw std::out_of_range).
    if (d == std::string::npos || d + decl.size() + 1 > tag.size()) return false;
    return tag.compare(d + decl.size() + 1, std::strlen(kProtocolNs), kProtocolNs) == 0;
}

std::string saml_response_issuer(std::string_view password) {
    std::string xml;
    if (password.size() > kMaxResponse || !decode_base64(password, xml)) return {};
    DocPtr doc = parse_xml(xml);
    if (!doc) return {};
    const xmlNode* r = find_response(xmlDocGetRootElement(doc.get()));
    for (const xmlNode* i : children(r, kAssertionNs, "Issuer")) {
        xmlChar* c = xmlNodeGetContent(i);
        std::string s = c != nullptr ? reinterpret_cast<const char*>(c) : "";
        xmlFree(c);
        return s;
    }
    return {};
}

std::string saml_precheck(std::string_view xml, bool allow_sha1) {
    if (xml.find("<!DOCTYPE") != std::string_view::npos || xml.find("<!ENTITY") != std::string_view::npos)
        return "the message holds a DTD";
    DocPtr doc = parse_xml(xml);
    if (!doc) return "the message is not well-formed XML";
    const xmlNode* root = xmlDocGetRootElement(doc.get());
    Prescan p;
    p.sha1 = allow_sha1;
    prescan(root, p, false);
    if (!p.why.empty()) return p.why;
    if (find_response(root) == nullptr) return "no samlp:Response in the message";
    if (p.assertions > 1) return "more than one assertion in the response";
    return "";
}

SamlSpIdentity saml_sp_identity(const IdentityProvider& idp, const std::string& cvat_base_url) {
    SamlSpIdentity sp;
    std::string base = cvat_base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    if (!base.empty()) {
        // As CVAT registers itself (cvat/apps/iam SAML views).
        sp.entity_id = base + "/api/auth/saml/" + idp.id + "/metadata/";
        sp.acs_url = base + "/api/auth/saml/" + idp.id + "/acs/";
    }
    if (!idp.sp_entity_id.empty()) sp.entity_id = idp.sp_entity_id;
    if (!idp.acs_url.empty()) sp.acs_url = idp.acs_url;
    return sp;
}

namespace {
// The values of the attribute whose Name (or FriendlyName) is `name`; null when none.
const std::vector<std::string>* find_attribute(const SamlAttributes& attributes, const std::string& name) {
    if (name.empty()) return nullptr;
    for (const auto& [n, values] : attributes)
        if (n == name) return &values;
    return nullptr;
}
std::string first_value(const SamlAttributes& attributes, const IdentityProvider& idp, const char* key) {
    auto m = idp.attribute_mapping.find(key);
    if (m == idp.attribute_mapping.end()) return {};
    const auto* v = find_attribute(attributes, m->second);
    return v != nullptr && !v->empty() ? v->front() : std::string();
}
}  // namespace

SamlUser map_saml_user(const IdentityProvider& idp, SelectionMode mode, std::string_view login,
                       std::string_view issuer, std::string_view name_id, const SamlAttributes& attributes) {
    SamlUser u;
    u.issuer = issuer;
    u.name_id = name_id;
    u.uid = first_value(attributes, idp, "uid");
    u.email = first_value(attributes, idp, "email");
    u.first_name = first_value(attributes, idp, "first_name");
    u.last_name = first_value(attributes, idp, "last_name");
    const std::string verified = lower(first_value(attributes, idp, "email_verified"));
    u.email_verified = verified == "true" || verified == "1" || verified == "yes";
    std::string username = first_value(attributes, idp, "username");
    if (username.empty()) username = u.uid;
    if (username.empty()) username = std::string(name_id);
    // As oidc.cpp: under email_address selection the name is the email (the name the user
    // is routed by, and so the one sshd and NSS see), else username, uid, NameID.
    (void)login;
    if (mode == SelectionMode::email_address && !u.email.empty()) username = u.email;
    u.username = username;
    return u;
}

void resolve_saml_role(const IdentityProvider& idp, const SamlAttributes& attributes, SamlUser& user) {
    if (const auto* v = find_attribute(attributes, idp.role_attribute)) user.role_attribute_values = *v;
    user.role = resolve_claim_role(user.role_attribute_values, idp.role_values, idp.default_role);
}

bool SamlReplayCache::insert(const std::string& id, std::int64_t expires_s, std::int64_t now_s) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = seen_.find(id); it != seen_.end()) {
        if (it->second >= now_s) return false;
        seen_.erase(it);
    }
    if (seen_.size() >= max_) {
        for (auto it = seen_.begin(); it != seen_.end();)
            it = it->second < now_s ? seen_.erase(it) : std::next(it);
        if (seen_.size() >= max_) return false;  // full of live assertions: refuse, never forget one
    }
    seen_.emplace(id, expires_s);
    return true;
}

// ---- the provider ---------------------------------------------------------------------------

namespace {

class SamlProviderImpl final : public SamlProvider {
public:
    SamlProviderImpl(IdentityProvider idp, const SsoConfig& sso, SamlSpIdentity sp, WallClock clock)
        : idp_(std::move(idp)), mode_(sso.selection_mode), sp_(std::move(sp)), clock_(std::move(clock)) {
        http_.ca_file = idp_.ca_file;
        http_.max_body = 4u << 20;  // aggregate metadata can be large; responses are small
    }

    const IdentityProvider& config() const override { return idp_; }
    const SamlSpIdentity& sp() const override { return sp_; }

    std::string sp_metadata() const override {
        // No KeyDescriptor: the SP has no key; ECP requests go unsigned (SAML ECP profile §4.2.3
        // lets the IdP accept them) and assertions are not encrypted to us.
        return "<?xml version=\"1.0\"?>\n"
               "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"" +
               xml_escape(sp_.entity_id) +
               "\">\n"
               " <md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\" "
               "AuthnRequestsSigned=\"false\" WantAssertionsSigned=\"true\">\n"
               "  <md:AssertionConsumerService index=\"0\" isDefault=\"true\" Binding=\"" +
               std::string(kBindingPost) + "\" Location=\"" + xml_escape(sp_.acs_url) +
               "\"/>\n"
               "  <md:AssertionConsumerService index=\"1\" Binding=\"" +
               std::string(kBindingPaos) + "\" Location=\"" + xml_escape(sp_.acs_url) +
               "\"/>\n"
               " </md:SPSSODescriptor>\n"
               "</md:EntityDescriptor>\n";
    }

    SamlOutcome password_login(std::string_view user, const Secret& password) override;
    SamlOutcome assertion_login(const Secret& saml_response) override;
    proto::BackendState probe() override;

private:
    // The current metadata, fetched or refreshed when due; an old copy stays in use for a
    // while when a refresh fails (until its validUntil).
    Result<std::shared_ptr<const Metadata>> metadata(std::vector<std::string>& trace);
    Result<std::shared_ptr<const Metadata>> load_metadata();
    Result<ServerPtr> server(const Metadata& md);
    // A LassoServer for `md` from the pool (building one loads the system CA store through
    // xmlsec's keys manager: ~70 ms), back into it after the login. One server serves one
    // login at a time: Lasso caches provider keys in it lazily, without locks.
    struct PooledServer {
        SamlProviderImpl* owner;
        std::shared_ptr<const Metadata> md;
        ServerPtr server;
        ~PooledServer() {
            if (server) owner->give_back(md, std::move(server));
        }
    };
    Result<std::unique_ptr<PooledServer>> take_server(const std::shared_ptr<const Metadata>& md);
    void give_back(const std::shared_ptr<const Metadata>& md, ServerPtr server);
    // Lasso has parsed and checked signatures and status: our checks, then the user.
    SamlOutcome finish(LassoLogin* login, const std::string& request_id, std::string_view login_name,
                       std::vector<std::string> trace);

    IdentityProvider idp_;
    SelectionMode mode_;
    SamlSpIdentity sp_;
    WallClock clock_;
    HttpOptions http_;
    SamlReplayCache replay_;
    std::mutex mutex_;
    std::mutex pool_mutex_;
    std::shared_ptr<const Metadata> pool_md_;
    std::vector<ServerPtr> pool_;
    static constexpr std::size_t kPoolMax = 16;   // the daemon's worker threads, with room
    std::shared_ptr<const Metadata> md_;
    std::string md_error_;
    std::int64_t md_failed_at_ = 0;
};

Status status_of_error(ErrorCode code) {
    return code == ErrorCode::unavailable || code == ErrorCode::timeout ? Status::unavailable : Status::internal;
}

SamlOutcome refused(Status st, std::string message, std::vector<std::string> trace) {
    SamlOutcome o;
    o.status = st;
    o.message = std::move(message);
    o.trace = std::move(trace);
    o.trace.push_back("refused: " + o.message);
    return o;
}

Result<std::shared_ptr<const Metadata>> SamlProviderImpl::load_metadata() {
    auto md = std::make_shared<Metadata>();
    const std::int64_t now = clock_();
    md->loaded_at = now;
    if (idp_.metadata_url.empty()) {
        std::string why;
        std::string cert = pem_body(idp_.x509_cert, why);
        if (cert.empty()) return fail(ErrorCode::config, why);
        const std::string soap = !idp_.ecp_url.empty() ? idp_.ecp_url : idp_.sso_url;
        md->soap_sso = soap;
        md->source = "x509_cert + sso_url";
        md->refresh_at = INT64_MAX;
        md->xml = "<md:EntityDescriptor xmlns:md=\"" + std::string(kMetadataNs) +
                  "\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"" + xml_escape(idp_.entity_id) +
                  "\"><md:IDPSSODescriptor protocolSupportEnumeration=\"" + kProtocolNs +
                  "\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>" + cert +
                  "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
                  "<md:SingleSignOnService Binding=\"" + kBindingRedirect + "\" Location=\"" +
                  xml_escape(idp_.sso_url) + "\"/><md:SingleSignOnService Binding=\"" + kBindingSoap +
                  "\" Location=\"" + xml_escape(soap) + "\"/></md:IDPSSODescriptor></md:EntityDescriptor>";
        return std::shared_ptr<const Metadata>(std::move(md));
    }
    if (std::string why = url_refusal(idp_.metadata_url, idp_.allow_insecure_http); !why.empty())
        return fail(ErrorCode::config, "metadata_url: " + why);
    auto r = http_get(idp_.metadata_url, http_);
    if (!r) return fail(ErrorCode::unavailable, "metadata: " + r.error().detail);
    if (r->status != 200)
        return fail(ErrorCode::unavailable, "metadata: " + log_safe(idp_.metadata_url) + " answered HTTP " +
                                                std::to_string(r->status));
    if (r->body.find("<!DOCTYPE") != std::string::npos) return fail(ErrorCode::unavailable, "metadata holds a DTD");
    DocPtr doc = parse_xml(r->body);
    if (!doc) return fail(ErrorCode::unavailable, "metadata is not well-formed XML");
    xmlNode* root = xmlDocGetRootElement(doc.get());
    if (!idp_.metadata_signing_cert.empty()) {
        if (std::string why = verify_metadata_signature(doc.get(), root, idp_.metadata_signing_cert); !why.empty())
            return fail(ErrorCode::unavailable, why);
    }
    // cacheDuration/validUntil: on the root, or on the entity (the smaller wins).
    std::int64_t ttl = kDefaultMetadataTtlS;
    auto apply_times = [&](const xmlNode* n) {
        if (std::string cd = prop(n, "cacheDuration"); !cd.empty())
            if (auto d = parse_duration(cd); d > 0) ttl = std::min(ttl, d);
        if (std::string vu = prop(n, "validUntil"); !vu.empty()) {
            auto t = parse_time(vu.c_str());
            if (t > 0 && (md->valid_until == 0 || t < md->valid_until)) md->valid_until = t;
        }
    };
    apply_times(root);
    xmlNode* entity = nullptr;
    if (is(root, kMetadataNs, "EntityDescriptor")) {
        entity = root;
    } else if (is(root, kMetadataNs, "EntitiesDescriptor")) {
        for (xmlNode* c = root->children; c != nullptr; c = c->next)
            if (is(c, kMetadataNs, "EntityDescriptor") && prop(c, "entityID") == idp_.entity_id) entity = c;
    }
    if (entity == nullptr || prop(entity, "entityID") != idp_.entity_id)
        return fail(ErrorCode::unavailable, "the metadata describes no entity " + log_safe(idp_.entity_id) +
                                                " (entity_id must equal the IdP's entityID)");
    apply_times(entity);
    if (md->valid_until != 0 && md->valid_until < now)
        return fail(ErrorCode::unavailable, "the metadata expired (validUntil " + iso_time(md->valid_until) + ")");
    for (const xmlNode* d : children(entity, kMetadataNs, "IDPSSODescriptor"))
        for (const xmlNode* s : children(d, kMetadataNs, "SingleSignOnService"))
            if (prop(s, "Binding") == kBindingSoap && md->soap_sso.empty()) md->soap_sso = prop(s, "Location");
    md->refresh_at = now + ttl;
    if (md->valid_until != 0) md->refresh_at = std::min(md->refresh_at, md->valid_until);
    md->source = "metadata_url";
    xmlBuffer* buf = xmlBufferCreate();
    xmlNodeDump(buf, doc.get(), entity, 0, 0);
    md->xml.assign(reinterpret_cast<const char*>(xmlBufferContent(buf)), xmlBufferLength(buf));
    xmlBufferFree(buf);
    // Keep the namespace declarations the entity inherits from an aggregate's root.
    if (entity != root) {
        DocPtr copy(xmlNewDoc(reinterpret_cast<const xmlChar*>("1.0")));
        xmlNode* e = xmlDocCopyNode(entity, copy.get(), 1);
        xmlDocSetRootElement(copy.get(), e);
        xmlReconciliateNs(copy.get(), e);
        xmlChar* out = nullptr;
        int size = 0;
        xmlDocDumpMemory(copy.get(), &out, &size);
        md->xml.assign(reinterpret_cast<const char*>(out), static_cast<std::size_t>(size));
        xmlFree(out);
    }
    return std::shared_ptr<const Metadata>(std::move(md));
}

Result<std::shared_ptr<const Metadata>> SamlProviderImpl::metadata(std::vector<std::string>& trace) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::int64_t now = clock_();
    if (md_ && now < md_->refresh_at) return md_;
    if (!md_ && md_failed_at_ != 0 && now - md_failed_at_ < 5) return fail(ErrorCode::unavailable, md_error_);
    if (md_ && md_failed_at_ != 0 && now - md_failed_at_ < kMetadataRetryS) return md_;
    auto fresh = load_metadata();
    if (!fresh) {
        md_error_ = fresh.error().detail;
        md_failed_at_ = now;
        log::warning("saml ", idp_.id, ": ", md_error_);
        // An old copy still inside its validUntil stays in use.
        if (md_ && (md_->valid_until == 0 || now < md_->valid_until)) {
            trace.push_back("metadata refresh failed (" + md_error_ + "); using the copy loaded at " +
                            iso_time(md_->loaded_at));
            return md_;
        }
        return tl::unexpected<Error>(fresh.error());
    }
    md_ = *fresh;
    md_failed_at_ = 0;
    md_error_.clear();
    trace.push_back("metadata loaded from " + md_->source + (md_->soap_sso.empty() ? "" : "; ECP endpoint " +
                                                                                          log_safe(md_->soap_sso)));
    return md_;
}

Result<ServerPtr> SamlProviderImpl::server(const Metadata& md) {
    if (!lasso_ready()) return fail(ErrorCode::internal, "Lasso failed to initialise");
    const std::string spmd = sp_metadata();
    ServerPtr s(lasso_server_new_from_buffers(spmd.c_str(), nullptr, nullptr, nullptr));
    if (!s) return fail(ErrorCode::internal, "Lasso refused our SP metadata");
    // No public_key/ca_cert_chain argument: the IdP's keys are the metadata's (or x509_cert's)
    // KeyDescriptors only, and no keys manager exists that could accept a key from KeyInfo.
    int rc = lasso_server_add_provider_from_buffer(s.get(), LASSO_PROVIDER_ROLE_IDP, md.xml.c_str(), nullptr, nullptr);
    if (rc != 0) return fail(ErrorCode::unavailable, "Lasso refused the IdP metadata: " + lasso_words(rc));
    return s;
}

Result<std::unique_ptr<SamlProviderImpl::PooledServer>> SamlProviderImpl::take_server(
    const std::shared_ptr<const Metadata>& md) {
    auto out = std::unique_ptr<PooledServer>(new PooledServer{this, md, nullptr});
    {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        if (pool_md_ != md) {
            pool_.clear();
            pool_md_ = md;
        }
        if (!pool_.empty()) {
            out->server = std::move(pool_.back());
            pool_.pop_back();
            return Result<std::unique_ptr<PooledServer>>(std::move(out));
        }
    }
    auto s = server(*md);
    if (!s) return tl::unexpected<Error>(s.error());
    out->server = std::move(*s);
    return Result<std::unique_ptr<PooledServer>>(std::move(out));
}

void SamlProviderImpl::give_back(const std::shared_ptr<const Metadata>& md, ServerPtr server) {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (pool_md_ == md && pool_.size() < kPoolMax) pool_.push_back(std::move(server));
}

SamlOutcome SamlProviderImpl::finish(LassoLogin* login, const std::string& request_id, std::string_view login_name,
                                     std::vector<std::string> trace) {
    LassoProfile* profile = LASSO_PROFILE(login);
    if (!LASSO_IS_SAMLP2_RESPONSE(profile->response))
        return refused(Status::auth_err, "the IdP's answer is not a SAML response", std::move(trace));
    LassoSamlp2Response* resp = LASSO_SAMLP2_RESPONSE(profile->response);
    LassoSamlp2StatusResponse* sr = LASSO_SAMLP2_STATUS_RESPONSE(resp);
    const std::int64_t now = clock_();
    const std::int64_t leeway = 60;
    auto no = [&](const std::string& why) { return refused(Status::auth_err, "SAML response refused: " + why, trace); };

    if (sr->Issuer == nullptr || sr->Issuer->content == nullptr || idp_.entity_id != sr->Issuer->content)
        return no("the Response's Issuer is not " + idp_.entity_id);
    if (sr->Destination != nullptr && sp_.acs_url != sr->Destination)
        return no("Destination " + log_safe(sr->Destination) + " is not our ACS " + sp_.acs_url);
    if (!request_id.empty() && (sr->InResponseTo == nullptr || request_id != sr->InResponseTo))
        return no("InResponseTo does not name our request");
    if (g_list_length(resp->Assertion) != 1 || resp->EncryptedAssertion != nullptr)
        return no("expected exactly one (unencrypted) assertion");
    auto* a = LASSO_SAML2_ASSERTION(resp->Assertion->data);
    if (a->Issuer == nullptr || a->Issuer->content == nullptr || idp_.entity_id != a->Issuer->content)
        return no("the Assertion's Issuer is not " + idp_.entity_id);
    if (a->ID == nullptr) return no("the assertion has no ID");
    // Conditions: window and audience.
    std::int64_t expires = INT64_MAX;
    LassoSaml2Conditions* c = a->Conditions;
    if (c == nullptr) return no("the assertion has no Conditions");
    if (c->NotBefore != nullptr) {
        auto t = parse_time(c->NotBefore);
        if (t < 0) return no("NotBefore is malformed");
        if (now + leeway < t) return no("the assertion is not valid yet (NotBefore " + std::string(c->NotBefore) + ")");
    }
    if (c->NotOnOrAfter != nullptr) {
        auto t = parse_time(c->NotOnOrAfter);
        if (t < 0) return no("NotOnOrAfter is malformed");
        if (now - leeway >= t) return no("the assertion expired (NotOnOrAfter " + std::string(c->NotOnOrAfter) + ")");
        expires = std::min(expires, t);
    }
    if (c->AudienceRestriction == nullptr) return no("the assertion has no AudienceRestriction");
    for (GList* l = c->AudienceRestriction; l != nullptr; l = l->next) {
        auto* ar = static_cast<LassoSaml2AudienceRestriction*>(l->data);
        // Lasso keeps one Audience per restriction (the schema allows several; the last wins):
        // a restriction that does not name us refuses.
        if (ar == nullptr || ar->Audience == nullptr || sp_.entity_id != ar->Audience)
            return no("the Audience is not our SP entity ID " + sp_.entity_id);
    }
    // Subject and its bearer confirmation.
    LassoSaml2Subject* subj = a->Subject;
    if (subj == nullptr || subj->NameID == nullptr || subj->NameID->content == nullptr)
        return no("the assertion has no Subject NameID");
    LassoSaml2SubjectConfirmation* sc = subj->SubjectConfirmation;
    if (sc == nullptr || sc->Method == nullptr || std::strcmp(sc->Method, kBearer) != 0 ||
        sc->SubjectConfirmationData == nullptr)
        return no("no bearer SubjectConfirmation");
    LassoSaml2SubjectConfirmationData* scd = sc->SubjectConfirmationData;
    if (scd->Recipient == nullptr || sp_.acs_url != scd->Recipient)
        return no("Recipient " + log_safe(scd->Recipient != nullptr ? scd->Recipient : "(none)") +
                  " is not our ACS " + sp_.acs_url);
    if (scd->NotOnOrAfter == nullptr) return no("the SubjectConfirmationData has no NotOnOrAfter");
    {
        auto t = parse_time(scd->NotOnOrAfter);
        if (t < 0) return no("NotOnOrAfter is malformed");
        if (now - leeway >= t) return no("the assertion expired (NotOnOrAfter " + std::string(scd->NotOnOrAfter) + ")");
        expires = std::min(expires, t);
    }
    if (scd->NotBefore != nullptr) {
        auto t = parse_time(scd->NotBefore);
        if (t < 0 || now + leeway < t) return no("the subject confirmation is not valid yet");
    }
    if (!request_id.empty() && (scd->InResponseTo == nullptr || request_id != scd->InResponseTo))
        return no("the subject confirmation's InResponseTo does not name our request");
    trace.push_back("signature, issuer, audience, recipient, validity window" +
                    std::string(request_id.empty() ? "" : ", InResponseTo") + " checked");
    // Attributes, from this same assertion.
    SamlAttributes attrs;
    for (GList* s = a->AttributeStatement; s != nullptr; s = s->next) {
        auto* st = static_cast<LassoSaml2AttributeStatement*>(s->data);
        if (!LASSO_IS_SAML2_ATTRIBUTE_STATEMENT(st)) continue;
        for (GList* l = st->Attribute; l != nullptr; l = l->next) {
            if (!LASSO_IS_SAML2_ATTRIBUTE(l->data)) continue;
            auto* at = LASSO_SAML2_ATTRIBUTE(l->data);
            std::vector<std::string> values;
            for (GList* v = at->AttributeValue; v != nullptr; v = v->next)
                if (LASSO_IS_SAML2_ATTRIBUTE_VALUE(v->data))
                    values.push_back(attribute_value_text(LASSO_SAML2_ATTRIBUTE_VALUE(v->data)));
            if (at->Name != nullptr) attrs.emplace_back(at->Name, values);
            if (at->FriendlyName != nullptr && (at->Name == nullptr || std::strcmp(at->Name, at->FriendlyName) != 0))
                attrs.emplace_back(at->FriendlyName, values);
        }
    }
    for (const auto& [name, values] : attrs) {
        std::string shown;
        for (const auto& v : values) shown += (shown.empty() ? "" : ", ") + log_safe(v);
        trace.push_back("attribute " + log_safe(name) + ": " + shown);
    }
    if (!replay_.insert(a->ID, expires, now))
        return no("assertion " + log_safe(a->ID) + " was used before (replay)");

    SamlOutcome out;
    out.user = map_saml_user(idp_, mode_, login_name, idp_.entity_id, subj->NameID->content, attrs);
    resolve_saml_role(idp_, attrs, out.user);
    trace.push_back("NameID " + log_safe(out.user.name_id) + "; user name " + log_safe(out.user.username));
    const RoleDecision& rd = out.user.role;
    if (!idp_.role_attribute.empty()) {
        if (rd.from_default)
            trace.push_back("role: no value of " + idp_.role_attribute + " matched role_values; default_role " +
                            proto::role_name(idp_.default_role));
        else
            for (const auto& m : rd.matches)
                trace.push_back(std::string("role ") + proto::role_name(m.role) + " from " + idp_.role_attribute +
                                " = " + log_safe(m.group));
    }
    out.trace = std::move(trace);
    if (rd.role == proto::Role::none) {
        out.status = Status::perm_denied;
        out.message = "no CVAT role for " + out.user.username + " at " + idp_.name;
        out.trace.push_back("refused: " + out.message);
        return out;
    }
    out.status = Status::ok;
    out.trace.push_back(std::string("signed in as ") + out.user.username + " with the role " + proto::role_name(rd.role));
    return out;
}

SamlOutcome SamlProviderImpl::password_login(std::string_view user, const Secret& password) {
    std::vector<std::string> trace{"SAML ECP login at " + idp_.id + " (" + idp_.entity_id + ")"};
    auto md = metadata(trace);
    if (!md) return refused(Status::unavailable, idp_.name + ": " + md.error().detail, std::move(trace));
    std::string endpoint = (*md)->soap_sso;
    if (endpoint.empty()) endpoint = idp_.ecp_url;
    if (endpoint.empty())
        return refused(Status::unavailable,
                       idp_.name + " offers no ECP: its metadata has no SOAP SingleSignOnService (enable ECP for "
                                   "this SP at the IdP, or set ecp_url)",
                       std::move(trace));
    if (std::string why = url_refusal(endpoint, idp_.allow_insecure_http); !why.empty())
        return refused(Status::unavailable, idp_.name + ": ECP endpoint: " + why, std::move(trace));
    auto pooled = take_server(*md);
    if (!pooled) return refused(status_of_error(pooled.error().code), pooled.error().detail, std::move(trace));
    LassoServer* srv = (*pooled)->server.get();

    LoginPtr login(lasso_login_new(srv));
    if (!login) return refused(Status::internal, "lasso_login_new failed", std::move(trace));
    LassoProfile* profile = LASSO_PROFILE(login.get());
    lasso_profile_set_signature_hint(profile, LASSO_PROFILE_SIGNATURE_HINT_FORBID);
    lasso_profile_set_signature_verify_hint(profile, LASSO_PROFILE_SIGNATURE_VERIFY_HINT_MAYBE);
    int rc = lasso_login_init_authn_request(login.get(), idp_.entity_id.c_str(), LASSO_HTTP_METHOD_PAOS);
    if (rc != 0) return refused(Status::internal, "building the AuthnRequest: " + lasso_words(rc), std::move(trace));
    auto* req = LASSO_SAMLP2_AUTHN_REQUEST(profile->request);
    // ProtocolBinding PAOS: the IdP picks our PAOS ACS by it (the POST ACS has the same URL);
    // NameID format unspecified: the IdP's own choice (a transient NameID names nobody).
    g_free(req->ProtocolBinding);
    req->ProtocolBinding = g_strdup(kBindingPaos);
    if (req->NameIDPolicy != nullptr) {
        req->NameIDPolicy->AllowCreate = TRUE;
        g_free(req->NameIDPolicy->Format);
        req->NameIDPolicy->Format = g_strdup("urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified");
    }
    rc = lasso_login_build_authn_request_msg(login.get());
    if (rc != 0 || profile->msg_body == nullptr)
        return refused(Status::internal, "building the AuthnRequest: " + lasso_words(rc), std::move(trace));
    const std::string request_id = LASSO_SAMLP2_REQUEST_ABSTRACT(req)->ID != nullptr
                                       ? LASSO_SAMLP2_REQUEST_ABSTRACT(req)->ID
                                       : "";
    // The ECP client half: strip the PAOS headers into a SOAP request for the IdP.
    EcpPtr ecp(lasso_ecp_new(srv));
    rc = lasso_ecp_process_authn_request_msg(ecp.get(), profile->msg_body);
    if (rc != 0 || LASSO_PROFILE(ecp.get())->msg_body == nullptr)
        return refused(Status::internal, "ECP request: " + lasso_words(rc), std::move(trace));
    trace.push_back("AuthnRequest " + request_id + " (PAOS, unsigned) posted to " + log_safe(endpoint));

    HttpOptions o = http_;
    o.max_body = 1u << 20;
    o.sensitive = false;
    auto r = http_post_soap(endpoint, LASSO_PROFILE(ecp.get())->msg_body, user, &password, o);
    if (!r) {
        if (r.error().code == ErrorCode::invalid_argument)
            return refused(Status::auth_err, "the user name cannot be sent in HTTP Basic", std::move(trace));
        return refused(Status::unavailable, idp_.name + " is unreachable: " + r.error().detail, std::move(trace));
    }
    trace.push_back("IdP answered HTTP " + std::to_string(r->status));
    const std::string_view body = r->text();
    if (r->status == 401 || r->status == 403)
        return refused(Status::auth_err, "the IdP refused the user name or password", std::move(trace));
    if (has_soap_fault(body))
        return refused(Status::auth_err, "the IdP answered with a SOAP fault (wrong user name or password)",
                       std::move(trace));
    if (r->status != 200)
        return refused(Status::unavailable, idp_.name + " answered HTTP " + std::to_string(r->status),
                       std::move(trace));
    if (std::string why = saml_precheck(body, idp_.allow_sha1); !why.empty())
        return refused(Status::auth_err, "SAML response refused: " + why, std::move(trace));
    std::string soap(body);
    rc = lasso_ecp_process_response_msg(ecp.get(), soap.data());
    if (rc != 0 || LASSO_PROFILE(ecp.get())->msg_body == nullptr)
        return refused(Status::auth_err, "the IdP's ECP answer was refused: " + lasso_words(rc), std::move(trace));
    rc = lasso_login_process_paos_response_msg(login.get(), LASSO_PROFILE(ecp.get())->msg_body);
    if (rc != 0) {
        if (is_status_refusal(rc)) {
            std::string detail;
            if (LASSO_IS_SAMLP2_STATUS_RESPONSE(profile->response)) {
                auto* st = LASSO_SAMLP2_STATUS_RESPONSE(profile->response)->Status;
                if (st != nullptr && st->StatusCode != nullptr && st->StatusCode->Value != nullptr)
                    detail = st->StatusCode->Value;
                if (st != nullptr && st->StatusMessage != nullptr) detail += std::string(" ") + st->StatusMessage;
            }
            trace.push_back("IdP status: " + log_safe(detail));
            return refused(Status::auth_err, "the IdP refused the user name or password", std::move(trace));
        }
        return refused(Status::auth_err, "SAML response refused: " + lasso_words(rc), std::move(trace));
    }
    return finish(login.get(), request_id, user, std::move(trace));
}

SamlOutcome SamlProviderImpl::assertion_login(const Secret& saml_response) {
    std::vector<std::string> trace{"SAMLResponse as password, IdP " + idp_.id + " (" + idp_.entity_id + ")"};
    std::string xml;
    if (saml_response.size() > kMaxResponse || !decode_base64(saml_response.view(), xml))
        return refused(Status::auth_err, "the SAMLResponse is not base64", std::move(trace));
    if (std::string why = saml_precheck(xml, idp_.allow_sha1); !why.empty())
        return refused(Status::auth_err, "SAML response refused: " + why, std::move(trace));
    auto md = metadata(trace);
    if (!md) return refused(Status::unavailable, idp_.name + ": " + md.error().detail, std::move(trace));
    auto pooled = take_server(*md);
    if (!pooled) return refused(status_of_error(pooled.error().code), pooled.error().detail, std::move(trace));
    LoginPtr login(lasso_login_new((*pooled)->server.get()));
    if (!login) return refused(Status::internal, "lasso_login_new failed", std::move(trace));
    lasso_profile_set_signature_verify_hint(LASSO_PROFILE(login.get()), LASSO_PROFILE_SIGNATURE_VERIFY_HINT_MAYBE);
    std::string msg(saml_response.view());
    int rc = lasso_login_process_authn_response_msg(login.get(), msg.data());
    if (rc != 0) {
        if (is_status_refusal(rc))
            return refused(Status::auth_err, "the SAMLResponse does not carry a successful login", std::move(trace));
        return refused(Status::auth_err, "SAML response refused: " + lasso_words(rc), std::move(trace));
    }
    return finish(login.get(), "", "", std::move(trace));
}

proto::BackendState SamlProviderImpl::probe() {
    std::vector<std::string> trace;
    auto md = metadata(trace);
    proto::BackendState b;
    b.name = "saml " + idp_.id;
    if (!md) {
        b.up = false;
        b.detail = md.error().detail;
        return b;
    }
    b.up = true;
    const Metadata& m = **md;
    b.detail = "metadata from " + m.source + ", loaded " + iso_time(m.loaded_at) +
               (m.valid_until != 0 ? ", valid until " + iso_time(m.valid_until) : "") +
               (m.refresh_at != INT64_MAX ? ", refresh " + iso_time(m.refresh_at) : "") + "; ECP endpoint " +
               (m.soap_sso.empty() ? (idp_.ecp_url.empty() ? "none (no SOAP SingleSignOnService)" : idp_.ecp_url)
                                   : m.soap_sso) +
               "; SP " + sp_.entity_id;
    return b;
}

}  // namespace

Result<std::unique_ptr<SamlProvider>> SamlProvider::create(IdentityProvider idp, const SsoConfig& sso,
                                                           const std::string& cvat_base_url, WallClock clock) {
    SamlSpIdentity sp = saml_sp_identity(idp, cvat_base_url);
    if (sp.entity_id.empty() || sp.acs_url.empty())
        return fail(ErrorCode::config, "the SP identity is unknown: set helper.cvat_base_url (or CVAT_BASE_URL), "
                                       "or sp_entity_id and acs_url");
    if (idp.metadata_url.empty()) {
        std::string why;
        if (pem_body(idp.x509_cert, why).empty()) return fail(ErrorCode::config, why);
    }
    if (!lasso_ready()) return fail(ErrorCode::internal, "Lasso failed to initialise");
    return std::unique_ptr<SamlProvider>(new SamlProviderImpl(std::move(idp), sso, std::move(sp), std::move(clock)));
}

}  // namespace cvat::helper
