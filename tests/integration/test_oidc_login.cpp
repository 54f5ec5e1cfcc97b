// SPDX-License-Identifier: GPL-3.0-or-later
// OpenID Connect logins through the whole real path: libpam → pam_cvat.so → cvat-authd →
// glewlwyd over HTTPS (tests/fixtures/idp.sh; users in tests/fixtures/README.md).
// Covers the password grant with client_secret_basic and client_secret_post (each against a
// client that accepts only that method), roles from the groups claim (highest wins), the
// device flow (approved, approved late, denied, expired, slow_down honoured, the prompt's URI,
// user code and QR code, no_qr), token logins (the IdP's own tokens; forged ones: expired,
// wrong aud, wrong iss, unknown key, alg none, HS256 keyed with the public key), IdP selection
// by email domain, by weight and by idp=, an IdP that is down, dead or silent; IdP users as
// users of the host through libnss_cvat.so.2 (unknown before the first login, known after it
// with the uid from iss + sub and their role group, across a restart; provisional entries,
// whose uid from the IdP id + name the first login keeps, and a name reused for another subject
// refused; token logins). Prints the median time of 100 password and 100 token logins as TAP comments.
#include "cmocka.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <grp.h>
#include <netinet/in.h>
#include <nss.h>
#include <pwd.h>
#include <qrencode.h>
#include <security/pam_appl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.hpp"
#include "nss_module.hpp"
#include "idp.hpp"
#include "jwt_forge.hpp"
#include "pam_driver.hpp"

using namespace cvat::test;

namespace {

// pam_cvat's per-step timeout (module argument) and the slack on top of a known wait.
constexpr int kPamTimeout = 30;
constexpr double kSlack = 2.0;
// cvat-authd's HTTP request timeout (helper/http.hpp HttpOptions::timeout_ms): a silent IdP
// costs at most this per request.
constexpr double kHttpTimeout = 10.0;

struct World {
    TempDir tmp;
    std::unique_ptr<Idp> idp;
    std::string stranger_key;  // an RSA key the IdP never saw
};
World* g = nullptr;

std::string fresh_dir(const std::string& name) { return g->tmp.fresh(name); }


std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string env_of(const PamOutcome& o, const char* key) {
    auto it = o.env.find(key);
    return it == o.env.end() ? "" : it->second;
}

std::string joined(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += s + "\n";
    return out;
}

// Every message after the first (the device prompt), one per line.
std::string after_first_prompt(const std::vector<std::string>& v) {
    std::string out;
    for (std::size_t i = 1; i < v.size(); ++i) out += v[i] + "\n";
    return out;
}

double now_mono() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

long long now_wall() {
    return static_cast<long long>(std::time(nullptr));
}

// One identity_providers entry.
struct IdpEntry {
    std::string id = "corp-oidc";
    std::string issuer;          // default: the fixture's
    std::string client_id;       // default: the fixture's (basic and post)
    std::string client_secret;   // default: the fixture's
    std::string method = "client_secret_basic";
    std::string email_domain = "example.test";
    int weight = 10;
    std::string extra;           // more keys, each "      key: value\n"
};

std::string config(const std::vector<IdpEntry>& idps, const std::string& selection_mode = "lowest_weight") {
    std::string y = "helper:\n"
                    "  socket: @SOCKET@\n"
                    "  log_level: debug\n"
                    "sso:\n"
                    "  enabled: true\n"
                    "  selection_mode: " + selection_mode + "\n"
                    "  identity_providers:\n";
    for (const IdpEntry& e : idps) {
        y += "    - id: " + e.id + "\n"
             "      protocol: OIDC\n"
             "      name: Test IdP " + e.id + "\n"
             "      server_url: " + (e.issuer.empty() ? g->idp->issuer() : e.issuer) + "\n"
             "      client_id: " + (e.client_id.empty() ? g->idp->client_id() : e.client_id) + "\n"
             "      client_secret: " + (e.client_secret.empty() ? g->idp->client_secret() : e.client_secret) + "\n"
             "      token_auth_method: " + e.method + "\n"
             "      email_domain: " + e.email_domain + "\n"
             "      weight: " + std::to_string(e.weight) + "\n"
             "      ca_file: " + g->idp->ca_file() + "\n"
             "      role_claim: groups\n"
             "      role_values:\n"
             "        admin: [cvat-admins]\n"
             "        user: [cvat-users]\n"
             "        worker: [cvat-workers]\n" + e.extra;
    }
    return y;
}

struct Login {
    std::unique_ptr<Daemon> daemon;
    std::string dir;

