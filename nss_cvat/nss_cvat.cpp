// SPDX-License-Identifier: LGPL-2.1-or-later
//
// nss_cvat: passwd, group and initgroups for CVAT users (DESIGN.md §2 "Lookups").
//
// Warm lookups read the daemon's memory-mapped cache file (common/nss_mc.hpp) next to its
// socket; a miss, an expired record or no file goes to cvat-authd over the socket: one
// request, one reply (common/protocol.hpp), a 10 s deadline for all of it, on the thread's
// kept connection (see kept()) or a new one.
//
// A guest in every process that resolves a user, so: libc only (no libstdc++, no exceptions,
// no RTTI, no static constructors beyond the atfork registration), every string inside the
// caller's buffer (ERANGE + NSS_STATUS_TRYAGAIN when it is too small, out-parameters untouched
// on failure), errno as the caller had it on success and not-found, sockets SOCK_CLOEXEC and
// writes MSG_NOSIGNAL, and a fork while another thread holds the cache lock leaves the child
// usable. CVAT_NSS_DISABLE in the environment (cvat-authd sets it for itself) makes every call
// NSS_STATUS_UNAVAIL at once, so the daemon never resolves users through itself.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <new>  // placement new only (header-inline, no libstdc++)
#include <nss.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kept_fds.hpp"
#include "nss_mc.hpp"
#include "nss_pack.hpp"
#include "peer_trust.hpp"
#include "protocol.hpp"  // only its enums and caps: nothing here calls into common/'s library
#include "wire.hpp"

