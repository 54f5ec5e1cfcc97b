// SPDX-License-Identifier: GPL-3.0-or-later
// The SAML IdP fixture (tests/fixtures/saml-idp.sh) and response forging (saml-forge.py).
#include "saml_idp.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"

namespace cvat::test {
namespace {

[[noreturn]] void bail(const std::string& why) {
    std::fflush(stdout);
    std::fprintf(stderr, "saml idp fixture: %s\n", why.c_str());
    std::printf("Bail out! %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(1);
}

[[noreturn]] void skip(const std::string& why) {
    std::printf("1..0 # SKIP %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(77);
}

std::string fixtures() {
    return env_or("CVAT_FIXTURES", "tests/fixtures");
}

std::string sh_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

// stdout of a shell command and its exit status (-1 when it did not exit normally).
std::string capture(const std::string& cmd, int& status) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) {
        status = -1;
        return out;
    }
    char buf[8192];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int st = ::pclose(p);
    status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

// KEY=VALUE lines as saml-idp.sh writes them (no quoting).
std::string env_value(const std::string& file, const std::string& key) {
    std::string text = read_file(file);
    std::string found;
    std::size_t at = 0;
    while (at < text.size()) {
        std::size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(at, end - at);
        if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == '=')
            found = line.substr(key.size() + 1);
        at = end + 1;
    }
    return found;
}

}  // namespace

std::string saml_password(const std::string& user) {
    return user + "-secret";
}

SamlIdp::SamlIdp(const std::string& dir) : dir_(dir) {
    for (const char* p : {"php", "xmlsec1", "curl", "openssl"}) require_program(p);
    if (::access("/usr/share/simplesamlphp/www", R_OK) != 0) skip("simplesamlphp is not installed");
    int st = -1;
    capture("/usr/bin/python3 -c 'import lxml' 2>/dev/null", st);
    if (st != 0) skip("python3-lxml is not installed");
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    int rc = run_program({"/bin/bash", fixtures() + "/saml-idp.sh", "start", dir_}, {}, 60);
    if (rc != 0) bail("saml-idp.sh start failed (status " + std::to_string(rc) + ")");
    running_ = true;
    if (auto pid = static_cast<pid_t>(std::atoi(get("SAML_IDP_PID").c_str())); pid > 0) track_pid(pid);
    if (entity_id().empty() || metadata_url().empty()) bail("saml-idp.sh wrote no env to " + dir_);
}

SamlIdp::~SamlIdp() {
    stop();
}

std::string SamlIdp::get(const std::string& key) const {
    return env_value(dir_ + "/env", key);
}

std::string SamlIdp::cert_pem() const {
    return read_file(cert_path());
}

double SamlIdp::start_seconds() const {
    return std::atof(get("SAML_IDP_START_SECONDS").c_str());
}

std::string SamlIdp::response_xml(const std::string& mode, const std::string& user,
                                  const std::string& password) const {
    int st = -1;
    std::string out = capture("/bin/bash " + sh_quote(fixtures() + "/saml-idp.sh") + " login " + sh_quote(dir_) +
                                  " " + sh_quote(mode) + " " + sh_quote(user) + " " + sh_quote(password) +
                                  " 2>/dev/null",
                              st);
    return st == 0 ? out : "";
}

std::vector<std::string> SamlIdp::forge(const std::string& response_xml, const std::string& variant, int count,
                                        bool xml) const {
    char path[] = "/tmp/cvat-saml-base.XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) return {};
    ::close(fd);
    write_file(path, response_xml);
    int st = -1;
    std::string out = capture("/usr/bin/python3 " + sh_quote(fixtures() + "/saml-forge.py") + " " +
                                  sh_quote(variant) + " --in " + sh_quote(path) + " --key " +
                                  sh_quote(get("SAML_IDP_KEY")) + " --cert " + sh_quote(cert_path()) +
                                  " --other-key " + sh_quote(get("SAML_IDP_OTHER_KEY")) + " --other-cert " +
                                  sh_quote(get("SAML_IDP_OTHER_CERT")) + " --count " + std::to_string(count) +
                                  (xml ? " --xml" : ""),
                              st);
    ::unlink(path);
    std::vector<std::string> lines;
    if (st != 0) return lines;
    if (xml) return {out};  // one document (spanning lines)
    std::size_t at = 0;
    while (at < out.size()) {
        std::size_t end = out.find('\n', at);
        if (end == std::string::npos) end = out.size();
        if (end > at) lines.push_back(out.substr(at, end - at));
        at = end + 1;
    }
    return lines;
}

void SamlIdp::stop() {
    if (!running_) return;
    running_ = false;
    auto pid = static_cast<pid_t>(std::atoi(get("SAML_IDP_PID").c_str()));
    run_program({"/bin/bash", fixtures() + "/saml-idp.sh", "stop", dir_}, {}, 30);
    if (pid > 0) untrack_pid(pid);
}

}  // namespace cvat::test
