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

// SQLSTATEs worth retrying a whole transaction for: serialization failure, deadlock.
bool retryable(const Error& e);

}  // namespace bulwark::pg