namespace cvat::nss {
namespace {

using proto::MsgType;
using proto::Status;

constexpr int kTimeoutMs = 10000;  // one cold lookup, connect to last byte: never a hang

// The entry points' epilogue. glibc passes &errno as errnop, so errno is restored first and
// *errnop is written only when the status asks the caller to look at it.
nss_status finish(Outcome r, int saved_errno, int* errnop) {
    errno = saved_errno;
    if (r.status != NSS_STATUS_SUCCESS && r.status != NSS_STATUS_NOTFOUND) *errnop = r.err;
    return r.status;
}

bool disabled() { return getenv("CVAT_NSS_DISABLE") != nullptr; }

// A name we pass on: 1..255 bytes, no control character and no ':' (it could not appear in a
// passwd or group line). Anything else is refused here and never reaches the daemon.
bool valid_name(const char* name, size_t& len) {
    if (name == nullptr) return false;
    len = strnlen(name, mc::kMaxName + 1);
    if (len == 0 || len > mc::kMaxName) return false;
    for (size_t i = 0; i < len; ++i) {
        auto c = static_cast<unsigned char>(name[i]);
        if (c < 0x20 || c == 0x7f || c == ':') return false;
    }
    return true;
}

// The socket (CVAT_AUTH_SOCKET, read with secure_getenv, else the built-in default) and the
// cache file beside it.
struct Paths {
    char socket[sizeof(sockaddr_un::sun_path)];
    char cache[PATH_MAX];
    bool init() {
        const char* s = secure_getenv("CVAT_AUTH_SOCKET");
        if (s == nullptr || *s == '\0') s = CVAT_DEFAULT_SOCKET;
        size_t n = strlen(s);
        if (n >= sizeof socket) return false;
        memcpy(socket, s, n + 1);
        const char* slash = strrchr(socket, '/');
        size_t dir = slash == nullptr ? 0 : static_cast<size_t>(slash - socket) + 1;
        size_t name = strlen(mc::kFileName);
        if (dir + name >= sizeof cache) return false;
        memcpy(cache, socket, dir);
        memcpy(cache + dir, mc::kFileName, name + 1);
        return true;
    }
};

// ---- the cache file ----------------------------------------------------------------------

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

struct Enumeration {
    bool active;
    uint64_t generation;
    uint32_t cursor;
};

// Everything below is guarded by g_lock and constant-initialised (no constructor runs).
struct Cache {
    const uint8_t* base;
    size_t size;
    mc::Reader reader;
    char path[PATH_MAX];
    Enumeration pwent, grent;
} g_cache;

class Locked {
public:
    Locked() { pthread_mutex_lock(&g_lock); }
    ~Locked() { pthread_mutex_unlock(&g_lock); }
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;
};

void unmap_locked() {
    if (g_cache.base != nullptr) munmap(const_cast<uint8_t*>(g_cache.base), g_cache.size);
    g_cache.base = nullptr;
    g_cache.size = 0;
    g_cache.reader = mc::Reader{};
    g_cache.path[0] = '\0';
}

// The mapped file at `path`, mapped now if it is not, is another path, or was superseded
// (one atomic load on the warm path, no syscall). nullptr: no usable file, ask the daemon.
const mc::Reader* mapped_locked(const char* path) {
    if (g_cache.base != nullptr) {
        if (strcmp(g_cache.path, path) == 0 && !g_cache.reader.superseded()) return &g_cache.reader;
        unmap_locked();
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return nullptr;
    struct stat st;
    // Only a file the daemon's user wrote where no one else can (peer_trust.hpp).
    bool usable = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                  st.st_size >= static_cast<off_t>(mc::kHeaderSize) &&
                  st.st_size <= static_cast<off_t>(mc::kMaxFileSize) && cvat::trust::owner_trusted(st.st_uid, path, false);
    void* p = usable ? mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    if (p == MAP_FAILED) return nullptr;
    g_cache.base = static_cast<const uint8_t*>(p);
    g_cache.size = static_cast<size_t>(st.st_size);
    if (!g_cache.reader.attach(g_cache.base, g_cache.size)) {
        unmap_locked();
        return nullptr;
    }
    memcpy(g_cache.path, path, strlen(path) + 1);  // Paths::cache fits PATH_MAX
    return &g_cache.reader;
}

int64_t now_s() { return static_cast<int64_t>(time(nullptr)); }

// A fork while another thread holds g_lock would leave the child's copy locked forever.
void before_fork() { pthread_mutex_lock(&g_lock); }
void after_fork_parent() { pthread_mutex_unlock(&g_lock); }
void after_fork_child() { pthread_mutex_init(&g_lock, nullptr); }
__attribute__((constructor)) void register_fork_handlers() {
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

// ---- the daemon --------------------------------------------------------------------------

int64_t monotonic_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Waits for `events` on fd until the deadline.
bool wait_for(int fd, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - monotonic_ms();
        if (left <= 0) return false;
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, static_cast<int>(left));
        if (r > 0) return true;
        if (r == 0 || errno != EINTR) return false;
    }
}

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

private:
    int fd_;
};

Outcome connect_to(int fd, const char* path, int64_t deadline) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path) + 1);  // Paths::socket fits sun_path
    for (;;) {
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return success();
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {  // the listen backlog is full: try again shortly
            if (monotonic_ms() >= deadline) return unavailable(ETIMEDOUT);
            poll(nullptr, 0, 5);
            continue;
        }
        if (errno != EINPROGRESS) return unavailable(errno);  // ENOENT, ECONNREFUSED: daemon down
        if (!wait_for(fd, POLLOUT, deadline)) return unavailable(ETIMEDOUT);
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return unavailable(errno);
        return err == 0 ? success() : unavailable(err);
    }
}

Outcome send_all(int fd, const uint8_t* p, size_t n, int64_t deadline) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= static_cast<size_t>(w);
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            if (!wait_for(fd, POLLOUT, deadline)) return unavailable(ETIMEDOUT);
        } else {
            return unavailable(w < 0 ? errno : EIO);
        }
    }
    return success();
}

Outcome recv_all(int fd, uint8_t* p, size_t n, int64_t deadline) {
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= static_cast<size_t>(r);
        } else if (r == 0) {
            return unavailable(ECONNRESET);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            if (!wait_for(fd, POLLIN, deadline)) return unavailable(ETIMEDOUT);
        } else {
            return unavailable(errno);
        }
    }
    return success();
}

// A reply body on the heap (bounded by kMaxFrame), and a reader positioned after its status.
struct Reply {
    uint8_t* body = nullptr;
    wire::In in{nullptr, 0};
    Reply() = default;
    Reply(const Reply&) = delete;
    Reply& operator=(const Reply&) = delete;
    ~Reply() { free(body); }
};

