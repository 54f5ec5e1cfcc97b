// SPDX-License-Identifier: LGPL-2.1-or-later
#include "protocol.hpp"

#include "log.hpp"

#include <cstring>
#include <type_traits>

namespace cvat::proto {
namespace {

// Appends fields to a frame; remembers the first over-cap field instead of throwing.
class Writer {
public:
    explicit Writer(MsgType type) {
        buf_.reserve(256);
        put_u32(0);  // length, patched in finish()
        put_u16(kVersion);
        put_u16(static_cast<std::uint16_t>(type));
    }
    void put_u8(std::uint8_t v) { buf_.push_back(v); }
    void put_u16(std::uint16_t v) {
        put_u8(static_cast<std::uint8_t>(v >> 8));
        put_u8(static_cast<std::uint8_t>(v));
    }
    void put_u32(std::uint32_t v) {
        put_u16(static_cast<std::uint16_t>(v >> 16));
        put_u16(static_cast<std::uint16_t>(v));
    }
    void put_u64(std::uint64_t v) {
        put_u32(static_cast<std::uint32_t>(v >> 32));
        put_u32(static_cast<std::uint32_t>(v));
    }
    void put_str(std::string_view s, std::size_t cap, const char* field) {
        if (s.size() > cap) return over(field);
        if (s.find('\0') != std::string_view::npos) return bad(field);
        put_u32(static_cast<std::uint32_t>(s.size()));
        buf_.insert(buf_.end(), s.begin(), s.end());
    }
    void put_count(std::size_t n, std::size_t cap, const char* field) {
        if (n > cap) return over(field);
        put_u32(static_cast<std::uint32_t>(n));
    }
    Result<SecureBytes> finish() {
        if (!error_.empty()) return fail(err_code_, error_);
        std::size_t body = buf_.size() - kHeaderSize;
        if (body > kMaxFrame) return fail(ErrorCode::too_large, "frame over the cap");
        auto len = static_cast<std::uint32_t>(body);
        buf_[0] = static_cast<std::uint8_t>(len >> 24);
        buf_[1] = static_cast<std::uint8_t>(len >> 16);
        buf_[2] = static_cast<std::uint8_t>(len >> 8);
        buf_[3] = static_cast<std::uint8_t>(len);
        return std::move(buf_);
    }

private:
    void over(const char* field) {
        if (error_.empty()) {
            err_code_ = ErrorCode::too_large;
            error_ = std::string("field over its cap: ") + field;
        }
    }
    void bad(const char* field) {
        if (error_.empty()) {
            err_code_ = ErrorCode::invalid_argument;
            error_ = std::string("NUL byte in field: ") + field;
        }
    }
    SecureBytes buf_;
    ErrorCode err_code_ = ErrorCode::internal;
    std::string error_;
};

// Reads fields from a frame body; every read is bounds-checked, the first failure sticks.
class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> body) : data_(body) {}

    bool ok() const noexcept { return error_.empty(); }
    std::uint8_t u8() {
        if (!need(1, "u8")) return 0;
        return data_[pos_++];
    }
    std::uint16_t u16() {
        if (!need(2, "u16")) return 0;
        std::uint16_t v = static_cast<std::uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
        pos_ += 2;
        return v;
    }
    std::uint32_t u32() {
        std::uint32_t hi = u16();
        std::uint32_t lo = u16();
        return (hi << 16) | lo;
    }
    std::uint64_t u64() {
        std::uint64_t hi = u32();
        std::uint64_t lo = u32();
        return (hi << 32) | lo;
    }
    std::string str(std::size_t cap, const char* field) {
        std::string_view v = raw(cap, field);
        return std::string(v);
    }
    Secret secret(std::size_t cap, const char* field) { return Secret(raw(cap, field)); }
    // A list count, checked against its cap and against the bytes left (each item >= min_item).
    std::size_t count(std::size_t cap, std::size_t min_item, const char* field) {
        std::uint32_t n = u32();
        if (!ok()) return 0;
        if (n > cap) return over(field);
        if (static_cast<std::uint64_t>(n) * min_item > left()) return short_read(field);
        return n;
    }
    template <typename E>
    E enumeration(std::uint8_t max, const char* field) {
        std::uint8_t v = u8();
        if (ok() && v > max) set(ErrorCode::protocol, std::string("value out of range: ") + field);
        return ok() ? static_cast<E>(v) : E{};
    }
    bool boolean(const char* field) {
        std::uint8_t v = u8();
        if (ok() && v > 1) set(ErrorCode::protocol, std::string("not a boolean: ") + field);
        return v == 1;
    }
    Result<void> finish() {
        if (ok() && pos_ != data_.size()) set(ErrorCode::protocol, "trailing bytes after message");
        if (!ok()) return fail(code_, error_);
        return {};
    }
    std::size_t left() const noexcept { return data_.size() - pos_; }

private:
    std::string_view raw(std::size_t cap, const char* field) {
        std::uint32_t n = u32();
        if (!ok()) return {};
        if (n > cap) {
            over(field);
            return {};
        }
        if (!need(n, field)) return {};
        std::string_view v(reinterpret_cast<const char*>(data_.data() + pos_), n);
        if (v.find('\0') != std::string_view::npos) {
            set(ErrorCode::protocol, std::string("NUL byte in field: ") + field);
            return {};
        }
        pos_ += n;
        return v;
    }
    bool need(std::size_t n, const char* field) {
        if (!ok()) return false;
        if (n > left()) {
            short_read(field);
            return false;
        }
        return true;
    }
    std::size_t over(const char* field) {
        set(ErrorCode::too_large, std::string("field over its cap: ") + field);
        return 0;
    }
    std::size_t short_read(const char* field) {
        set(ErrorCode::protocol, std::string("truncated field: ") + field);
        return 0;
    }
    void set(ErrorCode code, std::string msg) {
        if (ok()) {
            code_ = code;
            error_ = std::move(msg);
        }
    }
    std::span<const std::uint8_t> data_;
    std::size_t pos_ = 0;
    ErrorCode code_ = ErrorCode::protocol;
    std::string error_;
};

// ---- encoders, one per message ----

void put(Writer& w, const AuthRequest& m) {
    w.put_str(m.user, kMaxName, "user");
    w.put_str(m.password.view(), kMaxSecret, "password");
    w.put_str(m.service, kMaxShort, "service");
    w.put_str(m.rhost, kMaxShort, "rhost");
    w.put_str(m.tty, kMaxShort, "tty");
    w.put_u8(static_cast<std::uint8_t>(m.method));
    w.put_str(m.idp, kMaxShort, "idp");
    w.put_u32(m.flags);
    w.put_u32(m.timeout_ms);
}
void put(Writer& w, const ConvReply& m) { w.put_str(m.answer.view(), kMaxSecret, "answer"); }
void put(Writer& w, const AccountRequest& m) {
    w.put_str(m.user, kMaxName, "user");
    w.put_str(m.service, kMaxShort, "service");
    w.put_str(m.rhost, kMaxShort, "rhost");
    w.put_str(m.tty, kMaxShort, "tty");
    w.put_u8(static_cast<std::uint8_t>(m.require_role));
    w.put_str(m.idp, kMaxShort, "idp");
}
void put(Writer& w, const SessionRequest& m) {
    w.put_str(m.user, kMaxName, "user");
    w.put_str(m.service, kMaxShort, "service");
    w.put_u8(m.open ? 1 : 0);
    w.put_str(m.idp, kMaxShort, "idp");
}
void put(Writer& w, const PasswordRequest& m) {
    w.put_str(m.user, kMaxName, "user");
    w.put_str(m.service, kMaxShort, "service");
    w.put_str(m.old_password.view(), kMaxSecret, "old");
    w.put_str(m.new_password.view(), kMaxSecret, "new");
}
void put(Writer& w, const PasswdByName& m) { w.put_str(m.name, kMaxName, "name"); }
void put(Writer& w, const PasswdByUid& m) { w.put_u32(m.uid); }
void put(Writer& w, const GroupByName& m) { w.put_str(m.name, kMaxName, "name"); }
void put(Writer& w, const GroupByGid& m) { w.put_u32(m.gid); }
void put(Writer& w, const InitGroups& m) { w.put_str(m.user, kMaxName, "user"); }
void put(Writer&, const StatusRequest&) {}
void put(Writer& w, const ExplainRequest& m) { w.put_str(m.user, kMaxName, "user"); }
void put(Writer& w, const CacheRequest& m) {
    w.put_u8(static_cast<std::uint8_t>(m.op));
    w.put_str(m.name, kMaxName, "name");
}

void put(Writer& w, const Verdict& m) {
    w.put_u8(static_cast<std::uint8_t>(m.status));
    w.put_str(m.message, kMaxText, "message");
    w.put_str(m.user, kMaxName, "user");
    w.put_u8(static_cast<std::uint8_t>(m.role));
    w.put_count(m.attributes.size(), kMaxAttrs, "attributes");
    for (const auto& [k, v] : m.attributes) {
        w.put_str(k, kMaxShort, "attribute key");
        w.put_str(v, kMaxText, "attribute value");
    }
}
void put(Writer& w, const Prompt& m) {
    w.put_u8(static_cast<std::uint8_t>(m.style));
    w.put_str(m.text, kMaxText, "text");
}
void put(Writer& w, const PasswdReply& m) {
    w.put_u8(static_cast<std::uint8_t>(m.status));
    w.put_str(m.name, kMaxName, "name");
    w.put_u32(m.uid);
    w.put_u32(m.gid);
    w.put_str(m.gecos, kMaxShort, "gecos");
    w.put_str(m.dir, kMaxShort, "dir");
    w.put_str(m.shell, kMaxShort, "shell");
}
void put(Writer& w, const GroupReply& m) {
    w.put_u8(static_cast<std::uint8_t>(m.status));
    w.put_str(m.name, kMaxName, "name");
    w.put_u32(m.gid);
    w.put_count(m.members.size(), kMaxMembers, "members");
    for (const auto& s : m.members) w.put_str(s, kMaxName, "member");
}
void put(Writer& w, const GroupsReply& m) {
    w.put_u8(static_cast<std::uint8_t>(m.status));
    w.put_count(m.gids.size(), kMaxGroups, "gids");
    for (auto g : m.gids) w.put_u32(g);
}
void put(Writer& w, const StatusReply& m) {
    w.put_str(m.version, kMaxShort, "version");
    w.put_u64(m.uptime_s);
    w.put_count(m.backends.size(), kMaxBackends, "backends");
    for (const auto& b : m.backends) {
        w.put_str(b.name, kMaxShort, "backend name");
        w.put_u8(b.up ? 1 : 0);
        w.put_str(b.detail, kMaxText, "backend detail");
    }
}
void put(Writer& w, const ExplainReply& m) {
    w.put_u8(static_cast<std::uint8_t>(m.status));
    w.put_u8(static_cast<std::uint8_t>(m.role));
    w.put_count(m.lines.size(), kMaxLines, "lines");
    for (const auto& l : m.lines) w.put_str(l, kMaxText, "line");
}
void put(Writer& w, const CacheReply& m) {
    w.put_u8(static_cast<std::uint8_t>(m.status));
    w.put_count(m.lines.size(), kMaxLines, "lines");
    for (const auto& l : m.lines) w.put_str(l, kMaxText, "line");
}

template <typename T>
constexpr MsgType type_of() {
    if constexpr (std::is_same_v<T, AuthRequest>) return MsgType::auth_request;
    else if constexpr (std::is_same_v<T, ConvReply>) return MsgType::conv_reply;
    else if constexpr (std::is_same_v<T, AccountRequest>) return MsgType::account_request;
    else if constexpr (std::is_same_v<T, SessionRequest>) return MsgType::session_request;
    else if constexpr (std::is_same_v<T, PasswordRequest>) return MsgType::password_request;
    else if constexpr (std::is_same_v<T, PasswdByName>) return MsgType::passwd_by_name;
    else if constexpr (std::is_same_v<T, PasswdByUid>) return MsgType::passwd_by_uid;
    else if constexpr (std::is_same_v<T, GroupByName>) return MsgType::group_by_name;
    else if constexpr (std::is_same_v<T, GroupByGid>) return MsgType::group_by_gid;
    else if constexpr (std::is_same_v<T, InitGroups>) return MsgType::init_groups;
    else if constexpr (std::is_same_v<T, StatusRequest>) return MsgType::status_request;
    else if constexpr (std::is_same_v<T, ExplainRequest>) return MsgType::explain_request;
    else if constexpr (std::is_same_v<T, CacheRequest>) return MsgType::cache_request;
    else if constexpr (std::is_same_v<T, Verdict>) return MsgType::verdict;
    else if constexpr (std::is_same_v<T, Prompt>) return MsgType::prompt;
    else if constexpr (std::is_same_v<T, PasswdReply>) return MsgType::passwd_reply;
    else if constexpr (std::is_same_v<T, GroupReply>) return MsgType::group_reply;
    else if constexpr (std::is_same_v<T, GroupsReply>) return MsgType::groups_reply;
    else if constexpr (std::is_same_v<T, StatusReply>) return MsgType::status_reply;
    else if constexpr (std::is_same_v<T, ExplainReply>) return MsgType::explain_reply;
    else return MsgType::cache_reply;
}

