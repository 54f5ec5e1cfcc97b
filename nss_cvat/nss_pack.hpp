// SPDX-License-Identifier: LGPL-2.1-or-later
//
// nss_cvat's packer, apart so that the fuzz targets (tests/fuzz/) reach it: reading a daemon
// reply (after its status byte) and packing a passwd or group entry into the caller's buffer.
// Internal to the module: everything is in an unnamed namespace (functions inline, so an
// includer may use some), each includer gets its own copy and libnss_cvat.so.2 exports nothing
// more (its version script is unchanged). libc only, like the module.
#pragma once

#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "nss_mc.hpp"
#include "protocol.hpp"  // only its enums and caps
#include "wire.hpp"

namespace cvat::nss {
namespace {

namespace mc = cvat::nss_mc;

// ---- results -----------------------------------------------------------------------------

struct Outcome {
    nss_status status;
    int err;  // for *errnop when status is TRYAGAIN or UNAVAIL
};
inline constexpr Outcome success() { return {NSS_STATUS_SUCCESS, 0}; }
inline constexpr Outcome not_found() { return {NSS_STATUS_NOTFOUND, ENOENT}; }
inline constexpr Outcome unavailable(int err) { return {NSS_STATUS_UNAVAIL, err}; }
inline constexpr Outcome too_small() { return {NSS_STATUS_TRYAGAIN, ERANGE}; }
// A cache file record that does not hold what its counts say: never given to the caller; the
// lookup asks the daemon instead (as for a record Reader's checks refuse), enumeration skips it.
inline constexpr Outcome bad_record() { return {NSS_STATUS_NOTFOUND, EBADMSG}; }
inline constexpr bool is_bad_record(const Outcome& o) { return o.status == NSS_STATUS_NOTFOUND && o.err == EBADMSG; }

// ---- the caller's buffer -----------------------------------------------------------------

class Buffer {
public:
    Buffer(char* p, size_t n) : p_(p), left_(p == nullptr ? 0 : n) {}
    // A NUL-terminated copy of s[0..len), or nullptr when it does not fit.
    char* str(const char* s, size_t len) {
        if (len >= left_) return nullptr;
        char* d = p_;
        memcpy(d, s, len);
        d[len] = '\0';
        p_ += len + 1;
        left_ -= len + 1;
        return d;
    }
    // A copy of s[0..len) as it is (no NUL added), or nullptr when it does not fit.
    char* bytes(const char* s, size_t len) {
        if (len > left_) return nullptr;
        char* d = p_;
        memcpy(d, s, len);
        p_ += len;
        left_ -= len;
        return d;
    }
    // An aligned array of n pointers, or nullptr.
    char** pointers(size_t n) {
        size_t pad = (alignof(char*) - reinterpret_cast<uintptr_t>(p_) % alignof(char*)) % alignof(char*);
        if (pad > left_ || (left_ - pad) / sizeof(char*) < n) return nullptr;
        auto** out = reinterpret_cast<char**>(p_ + pad);
        p_ += pad + n * sizeof(char*);
        left_ -= pad + n * sizeof(char*);
        return out;
    }

private:
    char* p_;
    size_t left_;
};

// The password field of every entry, as SSSD's default pwfield: "*", no password here and
// none in shadow. "x" would send pam_unix's account check to a shadow entry that does not
// exist, and it refuses the user ("User account has expired"; Linux-PAM passverify.c,
// is_pwd_shadowed).
constexpr const char kNoPassword[] = "*";

struct Text {
    const char* p;
    size_t len;
};

struct PasswdFields {
    Text name, gecos, dir, shell;
    uint32_t uid, gid;
};

inline PasswdFields fields_of(const mc::PasswdRecord& r) {
    return {{r.name, r.name_len}, {r.gecos, r.gecos_len}, {r.dir, r.dir_len}, {r.shell, r.shell_len}, r.uid, r.gid};
}

// Copies f into buf and, only when all of it fits, fills *pw.
inline Outcome fill_passwd(const PasswdFields& f, passwd* pw, char* buf, size_t buflen) {
    Buffer b(buf, buflen);
    char* name = b.str(f.name.p, f.name.len);
    char* passwd = b.str(kNoPassword, sizeof kNoPassword - 1);
    char* gecos = b.str(f.gecos.p, f.gecos.len);
    char* dir = b.str(f.dir.p, f.dir.len);
    char* shell = b.str(f.shell.p, f.shell.len);
    if (!name || !passwd || !gecos || !dir || !shell) return too_small();
    pw->pw_name = name;
    pw->pw_passwd = passwd;
    pw->pw_uid = f.uid;
    pw->pw_gid = f.gid;
    pw->pw_gecos = gecos;
    pw->pw_dir = dir;
    pw->pw_shell = shell;
    return success();
}

// Group members from the wire (len-prefixed); those of the cache file: fill_group() below.
class WireMembers {
public:
    WireMembers(wire::In in, uint32_t n) : in_(in), n_(n) {}
    uint32_t count() const { return n_; }
    Text next() {
        Text t{"", 0};
        (void)in_.str(t.p, t.len, proto::kMaxName);  // checked once before filling
        return t;
    }

private:
    wire::In in_;
    uint32_t n_;
};

template <typename Members>
inline Outcome fill_group(Text name, uint32_t gid, Members members, group* gr, char* buf, size_t buflen) {
    Buffer b(buf, buflen);
    char** mem = b.pointers(size_t{members.count()} + 1);
    char* gname = b.str(name.p, name.len);
    char* passwd = b.str(kNoPassword, sizeof kNoPassword - 1);
    if (!mem || !gname || !passwd) return too_small();
    for (uint32_t i = 0; i < members.count(); ++i) {
        Text m = members.next();
        if (!(mem[i] = b.str(m.p, m.len))) return too_small();
    }
    mem[members.count()] = nullptr;
    gr->gr_name = gname;
    gr->gr_passwd = passwd;
    gr->gr_gid = gid;
    gr->gr_mem = mem;
    return success();
}

// A group from the cache file: its member area (NUL-terminated names back to back, the last
// byte a NUL, as Reader::group_at() checked) is copied whole, and the member pointers are set
// from the NULs found eight bytes at a time: a role group of thousands of members in
// microseconds. An area that does not hold exactly nmembers names is a bad_record().
inline Outcome fill_group(Text name, uint32_t gid, const mc::GroupRecord& rec, group* gr, char* buf, size_t buflen) {
    Buffer b(buf, buflen);
    const uint32_t n = rec.nmembers;
    char** mem = b.pointers(size_t{n} + 1);
    char* gname = b.str(name.p, name.len);
    char* passwd = b.str(kNoPassword, sizeof kNoPassword - 1);
    char* area = rec.members_len == 0 ? nullptr : b.bytes(rec.members, rec.members_len);
    if (!mem || !gname || !passwd || (!area && rec.members_len != 0)) {
        // A record to ignore must not send the caller round doubling its buffer first.
        uint32_t nuls = 0;
        const char* end = rec.members + rec.members_len;
        for (const char* p = rec.members; p < end; ++p, ++nuls) {
            p = static_cast<const char*>(memchr(p, 0, static_cast<size_t>(end - p)));
            if (p == nullptr) break;
        }
        return nuls == n ? too_small() : bad_record();
    }
    uint32_t k = 0, nuls = 0;
    if (n > 0) mem[k++] = area;
    // Each NUL but the last ends one member and starts the next.
    auto found = [&](uint32_t pos) {
        ++nuls;
        if (pos + 1 < rec.members_len && k < n) mem[k++] = area + pos + 1;
    };
    uint32_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; rec.members_len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, area + i, 8);
        for (uint64_t z = mc::zero_bytes(w); z != 0; z &= z - 1)
            found(i + static_cast<uint32_t>(__builtin_ctzll(z)) / 8);
    }
#endif
    for (; i < rec.members_len; ++i)
        if (area[i] == '\0') found(i);
    if (nuls != n || k != n) return bad_record();
    mem[n] = nullptr;
    gr->gr_name = gname;
    gr->gr_passwd = passwd;
    gr->gr_gid = gid;
    gr->gr_mem = mem;
    return success();
}

