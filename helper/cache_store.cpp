// SPDX-License-Identifier: GPL-3.0-or-later
#include "cache_store.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>

#include <fcntl.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.hpp"
#include "unique_fd.hpp"

namespace cvat::helper {

namespace {

constexpr const char* kFileName = "cache.sqlite";
// How long a statement waits for a lock held by another connection (the `cache` tool, a
// second daemon by mistake) before failing: long enough for any of our transactions.
constexpr int kBusyTimeoutMs = 5000;
// Counters read back from a file are clamped so arithmetic on them cannot overflow.
constexpr std::int64_t kMaxFailures = 1000000;

// Schema migrations, applied in order inside one transaction that also records the new
// version. To change the schema append an entry; never edit one that has been released.
struct Migration {
    int version;
    const char* sql;
};
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE users(
    name TEXT PRIMARY KEY NOT NULL, backend TEXT NOT NULL, immutable_id TEXT NOT NULL,
    uid INTEGER NOT NULL, gid INTEGER NOT NULL, gecos TEXT NOT NULL, home TEXT NOT NULL,
    shell TEXT NOT NULL, role INTEGER NOT NULL, email TEXT NOT NULL, first_name TEXT NOT NULL,
    last_name TEXT NOT NULL, dn TEXT NOT NULL, provisional INTEGER NOT NULL,
    fetched_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX users_by_uid ON users(uid);
CREATE TABLE user_groups(
    user TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL, gid INTEGER NOT NULL,
    PRIMARY KEY(user, position));
CREATE TABLE negative(
    kind TEXT NOT NULL, key TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY(kind, key));
CREATE TABLE idmap(
    immutable_id TEXT PRIMARY KEY NOT NULL, id INTEGER NOT NULL UNIQUE, assigned_at INTEGER NOT NULL);
CREATE TABLE id_collisions(
    immutable_id TEXT NOT NULL, k INTEGER NOT NULL, id INTEGER NOT NULL, holder TEXT NOT NULL,
    at INTEGER NOT NULL, PRIMARY KEY(immutable_id, id));
CREATE TABLE offline(
    name TEXT PRIMARY KEY NOT NULL, backend TEXT NOT NULL, hash TEXT NOT NULL, role INTEGER NOT NULL,
    email TEXT NOT NULL, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
    stored_at INTEGER NOT NULL, failures INTEGER NOT NULL, next_try_at INTEGER NOT NULL);
)sql"},
    // getgrnam/getgrgid through the socket ask for a group's members, not for every user.
    {2, R"sql(
CREATE INDEX users_by_role ON users(role, name);
CREATE INDEX user_groups_by_name ON user_groups(name);
CREATE INDEX user_groups_by_gid ON user_groups(gid);
)sql"},
};
constexpr int kSchemaVersion = kMigrations[std::size(kMigrations) - 1].version;

#define USER_COLUMNS                                                                           \
    "name, backend, immutable_id, uid, gid, gecos, home, shell, role, email, first_name, "     \
    "last_name, dn, provisional, fetched_at, expires_at"

enum Q : std::size_t {
    q_begin,
    q_commit,
    q_rollback,
    q_begin_read,
    q_user_put,
    q_groups_delete,
    q_group_put,
    q_user_by_name,
    q_user_by_uid,
    q_users,
    q_groups_of,
    q_groups_all,
    q_role_members,
    q_group_members_by_name,
    q_group_members_by_gid,
    q_uid_of,
    q_negative_put,
    q_negative_get,
    q_negative_delete,
    q_negative_clear,
    q_expire_one,
    q_expire_all,
    q_idmap_get,
    q_idmap_holder,
    q_idmap_put,
    q_collision_put,
    q_collisions,
    q_offline_put,
    q_offline_get,
    q_offline_failures,
    q_offline_set_failures,
    q_offline_drop,
    q_count,
};

constexpr std::array<const char*, q_count> kSql = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    // A read of several statements sees one snapshot and takes the WAL read lock once (each
    // statement of its own takes and drops it: two fcntl calls per statement).
    "BEGIN DEFERRED",
    "INSERT OR REPLACE INTO users(" USER_COLUMNS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "DELETE FROM user_groups WHERE user = ?",
    "INSERT INTO user_groups(user, position, name, gid) VALUES(?,?,?,?)",
    "SELECT " USER_COLUMNS " FROM users WHERE name = ?",
    "SELECT " USER_COLUMNS " FROM users WHERE uid = ? ORDER BY fetched_at DESC, name LIMIT 1",
    "SELECT " USER_COLUMNS " FROM users ORDER BY name LIMIT ?",
    "SELECT name, gid FROM user_groups WHERE user = ? ORDER BY position",
    "SELECT user, name, gid FROM user_groups ORDER BY user, position",
    "SELECT name FROM users WHERE role = ? AND provisional = 0 AND expires_at > 0 ORDER BY name LIMIT ?",
    "SELECT DISTINCT g.name, g.gid, u.name FROM user_groups g JOIN users u ON u.name = g.user "
    "WHERE g.name = ? AND u.expires_at > 0 ORDER BY u.name LIMIT ?",
    "SELECT DISTINCT g.name, g.gid, u.name FROM user_groups g JOIN users u ON u.name = g.user "
    "WHERE g.gid = ? AND u.expires_at > 0 ORDER BY u.name LIMIT ?",
    "SELECT uid FROM users WHERE name = ?",
    "INSERT OR REPLACE INTO negative(kind, key, expires_at) VALUES(?,?,?)",
    "SELECT expires_at FROM negative WHERE kind = ? AND key = ?",
    "DELETE FROM negative WHERE kind = ? AND key = ?",
    "DELETE FROM negative",
    "UPDATE users SET expires_at = 0 WHERE name = ?",
    "UPDATE users SET expires_at = 0",
    "SELECT id FROM idmap WHERE immutable_id = ?",
    "SELECT immutable_id FROM idmap WHERE id = ?",
    "INSERT INTO idmap(immutable_id, id, assigned_at) VALUES(?,?,?)",
    "INSERT OR IGNORE INTO id_collisions(immutable_id, k, id, holder, at) VALUES(?,?,?,?,?)",
    "SELECT immutable_id, k, id, holder, at FROM id_collisions ORDER BY at, immutable_id, k LIMIT ?",
    "INSERT OR REPLACE INTO offline(name, backend, hash, role, email, first_name, last_name, stored_at, "
    "failures, next_try_at) VALUES(?,?,?,?,?,?,?,?,0,0)",
    "SELECT name, backend, hash, role, email, first_name, last_name, stored_at, failures, next_try_at "
    "FROM offline WHERE name = ?",
    "SELECT failures FROM offline WHERE name = ?",
    "UPDATE offline SET failures = ?, next_try_at = ? WHERE name = ?",
    "DELETE FROM offline WHERE name = ?",
};

bool is_corruption(int rc) {
    const int primary = rc & 0xff;
    return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

// One use of a prepared statement: binds left to right, steps, reads columns, and resets
// the statement when it goes out of scope. A failed bind makes step() return its code.
class Use {
public:
    explicit Use(sqlite3_stmt* s) : s_(s) {}
    ~Use() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

    Use& text(std::string_view v) {
        keep(sqlite3_bind_text(s_, ++n_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
        return *this;
    }
    Use& integer(std::int64_t v) {
        keep(sqlite3_bind_int64(s_, ++n_, v));
        return *this;
    }
    // SQLITE_ROW, SQLITE_DONE or an error code.
    int step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(s_); }

    std::string col_text(int i) const {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
        return p == nullptr ? std::string() : std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i)));
    }
    std::int64_t col_int(int i) const { return sqlite3_column_int64(s_, i); }

private:
    void keep(int rc) {
        if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    }
    sqlite3_stmt* s_;
    int n_ = 0;
    int bind_rc_ = SQLITE_OK;
};

bool valid_kind(std::string_view kind) {
    return kind == "user" || kind == "uid" || kind == "group" || kind == "gid";
}

proto::Role role_from(std::int64_t v) {
    // A value this build does not know grants nothing.
    return v >= 0 && v <= proto::kRoleMax ? static_cast<proto::Role>(v) : proto::Role::none;
}

bool id_from(std::int64_t v, std::uint32_t& out) {
    if (v < 0 || v > std::int64_t{UINT32_MAX}) return false;
    out = static_cast<std::uint32_t>(v);
    return true;
}

std::string errno_text(int e) { return std::strerror(e); }