template <typename Variant>
Result<SecureBytes> encode_any(const Variant& msg) {
    return std::visit(
        [](const auto& m) -> Result<SecureBytes> {
            Writer w(type_of<std::decay_t<decltype(m)>>());
            put(w, m);
            return w.finish();
        },
        msg);
}

// ---- decoders ----

AuthRequest get_auth(Reader& r) {
    AuthRequest m;
    m.user = r.str(kMaxName, "user");
    m.password = r.secret(kMaxSecret, "password");
    m.service = r.str(kMaxShort, "service");
    m.rhost = r.str(kMaxShort, "rhost");
    m.tty = r.str(kMaxShort, "tty");
    m.method = r.enumeration<AuthMethod>(kAuthMethodMax, "method");
    m.idp = r.str(kMaxShort, "idp");
    m.flags = r.u32();
    m.timeout_ms = r.u32();
    return m;
}
AccountRequest get_account(Reader& r) {
    AccountRequest m;
    m.user = r.str(kMaxName, "user");
    m.service = r.str(kMaxShort, "service");
    m.rhost = r.str(kMaxShort, "rhost");
    m.tty = r.str(kMaxShort, "tty");
    m.require_role = r.enumeration<Role>(kRoleMax, "require_role");
    m.idp = r.str(kMaxShort, "idp");
    return m;
}
SessionRequest get_session(Reader& r) {
    SessionRequest m;
    m.user = r.str(kMaxName, "user");
    m.service = r.str(kMaxShort, "service");
    m.open = r.boolean("open");
    m.idp = r.str(kMaxShort, "idp");
    return m;
}
PasswordRequest get_password(Reader& r) {
    PasswordRequest m;
    m.user = r.str(kMaxName, "user");
    m.service = r.str(kMaxShort, "service");
    m.old_password = r.secret(kMaxSecret, "old");
    m.new_password = r.secret(kMaxSecret, "new");
    return m;
}
Verdict get_verdict(Reader& r) {
    Verdict m;
    m.status = r.enumeration<Status>(kStatusMax, "status");
    m.message = r.str(kMaxText, "message");
    m.user = r.str(kMaxName, "user");
    m.role = r.enumeration<Role>(kRoleMax, "role");
    std::size_t n = r.count(kMaxAttrs, 8, "attributes");
    for (std::size_t i = 0; i < n && r.ok(); ++i) {
        std::string k = r.str(kMaxShort, "attribute key");
        std::string v = r.str(kMaxText, "attribute value");
        m.attributes.emplace_back(std::move(k), std::move(v));
    }
    return m;
}
PasswdReply get_passwd(Reader& r) {
    PasswdReply m;
    m.status = r.enumeration<Status>(kStatusMax, "status");
    m.name = r.str(kMaxName, "name");
    m.uid = r.u32();
    m.gid = r.u32();
    m.gecos = r.str(kMaxShort, "gecos");
    m.dir = r.str(kMaxShort, "dir");
    m.shell = r.str(kMaxShort, "shell");
    return m;
}
GroupReply get_group(Reader& r) {
    GroupReply m;
    m.status = r.enumeration<Status>(kStatusMax, "status");
    m.name = r.str(kMaxName, "name");
    m.gid = r.u32();
    std::size_t n = r.count(kMaxMembers, 4, "members");
    for (std::size_t i = 0; i < n && r.ok(); ++i) m.members.push_back(r.str(kMaxName, "member"));
    return m;
}
GroupsReply get_groups(Reader& r) {
    GroupsReply m;
    m.status = r.enumeration<Status>(kStatusMax, "status");
    std::size_t n = r.count(kMaxGroups, 4, "gids");
    for (std::size_t i = 0; i < n && r.ok(); ++i) m.gids.push_back(r.u32());
    return m;
}
StatusReply get_status(Reader& r) {
    StatusReply m;
    m.version = r.str(kMaxShort, "version");
    m.uptime_s = r.u64();
    std::size_t n = r.count(kMaxBackends, 9, "backends");
    for (std::size_t i = 0; i < n && r.ok(); ++i) {
        BackendState b;
        b.name = r.str(kMaxShort, "backend name");
        b.up = r.boolean("backend up");
        b.detail = r.str(kMaxText, "backend detail");
        m.backends.push_back(std::move(b));
    }
    return m;
}
ExplainReply get_explain(Reader& r) {
    ExplainReply m;
    m.status = r.enumeration<Status>(kStatusMax, "status");
    m.role = r.enumeration<Role>(kRoleMax, "role");
    std::size_t n = r.count(kMaxLines, 4, "lines");
    for (std::size_t i = 0; i < n && r.ok(); ++i) m.lines.push_back(r.str(kMaxText, "line"));
    return m;
}
CacheReply get_cache_reply(Reader& r) {
    CacheReply m;
    m.status = r.enumeration<Status>(kStatusMax, "status");
    std::size_t n = r.count(kMaxLines, 4, "lines");
    for (std::size_t i = 0; i < n && r.ok(); ++i) m.lines.push_back(r.str(kMaxText, "line"));
    return m;
}