// Adds one gid to initgroups_dyn's array the way glibc's own modules do: the primary group
// and duplicates are skipped, the array doubles up to `limit` (<= 0: no limit).
enum class Added { yes, full, no_memory };
inline Added add_gid(gid_t g, gid_t primary, long* start, long* size, gid_t** groups, long limit) {
    if (g == primary) return Added::yes;
    for (long i = 0; i < *start; ++i)
        if ((*groups)[i] == g) return Added::yes;
    if (*start >= *size) {
        if (limit > 0 && *size >= limit) return Added::full;
        long grown = *size > 0 ? *size * 2 : 16;
        if (limit > 0 && grown > limit) grown = limit;
        auto* p = static_cast<gid_t*>(realloc(*groups, static_cast<size_t>(grown) * sizeof(gid_t)));
        if (p == nullptr) return Added::no_memory;
        *groups = p;
        *size = grown;
    }
    (*groups)[(*start)++] = g;
    return Added::yes;
}

// ---- daemon replies ----------------------------------------------------------------------
// Each reads the body of a reply after its status byte; any malformed field is EPROTO and
// leaves the out-parameters alone.

inline Outcome passwd_from_reply(wire::In& in, passwd* pw, char* buf, size_t buflen) {
    PasswdFields f{};
    in.str(f.name.p, f.name.len, proto::kMaxName);
    f.uid = in.u32();
    f.gid = in.u32();
    in.str(f.gecos.p, f.gecos.len, proto::kMaxShort);
    in.str(f.dir.p, f.dir.len, proto::kMaxShort);
    in.str(f.shell.p, f.shell.len, proto::kMaxShort);
    if (!in.done() || f.name.len == 0) return unavailable(EPROTO);
    return fill_passwd(f, pw, buf, buflen);
}

inline Outcome group_from_reply(wire::In& in, group* gr, char* buf, size_t buflen) {
    Text name{"", 0};
    in.str(name.p, name.len, proto::kMaxName);
    uint32_t gid = in.u32();
    uint32_t count = in.u32();
    if (!in.ok() || count > proto::kMaxMembers || name.len == 0) return unavailable(EPROTO);
    WireMembers members(in, count);
    for (uint32_t i = 0; i < count; ++i) {  // check the whole list before copying any of it
        Text m{"", 0};
        in.str(m.p, m.len, proto::kMaxName);
    }
    if (!in.done()) return unavailable(EPROTO);
    return fill_group(name, gid, members, gr, buf, buflen);
}

inline Outcome added(Added a) {
    return a == Added::no_memory ? Outcome{NSS_STATUS_TRYAGAIN, ENOMEM} : success();
}

inline Outcome groups_from_reply(wire::In& in, gid_t primary, long* start, long* size, gid_t** groups, long limit) {
    uint32_t count = in.u32();
    if (!in.ok() || count > proto::kMaxGroups || in.remaining() != size_t{count} * 4) return unavailable(EPROTO);
    Added a = Added::yes;
    for (uint32_t i = 0; i < count && a == Added::yes; ++i) a = add_gid(in.u32(), primary, start, size, groups, limit);
    return added(a);
}

}  // namespace
}  // namespace cvat::nss