// A request frame: the header and at most one string or one u32.
struct Request {
    uint8_t bytes[proto::kHeaderSize + 4 + 4 + mc::kMaxName];
    size_t size;
    Request(MsgType type, const char* name, size_t len, uint32_t id) {
        wire::Out out(bytes, sizeof bytes);
        out.u32(0);
        out.u16(proto::kVersion);
        out.u16(static_cast<uint16_t>(type));
        if (name != nullptr)
            out.str(name, len);
        else
            out.u32(id);
        out.patch_u32(0, static_cast<uint32_t>(out.size() - proto::kHeaderSize));
        size = out.ok() ? out.size() : 0;
    }
};

// This thread's connection to the daemon, kept for its next request (pam_cvat does the same,
// common/transport.hpp): `ls -l` over a directory of CVAT users' files, or a web server asking
// for the groups of one user after another, pays one connect, not one per lookup. The record
// (kept_fds::Record: used again only by the process and effective ids that connected, for the
// same socket, while fstat shows the same socket; every thread's closed in a forked child)
// lives in thread-specific data (no TLS, no constructor): freed, and the descriptor closed,
// when the thread exits.
pthread_key_t g_kept_key;
bool g_kept_ok = false;
pthread_once_t g_kept_once = PTHREAD_ONCE_INIT;

void free_kept(void* p) {
    auto* k = static_cast<kept_fds::Record*>(p);
    k->drop();
    k->~Record();
    free(k);
}
void make_kept_key() { g_kept_ok = pthread_key_create(&g_kept_key, free_kept) == 0; }

// This thread's record, made on first use; nullptr if that fails (then nothing is kept).
kept_fds::Record* kept() {
    pthread_once(&g_kept_once, make_kept_key);
    if (!g_kept_ok) return nullptr;
    auto* k = static_cast<kept_fds::Record*>(pthread_getspecific(g_kept_key));
    if (k != nullptr) return k;
    void* mem = malloc(sizeof(kept_fds::Record));
    if (mem == nullptr) return nullptr;
    k = new (mem) kept_fds::Record();
    if (pthread_setspecific(g_kept_key, k) != 0) {
        free(k);
        return nullptr;
    }
    return k;
}

// The kept descriptor if it may serve a request to `path` now (it is then no longer kept), or -1.
int take_kept(const char* path) {
    kept_fds::Record* k = kept();
    return k == nullptr ? -1 : k->take(path, strlen(path));
}

// Keeps fd (connected by this process as pid/euid/egid, to `path`) for the thread's next
// request; closes it if that cannot be.
void keep(int fd, const char* path, pid_t pid, uid_t euid, gid_t egid) {
    kept_fds::Record* k = kept();
    if (k == nullptr || !k->keep(fd, path, strlen(path), pid, euid, egid)) close(fd);
}

// Send the request, read one frame of type `want` into `reply`, map its status. `whole`: a
// whole frame was read (the connection may serve another request).
Outcome exchange(int fd, const Request& req, MsgType want, Reply& reply, int64_t deadline, bool& whole) {
    whole = false;
    Outcome o = send_all(fd, req.bytes, req.size, deadline);
    uint8_t header[proto::kHeaderSize];
    if (o.status == NSS_STATUS_SUCCESS) o = recv_all(fd, header, sizeof header, deadline);
    if (o.status != NSS_STATUS_SUCCESS) return o;
    wire::In h(header, sizeof header);
    uint32_t len = h.u32();
    if (len < 5 || len > proto::kMaxFrame) return unavailable(EPROTO);  // version, type, status
    free(reply.body);
    reply.body = static_cast<uint8_t*>(malloc(len));
    if (reply.body == nullptr) return {NSS_STATUS_TRYAGAIN, ENOMEM};
    o = recv_all(fd, reply.body, len, deadline);
    if (o.status != NSS_STATUS_SUCCESS) return o;
    reply.in = wire::In(reply.body, len);
    if (reply.in.u16() != proto::kVersion || reply.in.u16() != static_cast<uint16_t>(want))
        return unavailable(EPROTO);
    whole = true;
    switch (static_cast<Status>(reply.in.u8())) {
        case Status::ok: return success();
        case Status::not_found:
        case Status::user_unknown: return not_found();
        case Status::unavailable: return unavailable(EAGAIN);
        case Status::not_supported: return unavailable(ENOENT);
        default: return unavailable(EIO);
    }
}