// Reads the version and type words; fails on a foreign version.
Result<MsgType> read_head(Reader& r) {
    std::uint16_t version = r.u16();
    std::uint16_t type = r.u16();
    if (!r.ok()) return fail(ErrorCode::protocol, "frame shorter than its header");
    if (version != kVersion)
        return fail(ErrorCode::protocol, "protocol version " + std::to_string(version) +
                                             " (this side speaks " + std::to_string(kVersion) + ")");
    return static_cast<MsgType>(type);
}

template <typename T>
Result<T> done(Reader& r, T&& msg) {
    auto end = r.finish();
    if (!end) return tl::unexpected(end.error());
    return std::forward<T>(msg);
}

}  // namespace

Result<SecureBytes> encode_request(const Request& msg) { return encode_any(msg); }
Result<SecureBytes> encode_response(const Response& msg) { return encode_any(msg); }

Result<Request> decode_request(std::span<const std::uint8_t> body) {
    if (body.size() > kMaxFrame) return fail(ErrorCode::too_large, "frame over the cap");
    Reader r(body);
    auto type = read_head(r);
    if (!type) return tl::unexpected(type.error());
    switch (*type) {
        case MsgType::auth_request: return done<Request>(r, get_auth(r));
        case MsgType::conv_reply: return done<Request>(r, ConvReply{r.secret(kMaxSecret, "answer")});
        case MsgType::account_request: return done<Request>(r, get_account(r));
        case MsgType::session_request: return done<Request>(r, get_session(r));
        case MsgType::password_request: return done<Request>(r, get_password(r));
        case MsgType::passwd_by_name: return done<Request>(r, PasswdByName{r.str(kMaxName, "name")});
        case MsgType::passwd_by_uid: return done<Request>(r, PasswdByUid{r.u32()});
        case MsgType::group_by_name: return done<Request>(r, GroupByName{r.str(kMaxName, "name")});
        case MsgType::group_by_gid: return done<Request>(r, GroupByGid{r.u32()});
        case MsgType::init_groups: return done<Request>(r, InitGroups{r.str(kMaxName, "user")});
        case MsgType::status_request: return done<Request>(r, StatusRequest{});
        case MsgType::explain_request: return done<Request>(r, ExplainRequest{r.str(kMaxName, "user")});
        case MsgType::cache_request: {
            CacheRequest c;
            c.op = r.enumeration<CacheOp>(kCacheOpMax, "op");
            c.name = r.str(kMaxName, "name");
            return done<Request>(r, std::move(c));
        }
        default: break;
    }
    return fail(ErrorCode::protocol, "unknown request type " + std::to_string(static_cast<unsigned>(*type)));
}

Result<Response> decode_response(std::span<const std::uint8_t> body) {
    if (body.size() > kMaxFrame) return fail(ErrorCode::too_large, "frame over the cap");
    Reader r(body);
    auto type = read_head(r);
    if (!type) return tl::unexpected(type.error());
    switch (*type) {
        case MsgType::verdict: return done<Response>(r, get_verdict(r));
        case MsgType::prompt: {
            Prompt p;
            p.style = r.enumeration<PromptStyle>(kPromptStyleMax, "style");
            p.text = r.str(kMaxText, "text");
            return done<Response>(r, std::move(p));
        }
        case MsgType::passwd_reply: return done<Response>(r, get_passwd(r));
        case MsgType::group_reply: return done<Response>(r, get_group(r));
        case MsgType::groups_reply: return done<Response>(r, get_groups(r));
        case MsgType::status_reply: return done<Response>(r, get_status(r));
        case MsgType::explain_reply: return done<Response>(r, get_explain(r));
        case MsgType::cache_reply: return done<Response>(r, get_cache_reply(r));
        default: break;
    }
    return fail(ErrorCode::protocol, "unknown response type " + std::to_string(static_cast<unsigned>(*type)));
}

Result<std::uint32_t> frame_length(std::span<const std::uint8_t, kHeaderSize> h) {
    std::uint32_t n = (std::uint32_t{h[0]} << 24) | (std::uint32_t{h[1]} << 16) |
                      (std::uint32_t{h[2]} << 8) | std::uint32_t{h[3]};
    if (n < 4) return fail(ErrorCode::protocol, "frame shorter than its header");
    if (n > kMaxFrame) return fail(ErrorCode::too_large, "frame of " + std::to_string(n) + " bytes over the cap");
    return n;
}

std::string_view Verdict::attribute(std::string_view key) const noexcept {
    for (const auto& [k, v] : attributes)
        if (k == key) return v;
    return {};
}

const char* status_name(Status s) noexcept {
    switch (s) {
        case Status::ok: return "ok";
        case Status::auth_err: return "authentication failed";
        case Status::user_unknown: return "unknown user";
        case Status::unavailable: return "backend unavailable";
        case Status::acct_expired: return "account expired";
        case Status::perm_denied: return "permission denied";
        case Status::new_authtok_reqd: return "new password required";
        case Status::bad_request: return "bad request";
        case Status::not_found: return "not found";
        case Status::not_supported: return "not supported";
        case Status::internal: return "internal error";
        case Status::authtok_err: return "new password refused";
    }
    return "?";
}

const char* role_name(Role r) noexcept {
    switch (r) {
        case Role::none: return "none";
        case Role::worker: return "worker";
        case Role::user: return "user";
        case Role::admin: return "admin";
    }
    return "?";
}

bool parse_role(std::string_view text, Role& out) noexcept {
    for (auto r : {Role::none, Role::worker, Role::user, Role::admin}) {
        if (text == role_name(r)) {
            out = r;
            return true;
        }
    }
    return false;
}

const char* method_name(AuthMethod m) noexcept {
    switch (m) {
        case AuthMethod::password: return "password";
        case AuthMethod::device: return "device";
        case AuthMethod::automatic: return "auto";
        case AuthMethod::token: return "token";
    }
    return "?";
}

const char* request_name(const Request& msg) noexcept {
    static constexpr const char* names[] = {"auth",      "conv",     "account",   "session",
                                            "password",  "getpwnam", "getpwuid",  "getgrnam",
                                            "getgrgid",  "initgroups", "status", "explain", "cache"};
    static_assert(std::variant_size_v<Request> == std::size(names));
    return names[msg.index()];
}

std::string describe_request(const Request& msg) {
    std::string out = request_name(msg);
    std::visit(
        [&out](const auto& m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, AuthRequest>) {
                out += " user=" + log_safe(m.user) + " service=" + log_safe(m.service) +
                       " rhost=" + log_safe(m.rhost) + " tty=" + log_safe(m.tty) +
                       " method=" + method_name(m.method) +
                       (m.idp.empty() ? "" : " idp=" + log_safe(m.idp)) +
                       (m.password.empty() ? " password=<empty>" : " password=<given>");
            } else if constexpr (std::is_same_v<T, AccountRequest>) {
                out += " user=" + log_safe(m.user) + " service=" + log_safe(m.service) +
                       " require_role=" + role_name(m.require_role);
            } else if constexpr (std::is_same_v<T, SessionRequest> || std::is_same_v<T, PasswordRequest>) {
                out += " user=" + log_safe(m.user) + " service=" + log_safe(m.service);
            } else if constexpr (std::is_same_v<T, PasswdByName> || std::is_same_v<T, GroupByName>) {
                out += " name=" + log_safe(m.name);
            } else if constexpr (std::is_same_v<T, PasswdByUid>) {
                out += " uid=" + std::to_string(m.uid);
            } else if constexpr (std::is_same_v<T, GroupByGid>) {
                out += " gid=" + std::to_string(m.gid);
            } else if constexpr (std::is_same_v<T, InitGroups> || std::is_same_v<T, ExplainRequest>) {
                out += " user=" + log_safe(m.user);
            } else if constexpr (std::is_same_v<T, CacheRequest>) {
                static constexpr const char* ops[] = {"list", "show", "expire", "flush"};
                out += std::string(" op=") + ops[static_cast<std::size_t>(m.op)];
                if (!m.name.empty()) out += " name=" + log_safe(m.name);
            }
        },
        msg);
    return out;
}

}  // namespace cvat::proto
