// SPDX-License-Identifier: LGPL-2.1-or-later
//
// nss.mc: the memory-mapped cache file that cvat-authd publishes next to its socket
// (<directory of the socket>/nss.mc, mode 0644, no secrets) and nss_cvat maps for warm lookups
// without a socket round trip (SSSD's nss_mc idea, done simply). This header is the whole
// format: the writer (helper/nss_mc_writer.cpp) and the reader below share it.
//
// PUBLICATION
//   A file is immutable once published, except for two words (`superseded`, and `groups_stale`
//   below). The writer builds a complete new file in a temp file in the same directory, fsyncs
//   it, rename()s it over nss.mc, and then stores superseded = 1 into the OLD file (opened
//   before the rename) with pwrite. A reader therefore never sees a torn record; it notices a
//   replacement by loading the superseded word from its MAP_SHARED mapping (which sees the
//   pwrite), with no syscall on the warm path, and then maps nss.mc afresh. Withdrawing the cache unlinks nss.mc and
//   marks it superseded the same way. A writer that dies between rename and pwrite leaves old
//   readers on an unreachable file; the per-record `expires` bounds how long that can matter.
//
// LAYOUT (all integers in host byte order: the file never leaves the host; `magic` read in
//   the wrong order does not match, so a foreign file is refused)
//   header (kHeaderSize = 128 bytes)
//     0  magic:u32 = kMagic         4  version:u16 = kFormatVersion   6  header_size:u16 = 128
//     8  flags:u32 (kFlagEnumerate)  12 superseded:u32 (0 live, 1 replaced or withdrawn)
//     16 generation:u64 (grows by one per publication)   24 created:i64 (unix seconds)
//     32 file_size:u64 (must equal the mapped size)
//     40 passwd_by_name  48 passwd_by_uid  56 group_by_name  64 group_by_gid:
//        each a table {offset:u32 buckets:u32}: `buckets` u32 record offsets (0 = empty)
//     72 records_offset:u32  76 records_size:u32  80 passwd_count:u32  84 group_count:u32
//     88 groups_stale:u32 (0; 1 once a user joined a group after the file was written: the
//        group records' member lists may lack that user, so group lookups by name or gid
//        ask the daemon, while passwd records and each user's own gids stay valid; written
//        once, in place, by the writer, like `superseded`)
//     92..127 zero
//   records, 8-byte aligned, one after another in [records_offset, records_offset+records_size):
//     0 kind:u32 (1 passwd, 2 group)  4 size:u32 (whole record, a multiple of 8)
//     8 next_name:u32  12 next_id:u32   the next record in the same bucket, 0 = end; always a
//                                       smaller offset than this record's, so chains end
//     16 expires:i64 (unix seconds; a record with expires < now is a miss)
//   passwd (kind 1), from 24: uid:u32 gid:u32 name_len:u32 gecos_len:u32 dir_len:u32
//     shell_len:u32 ngroups:u32 gids:u32[ngroups] then name gecos dir shell, each followed
//     by one NUL and holding none. gids are the supplementary groups (initgroups).
//   group (kind 2), from 24: gid:u32 name_len:u32 nmembers:u32 members_len:u32 then name NUL,
//     then nmembers member names, each followed by one NUL (members_len bytes in all).
//   Bucket of a name: fnv1a64(name bytes) % buckets; of a uid/gid: fnv1a64(its 4 bytes,
//   little-endian) % buckets. A name appears once; a repeated uid/gid is only in the chain
//   of its first record.
//
// A reader checks every offset, length and count against the file before it reads: a corrupt
// or truncated file yields misses, never a crash. One count is left to the reader of the member
// area: Reader::group_at checks its bounds and final NUL, and whoever walks the names checks that
// it holds nmembers of them (nss_cvat's fill_group(), in the pass that finds them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace cvat::nss_mc {

inline constexpr std::uint32_t kMagic = 0x434d5643;      // "CVMC" in little-endian bytes
inline constexpr std::uint16_t kFormatVersion = 1;
inline constexpr std::size_t kHeaderSize = 128;
inline constexpr std::uint32_t kFlagEnumerate = 1u << 0;  // getpwent/getgrent may list records
inline constexpr std::size_t kMaxFileSize = 256u << 20;   // writer refuses, reader refuses to map
inline constexpr std::size_t kMaxName = 255;              // longest user/group name stored
inline constexpr const char* kFileName = "nss.mc";

