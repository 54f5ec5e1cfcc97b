// SPDX-License-Identifier: GPL-3.0-or-later
//
// Module tests: pam_cvat.so loaded by the real libpam through pam_wrapper (LD_PRELOAD) and
// driven with libpamtest, from service files in a test directory; no root, never /etc/pam.d.
//
// pam_wrapper copies PAM_WRAPPER_SERVICE_DIR when it is loaded, so every service file must
// exist before the process starts: main() writes them all into a fresh directory and re-execs
// itself with LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=<dir>/pam.d.
//
// Peers on the other end of the socket:
//  - a scripted peer (a thread here) that answers with whatever the test queued: protocol
//    frames to check the module's handling of every status, prompt and field, and hostile
//    bytes (garbage, over-size lengths, a peer that never answers, one that hangs up);
//  - the real cvat-authd over a real slapd (tests/fixtures/slapd.sh, tree `ad`) for the
//    end-to-end cases; skipped while either is not available.
#include <atomic>
#include <condition_variable>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <chrono>
#include <functional>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <security/pam_appl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.hpp"
#include "nobody_peer.hpp"
#include "protocol.hpp"
#include "transport.hpp"

// After the project headers: cmocka's fail() macro would rewrite cvat::fail().
#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
#include <libpamtest.h>
}

#ifndef PAM_WRAPPER_MODULES
#define PAM_WRAPPER_MODULES ""
#endif

namespace {

using namespace cvat;
using proto::Role;
using proto::Status;

// ---- layout of the test directory --------------------------------------------------------

std::string g_dir;  // the test directory, made by the first stage of main()

std::string peer_socket() {
    return g_dir + "/peer.sock";
}
std::string absent_socket() {
    return g_dir + "/absent.sock";
}
// A socket in a world-writable directory, where any local user could bind it.
std::string untrusted_socket() {
    return g_dir + "/open/u.sock";
}
// A link in that directory (to the scripted peer's socket).
std::string linked_socket() {
    return g_dir + "/open/l.sock";
}
// A socket whose directories up to / are root's and, the last, its listener's only (as the
// packaged daemon's /run/cvat-auth): under /run, since /tmp is world-writable.
std::string owned_dir() {
    const std::string base = g_dir.substr(g_dir.rfind('/') + 1);  // cvat-pam-XXXXXX
    return "/run/" + (base.rfind("cvat-pam-", 0) == 0 ? base : std::string("cvat-pam-unnamed"));
}
std::string owned_socket() {
    return owned_dir() + "/d/o.sock";
}
std::string daemon_dir() {
    return g_dir + "/authd";
}
std::string slapd_dir() {
    return g_dir + "/slapd";
}
std::string module_path() {
    return test::env_or("PAM_CVAT_SO", "");
}
std::string wrapper_module(const char* name) {
    return std::string(PAM_WRAPPER_MODULES) + "/" + name;
}

// libpam turns a stack whose only module said PAM_IGNORE into PAM_PERM_DENIED, so the module's
// own PAM_IGNORE would be invisible. Each service therefore puts pam_debug.so right after
// pam_cvat, reached only when pam_cvat ignored the request; it answers PAM_MODULE_UNKNOWN,
// which pam_cvat never returns. Any other result of pam_cvat is the stack's result:
//   TYPE [success=1 ignore=ignore default=die] pam_cvat.so ARGS
//   TYPE requisite pam_debug.so TYPE=module_unknown
//   TYPE required pam_permit.so
constexpr int kIgnored = PAM_MODULE_UNKNOWN;
constexpr const char* kSentinel =
    "requisite pam_debug.so auth=module_unknown cred=module_unknown acct=module_unknown "
    "prechauthtok=module_unknown chauthtok=module_unknown open_session=module_unknown "
    "close_session=module_unknown\n";

// A service: pam_cvat for all four types with `args`; `auth_before`/`auth_after` are whole
// lines stacked around its auth line (after the sentinel).
std::string stack(const std::string& args, const std::string& auth_before = "",
                  const std::string& auth_after = "") {
    std::string so = module_path();
    std::string out = auth_before;
    for (const char* type : {"auth", "account", "session", "password"}) {
        out +=
            std::string(type) + " [success=1 ignore=ignore default=die] " + so + " " + args + "\n";
        out += std::string(type) + " " + kSentinel;
        // A jump sets no result in libpam: this gives pam_cvat's PAM_SUCCESS back.
        out += std::string(type) + " required pam_permit.so\n";
        if (std::string(type) == "auth") out += auth_after;
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> services() {
    std::string peer = "socket=" + peer_socket() + " timeout=2";
    std::string daemon = "socket=" + daemon_dir() + "/socket";
    std::string set_items = "auth required " + wrapper_module("pam_set_items.so") + "\n";
    std::string get_items = "auth optional " + wrapper_module("pam_get_items.so") + "\n";
    return {
        {"cvat-absent", stack("socket=" + absent_socket())},
        {"cvat-absent-ignore", stack("socket=" + absent_socket() + " ignore_authinfo_unavail")},
        {"cvat-peer", stack(peer)},
        {"cvat-peer-t1", stack("socket=" + peer_socket() + " timeout=1")},
        {"cvat-peer-ignore", stack(peer + " ignore_unknown_user ignore_authinfo_unavail")},
        {"cvat-peer-ufp", stack(peer + " use_first_pass")},
        {"cvat-peer-ufp-stacked", stack(peer + " use_first_pass", set_items)},
        {"cvat-peer-tfp", stack(peer + " try_first_pass", "", get_items)},
        {"cvat-peer-device", stack(peer + " method=device no_qr")},
        {"cvat-peer-auto", stack(peer + " method=auto idp=company-oidc")},
        {"cvat-peer-admin", stack(peer + " require_role=admin")},
        {"cvat-peer-minuid", stack(peer + " minimum_uid=1000")},
        {"cvat-untrusted", stack("socket=" + untrusted_socket() + " timeout=2")},
        {"cvat-owned", stack("socket=" + owned_socket() + " timeout=2")},
        {"cvat-linked", stack("socket=" + linked_socket() + " timeout=2")},
        {"cvat-peer-unknown-arg", stack(peer + " debug frobnicate=7 no_such_flag")},
        {"cvat-peer-items", stack(peer, set_items)},
        {"cvat-peer-authtok", stack(peer + " use_authtok")},
        {"cvat-peer-debug", stack(peer + " debug")},
        {"cvat-bad-timeout", stack(peer + " timeout=0")},
        {"cvat-bad-timeout2", stack(peer + " timeout=ten")},
        {"cvat-bad-role", stack(peer + " require_role=superuser")},
        {"cvat-bad-method", stack(peer + " method=sms")},
        {"cvat-bad-uid", stack(peer + " minimum_uid=-1")},
        {"cvat-bad-socket", stack("socket=relative/path")},
        {"cvat-env-socket", stack("timeout=2")},
        {"cvat-daemon", stack(daemon)},
        {"cvat-daemon-ignore", stack(daemon + " ignore_unknown_user")},
        {"cvat-daemon-admin", stack(daemon + " require_role=admin")},
        {"cvat-daemon-tfp", stack(daemon + " try_first_pass")},
    };
}

// ---- small helpers -------------------------------------------------------------------------

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

const char* pam_name(int rc) {
    switch (rc) {
        case PAM_SUCCESS:
            return "PAM_SUCCESS";
        case PAM_AUTH_ERR:
            return "PAM_AUTH_ERR";
        case PAM_USER_UNKNOWN:
            return "PAM_USER_UNKNOWN";
        case PAM_AUTHINFO_UNAVAIL:
            return "PAM_AUTHINFO_UNAVAIL";
        case PAM_IGNORE:
            return "PAM_IGNORE";
        case PAM_MODULE_UNKNOWN:
            return "PAM_IGNORE (seen as the sentinel's PAM_MODULE_UNKNOWN)";
        case PAM_ACCT_EXPIRED:
            return "PAM_ACCT_EXPIRED";
        case PAM_PERM_DENIED:
            return "PAM_PERM_DENIED";
        case PAM_NEW_AUTHTOK_REQD:
            return "PAM_NEW_AUTHTOK_REQD";
        case PAM_SYSTEM_ERR:
            return "PAM_SYSTEM_ERR";
        case PAM_SERVICE_ERR:
            return "PAM_SERVICE_ERR";
        case PAM_AUTHTOK_ERR:
            return "PAM_AUTHTOK_ERR";
        case PAM_CONV_ERR:
            return "PAM_CONV_ERR";
        case PAM_BUF_ERR:
            return "PAM_BUF_ERR";
        case PAM_TRY_AGAIN:
            return "PAM_TRY_AGAIN";
        case PAM_AUTHTOK_RECOVERY_ERR:
            return "PAM_AUTHTOK_RECOVERY_ERR";
        default:
            return "PAM_(other)";
    }
}

const char* op_name(pamtest_ops op) {
    switch (op) {
        case PAMTEST_AUTHENTICATE:
            return "authenticate";
        case PAMTEST_SETCRED:
            return "setcred";
        case PAMTEST_ACCOUNT:
            return "acct_mgmt";
        case PAMTEST_OPEN_SESSION:
            return "open_session";
        case PAMTEST_CLOSE_SESSION:
            return "close_session";
        case PAMTEST_CHAUTHTOK:
            return "chauthtok";
        default:
            return "other";
    }
}

// ---- the scripted peer -------------------------------------------------------------------

// What the peer does with one received request.
struct Step {
    enum Kind { respond, raw, hang, hang_up } kind = respond;
    proto::Response response;  // respond
    std::string bytes;         // raw: written as they are, then the connection is closed
};

Step respond(proto::Response r) {
    return Step{Step::respond, std::move(r), {}};
}
Step raw(std::string bytes) {
    return Step{Step::raw, {}, std::move(bytes)};
}
Step hang() {
    return Step{Step::hang, {}, {}};
}
Step hang_up() {
    return Step{Step::hang_up, {}, {}};
}

proto::Verdict verdict(Status s, std::string user = "", Role role = Role::none,
                       std::vector<proto::Attribute> attrs = {}, std::string message = "") {
    proto::Verdict v;
    v.status = s;
    v.user = std::move(user);
    v.role = role;
    v.attributes = std::move(attrs);
    v.message = std::move(message);
    return v;
}

proto::Prompt prompt(proto::PromptStyle style, std::string text) {
    proto::Prompt p;
    p.style = style;
    p.text = std::move(text);
    return p;
}

// A Unix socket server in a thread. Per connection: read a request, record it, play the next
// queued step; repeat while steps say `respond`. No queued step: hang up. A new script hangs
// up the connection the module kept from the test before (as the daemon does to one idle past
// helper.client_timeout): every test's first request also goes through the module's retry.
class ScriptedPeer {
  public:
    explicit ScriptedPeer(std::string path) : path_(std::move(path)) {
        ::unlink(path_.c_str());
        listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
        if (listen_fd_ < 0 ||
            ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::listen(listen_fd_, 16) != 0 || ::pipe2(stop_, O_CLOEXEC) != 0) {
            std::printf("Bail out! scripted peer on %s: %s\n", path_.c_str(), std::strerror(errno));
            std::exit(1);
        }
        thread_ = std::thread([this] { run(); });
    }
    ~ScriptedPeer() {
        char c = 'x';
        (void)!::write(stop_[1], &c, 1);
        thread_.join();
        ::close(listen_fd_);
        ::close(stop_[0]);
        ::close(stop_[1]);
        ::unlink(path_.c_str());
    }
    ScriptedPeer(const ScriptedPeer&) = delete;
    ScriptedPeer& operator=(const ScriptedPeer&) = delete;

    // Replaces the script; with `repeat_last` the last step is played forever.
    void script(std::vector<Step> steps, bool repeat_last = false) {
        std::lock_guard lock(mu_);
        steps_.assign(steps.begin(), steps.end());
        repeat_last_ = repeat_last;
        received_.clear();
        connections_ = 0;
        if (serving_ >= 0) ::shutdown(serving_, SHUT_RDWR);
    }
    // Hangs up the connection being served, if any (the script stays).
    void hang_up_now() {
        std::lock_guard lock(mu_);
        if (serving_ >= 0) ::shutdown(serving_, SHUT_RDWR);
    }
    int connections() {
        std::lock_guard lock(mu_);
        return connections_;
    }
    std::vector<proto::Request> take_received() {
        std::lock_guard lock(mu_);
        return std::move(received_);
    }

  private:
    std::optional<Step> next_step() {
        std::lock_guard lock(mu_);
        if (steps_.empty()) return std::nullopt;
        Step s = steps_.front();
        if (steps_.size() > 1 || !repeat_last_) steps_.pop_front();
        return s;
    }

    void serve(int fd) {
        for (;;) {
            auto body = proto::recv_frame(fd, proto::Deadline::after_ms(5000));
            if (!body) return;
            if (auto req = proto::decode_request(*body)) {
                std::lock_guard lock(mu_);
                received_.push_back(std::move(*req));
            }
            auto step = next_step();
            if (!step) return;
            switch (step->kind) {
                case Step::respond: {
                    auto frame = proto::encode_response(step->response);
                    if (!frame || !proto::send_frame(fd, *frame, proto::Deadline::after_ms(5000)))
                        return;
                    break;
                }
                case Step::raw:
                    (void)!::send(fd, step->bytes.data(), step->bytes.size(), MSG_NOSIGNAL);
                    return;
                case Step::hang: {
                    // Silent until the client gives up and hangs up (or the peer stops).
                    pollfd p[2] = {{fd, POLLIN, 0}, {stop_[0], POLLIN, 0}};
                    (void)::poll(p, 2, 30000);
                    return;
                }
                case Step::hang_up:
                    return;
            }
        }
    }

    void run() {
        for (;;) {
            pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
            if (::poll(p, 2, -1) < 0) {
                if (errno == EINTR) continue;
                return;
            }
            if (p[1].revents != 0) return;
            int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            {
                std::lock_guard lock(mu_);
                ++connections_;
                serving_ = fd;
            }
            serve(fd);
            {
                std::lock_guard lock(mu_);
                serving_ = -1;
            }
            ::close(fd);
        }
    }

    std::string path_;
    int listen_fd_ = -1;
    int stop_[2] = {-1, -1};
    std::thread thread_;
    std::mutex mu_;
    std::deque<Step> steps_;
    bool repeat_last_ = false;
    std::vector<proto::Request> received_;
    int connections_ = 0;
    int serving_ = -1;  // the connection serve() reads, -1 between connections
};

std::unique_ptr<ScriptedPeer> g_peer;

// ---- running a PAM transaction through libpamtest ----------------------------------------

struct Conversation {
    std::vector<std::string> answers;
    std::size_t next = 0;
    std::vector<std::pair<int, std::string>> seen;  // (style, text), every message in order

    int count(int style) const {
        int n = 0;
        for (const auto& s : seen) n += s.first == style;
        return n;
    }
    bool showed(int style, const std::string& needle) const {
        for (const auto& s : seen)
            if (s.first == style && s.second.find(needle) != std::string::npos) return true;
        return false;
    }
};

// Answers both prompt styles from `answers` in order; out of answers is PAM_CONV_ERR.
int record_conv(int n, const pam_message** msg, pam_response** resp, void* data) {
    auto* conv = static_cast<Conversation*>(data);
    auto* out =
        static_cast<pam_response*>(std::calloc(static_cast<std::size_t>(n), sizeof(pam_response)));
    if (out == nullptr) return PAM_BUF_ERR;
    for (int i = 0; i < n; ++i) {
        conv->seen.emplace_back(msg[i]->msg_style, msg[i]->msg != nullptr ? msg[i]->msg : "");
        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON) {
            if (conv->next >= conv->answers.size()) {
                for (int j = 0; j < i; ++j) std::free(out[j].resp);
                std::free(out);
                return PAM_CONV_ERR;
            }
            out[i].resp = ::strdup(conv->answers[conv->next++].c_str());
        }
    }
    *resp = out;
    return PAM_SUCCESS;
}

pam_testcase tc(pamtest_ops op, int expected, int flags = 0) {
    pam_testcase t{};
    t.pam_operation = op;
    t.expected_rv = expected;
    t.flags = flags;
    return t;
}

struct Run {
    pamtest_err err = PAMTEST_ERR_INTERNAL;
    std::vector<pam_testcase> cases;
    std::string pam_user;
    std::map<std::string, std::string> env;
    Conversation conv;
    double seconds = 0;
};

// `then`, if given, gets the transaction's handle after the cases and before pam_end.
Run run_pam(const char* service, const char* user, std::vector<std::string> answers,
            std::vector<pam_testcase> cases, const std::function<void(pam_handle_t*)>& then = {}) {
    Run r;
    r.conv.answers = std::move(answers);
    r.cases = std::move(cases);
    r.cases.push_back(tc(PAMTEST_GETENVLIST, 0));
    r.cases.push_back(tc(PAMTEST_KEEPHANDLE, 0));
    double start = now_s();
    r.err =
        _pamtest_conv(service, user, record_conv, &r.conv, r.cases.data(), r.cases.size(), nullptr);
    r.seconds = now_s() - start;
    const auto& keep = r.cases.back();
    if (r.err == PAMTEST_ERR_OK && keep.case_out.ph != nullptr) {
        pam_handle_t* ph = keep.case_out.ph;
        const void* item = nullptr;
        if (pam_get_item(ph, PAM_USER, &item) == PAM_SUCCESS && item != nullptr)
            r.pam_user = static_cast<const char*>(item);
        char** envlist = r.cases[r.cases.size() - 2].case_out.envlist;
        for (char** e = envlist; e != nullptr && *e != nullptr; ++e) {
            std::string kv(*e);
            auto eq = kv.find('=');
            if (eq != std::string::npos) r.env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        pamtest_free_env(envlist);
        if (then) then(ph);
        pam_end(ph, PAM_SUCCESS);
    }
    return r;
}

// Fails the test with the operation that returned something else, and what it returned.
void expect_cases(const Run& r) {
    if (r.err == PAMTEST_ERR_OK) return;
    for (const auto& c : r.cases) {
        if (c.pam_operation >= PAMTEST_GETENVLIST) continue;
        if (c.op_rv != c.expected_rv) {
            print_error("pam_%s returned %s (%d), expected %s (%d)\n", op_name(c.pam_operation),
                        pam_name(c.op_rv), c.op_rv, pam_name(c.expected_rv), c.expected_rv);
            break;
        }
    }
    for (const auto& s : r.conv.seen)
        print_error("  conversation [%d] %s\n", s.first, s.second.c_str());
    fail_msg("libpamtest: %s", pamtest_strerror(r.err));
}

// The one request of type T the peer received, in order: index `i` among those of that type.
template <typename T>
const T* received(const std::vector<proto::Request>& all, std::size_t i = 0) {
    for (const auto& r : all) {
        if (const auto* m = std::get_if<T>(&r)) {
            if (i == 0) return m;
            --i;
        }
    }
    return nullptr;
}

// ---- tests: loading ------------------------------------------------------------------------

void test_dlopen_entry_points(void**) {
    void* h = dlopen(module_path().c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) fail_msg("dlopen: %s", dlerror());
    for (const char* sym : {"pam_sm_authenticate", "pam_sm_setcred", "pam_sm_acct_mgmt",
                            "pam_sm_open_session", "pam_sm_close_session", "pam_sm_chauthtok"}) {
        if (dlsym(h, sym) == nullptr) fail_msg("dlsym %s: %s", sym, dlerror());
    }
    // Internal code is hidden: nothing of common/ may leak into the host's namespace.
    assert_null(dlsym(h, "_ZN4cvat5proto12frame_lengthESt4spanIKhLm4EE"));  // proto::frame_length
    assert_null(dlsym(h, "_ZN4cvat8log_safeB5cxx11ESt17basic_string_viewIcSt11char_traitsIcEE"));
    dlclose(h);
}

// ---- tests: unreachable and hostile peers -------------------------------------------------

void test_no_daemon_is_authinfo_unavail(void**) {
    auto r = run_pam("cvat-absent", "alice", {"secret"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    assert_true(r.conv.showed(PAM_PROMPT_ECHO_OFF, "Password"));
    r = run_pam("cvat-absent", "alice", {}, {tc(PAMTEST_ACCOUNT, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    r = run_pam("cvat-absent", "alice", {}, {tc(PAMTEST_OPEN_SESSION, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
}

void test_no_daemon_ignored_on_request(void**) {
    auto r =
        run_pam("cvat-absent-ignore", "alice", {"secret"}, {tc(PAMTEST_AUTHENTICATE, kIgnored)});
    expect_cases(r);
    r = run_pam("cvat-absent-ignore", "alice", {}, {tc(PAMTEST_ACCOUNT, kIgnored)});
    expect_cases(r);
}

void test_silent_peer_times_out(void**) {
    g_peer->script({hang()});
    auto r = run_pam("cvat-peer-t1", "alice", {"secret"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 1);
    if (r.seconds < 0.9 || r.seconds >= 3.0) fail_msg("took %.2f s with timeout=1", r.seconds);
}

void test_garbage_answers_are_unavail(void**) {
    const std::string body_len6 = std::string("\0\0\0\x06", 4);
    const std::vector<std::pair<const char*, std::string>> answers = {
        {"http text", "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"},
        {"length over the cap", std::string("\x7f\xff\xff\xff", 4) + "xxxx"},
        {"length 2^32-1", std::string("\xff\xff\xff\xff", 4)},
        {"length below the header", std::string("\0\0\0\x01", 4) + "x"},
        {"wrong version", body_len6 + std::string("\0\x02\0\x64\0\0", 6)},
        {"unknown type", body_len6 + std::string("\0\x01\x12\x34\0\0", 6)},
        {"truncated verdict", body_len6 + std::string("\0\x01\0\x64\0\0", 6)},
        {"short body, then hang-up", std::string("\0\0\0\x64", 4) + "0123456789"},
        {"half a header", std::string("\0\0", 2)},
    };
    for (const auto& [what, bytes] : answers) {
        g_peer->script({raw(bytes)});
        auto r = run_pam("cvat-peer", "alice", {"secret"},
                         {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
        if (r.err != PAMTEST_ERR_OK) print_error("peer answer: %s\n", what);
        expect_cases(r);
        // Refused at once (timeout=2): never waits for the bytes an absurd length promises.
        if (r.seconds >= 1.0) fail_msg("%s: took %.2f s", what, r.seconds);
    }
}

void test_peer_hangs_up(void**) {
    g_peer->script({hang_up()});
    auto r =
        run_pam("cvat-peer", "alice", {"secret"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 1);
}

// The connection a transaction used serves the thread's next one: a web server's next
// request costs one round trip, no connect.
void test_connection_kept_for_next_transaction(void**) {
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user)), respond(verdict(Status::ok, "bob", Role::worker))});
    auto r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_SUCCESS)});
    expect_cases(r);
    r = run_pam("cvat-peer", "bob", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_SUCCESS)});
    expect_cases(r);
    assert_string_equal(r.env["CVAT_ROLE"].c_str(), "worker");
    auto got = g_peer->take_received();
    assert_int_equal(got.size(), 2);
    assert_int_equal(g_peer->connections(), 1);

    // Closed by the peer meanwhile (idle past helper.client_timeout): the request goes once
    // more, on a new connection, and the login does not notice.
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))}, true);
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    g_peer->hang_up_now();
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    assert_int_equal(g_peer->take_received().size(), 2);
    assert_int_equal(g_peer->connections(), 2);

    // The peer read the request on the kept connection and hung up without an answer: it may
    // have acted on it (a password changed, a failure counted), so it is not sent again.
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user)), hang_up()});
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    assert_int_equal(g_peer->take_received().size(), 2);
    assert_int_equal(g_peer->connections(), 1);

    // A connection left mid-conversation (the user aborted at a prompt) is not kept: the
    // peer's next request is on a new connection.
    g_peer->script({respond(prompt(proto::PromptStyle::echo_off, "Code: ")), respond(verdict(Status::ok, "alice", Role::user))});
    r = run_pam("cvat-peer-device", "alice", {}, {tc(PAMTEST_AUTHENTICATE, PAM_CONV_ERR)});
    expect_cases(r);
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 2);
}

