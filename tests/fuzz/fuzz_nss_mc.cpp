// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: the reader of the mmap'ed NSS cache file (common/nss_mc.hpp, nss_mc::Reader),
// as nss_cvat uses it on whatever file lies next to the socket, and the packer of its
// records into the caller's buffer (nss_cvat/nss_pack.hpp). The input is a whole file; it is
// read once as it is and once with its file_size field set to its size (so the fuzzer gets
// past that check). Every record the reader hands out must lie inside the file; lookups by
// name and id, enumeration and initgroups run over it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz.hpp"
#include "nss_mc.hpp"
#include "nss_pack.hpp"

using namespace cvat;
namespace mc = cvat::nss_mc;

namespace {

const std::uint8_t* g_base;
std::size_t g_size;

bool in_file(const void* p, std::size_t n) {
    auto* b = static_cast<const std::uint8_t*>(p);
    return b >= g_base && b <= g_base + g_size && n <= static_cast<std::size_t>(g_base + g_size - b);
}

void check(const mc::PasswdRecord& r) {
    for (auto [s, n] : {std::pair{r.name, r.name_len}, {r.gecos, r.gecos_len}, {r.dir, r.dir_len}, {r.shell, r.shell_len}})
        FUZZ_CHECK(in_file(s, std::size_t{n} + 1) && s[n] == '\0' && std::strlen(s) == n);
    FUZZ_CHECK(in_file(r.gids, 4ull * r.ngroups));
    std::uint64_t sum = 0;
    for (std::uint32_t i = 0; i < r.ngroups; ++i) sum += r.gid_at(i);
    (void)sum;
}

void check(const mc::GroupRecord& r) {
    FUZZ_CHECK(in_file(r.name, std::size_t{r.name_len} + 1) && std::strlen(r.name) == r.name_len);
    FUZZ_CHECK(in_file(r.members, r.members_len));
}

void pack(const mc::PasswdRecord& r, std::size_t buflen) {
    std::vector<char> buf(buflen);
    passwd pw{};
    nss::Outcome o = nss::fill_passwd(nss::fields_of(r), &pw, buf.data(), buflen);
    if (o.status == NSS_STATUS_SUCCESS) FUZZ_CHECK(std::strcmp(pw.pw_name, r.name) == 0 && pw.pw_uid == r.uid);
    else FUZZ_CHECK(o.status == NSS_STATUS_TRYAGAIN && o.err == ERANGE);
    long start = 0, size = 0, limit = static_cast<long>(buflen % 8);
    gid_t* groups = nullptr;
    for (std::uint32_t i = 0; i < r.ngroups && i < 4096; ++i)
        if (nss::add_gid(r.gid_at(i), r.gid, &start, &size, &groups, limit) != nss::Added::yes) break;
    FUZZ_CHECK(start <= size);
    std::free(groups);
}

void pack(const mc::GroupRecord& r, std::size_t buflen) {
    std::vector<char> buf(buflen);
    group gr{};
    nss::Outcome o = nss::fill_group({r.name, r.name_len}, r.gid, r, &gr, buf.data(), buflen);
    std::uint32_t nuls = 0;
    for (std::uint32_t i = 0; i < r.members_len; ++i) nuls += r.members[i] == '\0';
    if (o.status == NSS_STATUS_SUCCESS) {
        FUZZ_CHECK(nuls == r.nmembers);
        FUZZ_CHECK(std::strcmp(gr.gr_name, r.name) == 0);
        for (std::uint32_t i = 0; i < r.nmembers; ++i)
            FUZZ_CHECK(gr.gr_mem[i] >= buf.data() && gr.gr_mem[i] < buf.data() + buflen &&
                       std::strlen(gr.gr_mem[i]) < static_cast<std::size_t>(buf.data() + buflen - gr.gr_mem[i]));
        const char* m = r.members;
        for (std::uint32_t i = 0; i < r.nmembers; ++i, m += std::strlen(m) + 1) FUZZ_CHECK(std::strcmp(gr.gr_mem[i], m) == 0);
        FUZZ_CHECK(gr.gr_mem[r.nmembers] == nullptr);
    } else if (nss::is_bad_record(o)) {
        // Only a member area whose NULs are not nmembers is refused, whatever the buffer.
        FUZZ_CHECK(nuls != r.nmembers);
    } else {
        // Too small a buffer: said only of a record that a bigger one would take.
        FUZZ_CHECK(o.status == NSS_STATUS_TRYAGAIN && o.err == ERANGE && nuls == r.nmembers);
    }
}

void read_file(const std::uint8_t* base, std::size_t size) {
    g_base = base;
    g_size = size;
    mc::Reader reader;
    if (!reader.attach(base, size)) return;
    (void)reader.superseded();
    (void)reader.enumerable();
    (void)reader.generation();
    const std::int64_t now = 1700000000;
    const std::size_t buflens[] = {0, 17, 1024};
    int n = 0;
    std::uint32_t cursor = 0;
    mc::PasswdRecord pw;
    while (n++ < 256 && reader.next_passwd(cursor, now, pw)) {
        check(pw);
        pack(pw, buflens[n % 3]);
        mc::PasswdRecord again;
        if (reader.passwd_by_name(pw.name, pw.name_len, now, again)) check(again);
        if (reader.passwd_by_uid(pw.uid, now, again)) check(again);
        std::uint32_t next = reader.advance(cursor);
        FUZZ_CHECK(next > cursor);
        cursor = next;
    }
    cursor = 0;
    mc::GroupRecord gr;
    while (n++ < 512 && reader.next_group(cursor, now, gr)) {
        check(gr);
        pack(gr, buflens[n % 3]);
        mc::GroupRecord again;
        if (reader.group_by_name(gr.name, gr.name_len, now, again)) check(again);
        if (reader.group_by_gid(gr.gid, now, again)) check(again);
        std::uint32_t next = reader.advance(cursor);
        FUZZ_CHECK(next > cursor);
        cursor = next;
    }
    // Names and ids that may or may not be there: chain walks over whatever the tables hold.
    for (const char* name : {"alice", "bob", "cvat-admin", "cvat-user", "x"}) {
        if (reader.passwd_by_name(name, std::strlen(name), now, pw)) check(pw);
        if (reader.group_by_name(name, std::strlen(name), now, gr)) check(gr);
    }
    for (std::uint32_t id : {0u, 1000u, 200000u, 200001u, 200002u, 200003u, 200100u, 4294967295u}) {
        if (reader.passwd_by_uid(id, now, pw)) check(pw);
        if (reader.group_by_gid(id, now, gr)) check(gr);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > (1u << 20)) return 0;
    // A heap block of exactly `size` bytes (16-aligned, as the superseded word's atomic load
    // needs): a read past the file's end is a heap overflow.
    auto* file = new std::uint8_t[size == 0 ? 1 : size];
    if (size != 0) std::memcpy(file, data, size);
    read_file(file, size);
    if (size >= mc::kHeaderSize) {
        mc::store<std::uint64_t>(file + mc::kOffFileSize, size);
        read_file(file, size);
    }
    delete[] file;
    return 0;
}