    std::string args(const std::string& more) const {
        std::string t = contains(more, "timeout=") ? "" : " timeout=" + std::to_string(kPamTimeout);
        return "socket=" + daemon->socket() + t + " " + more;
    }
    PamOutcome operator()(const std::string& user, const std::string& password,
                          const std::string& more = "") const {
        PamCall call;
        call.confdir = dir;
        call.user = user;
        call.answers = {password};
        call.module_args = args(more);
        return pam_login(call);
    }
    PamOutcome converse(const std::string& user, const std::string& more, const Responder& r) const {
        PamCall call;
        call.confdir = dir;
        call.user = user;
        call.module_args = args(more);
        return pam_converse(call, r);
    }
    std::string log() const { return read_file(daemon->log_path()); }
};

Login start(const std::string& name, const std::string& yaml) {
    Login l;
    l.dir = fresh_dir(name);
    l.daemon = std::make_unique<Daemon>(l.dir, yaml);
    return l;
}

void expect_pam(const std::string& what, int got, int want) {
    if (got != want)
        fail_msg("%s: PAM code %d (%s), want %d (%s)", what.c_str(), got, pam_strerror(nullptr, got), want,
                 pam_strerror(nullptr, want));
}

void expect_refused(const std::string& what, const PamOutcome& o, int want) {
    if (o.authenticate == PAM_SUCCESS)
        fail_msg("%s: logged in (PAM_USER \"%s\", CVAT_ROLE \"%s\")", what.c_str(), o.pam_user.c_str(),
                 env_of(o, "CVAT_ROLE").c_str());
    expect_pam(what, o.authenticate, want);
}

void expect_success(const Login& l, const std::string& what, const PamOutcome& o, const std::string& pam_user,
                    const std::string& role, const std::string& idp) {
    // On a failure, what the user was shown and what the daemon made of the request (its log's
    // last lines) go to stderr first: cmocka cuts a long failure message short, and a device
    // login's messages hold a QR code.
    auto explain = [&](const char* phase, int code) {
        std::string log = read_file(l.daemon->log_path());
        if (log.size() > 4000) log = log.substr(log.size() - 4000);
        std::fprintf(stderr, "%s%s: messages:\n%s\ndaemon log tail:\n%s\n", what.c_str(), phase,
                     joined(o.messages).c_str(), log.c_str());
        fail_msg("%s%s: PAM code %d (%s), want success (messages and daemon log above)", what.c_str(), phase, code,
                 pam_strerror(nullptr, code));
    };
    if (o.authenticate != PAM_SUCCESS) explain("", o.authenticate);
    if (o.acct_mgmt != PAM_SUCCESS) explain(" (account)", o.acct_mgmt);
    if (o.pam_user != pam_user)
        fail_msg("%s: PAM_USER \"%s\", want \"%s\"", what.c_str(), o.pam_user.c_str(), pam_user.c_str());
    if (env_of(o, "CVAT_ROLE") != role)
        fail_msg("%s: CVAT_ROLE \"%s\", want \"%s\"", what.c_str(), env_of(o, "CVAT_ROLE").c_str(), role.c_str());
    if (env_of(o, "CVAT_IDP") != idp)
        fail_msg("%s: CVAT_IDP \"%s\", want \"%s\"", what.c_str(), env_of(o, "CVAT_IDP").c_str(), idp.c_str());
}


// ---- tokens ---------------------------------------------------------------------------------

std::string header(const std::string& alg, const std::string& kid) {
    std::string h = "{\"alg\":\"" + alg + "\",\"typ\":\"JWT\"";
    if (!kid.empty()) h += ",\"kid\":\"" + kid + "\"";
    return h + "}";
}

// ID token claims as glewlwyd issues them for `user`, with the fields a test changes.
struct Claims {
    std::string iss;   // default: the fixture's issuer
    std::string aud;   // default: the client id; a JSON value when it starts with '['
    long long exp_in = 600;
    long long iat_ago = 5;
    std::string user = "ada";
    std::string email;  // default: user@example.test
    std::string groups = "[\"cvat-admins\"]";
    std::string sub;    // default: sub-<user>
};

std::string claims(const Claims& c) {
    long long now = now_wall();
    std::string aud = c.aud.empty() ? g->idp->client_id() : c.aud;
    std::string aud_json = aud.front() == '[' ? aud : "\"" + aud + "\"";
    return "{\"iss\":\"" + (c.iss.empty() ? g->idp->issuer() : c.iss) + "\",\"sub\":\"" + (c.sub.empty() ? "sub-" + c.user : c.sub) +
           "\",\"aud\":" + aud_json + ",\"exp\":" + std::to_string(now + c.exp_in) +
           ",\"iat\":" + std::to_string(now - c.iat_ago) + ",\"auth_time\":" + std::to_string(now - c.iat_ago) +
           ",\"azp\":\"" + g->idp->client_id() + "\",\"preferred_username\":\"" + c.user +
           "\",\"email\":\"" + (c.email.empty() ? c.user + "@example.test" : c.email) + "\",\"name\":\"Forged " + c.user + "\",\"groups\":" +
           c.groups + "}";
}

std::string idp_signed(const Claims& c) {
    return forge_jwt(header("RS256", g->idp->kid()), claims(c), g->idp->signing_key(), JwtAlg::rs256);
}

// ---- device flow ----------------------------------------------------------------------------

// A user code in a prompt: from verification_uri_complete's code= if shown, else the first
// XXXX-XXXX group (glewlwyd's shape).
std::string user_code_in(const std::string& text) {
    std::smatch m;
    static const std::regex complete("[?&]code=([A-Za-z0-9]{4}-[A-Za-z0-9]{4})");
    static const std::regex bare("\\b([A-Z0-9]{4}-[A-Z0-9]{4})\\b");
    if (std::regex_search(text, m, complete)) return m[1];
    if (std::regex_search(text, m, bare)) return m[1];
    return "";
}

// The QR code drawn in `text` (QrStyle::ascii: "##" per dark module, two spaces per light
// one): rows of modules, quiet zone removed; empty if there is none.
std::vector<std::vector<bool>> qr_in(const std::string& text) {
    std::vector<std::string> rows;
    std::size_t at = 0;
    std::vector<std::string> block;
    auto flush = [&] {
        if (block.size() >= 21 && block.size() > rows.size()) rows = block;
        block.clear();
    };
    while (at <= text.size()) {
        std::size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(at, end - at);
        bool drawing = line.size() >= 42 && line.find_first_not_of("# ") == std::string::npos &&
                       contains(line, "##");
        if (drawing)
            block.push_back(line);
        else
            flush();
        at = end + 1;
    }
    flush();
    if (rows.empty()) return {};
    std::size_t left = std::string::npos;
    std::size_t right = 0;
    for (const auto& r : rows) {
        left = std::min(left, r.find('#'));
        right = std::max(right, r.rfind('#') + 1);
    }
    std::vector<std::vector<bool>> matrix;
    for (const auto& r : rows) {
        std::vector<bool> row;
        for (std::size_t x = left; x + 1 < right + 1; x += 2) row.push_back(x < r.size() && r[x] == '#');
        matrix.push_back(row);
    }
    return matrix;
}

// True when `matrix` is libqrencode's QR code of `data` at some error-correction level.
bool qr_encodes(const std::vector<std::vector<bool>>& matrix, const std::string& data) {
    for (QRecLevel level : {QR_ECLEVEL_L, QR_ECLEVEL_M, QR_ECLEVEL_Q, QR_ECLEVEL_H}) {
        for (int cs : {1, 0}) {
            QRcode* qr = QRcode_encodeString(data.c_str(), 0, level, QR_MODE_8, cs);
            if (qr == nullptr) continue;
            auto w = static_cast<std::size_t>(qr->width);
            bool same = matrix.size() == w;
            for (std::size_t y = 0; same && y < w; ++y) {
                same = matrix[y].size() == w;
                for (std::size_t x = 0; same && x < w; ++x) same = matrix[y][x] == ((qr->data[y * w + x] & 1) != 0);
            }
            QRcode_free(qr);
            if (same) return true;
        }
    }
    return false;
}

// What happened in one device login.
struct DeviceRun {
    PamOutcome out;
    std::vector<std::string> prompts;   // echo-on prompt texts, in order
    std::vector<int> prompt_styles;
    std::string user_code;
    double action_done = 0;             // monotonic time the action returned
    bool action_ok = false;
};

// A device login: `action(user_code)` runs on a second thread once the first prompt shows;
// with `wait`, Enter is pressed only after it returned, else at once. Later prompts ("press
// Enter when approved") get Enter after `pause` s, at most `max_prompts` of them.
DeviceRun device_login(const Login& l, const std::string& user, const std::string& more,
                       const std::function<bool(const std::string&)>& action, bool wait,
                       double pause = 0.3, int max_prompts = 40) {
    DeviceRun run;
    std::thread worker;
    std::atomic<bool> done{false};
    auto respond = [&](int style, const std::string& text) -> std::optional<std::string> {
        if (style != PAM_PROMPT_ECHO_ON && style != PAM_PROMPT_ECHO_OFF) return std::string();
        run.prompts.push_back(text);
        run.prompt_styles.push_back(style);
        if (run.prompts.size() == 1) {
            run.user_code = user_code_in(text);
            if (run.user_code.empty() || !action) return std::nullopt;
            worker = std::thread([&] {
                run.action_ok = action(run.user_code);
                run.action_done = now_mono();
                done = true;
            });
            if (wait) worker.join();
            return std::string();
        }
        if (static_cast<int>(run.prompts.size()) > max_prompts) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::duration<double>(pause));
        return std::string();
    };
    run.out = l.converse(user, "method=device " + more, respond);
    if (worker.joinable()) worker.join();
    return run;
}

// ---- setup ----------------------------------------------------------------------------------

int setup(void**) {
    g = new World;
    g->idp = std::make_unique<Idp>(g->tmp.path() + "/idp");
    std::printf("# IdP fixture (glewlwyd + slapd, HTTPS) started in %.2f s\n", g->idp->start_seconds());
    g->stranger_key = g->tmp.path() + "/stranger.pem";
    make_rsa_key(g->stranger_key);
    return 0;
}

int teardown(void**) {
    delete g;
    g = nullptr;
    return 0;
}

// ---- password grant -------------------------------------------------------------------------

// Every fixture user under one token_auth_method, against a client that accepts only that
// method (glewlwyd refuses the other with HTTP 500), and against one that accepts both.
void password_logins(const std::string& method, const std::string& only_client) {
    for (const std::string& client : {only_client, g->idp->client_id()}) {
        IdpEntry e;
        e.method = method;
        e.client_id = client;
        Login l = start("pw", config({e}));
        std::string tag = method + " (client " + client + ")";
        expect_success(l, "ada " + tag, l("ada", idp_password("ada")), "ada", "admin", "corp-oidc");
        expect_success(l, "uma " + tag, l("uma", idp_password("uma")), "uma", "user", "corp-oidc");
        expect_success(l, "wendy " + tag, l("wendy", idp_password("wendy")), "wendy", "worker", "corp-oidc");
        // worker + admin: highest wins
        expect_success(l, "bert " + tag, l("bert", idp_password("bert")), "bert", "admin", "corp-oidc");
        auto o = l("ada", idp_password("ada"));
        assert_string_equal(env_of(o, "CVAT_EMAIL").c_str(), "ada@example.test");
        expect_refused("ada, wrong password " + tag, l("ada", "ada-Idp-Passw0rd-not"), PAM_AUTH_ERR);
        expect_refused("ada, password of uma " + tag, l("ada", idp_password("uma")), PAM_AUTH_ERR);
        // A right LDAP password, but the IdP gives dennis no token (no openid scope).
        expect_refused("dennis, refused by the IdP " + tag, l("dennis", idp_password("dennis")), PAM_AUTH_ERR);
        o = l("nosuchuser", "whatever-Passw0rd");
        if (o.authenticate == PAM_SUCCESS) fail_msg("unknown user logged in (%s)", tag.c_str());
        if (o.authenticate != PAM_AUTH_ERR && o.authenticate != PAM_USER_UNKNOWN)
            expect_pam("unknown user " + tag, o.authenticate, PAM_AUTH_ERR);
    }
}

void password_client_secret_basic(void**) {
    password_logins("client_secret_basic", g->idp->get("OIDC_BASIC_CLIENT_ID"));
}

void password_client_secret_post(void**) {
    password_logins("client_secret_post", g->idp->get("OIDC_POST_CLIENT_ID"));
}

// The method the config names is the one used: a client that takes only the other refuses.
void password_wrong_method_or_secret(void**) {
    IdpEntry e;
    e.method = "client_secret_post";
    e.client_id = g->idp->get("OIDC_BASIC_CLIENT_ID");
    Login l = start("pwmethod", config({e}));
    auto o = l("ada", idp_password("ada"));
    if (o.authenticate == PAM_SUCCESS) fail_msg("client_secret_post accepted by a basic-only client");
    e.method = "client_secret_basic";
    e.client_id = g->idp->get("OIDC_POST_CLIENT_ID");
    Login l2 = start("pwmethod", config({e}));
    o = l2("ada", idp_password("ada"));
    if (o.authenticate == PAM_SUCCESS) fail_msg("client_secret_basic accepted by a post-only client");

    // A wrong client secret. glewlwyd answers it with a bare HTTP 400 (no RFC 6749
    // "invalid_client"), which a client cannot tell from a refused user: only "no access" is
    // required here. The code is printed (an administrator's fault would rather be
    // PAM_AUTHINFO_UNAVAIL, as for a bad LDAP service bind).
    for (const char* m : {"client_secret_basic", "client_secret_post"}) {
        IdpEntry bad;
        bad.method = m;
        bad.client_secret = "not-the-client-secret";
        Login lb = start("pwsecret", config({bad}));
        o = lb("ada", idp_password("ada"));
        if (o.authenticate == PAM_SUCCESS) fail_msg("a wrong client secret (%s) let ada in", m);
        std::printf("# wrong client secret (%s; glewlwyd: HTTP 400, empty body): %s\n", m,
                    pam_strerror(nullptr, o.authenticate));
    }
}

// Without a matching group the per-IdP default_role (user) applies; with default_role none,
// such a user is refused while the others are not.
void roles_default(void**) {
    Login l = start("roles", config({IdpEntry{}}));
    expect_success(l, "nora (no groups)", l("nora", idp_password("nora")), "nora", "user", "corp-oidc");
    IdpEntry none;
    none.extra = "      default_role: none\n";
    Login ln = start("rolesnone", config({none}));
    expect_refused("nora, default_role none", ln("nora", idp_password("nora")), PAM_PERM_DENIED);
    expect_success(ln, "wendy, default_role none", ln("wendy", idp_password("wendy")), "wendy", "worker", "corp-oidc");
}

// cvat-authctl over OIDC: login prints the IdP, explain names the rule that chose the IdP and
// the claim values that gave the role, status shows the discovery state.
void authctl_oidc(void**) {
    Login l = start("ctl", config({IdpEntry{}}));
    std::string ctl = env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + l.daemon->socket() + " ";
    auto run = [](const std::string& cmd, int& status) {
        std::string out;
        FILE* p = popen((cmd + " 2>&1").c_str(), "r");
        char buf[4096];
        size_t n;
        while (p != nullptr && (n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
        int st = p != nullptr ? pclose(p) : -1;
        status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return out;
    };
    int st = -1;
    std::string out = run("echo '" + idp_password("bert") + "' | " + ctl + "login bert", st);
    if (st != 0 || !contains(out, "role: admin") || !contains(out, "idp: corp-oidc"))
        fail_msg("authctl login bert (exit %d):\n%s", st, out.c_str());

    out = run(ctl + "explain bert", st);
    // The trace of bert's sign-in: the claim's values, the entries that matched, the role.
    if (st != 0 || !contains(out, "selection_mode lowest_weight") || !contains(out, "role_claim groups: ") ||
        !contains(out, "role_values.admin lists 'cvat-admins'") ||
        !contains(out, "role_values.worker lists 'cvat-workers'") || !contains(out, "role: admin"))
        fail_msg("authctl explain bert (exit %d):\n%s", st, out.c_str());
    // Before any sign-in, explain says why it cannot know the claims.
    out = run(ctl + "explain uma", st);
    if (st == 0 || !contains(out, "no sign-in through corp-oidc"))
        fail_msg("authctl explain uma (exit %d):\n%s", st, out.c_str());

    out = run(ctl + "status", st);
    if (st != 0 || !contains(out, "oidc corp-oidc") || !contains(out, g->idp->issuer()))
        fail_msg("authctl status (exit %d):\n%s", st, out.c_str());
}

// ---- token logins ---------------------------------------------------------------------------

void token_login_valid(void**) {
    IdpEntry e;
    Login l = start("token", config({e}));
    std::string token = g->idp->id_token("ada", idp_password("ada"));
    if (token.empty()) fail_msg("the IdP gave no ID token for ada");
    expect_success(l, "ada with her ID token", l("ada", token), "ada", "admin", "corp-oidc");
    token = g->idp->id_token("bert", idp_password("bert"));
    expect_success(l, "bert with his ID token", l("bert", token), "bert", "admin", "corp-oidc");
    token = g->idp->id_token("wendy", idp_password("wendy"));
    expect_success(l, "wendy with her ID token", l("wendy", token), "wendy", "worker", "corp-oidc");

    // Forged with the IdP's own key and kid: indistinguishable from a real token, so accepted —
    // which shows that the refusals below are about the one thing each changes.
    expect_success(l, "ada, token forged with the IdP's key", l("ada", idp_signed({})), "ada", "admin", "corp-oidc");
    Claims uma;
    uma.user = "uma";
    uma.groups = "[\"cvat-users\"]";
    expect_success(l, "uma, token forged with the IdP's key", l("uma", idp_signed(uma)), "uma", "user", "corp-oidc");

    // Someone else's token: never a login as the name typed.
    auto o = l("uma", g->idp->id_token("ada", idp_password("ada")));
    if (o.authenticate == PAM_SUCCESS && o.pam_user == "uma")
        fail_msg("ada's token logged in as uma (CVAT_ROLE %s)", env_of(o, "CVAT_ROLE").c_str());
}

void token_login_refused(void**) {
    Login l = start("tokenbad", config({IdpEntry{}}));
    const std::string kid = g->idp->kid();
    struct Case {
        std::string what;
        std::string token;
    };
    Claims expired;
    expired.exp_in = -3600;
    expired.iat_ago = 7200;
    Claims wrong_aud;
    wrong_aud.aud = "some-other-client";
    Claims several_aud;
    several_aud.aud = "[\"some-other-client\",\"yet-another\"]";
    Claims wrong_iss;
    wrong_iss.iss = g->idp->base_url() + "/api/oidc-evil";
    Claims future;
    future.iat_ago = -3600;
    const std::string good = claims({});
    const std::vector<Case> cases = {
        {"expired (exp an hour ago)", idp_signed(expired)},
        {"wrong aud", idp_signed(wrong_aud)},
        {"aud without the client id", idp_signed(several_aud)},
        {"wrong iss", idp_signed(wrong_iss)},
        {"iat an hour ahead", idp_signed(future)},
        {"unknown key (new kid)", forge_jwt(header("RS256", "stranger-kid-1"), good, g->stranger_key, JwtAlg::rs256)},
        {"unknown key under the IdP's kid", forge_jwt(header("RS256", kid), good, g->stranger_key, JwtAlg::rs256)},
        {"alg none", forge_jwt(header("none", ""), good, "", JwtAlg::none)},
        {"alg none with the IdP's kid", forge_jwt(header("none", kid), good, "", JwtAlg::none)},
        {"alg None", forge_jwt(header("None", kid), good, "", JwtAlg::none)},
        {"RS256 header, no signature", forge_jwt(header("RS256", kid), good, "", JwtAlg::none)},
        {"HS256 keyed with the IdP's public key PEM",
         forge_jwt(header("HS256", kid), good, g->idp->public_key_pem(), JwtAlg::hs256)},
        {"HS256 keyed with the IdP's public key PEM, no kid",
         forge_jwt(header("HS256", ""), good, g->idp->public_key_pem(), JwtAlg::hs256)},
        {"HS256 keyed with the IdP's JWK JSON",
         forge_jwt(header("HS256", kid), good, g->idp->jwk_json(), JwtAlg::hs256)},
        {"HS256 keyed with the client secret",
         forge_jwt(header("HS256", kid), good, g->idp->client_secret(), JwtAlg::hs256)},
        {"signature of another token", [&] {
             std::string a = idp_signed({});
             Claims admin;
             admin.user = "uma";
             std::string b = idp_signed(admin);
             return b.substr(0, b.rfind('.')) + a.substr(a.rfind('.'));
         }()},
    };
    // The real thing passes on this daemon (else every refusal below proves nothing).
    expect_success(l, "control: IdP-signed token", l("ada", idp_signed({})), "ada", "admin", "corp-oidc");
    for (const Case& c : cases) {
        auto o = l("ada", c.token);
        expect_refused("token " + c.what, o, PAM_AUTH_ERR);
        if (!env_of(o, "CVAT_ROLE").empty()) fail_msg("token %s: CVAT_ROLE exported", c.what.c_str());
    }
    // Never logged (DESIGN.md §5): not even a refused one.
    std::string log = l.log();
    if (contains(log, idp_signed({}).substr(0, 60)) || contains(log, cases[0].token.substr(0, 60)))
        fail_msg("a token appears in the daemon log %s", l.daemon->log_path().c_str());
}

// ---- selection ------------------------------------------------------------------------------

// Two entries for the same glewlwyd (two OIDC instances: different issuers), told apart by
// CVAT_IDP.
std::vector<IdpEntry> two_idps(int corp_weight, int other_weight) {
    IdpEntry corp;
    corp.id = "corp-oidc";
    corp.email_domain = "example.test";
    corp.weight = corp_weight;
    IdpEntry other;
    other.id = "other-oidc";
    other.issuer = g->idp->short_issuer();
    other.email_domain = "other.test";
    other.method = "client_secret_post";
    other.weight = other_weight;
    return {corp, other};
}

void selection_by_email_domain(void**) {
    Login l = start("byemail", config(two_idps(10, 10), "email_address"));
    auto o = l("ada@example.test", idp_password("ada"));
    if (o.authenticate != PAM_SUCCESS)
        fail_msg("ada@example.test: %s; messages:\n%s", pam_strerror(nullptr, o.authenticate), joined(o.messages).c_str());
    assert_string_equal(env_of(o, "CVAT_IDP").c_str(), "corp-oidc");
    assert_string_equal(env_of(o, "CVAT_ROLE").c_str(), "admin");
    o = l("wendy@other.test", idp_password("wendy"));
    if (o.authenticate != PAM_SUCCESS)
        fail_msg("wendy@other.test: %s", pam_strerror(nullptr, o.authenticate));
    assert_string_equal(env_of(o, "CVAT_IDP").c_str(), "other-oidc");
    assert_string_equal(env_of(o, "CVAT_ROLE").c_str(), "worker");
    // Domains compare without case, as mail does.
    o = l("uma@EXAMPLE.TEST", idp_password("uma"));
    if (o.authenticate != PAM_SUCCESS) fail_msg("uma@EXAMPLE.TEST: %s", pam_strerror(nullptr, o.authenticate));
    assert_string_equal(env_of(o, "CVAT_IDP").c_str(), "corp-oidc");
    // A domain no IdP claims goes nowhere.
    o = l("ada@nowhere.test", idp_password("ada"));
    if (o.authenticate == PAM_SUCCESS) fail_msg("ada@nowhere.test logged in via %s", env_of(o, "CVAT_IDP").c_str());
    // A token is routed by its issuer, whatever the name's domain.
    o = l("ada@example.test", g->idp->id_token("ada", idp_password("ada")));
    if (o.authenticate != PAM_SUCCESS) fail_msg("ada@example.test with her token: %s", pam_strerror(nullptr, o.authenticate));
    assert_string_equal(env_of(o, "CVAT_IDP").c_str(), "corp-oidc");
    Claims other;
    other.iss = g->idp->short_issuer();
    other.user = "wendy";
    other.email = "wendy@other.test";  // the user name under email_address
    other.groups = "[\"cvat-workers\"]";
    o = l("wendy@other.test", idp_signed(other));
    if (o.authenticate != PAM_SUCCESS) fail_msg("wendy with an other-oidc token: %s", pam_strerror(nullptr, o.authenticate));
    assert_string_equal(env_of(o, "CVAT_IDP").c_str(), "other-oidc");
}

void selection_by_weight(void**) {
    Login l = start("byweight", config(two_idps(20, 5)));
    auto o = l("ada", idp_password("ada"));
    expect_success(l, "lowest weight other-oidc", o, "ada", "admin", "other-oidc");
    Login l2 = start("byweight", config(two_idps(5, 20)));
    expect_success(l2, "lowest weight corp-oidc", l2("ada", idp_password("ada")), "ada", "admin", "corp-oidc");
    // idp= forces one, whatever the weights.
    expect_success(l2, "idp=other-oidc", l2("ada", idp_password("ada"), "idp=other-oidc"), "ada", "admin",
                   "other-oidc");
    o = l2("ada", idp_password("ada"), "idp=no-such-idp");
    if (o.authenticate == PAM_SUCCESS) fail_msg("idp=no-such-idp logged in via %s", env_of(o, "CVAT_IDP").c_str());
}

// ---- device flow ----------------------------------------------------------------------------

std::string device_config() {
    IdpEntry corp;
    IdpEntry short_lived;
    short_lived.id = "short-oidc";
    short_lived.issuer = g->idp->short_issuer();
    short_lived.email_domain = "short.test";
    short_lived.weight = 50;
    return config({corp, short_lived});
}

void device_approved(void**) {
    Login l = start("device", device_config());
    auto run = device_login(l, "bert", "idp=corp-oidc",
                            [](const std::string& uc) { return g->idp->approve(uc, "bert", idp_password("bert")); },
                            true);
    if (run.prompts.empty()) fail_msg("no prompt; PAM %s", pam_strerror(nullptr, run.out.authenticate));
    if (!run.action_ok) fail_msg("the IdP did not approve user code \"%s\"", run.user_code.c_str());
    expect_success(l, "device login, approved", run.out, "bert", "admin", "corp-oidc");
    // sshd shows text only with a prompt: the first message is an echo-on prompt.
    assert_int_equal(run.prompt_styles.front(), PAM_PROMPT_ECHO_ON);
    const std::string& text = run.prompts.front();
    std::string uri = g->idp->issuer() + "/device";
    if (!contains(text, uri)) fail_msg("prompt lacks the verification URI %s:\n%s", uri.c_str(), text.c_str());
    if (!contains(text, run.user_code)) fail_msg("prompt lacks the user code:\n%s", text.c_str());
    if (!contains(lower(text), "enter")) fail_msg("prompt does not say to press Enter:\n%s", text.c_str());
    // The QR code is the one of verification_uri_complete, drawn in ASCII (no tty: maybe sshd).
    auto qr = qr_in(text);
    if (qr.empty()) fail_msg("no ASCII QR code in the prompt:\n%s", text.c_str());
    std::string complete = uri + "?code=" + run.user_code;
    if (!qr_encodes(qr, complete) && !qr_encodes(qr, uri))
        fail_msg("the QR code (%zu modules) encodes neither %s nor %s", qr.size(), complete.c_str(), uri.c_str());
    for (unsigned char c : text)
        if (c >= 0x80) fail_msg("non-ASCII byte 0x%02x in a prompt that may go through sshd", c);
}

// enable_pkce: the device authorization carries an S256 challenge and the polls the verifier.
// glewlwyd 2.7.5 keeps no challenge for device codes (gpo_device_authorization has no column
// for one), so this proves only that a PKCE-enabled flow completes against an IdP that ignores
// it, as RFC 7636 allows; the S256 derivation is checked against RFC 7636 Appendix B in
// test_oidc.
void device_approved_pkce(void**) {
    std::string yaml = device_config();
    yaml.replace(yaml.find("  enabled: true\n"), 16, "  enabled: true\n  enable_pkce: true\n");
    Login l = start("devicepkce", yaml);
    auto run = device_login(l, "ada", "idp=corp-oidc",
                            [](const std::string& uc) { return g->idp->approve(uc, "ada", idp_password("ada")); },
                            true);
    if (!run.action_ok) fail_msg("the IdP did not approve user code \"%s\"", run.user_code.c_str());
    expect_success(l, "device login with PKCE, approved", run.out, "ada", "admin", "corp-oidc");
}

// Enter long before the user approves: the daemon keeps polling through
// authorization_pending, and asks again ("press Enter when approved") before pam_cvat's
// per-step wait (timeout=4 here) would run out; the login completes after the approval.
void device_approved_late(void**) {
    Login l = start("devicelate", device_config());
    static constexpr double kApproveAfter = 9.0;
    double t0 = now_mono();
    auto run = device_login(l, "uma", "idp=corp-oidc timeout=4",
                            [](const std::string& uc) {
                                std::this_thread::sleep_for(std::chrono::duration<double>(kApproveAfter));
                                return g->idp->approve(uc, "uma", idp_password("uma"));
                            },
                            false, 0.2);
    double took = now_mono() - t0;
    if (!run.action_ok) fail_msg("the IdP did not approve user code \"%s\"", run.user_code.c_str());
    expect_success(l, "device login, approved after Enter", run.out, "uma", "user", "corp-oidc");
    if (took < kApproveAfter) fail_msg("success %.1f s in, before the approval at %.1f s", took, kApproveAfter);
    if (run.prompts.size() < 2)
        fail_msg("no new prompt within a 4 s client wait over %.1f s (%zu prompts)", took, run.prompts.size());
    for (std::size_t i = 1; i < run.prompts.size(); ++i)
        if (!contains(lower(run.prompts[i]), "enter"))
            fail_msg("prompt %zu does not say to press Enter:\n%s", i, run.prompts[i].c_str());
    std::printf("# approved after %.0f s with a 4 s client wait: %zu prompts, success after %.1f s\n", kApproveAfter,
                run.prompts.size(), took);
}

void device_no_qr(void**) {
    Login l = start("devicenoqr", device_config());
    auto run = device_login(l, "ada", "idp=corp-oidc no_qr",
                            [](const std::string& uc) { return g->idp->approve(uc, "ada", idp_password("ada")); },
                            true);
    expect_success(l, "device login, no_qr", run.out, "ada", "admin", "corp-oidc");
    const std::string& text = run.prompts.front();
    if (!contains(text, g->idp->issuer() + "/device")) fail_msg("no_qr dropped the URI:\n%s", text.c_str());
    if (!contains(text, run.user_code)) fail_msg("no_qr dropped the user code:\n%s", text.c_str());
    if (!qr_in(text).empty() || contains(text, "####")) fail_msg("no_qr, yet a QR code:\n%s", text.c_str());
}

void device_denied(void**) {
    Login l = start("devicedeny", device_config());
    auto run = device_login(l, "uma", "idp=corp-oidc",
                            [](const std::string& uc) { return g->idp->deny(uc, "uma", idp_password("uma")); },
                            true);
    if (!run.action_ok) fail_msg("idp.sh deny failed for \"%s\"", run.user_code.c_str());
    expect_refused("device login, denied", run.out, PAM_AUTH_ERR);
    std::string said = lower(after_first_prompt(run.out.messages));
    if (!contains(said, "denied") && !contains(said, "refused") && !contains(said, "rejected"))
        fail_msg("the user was not told the login was denied; after the prompt came:\n%s", said.c_str());
}

// The short-lived instance's codes expire after 4 s; nobody approves.
void device_expired(void**) {
    Login l = start("deviceexp", device_config());
    double t0 = now_mono();
    auto run = device_login(l, "ada", "idp=short-oidc", [](const std::string&) { return true; }, false, 0.5);
    double took = now_mono() - t0;
    expect_refused("device login, expired", run.out, PAM_AUTH_ERR);
    std::string said = lower(after_first_prompt(run.out.messages));
    if (!contains(said, "expired"))
        fail_msg("the user was not told the code expired; after the prompt came:\n%s", said.c_str());
    if (took > 4 + 6 + kSlack) fail_msg("expiry took %.1f s for a 4 s code", took);
}

// RFC 8628 §3.5: after slow_down the client adds 5 s to its interval (1 s here). idp.sh
// slow-down makes the next poll a slow_down; the test sees in glewlwyd's DB when that poll
// came, approves at once, and the tokens must not be fetched before 1 + 5 s after it.
void device_slow_down(void**) {
    Login l = start("deviceslow", device_config());
    std::atomic<double> slow_poll_at{0};
    auto run = device_login(
        l, "wendy", "idp=corp-oidc",
        [&](const std::string& uc) {
            long long marked = -1;
            if (!g->idp->slow_down(uc) || (marked = g->idp->last_poll(uc)) < 0) return false;
            double until = now_mono() + 20;
            while (g->idp->last_poll(uc) == marked) {  // the daemon's next poll resets the mark
                if (now_mono() > until) return false;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            slow_poll_at = now_mono();
            return g->idp->approve(uc, "wendy", idp_password("wendy"));
        },
        false, 0.3);
    double done = now_mono();
    if (!run.action_ok) fail_msg("no poll answered slow_down was seen, or approval failed");
    expect_success(l, "device login after slow_down", run.out, "wendy", "worker", "corp-oidc");
    double after = done - slow_poll_at.load();
    std::printf("# slow_down: tokens %.1f s after the slow_down answer (interval 1 s + 5 s)\n", after);
    // 6 s minus glewlwyd's whole-second clock and the 50 ms sampling.
    if (after < 5.0) fail_msg("next poll only %.1f s after slow_down: the interval did not grow by 5 s", after);
}

// ---- outages --------------------------------------------------------------------------------

void idp_unreachable(void**) {
    // Nothing listens: refused at once.
    IdpEntry dead;
    dead.issuer = "https://127.0.0.1:" + std::to_string(free_tcp_port()) + "/api/oidc";
    Login l = start("dead", config({dead}));
    auto o = l("ada", idp_password("ada"));
    expect_refused("IdP port closed", o, PAM_AUTHINFO_UNAVAIL);
    if (o.seconds > 3 + kSlack) fail_msg("a closed port took %.1f s", o.seconds);
    // A token of the dead IdP itself: its keys cannot be had, so nobody can say no or yes.
    Claims of_dead;
    of_dead.iss = dead.issuer;
    o = l("ada", idp_signed(of_dead));
    expect_refused("token login, its IdP never reached (no JWKS)", o, PAM_AUTHINFO_UNAVAIL);
    // A token of an issuer no entry names is refused outright, without waiting for the dead one.
    o = l("ada", g->idp->id_token("ada", idp_password("ada")));
    expect_refused("token login, issuer not configured", o, PAM_AUTH_ERR);
    if (o.seconds > 1.0) fail_msg("an unconfigured issuer took %.1f s: a dead IdP was waited for", o.seconds);

    // Accepts TCP, never answers (not even the TLS handshake): bounded by the HTTP timeout.
    SilentServer silent;
    IdpEntry mute;
    mute.issuer = "https://127.0.0.1:" + std::to_string(silent.port()) + "/api/oidc";
    Login ls = start("silent", config({mute}));
    o = ls("ada", idp_password("ada"));
    expect_refused("IdP silent", o, PAM_AUTHINFO_UNAVAIL);
    std::printf("# silent IdP: PAM_AUTHINFO_UNAVAIL after %.1f s\n", o.seconds);
    if (o.seconds > kHttpTimeout + kSlack) fail_msg("a silent IdP took %.1f s (HTTP timeout %.0f s)", o.seconds, kHttpTimeout);

    // A device login against it.
    double t0 = now_mono();
    auto run = device_login(ls, "ada", "idp=corp-oidc", nullptr, false);
    expect_refused("device login, IdP silent", run.out, PAM_AUTHINFO_UNAVAIL);
    if (now_mono() - t0 > kHttpTimeout + kSlack) fail_msg("device start against a silent IdP took %.1f s", now_mono() - t0);
}

// ---- users of the host (NSS) ---------------------------------------------------------------

// The nss: range of these daemons; role groups take its first three IDs.
constexpr std::uint32_t kIdMin = 400000, kIdMax = 499999;
constexpr const char* kHome = "/home/idp/";

// libnss_cvat.so.2 ($NSS_CVAT_SO), loaded once by the first test that needs it.
NssModule g_nss;

void load_nss() {
    if (g_nss.handle == nullptr) g_nss = NssModule::load();
}

using Pw = PwEntry;
using Gr = GrEntry;
Pw pwnam(const std::string& name) { return lookup_pwnam(g_nss, name); }
Pw pwuid(uid_t uid) { return lookup_pwuid(g_nss, uid); }
Gr grnam(const std::string& name) { return lookup_grnam(g_nss, name); }
std::vector<gid_t> initgroups(const std::string& user, gid_t primary) { return lookup_initgroups(g_nss, user, primary); }

const char* nss_name(nss_status st) {
    switch (st) {
        case NSS_STATUS_SUCCESS: return "SUCCESS";
        case NSS_STATUS_NOTFOUND: return "NOTFOUND";
        case NSS_STATUS_UNAVAIL: return "UNAVAIL";
        case NSS_STATUS_TRYAGAIN: return "TRYAGAIN";
        default: return "other";
    }
}

// The module finds the daemon, and the mapped file beside its socket, through this.
void point_at(const Login& l) { setenv("CVAT_AUTH_SOCKET", l.daemon->socket().c_str(), 1); }

// The mapped file (nss.mc) is rewritten a moment after a change (the daemon coalesces changes
// for 200 ms), and a warm lookup may see the previous file until then: asks `lookup` again
// until `ok` holds, for at most 3 s, and returns the last answer.
template <typename Lookup, typename Ok>
auto settled(Lookup lookup, Ok ok) {
    double until = now_mono() + 3.0;
    auto r = lookup();
    while (!ok(r) && now_mono() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        r = lookup();
    }
    return r;
}

// A daemon under selection_mode email_address (ada@example.test goes to corp-oidc) with an
// nss: section.
std::string nss_config(const std::string& nss_extra = "") {
    return config({IdpEntry{}}, "email_address") +
           "nss:\n"
           "  id_min: " + std::to_string(kIdMin) + "\n"
           "  id_max: " + std::to_string(kIdMax) + "\n"
           "  home: " + kHome + "%u\n"
           "  shell: /bin/sh\n" + nss_extra;
}

std::string run_cmd(const std::string& cmd, int& status) {
    std::string out;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    char buf[4096];
    size_t n;
    while (p != nullptr && (n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    int st = p != nullptr ? pclose(p) : -1;
    status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

std::string cache_show(const Login& l, const std::string& user) {
    int st = -1;
    std::string out = run_cmd(env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + l.daemon->socket() +
                                  " cache show " + user, st);
    if (st != 0) fail_msg("cvat-authctl cache show %s (exit %d):\n%s", user.c_str(), st, out.c_str());
    return out;
}

// A user of the host as a login made it: found, uid in the range and clear of the role
// groups' GIDs, its own primary group, home and shell from nss:; getpwuid agrees.
void expect_host_user(const std::string& what, const Pw& p, const std::string& name) {
    if (p.status != NSS_STATUS_SUCCESS) fail_msg("%s: getpwnam(%s) %s, want SUCCESS", what.c_str(), name.c_str(), nss_name(p.status));
    if (p.name != name) fail_msg("%s: pw_name \"%s\", want \"%s\"", what.c_str(), p.name.c_str(), name.c_str());
    if (p.uid < kIdMin + 3 || p.uid > kIdMax)
        fail_msg("%s: uid %u outside %u..%u (the first three are the role groups')", what.c_str(), p.uid, kIdMin + 3, kIdMax);
    if (p.gid != p.uid) fail_msg("%s: gid %u, want the user's own group %u", what.c_str(), p.gid, p.uid);
    if (p.dir != kHome + name) fail_msg("%s: home \"%s\", want \"%s%s\"", what.c_str(), p.dir.c_str(), kHome, name.c_str());
    if (p.shell != "/bin/sh") fail_msg("%s: shell \"%s\"", what.c_str(), p.shell.c_str());
    Pw by_uid = pwuid(p.uid);
    if (by_uid.status != NSS_STATUS_SUCCESS || by_uid.name != name)
        fail_msg("%s: getpwuid(%u) %s \"%s\", want %s", what.c_str(), p.uid, nss_name(by_uid.status), by_uid.name.c_str(),
                 name.c_str());
}

// `user` is listed in the role group `group` (GID `gid`), and in no other role group.
void expect_in_role_group(const std::string& what, const std::string& user, const std::string& group, gid_t gid) {
    Gr gr = settled([&] { return grnam(group); }, [&](const Gr& r) { return r.lists(user); });
    if (gr.status != NSS_STATUS_SUCCESS || gr.gid != gid || !gr.lists(user))
        fail_msg("%s: getgrnam(%s) %s gid %u, %zu members, want gid %u listing %s", what.c_str(), group.c_str(),
                 nss_name(gr.status), gr.gid, gr.members.size(), gid, user.c_str());
    for (const char* other : {"cvat-admin", "cvat-user", "cvat-worker"})
        if (group != other && grnam(other).lists(user))
            fail_msg("%s: %s is listed in %s as well as %s", what.c_str(), user.c_str(), other, group.c_str());
}

// The uid a fresh daemon (its own cache) gives `user` after one successful login.
uid_t uid_after_login(const std::string& user, const std::string& password) {
    Login l = start("nssref", nss_config());
    point_at(l);
    expect_success(l, "reference login of " + user, l(user, password), user, "admin", "corp-oidc");
    Pw p = pwnam(user);
    expect_host_user("reference daemon", p, user);
    return p.uid;
}

// IdP users cannot be looked up at the IdP: ada@example.test is no user of the host until she
// signs in; then she is, with her role group, and stays across a restart of the daemon.
void nss_idp_user_after_login(void**) {
    load_nss();
    const std::string ada = "ada@example.test", uma = "uma@example.test";
    const std::string yaml = nss_config();
    Login l = start("nsslogin", yaml);
    point_at(l);
    Pw before = pwnam(ada);
    if (before.status != NSS_STATUS_NOTFOUND)
        fail_msg("getpwnam(%s) before any login: %s (uid %u), want NOTFOUND", ada.c_str(), nss_name(before.status),
                 before.uid);
    Gr admins = grnam("cvat-admin");
    assert_int_equal(admins.status, NSS_STATUS_SUCCESS);
    assert_int_equal(admins.gid, kIdMin);
    assert_false(admins.lists(ada));

    // The name the host knows is the verdict's canonical one (the email under email_address).
    auto o = l(ada, idp_password("ada"));
    expect_success(l, "ada's password login", o, ada, "admin", "corp-oidc");
    Pw p = pwnam(o.pam_user);
    expect_host_user("after ada's login", p, ada);
    expect_in_role_group("after ada's login", ada, "cvat-admin", kIdMin);
    auto gids = initgroups(ada, p.gid);
    if (gids.size() != 1 || gids[0] != kIdMin)
        fail_msg("initgroups(%s): %zu groups, want only cvat-admin (%u)", ada.c_str(), gids.size(), kIdMin);
    // A negative entry of the lookup before the login does not hide her.
    assert_int_equal(pwnam(ada).status, NSS_STATUS_SUCCESS);

    expect_success(l, "uma's password login", l(uma, idp_password("uma")), uma, "user", "corp-oidc");
    Pw pu = pwnam(uma);
    expect_host_user("after uma's login", pu, uma);
    assert_int_not_equal(pu.uid, p.uid);
    expect_in_role_group("after uma's login", uma, "cvat-user", kIdMin + 1);
    expect_in_role_group("after uma's login", ada, "cvat-admin", kIdMin);

    // A new daemon on the same cache: the IdP never asked, same users, same IDs.
    l.daemon->stop();
    l.daemon.reset();
    // The module keeps the stopped daemon's mapped file until a newer one supersedes it:
    // one lookup through another socket path drops it, so what follows comes from the new
    // daemon (its socket, or the file it publishes from its cache).
    ::unlink((l.dir + "/nss.mc").c_str());
    setenv("CVAT_AUTH_SOCKET", (l.dir + "/nowhere/socket").c_str(), 1);
    assert_int_equal(pwnam(ada).status, NSS_STATUS_UNAVAIL);
    l.daemon = std::make_unique<Daemon>(l.dir, yaml);
    point_at(l);
    Pw again = pwnam(ada);
    expect_host_user("after a restart", again, ada);
    if (again.uid != p.uid) fail_msg("after a restart ada's uid is %u, was %u", again.uid, p.uid);
    assert_int_equal(pwnam(uma).uid, pu.uid);
    expect_in_role_group("after a restart", ada, "cvat-admin", kIdMin);
    expect_in_role_group("after a restart", uma, "cvat-user", kIdMin + 1);
    if (!contains(cache_show(l, ada), "uid: " + std::to_string(p.uid)))
        fail_msg("cache show %s after a restart lacks uid %u", ada.c_str(), p.uid);
    // Still nobody else.
    assert_int_equal(pwnam("bert@example.test").status, NSS_STATUS_NOTFOUND);
}

// The uid comes from iss + sub, not from the order of arrival: two daemons with their own
// caches, whose users sign in in opposite orders, agree on every uid.
void nss_idp_uid_from_subject(void**) {
    load_nss();
    const std::string ada = "ada@example.test", uma = "uma@example.test";
    Login a = start("nsssub", nss_config());
    point_at(a);
    expect_success(a, "uma first", a(uma, idp_password("uma")), uma, "user", "corp-oidc");
    expect_success(a, "ada second", a(ada, idp_password("ada")), ada, "admin", "corp-oidc");
    Pw ada_a = pwnam(ada);
    Pw uma_a = pwnam(uma);
    expect_host_user("daemon A", ada_a, ada);
    expect_host_user("daemon A", uma_a, uma);

    Login b = start("nsssub", nss_config());
    assert_true(a.dir != b.dir);
    point_at(b);
    assert_int_equal(pwnam(ada).status, NSS_STATUS_NOTFOUND);  // B has seen nobody yet
    expect_success(b, "ada first", b(ada, idp_password("ada")), ada, "admin", "corp-oidc");
    expect_success(b, "uma second", b(uma, idp_password("uma")), uma, "user", "corp-oidc");
    Pw ada_b = pwnam(ada);
    Pw uma_b = pwnam(uma);
    expect_host_user("daemon B", ada_b, ada);
    expect_host_user("daemon B", uma_b, uma);
    print_message("# uids from iss+sub: ada %u, uma %u\n", ada_a.uid, uma_a.uid);
    if (ada_a.uid != ada_b.uid || uma_a.uid != uma_b.uid)
        fail_msg("separate caches disagree: ada %u vs %u, uma %u vs %u", ada_a.uid, ada_b.uid, uma_a.uid, uma_b.uid);
    assert_int_not_equal(ada_a.uid, uma_a.uid);

    // Same issuer, same name, another sub (a token signed with the IdP's key, sub "sub-ada"):
    // another uid, so the uid follows the subject and not the name.
    Login c = start("nsssub", nss_config());
    point_at(c);
    expect_success(c, "ada with a token for sub-ada", c(ada, idp_signed({})), ada, "admin", "corp-oidc");
    Pw ada_c = pwnam(ada);
    expect_host_user("daemon C", ada_c, ada);
    if (ada_c.uid == ada_a.uid)
        fail_msg("%s got uid %u for two different subs of the same issuer", ada.c_str(), ada_c.uid);
}

// nss.provisional_users: a name email_address routes to an IdP resolves before the first
// login (sshd must know the user to reach the device flow), and the login makes the entry
// permanent with the same uid: under this setting the uid comes from the IdP id + the name, not
// from iss + sub, so what sshd took before PAM is the user's uid for good. A second daemon with
// its own cache that sees the login first, without a lookup before it, agrees.
void nss_idp_provisional_user(void**) {
    load_nss();
    const std::string ada = "ada@example.test";
    const uid_t from_subject = uid_after_login(ada, idp_password("ada"));  // provisional_users off

    Login l = start("nssprov", nss_config("  provisional_users: true\n"));
    point_at(l);
    Pw prov = pwnam(ada);
    expect_host_user("provisional entry", prov, ada);
    std::string show = cache_show(l, ada);
    if (!contains(show, "provisional")) fail_msg("cache show %s before the login:\n%s", ada.c_str(), show.c_str());
    // A provisional user has no role yet: no role group lists her.
    for (const char* group : {"cvat-admin", "cvat-user", "cvat-worker"})
        if (grnam(group).lists(ada)) fail_msg("provisional %s listed in %s", ada.c_str(), group);
    // Only names an IdP claims get one.
    assert_int_equal(pwnam("ada@nowhere.test").status, NSS_STATUS_NOTFOUND);
    print_message("# provisional uid %u; iss+sub would give %u\n", prov.uid, from_subject);
    // Otherwise this test could not tell the two rules apart.
    if (prov.uid == from_subject) fail_msg("the provisional uid %u is the one from iss+sub too", prov.uid);

    expect_success(l, "ada's first login", l(ada, idp_password("ada")), ada, "admin", "corp-oidc");
    // At once, as sshd's session asks right after PAM: the role group is hers (the mapped file
    // was rewritten before the verdict, not 200 ms later), and the uid has not moved.
    auto gids = initgroups(ada, prov.gid);
    if (gids.size() != 1 || gids[0] != kIdMin)
        fail_msg("initgroups(%s) right after the first login: %zu groups, want only cvat-admin (%u)", ada.c_str(),
                 gids.size(), kIdMin);
    Pw after = pwnam(ada);
    expect_host_user("after the first login", after, ada);  // getpwuid(uid) is ada too
    if (after.uid != prov.uid)
        fail_msg("after the login ada's uid is %u, the provisional entry had %u (iss+sub gives %u)", after.uid,
                 prov.uid, from_subject);
    Pw by_uid = pwuid(prov.uid);
    if (by_uid.status != NSS_STATUS_SUCCESS || by_uid.name != ada)
        fail_msg("getpwuid(%u) after the login: %s \"%s\"", prov.uid, nss_name(by_uid.status), by_uid.name.c_str());
    expect_in_role_group("after the first login", ada, "cvat-admin", kIdMin);
    show = cache_show(l, ada);
    if (!contains(show, "backend: corp-oidc\n") || contains(show, "provisional") ||
        !contains(show, "immutable id: oidc:" + g->idp->issuer() + " ") ||
        !contains(show, "uid: " + std::to_string(prov.uid) + " "))
        fail_msg("cache show %s after the login:\n%s", ada.c_str(), show.c_str());
    // Permanent: another login (a token this time) does not move it.
    std::string token = g->idp->id_token(ada, idp_password("ada"));
    expect_success(l, "ada's token login", l(ada, token), ada, "admin", "corp-oidc");
    assert_int_equal(pwnam(ada).uid, prov.uid);

    // Another host (its own empty cache): the login comes first, no lookup before it.
    Login b = start("nssprov", nss_config("  provisional_users: true\n"));
    point_at(b);
    expect_success(b, "ada's first login on host B", b(ada, idp_password("ada")), ada, "admin", "corp-oidc");
    Pw on_b = pwnam(ada);
    expect_host_user("host B", on_b, ada);
    if (on_b.uid != prov.uid) fail_msg("host B gave ada uid %u, host A %u", on_b.uid, prov.uid);
    expect_in_role_group("host B", ada, "cvat-admin", kIdMin);
}

// Under nss.provisional_users the uid belongs to the name, so the subject seen at the first
// login is bound to it: the same name with another subject (the IdP gave it to someone else) is
// refused, and the log names both subjects only by hash. `cvat-authctl cache expire NAME` hands
// the name over; the new subject keeps the name's uid, and now the old one is refused.
void nss_idp_name_reused(void**) {
    load_nss();
    const std::string ada = "ada@example.test";
    Login l = start("nssreuse", nss_config("  provisional_users: true\n"));
    point_at(l);
    expect_success(l, "ada's first login", l(ada, idp_password("ada")), ada, "admin", "corp-oidc");
    Pw first = pwnam(ada);
    expect_host_user("after the first login", first, ada);

    // A token of the same IdP (signed with its key) for the same name and another sub.
    Claims other;
    other.sub = "sub-of-another-ada-4711";
    const std::string forged = idp_signed(other);
    const std::size_t mark = read_file(l.daemon->log_path()).size();
    auto o = l(ada, forged);
    expect_refused("ada's name with another subject", o, PAM_PERM_DENIED);
    if (!contains(joined(o.messages), "another"))
        fail_msg("the refusal does not say why; messages:\n%s", joined(o.messages).c_str());
    std::string log = read_file(l.daemon->log_path()).substr(mark);
    if (!contains(log, "refused: on this host the name belongs to subject sha256:"))
        fail_msg("no warning about the subject in the daemon log:\n%s", log.c_str());
    if (contains(log, other.sub) || contains(log, forged.substr(0, 40)))
        fail_msg("the daemon log holds the sub or the token:\n%s", log.c_str());
    // Nothing moved: same uid, same subject.
    Pw still = pwnam(ada);
    if (still.uid != first.uid) fail_msg("after the refusal ada's uid is %u, was %u", still.uid, first.uid);
    if (contains(cache_show(l, ada), other.sub)) fail_msg("the refused subject was recorded");
    // Nor does the refused sign-in count for the account phase or the verdict cache.
    o = l(ada, forged);
    expect_refused("the same token again", o, PAM_PERM_DENIED);

    // The admin agrees: the entry is expired, the new subject takes the name and its uid.
    int st = -1;
    std::string out = run_cmd(env_or("CVAT_AUTHCTL", "cvat-authctl") + " --socket " + l.daemon->socket() +
                                  " cache expire " + ada, st);
    if (st != 0) fail_msg("cvat-authctl cache expire %s (exit %d):\n%s", ada.c_str(), st, out.c_str());
    expect_success(l, "the other subject after cache expire", l(ada, forged), ada, "admin", "corp-oidc");
    Pw taken = pwnam(ada);
    expect_host_user("after the hand-over", taken, ada);
    if (taken.uid != first.uid) fail_msg("the name's uid moved from %u to %u", first.uid, taken.uid);
    if (!contains(cache_show(l, ada), " " + other.sub)) fail_msg("the new subject was not recorded");
    // Now the first subject is the stranger.
    expect_refused("the first subject after the hand-over", l(ada, idp_password("ada")), PAM_PERM_DENIED);
}

// A token login teaches the daemon the user as a password login does, with the same uid.
void nss_idp_token_login(void**) {
    load_nss();
    const std::string ada = "ada@example.test";
    const uid_t derived = uid_after_login(ada, idp_password("ada"));
    Login l = start("nsstoken", nss_config());
    point_at(l);
    assert_int_equal(pwnam(ada).status, NSS_STATUS_NOTFOUND);
    // glewlwyd keeps one sub per name it found the user by (uid or mail): the token is asked
    // for under the name the password login used, so it carries the same sub.
    std::string token = g->idp->id_token(ada, idp_password("ada"));
    if (token.empty()) fail_msg("the IdP gave no ID token for %s", ada.c_str());
    expect_success(l, "ada's token login", l(ada, token), ada, "admin", "corp-oidc");
    Pw p = pwnam(ada);
    expect_host_user("after a token login", p, ada);
    if (p.uid != derived) fail_msg("after a token login ada's uid is %u, after a password login %u", p.uid, derived);
    expect_in_role_group("after a token login", ada, "cvat-admin", kIdMin);
}

// ---- measurements ---------------------------------------------------------------------------

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

void login_latency(void**) {
    Login l = start("latency", config({IdpEntry{}}));
    std::string token = g->idp->id_token("ada", idp_password("ada"));
    std::vector<double> pw;
    std::vector<double> tok;
    for (int i = 0; i < 100; ++i) {
        auto o = l("ada", idp_password("ada"));
        if (o.authenticate != PAM_SUCCESS) fail_msg("password login %d failed: %s", i, pam_strerror(nullptr, o.authenticate));
        pw.push_back(o.seconds);
        o = l("ada", token);
        if (o.authenticate != PAM_SUCCESS) fail_msg("token login %d failed: %s", i, pam_strerror(nullptr, o.authenticate));
        tok.push_back(o.seconds);
    }
    std::printf("# median of 100 password logins (auth+account through libpam, same user): %.2f ms\n",
                median(pw) * 1000);
    std::printf("# median of 100 token logins (ID token as the password): %.2f ms\n", median(tok) * 1000);
}

// Last: the real IdP goes down. Password logins are unavailable within the timeout; a token
// still validates from the cached JWKS (no network needed, as mod_auth_openidc).
void idp_stopped(void**) {
    Login l = start("stopped", config({IdpEntry{}}));
    std::string token = g->idp->id_token("ada", idp_password("ada"));
    expect_success(l, "before the outage", l("ada", idp_password("ada")), "ada", "admin", "corp-oidc");
    expect_success(l, "token before the outage", l("ada", token), "ada", "admin", "corp-oidc");
    g->idp->stop_glewlwyd();
    auto o = l("uma", idp_password("uma"));
    expect_refused("IdP stopped", o, PAM_AUTHINFO_UNAVAIL);
    if (o.seconds > kHttpTimeout + kSlack) fail_msg("a stopped IdP took %.1f s", o.seconds);
    expect_success(l, "token, IdP stopped, JWKS cached", l("ada", token), "ada", "admin", "corp-oidc");
    auto run = device_login(l, "ada", "idp=corp-oidc", nullptr, false);
    expect_refused("device login, IdP stopped", run.out, PAM_AUTHINFO_UNAVAIL);
}

}  // namespace

// An optional argument runs only the tests whose names match it (cmocka's pattern: * and ?).
int main(int argc, char** argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const CMUnitTest tests[] = {
        cmocka_unit_test(password_client_secret_basic),
        cmocka_unit_test(password_client_secret_post),
        cmocka_unit_test(password_wrong_method_or_secret),
        cmocka_unit_test(roles_default),
        cmocka_unit_test(authctl_oidc),
        cmocka_unit_test(token_login_valid),
        cmocka_unit_test(token_login_refused),
        cmocka_unit_test(selection_by_email_domain),
        cmocka_unit_test(selection_by_weight),
        cmocka_unit_test(device_approved),
        cmocka_unit_test(device_approved_pkce),
        cmocka_unit_test(device_approved_late),
        cmocka_unit_test(device_no_qr),
        cmocka_unit_test(device_denied),
        cmocka_unit_test(device_expired),
        cmocka_unit_test(device_slow_down),
        cmocka_unit_test(idp_unreachable),
        cmocka_unit_test(nss_idp_user_after_login),
        cmocka_unit_test(nss_idp_uid_from_subject),
        cmocka_unit_test(nss_idp_provisional_user),
        cmocka_unit_test(nss_idp_name_reused),
        cmocka_unit_test(nss_idp_token_login),
        cmocka_unit_test(login_latency),
        cmocka_unit_test(idp_stopped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
