// SPDX-License-Identifier: GPL-3.0-or-later
// Fuzz target: nss_cvat's reader of daemon replies and its packer into the caller's buffer
// (nss_cvat/nss_pack.hpp: passwd_from_reply, group_from_reply, groups_from_reply), which run
// inside every process that resolves a user.
//
// Input: kind:u8 (0 passwd, 1 group, 2 initgroups)  buflen:u16  then the reply body after
// its status byte. Checked against the daemon side's decoder (proto::decode_response of the
// same body): the module accepts what it accepts (and an empty name less), with the same
// fields; a success leaves every string inside the buffer, NUL-terminated; ERANGE leaves the
// out-parameters alone; a buffer with room for the entry is never ERANGE.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>
#include <string_view>
#include <vector>

#include "fuzz.hpp"
#include "nss_pack.hpp"
#include "protocol.hpp"

using namespace cvat;

namespace {

bool inside(const char* p, const char* buf, std::size_t len) {
    return p != nullptr && p >= buf && p < buf + len && std::memchr(p, 0, static_cast<std::size_t>(buf + len - p)) != nullptr;
}

std::vector<std::uint8_t> as_reply(proto::MsgType type, const std::uint8_t* body, std::size_t size) {
    std::vector<std::uint8_t> out(5 + size);
    out[1] = static_cast<std::uint8_t>(proto::kVersion);
    out[3] = static_cast<std::uint8_t>(static_cast<std::uint16_t>(type));
    if (size != 0) std::memcpy(out.data() + 5, body, size);
    return out;
}

void check_passwd(const std::uint8_t* body, std::size_t size, std::size_t buflen) {
    auto full = as_reply(proto::MsgType::passwd_reply, body, size);
    auto ref = proto::decode_response(full);
    std::vector<char> buf(buflen);
    passwd pw;
    std::memset(&pw, 0xa5, sizeof pw);
    passwd before = pw;
    wire::In in(body, size);
    nss::Outcome o = nss::passwd_from_reply(in, &pw, buf.data(), buflen);
    const auto* r = ref ? std::get_if<proto::PasswdReply>(&*ref) : nullptr;
    FUZZ_CHECK(ref.has_value() == (r != nullptr));
    if (r == nullptr || r->name.empty()) {
        FUZZ_CHECK(o.status == NSS_STATUS_UNAVAIL && o.err == EPROTO);
        FUZZ_CHECK(std::memcmp(&pw, &before, sizeof pw) == 0);
        return;
    }
    std::size_t need = r->name.size() + r->gecos.size() + r->dir.size() + r->shell.size() + 4 + 2;
    if (o.status == NSS_STATUS_TRYAGAIN) {
        FUZZ_CHECK(o.err == ERANGE && buflen < need);
        FUZZ_CHECK(std::memcmp(&pw, &before, sizeof pw) == 0);
        return;
    }
    FUZZ_CHECK(o.status == NSS_STATUS_SUCCESS);
    const char* b = buf.data();
    for (const char* s : {pw.pw_name, pw.pw_passwd, pw.pw_gecos, pw.pw_dir, pw.pw_shell}) FUZZ_CHECK(inside(s, b, buflen));
    FUZZ_CHECK(pw.pw_name == r->name && pw.pw_gecos == r->gecos && pw.pw_dir == r->dir && pw.pw_shell == r->shell);
    FUZZ_CHECK(std::strcmp(pw.pw_passwd, "*") == 0 && pw.pw_uid == r->uid && pw.pw_gid == r->gid);
}

void check_group(const std::uint8_t* body, std::size_t size, std::size_t buflen) {
    auto full = as_reply(proto::MsgType::group_reply, body, size);
    auto ref = proto::decode_response(full);
    // Heap block of exactly buflen bytes, 8-aligned as malloc gives it: the packer aligns its
    // pointer array itself, so an overrun shows as a heap overflow.
    std::vector<char> buf(buflen);
    group gr;
    std::memset(&gr, 0xa5, sizeof gr);
    group before = gr;
    wire::In in(body, size);
    nss::Outcome o = nss::group_from_reply(in, &gr, buf.data(), buflen);
    const auto* r = ref ? std::get_if<proto::GroupReply>(&*ref) : nullptr;
    if (r == nullptr || r->name.empty()) {
        FUZZ_CHECK(o.status == NSS_STATUS_UNAVAIL && o.err == EPROTO);
        FUZZ_CHECK(std::memcmp(&gr, &before, sizeof gr) == 0);
        return;
    }
    std::size_t need = (r->members.size() + 1) * sizeof(char*) + r->name.size() + 1 + 2;
    for (const auto& m : r->members) need += m.size() + 1;
    if (o.status == NSS_STATUS_TRYAGAIN) {
        FUZZ_CHECK(o.err == ERANGE && buflen < need + alignof(char*));
        FUZZ_CHECK(std::memcmp(&gr, &before, sizeof gr) == 0);
        return;
    }
    FUZZ_CHECK(o.status == NSS_STATUS_SUCCESS);
    const char* b = buf.data();
    FUZZ_CHECK(inside(gr.gr_name, b, buflen) && inside(gr.gr_passwd, b, buflen));
    FUZZ_CHECK(gr.gr_name == r->name && gr.gr_gid == r->gid && std::strcmp(gr.gr_passwd, "*") == 0);
    auto* mem = reinterpret_cast<const char*>(gr.gr_mem);
    FUZZ_CHECK(mem >= b && mem + (r->members.size() + 1) * sizeof(char*) <= b + buflen);
    FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(gr.gr_mem) % alignof(char*) == 0);
    for (std::size_t i = 0; i < r->members.size(); ++i)
        FUZZ_CHECK(inside(gr.gr_mem[i], b, buflen) && gr.gr_mem[i] == r->members[i]);
    FUZZ_CHECK(gr.gr_mem[r->members.size()] == nullptr);
}

void check_groups(const std::uint8_t* body, std::size_t size, std::size_t param) {
    auto full = as_reply(proto::MsgType::groups_reply, body, size);
    auto ref = proto::decode_response(full);
    const auto* r = ref ? std::get_if<proto::GroupsReply>(&*ref) : nullptr;
    // glibc's caller: an array already holding some groups, maybe a limit.
    long size_now = static_cast<long>(param & 0x1f);
    long limit = static_cast<long>((param >> 5) & 0x3f);
    long start = size_now / 2;
    auto* groups = static_cast<gid_t*>(std::malloc(static_cast<std::size_t>(std::max(size_now, 1L)) * sizeof(gid_t)));
    for (long i = 0; i < start; ++i) groups[i] = static_cast<gid_t>(1000 + i);
    const gid_t primary = 100;
    wire::In in(body, size);
    nss::Outcome o = nss::groups_from_reply(in, primary, &start, &size_now, &groups, limit);
    if (r == nullptr) {
        FUZZ_CHECK(o.status == NSS_STATUS_UNAVAIL && o.err == EPROTO);
    } else {
        FUZZ_CHECK(o.status == NSS_STATUS_SUCCESS);
        FUZZ_CHECK(start <= size_now && (limit <= 0 || size_now <= std::max(limit, static_cast<long>(param & 0x1f))));
        std::set<gid_t> seen;
        for (long i = 0; i < start; ++i) {
            FUZZ_CHECK(groups[i] != primary && seen.insert(groups[i]).second);
            if (groups[i] < 1000 || groups[i] >= 1000 + 16)
                FUZZ_CHECK(std::find(r->gids.begin(), r->gids.end(), groups[i]) != r->gids.end());
        }
        // Without a limit, every gid of the reply but the primary one is in the array.
        if (limit <= 0)
            for (auto g : r->gids) FUZZ_CHECK(g == primary || seen.count(g) == 1);
    }
    std::free(groups);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const std::size_t param = static_cast<std::size_t>(data[1]) << 8 | data[2];
    switch (data[0] % 3) {
        case 0: check_passwd(data + 3, size - 3, param); break;
        case 1: check_group(data + 3, size - 3, param); break;
        default: check_groups(data + 3, size - 3, param); break;
    }
    return 0;
}
