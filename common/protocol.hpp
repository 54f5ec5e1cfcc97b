// SPDX-License-Identifier: LGPL-2.1-or-later
//
// The cvat-auth wire protocol: pam_cvat, nss_cvat and cvat-authctl talk to cvat-authd over a
// Unix stream socket (default /run/cvat-auth/socket) with the messages below. This header is the
// whole contract; nothing else defines bytes on the wire.
//
// FRAMING
//   frame   = length:u32 body              length = byte count of body, 4 <= length <= kMaxFrame
//   body    = version:u16 type:u16 fields  version = kVersion; a peer refuses any other version
//   All integers are big-endian. Strings are  len:u32 bytes  (no NUL inside, len <= the field's
//   cap). Lists are  count:u32 item*  (count <= the field's cap). A frame with bytes left over
//   after its last field is refused. The decoder checks every length against the bytes that are
//   really there and against the cap before it reads; nothing is trusted.
//
// EXCHANGE
//   One connection carries one request at a time: the client sends a request frame, the daemon
//   answers with one response frame. AuthRequest and PasswordRequest may instead be answered by
//   a Prompt (a conversation step: device-flow instructions, "press Enter", a new-password
//   question); the client answers it with ConvReply on the same connection and gets the next
//   Prompt or the final Verdict. A client may close at any time; the daemon then drops the flow.
//   Any frame the daemon refuses ends the connection after an Error-status Verdict.
//
// MESSAGES (type value, direction, fields in order)
//
//   AuthRequest      1   client→daemon  user:str(kMaxName) password:secret(kMaxSecret)
//                                       service:str(kMaxShort) rhost:str(kMaxShort)
//                                       tty:str(kMaxShort) method:u8(AuthMethod)
//                                       idp:str(kMaxShort) flags:u32(AuthFlags)
//                                       timeout_ms:u32
//       A password (or, for method=token or a password that is a JWT, a bearer token) login.
//       method=device starts the RFC 8628 flow; the answer is then a Prompt. timeout_ms is how
//       long the client waits for each answer: the daemon answers every step within it
//       (0: the daemon's default).
//   ConvReply        2   client→daemon  answer:secret(kMaxSecret)
//       The user's answer to the last Prompt (empty for "press Enter").
//   AccountRequest   3   client→daemon  user:str service:str rhost:str tty:str
//                                       require_role:u8(Role; none = no requirement) idp:str
//       pam_sm_acct_mgmt: the user must exist, be enabled, and hold require_role or higher.
//       idp: the backend that authenticated the user in this transaction (the Verdict's
//       `idp` attribute), else the module's idp= argument, else empty (the daemon routes).
//   SessionRequest   4   client→daemon  user:str service:str open:u8(0|1) idp:str
//       pam_sm_open_session/close_session: answered with a Verdict carrying the attributes.
//   PasswordRequest  5   client→daemon  user:str service:str old:secret new:secret
//       pam_sm_chauthtok (LDAP Password Modify, RFC 3062).
//   PasswdByName    10   client→daemon  name:str          NSS getpwnam
//   PasswdByUid     11   client→daemon  uid:u32           NSS getpwuid
//   GroupByName     12   client→daemon  name:str          NSS getgrnam
//   GroupByGid      13   client→daemon  gid:u32           NSS getgrgid
//   InitGroups      14   client→daemon  user:str          NSS initgroups_dyn
//   StatusRequest   20   client→daemon  (no fields)       cvat-authctl status
//   ExplainRequest  21   client→daemon  user:str          cvat-authctl explain (root only)
//   CacheRequest    22   client→daemon  op:u8(CacheOp) name:str(kMaxName)
//       cvat-authctl cache list|show NAME|expire [NAME]|flush (root only). expire with an
//       empty name expires every entry.
//
//   Verdict        100   daemon→client  status:u8(Status) message:str(kMaxText)
//                                       user:str(kMaxName) role:u8(Role)
//                                       attributes:list(kMaxAttrs) of {key:str value:str}
//       The final answer to Auth/Account/Session/Password requests, and to any refused frame.
//       `user` is the canonical name (pam_cvat sets PAM_USER to it); `message` is for the user's
//       screen and never holds a secret. Attribute keys: email, first_name, last_name, idp, dn.
//   Prompt         101   daemon→client  style:u8(PromptStyle) text:str(kMaxText)
//       One conversation step; the client shows `text` and answers with ConvReply.
//   PasswdReply    110   daemon→client  status:u8 name:str uid:u32 gid:u32 gecos:str
//                                       dir:str shell:str
//   GroupReply     111   daemon→client  status:u8 name:str gid:u32 members:list(kMaxMembers) of str
//   GroupsReply    112   daemon→client  status:u8 gids:list(kMaxGroups) of u32
//   StatusReply    120   daemon→client  version:str uptime_s:u64
//                                       backends:list(kMaxBackends) of {name:str up:u8 detail:str}
//   ExplainReply   121   daemon→client  status:u8 role:u8(Role) lines:list(kMaxLines) of str
//   CacheReply     122   daemon→client  status:u8 lines:list(kMaxLines) of str
//
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "result.hpp"
#include "secret.hpp"

