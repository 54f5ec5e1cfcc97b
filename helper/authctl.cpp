// SPDX-License-Identifier: GPL-3.0-or-later
// cvat-authctl: the admin's tool. `config check` reads the file itself; every other command
// goes the real path through cvat-authd.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <termios.h>
#include <unistd.h>

#include "config.hpp"
#include "protocol.hpp"
#include "saml.hpp"
#include "secret.hpp"
#include "transport.hpp"

namespace {

using namespace cvat;

// Exit codes, stable for scripts.
constexpr int kExitOk = 0;
constexpr int kExitDenied = 1;       // verdict says no, or the config is refused
constexpr int kExitUnavailable = 2;  // daemon or backend unreachable
constexpr int kExitUsage = 64;       // EX_USAGE

// Long enough for a device flow poll step; each round trip is bounded by it.
constexpr int kCallTimeoutMs = 30000;

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: cvat-authctl [--socket PATH] [--config PATH] COMMAND\n"
                 "commands:\n"
                 "  config check [PATH]   validate auth_config.yml; print every error with file:line:column\n"
                 "  login USER            log USER in through cvat-authd (asks for the password;\n"
                 "                        reads one line from stdin when it is not a terminal)\n"
                 "      [--service NAME] [--method password|device|auto] [--idp ID]\n"
                 "  explain USER          show the groups found, the role groups matched and the role (root)\n"
                 "  status                is the daemon reachable, and each directory server?\n"
                 "  cache list            the cached users: uid, gid, role, backend, fresh/stale (root)\n"
                 "  cache show USER       one cached user, its immutable id and offline credentials (root)\n"
                 "  cache expire [USER]   make the next lookup ask the directory (all users without USER)\n"
                 "  saml-metadata ID      print the SP metadata to register at SAML identity provider ID\n"
                 "  cache flush           remove cached users, negative entries, offline credentials\n"
                 "socket: --socket, else $CVAT_AUTH_SOCKET, else helper.socket of the config, else %s\n",
                 CVAT_DEFAULT_SOCKET);
}

std::string config_path_from(const std::string& given) {
    if (!given.empty()) return given;
    const char* env = std::getenv("AUTH_CONFIG_PATH");
    return (env != nullptr && *env != '\0') ? env : CVAT_DEFAULT_CONFIG;
}

std::string socket_path_from(const std::string& given, const std::string& config_arg) {
    if (!given.empty()) return given;
    if (const char* env = secure_getenv("CVAT_AUTH_SOCKET"); env != nullptr && *env != '\0') return env;
    // The config may not be readable by this user; then the packaged default applies.
    helper::LoadOptions opts;
    opts.check_permissions = false;
    opts.read_secret_files = false;
    opts.check_files = false;
    if (auto cfg = helper::load_config(config_path_from(config_arg), opts)) return cfg->helper.socket;
    return CVAT_DEFAULT_SOCKET;
}

int config_check(const std::string& path) {
    auto cfg = helper::load_config(path);
    if (!cfg) {
        std::fprintf(stderr, "%s\n", cfg.error().detail.c_str());
        return kExitDenied;
    }
    for (const auto& w : cfg->warnings) std::printf("warning: %s\n", w.c_str());
    std::printf("%s: OK\n", path.c_str());
    if (cfg->ldap.configured) {
        std::printf("ldap: %zu server(s), group_type %s, default_role %s\n", cfg->ldap.server_uri.size(),
                    helper::group_type_name(cfg->ldap.group_type), proto::role_name(cfg->ldap.default_role));
        for (const auto& uri : cfg->ldap.server_uri) std::printf("  %s\n", uri.c_str());
    }
    if (cfg->sso.configured)
        std::printf("sso: %s, %zu identity provider(s)\n", cfg->sso.enabled ? "enabled" : "disabled",
                    cfg->sso.identity_providers.size());
    return kExitOk;
}

// The SP metadata (entity ID, POST and PAOS ACS) our daemon uses at SAML IdP `id`: from the
// config alone, no daemon and no network.
int saml_metadata(const std::string& path, const std::string& id) {
    helper::LoadOptions opts;
    opts.check_permissions = false;
    opts.read_secret_files = false;
    opts.check_files = false;
    auto cfg = helper::load_config(path, opts);
    if (!cfg) {
        std::fprintf(stderr, "%s\n", cfg.error().detail.c_str());
        return kExitDenied;
    }
    for (auto& idp : cfg->sso.identity_providers) {
        if (idp.id != id) continue;
        if (idp.protocol != helper::Protocol::saml) {
            std::fprintf(stderr, "cvat-authctl: %s is not a SAML identity provider\n", id.c_str());
            return kExitUsage;
        }
        std::string base = cfg->helper.cvat_base_url;
        if (base.empty())
            if (const char* env = std::getenv("CVAT_BASE_URL")) base = env;
        auto p = helper::SamlProvider::create(std::move(idp), cfg->sso, base);
        if (!p) {
            std::fprintf(stderr, "cvat-authctl: %s\n", p.error().detail.c_str());
            return kExitDenied;
        }
        std::fputs((*p)->sp_metadata().c_str(), stdout);
        return kExitOk;
    }
    std::fprintf(stderr, "cvat-authctl: no identity provider %s in %s\n", id.c_str(), path.c_str());
    return kExitUsage;
}

// Reads a line without echo when stdin is a terminal.
Secret read_secret(const std::string& prompt) {
    bool tty = isatty(STDIN_FILENO) != 0;
    termios old{};
    if (tty) {
        std::fprintf(stderr, "%s", prompt.c_str());
        std::fflush(stderr);
        tcgetattr(STDIN_FILENO, &old);
        termios quiet = old;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    std::vector<char, ZeroingAllocator<char>> line;
    char c;
    while (line.size() <= proto::kMaxSecret && read(STDIN_FILENO, &c, 1) == 1 && c != '\n') line.push_back(c);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        std::fprintf(stderr, "\n");
    }
    Secret s(std::string_view(line.data(), line.size()));
    c = 0;
    return s;
}

int exit_for(proto::Status s) {
    switch (s) {
        case proto::Status::ok: return kExitOk;
        case proto::Status::unavailable: return kExitUnavailable;
        default: return kExitDenied;
    }
}

Result<UniqueFd> connect_daemon(const std::string& socket) {
    auto fd = proto::connect_unix(socket, proto::Deadline::after_ms(kCallTimeoutMs));
    if (!fd) std::fprintf(stderr, "cvat-authctl: cvat-authd is not reachable at %s: %s\n", socket.c_str(),
                          fd.error().detail.c_str());
    return fd;
}

int login(const std::string& socket, const std::string& user, const std::string& service,
          proto::AuthMethod method, const std::string& idp) {
    proto::AuthRequest req;
    req.user = user;
    req.service = service;
    req.method = method;
    req.idp = idp;
    const char* tty = ttyname(STDIN_FILENO);
    req.tty = tty != nullptr ? tty : "";
    if (method != proto::AuthMethod::device) req.password = read_secret("Password for " + user + ": ");

    auto fd = connect_daemon(socket);
    if (!fd) return kExitUnavailable;
    proto::Request next = std::move(req);
    for (int step = 0; step < 64; ++step) {  // a conversation longer than this is a loop
        auto resp = proto::call(fd->get(), next, proto::Deadline::after_ms(kCallTimeoutMs));
        if (!resp) {
            std::fprintf(stderr, "cvat-authctl: %s\n", resp.error().detail.c_str());
            return kExitUnavailable;
        }
        if (auto* p = std::get_if<proto::Prompt>(&*resp)) {
            std::fprintf(stderr, "%s", p->text.c_str());
            proto::ConvReply reply;
            if (p->style == proto::PromptStyle::echo_off || p->style == proto::PromptStyle::echo_on)
                reply.answer = read_secret("");
            else
                std::fprintf(stderr, "\n");
            next = std::move(reply);
            continue;
        }
        auto* v = std::get_if<proto::Verdict>(&*resp);
        if (v == nullptr) {
            std::fprintf(stderr, "cvat-authctl: unexpected answer from cvat-authd\n");
            return kExitUnavailable;
        }
        std::printf("verdict: %s\n", proto::status_name(v->status));
        if (!v->message.empty()) std::printf("message: %s\n", v->message.c_str());
        if (v->status == proto::Status::ok) {
            std::printf("user: %s\nrole: %s\n", v->user.c_str(), proto::role_name(v->role));
            for (const auto& [k, val] : v->attributes) std::printf("%s: %s\n", k.c_str(), val.c_str());
        }
        return exit_for(v->status);
    }
    std::fprintf(stderr, "cvat-authctl: conversation too long\n");
    return kExitUnavailable;
}

int explain(const std::string& socket, const std::string& user) {
    auto fd = connect_daemon(socket);
    if (!fd) return kExitUnavailable;
    auto resp = proto::call(fd->get(), proto::ExplainRequest{user}, proto::Deadline::after_ms(kCallTimeoutMs));
    if (!resp) {
        std::fprintf(stderr, "cvat-authctl: %s\n", resp.error().detail.c_str());
        return kExitUnavailable;
    }
    if (auto* v = std::get_if<proto::Verdict>(&*resp)) {  // a refused request
        std::fprintf(stderr, "cvat-authctl: %s\n", v->message.c_str());
        return exit_for(v->status);
    }
    auto* e = std::get_if<proto::ExplainReply>(&*resp);
    if (e == nullptr) return kExitUnavailable;
    for (const auto& line : e->lines) std::printf("%s\n", line.c_str());
    std::printf("result: %s, role %s\n", proto::status_name(e->status), proto::role_name(e->role));
    return exit_for(e->status);
}

int cache(const std::string& socket, proto::CacheOp op, const std::string& name) {
    auto fd = connect_daemon(socket);
    if (!fd) return kExitUnavailable;
    auto resp = proto::call(fd->get(), proto::CacheRequest{op, name}, proto::Deadline::after_ms(kCallTimeoutMs));
    if (!resp) {
        std::fprintf(stderr, "cvat-authctl: %s\n", resp.error().detail.c_str());
        return kExitUnavailable;
    }
    if (auto* v = std::get_if<proto::Verdict>(&*resp)) {  // a refused request
        std::fprintf(stderr, "cvat-authctl: %s\n", v->message.c_str());
        return exit_for(v->status);
    }
    auto* c = std::get_if<proto::CacheReply>(&*resp);
    if (c == nullptr) return kExitUnavailable;
    for (const auto& line : c->lines) std::printf("%s\n", line.c_str());
    if (c->status != proto::Status::ok && c->lines.empty())
        std::fprintf(stderr, "cvat-authctl: %s\n", proto::status_name(c->status));
    return exit_for(c->status);
}

int status(const std::string& socket) {
    auto fd = connect_daemon(socket);
    if (!fd) return kExitUnavailable;
    auto resp = proto::call(fd->get(), proto::StatusRequest{}, proto::Deadline::after_ms(kCallTimeoutMs));
    if (!resp) {
        std::fprintf(stderr, "cvat-authctl: %s\n", resp.error().detail.c_str());
        return kExitUnavailable;
    }
    auto* s = std::get_if<proto::StatusReply>(&*resp);
    if (s == nullptr) return kExitUnavailable;
    std::printf("cvat-authd %s: reachable at %s, up %llu s\n", s->version.c_str(), socket.c_str(),
                static_cast<unsigned long long>(s->uptime_s));
    bool any_down = false;
    for (const auto& b : s->backends) {
        std::printf("  %-40s %s  %s\n", b.name.c_str(), b.up ? "up  " : "DOWN", b.detail.c_str());
        any_down = any_down || !b.up;
    }
    return any_down ? kExitUnavailable : kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);  // a daemon that goes away is reported, not fatal
    std::string socket, config;
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--socket" && i + 1 < argc) socket = argv[++i];
        else if (a == "--config" && i + 1 < argc) config = argv[++i];
        else if (a == "--help" || a == "-h") {
            usage(stdout);
            return kExitOk;
        } else args.push_back(a);
    }
    if (args.empty()) {
        usage(stderr);
        return kExitUsage;
    }
    const std::string& cmd = args[0];
    if (cmd == "config" && args.size() >= 2 && args[1] == "check" && args.size() <= 3)
        return config_check(args.size() == 3 ? args[2] : config_path_from(config));
    if (cmd == "login" && args.size() >= 2) {
        std::string service = "cvat-authctl", idp;
        proto::AuthMethod method = proto::AuthMethod::password;
        for (std::size_t i = 2; i < args.size(); ++i) {
            if (args[i] == "--service" && i + 1 < args.size()) service = args[++i];
            else if (args[i] == "--idp" && i + 1 < args.size()) idp = args[++i];
            else if (args[i] == "--method" && i + 1 < args.size()) {
                const std::string& m = args[++i];
                if (m == "password") method = proto::AuthMethod::password;
                else if (m == "device") method = proto::AuthMethod::device;
                else if (m == "auto") method = proto::AuthMethod::automatic;
                else {
                    usage(stderr);
                    return kExitUsage;
                }
            } else {
                usage(stderr);
                return kExitUsage;
            }
        }
        return login(socket_path_from(socket, config), args[1], service, method, idp);
    }
    if (cmd == "saml-metadata" && args.size() == 2) return saml_metadata(config_path_from(config), args[1]);
    if (cmd == "explain" && args.size() == 2) return explain(socket_path_from(socket, config), args[1]);
    if (cmd == "status" && args.size() == 1) return status(socket_path_from(socket, config));
    if (cmd == "cache" && args.size() >= 2) {
        const std::string& op = args[1];
        const std::string name = args.size() == 3 ? args[2] : std::string();
        if (op == "list" && args.size() == 2) return cache(socket_path_from(socket, config), proto::CacheOp::list, "");
        if (op == "show" && args.size() == 3) return cache(socket_path_from(socket, config), proto::CacheOp::show, name);
        if (op == "expire" && args.size() <= 3)
            return cache(socket_path_from(socket, config), proto::CacheOp::expire, name);
        if (op == "flush" && args.size() == 2) return cache(socket_path_from(socket, config), proto::CacheOp::flush, "");
    }
    usage(stderr);
    return kExitUsage;
}