// The socket descriptors this process has open whose peer is `path`.
std::vector<int> sockets_to(const std::string& path) {
    std::vector<int> out;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        const int fd = std::atoi(e.path().filename().c_str());
        sockaddr_un peer{};
        socklen_t len = sizeof peer;
        if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0 && path == peer.sun_path)
            out.push_back(fd);
    }
    return out;
}

// A forked child closes the connection another thread of its parent keeps: a child that
// changes its user without exec must not hold a connection the daemon knows by its parent's
// credentials.
void test_fork_closes_other_threads_connection(void**) {
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))});
    std::mutex m;
    std::condition_variable cv;
    bool done = false, release = false;
    int rc = -1;
    std::thread holder([&] {
        auto r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
        std::unique_lock l(m);
        rc = r.err == PAMTEST_ERR_OK ? 0 : 1;
        done = true;
        cv.notify_all();
        cv.wait(l, [&] { return release; });
    });
    {
        std::unique_lock l(m);
        cv.wait(l, [&] { return done; });
    }
    const auto kept = sockets_to(peer_socket());
    int result[2];
    assert_int_equal(::pipe2(result, O_CLOEXEC), 0);
    pid_t child = ::fork();
    if (child == 0) {
        char ok = kept.empty() ? 1 : 0;
        for (int fd : kept)
            if (::fcntl(fd, F_GETFD) != -1) ok = 2;
        (void)!::write(result[1], &ok, 1);
        ::raise(SIGKILL);  // not _exit(): see test_daemon_connection_per_process_and_identity
    }
    ::close(result[1]);
    int status = 0;
    assert_int_equal(::waitpid(child, &status, 0), child);
    char ok = 3;
    (void)!::read(result[0], &ok, 1);
    ::close(result[0]);
    {
        std::lock_guard l(m);
        release = true;
    }
    cv.notify_all();
    holder.join();
    assert_int_equal(rc, 0);
    assert_int_equal(ok, 0);  // 1: no kept connection found, 2: still open in the child
}

void test_wrong_message_type_is_unavail(void**) {
    proto::PasswdReply wrong;
    wrong.status = Status::ok;
    wrong.name = "alice";
    g_peer->script({respond(wrong)});
    auto r =
        run_pam("cvat-peer", "alice", {"secret"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    // A Prompt is no answer to an account request either.
    g_peer->script({respond(prompt(proto::PromptStyle::info, "hi"))});
    r = run_pam("cvat-peer", "alice", {}, {tc(PAMTEST_ACCOUNT, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
}

// ---- tests: user names and passwords ------------------------------------------------------

void test_bad_user_names_never_reach_daemon(void**) {
    const std::vector<std::string> names = {
        "al\nice",   "al\tice", "\x1b[31malice",
        "alice\x7f", "alice\r", std::string(proto::kMaxName + 1, 'a'),
        "",
    };
    for (const auto& name : names) {
        g_peer->script({respond(verdict(Status::ok, "alice", Role::admin))});
        auto r = run_pam("cvat-peer", name.c_str(), {"secret"},
                         {tc(PAMTEST_AUTHENTICATE, PAM_USER_UNKNOWN)});
        expect_cases(r);
        assert_int_equal(g_peer->connections(), 0);
        assert_int_equal(r.conv.count(PAM_PROMPT_ECHO_OFF), 0);  // not even asked for a password
        r = run_pam("cvat-peer", name.c_str(), {}, {tc(PAMTEST_ACCOUNT, PAM_USER_UNKNOWN)});
        expect_cases(r);
        assert_int_equal(g_peer->connections(), 0);
    }
    // The longest allowed name does go through.
    g_peer->script({respond(verdict(Status::user_unknown))});
    std::string longest(proto::kMaxName, 'a');
    auto r = run_pam("cvat-peer", longest.c_str(), {"secret"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_USER_UNKNOWN)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 1);
}

void test_use_first_pass_without_token_fails(void**) {
    g_peer->script({respond(verdict(Status::ok, "alice", Role::admin))});
    auto r = run_pam("cvat-peer-ufp", "alice", {"typed"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTH_ERR)});
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_PROMPT_ECHO_OFF), 0);
    assert_int_equal(g_peer->connections(), 0);
}

void test_use_first_pass_takes_stored_token(void**) {
    if (std::string(PAM_WRAPPER_MODULES).empty()) skip();
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))});
    setenv("PAM_AUTHTOK", "stored-Secret", 1);  // pam_set_items.so puts it on the stack
    auto r = run_pam("cvat-peer-ufp-stacked", "alice", {}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    unsetenv("PAM_AUTHTOK");
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_PROMPT_ECHO_OFF), 0);
    auto got = g_peer->take_received();
    const auto* auth = received<proto::AuthRequest>(got);
    assert_non_null(auth);
    assert_string_equal(std::string(auth->password.view()).c_str(), "stored-Secret");
}

void test_try_first_pass_falls_back_to_prompt(void**) {
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))});
    auto r = run_pam("cvat-peer-tfp", "alice", {"typed-Secret"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_PROMPT_ECHO_OFF), 1);
    assert_true(r.conv.showed(PAM_PROMPT_ECHO_OFF, "Password: "));
    auto got = g_peer->take_received();
    const auto* auth = received<proto::AuthRequest>(got);
    assert_non_null(auth);
    assert_string_equal(std::string(auth->password.view()).c_str(), "typed-Secret");
    // The typed password is left on the stack for the modules below (pam_get_items exports it).
    if (!std::string(PAM_WRAPPER_MODULES).empty()) {
        assert_true(r.env.count("PAM_AUTHTOK") == 1);
        assert_string_equal(r.env["PAM_AUTHTOK"].c_str(), "typed-Secret");
    }
}

void test_empty_password_refused_locally(void**) {
    g_peer->script({respond(verdict(Status::ok, "alice", Role::admin))});
    auto r = run_pam("cvat-peer", "alice", {""}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTH_ERR)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 0);
}

void test_conversation_failure(void**) {
    // The user closes the prompt: no answer at all.
    g_peer->script({respond(verdict(Status::ok, "alice", Role::admin))});
    auto r = run_pam("cvat-peer", "alice", {}, {tc(PAMTEST_AUTHENTICATE, PAM_CONV_ERR)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 0);
}

// ---- tests: what the module sends and how it reads verdicts -------------------------------

void test_request_fields(void**) {
    if (std::string(PAM_WRAPPER_MODULES).empty()) skip();
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))});
    setenv("PAM_RHOST", "192.0.2.7", 1);
    setenv("PAM_TTY", "/dev/pts/3", 1);
    auto r = run_pam("cvat-peer-items", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    unsetenv("PAM_RHOST");
    unsetenv("PAM_TTY");
    expect_cases(r);
    auto got = g_peer->take_received();
    const auto* auth = received<proto::AuthRequest>(got);
    assert_non_null(auth);
    assert_string_equal(auth->user.c_str(), "alice");
    assert_string_equal(auth->service.c_str(), "cvat-peer-items");
    assert_string_equal(auth->rhost.c_str(), "192.0.2.7");
    assert_string_equal(auth->tty.c_str(), "/dev/pts/3");
    assert_int_equal(static_cast<int>(auth->method), static_cast<int>(proto::AuthMethod::password));
    assert_int_equal(auth->flags, 0u);  // a local terminal: UTF-8 allowed, QR allowed

    // An ssh tty, or none at all, may not take UTF-8.
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))});
    setenv("PAM_TTY", "ssh", 1);
    r = run_pam("cvat-peer-items", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    unsetenv("PAM_TTY");
    expect_cases(r);
    got = g_peer->take_received();
    auth = received<proto::AuthRequest>(got);
    assert_non_null(auth);
    assert_int_equal(auth->flags, static_cast<unsigned>(proto::flag_ascii_only));

    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))});
    r = run_pam("cvat-peer-auto", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    got = g_peer->take_received();
    auth = received<proto::AuthRequest>(got);
    assert_non_null(auth);
    assert_int_equal(static_cast<int>(auth->method),
                     static_cast<int>(proto::AuthMethod::automatic));
    assert_string_equal(auth->idp.c_str(), "company-oidc");
    assert_int_equal(auth->flags, static_cast<unsigned>(proto::flag_ascii_only));  // no tty
}

struct Mapping {
    Status status;
    int plain;    // without ignore_* options
    int ignored;  // with ignore_unknown_user ignore_authinfo_unavail
};

void test_status_to_pam_code(void**) {
    const Mapping table[] = {
        {Status::auth_err, PAM_AUTH_ERR, PAM_AUTH_ERR},
        {Status::user_unknown, PAM_USER_UNKNOWN, kIgnored},
        {Status::unavailable, PAM_AUTHINFO_UNAVAIL, kIgnored},
        {Status::acct_expired, PAM_ACCT_EXPIRED, PAM_ACCT_EXPIRED},
        {Status::perm_denied, PAM_PERM_DENIED, PAM_PERM_DENIED},
        {Status::bad_request, PAM_SYSTEM_ERR, PAM_SYSTEM_ERR},
        {Status::internal, PAM_SYSTEM_ERR, PAM_SYSTEM_ERR},
        {Status::not_found, PAM_USER_UNKNOWN, kIgnored},
        {Status::not_supported, PAM_AUTHINFO_UNAVAIL, kIgnored},
        {Status::authtok_err, PAM_AUTHTOK_ERR, PAM_AUTHTOK_ERR},
    };
    for (const auto& m : table) {
        for (bool ignore : {false, true}) {
            const char* service = ignore ? "cvat-peer-ignore" : "cvat-peer";
            int want = ignore ? m.ignored : m.plain;
            g_peer->script({respond(verdict(m.status, "alice", Role::admin))});
            auto r = run_pam(service, "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, want)});
            if (r.err != PAMTEST_ERR_OK)
                print_error("auth, status %s, %s\n", proto::status_name(m.status), service);
            expect_cases(r);
            // Nothing of a failed verdict reaches the environment.
            assert_true(r.env.count("CVAT_ROLE") == 0);

            g_peer->script({respond(verdict(m.status, "alice", Role::admin))});
            r = run_pam(service, "alice", {}, {tc(PAMTEST_ACCOUNT, want)});
            if (r.err != PAMTEST_ERR_OK)
                print_error("account, status %s, %s\n", proto::status_name(m.status), service);
            expect_cases(r);
        }
    }
}

void test_success_sets_canonical_user_and_env(void**) {
    std::vector<proto::Attribute> attrs = {
        {"email", "alice@example.test"},
        {"first_name", "Alice\nCVAT_ROLE=admin"},  // a newline would forge a variable
        {"last_name", "Adm\x1bin"},
        {"idp", "ldap"},
        {"dn", "CN=Alice,CN=Users,DC=example"},
    };
    g_peer->script({respond(verdict(Status::ok, "alice", Role::worker, attrs))});
    auto r = run_pam("cvat-peer", "ALICE", {"pw"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_SUCCESS),
                      tc(PAMTEST_OPEN_SESSION, PAM_SUCCESS), tc(PAMTEST_CLOSE_SESSION, PAM_SUCCESS),
                      tc(PAMTEST_SETCRED, PAM_SUCCESS)});
    expect_cases(r);
    assert_string_equal(r.pam_user.c_str(), "alice");
    assert_string_equal(r.env["CVAT_ROLE"].c_str(), "worker");
    assert_string_equal(r.env["CVAT_EMAIL"].c_str(), "alice@example.test");
    assert_string_equal(r.env["CVAT_FIRST_NAME"].c_str(), "AliceCVAT_ROLE=admin");
    assert_string_equal(r.env["CVAT_LAST_NAME"].c_str(), "Admin");
    assert_string_equal(r.env["CVAT_IDP"].c_str(), "ldap");
    assert_true(r.env.count("CVAT_DN") == 0);
    // The account phase and the session used what auth learned a moment ago (the daemon
    // would answer the account request with that sign-in): one connection for all of it.
    auto got = g_peer->take_received();
    assert_null(received<proto::AccountRequest>(got));
    assert_null(received<proto::SessionRequest>(got));
    assert_int_equal(g_peer->connections(), 1);
}