// Header field offsets.
inline constexpr std::size_t kOffMagic = 0, kOffVersion = 4, kOffHeaderSize = 6, kOffFlags = 8,
                             kOffSuperseded = 12, kOffGeneration = 16, kOffCreated = 24,
                             kOffFileSize = 32, kOffPwName = 40, kOffPwUid = 48, kOffGrName = 56,
                             kOffGrGid = 64, kOffRecords = 72, kOffRecordsSize = 76,
                             kOffPasswdCount = 80, kOffGroupCount = 84, kOffGroupsStale = 88;
// Record field offsets.
inline constexpr std::uint32_t kKindPasswd = 1, kKindGroup = 2;
inline constexpr std::size_t kRecKind = 0, kRecSize = 4, kRecNextName = 8, kRecNextId = 12,
                             kRecExpires = 16, kRecBody = 24;
inline constexpr std::size_t kPwFixed = kRecBody + 7 * 4;  // through ngroups
inline constexpr std::size_t kGrFixed = kRecBody + 4 * 4;  // through members_len

inline constexpr std::uint64_t fnv1a64(const void* data, std::size_t len) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < len; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
inline std::uint64_t hash_id(std::uint32_t id) noexcept {
    const unsigned char b[4] = {static_cast<unsigned char>(id), static_cast<unsigned char>(id >> 8),
                                static_cast<unsigned char>(id >> 16),
                                static_cast<unsigned char>(id >> 24)};
    return fnv1a64(b, 4);
}

