// cluster/redis.hpp: one Redis connection (redis:// or rediss:// with TLS 1.2+ and the
// server's certificate checked against the system's CAs and its name), speaking RESP
// through hiredis's reader and formatter over a socket of our own: Debian's hiredis
// (0.14) has no TLS. Blocking with deadlines: use it from a thread of its own, never
// from an I/O thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace bulwark::redis {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Url {
  bool tls = false;
  std::string host = "127.0.0.1";
  std::string port = "6379";
  int db = 0;
};
// redis://host[:port][/db], rediss://...; nothing when malformed (or holding a password).
std::optional<Url> parse_url(const std::string& url);

struct Reply {
  enum Type { nil, integer, string, status, error, array } type = nil;
  int64_t number = 0;
  std::string text;  // string, status, error
  std::vector<Reply> items;
};

class Conn {
 public:
  // Connects, then AUTH (password from the file's first line, if any) and SELECT.
  // Throws Error naming the server and the reason, never the password.
  static std::unique_ptr<Conn> open(const std::string& url, const std::string& password_file,
                                    std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // One command and its reply; an error reply is a Reply of type error (not thrown).
  Reply command(const std::vector<std::string>& args);
  // Sends without waiting (SUBSCRIBE); then read() the pushed messages.
  void send(const std::vector<std::string>& args);
  // The next reply or pushed message; nothing when none came within `wait`.
  std::optional<Reply> read(std::chrono::milliseconds wait);
  std::string server() const { return server_; }

 private:
  Conn() = default;
  void write_all(const std::string& bytes);
  bool fill(int wait_ms);  // more bytes into the reader; false on timeout
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string server_;
  std::chrono::milliseconds timeout_{2000};
};

}  // namespace bulwark::redis