// One round trip on the thread's kept connection, or a new one: send, read one frame of type
// `want`, map its status. A kept connection the daemon has closed meanwhile (idle past
// helper.client_timeout, or at its connection cap) gets the request once more on a new one.
Outcome ask(const char* socket_path, const Request& req, MsgType want, Reply& reply) {
    if (req.size == 0) return not_found();
    int64_t deadline = monotonic_ms() + kTimeoutMs;
    const pid_t pid = getpid();
    const uid_t euid = geteuid();
    const gid_t egid = getegid();
    int reused = take_kept(socket_path);
    Outcome o = success();
    bool whole = false;
    for (int attempt = 0; attempt < 2; ++attempt) {
        Fd fd(attempt == 0 && reused >= 0 ? reused : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (fd.get() < 0) return unavailable(errno);
        const bool was_kept = attempt == 0 && reused >= 0;
        if (!was_kept) {
            o = connect_to(fd.get(), socket_path, deadline);
            if (o.status != NSS_STATUS_SUCCESS) return o;
            // Only the daemon is asked (peer_trust.hpp).
            uid_t peer = 0;
            if (!cvat::trust::peer_uid(fd.get(), peer) || !cvat::trust::owner_trusted(peer, socket_path))
                return unavailable(EPERM);
        }
        o = exchange(fd.get(), req, want, reply, deadline, whole);
        if (whole) {
            keep(fd.release(), socket_path, pid, euid, egid);
            return o;
        }
        if (!(was_kept && (o.err == ECONNRESET || o.err == EPIPE))) return o;
    }
    return o;
}

Outcome passwd_from_daemon(const Paths& paths, const Request& req, passwd* pw, char* buf, size_t buflen) {
    Reply reply;
    Outcome o = ask(paths.socket, req, MsgType::passwd_reply, reply);
    if (o.status != NSS_STATUS_SUCCESS) return o;
    return passwd_from_reply(reply.in, pw, buf, buflen);
}

Outcome group_from_daemon(const Paths& paths, const Request& req, group* gr, char* buf, size_t buflen) {
    Reply reply;
    Outcome o = ask(paths.socket, req, MsgType::group_reply, reply);
    if (o.status != NSS_STATUS_SUCCESS) return o;
    return group_from_reply(reply.in, gr, buf, buflen);
}

// ---- lookups -----------------------------------------------------------------------------

// The checks every lookup starts with; NSS_STATUS_SUCCESS means go on.
Outcome prologue(Paths& paths) {
    if (disabled()) return unavailable(ENOENT);
    if (!paths.init()) return unavailable(ENAMETOOLONG);
    return success();
}

Outcome getpwnam(const char* name, passwd* pw, char* buf, size_t buflen) {
    Paths paths;
    if (Outcome o = prologue(paths); o.status != NSS_STATUS_SUCCESS) return o;
    size_t len = 0;
    if (!valid_name(name, len)) return not_found();
    {
        Locked lock;
        mc::PasswdRecord rec;
        if (const mc::Reader* r = mapped_locked(paths.cache); r && r->passwd_by_name(name, len, now_s(), rec))
            return fill_passwd(fields_of(rec), pw, buf, buflen);
    }
    return passwd_from_daemon(paths, Request(MsgType::passwd_by_name, name, len, 0), pw, buf, buflen);
}

Outcome getpwuid(uid_t uid, passwd* pw, char* buf, size_t buflen) {
    Paths paths;
    if (Outcome o = prologue(paths); o.status != NSS_STATUS_SUCCESS) return o;
    {
        Locked lock;
        mc::PasswdRecord rec;
        if (const mc::Reader* r = mapped_locked(paths.cache); r && r->passwd_by_uid(uid, now_s(), rec))
            return fill_passwd(fields_of(rec), pw, buf, buflen);
    }
    return passwd_from_daemon(paths, Request(MsgType::passwd_by_uid, nullptr, 0, uid), pw, buf, buflen);
}

Outcome getgrnam(const char* name, group* gr, char* buf, size_t buflen) {
    Paths paths;
    if (Outcome o = prologue(paths); o.status != NSS_STATUS_SUCCESS) return o;
    size_t len = 0;
    if (!valid_name(name, len)) return not_found();
    {
        Locked lock;
        mc::GroupRecord rec;
        if (const mc::Reader* r = mapped_locked(paths.cache); r && r->group_by_name(name, len, now_s(), rec)) {
            if (Outcome o = fill_group({rec.name, rec.name_len}, rec.gid, rec, gr, buf, buflen); !is_bad_record(o))
                return o;
        }
    }
    return group_from_daemon(paths, Request(MsgType::group_by_name, name, len, 0), gr, buf, buflen);
}

Outcome getgrgid(gid_t gid, group* gr, char* buf, size_t buflen) {
    Paths paths;
    if (Outcome o = prologue(paths); o.status != NSS_STATUS_SUCCESS) return o;
    {
        Locked lock;
        mc::GroupRecord rec;
        if (const mc::Reader* r = mapped_locked(paths.cache); r && r->group_by_gid(gid, now_s(), rec)) {
            if (Outcome o = fill_group({rec.name, rec.name_len}, rec.gid, rec, gr, buf, buflen); !is_bad_record(o))
                return o;
        }
    }
    return group_from_daemon(paths, Request(MsgType::group_by_gid, nullptr, 0, gid), gr, buf, buflen);
}

Outcome initgroups(const char* user, gid_t primary, long* start, long* size, gid_t** groups, long limit) {
    Paths paths;
    if (Outcome o = prologue(paths); o.status != NSS_STATUS_SUCCESS) return o;
    size_t len = 0;
    if (!valid_name(user, len)) return not_found();
    {
        Locked lock;
        mc::PasswdRecord rec;
        if (const mc::Reader* r = mapped_locked(paths.cache); r && r->passwd_by_name(user, len, now_s(), rec)) {
            Added a = Added::yes;
            for (uint32_t i = 0; i < rec.ngroups && a == Added::yes; ++i)
                a = add_gid(rec.gid_at(i), primary, start, size, groups, limit);
            return added(a);
        }
    }
    Reply reply;
    Outcome o = ask(paths.socket, Request(MsgType::init_groups, user, len, 0), MsgType::groups_reply, reply);
    if (o.status != NSS_STATUS_SUCCESS) return o;
    return groups_from_reply(reply.in, primary, start, size, groups, limit);
}

// Enumeration lists the mapped file's records, and only when its enumerate flag is set. A
// file replaced mid-way ends the listing (the cursor means nothing in the new file).
void setent(Enumeration Cache::*which) {
    Paths paths;
    Locked lock;
    g_cache.*which = Enumeration{};
    if (disabled() || !paths.init()) return;
    if (const mc::Reader* r = mapped_locked(paths.cache); r && r->enumerable())
        g_cache.*which = Enumeration{true, r->generation(), 0};
}

void endent(Enumeration Cache::*which) {
    Locked lock;
    g_cache.*which = Enumeration{};
}

// The reader at the enumeration's generation, or nullptr (and the enumeration ends).
const mc::Reader* enumerating_locked(Enumeration& e) {
    Paths paths;
    const mc::Reader* r = nullptr;
    if (e.active && !disabled() && paths.init()) r = mapped_locked(paths.cache);
    if (r == nullptr || r->generation() != e.generation) {
        e = Enumeration{};
        return nullptr;
    }
    return r;
}

Outcome getpwent(passwd* pw, char* buf, size_t buflen) {
    Locked lock;
    Enumeration& e = g_cache.pwent;
    const mc::Reader* r = enumerating_locked(e);
    mc::PasswdRecord rec;
    uint32_t cursor = e.cursor;
    if (r == nullptr || !r->next_passwd(cursor, now_s(), rec)) {
        e = Enumeration{};
        return not_found();
    }
    Outcome o = fill_passwd(fields_of(rec), pw, buf, buflen);
    e.cursor = o.status == NSS_STATUS_SUCCESS ? r->advance(cursor) : cursor;  // ERANGE: same one again
    return o;
}

Outcome getgrent(group* gr, char* buf, size_t buflen) {
    Locked lock;
    Enumeration& e = g_cache.grent;
    const mc::Reader* r = enumerating_locked(e);
    mc::GroupRecord rec;
    for (uint32_t cursor = e.cursor;; cursor = r->advance(cursor)) {
        if (r == nullptr || !r->next_group(cursor, now_s(), rec)) {
            e = Enumeration{};
            return not_found();
        }
        Outcome o = fill_group({rec.name, rec.name_len}, rec.gid, rec, gr, buf, buflen);
        if (is_bad_record(o)) continue;
        e.cursor = o.status == NSS_STATUS_SUCCESS ? r->advance(cursor) : cursor;  // ERANGE: same one again
        return o;
    }
}

}  // namespace
}  // namespace cvat::nss

