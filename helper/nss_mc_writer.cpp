// SPDX-License-Identifier: GPL-3.0-or-later
#include "nss_mc_writer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string_view>
#include <unordered_set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nss_mc.hpp"
#include "unique_fd.hpp"

namespace cvat::helper::nss_mc {
namespace mc = cvat::nss_mc;
namespace {

bool clean(std::string_view s) { return s.find('\0') == std::string_view::npos; }
bool good_name(std::string_view s) { return !s.empty() && s.size() <= mc::kMaxName && clean(s); }

std::size_t align8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// Buckets per table: about two per record, so chains stay short; at least one.
std::uint32_t bucket_count(std::size_t records) { return static_cast<std::uint32_t>(records * 2 + 1); }

std::string errno_text(const char* what, const std::string& path) {
    return std::string(what) + " " + path + ": " + std::strerror(errno);
}

// Builds the whole file in memory (it is bounded by kMaxFileSize).
class Builder {
public:
    Builder(std::size_t users, std::size_t groups) {
        buf_.resize(mc::kHeaderSize);
        pw_name_ = table(bucket_count(users));
        pw_uid_ = table(bucket_count(users));
        gr_name_ = table(bucket_count(groups));
        gr_gid_ = table(bucket_count(groups));
        buf_.resize(align8(buf_.size()));
        records_ = buf_.size();
    }

    bool add(const PasswdEntry& u) {
        if (!good_name(u.name) || !clean(u.gecos) || !clean(u.dir) || !clean(u.shell)) return true;
        if (!names_pw_.insert(u.name).second) return true;
        std::size_t size = align8(mc::kPwFixed + 4 * u.groups.size() + u.name.size() + u.gecos.size() +
                                  u.dir.size() + u.shell.size() + 4);
        std::size_t off = 0;
        if (!grow(size, off)) return false;
        std::uint8_t* p = buf_.data() + off;
        header(p, mc::kKindPasswd, size, u.expires);
        mc::store<std::uint32_t>(p + mc::kRecBody, u.uid);
        mc::store<std::uint32_t>(p + mc::kRecBody + 4, u.gid);
        mc::store<std::uint32_t>(p + mc::kRecBody + 8, static_cast<std::uint32_t>(u.name.size()));
        mc::store<std::uint32_t>(p + mc::kRecBody + 12, static_cast<std::uint32_t>(u.gecos.size()));
        mc::store<std::uint32_t>(p + mc::kRecBody + 16, static_cast<std::uint32_t>(u.dir.size()));
        mc::store<std::uint32_t>(p + mc::kRecBody + 20, static_cast<std::uint32_t>(u.shell.size()));
        mc::store<std::uint32_t>(p + mc::kRecBody + 24, static_cast<std::uint32_t>(u.groups.size()));
        std::size_t pos = mc::kPwFixed;
        for (std::uint32_t g : u.groups) {
            mc::store<std::uint32_t>(p + pos, g);
            pos += 4;
        }
        for (const std::string* s : {&u.name, &u.gecos, &u.dir, &u.shell}) {
            std::memcpy(p + pos, s->data(), s->size());
            pos += s->size() + 1;  // the NUL is already there (zero-filled)
        }
        link(pw_name_, mc::fnv1a64(u.name.data(), u.name.size()), off, mc::kRecNextName);
        if (ids_pw_.insert(u.uid).second) link(pw_uid_, mc::hash_id(u.uid), off, mc::kRecNextId);
        ++passwd_count_;
        return true;
    }

    bool add(const GroupEntry& g) {
        if (!good_name(g.name) || !names_gr_.insert(g.name).second) return true;
        std::size_t members_len = 0, nmembers = 0;
        for (const auto& m : g.members)
            if (good_name(m)) members_len += m.size() + 1, ++nmembers;
        std::size_t size = align8(mc::kGrFixed + g.name.size() + 1 + members_len);
        std::size_t off = 0;
        if (!grow(size, off)) return false;
        std::uint8_t* p = buf_.data() + off;
        header(p, mc::kKindGroup, size, g.expires);
        mc::store<std::uint32_t>(p + mc::kRecBody, g.gid);
        mc::store<std::uint32_t>(p + mc::kRecBody + 4, static_cast<std::uint32_t>(g.name.size()));
        mc::store<std::uint32_t>(p + mc::kRecBody + 8, static_cast<std::uint32_t>(nmembers));
        mc::store<std::uint32_t>(p + mc::kRecBody + 12, static_cast<std::uint32_t>(members_len));
        std::size_t pos = mc::kGrFixed;
        std::memcpy(p + pos, g.name.data(), g.name.size());
        pos += g.name.size() + 1;
        for (const auto& m : g.members) {
            if (!good_name(m)) continue;
            std::memcpy(p + pos, m.data(), m.size());
            pos += m.size() + 1;
        }
        link(gr_name_, mc::fnv1a64(g.name.data(), g.name.size()), off, mc::kRecNextName);
        if (ids_gr_.insert(g.gid).second) link(gr_gid_, mc::hash_id(g.gid), off, mc::kRecNextId);
        ++group_count_;
        return true;
    }

    std::vector<std::uint8_t>& finish(bool enumerate, std::uint64_t generation) {
        std::uint8_t* h = buf_.data();
        mc::store<std::uint32_t>(h + mc::kOffMagic, mc::kMagic);
        mc::store<std::uint16_t>(h + mc::kOffVersion, mc::kFormatVersion);
        mc::store<std::uint16_t>(h + mc::kOffHeaderSize, static_cast<std::uint16_t>(mc::kHeaderSize));
        mc::store<std::uint32_t>(h + mc::kOffFlags, enumerate ? mc::kFlagEnumerate : 0);
        mc::store<std::uint32_t>(h + mc::kOffSuperseded, 0);
        mc::store<std::uint64_t>(h + mc::kOffGeneration, generation);
        mc::store<std::int64_t>(h + mc::kOffCreated, static_cast<std::int64_t>(::time(nullptr)));
        mc::store<std::uint64_t>(h + mc::kOffFileSize, buf_.size());
        for (auto [field, t] : {std::pair{mc::kOffPwName, pw_name_}, std::pair{mc::kOffPwUid, pw_uid_},
                                std::pair{mc::kOffGrName, gr_name_}, std::pair{mc::kOffGrGid, gr_gid_}}) {
            mc::store<std::uint32_t>(h + field, t.offset);
            mc::store<std::uint32_t>(h + field + 4, t.buckets);
        }
        mc::store<std::uint32_t>(h + mc::kOffRecords, static_cast<std::uint32_t>(records_));
        mc::store<std::uint32_t>(h + mc::kOffRecordsSize, static_cast<std::uint32_t>(buf_.size() - records_));
        mc::store<std::uint32_t>(h + mc::kOffPasswdCount, passwd_count_);
        mc::store<std::uint32_t>(h + mc::kOffGroupCount, group_count_);
        return buf_;
    }

private:
    struct Table {
        std::uint32_t offset = 0, buckets = 0;
    };
    Table table(std::uint32_t buckets) {
        Table t{static_cast<std::uint32_t>(buf_.size()), buckets};
        buf_.resize(buf_.size() + 4ull * buckets);
        return t;
    }
    bool grow(std::size_t size, std::size_t& off) {
        if (size > mc::kMaxFileSize || buf_.size() > mc::kMaxFileSize - size) return false;
        off = buf_.size();
        buf_.resize(off + size);
        return true;
    }
    static void header(std::uint8_t* p, std::uint32_t kind, std::size_t size, std::int64_t expires) {
        mc::store<std::uint32_t>(p + mc::kRecKind, kind);
        mc::store<std::uint32_t>(p + mc::kRecSize, static_cast<std::uint32_t>(size));
        mc::store<std::int64_t>(p + mc::kRecExpires, expires);
    }
    // Prepends the record at `off` to its bucket: chains run to smaller offsets (nss_mc.hpp).
    void link(const Table& t, std::uint64_t hash, std::size_t off, std::size_t next_field) {
        std::uint8_t* bucket = buf_.data() + t.offset + 4 * (hash % t.buckets);
        mc::store<std::uint32_t>(buf_.data() + off + next_field, mc::load<std::uint32_t>(bucket));
        mc::store<std::uint32_t>(bucket, static_cast<std::uint32_t>(off));
    }

    std::vector<std::uint8_t> buf_;
    Table pw_name_, pw_uid_, gr_name_, gr_gid_;
    std::size_t records_ = 0;
    std::uint32_t passwd_count_ = 0, group_count_ = 0;
    std::unordered_set<std::string> names_pw_, names_gr_;
    std::unordered_set<std::uint32_t> ids_pw_, ids_gr_;
};

// Stores superseded = 1 in a published file; readers that map it see the store.
void mark_superseded(int fd) {
    const std::uint32_t one = 1;
    (void)!::pwrite(fd, &one, sizeof one, mc::kOffSuperseded);
}

std::uint64_t generation_of(int fd) {
    std::uint8_t h[mc::kHeaderSize];
    if (fd < 0 || ::pread(fd, h, sizeof h, 0) != static_cast<ssize_t>(sizeof h) ||
        mc::load<std::uint32_t>(h + mc::kOffMagic) != mc::kMagic)
        return 0;
    return mc::load<std::uint64_t>(h + mc::kOffGeneration);
}

std::string directory_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

namespace {

// A complete new file under a temporary name beside `path`, written and synced; removed unless
// put in place.
class Staged {
public:
    Staged() = default;
    Staged(const Staged&) = delete;
    Staged& operator=(const Staged&) = delete;
    ~Staged() {
        if (!tmp_.empty()) ::unlink(tmp_.c_str());
    }

    // The file's generation is one above the one in place, and at least `at_least`.
    Result<void> write(const std::string& path, const std::vector<PasswdEntry>& users,
                       const std::vector<GroupEntry>& groups, bool enumerate, std::uint64_t at_least = 0) {
        if (users.size() > mc::kMaxFileSize / mc::kPwFixed || groups.size() > mc::kMaxFileSize / mc::kGrFixed)
            return fail(ErrorCode::too_large, "nss cache: too many entries");
        Builder b(users.size(), groups.size());
        for (const auto& u : users)
            if (!b.add(u)) return fail(ErrorCode::too_large, "nss cache: file over 256 MiB");
        for (const auto& g : groups)
            if (!b.add(g)) return fail(ErrorCode::too_large, "nss cache: file over 256 MiB");
        std::uint64_t generation = 0;
        {
            UniqueFd old(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
            generation = generation_of(old.get());
        }
        generation_ = std::max(generation + 1, at_least);
        const auto& bytes = b.finish(enumerate, generation_);

        std::string tmp = path + ".XXXXXX";
        fd_ = UniqueFd(::mkostemp(tmp.data(), O_CLOEXEC));
        if (!fd_) return fail(ErrorCode::io, errno_text("cannot create", tmp));
        tmp_ = std::move(tmp);
        if (::fchmod(fd_.get(), 0644) != 0) return fail(ErrorCode::io, errno_text("cannot chmod", tmp_));
        for (std::size_t done = 0; done < bytes.size();) {
            ssize_t n = ::write(fd_.get(), bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return fail(ErrorCode::io, errno_text("cannot write", tmp_));
            done += static_cast<std::size_t>(n);
        }
        if (::fsync(fd_.get()) != 0) return fail(ErrorCode::io, errno_text("cannot fsync", tmp_));
        return {};
    }

    int fd() const { return fd_.get(); }
    std::uint64_t generation() const { return generation_; }

    // Puts the file in place of `path` and marks the replaced one superseded; the answer is
    // the installed file, still open.
    Result<UniqueFd> install(const std::string& path) {
        // The old file is opened before the rename so that it, and only it, is marked afterwards.
        UniqueFd old(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
        if (::rename(tmp_.c_str(), path.c_str()) != 0) return fail(ErrorCode::io, errno_text("cannot rename", tmp_));
        tmp_.clear();
        if (old) mark_superseded(old.get());
        return std::move(fd_);
    }

private:
    std::string tmp_;
    UniqueFd fd_;
    std::uint64_t generation_ = 0;
};

void mark_groups_stale(int fd) {
    const std::uint32_t one = 1;
    (void)!::pwrite(fd, &one, sizeof one, mc::kOffGroupsStale);
}

// The rename itself survives a crash once the directory is synced.
void sync_directory(const std::string& path) {
    UniqueFd dir(::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) (void)::fsync(dir.get());
}

}  // namespace

Result<void> publish(const std::string& path, const std::vector<PasswdEntry>& users,
                     const std::vector<GroupEntry>& groups, bool enumerate) {
    Staged staged;
    if (auto w = staged.write(path, users, groups, enumerate); !w) return w;
    if (auto i = staged.install(path); !i) return tl::make_unexpected(i.error());
    sync_directory(path);
    return {};
}

Result<void> withdraw(const std::string& path) {
    UniqueFd old(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!old) {
        if (errno == ENOENT) return {};
        return fail(ErrorCode::io, errno_text("cannot open", path));
    }
    // Unlink first: a reader that sees the mark and reopens must not find this file again.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail(ErrorCode::io, errno_text("cannot remove", path));
    mark_superseded(old.get());
    return {};
}

Slot::Ticket Slot::ticket() const {
    std::lock_guard lock(mutex_);
    return {withdrawals_, joins_};
}

Result<bool> Slot::publish(Ticket ticket, const std::vector<PasswdEntry>& users,
                           const std::vector<GroupEntry>& groups, bool enumerate) {
    std::uint64_t at_least = 0;
    {
        std::lock_guard lock(mutex_);
        at_least = generation_ + 1;
    }
    Staged staged;
    if (auto w = staged.write(path_, users, groups, enumerate, at_least); !w) return tl::make_unexpected(w.error());
    {
        std::lock_guard lock(mutex_);
        if (withdrawals_ != ticket.withdrawals) return false;  // overtaken: `staged` removes the file
        // Someone joined a group after the snapshot: the new file's groups are behind from the start.
        const bool behind = joins_ != ticket.joins;
        if (behind) mark_groups_stale(staged.fd());
        auto installed = staged.install(path_);
        if (!installed) return tl::make_unexpected(installed.error());
        live_ = std::move(*installed);
        live_groups_stale_ = behind;
        generation_ = staged.generation();
    }
    sync_directory(path_);
    return true;
}

Result<void> Slot::withdraw() {
    std::lock_guard lock(mutex_);
    ++withdrawals_;
    live_.reset();
    return nss_mc::withdraw(path_);
}

void Slot::groups_joined() {
    std::lock_guard lock(mutex_);
    ++joins_;
    if (!live_) {
        // A file this Slot did not put there (a daemon before this one): mark it all the same.
        live_ = UniqueFd(::open(path_.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
        live_groups_stale_ = false;
        if (!live_) return;
    }
    if (!live_groups_stale_) mark_groups_stale(live_.get());
    live_groups_stale_ = true;
}

}  // namespace cvat::helper::nss_mc