struct DbCloser {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct OpenFailure {
    Error error;
    bool corrupt = false;
};

Error db_error(sqlite3* db, const std::string& path, const char* what) {
    return Error{ErrorCode::io, path + ": " + what + ": " + sqlite3_errmsg(db)};
}

// Runs one or more statements that return no rows (PRAGMAs that do return a row are read
// with single_value()).
int exec(sqlite3* db, const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }

// First column of the first row of `sql` as text; rc receives SQLite's code.
std::string single_value(sqlite3* db, const char* sql, int& rc) {
    sqlite3_stmt* raw = nullptr;
    rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
    if (rc != SQLITE_OK) return {};
    std::string out;
    rc = sqlite3_step(raw);
    if (rc == SQLITE_ROW) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
        if (p != nullptr) out = p;
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(raw);
    return out;
}

tl::unexpected<OpenFailure> failure(Error e, bool corrupt = false) {
    return tl::unexpected<OpenFailure>(OpenFailure{std::move(e), corrupt});
}

tl::unexpected<OpenFailure> open_failed(sqlite3* db, const std::string& path, const char* what, int rc) {
    if ((rc & 0xff) == SQLITE_BUSY)
        return failure(Error{ErrorCode::io, path + ": in use by another process (another cvat-authd with the same "
                                                   "helper.cache_dir?): the running daemon holds its cache locked"});
    return failure(db_error(db, path, what), is_corruption(rc));
}

// Brings the schema to kSchemaVersion in one transaction.
tl::expected<void, OpenFailure> migrate(sqlite3* db, const std::string& path) {
    int rc = exec(db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) return open_failed(db, path, "cannot begin the schema transaction", rc);
    auto rollback = [&](const char* what) {
        auto r = open_failed(db, path, what, sqlite3_extended_errcode(db));
        exec(db, "ROLLBACK");
        return r;
    };
    if (exec(db, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)") != SQLITE_OK)
        return rollback("cannot create the schema_version table");
    std::string v = single_value(db, "SELECT version FROM schema_version", rc);
    if (rc != SQLITE_OK) return rollback("cannot read the schema version");
    int version = 0;
    if (v.empty()) {
        if (exec(db, "INSERT INTO schema_version(version) VALUES(0)") != SQLITE_OK)
            return rollback("cannot record the schema version");
    } else {
        version = std::atoi(v.c_str());
    }
    if (version > kSchemaVersion) {
        exec(db, "ROLLBACK");
        return tl::unexpected<OpenFailure>(OpenFailure{
            Error{ErrorCode::not_supported, path + ": schema version " + std::to_string(version) +
                                                " is newer than this cvat-authd knows (" +
                                                std::to_string(kSchemaVersion) + "); not touching it"},
            false});
    }
    for (const auto& m : kMigrations) {
        if (m.version <= version) continue;
        if (exec(db, m.sql) != SQLITE_OK) return rollback("schema migration failed");
        const std::string set = "UPDATE schema_version SET version = " + std::to_string(m.version);
        if (exec(db, set.c_str()) != SQLITE_OK) return rollback("cannot record the schema version");
        if (version != 0) log::info("cache: ", path, " migrated to schema version ", std::to_string(m.version));
    }
    if (exec(db, "COMMIT") != SQLITE_OK) return rollback("cannot commit the schema");
    return {};
}

// The daemon is the cache's one process: SQLite's "unix-excl" VFS holds an exclusive lock on
// the file for as long as a connection of this process has it open (another process, a second
// daemon on the same cache_dir, cannot use it meanwhile) and keeps the write-ahead log's index
// in memory instead of a -shm file, so the daemon's connections coordinate without a lock
// system call per transaction (2 per read, 8 per write with the default VFS).
constexpr const char* kVfs = "unix-excl";

// Opens, configures and checks the database file; corrupt == the file must be moved aside.
tl::expected<DbPtr, OpenFailure> open_db(const std::string& path) {
    // Create the file ourselves so it is 0600 from the first byte; SQLite gives the -wal and
    // -shm files the same mode.
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) {
        const int err = errno;
        return failure(Error{ErrorCode::io, "cannot open " + path + ": " + errno_text(err)});
    }
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
        return failure(Error{ErrorCode::io, path + " is not a regular file"});
    if ((st.st_mode & 077) != 0) {
        log::warning("cache: ", path, " was readable by others; setting mode 0600");
        if (::fchmod(fd.get(), 0600) != 0) {
            const int err = errno;
            return failure(Error{ErrorCode::io, "cannot chmod " + path + ": " + errno_text(err)});
        }
    }
    fd.reset();

    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &raw,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                             kVfs);
    DbPtr db(raw);
    if (rc != SQLITE_OK) {
        std::string why = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
        return failure(Error{ErrorCode::io, "cannot open " + path + ": " + why}, is_corruption(rc));
    }
    sqlite3_extended_result_codes(db.get(), 1);
    sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
    // The first statement reads the header: a file that is not a database fails here.
    std::string mode = single_value(db.get(), "PRAGMA journal_mode=WAL", rc);
    if (rc != SQLITE_OK) return open_failed(db.get(), path, "cannot read the database", rc);
    if (mode != "wal")
        return failure(Error{ErrorCode::io, path + ": cannot switch to WAL mode (got " + mode + ")"});
    // NORMAL in WAL mode: a commit survives the process dying at any moment (kill -9, a
    // crash) and the file is never corrupted; only a power cut may lose the last commits
    // before a checkpoint, and every entry here can be fetched again (IDs are re-derived from
    // the same hash). FULL would add an fsync to every cold lookup.
    // Checkpoints are the daemon's background work (checkpoint()); a commit makes one only if
    // the log has grown past the backstop (the publisher stuck, or a program that never calls
    // checkpoint()), and the log file is cut back to 16 MiB after one.
    const std::string wal_limits = "PRAGMA wal_autocheckpoint=" + std::to_string(CacheStore::kWalBackstopPages) +
                                   "; PRAGMA journal_size_limit=16777216";
    if ((rc = exec(db.get(), wal_limits.c_str())) != SQLITE_OK)
        return open_failed(db.get(), path, "cannot set the write-ahead log's limits", rc);
    if ((rc = exec(db.get(), "PRAGMA synchronous=NORMAL")) != SQLITE_OK)
        return open_failed(db.get(), path, "cannot set synchronous=NORMAL", rc);
    std::string check = single_value(db.get(), "PRAGMA quick_check", rc);
    if (rc != SQLITE_OK) return open_failed(db.get(), path, "quick_check failed", rc);
    if (check != "ok")
        return failure(Error{ErrorCode::io, path + ": quick_check: " + log_safe(check)}, true);
    if (auto m = migrate(db.get(), path); !m) return tl::unexpected<OpenFailure>(m.error());
    return db;
}

// Renames a corrupt file (and its WAL) to <path>.corrupt-<unix time>[.N]; drops the -shm.
Result<std::string> move_aside(const std::string& path) {
    const std::string base = path + ".corrupt-" + std::to_string(std::time(nullptr));
    std::string aside = base;
    struct stat st{};
    for (int n = 1; ::lstat(aside.c_str(), &st) == 0; ++n) {
        if (n > 100) return fail(ErrorCode::io, "cannot find a free name to move " + path + " aside");
        aside = base + "." + std::to_string(n);
    }
    if (::rename(path.c_str(), aside.c_str()) != 0) {
        const int e = errno;
        return fail(ErrorCode::io, "cannot move corrupt " + path + " aside: " + errno_text(e));
    }
    ::rename((path + "-wal").c_str(), (aside + "-wal").c_str());  // may not exist
    ::unlink((path + "-shm").c_str());
    return aside;
}

Result<void> ensure_dir(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0700) == 0) return {};
    const int e = errno;
    struct stat st{};
    if (e != EEXIST) return fail(ErrorCode::io, "cannot create cache directory " + dir + ": " + errno_text(e));
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return fail(ErrorCode::io, "cache directory " + dir + " is not a directory");
    if ((st.st_mode & 022) != 0) log::warning("cache: directory ", dir, " is writable by others");
    return {};
}

}  // namespace

struct CacheStore::Statements {
    std::array<sqlite3_stmt*, q_count> s{};
    ~Statements() {
        for (auto* p : s) sqlite3_finalize(p);
    }
    sqlite3_stmt* operator[](Q q) const { return s[q]; }
};

namespace {

// BEGIN IMMEDIATE ... COMMIT, rolled back if commit() was not reached.
class Transaction {
public:
    Transaction(sqlite3_stmt* begin, sqlite3_stmt* commit, sqlite3_stmt* rollback)
        : commit_(commit), rollback_(rollback), began_(Use(begin).step() == SQLITE_DONE) {}
    ~Transaction() {
        if (began_ && !done_) Use(rollback_).step();
    }
    bool began() const { return began_; }
    bool commit() {
        done_ = Use(commit_).step() == SQLITE_DONE;
        return done_;
    }

private:
    sqlite3_stmt* commit_;
    sqlite3_stmt* rollback_;
    bool began_;
    bool done_ = false;
};

}  // namespace

CacheStore::CacheStore(std::string path, sqlite3* db)
    : path_(std::move(path)), db_(db), st_(std::make_unique<Statements>()), list_st_(std::make_unique<Statements>()) {}

CacheStore::~CacheStore() {
    st_.reset();  // statements before the connection
    list_st_.reset();
    sqlite3_close_v2(checkpoint_db_);
    sqlite3_close_v2(list_db_);
    sqlite3_close_v2(db_);
}

Result<void> CacheStore::prepare() {
    for (std::size_t i = 0; i < q_count; ++i) {
        if (sqlite3_prepare_v3(db_, kSql[i], -1, SQLITE_PREPARE_PERSISTENT, &st_->s[i], nullptr) != SQLITE_OK)
            return tl::unexpected<Error>(db_error(db_, path_, "cannot prepare a statement"));
    }
    // A second connection to the same file, opened once the main one has made (or migrated)
    // the schema, with a page cache of cache_kib KiB.
    auto open_extra = [this](sqlite3*& db, int flags, int cache_kib, const char* why) -> Result<void> {
        int rc = sqlite3_open_v2(path_.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, kVfs);
        if (rc != SQLITE_OK) {
            if (db == nullptr) return fail(ErrorCode::io, "cannot open " + path_ + " " + why + ": " + sqlite3_errstr(rc));
            return tl::unexpected<Error>(db_error(db, path_, "cannot open the database"));
        }
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, kBusyTimeoutMs);
        const std::string cache = "PRAGMA cache_size=-" + std::to_string(cache_kib);
        if (exec(db, cache.c_str()) != SQLITE_OK) return tl::unexpected<Error>(db_error(db, path_, "cannot set the cache size"));
        return {};
    };
    // The listing connection reads every page once: a page cache of its own (2 MiB by default)
    // would only hold a copy of what the kernel's already holds. Opened read-write though it
    // only reads: unix-excl takes real locks for a read-only connection, and the first one it
    // dropped would drop the process's exclusive lock with it (POSIX locks belong to the
    // process, not to a descriptor).
    if (auto o = open_extra(list_db_, SQLITE_OPEN_READWRITE, 256, "to read"); !o) return o;
    for (Q q : {q_begin_read, q_commit, q_rollback, q_users, q_groups_of, q_groups_all}) {
        if (sqlite3_prepare_v3(list_db_, kSql[q], -1, SQLITE_PREPARE_PERSISTENT, &list_st_->s[q], nullptr) != SQLITE_OK)
            return tl::unexpected<Error>(db_error(list_db_, path_, "cannot prepare a statement"));
    }
    // The checkpoint connection copies log frames and reads little. Opened now: by path later,
    // it could find another file there.
    return open_extra(checkpoint_db_, SQLITE_OPEN_READWRITE, 64, "to checkpoint");
}

Result<std::unique_ptr<CacheStore>> CacheStore::open(const std::string& cache_dir) {
    if (cache_dir.empty()) return fail(ErrorCode::invalid_argument, "cache directory is empty");
    if (auto d = ensure_dir(cache_dir); !d) return tl::unexpected<Error>(d.error());
    const std::string path = cache_dir + "/" + kFileName;
    auto db = open_db(path);
    if (!db && db.error().corrupt) {
        auto aside = move_aside(path);
        if (!aside) return tl::unexpected<Error>(aside.error());
        log::warning("cache: ", path, " is corrupt (", db.error().error.detail, "); moved to ", *aside,
                     " and starting an empty cache");
        db = open_db(path);
    }
    if (!db) return tl::unexpected<Error>(db.error().error);
    std::unique_ptr<CacheStore> store(new CacheStore(path, db->release()));
    if (auto p = store->prepare(); !p) return tl::unexpected<Error>(p.error());
    return store;
}

// Shorthands inside the member functions below (they hold mutex_).
#define CVAT_DB_FAIL(what) return tl::unexpected<Error>(db_error(db_, path_, what))
#define CVAT_BEGIN(tx)                                                                      \
    Transaction tx((*st_)[q_begin], (*st_)[q_commit], (*st_)[q_rollback]);                  \
    if (!tx.began()) CVAT_DB_FAIL("cannot begin a transaction")
// A read transaction: ended (rolled back, which for a read is the same as a commit) when `tx`
// goes out of scope, after the statements' own Use objects have reset them.
#define CVAT_BEGIN_READ(tx)                                                                 \
    Transaction tx((*st_)[q_begin_read], (*st_)[q_commit], (*st_)[q_rollback]);             \
    if (!tx.began()) CVAT_DB_FAIL("cannot begin a transaction")

namespace {

// Reads a users row (USER_COLUMNS order) without its groups.
bool read_user(const Use& u, CachedUser& out) {
    out.name = u.col_text(0);
    out.backend = u.col_text(1);
    out.immutable_id = u.col_text(2);
    if (!id_from(u.col_int(3), out.uid) || !id_from(u.col_int(4), out.gid)) return false;
    out.gecos = u.col_text(5);
    out.home = u.col_text(6);
    out.shell = u.col_text(7);
    out.role = role_from(u.col_int(8));
    out.email = u.col_text(9);
    out.first_name = u.col_text(10);
    out.last_name = u.col_text(11);
    out.dn = u.col_text(12);
    out.provisional = u.col_int(13) != 0;
    out.fetched_at = u.col_int(14);
    out.expires_at = u.col_int(15);
    return true;
}

}  // namespace

Result<void> CacheStore::put_user(const CachedUser& u) {
    if (u.name.empty() || u.name.size() > proto::kMaxName)
        return fail(ErrorCode::invalid_argument, "cache: user name empty or longer than " + std::to_string(proto::kMaxName));
    if (u.groups.size() > proto::kMaxGroups)
        return fail(ErrorCode::too_large, "cache: user " + log_safe(u.name) + " has more than " +
                                              std::to_string(proto::kMaxGroups) + " groups");
    std::lock_guard lock(mutex_);
    {
        // Until the commit, the row may be the old one or the new one.
        std::lock_guard memo(memo_mutex_);
        memo_.erase(u.name);
    }
    CVAT_BEGIN(tx);
    {
        Use s((*st_)[q_user_put]);
        s.text(u.name).text(u.backend).text(u.immutable_id).integer(u.uid).integer(u.gid).text(u.gecos);
        s.text(u.home).text(u.shell).integer(static_cast<int>(u.role)).text(u.email).text(u.first_name);
        s.text(u.last_name).text(u.dn).integer(u.provisional ? 1 : 0).integer(u.fetched_at).integer(u.expires_at);
        if (s.step() != SQLITE_DONE) CVAT_DB_FAIL("cannot store a user");
    }
    if (Use(st_->s[q_groups_delete]).text(u.name).step() != SQLITE_DONE) CVAT_DB_FAIL("cannot replace groups");
    for (std::size_t i = 0; i < u.groups.size(); ++i) {
        Use g((*st_)[q_group_put]);
        g.text(u.name).integer(static_cast<std::int64_t>(i)).text(u.groups[i].first).integer(u.groups[i].second);
        if (g.step() != SQLITE_DONE) CVAT_DB_FAIL("cannot store a group");
    }
    auto drop_negative = [&](std::string_view kind, std::string_view key) {
        return Use((*st_)[q_negative_delete]).text(kind).text(key).step() == SQLITE_DONE;
    };
    bool ok = drop_negative("user", u.name) && drop_negative("uid", std::to_string(u.uid));
    for (const auto& [gname, gid] : u.groups)
        ok = ok && drop_negative("group", gname) && drop_negative("gid", std::to_string(gid));
    if (!ok) CVAT_DB_FAIL("cannot clear negative entries");
    if (!tx.commit()) CVAT_DB_FAIL("cannot commit a user");
    remember(u);
    return {};
}

// Runs a users SELECT and fills in each row's groups: by one query per user (`groups_of`), or,
// for a long list, from one scan of every group row (`groups_all`). Caller holds the lock of the
// connection the statements belong to (mutex_ or list_mutex_) and a read transaction on it.
static Result<std::vector<CachedUser>> select_users(sqlite3* db, const std::string& path, Use& q,
                                                   sqlite3_stmt* groups_of, sqlite3_stmt* groups_all = nullptr) {
    std::vector<CachedUser> out;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
        CachedUser u;
        if (!read_user(q, u)) return fail(ErrorCode::internal, path + ": a users row holds an id out of range");
        out.push_back(std::move(u));
    }
    if (rc != SQLITE_DONE) return tl::unexpected<Error>(db_error(db, path, "cannot read users"));
    auto add_group = [&](CachedUser& u, Use& g) -> bool {
        std::uint32_t gid = 0;
        if (!id_from(g.col_int(2), gid)) return false;
        u.groups.emplace_back(g.col_text(1), gid);
        return true;
    };
    if (groups_all != nullptr && out.size() > 1) {
        std::unordered_map<std::string, CachedUser*> by_name;
        by_name.reserve(out.size());
        for (auto& u : out) by_name.emplace(u.name, &u);
        Use g(groups_all);
        while ((rc = g.step()) == SQLITE_ROW) {
            auto it = by_name.find(g.col_text(0));
            if (it != by_name.end() && !add_group(*it->second, g))
                return fail(ErrorCode::internal, path + ": a group row holds a gid out of range");
        }
        if (rc != SQLITE_DONE) return tl::unexpected<Error>(db_error(db, path, "cannot read groups"));
        return out;
    }
    for (auto& u : out) {
        Use g(groups_of);
        g.text(u.name);
        while ((rc = g.step()) == SQLITE_ROW) {
            std::uint32_t gid = 0;
            if (!id_from(g.col_int(1), gid)) return fail(ErrorCode::internal, path + ": a group row holds a gid out of range");
            u.groups.emplace_back(g.col_text(0), gid);
        }
        if (rc != SQLITE_DONE) return tl::unexpected<Error>(db_error(db, path, "cannot read groups"));
    }
    return out;
}

Result<std::optional<CachedUser>> CacheStore::user_by_name(std::string_view name) {
    std::lock_guard lock(mutex_);
    CVAT_BEGIN_READ(tx);
    Use q((*st_)[q_user_by_name]);
    q.text(name);
    auto r = select_users(db_, path_, q, (*st_)[q_groups_of]);
    if (!r) return tl::unexpected<Error>(r.error());
    if (r->empty()) return std::optional<CachedUser>();
    remember(r->front());
    return std::optional<CachedUser>(std::move(r->front()));
}

namespace {

// SHA-256 of a user's facts (facts_of), each field length-prefixed.
std::array<unsigned char, 32> facts_digest(const CachedUser& u) {
    std::array<unsigned char, 32> out{};
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) return out;
    auto number = [&](std::uint64_t v) {
        unsigned char b[8];
        for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
        EVP_DigestUpdate(ctx, b, sizeof(b));
    };
    auto text = [&](std::string_view t) {
        number(t.size());
        EVP_DigestUpdate(ctx, t.data(), t.size());
    };
    auto field = [&](const auto& f) {
        using F = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<F, std::string>) {
            text(f);
        } else if constexpr (std::is_same_v<F, std::vector<std::pair<std::string, std::uint32_t>>>) {
            number(f.size());
            for (const auto& [g, gid] : f) {
                text(g);
                number(gid);
            }
        } else {
            number(static_cast<std::uint64_t>(f));  // the ids, the role, provisional
        }
    };
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
    if (ok) {
        std::apply([&](const auto&... f) { (field(f), ...); }, facts_of(u));
        unsigned len = 0;
        ok = EVP_DigestFinal_ex(ctx, out.data(), &len) == 1 && len == out.size();
    }
    EVP_MD_CTX_free(ctx);
    if (!ok) out.fill(0);  // never equal to a real digest's: an all-zero one is not remembered
    return out;
}

}  // namespace

// Caller holds mutex_.
void CacheStore::remember(const CachedUser& u) {
    Remembered r;
    r.facts = facts_digest(u);
    r.times = Times{u.fetched_at, u.expires_at};
    const bool usable = r.facts != std::array<unsigned char, 32>{};
    std::lock_guard lock(memo_mutex_);
    if (!usable) {
        memo_.erase(u.name);
        return;
    }
    if (memo_.size() >= kMaxRemembered && memo_.find(u.name) == memo_.end()) memo_.clear();
    memo_[u.name] = r;
}

std::optional<CacheStore::Times> CacheStore::same_as_stored(const CachedUser& u) {
    const auto facts = facts_digest(u);
    std::lock_guard lock(memo_mutex_);
    auto it = memo_.find(u.name);
    if (it == memo_.end() || it->second.facts != facts) return std::nullopt;
    return it->second.times;
}

Result<std::optional<CachedUser>> CacheStore::user_by_uid(std::uint32_t uid) {
    std::lock_guard lock(mutex_);
    CVAT_BEGIN_READ(tx);
    Use q((*st_)[q_user_by_uid]);
    q.integer(uid);
    auto r = select_users(db_, path_, q, (*st_)[q_groups_of]);
    if (!r) return tl::unexpected<Error>(r.error());
    if (r->empty()) return std::optional<CachedUser>();
    return std::optional<CachedUser>(std::move(r->front()));
}

Result<std::vector<CachedUser>> CacheStore::users(std::size_t limit) {
    std::lock_guard lock(list_mutex_);
    const Statements& st = *list_st_;
    Transaction tx(st[q_begin_read], st[q_commit], st[q_rollback]);
    if (!tx.began()) return tl::unexpected<Error>(db_error(list_db_, path_, "cannot begin a transaction"));
    Use q(st[q_users]);
    q.integer(static_cast<std::int64_t>(std::min(limit, kMaxUsersListed)));
    return select_users(list_db_, path_, q, st[q_groups_of], st[q_groups_all]);
}

Result<std::vector<std::string>> CacheStore::role_members(int role, std::size_t limit) {
    std::lock_guard lock(mutex_);
    Use q((*st_)[q_role_members]);
    q.integer(role).integer(static_cast<std::int64_t>(std::min(limit, kMaxUsersListed)));
    std::vector<std::string> names;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) names.push_back(q.col_text(0));
    if (rc != SQLITE_DONE) CVAT_DB_FAIL("cannot read a role's members");
    return names;
}

Result<CacheStore::GroupMembers> CacheStore::group_members(std::string_view group, std::uint32_t gid,
                                                          std::size_t limit) {
    std::lock_guard lock(mutex_);
    Use q((*st_)[group.empty() ? q_group_members_by_gid : q_group_members_by_name]);
    if (group.empty()) q.integer(gid);
    else q.text(group);
    q.integer(static_cast<std::int64_t>(std::min(limit, kMaxUsersListed)));
    GroupMembers out;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
        std::uint32_t g = 0;
        if (!id_from(q.col_int(1), g)) return fail(ErrorCode::internal, path_ + ": a group row holds a gid out of range");
        // A gid held under two names (a renamed directory group, users fetched before and
        // after) answers with the first name seen; its members are everyone with the gid.
        if (out.name.empty()) {
            out.name = q.col_text(0);
            out.gid = g;
        }
        if (out.members.empty() || out.members.back() != q.col_text(2)) out.members.push_back(q.col_text(2));
    }
    if (rc != SQLITE_DONE) CVAT_DB_FAIL("cannot read a group's members");
    return out;
}

Result<void> CacheStore::put_negative(std::string_view kind, std::string_view key, std::int64_t expires_at) {
    if (!valid_kind(kind)) return fail(ErrorCode::invalid_argument, "cache: unknown negative entry kind " + log_safe(kind));
    if (key.empty() || key.size() > proto::kMaxName) return fail(ErrorCode::invalid_argument, "cache: negative entry key empty or too long");
    std::lock_guard lock(mutex_);
    if (Use((*st_)[q_negative_put]).text(kind).text(key).integer(expires_at).step() != SQLITE_DONE)
        CVAT_DB_FAIL("cannot store a negative entry");
    return {};
}

Result<bool> CacheStore::negative(std::string_view kind, std::string_view key, std::int64_t now) {
    if (!valid_kind(kind)) return fail(ErrorCode::invalid_argument, "cache: unknown negative entry kind " + log_safe(kind));
    std::lock_guard lock(mutex_);
    Use q((*st_)[q_negative_get]);
    q.text(kind).text(key);
    const int rc = q.step();
    if (rc == SQLITE_DONE) return false;
    if (rc != SQLITE_ROW) CVAT_DB_FAIL("cannot read a negative entry");
    return now < q.col_int(0);
}

Result<std::size_t> CacheStore::expire(std::string_view name) {
    std::lock_guard lock(mutex_);
    {
        std::lock_guard memo(memo_mutex_);
        if (name.empty()) memo_.clear();
        else memo_.erase(std::string(name));
    }
    CVAT_BEGIN(tx);
    std::size_t changed = 0;
    if (name.empty()) {
        if (Use((*st_)[q_expire_all]).step() != SQLITE_DONE) CVAT_DB_FAIL("cannot expire users");
        changed = static_cast<std::size_t>(sqlite3_changes(db_));
        if (Use((*st_)[q_negative_clear]).step() != SQLITE_DONE) CVAT_DB_FAIL("cannot drop negative entries");
    } else {
        std::optional<std::int64_t> uid;
        {
            Use q((*st_)[q_uid_of]);
            q.text(name);
            const int rc = q.step();
            if (rc == SQLITE_ROW) uid = q.col_int(0);
            else if (rc != SQLITE_DONE) CVAT_DB_FAIL("cannot read a user");
        }
        if (Use((*st_)[q_expire_one]).text(name).step() != SQLITE_DONE) CVAT_DB_FAIL("cannot expire a user");
        changed = static_cast<std::size_t>(sqlite3_changes(db_));
        // One statement per line: a Use resets its statement only at the end of the expression.
        if (Use((*st_)[q_negative_delete]).text("user").text(name).step() != SQLITE_DONE)
            CVAT_DB_FAIL("cannot drop negative entries");
        if (uid && Use((*st_)[q_negative_delete]).text("uid").text(std::to_string(*uid)).step() != SQLITE_DONE)
            CVAT_DB_FAIL("cannot drop negative entries");
    }
    if (!tx.commit()) CVAT_DB_FAIL("cannot commit expiry");
    return changed;
}

Result<void> CacheStore::flush() {
    std::lock_guard lock(mutex_);
    {
        std::lock_guard memo(memo_mutex_);
        memo_.clear();
    }
    CVAT_BEGIN(tx);
    if (exec(db_, "DELETE FROM users; DELETE FROM user_groups; DELETE FROM negative; DELETE FROM offline;") != SQLITE_OK)
        CVAT_DB_FAIL("cannot flush");
    if (!tx.commit()) CVAT_DB_FAIL("cannot commit the flush");
    return {};
}

Result<std::uint32_t> CacheStore::assign_id(std::string_view immutable_id, IdRange range,
                                            const std::vector<std::uint32_t>& reserved) {
    if (immutable_id.empty()) return fail(ErrorCode::invalid_argument, "id map: empty immutable id");
    if (range.min > range.max) return fail(ErrorCode::invalid_argument, "id map: range minimum above maximum");
    std::lock_guard lock(mutex_);
    CVAT_BEGIN(tx);
    {
        Use q((*st_)[q_idmap_get]);
        q.text(immutable_id);
        const int rc = q.step();
        std::uint32_t id = 0;
        if (rc == SQLITE_ROW) {
            if (!id_from(q.col_int(0), id)) return fail(ErrorCode::internal, path_ + ": an idmap row is out of range");
            return id;  // read only: the transaction rolls back
        }
        if (rc != SQLITE_DONE) CVAT_DB_FAIL("cannot read the id map");
    }
    const std::int64_t now = std::time(nullptr);
    for (unsigned k = 0; k < kMaxIdCandidates; ++k) {
        const std::uint32_t candidate = id_candidate(immutable_id, k, range);
        std::string holder;
        if (std::find(reserved.begin(), reserved.end(), candidate) != reserved.end()) {
            holder = "reserved";
        } else {
            Use q((*st_)[q_idmap_holder]);
            q.integer(candidate);
            const int rc = q.step();
            if (rc == SQLITE_ROW) holder = q.col_text(0);
            else if (rc != SQLITE_DONE) CVAT_DB_FAIL("cannot read the id map");
        }
        if (holder.empty()) {
            if (Use((*st_)[q_idmap_put]).text(immutable_id).integer(candidate).integer(now).step() != SQLITE_DONE)
                CVAT_DB_FAIL("cannot record an id");
            if (!tx.commit()) CVAT_DB_FAIL("cannot commit an id");
            return candidate;
        }
        if (Use((*st_)[q_collision_put]).text(immutable_id).integer(k).integer(candidate).text(holder).integer(now).step() !=
            SQLITE_DONE)
            CVAT_DB_FAIL("cannot record an id collision");
        // Logged once per (id, candidate): a small range repeats values, and a full one would
        // otherwise log kMaxIdCandidates lines on every attempt.
        if (sqlite3_changes(db_) > 0)
            log::warning("id map: ", log_safe(immutable_id), ": candidate ", std::to_string(k), " (",
                         std::to_string(candidate), ") is held by ", log_safe(holder), "; trying the next");
    }
    if (!tx.commit()) CVAT_DB_FAIL("cannot commit id collisions");
    log::error("id map: no free id for ", log_safe(immutable_id), " after ", std::to_string(kMaxIdCandidates),
               " candidates; widen the ID range");
    return fail(ErrorCode::too_large, "id map: no free id for " + log_safe(immutable_id) + " in " +
                                          std::to_string(range.min) + "-" + std::to_string(range.max) + " after " +
                                          std::to_string(kMaxIdCandidates) + " candidates");
}

Result<std::optional<std::uint32_t>> CacheStore::recorded_id(std::string_view immutable_id) {
    std::lock_guard lock(mutex_);
    Use q((*st_)[q_idmap_get]);
    q.text(immutable_id);
    const int rc = q.step();
    if (rc == SQLITE_DONE) return std::optional<std::uint32_t>();
    std::uint32_t id = 0;
    if (rc != SQLITE_ROW) CVAT_DB_FAIL("cannot read the id map");
    if (!id_from(q.col_int(0), id)) return fail(ErrorCode::internal, path_ + ": an idmap row is out of range");
    return std::optional<std::uint32_t>(id);
}

Result<std::optional<std::string>> CacheStore::id_holder(std::uint32_t id) {
    std::lock_guard lock(mutex_);
    Use q((*st_)[q_idmap_holder]);
    q.integer(id);
    const int rc = q.step();
    if (rc == SQLITE_DONE) return std::optional<std::string>();
    if (rc != SQLITE_ROW) CVAT_DB_FAIL("cannot read the id map");
    return std::optional<std::string>(q.col_text(0));
}

Result<std::vector<IdCollision>> CacheStore::id_collisions(std::size_t limit) {
    std::lock_guard lock(mutex_);
    Use q((*st_)[q_collisions]);
    q.integer(static_cast<std::int64_t>(std::min(limit, kMaxUsersListed)));
    std::vector<IdCollision> out;
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) {
        IdCollision c;
        c.immutable_id = q.col_text(0);
        c.k = static_cast<unsigned>(std::clamp<std::int64_t>(q.col_int(1), 0, kMaxIdCandidates));
        if (!id_from(q.col_int(2), c.id)) return fail(ErrorCode::internal, path_ + ": an id_collisions row is out of range");
        c.holder = q.col_text(3);
        c.at = q.col_int(4);
        out.push_back(std::move(c));
    }
    if (rc != SQLITE_DONE) CVAT_DB_FAIL("cannot read id collisions");
    return out;
}

Result<void> CacheStore::put_offline(const OfflineEntry& e) {
    if (e.name.empty() || e.name.size() > proto::kMaxName)
        return fail(ErrorCode::invalid_argument, "cache: offline entry name empty or too long");
    std::lock_guard lock(mutex_);
    Use s((*st_)[q_offline_put]);
    s.text(e.name).text(e.backend).text(e.hash).integer(static_cast<int>(e.role)).text(e.email);
    s.text(e.first_name).text(e.last_name).integer(e.stored_at);
    if (s.step() != SQLITE_DONE) CVAT_DB_FAIL("cannot store an offline entry");
    return {};
}

Result<std::optional<OfflineEntry>> CacheStore::offline(std::string_view name) {
    std::lock_guard lock(mutex_);
    Use q((*st_)[q_offline_get]);
    q.text(name);
    const int rc = q.step();
    if (rc == SQLITE_DONE) return std::optional<OfflineEntry>();
    if (rc != SQLITE_ROW) CVAT_DB_FAIL("cannot read an offline entry");
    OfflineEntry e;
    e.name = q.col_text(0);
    e.backend = q.col_text(1);
    e.hash = q.col_text(2);
    e.role = role_from(q.col_int(3));
    e.email = q.col_text(4);
    e.first_name = q.col_text(5);
    e.last_name = q.col_text(6);
    e.stored_at = q.col_int(7);
    e.failures = static_cast<unsigned>(std::clamp<std::int64_t>(q.col_int(8), 0, kMaxFailures));
    e.next_try_at = q.col_int(9);
    return std::optional<OfflineEntry>(std::move(e));
}

Result<void> CacheStore::offline_failure(std::string_view name, std::int64_t now) {
    std::lock_guard lock(mutex_);
    CVAT_BEGIN(tx);
    std::int64_t failures = 0;
    {
        Use q((*st_)[q_offline_failures]);
        q.text(name);
        const int rc = q.step();
        if (rc == SQLITE_DONE) return {};  // no entry, nothing to count
        if (rc != SQLITE_ROW) CVAT_DB_FAIL("cannot read an offline entry");
        failures = std::clamp<std::int64_t>(q.col_int(0), 0, kMaxFailures - 1) + 1;
    }
    const std::int64_t next = now + offline_delay(static_cast<unsigned>(failures));
    if (Use((*st_)[q_offline_set_failures]).integer(failures).integer(next).text(name).step() != SQLITE_DONE)
        CVAT_DB_FAIL("cannot record an offline failure");
    if (!tx.commit()) CVAT_DB_FAIL("cannot commit an offline failure");
    return {};
}

Result<void> CacheStore::offline_success(std::string_view name) {
    std::lock_guard lock(mutex_);
    if (Use((*st_)[q_offline_set_failures]).integer(0).integer(0).text(name).step() != SQLITE_DONE)
        CVAT_DB_FAIL("cannot reset offline failures");
    return {};
}

Result<void> CacheStore::drop_offline(std::string_view name) {
    std::lock_guard lock(mutex_);
    if (Use((*st_)[q_offline_drop]).text(name).step() != SQLITE_DONE) CVAT_DB_FAIL("cannot drop an offline entry");
    return {};
}

Result<void> CacheStore::check_integrity() {
    std::lock_guard lock(mutex_);
    int rc = SQLITE_OK;
    const std::string first = single_value(db_, "PRAGMA integrity_check", rc);
    if (rc != SQLITE_OK) CVAT_DB_FAIL("integrity_check failed");
    if (first != "ok") return fail(ErrorCode::io, path_ + ": integrity_check: " + log_safe(first));
    return {};
}

Result<void> CacheStore::checkpoint() {
    std::lock_guard lock(checkpoint_mutex_);
    // A connection sees the log only once it has read the database; without that read the
    // checkpoint below does nothing and says so only by a log size of -1.
    int rc = SQLITE_OK;
    (void)single_value(checkpoint_db_, "SELECT count(*) FROM sqlite_master", rc);
    if (rc != SQLITE_OK) return tl::unexpected<Error>(db_error(checkpoint_db_, path_, "cannot read the database to checkpoint"));
    // PASSIVE: as much as no reader still needs, without waiting for anyone.
    int log_frames = -1, done_frames = -1;
    if (sqlite3_wal_checkpoint_v2(checkpoint_db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &done_frames) != SQLITE_OK)
        return tl::unexpected<Error>(db_error(checkpoint_db_, path_, "checkpoint failed"));
    if (log_frames < 0) return fail(ErrorCode::internal, path_ + ": checkpoint found no write-ahead log");
    return {};
}

#undef CVAT_BEGIN
#undef CVAT_DB_FAIL

}  // namespace cvat::helper