// ---- entry points (glibc's NSS module interface) -----------------------------------------

namespace nss = cvat::nss;
#define CVAT_NSS_EXPORT extern "C" __attribute__((visibility("default")))

CVAT_NSS_EXPORT nss_status _nss_cvat_getpwnam_r(const char* name, passwd* pw, char* buf, size_t buflen,
                                                int* errnop) noexcept {
    int saved = errno;
    return nss::finish(nss::getpwnam(name, pw, buf, buflen), saved, errnop);
}

CVAT_NSS_EXPORT nss_status _nss_cvat_getpwuid_r(uid_t uid, passwd* pw, char* buf, size_t buflen,
                                                int* errnop) noexcept {
    int saved = errno;
    return nss::finish(nss::getpwuid(uid, pw, buf, buflen), saved, errnop);
}

CVAT_NSS_EXPORT nss_status _nss_cvat_getgrnam_r(const char* name, group* gr, char* buf, size_t buflen,
                                                int* errnop) noexcept {
    int saved = errno;
    return nss::finish(nss::getgrnam(name, gr, buf, buflen), saved, errnop);
}

CVAT_NSS_EXPORT nss_status _nss_cvat_getgrgid_r(gid_t gid, group* gr, char* buf, size_t buflen,
                                                int* errnop) noexcept {
    int saved = errno;
    return nss::finish(nss::getgrgid(gid, gr, buf, buflen), saved, errnop);
}