void test_account_later_asks_daemon(void**) {
    // A second after the sign-in the account phase asks the daemon again, about the canonical
    // name, and the daemon's answer decides.
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user)), respond(verdict(Status::acct_expired, "alice"))});
    int later = -1;
    auto r = run_pam("cvat-peer", "ALICE", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)}, [&](pam_handle_t* ph) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1050));
        later = pam_acct_mgmt(ph, 0);
    });
    expect_cases(r);
    assert_int_equal(later, PAM_ACCT_EXPIRED);
    auto got = g_peer->take_received();
    const auto* acct = received<proto::AccountRequest>(got);
    assert_non_null(acct);
    assert_string_equal(acct->user.c_str(), "alice");
    // On the connection authenticate kept.
    assert_int_equal(g_peer->connections(), 1);

    // Another user's account in the same transaction (PAM_USER changed) is asked too.
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user)), respond(verdict(Status::perm_denied, "bob"))});
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)}, [&](pam_handle_t* ph) {
        assert_int_equal(pam_set_item(ph, PAM_USER, "bob"), PAM_SUCCESS);
        later = pam_acct_mgmt(ph, 0);
    });
    expect_cases(r);
    assert_int_equal(later, PAM_PERM_DENIED);
    got = g_peer->take_received();
    acct = received<proto::AccountRequest>(got);
    assert_non_null(acct);
    assert_string_equal(acct->user.c_str(), "bob");
}

void test_only_present_attributes_exported(void**) {
    g_peer->script(
        {respond(verdict(Status::ok, "bob", Role::user, {{"email", "bob@example.test"}}))});
    auto r = run_pam("cvat-peer", "bob", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    assert_string_equal(r.pam_user.c_str(), "bob");
    assert_string_equal(r.env["CVAT_ROLE"].c_str(), "user");
    assert_string_equal(r.env["CVAT_EMAIL"].c_str(), "bob@example.test");
    for (const char* absent : {"CVAT_FIRST_NAME", "CVAT_LAST_NAME", "CVAT_IDP"})
        assert_true(r.env.count(absent) == 0);
}

void test_malformed_canonical_name_fails(void**) {
    for (const std::string& bad : {std::string("ali\nce"), std::string("\x1b]0;pwned\x07")}) {
        g_peer->script({respond(verdict(Status::ok, bad, Role::admin))});
        auto r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SYSTEM_ERR)});
        expect_cases(r);
    }
}

void test_verdict_message_shown(void**) {
    g_peer->script({respond(
        verdict(Status::perm_denied, "alice", Role::none, {}, "Your account is locked."))});
    auto r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_PERM_DENIED)});
    expect_cases(r);
    assert_true(r.conv.showed(PAM_ERROR_MSG, "Your account is locked."));
    // Terminal escapes from the daemon do not reach the user's terminal.
    g_peer->script({respond(verdict(Status::unavailable, "", Role::none, {}, "bad\x1b[2Jdirectory"))});
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    assert_true(r.conv.showed(PAM_ERROR_MSG, "bad?[2Jdirectory"));
    // A wrong password and an unknown user are not told apart on the user's screen.
    g_peer->script({respond(verdict(Status::auth_err, "", Role::none, {}, "invalid credentials"))});
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTH_ERR)});
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_ERROR_MSG), 0);
    g_peer->script({respond(verdict(Status::user_unknown, "", Role::none, {}, "unknown user"))});
    r = run_pam("cvat-peer", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_USER_UNKNOWN)});
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_ERROR_MSG), 0);
    // PAM_SILENT: nothing shown.
    g_peer->script({respond(
        verdict(Status::perm_denied, "alice", Role::none, {}, "Your account is locked."))});
    r = run_pam("cvat-peer", "alice", {"pw"},
                {tc(PAMTEST_AUTHENTICATE, PAM_PERM_DENIED, PAM_SILENT)});
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_ERROR_MSG), 0);
    // Ignored results stay quiet too.
    g_peer->script({respond(verdict(Status::user_unknown, "", Role::none, {}, "No such user."))});
    r = run_pam("cvat-peer-ignore", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, kIgnored)});
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_ERROR_MSG), 0);
}

void test_expired_password_reported_by_account(void**) {
    g_peer->script(
        {respond(verdict(Status::new_authtok_reqd, "alice", Role::none, {}, "Password expired.")),
         respond(verdict(Status::ok, "alice", Role::user))});
    auto r =
        run_pam("cvat-peer", "alice", {"pw"},
                {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_NEW_AUTHTOK_REQD)});
    expect_cases(r);
    assert_true(r.conv.showed(PAM_TEXT_INFO, "Password expired."));
    assert_true(r.env.count("CVAT_ROLE") == 0);  // nothing exported for an expired password
}

// ---- tests: the conversation the daemon drives (device flow path) -------------------------

