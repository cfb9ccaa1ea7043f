// cluster/: the engines of cluster mode (SPEC 16; docs/cluster.md) -- connections to
// PostgreSQL (libpq) and Redis (hiredis), the versioned schema and its migrations, node
// heartbeats. The stores' cluster backends (directory/pg_*, ...) are built on these.
// Depends on core/ only.
//
// pg.hpp: one PostgreSQL connection, used by one thread at a time. Blocking calls: run
// them on a worker or a thread of their own, never on an I/O thread. Statements are
// prepared once per connection (by SQL text) and run with text parameters.
#pragma once
#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace bulwark::pg {

// A statement or connection that failed. `connection`: the connection is gone (the
// server is down or unreachable); else the statement failed (sqlstate says why).
class Error : public std::runtime_error {
 public:
  Error(const std::string& what, std::string sqlstate, bool connection)
      : std::runtime_error(what), sqlstate(std::move(sqlstate)), connection(connection) {}
  std::string sqlstate;
  bool connection;
};

struct Settings {
  std::string conninfo;       // libpq conninfo or URI (cluster.postgres)
  std::string password_file;  // the password, first line ("" = none, or PGPASSFILE)
  std::string application;    // shown in pg_stat_activity: "bulwark <node>"
  int connect_timeout = 5;    // seconds
};

using Param = std::optional<std::string>;  // nullopt = NULL

class Result {
 public:
  explicit Result(PGresult* r = nullptr) : r_(r) {}
  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  bool null(int row, int col) const { return PQgetisnull(r_.get(), row, col); }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col), size_t(PQgetlength(r_.get(), row, col)));
  }
  Param param(int row, int col) const { return null(row, col) ? Param() : Param(text(row, col)); }
  int64_t integer(int row, int col) const;
  // A bytea column (binary result format not used: text form "\x..." decoded).
  std::string bytes(int row, int col) const;
  int64_t affected() const;

 private:
  struct Free {
    void operator()(PGresult* r) const { PQclear(r); }
  };
  std::unique_ptr<PGresult, Free> r_;
};

class Conn {
 public:
  // Throws Error (connection = true) naming the server and libpq's reason, never the
  // password.
  static std::unique_ptr<Conn> open(const Settings& s);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Runs a statement (prepared on first use on this connection). `sql` must be a
  // string literal or otherwise outlive the connection: its address is the key.
  Result exec(const char* sql, std::initializer_list<Param> params = {});
  Result exec(const char* sql, const std::vector<Param>& params);
  // Runs SQL text once, unprepared (DDL, BEGIN/COMMIT, generated statements).
  Result run(const std::string& sql);
  Result run(const std::string& sql, const std::vector<Param>& params);
  bool ok() const;
  PGconn* raw() { return c_; }
  std::string server() const;  // "host:port" for messages

 private:
  explicit Conn(PGconn* c) : c_(c) {}
  Result check(PGresult* r, const char* what);
  PGconn* c_;
  std::unordered_map<const char*, std::string> prepared_;  // SQL text -> statement name
};

// SQLSTATEs worth retrying a whole transaction for: serialization failure, deadlock.
bool retryable(const Error& e);

// A bounded pool of connections for worker threads (never an I/O thread). A lease
// goes back when it ends; a connection found broken is dropped and made again.
class Pool {
 public:
  Pool(Settings s, size_t max) : s_(std::move(s)), max_(max) {}
  class Lease {
   public:
    Lease(Pool* p, std::unique_ptr<Conn> c) : p_(p), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    Conn& operator*() { return *c_; }
    Conn* operator->() { return c_.get(); }

   private:
    Pool* p_;
    std::unique_ptr<Conn> c_;
  };
  // Waits up to `wait` for a free connection; throws Error (connection = true) when
  // none comes or PostgreSQL cannot be reached.
  Lease get(std::chrono::milliseconds wait = std::chrono::milliseconds(5000));

 private:
  Settings s_;
  size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  size_t out_ = 0;  // leased or being made
};

// Runs `body` in a transaction, again (up to 5 times) after a serialization failure or
// a deadlock.
template <class F>
auto in_transaction(Conn& c, F&& body) -> decltype(body()) {
  for (int attempt = 0;; ++attempt) {
    try {
      c.run("BEGIN");
      auto r = body();
      c.run("COMMIT");
      return r;
    } catch (const Error& e) {
      try {
        if (c.ok()) c.run("ROLLBACK");
      } catch (...) {
      }
      if (!retryable(e) || attempt >= 4) throw;
    } catch (...) {
      try {
        if (c.ok()) c.run("ROLLBACK");
      } catch (...) {
      }
      throw;
    }
  }
}

// A transaction on a connection: BEGIN now, ROLLBACK unless commit() was called.
class Transaction {
 public:
  explicit Transaction(Conn& c, const char* begin = "BEGIN");
  ~Transaction();
  void commit();

 private:
  Conn& c_;
  bool done_ = false;
};

// What `bulwark audit` checks of a conninfo: where it goes and whether TLS is required
// (sslmode require, verify-ca or verify-full). Nothing when it does not parse.
struct Target {
  std::string host;  // "" = libpq's default (the local socket)
  bool tls_required = false;
  bool local = false;  // a Unix socket or a loopback address
};
std::optional<Target> target(const std::string& conninfo);

// bytea parameter in text form ("\x" + hex).
std::string bytea(const std::string& raw);


}  // namespace bulwark::pg
