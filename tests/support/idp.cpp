// SPDX-License-Identifier: GPL-3.0-or-later
// The IdP fixture (tests/fixtures/idp.sh) and a PAM driver with a function as conversation.
#include "idp.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include <security/pam_appl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"

namespace cvat::test {
namespace {

[[noreturn]] void bail(const std::string& why) {
    std::fflush(stdout);
    std::fprintf(stderr, "idp fixture: %s\n", why.c_str());
    std::printf("Bail out! %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(1);
}

std::string idp_script() {
    return env_or("CVAT_FIXTURES", "tests/fixtures") + "/idp.sh";
}

std::vector<std::string> script(std::vector<std::string> args) {
    std::vector<std::string> argv{"/bin/bash", idp_script()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
}

// KEY=VALUE lines as idp.sh writes them (no quoting).
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

bool gone(pid_t pid) {
    ::waitpid(pid, nullptr, WNOHANG);
    if (::kill(pid, 0) != 0) return true;
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    auto paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

// SIGTERM, then SIGKILL after `grace_ms` (glewlwyd takes ~2 s to leave on SIGTERM).
void stop_pid(pid_t pid, int grace_ms) {
    if (pid <= 0 || ::kill(pid, SIGTERM) != 0) return;
    for (int waited = 0; waited < grace_ms; waited += 10) {
        if (gone(pid)) return;
        ::usleep(10 * 1000);
    }
    ::kill(pid, SIGKILL);
    for (int i = 0; i < 200 && !gone(pid); ++i) ::usleep(10 * 1000);
}

// Runs a shell command; its stdout.
std::string capture(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    ::pclose(p);
    return out;
}

// Single-quoted for /bin/sh.
std::string sh_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

}  // namespace

std::string idp_password(const std::string& uid) {
    return uid + "-Idp-Passw0rd";
}

Idp::Idp(const std::string& dir, int ldap_port, int port) : dir_(dir) {
    for (const char* p : {"glewlwyd", "slapd", "ldapadd", "curl", "jq", "openssl", "sqlite3"})
        require_program(p);
    if (::access(idp_script().c_str(), R_OK) != 0) bail(idp_script() + " is missing");
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    std::vector<std::string> args{"start", dir_};
    if (ldap_port > 0) args.insert(args.end(), {"--ldap-port", std::to_string(ldap_port)});
    if (port > 0) args.insert(args.end(), {"--port", std::to_string(port)});
    int rc = run_program(script(args), {}, 60);
    if (rc != 0) bail("idp.sh start failed (status " + std::to_string(rc) + ")");
    running_ = true;
    for (const char* key : {"GLEWLWYD_PID", "SLAPD_PID"})
        if (pid_t pid = static_cast<pid_t>(std::atoi(get(key).c_str())); pid > 0) track_pid(pid);
    if (issuer().empty() || kid().empty()) bail("idp.sh wrote no OIDC_ISSUER/OIDC_KID to " + dir_ + "/env");
}

Idp::~Idp() {
    stop();
}

std::string Idp::get(const std::string& key) const {
    return env_value(dir_ + "/env", key);
}

std::string Idp::public_key_pem() const {
    return read_file(get("OIDC_PUBLIC_KEY"));
}

std::string Idp::jwk_json() const {
    return read_file(get("OIDC_JWK"));
}

double Idp::start_seconds() const {
    return std::atof(get("IDP_START_SECONDS").c_str());
}

bool Idp::approve(const std::string& user_code, const std::string& user,
                  const std::string& password) const {
    return run_program(script({"approve", dir_, user_code, user, password}), {}, 30) == 0;
}

bool Idp::deny(const std::string& user_code, const std::string& user,
               const std::string& password) const {
    return run_program(script({"deny", dir_, user_code, user, password}), {}, 30) == 0;
}

bool Idp::slow_down(const std::string& user_code) const {
    return run_program(script({"slow-down", dir_, user_code}), {}, 30) == 0;
}

long long Idp::last_poll(const std::string& user_code) const {
    std::string out = capture("/bin/bash " + sh_quote(idp_script()) + " last-poll " + sh_quote(dir_) + " " +
                              sh_quote(user_code) + " 2>/dev/null");
    if (out.empty() || out[0] < '0' || out[0] > '9') return -1;
    return std::atoll(out.c_str());
}

std::string Idp::id_token(const std::string& user, const std::string& password) const {
    std::string cmd = "curl -sS --max-time 10 --cacert " + sh_quote(ca_file()) + " -u " +
                      sh_quote(client_id() + ":" + client_secret()) +
                      " -d grant_type=password --data-urlencode " + sh_quote("username=" + user) +
                      " --data-urlencode " + sh_quote("password=" + password) +
                      " --data-urlencode 'scope=openid groups' " + sh_quote(issuer() + "/token") +
                      " | jq -r '.id_token // empty' 2>/dev/null";
    std::string out = capture(cmd);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

void Idp::stop_glewlwyd() {
    if (!running_) return;
    auto pid = static_cast<pid_t>(std::atoi(get("GLEWLWYD_PID").c_str()));
    stop_pid(pid, 3000);
    untrack_pid(pid);
}

void Idp::stop() {
    if (!running_) return;
    stop_glewlwyd();
    running_ = false;
    auto pid = static_cast<pid_t>(std::atoi(get("SLAPD_PID").c_str()));
    stop_pid(pid, 3000);
    untrack_pid(pid);
}

// ---- PAM with a live conversation ----------------------------------------------------------

namespace {

struct Live {
    const Responder* respond;
    std::vector<std::string>* messages;
};

int live_conv(int num_msg, const pam_message** msg, pam_response** resp, void* appdata) {
    auto* live = static_cast<Live*>(appdata);
    if (num_msg <= 0 || msg == nullptr || resp == nullptr || live == nullptr) return PAM_CONV_ERR;
    auto* out = static_cast<pam_response*>(
        std::calloc(static_cast<std::size_t>(num_msg), sizeof(pam_response)));
    if (out == nullptr) return PAM_BUF_ERR;
    for (int i = 0; i < num_msg; ++i) {
        const char* text = msg[i]->msg != nullptr ? msg[i]->msg : "";
        live->messages->emplace_back(text);
        std::optional<std::string> answer = (*live->respond)(msg[i]->msg_style, text);
        bool prompt = msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON;
        if (prompt && !answer) {
            for (int j = 0; j < i; ++j) std::free(out[j].resp);
            std::free(out);
            return PAM_CONV_ERR;
        }
        if (prompt) out[i].resp = ::strdup(answer->c_str());
    }
    *resp = out;
    return PAM_SUCCESS;
}


}  // namespace

PamOutcome pam_converse(const PamCall& call, const Responder& respond) {
    PamOutcome out;
    Live live{&respond, &out.messages};
    pam_conv conv{live_conv, &live};
    pam_transaction(call, conv, out);
    return out;
}

}  // namespace cvat::test