void test_daemon_prompts_are_relayed(void**) {
    g_peer->script({
        respond(prompt(proto::PromptStyle::info, "Open https://idp.example/device")),
        respond(prompt(proto::PromptStyle::echo_on, "Code WDJB-MJHT, then press Enter")),
        respond(prompt(proto::PromptStyle::echo_off, "One-time code: ")),
        respond(prompt(proto::PromptStyle::error, "Slow down")),
        respond(verdict(Status::ok, "alice", Role::admin, {{"idp", "company-oidc"}})),
    });
    auto r = run_pam("cvat-peer-device", "alice", {"", "123456"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    // method=device asks for no password; every prompt reached the user in order.
    assert_int_equal(r.conv.seen.size(), 4u);
    assert_int_equal(r.conv.seen[0].first, PAM_TEXT_INFO);
    assert_string_equal(r.conv.seen[0].second.c_str(), "Open https://idp.example/device");
    assert_int_equal(r.conv.seen[1].first, PAM_PROMPT_ECHO_ON);
    assert_int_equal(r.conv.seen[2].first, PAM_PROMPT_ECHO_OFF);
    assert_string_equal(r.conv.seen[2].second.c_str(), "One-time code: ");
    assert_int_equal(r.conv.seen[3].first, PAM_ERROR_MSG);
    assert_string_equal(r.env["CVAT_IDP"].c_str(), "company-oidc");

    auto got = g_peer->take_received();
    assert_int_equal(got.size(), 5u);  // AuthRequest + a ConvReply per prompt, one connection
    assert_int_equal(g_peer->connections(), 1);
    const auto* auth = received<proto::AuthRequest>(got);
    assert_non_null(auth);
    assert_int_equal(static_cast<int>(auth->method), static_cast<int>(proto::AuthMethod::device));
    assert_true(auth->password.empty());
    assert_true((auth->flags & proto::flag_no_qr) != 0);
    const auto* enter = received<proto::ConvReply>(got, 1);
    const auto* otp = received<proto::ConvReply>(got, 2);
    assert_non_null(enter);
    assert_non_null(otp);
    assert_true(enter->answer.empty());
    assert_string_equal(std::string(otp->answer.view()).c_str(), "123456");
}

void test_endless_prompts_are_cut(void**) {
    g_peer->script({respond(prompt(proto::PromptStyle::info, "again"))}, true);
    auto r =
        run_pam("cvat-peer-device", "alice", {}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
    assert_true(r.conv.seen.size() <= 40u);
}

void test_conversation_aborted_mid_flow(void**) {
    g_peer->script({respond(prompt(proto::PromptStyle::echo_on, "press Enter")),
                    respond(verdict(Status::ok, "alice", Role::admin))});
    auto r = run_pam("cvat-peer-device", "alice", {}, {tc(PAMTEST_AUTHENTICATE, PAM_CONV_ERR)});
    expect_cases(r);
    assert_true(r.env.count("CVAT_ROLE") == 0);
}

// ---- tests: account, session, arguments ---------------------------------------------------

void test_require_role_checked_locally_too(void**) {
    // A worker's sign-in on an admin-only service: the account phase answered from it says no.
    g_peer->script({respond(verdict(Status::ok, "walter", Role::worker))});
    auto r = run_pam("cvat-peer-admin", "walter", {"pw"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_PERM_DENIED)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 1);

    // A daemon that says ok for a worker on an admin-only service is not believed (the account
    // phase alone, as sshd after a public key, asks the daemon with require_role).
    g_peer->script({respond(verdict(Status::ok, "walter", Role::worker))});
    r = run_pam("cvat-peer-admin", "walter", {}, {tc(PAMTEST_ACCOUNT, PAM_PERM_DENIED)});
    expect_cases(r);
    auto got = g_peer->take_received();
    const auto* acct = received<proto::AccountRequest>(got);
    assert_non_null(acct);
    assert_int_equal(static_cast<int>(acct->require_role), static_cast<int>(Role::admin));

    g_peer->script({respond(verdict(Status::ok, "ada", Role::admin))});
    r = run_pam("cvat-peer-admin", "ada", {"pw"},
                {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_SUCCESS)});
    expect_cases(r);
}

void test_session_without_auth_asks_daemon(void**) {
    g_peer->script(
        {respond(verdict(Status::ok, "walter", Role::worker, {{"email", "w@example.test"}}))});
    auto r = run_pam("cvat-peer", "walter", {}, {tc(PAMTEST_OPEN_SESSION, PAM_SUCCESS)});
    expect_cases(r);
    assert_string_equal(r.env["CVAT_ROLE"].c_str(), "worker");
    assert_string_equal(r.env["CVAT_EMAIL"].c_str(), "w@example.test");
    auto got = g_peer->take_received();
    const auto* s = received<proto::SessionRequest>(got);
    assert_non_null(s);
    assert_true(s->open);
    assert_string_equal(s->user.c_str(), "walter");
}

void test_minimum_uid(void**) {
    g_peer->script({respond(verdict(Status::ok, "root", Role::admin))});
    auto r = run_pam("cvat-peer-minuid", "root", {"pw"}, {tc(PAMTEST_AUTHENTICATE, kIgnored)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 0);
    r = run_pam("cvat-peer-minuid", "root", {}, {tc(PAMTEST_ACCOUNT, kIgnored)});
    expect_cases(r);
    // A name unknown to NSS is the daemon's to judge.
    g_peer->script({respond(verdict(Status::ok, "cvat-nss-unknown", Role::user))});
    r = run_pam("cvat-peer-minuid", "cvat-nss-unknown", {"pw"},
                {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 1);
}

// A canonical name from the daemon that is a local account not ours (uid 0; with minimum_uid,
// any uid below it) never becomes PAM_USER: an IdP whose users pick their preferred_username
// could otherwise sign "mallory@example.test" in as root for login and su.
void test_canonical_local_account_refused(void**) {
    g_peer->script({respond(verdict(Status::ok, "root", Role::admin))});
    auto r = run_pam("cvat-peer", "mallory@example.test", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTH_ERR)});
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 1);
    assert_true(r.env.find("CVAT_ROLE") == r.env.end());
    // daemon (uid 1): below minimum_uid=1000, refused there; without minimum_uid only root (by
    // name) is refused. A canonical name NSS does not know is the daemon's to judge, as a typed
    // one.
    static const struct {
        const char* service;
        const char* canonical;
        int rc;
    } kCases[] = {{"cvat-peer-minuid", "daemon", PAM_AUTH_ERR},
                  {"cvat-peer", "daemon", PAM_SUCCESS},
                  {"cvat-peer-minuid", "cvat-nss-unknown", PAM_SUCCESS}};
    for (const auto& c : kCases) {
        g_peer->script({respond(verdict(Status::ok, c.canonical, Role::user))});
        r = run_pam(c.service, "mallory@example.test", {"pw"}, {tc(PAMTEST_AUTHENTICATE, c.rc)});
        if (r.err != PAMTEST_ERR_OK) print_error("%s, canonical name %s\n", c.service, c.canonical);
        expect_cases(r);
    }
    // root typed is not ours even without minimum_uid: the daemon is not asked.
    g_peer->script({respond(verdict(Status::ok, "root", Role::admin))});
    r = run_pam("cvat-peer", "root", {"pw"}, {tc(PAMTEST_AUTHENTICATE, kIgnored)});
    expect_cases(r);
    r = run_pam("cvat-peer", "root", {}, {tc(PAMTEST_ACCOUNT, kIgnored)});
    expect_cases(r);
    assert_true(g_peer->take_received().empty());
}

// pam_cvat sends nothing to a listener that is not root's, the caller's or its place's owner's:
// one in a world-writable directory (while the daemon is stopped, anyone may bind the path) is
// refused without a byte; the packaged layout (a directory of the listener's own under
// root's) is trusted.
void test_untrusted_listener_gets_nothing(void**) {
    if (::geteuid() != 0) skip();  // nobody's listener needs root; CI counts a skip as a failure
    auto frame = proto::encode_response(verdict(Status::ok, "alice", Role::user));
    assert_true(frame.has_value());
    std::filesystem::create_directories(g_dir + "/open");
    assert_int_equal(::chmod(g_dir.c_str(), 0711), 0);
    assert_int_equal(::chmod((g_dir + "/open").c_str(), 01777), 0);
    {
        test::NobodyPeer peer(untrusted_socket(), &*frame);
        if (!peer.started()) fail_msg("the listener run by nobody did not start");
        auto r = run_pam("cvat-untrusted", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
        expect_cases(r);
        const int read = peer.finish();
        // 0: connected (to learn who listens), and sent nothing.
        if (read != 0) fail_msg("a listener run by nobody in a world-writable directory read %d bytes", read);
    }
    // A link planted in a world-writable directory, to a socket that root listens on (the
    // scripted peer: this process): not followed, whoever listens at its end.
    assert_int_equal(::symlink(peer_socket().c_str(), linked_socket().c_str()), 0);
    g_peer->script({respond(verdict(Status::ok, "alice", Role::user))});
    {
        auto r = run_pam("cvat-linked", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTHINFO_UNAVAIL)});
        expect_cases(r);
        assert_true(g_peer->take_received().empty());
    }
    std::filesystem::create_directories(owned_dir() + "/d");
    assert_int_equal(::chmod(owned_dir().c_str(), 0755), 0);
    assert_int_equal(::chown((owned_dir() + "/d").c_str(), 65534, 65534), 0);
    assert_int_equal(::chmod((owned_dir() + "/d").c_str(), 0755), 0);
    {
        test::NobodyPeer peer(owned_socket(), &*frame);
        if (!peer.started()) fail_msg("the listener run by nobody did not start");
        auto r = run_pam("cvat-owned", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
        expect_cases(r);
        if (peer.finish() <= 0) fail_msg("the listener in its own directory got no request");
    }
    std::filesystem::remove_all(owned_dir());
}

void test_bad_arguments_are_service_err(void**) {
    for (const char* service : {"cvat-bad-timeout", "cvat-bad-timeout2", "cvat-bad-role",
                                "cvat-bad-method", "cvat-bad-uid", "cvat-bad-socket"}) {
        g_peer->script({respond(verdict(Status::ok, "alice", Role::admin))});
        auto r = run_pam(service, "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SERVICE_ERR)});
        if (r.err != PAMTEST_ERR_OK) print_error("service %s\n", service);
        expect_cases(r);
        assert_int_equal(g_peer->connections(), 0);
    }
    // Unknown arguments are logged and ignored.
    g_peer->script({respond(verdict(Status::ok, "alice", Role::admin))});
    auto r =
        run_pam("cvat-peer-unknown-arg", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
}

void test_socket_from_environment(void**) {
    g_peer->script({respond(verdict(Status::ok, "alice", Role::admin))});
    setenv("CVAT_AUTH_SOCKET", peer_socket().c_str(), 1);
    auto r = run_pam("cvat-env-socket", "alice", {"pw"}, {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    unsetenv("CVAT_AUTH_SOCKET");
    expect_cases(r);
    assert_int_equal(g_peer->connections(), 1);
}

// Answers for pam_chauthtok: the current password (asked of root too: the directory changes a
// password as its owner), then the new one twice.
std::vector<std::string> passwords(const char* fresh, const char* confirm) {
    return {"old-pw", fresh, confirm};
}

void test_chauthtok(void**) {
    // A daemon that cannot change this account's password (an IdP's user): the change fails,
    // it is never reported done.
    // (The preliminary pass only connects, so the peer's first step answers the update.)
    g_peer->script({respond(verdict(Status::not_supported))});
    auto r = run_pam("cvat-peer", "alice", passwords("new-Pw-1", "new-Pw-1"),
                     {tc(PAMTEST_CHAUTHTOK, PAM_AUTHTOK_ERR)});
    expect_cases(r);
    assert_int_equal(r.conv.count(PAM_ERROR_MSG), 1);
    assert_int_equal(g_peer->connections(), 2);
    auto got = g_peer->take_received();
    const auto* pw = received<proto::PasswordRequest>(got);
    assert_non_null(pw);
    assert_string_equal(pw->user.c_str(), "alice");
    assert_string_equal(std::string(pw->new_password.view()).c_str(), "new-Pw-1");
    assert_string_equal(std::string(pw->old_password.view()).c_str(), "old-pw");

    g_peer->script({respond(verdict(Status::ok, "alice"))});
    r = run_pam("cvat-peer", "alice", passwords("new-Pw-2", "new-Pw-2"),
                {tc(PAMTEST_CHAUTHTOK, PAM_SUCCESS)});
    expect_cases(r);
    // Mistyped confirmation: libpam's PAM_TRY_AGAIN, nothing sent.
    g_peer->script({respond(verdict(Status::ok, "alice"))});
    r = run_pam("cvat-peer", "alice", passwords("new-Pw-3", "other"),
                {tc(PAMTEST_CHAUTHTOK, PAM_TRY_AGAIN)});
    expect_cases(r);
    got = g_peer->take_received();
    assert_null(received<proto::PasswordRequest>(got));
    // No daemon: the preliminary check stops it before the new password is typed.
    r = run_pam("cvat-absent", "alice", passwords("new-Pw-4", "new-Pw-4"),
                {tc(PAMTEST_CHAUTHTOK, PAM_AUTHINFO_UNAVAIL)});
    expect_cases(r);
}

void test_chauthtok_use_authtok_needs_a_token(void**) {
    // use_authtok: the new password must come from a module above; none did.
    g_peer->script({respond(verdict(Status::ok, "alice"))});
    auto r = run_pam("cvat-peer-authtok", "alice", passwords("new-Pw-5", "new-Pw-5"),
                     {tc(PAMTEST_CHAUTHTOK, PAM_AUTHTOK_ERR)});
    expect_cases(r);
    auto got = g_peer->take_received();
    assert_null(received<proto::PasswordRequest>(got));
}

// The host's errno survives every entry point, whatever failed inside (here: connect()).
void test_errno_preserved(void**) {
    pam_conv conv{record_conv, nullptr};
    Conversation c;
    conv.appdata_ptr = &c;
    pam_handle_t* ph = nullptr;
    assert_int_equal(pam_start("cvat-absent", "alice", &conv, &ph), PAM_SUCCESS);
    void* h = dlopen(module_path().c_str(), RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    using Entry = int (*)(pam_handle_t*, int, int, const char**);
    std::string socket = "socket=" + absent_socket();
    const char* args[] = {socket.c_str(), "method=device"};
    const char* bad_args[] = {"timeout=-3"};
    struct Call {
        const char* symbol;
        int argc;
        const char** argv;
        int expected;
    };
    const Call calls[] = {
        {"pam_sm_authenticate", 2, args, PAM_AUTHINFO_UNAVAIL},
        {"pam_sm_acct_mgmt", 2, args, PAM_AUTHINFO_UNAVAIL},
        {"pam_sm_open_session", 2, args, PAM_AUTHINFO_UNAVAIL},
        {"pam_sm_close_session", 2, args, PAM_SUCCESS},
        {"pam_sm_setcred", 2, args, PAM_SUCCESS},
        {"pam_sm_authenticate", 1, bad_args, PAM_SERVICE_ERR},
    };
    for (const auto& call : calls) {
        auto fn = reinterpret_cast<Entry>(dlsym(h, call.symbol));
        assert_non_null(fn);
        errno = ENOTRECOVERABLE;
        int rc = fn(ph, 0, call.argc, call.argv);
        int after = errno;
        if (rc != call.expected) fail_msg("%s returned %s", call.symbol, pam_name(rc));
        if (after != ENOTRECOVERABLE) fail_msg("%s changed errno to %d", call.symbol, after);
    }
    dlclose(h);
    pam_end(ph, PAM_SUCCESS);
}

// With `debug` the request is logged, through a form that leaves the password out.
void test_debug_log_has_no_password(void**) {
    const std::string log_path = g_dir + "/debug.log";
    std::fflush(stderr);
    int saved = ::dup(2);
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(saved >= 0 && log >= 0);
    ::dup2(log, 2);
    ::close(log);
    g_peer->script({respond(prompt(proto::PromptStyle::echo_off, "OTP: ")),
                    respond(verdict(Status::auth_err, "", Role::none, {}, "wrong"))});
    auto r = run_pam("cvat-peer-debug", "alice", {"Marker-Pw-91c2e", "Marker-Otp-4411"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_AUTH_ERR)});
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    expect_cases(r);
    std::string text = test::read_file(log_path);
    if (text.find("request: auth user=alice") == std::string::npos)
        fail_msg("no debug line for the request in:\n%s", text.c_str());
    assert_true(text.find("Marker-Pw-91c2e") == std::string::npos);
    assert_true(text.find("Marker-Otp-4411") == std::string::npos);
}

// ---- tests: the real cvat-authd over slapd -------------------------------------------------

std::unique_ptr<test::Slapd> g_slapd;
std::unique_ptr<test::Daemon> g_daemon;

std::string ad_config(const test::Slapd& slapd) {
    std::string base = slapd.base();
    std::string users = "CN=Users," + base;
    return "helper:\n"
           "  socket: @SOCKET@\n"
           "  log_level: debug\n"
           "  cache_dir: " +
           daemon_dir() +
           "/cache\n"
           "ldap:\n"
           "  server_uri: [" +
           slapd.uri() +
           "]\n"
           "  bind_dn: \"CN=cvat_bind," +
           users +
           "\"\n"
           "  bind_password: Bind-Secret-1\n"
           "  user_search: {base: \"" +
           users +
           "\", scope: subtree, filter: \"(sAMAccountName=%(user)s)\"}\n"
           "  group_search: {base: \"" +
           users +
           "\", scope: subtree, filter: \"(objectClass=group)\"}\n"
           "  group_type: nested_active_directory\n"
           "  user_attr_map: {user_name: sAMAccountName, first_name: givenName, last_name: sn, "
           "email: mail}\n"
           "  role_groups:\n"
           "    admin: [\"CN=CVAT Admins," +
           users +
           "\"]\n"
           "    user: [\"CN=CVAT Users," +
           users +
           "\"]\n"
           "    worker: [\"CN=CVAT Workers," +
           users +
           "\"]\n"
           "  default_role: none\n";
}

bool have_program(const std::string& name) {
    std::string path = test::env_or("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin";
    std::size_t at = 0;
    while (at <= path.size()) {
        auto end = path.find(':', at);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(at, end - at);
        if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0) return true;
        at = end + 1;
    }
    return false;
}

// Why the daemon tests cannot run here, or empty.
std::string daemon_missing() {
    std::string authd = test::env_or("CVAT_AUTHD", "");
    std::string script = test::env_or("CVAT_FIXTURES", "") + "/slapd.sh";
    if (authd.empty() || ::access(authd.c_str(), X_OK) != 0)
        return "cvat-authd is not built (CVAT_AUTHD)";
    if (::access(script.c_str(), R_OK) != 0) return script + " is missing";
    if (!have_program("slapd")) return "slapd is not installed";
    return {};
}

void test_daemon_login_canonical_name_and_env(void**) {
    auto r =
        run_pam("cvat-daemon", "ALICE", {"alice-Passw0rd"},
                {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_SUCCESS),
                 tc(PAMTEST_OPEN_SESSION, PAM_SUCCESS), tc(PAMTEST_CLOSE_SESSION, PAM_SUCCESS)});
    expect_cases(r);
    assert_string_equal(r.pam_user.c_str(), "alice");
    assert_string_equal(r.env["CVAT_ROLE"].c_str(), "admin");
    assert_string_equal(r.env["CVAT_EMAIL"].c_str(), "alice@ad.example.test");
    assert_string_equal(r.env["CVAT_FIRST_NAME"].c_str(), "Alice");
    assert_string_equal(r.env["CVAT_LAST_NAME"].c_str(), "Admin");
    assert_string_equal(r.env["CVAT_IDP"].c_str(), "ldap");
}

void test_daemon_wrong_password(void**) {
    auto r =
        run_pam("cvat-daemon", "alice", {"alice-wrong"}, {tc(PAMTEST_AUTHENTICATE, PAM_AUTH_ERR)});
    expect_cases(r);
    assert_true(r.env.count("CVAT_ROLE") == 0);
}

void test_daemon_unknown_user(void**) {
    auto r = run_pam("cvat-daemon", "nobody-here", {"whatever-pw"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_USER_UNKNOWN)});
    expect_cases(r);
    r = run_pam("cvat-daemon-ignore", "nobody-here", {"whatever-pw"},
                {tc(PAMTEST_AUTHENTICATE, kIgnored)});
    expect_cases(r);
}

void test_daemon_require_admin(void**) {
    auto r = run_pam("cvat-daemon-admin", "walter", {"walter-Passw0rd"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_PERM_DENIED)});
    expect_cases(r);
    r = run_pam("cvat-daemon-admin", "alice", {"alice-Passw0rd"},
                {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_SUCCESS)});
    expect_cases(r);
}

void test_daemon_session_exports_env(void**) {
    // No authenticate in this transaction (sshd with a key): the session asks the daemon.
    auto r = run_pam("cvat-daemon", "walter", {}, {tc(PAMTEST_OPEN_SESSION, PAM_SUCCESS)});
    expect_cases(r);
    assert_string_equal(r.env["CVAT_ROLE"].c_str(), "worker");
    assert_string_equal(r.env["CVAT_EMAIL"].c_str(), "walter@ad.example.test");
}

void test_daemon_try_first_pass(void**) {
    auto r = run_pam("cvat-daemon-tfp", "bob", {"b0b-p\xc3\xa4ssw0rd ok"},
                     {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS)});
    expect_cases(r);
    assert_true(r.conv.showed(PAM_PROMPT_ECHO_OFF, "Password: "));
    assert_string_equal(r.env["CVAT_ROLE"].c_str(), "user");
}