template <typename T>
inline T load(const std::uint8_t* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <typename T>
inline void store(std::uint8_t* p, T v) noexcept {
    std::memcpy(p, &v, sizeof v);
}

// The high bit of each zero byte of w and no other bit (exact, unlike (w - 0x01..) & ~w & 0x80..,
// which also flags a 0x01 byte above a zero one).
inline constexpr std::uint64_t zero_bytes(std::uint64_t w) noexcept {
    constexpr std::uint64_t k7f = 0x7f7f7f7f7f7f7f7full;
    return ~(((w & k7f) + k7f) | w | k7f);
}

// A passwd record as found in the file: pointers into the mapping, each string NUL-terminated.
struct PasswdRecord {
    const char* name;
    const char* gecos;
    const char* dir;
    const char* shell;
    std::uint32_t name_len, gecos_len, dir_len, shell_len;
    std::uint32_t uid, gid;
    std::int64_t expires;
    const std::uint8_t* gids;  // ngroups u32 values, unaligned: read with gid_at()
    std::uint32_t ngroups;
    std::uint32_t gid_at(std::uint32_t i) const noexcept { return load<std::uint32_t>(gids + 4 * i); }
};
struct GroupRecord {
    const char* name;
    std::uint32_t name_len;
    std::uint32_t gid;
    std::int64_t expires;
    const char* members;  // nmembers NUL-terminated names, back to back (a count to check: group_at)
    std::uint32_t nmembers, members_len;
};

// Read-only view of one mapped file. Constant-initialised (no constructor runs), so nss_cvat
// can hold one in a global without C++ runtime support.
class Reader {
public:
    // Checks the header and tables against `size`; false: not a file to use.
    bool attach(const std::uint8_t* base, std::size_t size) noexcept {
        base_ = nullptr;
        if (base == nullptr || size < kHeaderSize || size > kMaxFileSize) return false;
        if (load<std::uint32_t>(base + kOffMagic) != kMagic ||
            load<std::uint16_t>(base + kOffVersion) != kFormatVersion ||
            load<std::uint16_t>(base + kOffHeaderSize) != kHeaderSize ||
            load<std::uint64_t>(base + kOffFileSize) != size)
            return false;
        std::uint64_t rec = load<std::uint32_t>(base + kOffRecords);
        std::uint64_t rec_size = load<std::uint32_t>(base + kOffRecordsSize);
        if (rec < kHeaderSize || rec + rec_size > size) return false;
        const std::size_t tables[] = {kOffPwName, kOffPwUid, kOffGrName, kOffGrGid};
        for (std::size_t t : tables) {
            std::uint64_t off = load<std::uint32_t>(base + t);
            std::uint64_t n = load<std::uint32_t>(base + t + 4);
            if (n == 0 || off < kHeaderSize || off % 4 != 0 || off + 4 * n > size) return false;
        }
        base_ = base;
        size_ = size;
        rec_begin_ = static_cast<std::uint32_t>(rec);
        rec_end_ = static_cast<std::uint32_t>(rec + rec_size);
        return true;
    }
    bool attached() const noexcept { return base_ != nullptr; }
    // The one word a writer changes after publication: an atomic load, no syscall.
    bool superseded() const noexcept {
        return __atomic_load_n(reinterpret_cast<const std::uint32_t*>(base_ + kOffSuperseded),
                               __ATOMIC_ACQUIRE) != 0;
    }
    // The group records' member lists may be behind (see groups_stale above).
    bool groups_stale() const noexcept {
        return __atomic_load_n(reinterpret_cast<const std::uint32_t*>(base_ + kOffGroupsStale),
                               __ATOMIC_ACQUIRE) != 0;
    }
    bool enumerable() const noexcept { return (load<std::uint32_t>(base_ + kOffFlags) & kFlagEnumerate) != 0; }
    std::uint64_t generation() const noexcept { return load<std::uint64_t>(base_ + kOffGeneration); }

    bool passwd_by_name(const char* name, std::size_t len, std::int64_t now, PasswdRecord& out) const noexcept {
        for (std::uint32_t off = head(kOffPwName, fnv1a64(name, len)); off != 0; off = next(off, kRecNextName)) {
            if (!passwd_at(off, out)) return false;
            if (out.name_len == len && std::memcmp(out.name, name, len) == 0) return out.expires >= now;
        }
        return false;
    }
    bool passwd_by_uid(std::uint32_t uid, std::int64_t now, PasswdRecord& out) const noexcept {
        for (std::uint32_t off = head(kOffPwUid, hash_id(uid)); off != 0; off = next(off, kRecNextId)) {
            if (!passwd_at(off, out)) return false;
            if (out.uid == uid) return out.expires >= now;
        }
        return false;
    }
    bool group_by_name(const char* name, std::size_t len, std::int64_t now, GroupRecord& out) const noexcept {
        if (groups_stale()) return false;
        for (std::uint32_t off = head(kOffGrName, fnv1a64(name, len)); off != 0; off = next(off, kRecNextName)) {
            if (!group_at(off, out)) return false;
            if (out.name_len == len && std::memcmp(out.name, name, len) == 0) return out.expires >= now;
        }
        return false;
    }
    bool group_by_gid(std::uint32_t gid, std::int64_t now, GroupRecord& out) const noexcept {
        if (groups_stale()) return false;
        for (std::uint32_t off = head(kOffGrGid, hash_id(gid)); off != 0; off = next(off, kRecNextId)) {
            if (!group_at(off, out)) return false;
            if (out.gid == gid) return out.expires >= now;
        }
        return false;
    }

    // Enumeration: the next unexpired record of the kind at or after *cursor (0 = the first).
    // On success *cursor is the record's offset; advance() moves past it. False at the end or
    // at a corrupt record.
    bool next_passwd(std::uint32_t& cursor, std::int64_t now, PasswdRecord& out) const noexcept {
        for (; walk(cursor); cursor = advance(cursor))
            if (kind_at(cursor) == kKindPasswd && passwd_at(cursor, out) && out.expires >= now) return true;
        return false;
    }
    bool next_group(std::uint32_t& cursor, std::int64_t now, GroupRecord& out) const noexcept {
        for (; walk(cursor); cursor = advance(cursor))
            if (kind_at(cursor) == kKindGroup && group_at(cursor, out) && out.expires >= now) return true;
        return false;
    }
    std::uint32_t advance(std::uint32_t cursor) const noexcept {
        return cursor + load<std::uint32_t>(base_ + cursor + kRecSize);
    }

    // The record at `off` if it is a well-formed passwd/group record inside the record area.
    bool passwd_at(std::uint32_t off, PasswdRecord& r) const noexcept {
        std::uint32_t size = 0;
        if (!record(off, kKindPasswd, kPwFixed, size)) return false;
        const std::uint8_t* p = base_ + off;
        r.expires = load<std::int64_t>(p + kRecExpires);
        r.uid = load<std::uint32_t>(p + kRecBody);
        r.gid = load<std::uint32_t>(p + kRecBody + 4);
        r.name_len = load<std::uint32_t>(p + kRecBody + 8);
        r.gecos_len = load<std::uint32_t>(p + kRecBody + 12);
        r.dir_len = load<std::uint32_t>(p + kRecBody + 16);
        r.shell_len = load<std::uint32_t>(p + kRecBody + 20);
        r.ngroups = load<std::uint32_t>(p + kRecBody + 24);
        std::uint64_t pos = kPwFixed + 4ull * r.ngroups;
        if (pos > size) return false;
        r.gids = p + kPwFixed;
        return text(p, size, pos, r.name_len, r.name) && r.name_len != 0 &&
               text(p, size, pos, r.gecos_len, r.gecos) && text(p, size, pos, r.dir_len, r.dir) &&
               text(p, size, pos, r.shell_len, r.shell);
    }
    bool group_at(std::uint32_t off, GroupRecord& r) const noexcept {
        std::uint32_t size = 0;
        if (!record(off, kKindGroup, kGrFixed, size)) return false;
        const std::uint8_t* p = base_ + off;
        r.expires = load<std::int64_t>(p + kRecExpires);
        r.gid = load<std::uint32_t>(p + kRecBody);
        r.name_len = load<std::uint32_t>(p + kRecBody + 4);
        r.nmembers = load<std::uint32_t>(p + kRecBody + 8);
        r.members_len = load<std::uint32_t>(p + kRecBody + 12);
        std::uint64_t pos = kGrFixed;
        if (!text(p, size, pos, r.name_len, r.name) || r.name_len == 0) return false;
        if (pos + r.members_len > size) return false;
        r.members = reinterpret_cast<const char*>(p + pos);
        // The member area holds nmembers NUL-terminated names. The count of NULs is checked by
        // the pass that finds the names (nss_cvat's fill_group()), not here as well: a role
        // group's area is tens of kilobytes, and lookups meet other groups' records in their
        // bucket's chain.
        if (r.members_len == 0) return r.nmembers == 0;
        return r.nmembers <= r.members_len && r.members[r.members_len - 1] == '\0';
    }

private:
    std::uint32_t head(std::size_t table, std::uint64_t hash) const noexcept {
        std::uint32_t off = load<std::uint32_t>(base_ + table);
        std::uint32_t n = load<std::uint32_t>(base_ + table + 4);
        return load<std::uint32_t>(base_ + off + 4 * (hash % n));
    }
    // Chains run to smaller offsets; anything else ends the walk (no loop on a corrupt file).
    std::uint32_t next(std::uint32_t off, std::size_t field) const noexcept {
        std::uint32_t n = load<std::uint32_t>(base_ + off + field);
        return n < off ? n : 0;
    }
    std::uint32_t kind_at(std::uint32_t off) const noexcept { return load<std::uint32_t>(base_ + off + kRecKind); }
    // True while *cursor is a record header inside the area (0 starts at the first record).
    bool walk(std::uint32_t& cursor) const noexcept {
        if (cursor == 0) cursor = rec_begin_;
        if (cursor < rec_begin_ || cursor >= rec_end_ || rec_end_ - cursor < kRecBody) return false;
        std::uint32_t size = load<std::uint32_t>(base_ + cursor + kRecSize);
        return size >= kRecBody && size % 8 == 0 && size <= rec_end_ - cursor;
    }
    bool record(std::uint32_t off, std::uint32_t kind, std::size_t fixed, std::uint32_t& size) const noexcept {
        if (off < rec_begin_ || off >= rec_end_ || rec_end_ - off < fixed) return false;
        size = load<std::uint32_t>(base_ + off + kRecSize);
        return kind_at(off) == kind && size >= fixed && size <= rec_end_ - off;
    }
    // A string of `len` bytes plus its NUL at `pos` inside a record of `size` bytes.
    static bool text(const std::uint8_t* rec, std::uint32_t size, std::uint64_t& pos, std::uint32_t len,
                     const char*& out) noexcept {
        if (len > size || pos + len + 1 > size) return false;
        out = reinterpret_cast<const char*>(rec + pos);
        if (out[len] != '\0' || (len != 0 && std::memchr(out, 0, len) != nullptr)) return false;
        pos += len + 1;
        return true;
    }

    const std::uint8_t* base_ = nullptr;
    std::size_t size_ = 0;
    std::uint32_t rec_begin_ = 0, rec_end_ = 0;
};

}  // namespace cvat::nss_mc
