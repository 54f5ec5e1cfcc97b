// SPDX-License-Identifier: LGPL-2.1-or-later
//
// pam_cvat.so: the thin PAM module. It asks cvat-authd over its Unix socket (common/protocol.hpp)
// and turns the daemon's verdict into a PAM code; it knows nothing of LDAP, HTTP, JSON or YAML.
//
// A guest in someone else's process (nginx worker, sshd, sudo): no exception escapes an entry
// point, errno is preserved, sockets are CLOEXEC and written with MSG_NOSIGNAL (transport.cpp),
// no threads, no locks; per-transaction state lives in pam_set_data. The one state that
// outlives a transaction is each thread's kept connection to the daemon (transport.cpp,
// take_connection), checked against the process, its ids and the descriptor before each use.
//
// Decisions documented here (DESIGN.md §3 leaves them open):
//  - Password: PAM_AUTHTOK if a previous module set it (pam_get_authtok(3) semantics, like
//    libpam and pam_sss), else the "Password: " prompt. use_first_pass: never prompt, no stored
//    token is PAM_AUTH_ERR (as libpam). try_first_pass is the default. use_authtok matters only
//    in the password phase (the new password must come from a previous module).
//  - method=password refuses an empty password locally (PAM_AUTH_ERR, no round trip).
//    method=auto asks for a password too; an empty answer lets the daemon pick a device flow.
//    method=device never asks for a password: the daemon's Prompts drive the conversation.
//  - new_authtok_reqd from authenticate (the password was right but has expired) is, as in
//    pam_sss and pam_unix, reported by the account phase: authenticate records it and returns
//    PAM_SUCCESS without exporting anything; acct_mgmt then returns PAM_NEW_AUTHTOK_REQD, which
//    every PAM application must honour (pam_authenticate(3) does not define that code).
//  - not_supported in the password phase is PAM_AUTHTOK_ERR ("password not changed"), what
//    pam_sss answers when a password change cannot be done; PAM_IGNORE would let passwd(1)
//    report success for a password that was never changed. Elsewhere it is
//    PAM_AUTHINFO_UNAVAIL: this daemon cannot serve the request.
//  - chauthtok: the current password through pam_get_authtok(PAM_OLDAUTHTOK) in the
//    preliminary pass (a stacked one is used; use_first_pass never prompts), asked of root too,
//    since the directory changes a password as its owner; the new one through
//    pam_get_authtok(PAM_AUTHTOK) in the update pass (asked twice; use_authtok: stacked only).
//    The daemon checks the current password when it changes the password (one bind, so an
//    expired password's last grace login is not spent on a separate check).
//  - close_session and setcred have nothing to do: PAM_SUCCESS.

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <pwd.h>
#include <syslog.h>
#include <unistd.h>

#define PAM_SM_AUTH
#define PAM_SM_ACCOUNT
#define PAM_SM_SESSION
#define PAM_SM_PASSWORD
#include <security/pam_appl.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "log.hpp"
#include "protocol.hpp"
#include "secret.hpp"
#include "transport.hpp"
#include "unique_fd.hpp"

namespace cvat::pam {
namespace {

using proto::Status;

// pam_set_data key for what authenticate learned, read by acct_mgmt and open_session.
constexpr const char* kDataKey = "cvat_auth_verdict";
// A device flow is a handful of steps; a daemon that keeps prompting is broken.
constexpr int kMaxConversationSteps = 32;
// Per-wait default (connect, each request/answer round trip), DESIGN.md §3 "never a hang".
constexpr int kDefaultTimeoutS = 10;
constexpr int kMaxTimeoutS = 600;
// The variables exported on success, with the attribute each comes from (empty: the role).
struct EnvVar {
    const char* name;
    const char* attribute;
};
constexpr EnvVar kEnvVars[] = {
    {"CVAT_ROLE", ""},
    {"CVAT_EMAIL", "email"},
    {"CVAT_FIRST_NAME", "first_name"},
    {"CVAT_LAST_NAME", "last_name"},
    {"CVAT_IDP", "idp"},
};

enum class Phase { auth, account, session, password };

struct Options {
    bool debug = false;
    bool use_first_pass = false;
    bool try_first_pass = false;
    bool use_authtok = false;
    bool ignore_unknown_user = false;
    bool ignore_authinfo_unavail = false;
    bool no_qr = false;
    bool silent = false;  // PAM_SILENT: show the user nothing
    std::optional<std::uint32_t> minimum_uid;
    proto::Role require_role = proto::Role::none;
    proto::AuthMethod method = proto::AuthMethod::password;
    std::string idp;
    std::string socket;
    int timeout_ms = kDefaultTimeoutS * 1000;
};

// What authenticate hands to later phases of the same transaction.
struct TransactionData {
    bool new_authtok_reqd = false;
    std::string user;
    proto::Role role = proto::Role::none;
    std::vector<proto::Attribute> attributes;
    std::int64_t signed_in_ms = 0;  // CLOCK_MONOTONIC of the daemon's yes; 0: no sign-in verdict
};

// How long after authenticate's yes the account phase of the same transaction is answered
// from that verdict without asking the daemon again: the daemon itself answers an account
// request this soon after a sign-in with that sign-in's verdict (service.cpp,
// kSameTransactionS), so asking only cost a second connection per login (nginx: per request).
constexpr std::int64_t kAccountFromSignInMs = 1000;

void free_transaction_data(pam_handle_t*, void* data, int) {
    delete static_cast<TransactionData*>(data);
}

// Restores errno on scope exit: the host process must not see our syscalls' errors.
class ErrnoGuard {
  public:
    ErrnoGuard() noexcept : saved_(errno) {}
    ~ErrnoGuard() { errno = saved_; }
    ErrnoGuard(const ErrnoGuard&) = delete;
    ErrnoGuard& operator=(const ErrnoGuard&) = delete;

  private:
    int saved_;
};

bool has_control(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

// A valid user name for the wire: 1..kMaxName bytes, no control characters.
bool valid_user_name(std::string_view s) noexcept {
    return !s.empty() && s.size() <= proto::kMaxName && !has_control(s);
}

// An outside string for the protocol: C string from libpam, cut at `cap`.
std::string item_string(pam_handle_t* pamh, int item, std::size_t cap) {
    const void* value = nullptr;
    if (pam_get_item(pamh, item, &value) != PAM_SUCCESS || value == nullptr) return {};
    const char* s = static_cast<const char*>(value);
    return std::string(s, strnlen(s, cap));
}

// Text for the user's screen: keeps newlines and tabs (QR codes, multi-line notices), replaces
// other control bytes so a daemon message cannot drive the terminal.
std::string screen_text(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) c = '?';
    }
    return out;
}

// An environment value: control characters removed (a newline would forge a variable).
std::string env_value(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text)
        if (c >= 0x20 && c != 0x7f) out += static_cast<char>(c);
    return out;
}

// Parses a decimal number in [lo, hi]; false on anything else.
bool parse_number(std::string_view text, std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) {
    if (text.empty() || text.size() > 10) return false;
    std::uint64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (v < lo || v > hi) return false;
    out = v;
    return true;
}

// The arguments without a value.
struct FlagOption {
    std::string_view name;
    bool Options::*field;
};
constexpr FlagOption kFlagOptions[] = {
    {"debug", &Options::debug},
    {"use_first_pass", &Options::use_first_pass},
    {"try_first_pass", &Options::try_first_pass},
    {"use_authtok", &Options::use_authtok},
    {"ignore_unknown_user", &Options::ignore_unknown_user},
    {"ignore_authinfo_unavail", &Options::ignore_authinfo_unavail},
    {"no_qr", &Options::no_qr},
};

enum class Parsed { ok, bad_value, unknown };

// One KEY=VALUE argument.
Parsed parse_valued_option(std::string_view key, std::string_view value, Options& o) {
    std::uint64_t n = 0;
    if (key == "minimum_uid") {
        if (!parse_number(value, 0, UINT32_MAX, n)) return Parsed::bad_value;
        o.minimum_uid = static_cast<std::uint32_t>(n);
    } else if (key == "require_role") {
        proto::Role r{};
        if (!proto::parse_role(value, r) || r == proto::Role::none) return Parsed::bad_value;
        o.require_role = r;
    } else if (key == "method") {
        if (value == "password") {
            o.method = proto::AuthMethod::password;
        } else if (value == "device") {
            o.method = proto::AuthMethod::device;
        } else if (value == "auto") {
            o.method = proto::AuthMethod::automatic;
        } else {
            return Parsed::bad_value;
        }
    } else if (key == "idp") {
        if (value.empty() || value.size() > proto::kMaxShort || has_control(value))
            return Parsed::bad_value;
        o.idp = value;
    } else if (key == "socket") {
        // sockaddr_un.sun_path holds 107 bytes and the NUL; relative paths depend on the cwd.
        if (value.empty() || value.front() != '/' || value.size() >= 108 || has_control(value))
            return Parsed::bad_value;
        o.socket = value;
    } else if (key == "timeout") {
        if (!parse_number(value, 1, kMaxTimeoutS, n)) return Parsed::bad_value;
        o.timeout_ms = static_cast<int>(n) * 1000;
    } else {
        return Parsed::unknown;
    }
    return Parsed::ok;
}

// Module arguments. Unknown ones are logged and ignored; a known one with a bad value makes
// the whole call PAM_SERVICE_ERR (a broken service file must not half-work).
bool parse_options(pam_handle_t* pamh, int flags, int argc, const char** argv, Options& o) {
    o.silent = (flags & PAM_SILENT) != 0;
    for (int i = 0; i < argc; ++i) {
        if (argv[i] == nullptr) continue;
        std::string_view arg(argv[i]);
        auto eq = arg.find('=');
        Parsed parsed = Parsed::unknown;
        if (eq == std::string_view::npos) {
            for (const auto& flag : kFlagOptions) {
                if (arg == flag.name) {
                    o.*flag.field = true;
                    parsed = Parsed::ok;
                }
            }
        } else {
            parsed = parse_valued_option(arg.substr(0, eq), arg.substr(eq + 1), o);
        }
        if (parsed == Parsed::unknown) {
            pam_syslog(pamh, LOG_ERR, "unknown option ignored: %s", log_safe(arg).c_str());
        } else if (parsed == Parsed::bad_value) {
            pam_syslog(pamh, LOG_ERR, "bad value for option: %s", log_safe(arg).c_str());
            return false;
        }
    }
    if (o.socket.empty()) {
        const char* env = secure_getenv("CVAT_AUTH_SOCKET");
        o.socket = (env != nullptr && env[0] != '\0') ? env : CVAT_DEFAULT_SOCKET;
    }
    return true;
}

// The one place a daemon status becomes a PAM code. Transport failures arrive here as
// `unavailable`, so they can never turn into anything better than PAM_AUTHINFO_UNAVAIL.
int pam_code(Status status, const Options& o, Phase phase) {
    switch (status) {
        case Status::ok:
            return PAM_SUCCESS;
        case Status::auth_err:
            return PAM_AUTH_ERR;
        case Status::user_unknown:
        case Status::not_found:
            return o.ignore_unknown_user ? PAM_IGNORE : PAM_USER_UNKNOWN;
        case Status::unavailable:
            return o.ignore_authinfo_unavail ? PAM_IGNORE : PAM_AUTHINFO_UNAVAIL;
        case Status::acct_expired:
            return PAM_ACCT_EXPIRED;
        case Status::perm_denied:
            return PAM_PERM_DENIED;
        case Status::new_authtok_reqd:
            return PAM_NEW_AUTHTOK_REQD;
        case Status::bad_request:
        case Status::internal:
            return PAM_SYSTEM_ERR;
        case Status::not_supported:
            if (phase == Phase::password) return PAM_AUTHTOK_ERR;
            return o.ignore_authinfo_unavail ? PAM_IGNORE : PAM_AUTHINFO_UNAVAIL;
        case Status::authtok_err:
            return PAM_AUTHTOK_ERR;
    }
    return PAM_SYSTEM_ERR;  // a value the decoder let through by mistake: still a failure
}

// Frees a conversation answer after wiping it.
struct ResponseDeleter {
    int count;
    void operator()(pam_response* r) const noexcept {
        if (r == nullptr) return;
        for (int i = 0; i < count; ++i) {
            if (r[i].resp != nullptr) {
                wipe(r[i].resp, std::strlen(r[i].resp));
                std::free(r[i].resp);  // allocated by the application with malloc (pam_conv(3))
            }
        }
        std::free(r);
    }
};

// One conversation message. `answer` (for the two prompt styles) receives the reply.
int converse(pam_handle_t* pamh, int style, const std::string& text, Secret* answer) {
    const void* item = nullptr;
    int rc = pam_get_item(pamh, PAM_CONV, &item);
    if (rc != PAM_SUCCESS) return rc;
    const auto* conv = static_cast<const pam_conv*>(item);
    if (conv == nullptr || conv->conv == nullptr) return PAM_CONV_ERR;
    pam_message msg{};
    msg.msg_style = style;
    msg.msg = text.c_str();
    const pam_message* msgs[1] = {&msg};
    pam_response* raw = nullptr;
    rc = conv->conv(1, msgs, &raw, conv->appdata_ptr);
    std::unique_ptr<pam_response, ResponseDeleter> resp(raw, ResponseDeleter{1});
    if (rc != PAM_SUCCESS) return rc;
    if (answer != nullptr) {
        if (!resp || resp->resp == nullptr) return PAM_CONV_ERR;
        // One byte over the cap is enough to know it is too long; never read further.
        std::size_t n = strnlen(resp->resp, proto::kMaxSecret + 1);
        *answer = Secret(std::string_view(resp->resp, n));
    }
    return PAM_SUCCESS;
}

void show(pam_handle_t* pamh, const Options& o, int style, std::string_view text) {
    if (o.silent || text.empty()) return;
    (void)converse(pamh, style, screen_text(text), nullptr);
}

// A local account that is not a CVAT user's: root always, by name (whatever a directory or an
// IdP calls its users), and, with minimum_uid, any name NSS resolves to a uid below it (system
// users, another uid-0 name). Without minimum_uid nothing is looked up: a web server signs in on
// every request. A name NSS does not know is the daemon's to judge.
bool not_ours(pam_handle_t* pamh, const Options& o, const std::string& user) {
    if (user == "root") {
        if (o.debug) pam_syslog(pamh, LOG_DEBUG, "user root is not a CVAT user, ignored");
        return true;
    }
    if (!o.minimum_uid) return false;
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    std::size_t size = hint > 0 ? static_cast<std::size_t>(hint) : 1024;
    constexpr std::size_t kMaxBuffer = 1 << 20;  // an entry larger than 1 MiB is not a user
    for (;;) {
        std::vector<char> buf(size);
        passwd pw{};
        passwd* found = nullptr;
        int rc = getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
        if (rc == ERANGE && size < kMaxBuffer) {
            size *= 2;
            continue;
        }
        if (rc != 0 || found == nullptr) return false;  // unknown to NSS: the daemon decides
        if (pw.pw_uid < *o.minimum_uid) {
            if (o.debug)
                pam_syslog(pamh, LOG_DEBUG, "user %s has uid %u below minimum_uid, ignored",
                           log_safe(user).c_str(), static_cast<unsigned>(pw.pw_uid));
            return true;
        }
        return false;
    }
}

