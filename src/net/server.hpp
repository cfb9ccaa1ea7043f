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

class Server {
 public:
  Server(Config cfg, Directory& dir, Spool& spool);
  ~Server();
  // Binds every listener (throws std::runtime_error naming the address on failure).
  void bind();
  // Runs until SIGTERM/SIGINT; SIGHUP reloads config and certificate. Returns the exit code.
  int run(unsigned threads);
  // Also run at SIGHUP with the new configuration, before it replaces the running one;
  // an exception refuses the whole reload (the old configuration stays).
  void on_reload(std::function<void(const Config&)> f);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark
