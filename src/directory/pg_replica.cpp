// directory/pg_replica.cpp: the directory's cluster form (SPEC 16): PostgreSQL holds
// the tables, each node a replica in memory. See directory.hpp and docs/cluster.md.
#include "directory/pg_replica.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <vector>

#include "directory/sqlite.hpp"
#include "logging/logs.hpp"

namespace bulwark {

namespace {

// The directory's tables, the same in both engines.
const char* const kTables[] = {"domains", "users", "aliases", "groups", "delegations", "admins"};

std::string quoted(const std::string& name) { return "\"" + name + "\""; }

// The replica's columns of `table`, in order (the schema is ours: fixed at start).
const std::vector<std::string>& columns(sqlite3* db, const std::string& table) {
  static std::mutex mu;
  static std::map<std::string, std::vector<std::string>> known;
  std::lock_guard lk(mu);
  auto& cols = known[table];
  if (cols.empty()) {
    Stmt s(db, "SELECT name FROM pragma_table_info(?) ORDER BY cid");
    s.bind(1, table);
    while (s.step()) cols.push_back(s.text(0));
  }
  return cols;
}

pg::Param value(sqlite3_value* v) {
  if (!v || sqlite3_value_type(v) == SQLITE_NULL) return std::nullopt;
  auto p = reinterpret_cast<const char*>(sqlite3_value_text(v));
  return std::string(p ? p : "", size_t(sqlite3_value_bytes(v)));
}

// Carries one changeset of the replica to PostgreSQL, row by row (by primary key).
void apply(pg::Conn& c, sqlite3* db, int n, void* data) {
  sqlite3_changeset_iter* it = nullptr;
  if (sqlite3changeset_start(&it, n, data) != SQLITE_OK) throw DirectoryError("directory: cannot read the change");
  struct Finish {
    sqlite3_changeset_iter* it;
    ~Finish() { sqlite3changeset_finalize(it); }
  } finish{it};
  while (sqlite3changeset_next(it) == SQLITE_ROW) {
    const char* tab = nullptr;
    int ncol = 0, op = 0, indirect = 0;
    sqlite3changeset_op(it, &tab, &ncol, &op, &indirect);
    unsigned char* pk = nullptr;
    int npk = 0;
    sqlite3changeset_pk(it, &pk, &npk);
    const auto& cols = columns(db, tab);
    if (int(cols.size()) != ncol) throw DirectoryError(std::string("directory: table ") + tab + " changed shape");
    std::vector<pg::Param> params;
    std::string sql;
    auto where = [&]() {
      std::string w;
      for (int i = 0; i < ncol; ++i) {
        if (!pk[i]) continue;
        sqlite3_value* v = nullptr;
        sqlite3changeset_old(it, i, &v);
        params.push_back(value(v));
        w += (w.empty() ? " WHERE " : " AND ") + quoted(cols[size_t(i)]) + "=$" + std::to_string(params.size());
      }
      return w;
    };
    if (op == SQLITE_INSERT) {
      std::string names, marks;
      for (int i = 0; i < ncol; ++i) {
        sqlite3_value* v = nullptr;
        sqlite3changeset_new(it, i, &v);
        params.push_back(value(v));
        names += (i ? "," : "") + quoted(cols[size_t(i)]);
        marks += (i ? ",$" : "$") + std::to_string(i + 1);
      }
      sql = "INSERT INTO " + quoted(tab) + "(" + names + ") VALUES(" + marks + ")";
    } else if (op == SQLITE_DELETE) {
      sql = "DELETE FROM " + quoted(tab) + where();
    } else {
      std::string set;
      for (int i = 0; i < ncol; ++i) {
        sqlite3_value* v = nullptr;
        if (sqlite3changeset_new(it, i, &v) != SQLITE_OK || !v) continue;  // unchanged
        params.push_back(value(v));
        set += (set.empty() ? "" : ",") + quoted(cols[size_t(i)]) + "=$" + std::to_string(params.size());
      }
      if (set.empty()) continue;
      sql = "UPDATE " + quoted(tab) + " SET " + set + where();
    }
    c.run(sql, params);
  }
}

std::string memdb_uri() {
  static std::atomic<unsigned> serial{0};
  return "file:/bulwark-directory-pg-" + std::to_string(::getpid()) + "-" + std::to_string(++serial) + "?vfs=memdb";
}

}  // namespace

Directory::PgReplica::~PgReplica() {
  stop = true;
  if (wake_fd >= 0) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
  }
  if (follower.joinable()) follower.join();
  if (wake_fd >= 0) ::close(wake_fd);
  if (session) sqlite3session_delete(session);
}

pg::Conn& Directory::PgReplica::conn() {
  if (!writer || !writer->ok()) {
    writer.reset();
    try {
      writer = pg::Conn::open(settings);
    } catch (const pg::Error& e) {
      throw DirectoryError(std::string("the directory's database cannot be reached: ") + e.what());
    }
  }
  return *writer;
}

void Directory::PgReplica::complain(const std::string& why) {
  static std::mutex mu;  // the follower and catch_up() both complain
  std::lock_guard lk(mu);
  auto now = std::chrono::steady_clock::now();
  if (now - last_complaint < std::chrono::seconds(10)) return;
  last_complaint = now;
  logs::main().error("directory: PostgreSQL unreachable, lookups answer \"try later\": {}", why);
}

int64_t Directory::PgReplica::load(pg::Conn& c, sqlite3* replica) {
  int64_t v = c.exec("SELECT version FROM directory_version").integer(0, 0);
  sqlite3* priv = nullptr;
  if (sqlite3_open_v2(":memory:", &priv, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    sqlite3_close(priv);
    throw DirectoryError("directory: out of memory");
  }
  struct Close {
    sqlite3* db;
    ~Close() { sqlite3_close(db); }
  } close{priv};
  create_directory_schema(priv);
  exec(priv, "BEGIN");
  for (const char* t : kTables) {
    const auto& cols = columns(replica, t);
    std::string names, marks;
    for (size_t i = 0; i < cols.size(); ++i) {
      names += (i ? "," : "") + quoted(cols[i]);
      marks += i ? ",?" : "?";
    }
    pg::Result r = c.run("SELECT " + names + " FROM " + quoted(t));
    std::string insert = "INSERT INTO " + quoted(t) + "(" + names + ") VALUES(" + marks + ")";
    for (int row = 0; row < r.rows(); ++row) {
      Stmt s(priv, insert.c_str());
      for (size_t i = 0; i < cols.size(); ++i) {
        if (r.null(row, int(i))) continue;  // NULL: unbound
        s.bind(int(i) + 1, r.text(row, int(i)));
      }
      s.step();
    }
  }
  exec(priv, "COMMIT");
  copy_db(priv, replica);
  return v;
}

std::unique_ptr<Directory> Directory::open_cluster(const pg::Settings& s, bool follow) {
  std::string uri = memdb_uri();
  std::unique_ptr<Directory> d(new Directory(uri, connect(uri, true)));
  create_directory_schema(d->writer_->db);
  d->pg_ = std::make_unique<PgReplica>();
  PgReplica& p = *d->pg_;
  p.settings = s;
  {
    std::lock_guard lk(d->mu_);
    try {
      pg::Conn& c = p.conn();
      pg::Transaction t(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      p.version = PgReplica::load(c, d->writer_->db);
      t.commit();
    } catch (const pg::Error& e) {
      throw DirectoryError(std::string("the directory's database: ") + e.what());
    }
    p.healthy = true;
  }
  if (follow) {
    p.wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p.wake_fd < 0) throw DirectoryError("directory: eventfd failed");
    Directory* self = d.get();
    p.follower = std::thread([self]() { self->pg_->follow(*self); });
  }
  return d;
}

bool Directory::available() const { return !pg_ || pg_->healthy; }

void Directory::PgReplica::wake() {
  if (wake_fd < 0) return;
  uint64_t one = 1;
  [[maybe_unused]] auto w = ::write(wake_fd, &one, sizeof one);
}

bool Directory::catch_up() {
  if (!pg_) return true;
  PgReplica& p = *pg_;
  std::lock_guard ck(p.check_mu);
  try {
    if (!p.checker || !p.checker->ok()) {
      p.checker.reset();
      p.checker = pg::Conn::open(p.settings);
    }
    pg::Conn& c = *p.checker;
    int64_t v = c.exec("SELECT version FROM directory_version").integer(0, 0);
    if (v == p.version && !p.stale) return p.healthy;
    pg::Transaction t(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    std::lock_guard lk(mu_);
    p.version = PgReplica::load(c, writer_->db);
    p.stale = false;
    t.commit();
    return p.healthy;
  } catch (const std::exception& e) {
    p.checker.reset();
    p.healthy = false;  // until the follower is back
    p.complain(e.what());
    p.wake();
    return false;
  }
}

void Directory::PgReplica::follow(Directory& d) {
  std::unique_ptr<pg::Conn> c;
  auto backoff = std::chrono::milliseconds(250);
  auto last_check = std::chrono::steady_clock::now();
  bool check = true;
  while (!stop) {
    try {
      if (!c) {
        c = pg::Conn::open(settings);
        c->run("LISTEN bulwark_directory");
        check = true;  // changes may have come while we were away
      }
      if (check || stale || std::chrono::steady_clock::now() - last_check > std::chrono::seconds(5)) {
        int64_t v = c->exec("SELECT version FROM directory_version").integer(0, 0);
        if (v != version || stale) {
          std::lock_guard lk(d.mu_);
          pg::Transaction t(*c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
          version = load(*c, d.writer_->db);
          t.commit();
          stale = false;
        }
        if (!healthy) logs::main().info("directory: PostgreSQL reachable again ({})", c->server());
        healthy = true;
        check = false;
        backoff = std::chrono::milliseconds(250);
        last_check = std::chrono::steady_clock::now();
      }
      pollfd fds[2] = {{PQsocket(c->raw()), POLLIN, 0}, {wake_fd, POLLIN, 0}};
      ::poll(fds, 2, 1000);
      if (stop) break;
      if (fds[1].revents) {
        uint64_t drained;
        [[maybe_unused]] auto r = ::read(wake_fd, &drained, sizeof drained);
      }
      if (fds[0].revents) {
        if (!PQconsumeInput(c->raw()) || !c->ok()) throw pg::Error("PostgreSQL: connection lost", "", true);
        while (PGnotify* n = PQnotifies(c->raw())) {
          check = true;
          PQfreemem(n);
        }
      }
    } catch (const std::exception& e) {
      healthy = false;
      complain(e.what());
      c.reset();
      pollfd w{wake_fd, POLLIN, 0};
      ::poll(&w, 1, int(backoff.count()));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

void Directory::pg_begin_change() {
  PgReplica& p = *pg_;
  pg::Conn& c = p.conn();
  try {
    p.change = std::make_unique<pg::Transaction>(c);
    // The version row is the lock: one change at a time across the cluster.
    int64_t v = c.exec("SELECT version FROM directory_version FOR UPDATE").integer(0, 0);
    if (v != p.version || p.stale) {
      p.version = PgReplica::load(c, writer_->db);
      p.stale = false;
    }
  } catch (const pg::Error& e) {
    p.change.reset();
    throw DirectoryError(std::string("the directory's database: ") + e.what());
  }
  if (sqlite3session_create(writer_->db, "main", &p.session) != SQLITE_OK ||
      sqlite3session_attach(p.session, nullptr) != SQLITE_OK) {
    p.change.reset();
    throw DirectoryError("directory: cannot record the change");
  }
}

void Directory::pg_end_change(bool failed) {
  PgReplica& p = *pg_;
  int n = 0;
  void* data = nullptr;
  if (!failed && sqlite3session_changeset(p.session, &n, &data) != SQLITE_OK) failed = true;
  sqlite3session_delete(p.session);
  p.session = nullptr;
  std::string err;
  if (!failed && n > 0) {
    try {
      pg::Conn& c = *p.writer;
      apply(c, writer_->db, n, data);
      int64_t v = c.exec("UPDATE directory_version SET version = version + 1 RETURNING version").integer(0, 0);
      c.exec("SELECT pg_notify('bulwark_directory', $1)", {std::to_string(v)});
      p.change->commit();
      p.version = v;
    } catch (const std::exception& e) {
      err = std::string("the directory's database: ") + e.what();
      failed = true;
    }
  }
  sqlite3_free(data);
  if (failed) {
    // The replica may hold what PostgreSQL does not: no answers from it until the
    // follower has reloaded it.
    p.stale = true;
    if (p.wake_fd >= 0) {
      p.healthy = false;
      p.wake();
    }
  }
  p.change.reset();             // ROLLBACK unless committed
  if (!err.empty()) throw DirectoryError(err);
}

}  // namespace bulwark