// The user name this transaction is about, validated. PAM_SUCCESS or the code to return.
int get_user(pam_handle_t* pamh, std::string& out) {
    const char* user = nullptr;
    int rc = pam_get_user(pamh, &user, nullptr);
    if (rc != PAM_SUCCESS) return rc == PAM_CONV_AGAIN ? PAM_INCOMPLETE : rc;
    if (user == nullptr) return PAM_USER_UNKNOWN;
    std::string_view name(user, strnlen(user, proto::kMaxName + 1));
    if (!valid_user_name(name)) {
        pam_syslog(pamh, LOG_NOTICE, "refusing malformed user name %s", log_safe(name).c_str());
        return PAM_USER_UNKNOWN;
    }
    out.assign(name);
    return PAM_SUCCESS;
}

// A connection to cvat-authd; every wait is bounded by the `timeout=` option. The thread's
// kept connection is used if there is one (transport.hpp, take_connection), and kept again
// once an exchange has ended with a final answer: a web server's next request costs one round
// trip. A kept connection the daemon has closed meanwhile (idle past helper.client_timeout,
// or at its connection cap) fails the first call before the daemon read it (EPIPE,
// ECONNRESET); that call is sent once more on a new connection, within the same timeout. A
// connection that ends after the request was read is not retried: the daemon may have acted.
class DaemonLink {
  public:
    DaemonLink(pam_handle_t* pamh, const Options& o) : pamh_(pamh), o_(o) {}
    ~DaemonLink() {
        if (clean_) proto::keep_connection(o_.socket, std::move(link_));
    }
    DaemonLink(const DaemonLink&) = delete;
    DaemonLink& operator=(const DaemonLink&) = delete;

    // fresh: a new connection even if one is kept (to learn whether the daemon answers now).
    bool connect(bool fresh = false) {
        auto l = fresh ? open_new() : proto::take_connection(o_.socket, deadline());
        if (!l) {
            report(l.error());
            return false;
        }
        link_ = std::move(*l);
        return true;
    }

    // One request, one response; nullopt (logged) on any transport or decode failure.
    std::optional<proto::Response> call(const proto::Request& request) {
        if (o_.debug)
            pam_syslog(pamh_, LOG_DEBUG, "request: %s", proto::describe_request(request).c_str());
        const bool first = calls_++ == 0;
        clean_ = false;
        const proto::Deadline until = deadline();  // the retry too: one timeout for the request
        auto r = proto::call(link_.fd.get(), request, until);
        if (!r && first && link_.reused && proto::request_unread(r.error())) {
            if (o_.debug) pam_syslog(pamh_, LOG_DEBUG, "kept connection closed by cvat-authd; connecting again");
            auto l = proto::open_connection(o_.socket, until);
            if (!l) {
                report(l.error());
                return std::nullopt;
            }
            link_ = std::move(*l);
            r = proto::call(link_.fd.get(), request, until);
        }
        if (!r) {
            report(r.error());
            link_.fd.reset();
            return std::nullopt;
        }
        // A Prompt continues the conversation: the connection is the daemon's until the end.
        clean_ = !std::holds_alternative<proto::Prompt>(*r);
        return std::move(*r);
    }

  private:
    proto::Deadline deadline() const { return proto::Deadline::after_ms(o_.timeout_ms); }
    Result<proto::Link> open_new() { return proto::open_connection(o_.socket, deadline()); }
    void report(const Error& e) {
        pam_syslog(pamh_, LOG_ERR, "cvat-authd at %s: %s: %s", log_safe(o_.socket).c_str(),
                   error_code_name(e.code), log_safe(e.detail).c_str());
    }

    pam_handle_t* pamh_;
    const Options& o_;
    proto::Link link_;
    unsigned calls_ = 0;
    bool clean_ = false;  // the last answer was final: the connection may serve the next request
};

// Sets or removes each CVAT_* variable: values from the daemon, control characters dropped.
// Variables the daemon did not give are removed, so nothing stale or user-set survives.
int export_env(pam_handle_t* pamh, proto::Role role, const std::vector<proto::Attribute>& attrs) {
    for (const auto& var : kEnvVars) {
        std::string value;
        if (var.attribute[0] == '\0') {
            if (role != proto::Role::none) value = proto::role_name(role);
        } else {
            for (const auto& [k, v] : attrs)
                if (k == var.attribute) value = env_value(v);
        }
        std::string entry = var.name;
        if (!value.empty()) entry += "=" + value;
        int rc = pam_putenv(pamh, entry.c_str());
        // Removing a variable that is not set answers PAM_BAD_ITEM: nothing to do.
        if (rc != PAM_SUCCESS && !(value.empty() && rc == PAM_BAD_ITEM)) return rc;
    }
    return PAM_SUCCESS;
}

TransactionData* transaction_data(pam_handle_t* pamh) {
    const void* data = nullptr;
    if (pam_get_data(pamh, kDataKey, &data) != PAM_SUCCESS || data == nullptr) return nullptr;
    return static_cast<TransactionData*>(const_cast<void*>(data));
}

// The daemon's words for the user, shown on failure (unless silent or the result is ignored).
// A wrong password and an unknown user look the same from outside, as with pam_unix: saying
// which would tell a remote client (sshd shows these texts) which accounts exist. The end of a
// device flow (refused at the IdP, code expired) gives nothing away and is said in words.
void show_verdict_message(pam_handle_t* pamh, const Options& o, const proto::Verdict& v, int code,
                          bool after_conversation = false) {
    if (code == PAM_IGNORE || v.message.empty()) return;
    if (v.status == Status::ok) {
        // A success with words: the login was offline, and the user is told so.
        if (code == PAM_SUCCESS) show(pamh, o, PAM_TEXT_INFO, v.message);
        return;
    }
    if (!after_conversation && (v.status == Status::auth_err || v.status == Status::user_unknown)) return;
    int style = v.status == Status::new_authtok_reqd ? PAM_TEXT_INFO : PAM_ERROR_MSG;
    show(pamh, o, style, v.message);
}

const char* rhost_for_log(const std::string& rhost) {
    return rhost.empty() ? "-" : rhost.c_str();
}

// ---- authenticate ----------------------------------------------------------------------

// The password per the decisions at the top of this file. PAM_SUCCESS or the code to return.
int get_password(pam_handle_t* pamh, const Options& o, Secret& out) {
    const void* item = nullptr;
    if (pam_get_item(pamh, PAM_AUTHTOK, &item) == PAM_SUCCESS && item != nullptr) {
        const char* tok = static_cast<const char*>(item);
        out = Secret(std::string_view(tok, strnlen(tok, proto::kMaxSecret + 1)));
        return PAM_SUCCESS;
    }
    if (o.use_first_pass) {
        pam_syslog(pamh, LOG_NOTICE, "use_first_pass given but no password from a previous module");
        return PAM_AUTH_ERR;
    }
    int rc = converse(pamh, PAM_PROMPT_ECHO_OFF, "Password: ", &out);
    if (rc != PAM_SUCCESS) return rc;
    if (out.size() <= proto::kMaxSecret) {
        rc = pam_set_item(pamh, PAM_AUTHTOK, out.c_str());  // for try_first_pass modules below
        if (rc != PAM_SUCCESS) return rc;
    }
    return PAM_SUCCESS;
}

// Shows a daemon Prompt and reads the user's answer (empty for the two message styles).
int answer_prompt(pam_handle_t* pamh, const Options& o, const proto::Prompt& p, Secret& answer) {
    switch (p.style) {
        case proto::PromptStyle::echo_off:
            return converse(pamh, PAM_PROMPT_ECHO_OFF, screen_text(p.text), &answer);
        case proto::PromptStyle::echo_on:
            return converse(pamh, PAM_PROMPT_ECHO_ON, screen_text(p.text), &answer);
        case proto::PromptStyle::info:
            show(pamh, o, PAM_TEXT_INFO, p.text);
            return PAM_SUCCESS;
        case proto::PromptStyle::error:
            show(pamh, o, PAM_ERROR_MSG, p.text);
            return PAM_SUCCESS;
    }
    return PAM_CONV_ERR;
}

int authenticate(pam_handle_t* pamh, int flags, int argc, const char** argv) {
    Options o;
    if (!parse_options(pamh, flags, argc, argv, o)) return PAM_SERVICE_ERR;
    // A verdict from an earlier attempt on this handle must not reach later phases.
    (void)pam_set_data(pamh, kDataKey, nullptr, nullptr);

    std::string user;
    int rc = get_user(pamh, user);
    if (rc != PAM_SUCCESS) return rc;
    if (not_ours(pamh, o, user)) return PAM_IGNORE;

    proto::Request request{std::in_place_type<proto::AuthRequest>};
    auto& req = std::get<proto::AuthRequest>(request);
    req.user = user;
    req.service = item_string(pamh, PAM_SERVICE, proto::kMaxShort);
    req.rhost = item_string(pamh, PAM_RHOST, proto::kMaxShort);
    req.tty = item_string(pamh, PAM_TTY, proto::kMaxShort);
    req.method = o.method;
    req.idp = o.idp;
    req.timeout_ms = static_cast<std::uint32_t>(o.timeout_ms);
    if (o.no_qr) req.flags |= proto::flag_no_qr;
    // sshd passes keyboard-interactive text through an ASCII-only path (DESIGN.md §2).
    if (req.service == "sshd" || req.tty.rfind("ssh", 0) == 0 || req.tty.empty())
        req.flags |= proto::flag_ascii_only;

    if (o.method != proto::AuthMethod::device) {
        rc = get_password(pamh, o, req.password);
        if (rc != PAM_SUCCESS) return rc;
        if (req.password.size() > proto::kMaxSecret) {
            pam_syslog(pamh, LOG_NOTICE, "password of user %s over %zu bytes refused",
                       log_safe(user).c_str(), proto::kMaxSecret);
            return PAM_AUTH_ERR;
        }
        if (req.password.empty() && o.method == proto::AuthMethod::password) {
            pam_syslog(pamh, LOG_NOTICE, "empty password for user %s refused",
                       log_safe(user).c_str());
            return PAM_AUTH_ERR;
        }
    }

    DaemonLink link(pamh, o);
    if (!link.connect()) return pam_code(Status::unavailable, o, Phase::auth);
    auto response = link.call(request);
    req.password.reset();  // the daemon has it now; keep no copy during the conversation

    int step = 0;
    for (;; ++step) {
        if (!response) return pam_code(Status::unavailable, o, Phase::auth);
        if (auto* prompt = std::get_if<proto::Prompt>(&*response)) {
            if (step >= kMaxConversationSteps) {
                pam_syslog(pamh, LOG_ERR, "cvat-authd sent more than %d prompts, giving up",
                           kMaxConversationSteps);
                return pam_code(Status::unavailable, o, Phase::auth);
            }
            proto::Request reply{std::in_place_type<proto::ConvReply>};
            Secret& answer = std::get<proto::ConvReply>(reply).answer;
            rc = answer_prompt(pamh, o, *prompt, answer);
            if (rc != PAM_SUCCESS) return rc;  // the conversation failed or was aborted
            if (answer.size() > proto::kMaxSecret) return PAM_AUTH_ERR;
            response = link.call(reply);
            continue;
        }
        break;
    }

    auto* verdict = std::get_if<proto::Verdict>(&*response);
    if (verdict == nullptr) {
        pam_syslog(pamh, LOG_ERR, "cvat-authd answered an auth request with the wrong message");
        return pam_code(Status::unavailable, o, Phase::auth);
    }
    rc = pam_code(verdict->status, o, Phase::auth);
    if (o.debug)
        pam_syslog(pamh, LOG_DEBUG, "verdict for %s: %s", log_safe(user).c_str(),
                   proto::status_name(verdict->status));
    show_verdict_message(pamh, o, *verdict, rc, step > 0);

    if (rc == PAM_NEW_AUTHTOK_REQD) {
        auto data = std::make_unique<TransactionData>();
        data->new_authtok_reqd = true;
        data->user = user;
        rc = pam_set_data(pamh, kDataKey, data.get(), free_transaction_data);
        if (rc != PAM_SUCCESS) return rc;
        (void)data.release();  // libpam owns it now; free_transaction_data frees it
        pam_syslog(pamh, LOG_NOTICE, "password of user %s has expired; rhost=%s",
                   log_safe(user).c_str(), rhost_for_log(req.rhost));
        return PAM_SUCCESS;
    }
    if (rc != PAM_SUCCESS) {
        if (rc != PAM_IGNORE)
            pam_syslog(pamh, LOG_NOTICE, "authentication failure; user=%s rhost=%s: %s",
                       log_safe(user).c_str(), rhost_for_log(req.rhost),
                       proto::status_name(verdict->status));
        return rc;
    }

    // Success. The canonical name must itself be a valid name, or the verdict is not usable.
    std::string canonical = verdict->user.empty() ? user : verdict->user;
    if (!valid_user_name(canonical)) {
        pam_syslog(pamh, LOG_ERR, "cvat-authd returned a malformed canonical name");
        return PAM_SYSTEM_ERR;
    }
    if (canonical != user && not_ours(pamh, o, canonical)) {
        // The backend let the user have a local account's name (an IdP whose users pick their
        // preferred_username, say "root"): as PAM_USER it would be that account for whatever
        // reads PAM_USER after authentication (login and su start its session).
        pam_syslog(pamh, LOG_ERR,
                   "refused: user %s signed in as %s, a local account (root, or below minimum_uid); rhost=%s",
                   log_safe(user).c_str(), log_safe(canonical).c_str(), rhost_for_log(req.rhost));
        return PAM_AUTH_ERR;
    }
    if (canonical != user) {
        rc = pam_set_item(pamh, PAM_USER, canonical.c_str());
        if (rc != PAM_SUCCESS) return rc;
    }
    rc = export_env(pamh, verdict->role, verdict->attributes);
    if (rc != PAM_SUCCESS) return rc;
    auto data = std::make_unique<TransactionData>();
    data->user = canonical;
    data->role = verdict->role;
    data->attributes = std::move(verdict->attributes);
    data->signed_in_ms = proto::monotonic_ms();
    rc = pam_set_data(pamh, kDataKey, data.get(), free_transaction_data);
    if (rc != PAM_SUCCESS) return rc;
    (void)data.release();  // libpam owns it now; free_transaction_data frees it
    // The daemon's journal has every sign-in (service, rhost, tty, role; log_level info, the
    // default); here only with `debug`: a web server signs in on every request, and each line
    // costs the host a syslog round trip under glibc's syslog lock.
    if (o.debug)
        pam_syslog(pamh, LOG_DEBUG, "authenticated user %s role=%s rhost=%s", log_safe(canonical).c_str(),
                   proto::role_name(verdict->role), rhost_for_log(req.rhost));
    return PAM_SUCCESS;
}

// ---- account --------------------------------------------------------------------------

// The backend that authenticated `user` in this transaction, else the idp= argument: the
// daemon then checks the account where the login happened (an OIDC "alice" is not LDAP's).
std::string backend_of(pam_handle_t* pamh, const Options& o, const std::string& user) {
    if (const auto* data = transaction_data(pamh); data != nullptr && data->user == user)
        for (const auto& [key, value] : data->attributes)
            if (key == "idp") return value;
    return o.idp;
}

// require_role= against a verdict's role; says why when it does not allow.
bool role_allows(pam_handle_t* pamh, const Options& o, const std::string& user, proto::Role role) {
    if (o.require_role == proto::Role::none || static_cast<int>(role) >= static_cast<int>(o.require_role))
        return true;
    pam_syslog(pamh, LOG_NOTICE, "user %s has role %s, %s required", log_safe(user).c_str(), proto::role_name(role),
               proto::role_name(o.require_role));
    show(pamh, o, PAM_ERROR_MSG, "Your CVAT role does not allow access here.");
    return false;
}