// How many lines of the daemon's log contain `needle`.
int log_count(const std::string& needle) {
    const std::string text = test::read_file(g_daemon->log_path());
    int n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
    return n;
}

// Logins of one thread share a connection; a forked child and a changed effective gid get
// their own (the daemon reads SO_PEERCRED at connect: a kept connection must not carry
// another process's or another identity's credentials).
void test_daemon_connection_per_process_and_identity(void**) {
    if (::geteuid() != 0) fail_msg("needs root (setegid)");
    const std::string me = "peer pid=" + std::to_string(::getpid()) + " uid=0 gid=" + std::to_string(::getegid());
    const auto login = [] {
        return run_pam("cvat-daemon", "alice", {"alice-Passw0rd"},
                       {tc(PAMTEST_AUTHENTICATE, PAM_SUCCESS), tc(PAMTEST_ACCOUNT, PAM_SUCCESS)});
    };
    expect_cases(login());
    const int connects = log_count(me + ": connected");
    for (int i = 0; i < 3; ++i) expect_cases(login());
    assert_int_equal(log_count(me + ": connected"), connects);

    int result[2];
    assert_int_equal(::pipe2(result, O_CLOEXEC), 0);
    pid_t child = ::fork();
    if (child == 0) {
        auto r = login();
        const char ok = r.err == PAMTEST_ERR_OK ? 0 : 1;
        (void)!::write(result[1], &ok, 1);
        // Not _exit(): under valgrind the child's exit would run a leak check that finds the
        // parent's objects (on stacks this child does not have) "lost".
        ::raise(SIGKILL);
    }
    ::close(result[1]);
    int status = 0;
    assert_int_equal(::waitpid(child, &status, 0), child);
    char ok = 1;
    const bool got = ::read(result[0], &ok, 1) == 1;
    ::close(result[0]);
    assert_true(got && ok == 0);
    const std::string kid = "peer pid=" + std::to_string(child) + " ";
    if (log_count(kid) < 2 || log_count(kid + "uid=0 gid=0: auth user=alice") != 1)
        fail_msg("the child's login did not come on its own connection:\n%s",
                 test::read_file(g_daemon->log_path()).c_str());

    const gid_t gid = ::getegid();
    assert_int_equal(::setegid(65534), 0);
    auto r = login();
    assert_int_equal(::setegid(gid), 0);
    expect_cases(r);
    assert_int_equal(log_count("peer pid=" + std::to_string(::getpid()) + " uid=0 gid=65534: auth user=alice"), 1);
    // Back to the first identity: a connection of its own again, not the one made as gid 65534.
    const int before = log_count(me + ": connected");
    expect_cases(login());
    assert_int_equal(log_count(me + ": connected"), before + 1);
}

int setup_peer(void**) {
    g_peer = std::make_unique<ScriptedPeer>(peer_socket());
    return 0;
}

int teardown_peer(void**) {
    g_peer.reset();
    return 0;
}

// ---- main: the two stages ------------------------------------------------------------------

// Stage 1: make the directory and its service files, then run stage 2 under pam_wrapper.
int prepare_and_reexec(char** argv) {
    if (module_path().empty() || module_path().front() != '/') {
        std::printf("Bail out! PAM_CVAT_SO must be the absolute path of pam_cvat.so\n");
        return 1;
    }
    std::string templ = test::env_or("TMPDIR", "/tmp") + "/cvat-pam-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
        std::printf("Bail out! mkdtemp: %s\n", std::strerror(errno));
        return 1;
    }
    g_dir = buf.data();
    std::filesystem::create_directories(g_dir + "/pam.d");
    for (const auto& [name, text] : services())
        test::write_file(g_dir + "/pam.d/" + name, text, 0644);

    std::string preload = test::env_or("PAM_WRAPPER_LIB", "libpam_wrapper.so");
    std::string old = test::env_or("LD_PRELOAD", "");
    if (!old.empty()) preload = old + ":" + preload;  // a sanitizer runtime must stay first
    setenv("LD_PRELOAD", preload.c_str(), 1);
    if (dlsym(RTLD_DEFAULT, "__asan_init") != nullptr) {
        // A sanitizer build: ASan is linked in, not preloaded, so it cannot come first in the
        // list; pam_wrapper's RTLD_DEEPBIND would also bypass its interceptors.
        std::string asan = test::env_or("ASAN_OPTIONS", "");
        setenv("ASAN_OPTIONS",
               (asan.empty() ? "" : asan + ":").append("verify_asan_link_order=0").c_str(), 1);
        setenv("PAM_WRAPPER_DISABLE_DEEPBIND", "1", 1);
        setenv("UID_WRAPPER_DISABLE_DEEPBIND", "1", 1);  // the name pam_wrapper 1.1.4 reads
    }
    // pam_syslog() lines up to LOG_DEBUG reach stderr (level 3, trace, would print items).
    setenv("PAM_WRAPPER_DEBUGLEVEL", "2", 1);
    setenv("PAM_WRAPPER", "1", 1);
    setenv("PAM_WRAPPER_SERVICE_DIR", (g_dir + "/pam.d").c_str(), 1);
    setenv("CVAT_PAM_TEST_DIR", g_dir.c_str(), 1);
    // The program's own path, not /proc/self/exe: under valgrind that names valgrind's tool,
    // while readlink() of it gives the program valgrind runs (and --trace-children follows).
    std::vector<char> self(4096);
    const ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
    if (n <= 0) {
        std::printf("Bail out! readlink /proc/self/exe: %s\n", std::strerror(errno));
        return 1;
    }
    self[static_cast<std::size_t>(n)] = '\0';
    ::execv(self.data(), argv);
    std::printf("Bail out! re-exec under pam_wrapper: %s\n", std::strerror(errno));
    std::filesystem::remove_all(g_dir);
    return 1;
}

void remove_test_dir() {
    if (g_dir.empty() || std::getenv("CVAT_TEST_KEEP") != nullptr) return;
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
    std::filesystem::remove_all(owned_dir(), ec);  // test_untrusted_listener_gets_nothing's, if it failed
}

}  // namespace

// Usage: test_pam_module            the module against scripted and hostile peers
//        test_pam_module daemon     the module against the real cvat-authd and slapd
int main(int argc, char** argv) {
    bool daemon_mode = argc > 1 && std::strcmp(argv[1], "daemon") == 0;
    const char* dir = std::getenv("CVAT_PAM_TEST_DIR");
    if (dir == nullptr) return prepare_and_reexec(argv);

    // Stage 2.
    g_dir = dir;
    unsetenv("CVAT_PAM_TEST_DIR");
    std::atexit(remove_test_dir);
    if (dlsym(RTLD_DEFAULT, "pam_wrapper_enabled") == nullptr) {
        // libpam_wrapper.so could not be preloaded (ld.so said why on stderr).
        std::printf("1..0 # SKIP pam_wrapper (libpam-wrapper) is not installed\n");
        return 0;
    }
    // Our children (slapd, cvat-authd) run without the wrapper.
    unsetenv("LD_PRELOAD");
    unsetenv("CVAT_AUTH_SOCKET");

    if (daemon_mode) {
        // The real cvat-authd over slapd's `ad` tree (tests/fixtures/README.md).
        if (std::string why = daemon_missing(); !why.empty()) {
            std::printf("1..0 # SKIP %s\n", why.c_str());
            return 0;
        }
        g_slapd = std::make_unique<test::Slapd>(slapd_dir(), "ad");
        g_daemon = std::make_unique<test::Daemon>(daemon_dir(), ad_config(*g_slapd));
        const CMUnitTest tests[] = {
            cmocka_unit_test(test_daemon_login_canonical_name_and_env),
            cmocka_unit_test(test_daemon_wrong_password),
            cmocka_unit_test(test_daemon_unknown_user),
            cmocka_unit_test(test_daemon_require_admin),
            cmocka_unit_test(test_daemon_session_exports_env),
            cmocka_unit_test(test_daemon_try_first_pass),
            cmocka_unit_test(test_daemon_connection_per_process_and_identity),
        };
        int failed =
            cmocka_run_group_tests_name("pam_cvat with cvat-authd", tests, nullptr, nullptr);
        if (failed != 0)
            std::fprintf(stderr, "cvat-authd log:\n%s\n",
                         test::read_file(g_daemon->log_path()).c_str());
        g_daemon.reset();
        g_slapd.reset();
        return failed;
    }

    const CMUnitTest tests[] = {
        cmocka_unit_test(test_dlopen_entry_points),
        cmocka_unit_test(test_no_daemon_is_authinfo_unavail),
        cmocka_unit_test(test_no_daemon_ignored_on_request),
        cmocka_unit_test(test_silent_peer_times_out),
        cmocka_unit_test(test_garbage_answers_are_unavail),
        cmocka_unit_test(test_peer_hangs_up),
        cmocka_unit_test(test_connection_kept_for_next_transaction),
        cmocka_unit_test(test_fork_closes_other_threads_connection),
        cmocka_unit_test(test_wrong_message_type_is_unavail),
        cmocka_unit_test(test_bad_user_names_never_reach_daemon),
        cmocka_unit_test(test_use_first_pass_without_token_fails),
        cmocka_unit_test(test_use_first_pass_takes_stored_token),
        cmocka_unit_test(test_try_first_pass_falls_back_to_prompt),
        cmocka_unit_test(test_empty_password_refused_locally),
        cmocka_unit_test(test_conversation_failure),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_status_to_pam_code),
        cmocka_unit_test(test_success_sets_canonical_user_and_env),
        cmocka_unit_test(test_account_later_asks_daemon),
        cmocka_unit_test(test_only_present_attributes_exported),
        cmocka_unit_test(test_malformed_canonical_name_fails),
        cmocka_unit_test(test_verdict_message_shown),
        cmocka_unit_test(test_expired_password_reported_by_account),
        cmocka_unit_test(test_daemon_prompts_are_relayed),
        cmocka_unit_test(test_endless_prompts_are_cut),
        cmocka_unit_test(test_conversation_aborted_mid_flow),
        cmocka_unit_test(test_require_role_checked_locally_too),
        cmocka_unit_test(test_session_without_auth_asks_daemon),
        cmocka_unit_test(test_minimum_uid),
        cmocka_unit_test(test_canonical_local_account_refused),
        cmocka_unit_test(test_untrusted_listener_gets_nothing),
        cmocka_unit_test(test_bad_arguments_are_service_err),
        cmocka_unit_test(test_socket_from_environment),
        cmocka_unit_test(test_chauthtok),
        cmocka_unit_test(test_chauthtok_use_authtok_needs_a_token),
        cmocka_unit_test(test_errno_preserved),
        cmocka_unit_test(test_debug_log_has_no_password),
    };
    return cmocka_run_group_tests_name("pam_cvat with hostile and scripted peers", tests,
                                       setup_peer, teardown_peer);
}
