// directory/pg_replica.hpp: the cluster form's state (see directory.hpp): the
// PostgreSQL connection changes go through, and the thread that keeps the replica
// current. Private to directory/.
#pragma once
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include "cluster/pg.hpp"
#include "directory/directory.hpp"

namespace bulwark {

struct Directory::PgReplica {
  pg::Settings settings;
  std::unique_ptr<pg::Conn> writer;           // changes, under Directory::mu_
  std::unique_ptr<pg::Transaction> change;    // the change in progress
  sqlite3_session* session = nullptr;         // the replica's rows it touched
  std::atomic<int64_t> version{0};            // what the replica holds
  std::atomic<bool> healthy{false}, stale{false}, stop{false};
  int wake_fd = -1;                           // eventfd: stop the follower
  std::thread follower;
  std::chrono::steady_clock::time_point last_complaint{};
  std::mutex check_mu;                        // catch_up()'s connection
  std::unique_ptr<pg::Conn> checker;

  ~PgReplica();
  pg::Conn& conn();  // the writer's connection, reconnected if needed
  // Replaces the replica's content with PostgreSQL's, inside `c`'s open transaction;
  // returns the version read.
  static int64_t load(pg::Conn& c, sqlite3* replica);
  void follow(Directory& d);  // the follower thread's loop
  void wake();                // the follower checks now
  void complain(const std::string& why);  // one log line per 10 s
};

}  // namespace bulwark