namespace cvat::proto {

inline constexpr std::uint16_t kVersion = 1;

// Caps. Every one is a hard limit checked by the decoder.
inline constexpr std::uint32_t kMaxFrame = 64 * 1024;   // largest body: a group of ~1000 members
inline constexpr std::size_t kMaxName = 256;            // user/group names (LOGIN_NAME_MAX is 256)
inline constexpr std::size_t kMaxShort = 256;           // service, rhost, tty, idp id, keys
inline constexpr std::size_t kMaxSecret = 24 * 1024;    // passwords, JWTs (large Entra tokens), SAMLResponses; two fit a frame
inline constexpr std::size_t kMaxText = 8 * 1024;       // messages and prompts (QR code fits)
inline constexpr std::size_t kMaxAttrs = 32;
inline constexpr std::size_t kMaxMembers = 2048;
inline constexpr std::size_t kMaxGroups = 4096;
inline constexpr std::size_t kMaxBackends = 64;
inline constexpr std::size_t kMaxLines = 512;
inline constexpr std::size_t kHeaderSize = 4;           // the length word

enum class MsgType : std::uint16_t {
    auth_request = 1,
    conv_reply = 2,
    account_request = 3,
    session_request = 4,
    password_request = 5,
    passwd_by_name = 10,
    passwd_by_uid = 11,
    group_by_name = 12,
    group_by_gid = 13,
    init_groups = 14,
    status_request = 20,
    explain_request = 21,
    cache_request = 22,
    verdict = 100,
    prompt = 101,
    passwd_reply = 110,
    group_reply = 111,
    groups_reply = 112,
    status_reply = 120,
    explain_reply = 121,
    cache_reply = 122,
};

// Outcome of a request; pam_cvat maps it to a PAM code in one switch, nss_cvat to NSS codes.
enum class Status : std::uint8_t {
    ok = 0,
    auth_err = 1,            // wrong password / token refused          PAM_AUTH_ERR
    user_unknown = 2,        //                                         PAM_USER_UNKNOWN
    unavailable = 3,         // directory/IdP unreachable or timed out  PAM_AUTHINFO_UNAVAIL
    acct_expired = 4,        //                                         PAM_ACCT_EXPIRED
    perm_denied = 5,         // disabled, locked, role missing          PAM_PERM_DENIED
    new_authtok_reqd = 6,    // password expired / must change          PAM_NEW_AUTHTOK_REQD
    bad_request = 7,         // malformed or refused request            PAM_SYSTEM_ERR
    not_found = 8,           // NSS: no such entry                      NSS_STATUS_NOTFOUND
    not_supported = 9,       // request type not served by this daemon  PAM_IGNORE / UNAVAIL
    internal = 10,           // bug or resource failure in the daemon   PAM_SYSTEM_ERR
    authtok_err = 11,        // new password refused by the server      PAM_AUTHTOK_ERR
};
inline constexpr std::uint8_t kStatusMax = 11;
const char* status_name(Status s) noexcept;

// CVAT roles, ordered so that a larger value is a higher role.
enum class Role : std::uint8_t { none = 0, worker = 1, user = 2, admin = 3 };
inline constexpr std::uint8_t kRoleMax = 3;
const char* role_name(Role r) noexcept;  // "none", "worker", "user", "admin"
bool parse_role(std::string_view text, Role& out) noexcept;

enum class AuthMethod : std::uint8_t { password = 0, device = 1, automatic = 2, token = 3 };
inline constexpr std::uint8_t kAuthMethodMax = 3;

enum class PromptStyle : std::uint8_t { echo_off = 0, echo_on = 1, info = 2, error = 3 };
inline constexpr std::uint8_t kPromptStyleMax = 3;

enum AuthFlags : std::uint32_t {
    flag_none = 0,
    flag_no_qr = 1u << 0,        // do not draw a QR code
    flag_ascii_only = 1u << 1,   // the conversation may not take UTF-8 (sshd): ASCII QR
};

using Attribute = std::pair<std::string, std::string>;

struct AuthRequest {
    std::string user;
    Secret password;
    std::string service;
    std::string rhost;
    std::string tty;
    AuthMethod method = AuthMethod::password;
    std::string idp;
    std::uint32_t flags = 0;
    std::uint32_t timeout_ms = 0;
};
struct ConvReply {
    Secret answer;
};
struct AccountRequest {
    std::string user;
    std::string service;
    std::string rhost;
    std::string tty;
    Role require_role = Role::none;
    std::string idp;
};
struct SessionRequest {
    std::string user;
    std::string service;
    bool open = true;
    std::string idp;
};
struct PasswordRequest {
    std::string user;
    std::string service;
    Secret old_password;
    Secret new_password;
};
struct PasswdByName {
    std::string name;
};
struct PasswdByUid {
    std::uint32_t uid = 0;
};
struct GroupByName {
    std::string name;
};
struct GroupByGid {
    std::uint32_t gid = 0;
};
struct InitGroups {
    std::string user;
};
struct StatusRequest {};
struct ExplainRequest {
    std::string user;
};
enum class CacheOp : std::uint8_t { list = 0, show = 1, expire = 2, flush = 3 };
inline constexpr std::uint8_t kCacheOpMax = 3;
struct CacheRequest {
    CacheOp op = CacheOp::list;
    std::string name;
};

struct Verdict {
    Status status = Status::internal;
    std::string message;
    std::string user;
    Role role = Role::none;
    std::vector<Attribute> attributes;
    // Value of attribute `key`, or empty.
    std::string_view attribute(std::string_view key) const noexcept;
};
struct Prompt {
    PromptStyle style = PromptStyle::info;
    std::string text;
};
struct PasswdReply {
    Status status = Status::not_found;
    std::string name;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::string gecos;
    std::string dir;
    std::string shell;
};
struct GroupReply {
    Status status = Status::not_found;
    std::string name;
    std::uint32_t gid = 0;
    std::vector<std::string> members;
};
struct GroupsReply {
    Status status = Status::not_found;
    std::vector<std::uint32_t> gids;
};
struct BackendState {
    std::string name;
    bool up = false;
    std::string detail;
};
struct StatusReply {
    std::string version;
    std::uint64_t uptime_s = 0;
    std::vector<BackendState> backends;
};
struct ExplainReply {
    Status status = Status::internal;
    Role role = Role::none;
    std::vector<std::string> lines;
};
struct CacheReply {
    Status status = Status::internal;
    std::vector<std::string> lines;
};

using Request = std::variant<AuthRequest, ConvReply, AccountRequest, SessionRequest,
                             PasswordRequest, PasswdByName, PasswdByUid, GroupByName, GroupByGid,
                             InitGroups, StatusRequest, ExplainRequest, CacheRequest>;
using Response = std::variant<Verdict, Prompt, PasswdReply, GroupReply, GroupsReply, StatusReply,
                              ExplainReply, CacheReply>;

// Encode one message as a complete frame (length word included). Fails with too_large when a
// field is over its cap, so a sender can never produce a frame the peer must refuse.
[[nodiscard]] Result<SecureBytes> encode_request(const Request& msg);
[[nodiscard]] Result<SecureBytes> encode_response(const Response& msg);

// Decode one frame body (after the length word). Fails with protocol/too_large on anything
// malformed: wrong version, unknown type, short field, over-cap length, trailing bytes,
// an enum value out of range, a NUL inside a string.
[[nodiscard]] Result<Request> decode_request(std::span<const std::uint8_t> body);
[[nodiscard]] Result<Response> decode_response(std::span<const std::uint8_t> body);

// Read the length word of a frame header and check it against the cap.
[[nodiscard]] Result<std::uint32_t> frame_length(std::span<const std::uint8_t, kHeaderSize> header);

const char* method_name(AuthMethod m) noexcept;  // "password", "device", "auto", "token"

// The request's name for logs ("auth", "account", ...). Requests are logged through
// describe_request(), which leaves every credential out.
const char* request_name(const Request& msg) noexcept;
std::string describe_request(const Request& msg);

}  // namespace cvat::proto
