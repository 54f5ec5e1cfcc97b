// SPDX-License-Identifier: GPL-3.0-or-later
// helper/cache_store: every field round-trips, lookups by name and uid, expiry, flush,
// negative entries, file modes, refusals naming the path, a corrupt file moved aside, a newer
// schema left alone, concurrent callers, and crash safety: a writer SIGKILLed at random
// moments never loses a write it reported as committed, and the file stays intact.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache_store.hpp"
#include "fixture.hpp"

#include "cmocka.hpp"

using namespace cvat::helper;
using cvat::ErrorCode;
using cvat::proto::Role;
using cvat::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<CacheStore> open_store(const std::string& dir) {
    auto s = CacheStore::open(dir);
    if (!s) fail_msg("open %s: %s", dir.c_str(), s.error().detail.c_str());
    return std::move(*s);
}

CachedUser sample_user(const std::string& name, std::uint32_t uid) {
    CachedUser u;
    u.name = name;
    u.backend = "ldap";
    u.immutable_id = "sid:S-1-5-21-1004336348-1177238915-682003330-" + std::to_string(uid);
    u.uid = uid;
    u.gid = uid + 1;
    u.gecos = "Alice Liddell,Room 1";
    u.home = "/home/" + name;
    u.shell = "/bin/bash";
    u.role = Role::admin;
    u.email = name + "@example.com";
    u.first_name = "Alice";
    u.last_name = "Liddell";
    u.dn = "CN=" + name + ",CN=Users,DC=ad,DC=example,DC=com";
    u.groups = {{"cvat-admins", 5001}, {"Domain Users", 5002}, {"grp with ü", 4294967295u}};
    u.provisional = true;
    u.fetched_at = 1700000000;
    u.expires_at = 1700003600;
    return u;
}

void expect_same(const CachedUser& a, const CachedUser& b) {
    assert_string_equal(a.name.c_str(), b.name.c_str());
    assert_string_equal(a.backend.c_str(), b.backend.c_str());
    assert_string_equal(a.immutable_id.c_str(), b.immutable_id.c_str());
    assert_int_equal(a.uid, b.uid);
    assert_int_equal(a.gid, b.gid);
    assert_string_equal(a.gecos.c_str(), b.gecos.c_str());
    assert_string_equal(a.home.c_str(), b.home.c_str());
    assert_string_equal(a.shell.c_str(), b.shell.c_str());
    assert_int_equal(static_cast<int>(a.role), static_cast<int>(b.role));
    assert_string_equal(a.email.c_str(), b.email.c_str());
    assert_string_equal(a.first_name.c_str(), b.first_name.c_str());
    assert_string_equal(a.last_name.c_str(), b.last_name.c_str());
    assert_string_equal(a.dn.c_str(), b.dn.c_str());
    assert_int_equal(a.groups.size(), b.groups.size());
    for (std::size_t i = 0; i < a.groups.size(); ++i) {
        assert_string_equal(a.groups[i].first.c_str(), b.groups[i].first.c_str());
        assert_int_equal(a.groups[i].second, b.groups[i].second);
    }
    assert_int_equal(a.provisional, b.provisional);
    assert_int_equal(a.fetched_at, b.fetched_at);
    assert_int_equal(a.expires_at, b.expires_at);
}

// PRAGMA integrity_check through a connection of our own, independent of CacheStore.
std::string integrity(const std::string& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        sqlite3_close(db);
        return "cannot open";
    }
    sqlite3_stmt* st = nullptr;
    std::string out = "no answer";
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

void sql(const std::string& path, const char* text) {
    sqlite3* db = nullptr;
    assert_int_equal(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    char* err = nullptr;
    if (sqlite3_exec(db, text, nullptr, nullptr, &err) != SQLITE_OK) fail_msg("%s: %s", text, err);
    sqlite3_close(db);
}

// The first column of the first row of `query`, as text ("" if none).
std::string sql_value(const std::string& path, const char* query) {
    sqlite3* db = nullptr;
    assert_int_equal(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, query, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0) != nullptr)
        out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

std::vector<std::string> corrupt_copies(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("cache.sqlite.corrupt-", 0) == 0 && n.find("-wal") == std::string::npos) out.push_back(e.path().string());
    }
    return out;
}

