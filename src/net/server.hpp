// net/: listeners, TLS, and one coroutine per connection that moves bytes between a
// socket and a ServerSession, applying deadlines. No protocol logic lives here.
// Depends on smtp/, queue/, directory/, config/, logging/.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"

namespace bulwark {

class Directory;
class Spool;
namespace store {
class PgStore;
class PgQueue;
}

class Greylist;

class Server {
 public:
  // Installs the SIGTERM/SIGINT/SIGHUP handlers (before any port is open).
  // `mail`: cluster mode's mail store (PostgreSQL); null: Maildir under data_dir.
  Server(Config cfg, Directory& dir, Spool& spool, store::PgStore* mail = nullptr);
  ~Server();  // close()
  // Binds every listener (throws std::runtime_error naming the address on failure).
  void bind();
  // Runs until SIGTERM/SIGINT, then drains: no new connections, transactions in
  // flight get timeouts.shutdown, then every session is told 421 and ends. Returns
  // (the exit code) when no session is left. SIGHUP reloads config and certificate.
  int run(unsigned threads);
  // Ends the event loop and whatever is left in it. Call it after the spool and
  // delivery have stopped (their completions post into the loop). Idempotent.
  void close();
  // Also run at SIGHUP with the new configuration, before it replaces the running one;
  // an exception refuses the whole reload (the old configuration stays).
  void on_reload(std::function<void(const Config&)> f);
  // Reads the file again and applies it, as SIGHUP does: the error when refused (the
  // running configuration then stays). Any thread.
  std::optional<std::string> reload();
  // The greylisting table (null when greylisting is off): cluster mode wires it to
  // PostgreSQL (serve.cpp).
  Greylist* greylist();
  // Cluster mode: mail for local and remote recipients is committed with its local
  // copies and its queue row in one transaction at the end of data (before run()).
  void use_cluster_queue(store::PgQueue* q);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark
