// SPDX-License-Identifier: GPL-3.0-or-later
// Writes the seeds of the fuzz corpora that come from the project's own encoders and writers:
// protocol frames of every message type (proto::encode_request/encode_response), daemon
// replies as nss_cvat reads them, nss.mc files from the real writer, SAML responses from the
// tests' forge, and LDAP DNs and filters. Not a test; run by hand when a format changes:
//   CVAT_SOURCE_ROOT=$PWD build/tests/fuzz/make-fuzz-seeds tests/fuzz/corpus
// (JWT, JWKS and OIDC seeds: make-jwt-seeds.py; config seeds: the files of conf/.)
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "nss_mc.hpp"
#include "nss_mc_writer.hpp"
#include "protocol.hpp"
#include "saml_forge.hpp"

extern "C" int lasso_init(void);  // <lasso/lasso.h> does not compile as C++ on its own

using namespace cvat;

namespace {

std::string g_root;

void write(const std::string& target, const std::string& name, const std::string& bytes) {
    std::string dir = g_root + "/" + target;
    mkdir(dir.c_str(), 0755);
    std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
        std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
        std::exit(1);
    }
}

// A frame without its length word: what decode_request/decode_response get.
std::string body_of(const Result<SecureBytes>& frame) {
    if (!frame) {
        std::fprintf(stderr, "encode failed: %s\n", frame.error().detail.c_str());
        std::exit(1);
    }
    return std::string(frame->begin() + proto::kHeaderSize, frame->end());
}

void requests() {
    using namespace proto;
    auto put = [](const char* name, Request r) { write("request", name, body_of(encode_request(r))); };
    put("auth", AuthRequest{"alice", Secret("alice-password"), "sshd", "192.0.2.7", "ssh", AuthMethod::password, "", flag_none, 30000});
    put("auth-device", AuthRequest{"bob", Secret(""), "login", "", "tty1", AuthMethod::device, "keycloak", flag_no_qr | flag_ascii_only, 0});
    put("auth-token", AuthRequest{"", Secret("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), "cvat", "", "", AuthMethod::token, "oidc", 0, 5000});
    put("auth-auto", AuthRequest{"carol", Secret("pw"), "sudo", "", "pts/0", AuthMethod::automatic, "", 0, 1});
    put("conv", ConvReply{Secret("123456")});
    put("conv-empty", ConvReply{Secret("")});
    put("account", AccountRequest{"alice", "sshd", "192.0.2.7", "ssh", Role::user, "ldap"});
    put("session-open", SessionRequest{"alice", "sshd", true, ""});
    put("session-close", SessionRequest{"alice", "sshd", false, "ldap"});
    put("password", PasswordRequest{"alice", "passwd", Secret("old"), Secret("new-Password-1")});
    put("getpwnam", PasswdByName{"alice"});
    put("getpwuid", PasswdByUid{200100});
    put("getgrnam", GroupByName{"cvat-admin"});
    put("getgrgid", GroupByGid{200000});
    put("initgroups", InitGroups{"alice"});
    put("status", StatusRequest{});
    put("explain", ExplainRequest{"alice"});
    put("cache-list", CacheRequest{CacheOp::list, ""});
    put("cache-expire", CacheRequest{CacheOp::expire, "bob"});
    // Refused frames: another version, an unknown type, trailing bytes, a NUL in a string.
    write("request", "bad-version", std::string("\x00\x02\x00\x14", 4));
    write("request", "bad-type", std::string("\x00\x01\x00\x63", 4));
    write("request", "trailing", body_of(encode_request(StatusRequest{})) + "x");
    write("request", "nul-in-name", std::string("\x00\x01\x00\x0a\x00\x00\x00\x03" "a\0b", 11));
    write("request", "over-cap", std::string("\x00\x01\x00\x0a\xff\xff\xff\xff", 8));
}

void responses() {
    using namespace proto;
    auto put = [](const char* name, Response r) { write("response", name, body_of(encode_response(r))); };
    put("verdict-ok", Verdict{Status::ok, "", "alice", Role::admin,
                              {{"email", "alice@example.test"}, {"first_name", "Alice"}, {"idp", "ldap"}, {"dn", "uid=alice,ou=People,dc=example,dc=org"}}});
    put("verdict-refused", Verdict{Status::auth_err, "wrong user name or password", "", Role::none, {}});
    put("prompt", Prompt{PromptStyle::info, "Open https://idp.example.test/device and enter WDJB-MJHT\n"});
    put("prompt-echo-off", Prompt{PromptStyle::echo_off, "New password: "});
    put("passwd", PasswdReply{Status::ok, "alice", 200100, 200001, "Alice Liddell", "/home/alice", "/bin/bash"});
    put("passwd-not-found", PasswdReply{Status::not_found, "", 0, 0, "", "", ""});
    put("group", GroupReply{Status::ok, "cvat-admin", 200000, {"alice", "bob"}});
    put("group-empty", GroupReply{Status::ok, "cvat-worker", 200002, {}});
    put("groups", GroupsReply{Status::ok, {200000, 200001, 200002, 5000}});
    put("status", StatusReply{"0.1.0", 86400, {{"ldap ldap://127.0.0.1:389", true, "bound"}, {"oidc keycloak", false, "discovery: HTTP 503"}}});
    put("explain", ExplainReply{Status::ok, Role::user, {"ldap: found uid=alice", "role: user"}});
    put("cache", CacheReply{Status::ok, {"alice  user  fresh 120 s", "bob  worker  stale"}});
}

// kind:u8 buflen:u16 and the reply body after its status byte (see fuzz_nss_reply.cpp).
void nss_replies() {
    using namespace proto;
    auto put = [](const char* name, std::uint8_t kind, std::uint16_t buflen, Response r) {
        std::string body = body_of(encode_response(r)).substr(5);  // version, type, status
        std::string in;
        in += static_cast<char>(kind);
        in += static_cast<char>(buflen >> 8);
        in += static_cast<char>(buflen & 0xff);
        write("nss_reply", name, in + body);
    };
    put("passwd", 0, 1024, PasswdReply{Status::ok, "alice", 200100, 200001, "Alice Liddell", "/home/alice", "/bin/bash"});
    put("passwd-erange", 0, 20, PasswdReply{Status::ok, "alice", 200100, 200001, "Alice Liddell", "/home/alice", "/bin/bash"});
    put("passwd-empty-name", 0, 1024, PasswdReply{Status::ok, "", 1, 1, "", "", ""});
    put("group", 1, 1024, GroupReply{Status::ok, "cvat-admin", 200000, {"alice", "bob", "carol"}});
    put("group-erange", 1, 40, GroupReply{Status::ok, "cvat-admin", 200000, {"alice", "bob", "carol"}});
    put("group-no-members", 1, 64, GroupReply{Status::ok, "cvat-worker", 200002, {}});
    GroupReply big{Status::ok, "big", 7, {}};
    for (int i = 0; i < 300; ++i) big.members.push_back("user" + std::to_string(i));
    put("group-big", 1, 8192, big);
    put("groups", 2, 0x0108, GroupsReply{Status::ok, {200000, 200001, 100, 5000, 5000}});
    put("groups-limit", 2, 0x0044, GroupsReply{Status::ok, {1, 2, 3, 4, 5, 6, 7, 8, 9}});
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void cache_files() {
    namespace w = helper::nss_mc;
    test::TempDir dir;
    const std::string path = dir.path() + "/nss.mc";
    auto put = [&](const char* name, const std::vector<w::PasswdEntry>& users, const std::vector<w::GroupEntry>& groups, bool enumerate) {
        auto r = w::publish(path, users, groups, enumerate);
        if (!r) {
            std::fprintf(stderr, "publish failed: %s\n", r.error().detail.c_str());
            std::exit(1);
        }
        write("nss_mc", name, slurp(path));
    };
    const std::int64_t later = 4102444800;  // 2100: fresh for the target's clock
    std::vector<w::PasswdEntry> users = {
        {"alice", 200100, 200001, "Alice Liddell", "/home/alice", "/bin/bash", {200000, 200001, 5000}, later},
        {"bob", 200101, 200002, "Bob", "/home/bob", "/bin/sh", {}, later},
        {"expired", 200102, 200002, "", "/home/expired", "/bin/bash", {200002}, 1000},
    };
    std::vector<w::GroupEntry> groups = {
        {"cvat-admin", 200000, {"alice"}, later},
        {"cvat-user", 200001, {"alice", "bob"}, later},
        {"cvat-worker", 200002, {}, later},
        {"old", 200003, {"x"}, 1000},
    };
    put("users-groups", users, groups, false);
    put("users-groups-enumerate", users, groups, true);
    put("empty", {}, {}, true);
    std::vector<w::PasswdEntry> many;
    for (int i = 0; i < 64; ++i)
        many.push_back({"u" + std::to_string(i), 200200u + static_cast<std::uint32_t>(i), 200001, "", "/home/u", "/bin/bash", {}, later});
    put("many-users", many, {{"cvat-user", 200001, {"u1", "u2", "u3"}, later}}, true);
}

void saml() {
    if (lasso_init() != 0) {  // xmlsec, which the forge signs with
        std::fprintf(stderr, "lasso_init failed\n");
        std::exit(1);
    }
    test::SamlForge f;
    write("saml", "password-valid", "P" + f.b64());
    write("saml", "xml-valid", "X" + f.xml());
    test::SamlForge sha1;
    sha1.sha1 = true;
    write("saml", "xml-sha1-allowed", "S" + sha1.xml());
    write("saml", "xml-sha1-refused", "X" + sha1.xml());
    int n = 0;
    for (const auto& [name, xml] : test::saml_xsw_variants(f)) {
        (void)name;
        write("saml", "xml-xsw" + std::to_string(++n), "X" + xml);
    }
    write("saml", "xml-dtd", "X<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>");
    write("saml", "password-short", "PPHNhbWxwOlJlc3BvbnNlIHhtbG5zOnNhbWxwPQ==");
    write("saml", "password-bare-xmlns", "P" + test::saml_base64("<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_r\"/>   padding padding padding"));
}

void ldap() {
    const char* dns[] = {
        "uid=alice,ou=People,dc=example,dc=org",
        "CN=CVAT Admins , OU = Groups,DC=Example,DC=COM",
        "cn=Smith\\, John+mail=j@example.org,dc=example,dc=org",
        "cn=\\23hash\\20,dc=x",
        "cn=#04024869,dc=example,dc=com",
        "cn=\\E6\\97\\A5\\E6\\9C\\AC,dc=example",
        "1.3.6.1.4.1.1466.0=#04024869,O=Test,C=GB",
        "cn=a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h",
        "",
        "cn=",
        "=x,dc=y",
        "cn=a,,dc=b",
        "cn=\\zz",
        "cn=trailing\\",
        "cn=x\x01y",
    };
    int n = 0;
    for (const char* dn : dns) write("ldap_dn", "dn" + std::to_string(++n), dn);
    // template NUL user (see fuzz_ldap_filter.cpp)
    const std::pair<std::string, std::string> filters[] = {
        {"(uid=%(user)s)", "alice"},
        {"(&(objectClass=person)(|(uid=%(user)s)(mail=%(user)s)))", "alice@example.org"},
        {"(sAMAccountName=%(user)s)", "*)(uid=*))(|(uid=*"},
        {"(uid=%(user)s)", std::string("a\0b\\c(d)e*\xc3\xa9", 13)},
        {"(cn=100%% %(user)s)", "x"},
        {"(uid=%(name)s)", "x"},
        {"(uid=%s)", "x"},
        {"(uid=x)", "y"},
    };
    n = 0;
    for (const auto& [t, u] : filters) write("ldap_filter", "filter" + std::to_string(++n), t + std::string(1, '\0') + u);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_ROOT\n", argv[0]);
        return 2;
    }
    g_root = argv[1];
    mkdir(g_root.c_str(), 0755);
    requests();
    responses();
    nss_replies();
    cache_files();
    saml();
    ldap();
    std::puts("seeds written");
    return 0;
}