int acct_mgmt(pam_handle_t* pamh, int flags, int argc, const char** argv) {
    Options o;
    if (!parse_options(pamh, flags, argc, argv, o)) return PAM_SERVICE_ERR;
    std::string user;
    int rc = get_user(pamh, user);
    if (rc != PAM_SUCCESS) return rc;
    if (not_ours(pamh, o, user)) return PAM_IGNORE;

    if (const auto* data = transaction_data(pamh);
        data != nullptr && data->user == user && data->signed_in_ms != 0 && !data->new_authtok_reqd &&
        proto::monotonic_ms() - data->signed_in_ms < kAccountFromSignInMs) {
        // Signed in by this transaction a moment ago: the daemon would answer with that verdict.
        if (o.debug) pam_syslog(pamh, LOG_DEBUG, "account of %s: this transaction's sign-in", log_safe(user).c_str());
        return role_allows(pamh, o, user, data->role) ? PAM_SUCCESS : PAM_PERM_DENIED;
    }

    proto::Request request{std::in_place_type<proto::AccountRequest>};
    auto& req = std::get<proto::AccountRequest>(request);
    req.user = user;
    req.service = item_string(pamh, PAM_SERVICE, proto::kMaxShort);
    req.rhost = item_string(pamh, PAM_RHOST, proto::kMaxShort);
    req.tty = item_string(pamh, PAM_TTY, proto::kMaxShort);
    req.require_role = o.require_role;
    req.idp = backend_of(pamh, o, user);

    DaemonLink link(pamh, o);
    if (!link.connect()) return pam_code(Status::unavailable, o, Phase::account);
    auto response = link.call(request);
    if (!response) return pam_code(Status::unavailable, o, Phase::account);
    auto* verdict = std::get_if<proto::Verdict>(&*response);
    if (verdict == nullptr) {
        pam_syslog(pamh, LOG_ERR, "cvat-authd answered an account request with the wrong message");
        return pam_code(Status::unavailable, o, Phase::account);
    }
    rc = pam_code(verdict->status, o, Phase::account);
    show_verdict_message(pamh, o, *verdict, rc);
    if (rc != PAM_SUCCESS) {
        if (rc != PAM_IGNORE)
            pam_syslog(pamh, LOG_NOTICE, "account check failed; user=%s: %s",
                       log_safe(user).c_str(), proto::status_name(verdict->status));
        return rc;
    }
    // The daemon enforces require_role; checking its answer here too costs nothing.
    if (!role_allows(pamh, o, user, verdict->role)) return PAM_PERM_DENIED;
    if (const auto* data = transaction_data(pamh); data != nullptr && data->new_authtok_reqd) {
        show(pamh, o, PAM_ERROR_MSG, "Your password has expired. You must change it now.");
        return PAM_NEW_AUTHTOK_REQD;
    }
    return PAM_SUCCESS;
}

// ---- session --------------------------------------------------------------------------

int open_session(pam_handle_t* pamh, int flags, int argc, const char** argv) {
    Options o;
    if (!parse_options(pamh, flags, argc, argv, o)) return PAM_SERVICE_ERR;
    std::string user;
    int rc = get_user(pamh, user);
    if (rc != PAM_SUCCESS) return rc;
    if (not_ours(pamh, o, user)) return PAM_IGNORE;

    if (const auto* data = transaction_data(pamh);
        data != nullptr && !data->new_authtok_reqd && data->user == user) {
        return export_env(pamh, data->role, data->attributes);
    }
    // No authenticate in this transaction (sshd public key): ask the daemon.
    proto::Request request{std::in_place_type<proto::SessionRequest>};
    auto& req = std::get<proto::SessionRequest>(request);
    req.user = user;
    req.service = item_string(pamh, PAM_SERVICE, proto::kMaxShort);
    req.open = true;
    req.idp = backend_of(pamh, o, user);
    DaemonLink link(pamh, o);
    if (!link.connect()) return pam_code(Status::unavailable, o, Phase::session);
    auto response = link.call(request);
    if (!response) return pam_code(Status::unavailable, o, Phase::session);
    auto* verdict = std::get_if<proto::Verdict>(&*response);
    if (verdict == nullptr) {
        pam_syslog(pamh, LOG_ERR, "cvat-authd answered a session request with the wrong message");
        return pam_code(Status::unavailable, o, Phase::session);
    }
    rc = pam_code(verdict->status, o, Phase::session);
    show_verdict_message(pamh, o, *verdict, rc);
    if (rc != PAM_SUCCESS) return rc;
    return export_env(pamh, verdict->role, verdict->attributes);
}

// ---- password -------------------------------------------------------------------------

