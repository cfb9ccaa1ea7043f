// net/: listeners, TLS, and one coroutine per connection that moves bytes between a
// socket and a ServerSession, applying deadlines. No protocol logic lives here.
// Depends on smtp/, queue/, directory/, config/, logging/.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "config/config.hpp"

namespace bulwark {

class Directory;
class Spool;

class Server {
 public:
  Server(Config cfg, Directory& dir, Spool& spool);
  ~Server();
  // Binds every listener (throws std::runtime_error naming the address on failure).
  void bind();
  // Runs until SIGTERM/SIGINT; SIGHUP reloads config and certificate. Returns the exit code.
  int run(unsigned threads);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark
