// SPDX-License-Identifier: GPL-3.0-or-later
//
// The NSS cache file end to end: helper/nss_mc_writer publishes nss.mc in a temp directory,
// libnss_cvat.so.2 (dlopen, CVAT_AUTH_SOCKET pointing into that directory; no daemon there,
// so a cache miss is NSS_STATUS_UNAVAIL) reads it. Round trip, expiry, corrupt and truncated
// files, replacement and withdrawal (and a withdrawal overtaking a publication), enumeration,
// and a writer republishing while 8 readers check that every record they get is whole.
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "nss_mc.hpp"
#include "nss_mc_writer.hpp"
#include "nss_module.hpp"

#include "cmocka.hpp"

namespace {

namespace w = cvat::helper::nss_mc;
namespace mc = cvat::nss_mc;

cvat::test::NssModule g_nss;
std::string g_dir;

std::string cache_path() { return g_dir + "/nss.mc"; }
std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

w::PasswdEntry user(std::string name, std::uint32_t uid, std::string gecos = "",
                    std::vector<std::uint32_t> groups = {}, std::int64_t ttl = 3600) {
    return {std::move(name), uid, uid, std::move(gecos), "/home/x", "/bin/bash", std::move(groups), now() + ttl};
}
w::GroupEntry grp(std::string name, std::uint32_t gid, std::vector<std::string> members, std::int64_t ttl = 3600) {
    return {std::move(name), gid, std::move(members), now() + ttl};
}

void publish(const std::vector<w::PasswdEntry>& u, const std::vector<w::GroupEntry>& g, bool enumerate = false) {
    auto r = w::publish(cache_path(), u, g, enumerate);
    if (!r) fail_msg("publish: %s", r.error().detail.c_str());
}

std::vector<std::uint8_t> read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Replaces nss.mc with raw bytes the way the writer does (new file, rename, mark the old one).
void publish_raw(const std::vector<std::uint8_t>& bytes) {
    int old = ::open(cache_path().c_str(), O_RDWR | O_CLOEXEC);
    std::string tmp = cache_path() + ".raw";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    assert_int_equal(::rename(tmp.c_str(), cache_path().c_str()), 0);
    if (old >= 0) {
        std::uint32_t one = 1;
        assert_int_equal(::pwrite(old, &one, 4, mc::kOffSuperseded), 4);
        ::close(old);
    }
}

struct Pw {
    passwd pw{};
    char buf[1024];
    int err = 0;
    nss_status st = NSS_STATUS_TRYAGAIN;
};
Pw getpwnam(const char* name) {
    Pw r;
    r.st = g_nss.getpwnam_r(name, &r.pw, r.buf, sizeof r.buf, &r.err);
    return r;
}
Pw getpwuid(uid_t uid) {
    Pw r;
    r.st = g_nss.getpwuid_r(uid, &r.pw, r.buf, sizeof r.buf, &r.err);
    return r;
}
struct Gr {
    group gr{};
    char buf[2048];
    int err = 0;
    nss_status st = NSS_STATUS_TRYAGAIN;
};
Gr getgrnam(const char* name) {
    Gr r;
    r.st = g_nss.getgrnam_r(name, &r.gr, r.buf, sizeof r.buf, &r.err);
    return r;
}
Gr getgrgid(gid_t gid) {
    Gr r;
    r.st = g_nss.getgrgid_r(gid, &r.gr, r.buf, sizeof r.buf, &r.err);
    return r;
}

void test_round_trip(void**) {
    publish({user("alice", 10001, "Alice Example", {20001, 20002, 10001}), user("bob", 10002, "Bob")},
            {grp("devs", 20001, {"alice", "bob"}), grp("ops", 20002, {})});
    Pw a = getpwnam("alice");
    assert_int_equal(a.st, NSS_STATUS_SUCCESS);
    assert_string_equal(a.pw.pw_name, "alice");
    assert_string_equal(a.pw.pw_gecos, "Alice Example");
    assert_string_equal(a.pw.pw_dir, "/home/x");
    assert_string_equal(a.pw.pw_shell, "/bin/bash");
    assert_int_equal(a.pw.pw_uid, 10001);
    assert_int_equal(a.pw.pw_gid, 10001);
    assert_true(a.pw.pw_name >= a.buf && a.pw.pw_shell < a.buf + sizeof a.buf);
    Pw b = getpwuid(10002);
    assert_int_equal(b.st, NSS_STATUS_SUCCESS);
    assert_string_equal(b.pw.pw_name, "bob");

    Gr d = getgrnam("devs");
    assert_int_equal(d.st, NSS_STATUS_SUCCESS);
    assert_int_equal(d.gr.gr_gid, 20001);
    assert_string_equal(d.gr.gr_mem[0], "alice");
    assert_string_equal(d.gr.gr_mem[1], "bob");
    assert_null(d.gr.gr_mem[2]);
    Gr o = getgrgid(20002);
    assert_int_equal(o.st, NSS_STATUS_SUCCESS);
    assert_string_equal(o.gr.gr_name, "ops");
    assert_null(o.gr.gr_mem[0]);

    // initgroups: the supplementary gids, primary and duplicates left out, array grown.
    long start = 1, size = 1;
    auto* groups = static_cast<gid_t*>(std::malloc(sizeof(gid_t)));
    groups[0] = 10001;
    int err = 0;
    assert_int_equal(g_nss.initgroups_dyn("alice", 10001, &start, &size, &groups, 0, &err), NSS_STATUS_SUCCESS);
    assert_int_equal(start, 3);
    assert_int_equal(groups[1], 20001);
    assert_int_equal(groups[2], 20002);
    std::free(groups);

    // A miss in the file goes to the daemon, which is not there.
    assert_int_equal(getpwnam("carol").st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getgrgid(1).st, NSS_STATUS_UNAVAIL);
}

void test_small_buffer(void**) {
    publish({user("alice", 10001, "Alice Example")}, {grp("devs", 20001, {"alice", "bob"})});
    for (std::size_t len = 0; len < 64; ++len) {
        passwd pw{};
        pw.pw_name = reinterpret_cast<char*>(0x1);
        char buf[64];
        int err = 0;
        nss_status st = g_nss.getpwnam_r("alice", &pw, buf, len, &err);
        if (st == NSS_STATUS_SUCCESS) {
            assert_string_equal(pw.pw_gecos, "Alice Example");
            assert_true(len >= 6 + 2 + 14 + 8 + 10);
            break;
        }
        assert_int_equal(st, NSS_STATUS_TRYAGAIN);
        assert_int_equal(err, ERANGE);
        assert_ptr_equal(pw.pw_name, reinterpret_cast<char*>(0x1));  // untouched on failure
    }
    group gr{};
    char buf[16];
    int err = 0;
    assert_int_equal(g_nss.getgrnam_r("devs", &gr, buf, sizeof buf, &err), NSS_STATUS_TRYAGAIN);
    assert_int_equal(err, ERANGE);
}

void test_expired_is_miss(void**) {
    publish({user("alice", 10001, "", {}, -10), user("bob", 10002, "", {}, 3600)},
            {grp("old", 20001, {}, -1), grp("new", 20002, {}, 3600)});
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getpwuid(10001).st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getgrnam("old").st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getgrgid(20001).st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getpwnam("bob").st, NSS_STATUS_SUCCESS);
    assert_int_equal(getgrnam("new").st, NSS_STATUS_SUCCESS);
}

void test_replacement_noticed(void**) {
    publish({user("alice", 10001, "first")}, {});
    assert_string_equal(getpwnam("alice").pw.pw_gecos, "first");
    publish({user("alice", 10001, "second")}, {});
    assert_string_equal(getpwnam("alice").pw.pw_gecos, "second");
    // The old file was marked, the new one is live.
    auto bytes = read_all(cache_path());
    assert_int_equal(mc::load<std::uint32_t>(bytes.data() + mc::kOffSuperseded), 0);
    auto r = w::withdraw(cache_path());
    assert_true(r.has_value());
    assert_false(std::filesystem::exists(cache_path()));
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_UNAVAIL);
    assert_true(w::withdraw(cache_path()).has_value());  // nothing to withdraw: fine
}

// A Slot's withdrawal overtakes a publication whose snapshot was taken before it: that
// publication is dropped (no file, no temp file left), and the next one goes in place.
void test_slot_withdrawal_overtakes(void**) {
    w::Slot slot(cache_path());
    auto t0 = slot.ticket();
    auto first = slot.publish(t0, {user("alice", 10001, "first")}, {}, false);
    assert_true(first.has_value() && *first);
    assert_string_equal(getpwnam("alice").pw.pw_gecos, "first");

    auto before = slot.ticket();  // a snapshot is read from here on...
    assert_true(slot.withdraw().has_value());  // ...when a change withdraws the file
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_UNAVAIL);
    auto dropped = slot.publish(before, {user("alice", 10001, "stale")}, {}, false);
    assert_true(dropped.has_value());
    assert_false(*dropped);
    assert_false(std::filesystem::exists(cache_path()));
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_UNAVAIL);
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(g_dir)) ++entries;
    assert_int_equal(entries, 0);  // the dropped publication's temp file is gone

    auto after = slot.publish(slot.ticket(), {user("alice", 10001, "fresh")}, {}, false);
    assert_true(after.has_value() && *after);
    assert_string_equal(getpwnam("alice").pw.pw_gecos, "fresh");
    // The file after the withdrawal goes on from the generation before it (an enumeration
    // begun on the first file must not take this one for it).
    auto bytes = read_all(cache_path());
    assert_int_equal(mc::load<std::uint64_t>(bytes.data() + mc::kOffGeneration), 2);
}

// groups_joined(): the live file's group lookups become misses (the daemon answers them), its
// users stay; a publication built from a snapshot taken before the join goes in place with
// its groups stale too; one built after it is whole again.
void test_slot_groups_joined(void**) {
    w::Slot slot(cache_path());
    slot.groups_joined();  // no file yet: nothing to mark, no error
    assert_true(*slot.publish(slot.ticket(), {user("alice", 10001)}, {grp("admins", 20001, {"alice"})}, false));
    assert_int_equal(getgrnam("admins").st, NSS_STATUS_SUCCESS);
    slot.groups_joined();
    assert_int_equal(getgrnam("admins").st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getgrgid(20001).st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_SUCCESS);
    auto bytes = read_all(cache_path());
    assert_int_equal(mc::load<std::uint32_t>(bytes.data() + mc::kOffGroupsStale), 1);
    assert_int_equal(mc::load<std::uint32_t>(bytes.data() + mc::kOffSuperseded), 0);

    auto before = slot.ticket();
    slot.groups_joined();  // bob joins while a publication is being built without him
    assert_true(*slot.publish(before, {user("alice", 10001)}, {grp("admins", 20001, {"alice"})}, false));
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_SUCCESS);
    assert_int_equal(getgrnam("admins").st, NSS_STATUS_UNAVAIL);

    assert_true(*slot.publish(slot.ticket(), {user("alice", 10001), user("bob", 10002)},
                              {grp("admins", 20001, {"alice", "bob"})}, false));
    Gr admins = getgrnam("admins");
    assert_int_equal(admins.st, NSS_STATUS_SUCCESS);
    assert_string_equal(admins.gr.gr_mem[1], "bob");

    // A file a Slot did not write (an earlier daemon's) is marked as well.
    w::Slot other(cache_path());
    other.groups_joined();
    assert_int_equal(getgrnam("admins").st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getpwnam("bob").st, NSS_STATUS_SUCCESS);
}

void test_writer_skips_bad_entries(void**) {
    std::string nul("ev\0il", 5);
    publish({user(std::string(256, 'a'), 1), user(nul, 2), user("", 3), user("ok", 4), user("ok", 5)},
            {grp("g", 7, {"m1", nul, std::string(300, 'm'), "m2"})});
    assert_int_equal(getpwuid(1).st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getpwuid(2).st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getpwuid(3).st, NSS_STATUS_UNAVAIL);
    assert_int_equal(getpwnam("ok").pw.pw_uid, 4);  // the first of a repeated name
    assert_int_equal(getpwuid(5).st, NSS_STATUS_UNAVAIL);
    Gr g = getgrnam("g");
    assert_int_equal(g.st, NSS_STATUS_SUCCESS);
    assert_string_equal(g.gr.gr_mem[0], "m1");
    assert_string_equal(g.gr.gr_mem[1], "m2");
    assert_null(g.gr.gr_mem[2]);
}

// Every lookup the module offers, on whatever nss.mc holds now; only must not crash, and a
// success must be a whole record inside the buffer.
void probe_all() {
    Pw a = getpwnam("alice");
    if (a.st == NSS_STATUS_SUCCESS) assert_true(a.pw.pw_name >= a.buf && a.pw.pw_name < a.buf + sizeof a.buf);
    (void)getpwuid(10001);
    (void)getpwuid(10002);
    Gr g = getgrnam("devs");
    if (g.st == NSS_STATUS_SUCCESS)
        for (char** m = g.gr.gr_mem; *m; ++m) assert_true(*m >= g.buf && *m < g.buf + sizeof g.buf);
    (void)getgrgid(20001);
    long start = 0, size = 4;
    auto* groups = static_cast<gid_t*>(std::malloc(4 * sizeof(gid_t)));
    int err = 0;
    (void)g_nss.initgroups_dyn("alice", 1, &start, &size, &groups, 64, &err);
    std::free(groups);
    g_nss.setpwent(0);
    passwd pw{};
    char buf[512];
    for (int i = 0; i < 10 && g_nss.getpwent_r(&pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS; ++i) {}
    g_nss.endpwent();
    g_nss.setgrent(0);
    group gr{};
    for (int i = 0; i < 10 && g_nss.getgrent_r(&gr, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS; ++i) {}
    g_nss.endgrent();
}

void test_corrupt_files_are_misses(void**) {
    publish({user("alice", 10001, "Alice", {20001}), user("bob", 10002, "Bob")},
            {grp("devs", 20001, {"alice", "bob"})}, true);
    const auto good = read_all(cache_path());
    assert_true(good.size() > mc::kHeaderSize);

    // Truncated anywhere: file_size no longer matches, so nothing is read.
    for (std::size_t len = 0; len < good.size(); len += 7) {
        publish_raw({good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)});
        assert_int_equal(getpwnam("alice").st, NSS_STATUS_UNAVAIL);
        probe_all();
    }
    // Each u32 word set to hostile values in turn (offsets, lengths, counts, chains).
    const std::uint32_t hostile[] = {0xffffffffu, 0x7fffffffu, 0x80000000u, 1, 0,
                                     static_cast<std::uint32_t>(good.size()),
                                     static_cast<std::uint32_t>(good.size() - 1)};
    for (std::size_t off = 0; off + 4 <= good.size(); off += 4) {
        if (off == mc::kOffSuperseded) continue;
        for (std::uint32_t v : hostile) {
            auto bad = good;
            mc::store<std::uint32_t>(bad.data() + off, v);
            publish_raw(bad);
            probe_all();
        }
    }
    // A chain that points forward (a loop) ends the walk: the lookup is a miss, not a hang.
    {
        auto bad = good;
        std::uint32_t bucket_off = mc::load<std::uint32_t>(bad.data() + mc::kOffPwName);
        std::uint32_t buckets = mc::load<std::uint32_t>(bad.data() + mc::kOffPwName + 4);
        std::uint64_t h = mc::fnv1a64("zed", 3) % buckets;
        std::uint32_t first = mc::load<std::uint32_t>(bad.data() + mc::kOffRecords);
        mc::store<std::uint32_t>(bad.data() + bucket_off + 4 * h, first);
        mc::store<std::uint32_t>(bad.data() + first + mc::kRecNextName, first);  // itself
        publish_raw(bad);
        assert_int_equal(getpwnam("zed").st, NSS_STATUS_UNAVAIL);
    }
    // Random bytes.
    std::srand(7);
    for (int i = 0; i < 200; ++i) {
        auto bad = good;
        for (int k = 0; k < 8; ++k) bad[mc::kHeaderSize + static_cast<std::size_t>(std::rand()) % (bad.size() - mc::kHeaderSize)] ^= static_cast<std::uint8_t>(1 + std::rand() % 255);
        publish_raw(bad);
        probe_all();
    }
    // And back to a good file: the module recovers.
    publish_raw(good);
    assert_int_equal(getpwnam("alice").st, NSS_STATUS_SUCCESS);
}

// A group of thousands of members with names of 2 to 35 bytes (so that the
// NULs fall at every place of the 8-byte words the module reads them in) comes back whole and
// in order, in a buffer sized as glibc grows it.
void test_large_group(void**) {
    std::vector<std::string> members;
    for (int i = 0; i < 5000; ++i) members.push_back(std::string(static_cast<std::size_t>(1 + i % 31), static_cast<char>('a' + i % 26)) + std::to_string(i));
    publish({user("alice", 10001)}, {grp("everyone", 20001, members), grp("few", 20002, {"alice", "b"})}, true);
    std::vector<char> buf(1024);
    group gr{};
    int err = 0;
    nss_status st;
    while ((st = g_nss.getgrnam_r("everyone", &gr, buf.data(), buf.size(), &err)) == NSS_STATUS_TRYAGAIN && err == ERANGE)
        buf.resize(buf.size() * 2);
    assert_int_equal(st, NSS_STATUS_SUCCESS);
    std::size_t n = 0;
    for (; gr.gr_mem[n] != nullptr; ++n) {
        if (n >= members.size()) fail_msg("more members than published");
        if (members[n] != gr.gr_mem[n]) fail_msg("member %zu: %s, published %s", n, gr.gr_mem[n], members[n].c_str());
    }
    assert_int_equal(n, members.size());
    Gr few = getgrgid(20002);
    assert_int_equal(few.st, NSS_STATUS_SUCCESS);
    assert_string_equal(few.gr.gr_mem[0], "alice");
    assert_string_equal(few.gr.gr_mem[1], "b");
    assert_null(few.gr.gr_mem[2]);
}

// A group record whose member count disagrees with the names its member area holds is not
// given out: the lookup asks the daemon (none here: UNAVAIL), enumeration goes past it.
void test_member_count_mismatch(void**) {
    publish({}, {grp("devs", 20001, {"alice", "bob", "carol"}), grp("ops", 20002, {"dave"})}, true);
    const auto good = read_all(cache_path());
    // The devs record: the group record whose name follows its fixed fields.
    std::size_t at = 0;
    for (std::size_t off = mc::load<std::uint32_t>(good.data() + mc::kOffRecords); off + mc::kGrFixed < good.size();
         off += mc::load<std::uint32_t>(good.data() + off + mc::kRecSize)) {
        if (mc::load<std::uint32_t>(good.data() + off) == mc::kKindGroup &&
            std::memcmp(good.data() + off + mc::kGrFixed, "devs", 5) == 0) {
            at = off;
            break;
        }
    }
    if (at == 0) fail_msg("no devs record in the file");
    assert_int_equal(mc::load<std::uint32_t>(good.data() + at + mc::kRecBody + 8), 3);
    for (std::uint32_t count : {2u, 4u, 1u}) {
        auto bad = good;
        mc::store<std::uint32_t>(bad.data() + at + mc::kRecBody + 8, count);
        publish_raw(bad);
        assert_int_equal(getgrnam("devs").st, NSS_STATUS_UNAVAIL);
        assert_int_equal(getgrgid(20001).st, NSS_STATUS_UNAVAIL);
        // Not ERANGE first, with a buffer too small for it: that would only make the caller
        // grow its buffer for a record that is then refused.
        {
            group small{};
            char tiny[16];
            int e = 0;
            assert_int_equal(g_nss.getgrnam_r("devs", &small, tiny, sizeof tiny, &e), NSS_STATUS_UNAVAIL);
            assert_int_equal(g_nss.getgrnam_r("ops", &small, tiny, sizeof tiny, &e), NSS_STATUS_TRYAGAIN);
            assert_int_equal(e, ERANGE);
        }
        assert_int_equal(getgrnam("ops").st, NSS_STATUS_SUCCESS);
        group gr{};
        char buf[512];
        int err = 0;
        std::vector<std::string> names;
        g_nss.setgrent(0);
        while (g_nss.getgrent_r(&gr, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS) names.emplace_back(gr.gr_name);
        g_nss.endgrent();
        assert_int_equal(names.size(), 1);
        assert_string_equal(names[0].c_str(), "ops");
    }
    publish_raw(good);
    Gr devs = getgrnam("devs");
    assert_int_equal(devs.st, NSS_STATUS_SUCCESS);
    assert_string_equal(devs.gr.gr_mem[2], "carol");
}

void test_enumeration_flag(void**) {
    int err = 0;
    passwd pw{};
    group gr{};
    char buf[512];
    publish({user("alice", 10001), user("bob", 10002), user("gone", 10003, "", {}, -5)},
            {grp("devs", 20001, {"alice"})}, false);
    g_nss.setpwent(0);
    assert_int_equal(g_nss.getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    g_nss.endpwent();
    g_nss.setgrent(0);
    assert_int_equal(g_nss.getgrent_r(&gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    g_nss.endgrent();

    publish({user("alice", 10001), user("bob", 10002), user("gone", 10003, "", {}, -5)},
            {grp("devs", 20001, {"alice"})}, true);
    g_nss.setpwent(0);
    std::vector<std::string> names;
    // A too-small buffer gives ERANGE and the same record again on the retry.
    assert_int_equal(g_nss.getpwent_r(&pw, buf, 4, &err), NSS_STATUS_TRYAGAIN);
    assert_int_equal(err, ERANGE);
    while (g_nss.getpwent_r(&pw, buf, sizeof buf, &err) == NSS_STATUS_SUCCESS) names.emplace_back(pw.pw_name);
    g_nss.endpwent();
    assert_int_equal(names.size(), 2);  // the expired one is not listed
    assert_string_equal(names[0].c_str(), "alice");
    assert_string_equal(names[1].c_str(), "bob");
    g_nss.setgrent(0);
    assert_int_equal(g_nss.getgrent_r(&gr, buf, sizeof buf, &err), NSS_STATUS_SUCCESS);
    assert_string_equal(gr.gr_name, "devs");
    assert_int_equal(g_nss.getgrent_r(&gr, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
    g_nss.endgrent();
    // Without setpwent (or after endpwent): nothing.
    assert_int_equal(g_nss.getpwent_r(&pw, buf, sizeof buf, &err), NSS_STATUS_NOTFOUND);
}

// Dataset `gen` (0 or 1): every field of every record says which dataset and which uid it
// belongs to, so a reader can tell a whole record from a torn or mixed one.
constexpr int kRaceUsers = 64;
std::vector<w::PasswdEntry> race_users(int gen) {
    std::vector<w::PasswdEntry> v;
    for (int i = 0; i < kRaceUsers; ++i) {
        std::uint32_t uid = 30000 + static_cast<std::uint32_t>(i);
        std::string tag = "uid=" + std::to_string(uid) + " gen=" + std::to_string(gen);
        v.push_back({"u" + std::to_string(i), uid, uid + 1, tag, "/home/" + tag, gen ? "/bin/sh" : "/bin/bash",
                     {uid + 2, uid + 3}, now() + 3600});
    }
    return v;
}
std::vector<w::GroupEntry> race_groups(int gen) {
    std::vector<w::GroupEntry> v;
    for (int i = 0; i < kRaceUsers; ++i) {
        std::uint32_t gid = 30000 + static_cast<std::uint32_t>(i);
        v.push_back({"g" + std::to_string(i) + "-" + std::to_string(gen), gid,
                     {"u" + std::to_string(i), "gen" + std::to_string(gen)}, now() + 3600});
    }
    return v;
}

void test_republish_race(void**) {
    constexpr int kPublications = 400;
    constexpr int kReaders = 8;
    auto users0 = race_users(0), users1 = race_users(1);
    auto groups0 = race_groups(0), groups1 = race_groups(1);
    auto r0 = w::publish(cache_path(), users0, groups0, false);
    assert_true(r0.has_value());
    std::atomic<bool> done{false};
    std::atomic<long> checked{0}, bad{0}, seen[2] = {0, 0};
    std::vector<std::thread> readers;
    for (int t = 0; t < kReaders; ++t) {
        readers.emplace_back([&, t] {
            unsigned seed = static_cast<unsigned>(t);
            while (!done.load()) {
                int i = static_cast<int>(rand_r(&seed) % kRaceUsers);
                std::uint32_t uid = 30000 + static_cast<std::uint32_t>(i);
                Pw p = (i % 2) ? getpwnam(("u" + std::to_string(i)).c_str()) : getpwuid(uid);
                if (p.st != NSS_STATUS_SUCCESS) {
                    ++bad;
                    continue;
                }
                std::string gecos = p.pw.pw_gecos;
                int gen = gecos == "uid=" + std::to_string(uid) + " gen=1" ? 1 : 0;
                if (gecos != "uid=" + std::to_string(uid) + " gen=" + std::to_string(gen) || p.pw.pw_uid != uid ||
                    p.pw.pw_gid != uid + 1 || std::string(p.pw.pw_dir) != "/home/" + gecos ||
                    std::string(p.pw.pw_shell) != (gen ? "/bin/sh" : "/bin/bash") ||
                    std::string(p.pw.pw_name) != "u" + std::to_string(i))
                    ++bad;
                ++seen[gen];
                Gr g = getgrgid(uid);
                if (g.st != NSS_STATUS_SUCCESS || !g.gr.gr_mem[0] || !g.gr.gr_mem[1] || g.gr.gr_mem[2]) {
                    ++bad;
                    continue;
                }
                std::string gen_s(g.gr.gr_mem[1]);
                if (std::string(g.gr.gr_name) != "g" + std::to_string(i) + "-" + gen_s.substr(3) ||
                    std::string(g.gr.gr_mem[0]) != "u" + std::to_string(i) || (gen_s != "gen0" && gen_s != "gen1"))
                    ++bad;
                checked += 2;
            }
        });
    }
    for (int k = 1; k <= kPublications; ++k) {
        auto r = (k % 2) ? w::publish(cache_path(), users1, groups1, false)
                         : w::publish(cache_path(), users0, groups0, false);
        if (!r) {
            ++bad;
            break;
        }
    }
    done = true;
    for (auto& t : readers) t.join();
    std::printf("# %d publications, %ld records checked by %d readers (%ld of dataset 0, %ld of 1), %ld bad\n",
                kPublications, checked.load(), kReaders, seen[0].load(), seen[1].load(), bad.load());
    assert_int_equal(bad.load(), 0);
    assert_true(seen[0].load() > 0 && seen[1].load() > 0);  // the readers did see replacements
    assert_true(checked.load() > kPublications);
}

// Each test starts with no cache file; withdraw() marks the last one so the module lets go of it.
int setup(void**) {
    if (!w::withdraw(cache_path())) return -1;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(g_dir, ec)) std::filesystem::remove(e.path(), ec);
    return 0;
}

}  // namespace

int main() {
    char tmpl[] = "/tmp/cvat-nss-mc.XXXXXX";
    if (!mkdtemp(tmpl)) {
        std::printf("Bail out! mkdtemp: %s\n", std::strerror(errno));
        return 1;
    }
    g_dir = tmpl;
    // The module finds nss.mc beside the socket; no daemon listens there.
    setenv("CVAT_AUTH_SOCKET", (g_dir + "/socket").c_str(), 1);
    unsetenv("CVAT_NSS_DISABLE");
    g_nss = cvat::test::NssModule::load();
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip, setup),
        cmocka_unit_test_setup(test_small_buffer, setup),
        cmocka_unit_test_setup(test_expired_is_miss, setup),
        cmocka_unit_test_setup(test_replacement_noticed, setup),
        cmocka_unit_test_setup(test_slot_withdrawal_overtakes, setup),
        cmocka_unit_test_setup(test_slot_groups_joined, setup),
        cmocka_unit_test_setup(test_writer_skips_bad_entries, setup),
        cmocka_unit_test_setup(test_corrupt_files_are_misses, setup),
        cmocka_unit_test_setup(test_large_group, setup),
        cmocka_unit_test_setup(test_member_count_mismatch, setup),
        cmocka_unit_test_setup(test_enumeration_flag, setup),
        cmocka_unit_test_setup(test_republish_race, setup),
    };
    int failed = cmocka_run_group_tests_name("nss.mc writer and reader", tests, nullptr, nullptr);
    std::filesystem::remove_all(g_dir);
    return failed;
}