CVAT_NSS_EXPORT nss_status _nss_cvat_initgroups_dyn(const char* user, gid_t group, long* start, long* size,
                                                    gid_t** groups, long limit, int* errnop) noexcept {
    int saved = errno;
    return nss::finish(nss::initgroups(user, group, start, size, groups, limit), saved, errnop);
}

CVAT_NSS_EXPORT nss_status _nss_cvat_setpwent(int /*stayopen*/) noexcept {
    int saved = errno;
    nss::setent(&nss::Cache::pwent);
    errno = saved;
    return NSS_STATUS_SUCCESS;
}

CVAT_NSS_EXPORT nss_status _nss_cvat_getpwent_r(passwd* pw, char* buf, size_t buflen, int* errnop) noexcept {
    int saved = errno;
    return nss::finish(nss::getpwent(pw, buf, buflen), saved, errnop);
}

CVAT_NSS_EXPORT nss_status _nss_cvat_endpwent() noexcept {
    nss::endent(&nss::Cache::pwent);
    return NSS_STATUS_SUCCESS;
}

CVAT_NSS_EXPORT nss_status _nss_cvat_setgrent(int /*stayopen*/) noexcept {
    int saved = errno;
    nss::setent(&nss::Cache::grent);
    errno = saved;
    return NSS_STATUS_SUCCESS;
}

CVAT_NSS_EXPORT nss_status _nss_cvat_getgrent_r(group* gr, char* buf, size_t buflen, int* errnop) noexcept {
    int saved = errno;
    return nss::finish(nss::getgrent(gr, buf, buflen), saved, errnop);
}

CVAT_NSS_EXPORT nss_status _nss_cvat_endgrent() noexcept {
    nss::endent(&nss::Cache::grent);
    return NSS_STATUS_SUCCESS;
}