int chauthtok(pam_handle_t* pamh, int flags, int argc, const char** argv) {
    Options o;
    if (!parse_options(pamh, flags, argc, argv, o)) return PAM_SERVICE_ERR;
    std::string user;
    int rc = get_user(pamh, user);
    if (rc != PAM_SUCCESS) return rc;
    if (not_ours(pamh, o, user)) return PAM_IGNORE;
    // The directory changes a password as its owner, proving the current one, so the current
    // password is asked even of root (as pam_ldap without an administrator DN).
    if (flags & PAM_PRELIM_CHECK) {
        // pam_get_authtok(3): a current password stacked by an earlier module is used
        // (try_first_pass, the default), use_first_pass never prompts.
        const char* old = nullptr;
        rc = pam_get_authtok(pamh, PAM_OLDAUTHTOK, &old, "Current password: ");
        if (rc != PAM_SUCCESS) return rc == PAM_AUTH_ERR ? PAM_AUTHTOK_RECOVERY_ERR : rc;
        // Fail before the new password is typed twice if the daemon cannot be reached.
        DaemonLink link(pamh, o);
        if (!link.connect(true)) return pam_code(Status::unavailable, o, Phase::password);
        return PAM_SUCCESS;
    }
    if (!(flags & PAM_UPDATE_AUTHTOK)) return PAM_SERVICE_ERR;

    proto::Request request{std::in_place_type<proto::PasswordRequest>};
    auto& req = std::get<proto::PasswordRequest>(request);
    req.user = user;
    req.service = item_string(pamh, PAM_SERVICE, proto::kMaxShort);
    const void* old = nullptr;
    if (pam_get_item(pamh, PAM_OLDAUTHTOK, &old) == PAM_SUCCESS && old != nullptr) {
        const char* s = static_cast<const char*>(old);
        req.old_password = Secret(std::string_view(s, strnlen(s, proto::kMaxSecret + 1)));
    }
    if (req.old_password.empty()) return PAM_AUTHTOK_RECOVERY_ERR;  // pam_unix: no old token
    // libpam's pam_get_authtok: asks twice, honours use_authtok, wipes its own copies.
    const char* fresh = nullptr;
    rc = pam_get_authtok(pamh, PAM_AUTHTOK, &fresh, nullptr);
    if (rc != PAM_SUCCESS) return rc;
    if (fresh == nullptr) return PAM_AUTHTOK_ERR;
    req.new_password = Secret(std::string_view(fresh, strnlen(fresh, proto::kMaxSecret + 1)));
    if (req.new_password.empty()) {
        show(pamh, o, PAM_ERROR_MSG, "The new password is empty.");
        return PAM_AUTHTOK_ERR;
    }
    if (req.new_password.size() > proto::kMaxSecret || req.old_password.size() > proto::kMaxSecret)
        return PAM_AUTHTOK_ERR;

    DaemonLink link(pamh, o);
    if (!link.connect()) return pam_code(Status::unavailable, o, Phase::password);
    auto response = link.call(request);
    req.old_password.reset();
    req.new_password.reset();
    if (!response) return pam_code(Status::unavailable, o, Phase::password);
    auto* verdict = std::get_if<proto::Verdict>(&*response);
    if (verdict == nullptr) {
        pam_syslog(pamh, LOG_ERR, "cvat-authd answered a password request with the wrong message");
        return pam_code(Status::unavailable, o, Phase::password);
    }
    rc = pam_code(verdict->status, o, Phase::password);
    if (verdict->status == Status::not_supported && verdict->message.empty())
        show(pamh, o, PAM_ERROR_MSG, "Password change is not supported for this account.");
    show_verdict_message(pamh, o, *verdict, rc);
    pam_syslog(pamh, rc == PAM_SUCCESS ? LOG_INFO : LOG_NOTICE, "password change for %s: %s",
               log_safe(user).c_str(), proto::status_name(verdict->status));
    return rc;
}

// Every entry point runs through here: errno kept, no exception escapes.
template <typename Body>
int guarded(pam_handle_t* pamh, Body&& body) noexcept {
    ErrnoGuard keep_errno;
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return PAM_BUF_ERR;
    } catch (...) {
        try {
            pam_syslog(pamh, LOG_CRIT, "unexpected exception");
        } catch (...) {
        }
        return PAM_SYSTEM_ERR;
    }
}

}  // namespace
}  // namespace cvat::pam

// <security/pam_modules.h> declares these without noexcept, so the definitions cannot add it;
// guarded() is the noexcept boundary: nothing thrown inside reaches libpam.
extern "C" {

PAM_EXTERN __attribute__((visibility("default"))) int pam_sm_authenticate(pam_handle_t* pamh,
                                                                          int flags, int argc,
                                                                          const char** argv) {
    return cvat::pam::guarded(pamh,
                              [&] { return cvat::pam::authenticate(pamh, flags, argc, argv); });
}

PAM_EXTERN __attribute__((visibility("default"))) int pam_sm_setcred(pam_handle_t*, int, int,
                                                                     const char**) {
    return PAM_SUCCESS;
}

PAM_EXTERN __attribute__((visibility("default"))) int pam_sm_acct_mgmt(pam_handle_t* pamh,
                                                                       int flags, int argc,
                                                                       const char** argv) {
    return cvat::pam::guarded(pamh, [&] { return cvat::pam::acct_mgmt(pamh, flags, argc, argv); });
}

PAM_EXTERN __attribute__((visibility("default"))) int pam_sm_open_session(pam_handle_t* pamh,
                                                                          int flags, int argc,
                                                                          const char** argv) {
    return cvat::pam::guarded(pamh,
                              [&] { return cvat::pam::open_session(pamh, flags, argc, argv); });
}

PAM_EXTERN __attribute__((visibility("default"))) int pam_sm_close_session(pam_handle_t*, int, int,
                                                                           const char**) {
    return PAM_SUCCESS;
}

PAM_EXTERN __attribute__((visibility("default"))) int pam_sm_chauthtok(pam_handle_t* pamh,
                                                                       int flags, int argc,
                                                                       const char** argv) {
    return cvat::pam::guarded(pamh, [&] { return cvat::pam::chauthtok(pamh, flags, argc, argv); });
}

}  // extern "C"
