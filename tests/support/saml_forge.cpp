// SPDX-License-Identifier: GPL-3.0-or-later
#include "saml_forge.hpp"

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/crypto.h>

namespace cvat::test {

namespace {

std::string iso(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string signature_template(const std::string& id, bool sha1) {
    const std::string sm = sha1 ? "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
                                : "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    const std::string dm = sha1 ? "http://www.w3.org/2000/09/xmldsig#sha1" : "http://www.w3.org/2001/04/xmlenc#sha256";
    return "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>"
           "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>"
           "<ds:SignatureMethod Algorithm=\"" + sm + "\"/><ds:Reference URI=\"#" + id +
           "\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>"
           "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>"
           "<ds:DigestMethod Algorithm=\"" + dm + "\"/><ds:DigestValue></ds:DigestValue></ds:Reference>"
           "</ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>";
}

// Signs the Signature element inside the element with ID `id`.
std::string sign(const std::string& xml, const std::string& id, const std::string& key_name) {
    xmlDoc* doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "x.xml", nullptr, XML_PARSE_NONET);
    if (doc == nullptr) throw std::runtime_error("saml_forge: template does not parse");
    // Find the node carrying ID=id and register the ID.
    xmlNode* target = nullptr;
    std::vector<xmlNode*> stack{xmlDocGetRootElement(doc)};
    while (!stack.empty() && target == nullptr) {
        xmlNode* n = stack.back();
        stack.pop_back();
        for (; n != nullptr; n = n->next) {
            if (n->type != XML_ELEMENT_NODE) continue;
            xmlChar* v = xmlGetProp(n, BAD_CAST "ID");
            if (v != nullptr && id == reinterpret_cast<char*>(v)) target = n;
            xmlFree(v);
            if (target) break;
            if (n->children) stack.push_back(n->children);
        }
    }
    if (target == nullptr) throw std::runtime_error("saml_forge: no element with that ID");
    xmlAddID(nullptr, doc, BAD_CAST id.c_str(), xmlHasProp(target, BAD_CAST "ID"));
    xmlNode* sig = xmlSecFindChild(target, xmlSecNodeSignature, xmlSecDSigNs);
    xmlSecKeyPtr key = xmlSecCryptoAppKeyLoad(saml_support_file(key_name + ".key").c_str(), xmlSecKeyDataFormatPem,
                                              nullptr, nullptr, nullptr);
    if (key == nullptr ||
        xmlSecCryptoAppKeyCertLoad(key, saml_support_file(key_name + ".crt").c_str(), xmlSecKeyDataFormatPem) < 0)
        throw std::runtime_error("saml_forge: key does not load");
    xmlSecDSigCtxPtr ctx = xmlSecDSigCtxCreate(nullptr);
    ctx->signKey = key;
    if (xmlSecDSigCtxSign(ctx, sig) < 0) throw std::runtime_error("saml_forge: signing failed");
    xmlSecDSigCtxDestroy(ctx);
    xmlChar* out = nullptr;
    int size = 0;
    xmlDocDumpMemory(doc, &out, &size);
    std::string s(reinterpret_cast<char*>(out), static_cast<std::size_t>(size));
    xmlFree(out);
    xmlFreeDoc(doc);
    return s;
}

}  // namespace

std::string saml_support_file(const std::string& name) {
    const char* root = std::getenv("CVAT_SOURCE_ROOT");
    return std::string(root != nullptr ? root : ".") + "/tests/support/" + name;
}

std::string saml_read_file(const std::string& name) {
    std::ifstream f(saml_support_file(name));
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string saml_base64(const std::string& bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

static std::string assertion_xml(const SamlForge& f, const std::string& id, const std::string& name_id,
                                 bool with_signature_template) {
    std::string attrs;
    for (const auto& [name, values] : f.attributes) {
        attrs += "<saml:Attribute Name=\"" + name + "\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">";
        for (const auto& v : values)
            attrs += "<saml:AttributeValue xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" "
                     "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"xs:string\">" + v +
                     "</saml:AttributeValue>";
        attrs += "</saml:Attribute>";
    }
    return "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"" + id +
           "\" Version=\"2.0\" IssueInstant=\"" + iso(f.now) + "\"><saml:Issuer>" + f.issuer + "</saml:Issuer>" +
           (with_signature_template ? signature_template(id, f.sha1) : "") +
           "<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\">" + name_id +
           "</saml:NameID><saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">"
           "<saml:SubjectConfirmationData NotOnOrAfter=\"" + iso(f.now + 300) + "\" Recipient=\"" + f.recipient +
           "\"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore=\"" + iso(f.now - 10) +
           "\" NotOnOrAfter=\"" + iso(f.now + 300) + "\"><saml:AudienceRestriction><saml:Audience>" + f.audience +
           "</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant=\"" +
           iso(f.now) + "\" SessionIndex=\"_s1\"><saml:AuthnContext><saml:AuthnContextClassRef>"
           "urn:oasis:names:tc:SAML:2.0:ac:classes:Password</saml:AuthnContextClassRef></saml:AuthnContext>"
           "</saml:AuthnStatement><saml:AttributeStatement>" + attrs + "</saml:AttributeStatement></saml:Assertion>";
}

static std::string response_xml(const SamlForge& f, const std::string& assertions) {
    return "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" "
           "xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"" + f.response_id +
           "\" Version=\"2.0\" IssueInstant=\"" + iso(f.now) + "\" Destination=\"" + f.destination +
           "\"><saml:Issuer>" + f.issuer + "</saml:Issuer><samlp:Status><samlp:StatusCode "
           "Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>" + assertions + "</samlp:Response>";
}

std::string SamlForge::xml() const {
    std::string doc = response_xml(*this, assertion_xml(*this, assertion_id, name_id, sign_assertion));
    return sign_assertion ? sign(doc, assertion_id, key) : doc;
}

std::string SamlForge::b64() const { return saml_base64(xml()); }

std::vector<std::pair<std::string, std::string>> saml_xsw_variants(const SamlForge& valid) {
    const std::string signed_doc = valid.xml();
    // The signed assertion, cut out of the document as text.
    const auto a = signed_doc.find("<saml:Assertion");
    const auto b = signed_doc.find("</saml:Assertion>") + std::string("</saml:Assertion>").size();
    const std::string signed_assertion = signed_doc.substr(a, b - a);
    const std::string evil = assertion_xml(valid, valid.assertion_id, "mallory", false);
    const std::string evil_other_id = assertion_xml(valid, "_evil", "mallory", false);
    auto resp = [&](const std::string& inner) { return response_xml(valid, inner); };
    std::vector<std::pair<std::string, std::string>> v;
    // XSW-3/4 style: the evil assertion first (same ID), the signed one after / inside it.
    v.emplace_back("evil assertion before the signed one (same ID)", resp(evil + signed_assertion));
    v.emplace_back("signed assertion after an evil one with another ID", resp(evil_other_id + signed_assertion));
    // XSW-5/6/7: signed assertion moved into Extensions; evil in its place.
    v.emplace_back("signed assertion in samlp:Extensions, evil in its place",
                   "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" "
                   "xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"" + valid.response_id +
                   "\" Version=\"2.0\" IssueInstant=\"2027-01-15T08:00:00Z\" Destination=\"" + valid.destination +
                   "\"><saml:Issuer>" + valid.issuer + "</saml:Issuer><samlp:Extensions>" + signed_assertion +
                   "</samlp:Extensions><samlp:Status><samlp:StatusCode "
                   "Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>" + evil + "</samlp:Response>");
    // XSW-8: the signed original inside the evil assertion's Signature/Object.
    {
        std::string wrapped = evil_other_id;
        const std::string sig_host = "<saml:Subject>";
        wrapped.insert(wrapped.find(sig_host),
                       "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:Object>" + signed_assertion +
                           "</ds:Object></ds:Signature>");
        v.emplace_back("signed original inside the evil assertion's ds:Object", resp(wrapped));
    }
    // The signed assertion with its NameID text changed (no rewrap): the digest must catch it.
    {
        std::string t = signed_assertion;
        const std::string from = ">" + valid.name_id + "</saml:NameID>";
        if (auto p = t.find(from); p != std::string::npos) t.replace(p, from.size(), ">mallory</saml:NameID>");
        v.emplace_back("signed assertion with the NameID edited", resp(t));
    }
    return v;
}

}  // namespace cvat::test