void test_round_trip(void**) {
    TempDir dir;
    const CachedUser alice = sample_user("alice", 1104);
    {
        auto s = open_store(dir.path());
        assert_true(s->put_user(alice).has_value());
        auto got = s->user_by_name("alice");
        assert_true(got.has_value() && got->has_value());
        expect_same(**got, alice);
    }
    auto s = open_store(dir.path());  // and after a reopen
    auto got = s->user_by_name("alice");
    expect_same(**got, alice);
    assert_false(s->user_by_name("Alice")->has_value());  // names compare exactly
    assert_false(s->user_by_name("alic")->has_value());
    // replace by name: fields and groups are the new ones
    CachedUser changed = alice;
    changed.role = Role::worker;
    changed.groups = {{"only", 7}};
    changed.provisional = false;
    assert_true(s->put_user(changed).has_value());
    expect_same(**s->user_by_name("alice"), changed);
    // empty optional fields and no groups
    CachedUser bare;
    bare.name = "bare";
    bare.uid = 42;
    assert_true(s->put_user(bare).has_value());
    expect_same(**s->user_by_name("bare"), bare);
    // refusals
    CachedUser nameless = bare;
    nameless.name.clear();
    assert_false(s->put_user(nameless).has_value());
    CachedUser crowded = bare;
    crowded.groups.assign(cvat::proto::kMaxGroups + 1, {"g", 1});
    assert_false(s->put_user(crowded).has_value());
}

void test_by_uid_and_list(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    assert_true(s->put_user(sample_user("carol", 3000)).has_value());
    assert_true(s->put_user(sample_user("alice", 1000)).has_value());
    assert_true(s->put_user(sample_user("bob", 2000)).has_value());
    auto b = s->user_by_uid(2000);
    assert_true(b->has_value());
    assert_string_equal((*b)->name.c_str(), "bob");
    assert_int_equal((*b)->groups.size(), 3);
    assert_false(s->user_by_uid(2001)->has_value());
    // a renamed user leaves an old row with the same uid: the newest fetch wins
    CachedUser renamed = sample_user("robert", 2000);
    renamed.fetched_at += 10;
    assert_true(s->put_user(renamed).has_value());
    assert_string_equal((*s->user_by_uid(2000))->name.c_str(), "robert");
    auto all = s->users(100);
    assert_int_equal(all->size(), 4);
    assert_string_equal((*all)[0].name.c_str(), "alice");  // ordered by name
    assert_string_equal((*all)[3].name.c_str(), "robert");
    assert_int_equal((*all)[0].groups.size(), 3);
    assert_int_equal(s->users(2)->size(), 2);
    assert_int_equal(s->users(0)->size(), 0);
    // The listing reads every user's groups in one pass: each gets its own, in order.
    CachedUser dave = sample_user("dave", 4000);
    dave.groups = {{"z-last", 9}, {"a-first", 8}};
    CachedUser erin = sample_user("erin", 5000);
    erin.groups = {};
    assert_true(s->put_user(dave).has_value());
    assert_true(s->put_user(erin).has_value());
    all = s->users(100);
    assert_int_equal(all->size(), 6);
    for (const CachedUser& u : *all) {
        const std::size_t want = u.name == "dave" ? 2 : u.name == "erin" ? 0 : 3;
        if (u.groups.size() != want) fail_msg("%s: %zu groups", u.name.c_str(), u.groups.size());
    }
    assert_string_equal((*all)[3].groups[0].first.c_str(), "z-last");  // alice bob carol dave ...
    assert_int_equal((*all)[3].groups[1].second, 8);
    auto two = s->users(2);  // alice, bob: the other users' group rows are skipped
    assert_int_equal((*two)[1].groups.size(), 3);
}

void test_negative(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    assert_true(s->put_negative("user", "ghost", 1000).has_value());
    assert_true(s->put_negative("uid", "4242", 1000).has_value());
    assert_true(s->put_negative("group", "nogroup", 1000).has_value());
    assert_true(s->put_negative("gid", "5001", 1000).has_value());
    assert_true(*s->negative("user", "ghost", 999));
    assert_false(*s->negative("user", "ghost", 1000));  // expired at expires_at
    assert_false(*s->negative("uid", "ghost", 999));     // kinds are separate
    assert_false(*s->negative("user", "other", 999));
    assert_true(*s->negative("gid", "5001", 0));
    assert_false(s->put_negative("host", "x", 1000).has_value());
    assert_false(s->negative("host", "x", 0).has_value());
    assert_false(s->put_negative("user", "", 1000).has_value());
    // put_user clears the name, the uid and the user's groups
    CachedUser ghost = sample_user("ghost", 4242);
    ghost.groups = {{"nogroup", 5001}};
    assert_true(s->put_user(ghost).has_value());
    assert_false(*s->negative("user", "ghost", 0));
    assert_false(*s->negative("uid", "4242", 0));
    assert_false(*s->negative("group", "nogroup", 0));
    assert_false(*s->negative("gid", "5001", 0));
    // re-putting moves the expiry
    assert_true(s->put_negative("user", "x", 10).has_value());
    assert_true(s->put_negative("user", "x", 20).has_value());
    assert_true(*s->negative("user", "x", 15));
}

void test_expire_and_flush(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    assert_true(s->put_user(sample_user("alice", 1000)).has_value());
    assert_true(s->put_user(sample_user("bob", 2000)).has_value());
    assert_true(s->put_negative("user", "alice", 5000).has_value());  // stale, but it shows the drop
    assert_true(s->put_negative("uid", "1000", 5000).has_value());
    assert_true(s->put_negative("user", "ghost", 5000).has_value());
    auto n = s->expire("alice");
    if (!n) fail_msg("expire: %s", n.error().detail.c_str());
    assert_int_equal(*n, 1);
    assert_int_equal((*s->user_by_name("alice"))->expires_at, 0);
    assert_int_equal((*s->user_by_name("alice"))->groups.size(), 3);  // still served (stale)
    assert_int_equal((*s->user_by_name("bob"))->expires_at, 1700003600);
    assert_false(*s->negative("user", "alice", 0));
    assert_false(*s->negative("uid", "1000", 0));
    assert_true(*s->negative("user", "ghost", 0));
    assert_int_equal(*s->expire("nobody"), 0);
    assert_int_equal(*s->expire(""), 2);
    assert_int_equal((*s->user_by_name("bob"))->expires_at, 0);
    assert_false(*s->negative("user", "ghost", 0));

    const auto id = s->assign_id("uuid:keep-me", IdRange{100000, 200000}, {});
    assert_true(id.has_value());
    OfflineEntry e;
    e.name = "alice";
    e.hash = "$argon2id$...";
    assert_true(s->put_offline(e).has_value());
    assert_true(s->put_negative("user", "ghost", 5000).has_value());
    assert_true(s->flush().has_value());
    assert_false(s->user_by_name("alice")->has_value());
    assert_int_equal(s->users(10)->size(), 0);
    assert_false(*s->negative("user", "ghost", 0));
    assert_false(s->offline("alice")->has_value());
    assert_int_equal(**s->recorded_id("uuid:keep-me"), *id);  // IDs stay stable
    assert_true(s->check_integrity().has_value());
}

void test_files_and_modes(void**) {
    TempDir base;
    const std::string dir = base.path() + "/cache";
    auto s = open_store(dir);
    assert_true(s->put_user(sample_user("alice", 1000)).has_value());
    struct stat st{};
    assert_int_equal(::stat(dir.c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(::stat((dir + "/cache.sqlite").c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(::stat((dir + "/cache.sqlite-wal").c_str(), &st), 0);  // WAL mode
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_string_equal(s->path().c_str(), (dir + "/cache.sqlite").c_str());
    s.reset();
    // an existing file readable by others is tightened
    assert_int_equal(::chmod((dir + "/cache.sqlite").c_str(), 0644), 0);
    s = open_store(dir);
    assert_int_equal(::stat((dir + "/cache.sqlite").c_str(), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_true(s->user_by_name("alice")->has_value());
}

void test_open_refusals_name_the_path(void**) {
    TempDir base;
    const std::string file = base.path() + "/plain";
    std::ofstream(file) << "x";
    auto r = CacheStore::open(file + "/cache");  // parent is not a directory
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::io));
    assert_non_null(std::strstr(r.error().detail.c_str(), (file + "/cache").c_str()));
    r = CacheStore::open(file);  // the directory is a file
    assert_false(r.has_value());
    assert_non_null(std::strstr(r.error().detail.c_str(), file.c_str()));
    assert_false(CacheStore::open("").has_value());
    // cache.sqlite is a directory
    const std::string dir = base.path() + "/d";
    assert_int_equal(::mkdir(dir.c_str(), 0700), 0);
    assert_int_equal(::mkdir((dir + "/cache.sqlite").c_str(), 0700), 0);
    r = CacheStore::open(dir);
    assert_false(r.has_value());
    assert_non_null(std::strstr(r.error().detail.c_str(), (dir + "/cache.sqlite").c_str()));
    if (::geteuid() != 0) {  // root writes anywhere; the cases above cover it
        const std::string ro = base.path() + "/ro";
        assert_int_equal(::mkdir(ro.c_str(), 0500), 0);
        r = CacheStore::open(ro);
        assert_false(r.has_value());
        assert_non_null(std::strstr(r.error().detail.c_str(), ro.c_str()));
    }
}

void test_corrupt_file_moved_aside(void**) {
    TempDir dir;
    const std::string path = dir.path() + "/cache.sqlite";
    {
        std::ofstream f(path, std::ios::binary);
        for (int i = 0; i < 200; ++i) f << "this is not an SQLite database, it is garbage ";
    }
    auto s = open_store(dir.path());
    auto aside = corrupt_copies(dir.path());
    assert_int_equal(aside.size(), 1);
    std::ifstream in(aside[0], std::ios::binary);
    std::string head(16, '\0');
    in.read(head.data(), 16);
    assert_string_equal(head.c_str(), "this is not an S");  // the garbage is kept for the admin
    assert_true(s->put_user(sample_user("alice", 1000)).has_value());
    assert_true(s->check_integrity().has_value());
    s.reset();

    // A real database whose pages after the first are overwritten.
    {
        auto s2 = open_store(dir.path());
        for (int i = 0; i < 200; ++i) assert_true(s2->put_user(sample_user("u" + std::to_string(i), 10000 + i)).has_value());
    }
    const auto size = fs::file_size(path);
    assert_true(size > 3 * 4096);
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(4096);
        const std::string junk(size - 4096, '\xa5');
        f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    s = open_store(dir.path());
    assert_true(corrupt_copies(dir.path()).size() >= 1);
    assert_false(s->user_by_name("alice")->has_value());  // a fresh, empty store
    assert_true(s->put_user(sample_user("alice", 1000)).has_value());
    assert_true(s->check_integrity().has_value());
}

// A group's members for the socket's getgrnam/getgrgid: a role's (not provisional, not expired
// by an admin) and a directory group's (by name or gid), ordered by name, at most `limit`.
void test_members(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    const int admin = static_cast<int>(Role::admin), user = static_cast<int>(Role::user);
    for (const char* n : {"carol", "alice", "bob", "dave"}) {
        CachedUser u = sample_user(n, 1000 + static_cast<std::uint32_t>(n[0]));
        u.provisional = std::string(n) == "dave";  // not a member of any role
        u.role = std::string(n) == "bob" ? Role::user : Role::admin;
        if (std::string(n) == "carol") u.groups = {{"Domain Users", 5002}};
        assert_true(s->put_user(u).has_value());
    }
    auto admins = s->role_members(admin, 10);
    assert_int_equal(admins->size(), 2);
    assert_string_equal((*admins)[0].c_str(), "alice");
    assert_string_equal((*admins)[1].c_str(), "carol");
    assert_int_equal(s->role_members(user, 10)->size(), 1);
    assert_int_equal(s->role_members(admin, 1)->size(), 1);
    auto by_name = s->group_members("Domain Users", 0, 10);
    assert_string_equal(by_name->name.c_str(), "Domain Users");
    assert_int_equal(by_name->gid, 5002);
    assert_int_equal(by_name->members.size(), 4);  // directory groups count provisional users too
    assert_string_equal(by_name->members[0].c_str(), "alice");
    auto by_gid = s->group_members("", 4294967295u, 10);
    assert_string_equal(by_gid->name.c_str(), "grp with ü");
    assert_int_equal(by_gid->members.size(), 3);  // carol's groups are her own
    assert_true(s->group_members("nobody's", 0, 10)->name.empty());
    // An admin's expire takes a user out of every member list.
    assert_int_equal(*s->expire("alice"), 1);
    assert_int_equal(s->role_members(admin, 10)->size(), 1);
    assert_int_equal(s->group_members("Domain Users", 0, 10)->members.size(), 3);
}

void test_newer_schema_refused(void**) {
    TempDir dir;
    assert_true(open_store(dir.path())->put_user(sample_user("alice", 1000)).has_value());
    sql(dir.path() + "/cache.sqlite", "UPDATE schema_version SET version = 999");
    auto r = CacheStore::open(dir.path());
    assert_false(r.has_value());
    assert_int_equal(static_cast<int>(r.error().code), static_cast<int>(ErrorCode::not_supported));
    assert_non_null(std::strstr(r.error().detail.c_str(), "999"));
    assert_int_equal(corrupt_copies(dir.path()).size(), 0);  // not discarded: it holds the ID map
    // A file of schema 1 (before the member indexes) is migrated, its rows kept.
    sql(dir.path() + "/cache.sqlite",
        "DROP INDEX users_by_role; DROP INDEX user_groups_by_name; DROP INDEX user_groups_by_gid; "
        "UPDATE schema_version SET version = 1");
    auto migrated = open_store(dir.path());
    assert_true(migrated->user_by_name("alice")->has_value());
    auto domain_users = migrated->group_members("Domain Users", 0, 10);
    assert_int_equal(domain_users->members.size(), 1);
    assert_int_equal(domain_users->gid, 5002);
    migrated.reset();  // the store's process is the file's only user while it is open
    assert_string_equal(sql_value(dir.path() + "/cache.sqlite", "SELECT version FROM schema_version").c_str(), "2");
    assert_string_equal(sql_value(dir.path() + "/cache.sqlite",
                                  "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                                  "('users_by_role', 'user_groups_by_name', 'user_groups_by_gid')").c_str(), "3");
}

void test_concurrent_callers(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    std::atomic<int> errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
                if (!s->put_user(sample_user(name, static_cast<std::uint32_t>(100000 + t * 1000 + i)))) ++errors;
                auto u = s->user_by_name(name);
                if (!u || !u->has_value() || (*u)->groups.size() != 3) ++errors;
                if (!s->assign_id("uuid:" + name, IdRange{100000, 900000}, {})) ++errors;
                if (!s->put_negative("user", "x" + name, 10)) ++errors;
            }
        });
    }
    for (auto& th : threads) th.join();
    assert_int_equal(errors.load(), 0);
    assert_int_equal(s->users(1000)->size(), 400);
}

// users() reads through a connection of its own: it sees every put_user that returned before it
// was called, and each user whole, as one commit left it (the row and its groups), while
// writers go on.
void test_listing_beside_writers(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    constexpr int kUsers = 200;
    auto version = [](const std::string& name, int v) {
        CachedUser u = sample_user(name, static_cast<std::uint32_t>(200000 + std::stoi(name.substr(1))));
        u.gecos = "v" + std::to_string(v);
        u.groups = {{"a" + std::to_string(v), 6000 + static_cast<std::uint32_t>(v)},
                    {"b" + std::to_string(v), 7000 + static_cast<std::uint32_t>(v)}};
        return u;
    };
    for (int i = 0; i < kUsers; ++i) assert_true(s->put_user(version("u" + std::to_string(i), 0)).has_value());
    std::atomic<bool> done{false};
    std::atomic<int> errors{0};
    std::thread writer([&] {
        for (int v = 1; v <= 20; ++v)
            for (int i = 0; i < kUsers; ++i)
                if (!s->put_user(version("u" + std::to_string(i), v))) ++errors;
        done = true;
    });
    int listings = 0;
    while (!done || listings < 3) {
        auto all = s->users(1000);
        if (!all) fail_msg("users(): %s", all.error().detail.c_str());
        ++listings;
        assert_int_equal(all->size(), kUsers);
        for (const auto& u : *all) {
            const std::string v = u.gecos.substr(1);
            if (u.groups.size() != 2 || u.groups[0].first != "a" + v || u.groups[1].first != "b" + v)
                fail_msg("%s listed as %s with groups of another write", u.name.c_str(), u.gecos.c_str());
        }
    }
    writer.join();
    assert_int_equal(errors.load(), 0);
    // A write that returned is in the next listing.
    assert_true(s->put_user(version("u7", 99)).has_value());
    auto after = s->users(1000);
    assert_true(after.has_value());
    for (const auto& u : *after)
        if (u.name == "u7") assert_string_equal(u.gecos.c_str(), "v99");
    print_message("# %d listings beside the writer\n", listings);
}

// Writes stay in the write-ahead log (no commit checkpoints below kWalBackstopPages) until
// checkpoint() copies them into the database file: a copy of that file alone then holds them.
void test_checkpoint(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    for (int i = 0; i < 50; ++i)
        assert_true(s->put_user(sample_user("c" + std::to_string(i), static_cast<std::uint32_t>(300000 + i))).has_value());
    auto copy_alone = [&](const std::string& to) {
        fs::create_directories(to);
        fs::copy_file(dir.path() + "/cache.sqlite", to + "/cache.sqlite", fs::copy_options::overwrite_existing);
        return sql_value(to + "/cache.sqlite", "SELECT count(*) FROM users");
    };
    assert_string_not_equal(copy_alone(dir.path() + "/before").c_str(), "50");
    assert_true(s->checkpoint().has_value());
    assert_string_equal(copy_alone(dir.path() + "/after").c_str(), "50");
    // Again, with nothing new: nothing to do, no error.
    assert_true(s->checkpoint().has_value());
}

// The child: writes users forever, reporting each name after put_user returned.
[[noreturn]] void crash_writer(const std::string& dir, int round, int out) {
    auto s = CacheStore::open(dir);
    if (!s) _exit(2);
    for (int i = 0;; ++i) {
        const std::string name = "r" + std::to_string(round) + "-" + std::to_string(i);
        if (!(*s)->put_user(sample_user(name, static_cast<std::uint32_t>(round * 1000000 + i)))) _exit(3);
        if (i % 5 == 0 && !(*s)->assign_id("uuid:" + name, IdRange{1000, 60000000}, {})) _exit(4);
        const std::string line = name + "\n";
        if (::write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
    }
}

void test_crash_safety(void**) {
    TempDir dir;
    const auto seed = static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count());
    std::mt19937 rng(seed);
    std::printf("# crash test seed %u\n", seed);
    std::set<std::string> committed;
    for (int round = 0; round < 10; ++round) {
        int fds[2];
        assert_int_equal(::pipe2(fds, O_CLOEXEC), 0);
        const pid_t pid = ::fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            ::close(fds[0]);
            crash_writer(dir.path(), round, fds[1]);
        }
        ::close(fds[1]);
        // Round 0 kills at once (during open/migration), later rounds up to 60 ms after the first write.
        const int delay_ms = round == 0 ? 0 : std::uniform_int_distribution<int>(1, 60)(rng);
        std::string buf;
        char chunk[4096];
        auto drain = [&](int timeout_ms) {
            pollfd p{fds[0], POLLIN, 0};
            if (::poll(&p, 1, timeout_ms) <= 0) return true;
            const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
            if (n <= 0) return false;  // EOF
            buf.append(chunk, static_cast<std::size_t>(n));
            return true;
        };
        // Later rounds first wait for the writer's first report (a slow build, ASan, a loaded
        // machine: the open alone may take longer than the delay), then kill it mid-stream.
        if (round > 0) {
            const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (buf.find('\n') == std::string::npos && std::chrono::steady_clock::now() < limit) drain(1);
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
        while (std::chrono::steady_clock::now() < deadline) drain(1);
        assert_int_equal(::kill(pid, SIGKILL), 0);
        while (drain(1000)) {
        }
        int status = 0;
        assert_int_equal(::waitpid(pid, &status, 0), pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            fail_msg("writer ended on its own (status %d) in round %d", status, round);
        ::close(fds[0]);
        // Only whole lines were reported; a torn last line was never written in full.
        std::size_t start = 0, nl;
        int reported = 0;
        while ((nl = buf.find('\n', start)) != std::string::npos) {
            committed.insert(buf.substr(start, nl - start));
            start = nl + 1;
            ++reported;
        }
        std::printf("# round %d: killed after %d ms, %d writes reported\n", round, delay_ms, reported);

        auto s = open_store(dir.path());
        for (const auto& name : committed)
            if (!s->user_by_name(name)->has_value()) fail_msg("round %d lost committed user %s", round, name.c_str());
        assert_true(s->check_integrity().has_value());
        s.reset();
        const std::string check = integrity(dir.path() + "/cache.sqlite");
        if (check != "ok") fail_msg("integrity_check after round %d: %s", round, check.c_str());
    }
    assert_true(committed.size() > 0);
    assert_int_equal(corrupt_copies(dir.path()).size(), 0);
}

// same_as_stored answers from what the store wrote or read last, and only while the row is
// known to hold the same facts: a change to any field but the times, an expiry (one user or
// all), a flush, or another process's store (nothing read yet) makes it say "read the row".
void test_same_as_stored(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    CachedUser alice = sample_user("alice", 1000);
    assert_false(s->same_as_stored(alice).has_value());
    assert_true(s->put_user(alice).has_value());
    CachedUser again = alice;
    again.fetched_at = 1;  // the times are not facts
    again.expires_at = 2;
    auto t = s->same_as_stored(again);
    assert_true(t.has_value());
    assert_int_equal(t->fetched_at, alice.fetched_at);
    assert_int_equal(t->expires_at, alice.expires_at);
    // Each fact counts, a group's gid and order too.
    auto changed = [&](auto edit) {
        CachedUser u = alice;
        edit(u);
        return !s->same_as_stored(u).has_value();
    };
    assert_true(changed([](CachedUser& u) { u.role = Role::user; }));
    assert_true(changed([](CachedUser& u) { u.uid += 1; }));
    assert_true(changed([](CachedUser& u) { u.gid += 1; }));
    assert_true(changed([](CachedUser& u) { u.email += "x"; }));
    assert_true(changed([](CachedUser& u) { u.home = "/home/other"; }));
    assert_true(changed([](CachedUser& u) { u.dn += "x"; }));
    assert_true(changed([](CachedUser& u) { u.provisional = false; }));
    assert_true(changed([](CachedUser& u) { u.groups.pop_back(); }));
    assert_true(changed([](CachedUser& u) { u.groups[0].second += 1; }));
    assert_true(changed([](CachedUser& u) { std::swap(u.groups[0], u.groups[1]); }));
    // Fields are length-prefixed: moving a byte from one to the next is a change.
    assert_true(changed([](CachedUser& u) {
        u.first_name = "Alic";
        u.last_name = "eLiddell";
    }));
    // A rewrite with other facts is what it remembers then.
    CachedUser demoted = alice;
    demoted.role = Role::worker;
    assert_true(s->put_user(demoted).has_value());
    assert_false(s->same_as_stored(alice).has_value());
    assert_true(s->same_as_stored(demoted).has_value());
    // Expired by an admin: read the row (it says expires_at 0).
    assert_true(s->expire("alice").has_value());
    assert_false(s->same_as_stored(demoted).has_value());
    assert_true(s->put_user(alice).has_value());
    assert_true(s->put_user(sample_user("bob", 2000)).has_value());
    assert_true(s->expire("").has_value());
    assert_false(s->same_as_stored(alice).has_value());
    assert_false(s->same_as_stored(sample_user("bob", 2000)).has_value());
    assert_true(s->put_user(alice).has_value());
    assert_true(s->flush().has_value());
    assert_false(s->same_as_stored(alice).has_value());
    // A store opened on an existing file knows a row once it has read it.
    assert_true(s->put_user(alice).has_value());
    s.reset();
    auto reopened = open_store(dir.path());
    assert_false(reopened->same_as_stored(alice).has_value());
    auto row = reopened->user_by_name("alice");
    assert_true(row && *row);
    assert_true(reopened->same_as_stored(alice).has_value());
}

// Another process, reading the file as the store's own connections do, through SQLite (run
// as this program with --probe PATH): 0 if it was locked out, 1 if it read the users, 2 else.
int probe_from_another_process(const std::string& path, const char* mode = "--probe") {
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_cache_store", mode, path.c_str(), static_cast<char*>(nullptr));
        _exit(3);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

int probe(const char* path) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "SELECT count(*) FROM users", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    return (rc & 0xff) == SQLITE_BUSY ? 0 : rc == SQLITE_OK ? 1 : 2;
}

// The daemon is the cache's one process (unix-excl): while a store is open, after writes, a
// listing and a checkpoint (each on a connection of its own), another process cannot use the
// file, which would keep a write-ahead log index of its own beside the store's in memory.
void test_other_process_locked_out(void**) {
    TempDir dir;
    auto s = open_store(dir.path());
    assert_true(s->put_user(sample_user("alice", 1000)).has_value());
    assert_true(s->users(10).has_value());
    assert_true(s->checkpoint().has_value());
    assert_true(s->put_user(sample_user("bob", 2000)).has_value());
    assert_true(s->users(10).has_value());
    const std::string path = dir.path() + "/cache.sqlite";
    assert_int_equal(probe_from_another_process(path), 0);
    // A second daemon on the same directory is told why it cannot start.
    assert_int_equal(probe_from_another_process(dir.path(), "--open"), 0);
    s.reset();
    assert_int_equal(probe_from_another_process(path), 1);  // free once the store is closed
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "--probe") == 0) return probe(argv[2]);
    if (argc == 3 && std::strcmp(argv[1], "--open") == 0) {
        auto other = CacheStore::open(argv[2]);
        return !other && std::strstr(other.error().detail.c_str(), "in use by another process") != nullptr ? 0 : 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_by_uid_and_list),
        cmocka_unit_test(test_negative),
        cmocka_unit_test(test_expire_and_flush),
        cmocka_unit_test(test_files_and_modes),
        cmocka_unit_test(test_open_refusals_name_the_path),
        cmocka_unit_test(test_corrupt_file_moved_aside),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_listing_beside_writers),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_crash_safety),
        cmocka_unit_test(test_same_as_stored),
        cmocka_unit_test(test_other_process_locked_out),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
