// http/: HTTP/1.1 for the admin listener (SPEC 15), sans I/O -- requests parsed by
// Debian's libhttp-parser (the parser Node.js used before llhttp; docs/admin.md says
// why) with our bounds on header and body sizes, and responses written with the
// security headers every answer carries. The driver (net/admin_driver.cpp) moves the
// bytes. Depends on core/.
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // percent-decoded, without the query
  std::string query;   // raw, after '?'
  std::map<std::string, std::string> headers;  // names lower-case; repeated fields joined by ", "
  std::string body;
  bool keep_alive = true;
  std::string header(const std::string& name) const;
  // A query parameter, percent-decoded ("" when absent).
  std::string param(const std::string& name) const;
};

struct Limits {
  size_t max_header = 16 * 1024;   // request line + fields
  size_t max_body = 1024 * 1024;
};

// Feeds bytes; yields whole requests in order (pipelining). After an error the
// connection is answered with `error_status` and closed.
class Parser {
 public:
  explicit Parser(Limits limits = {});
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;
  // Consumes what it can; false on a protocol error (see error_status()).
  bool feed(std::string_view data);
  // The next complete request, if any.
  std::optional<Request> next();
  // Part of a request has come, not all of it (the driver's deadline for a request
  // runs from its first byte: a client dripping a byte at a time cannot renew it).
  bool in_request() const;
  int error_status() const { return error_status_; }  // 400, 413, 431, 501, 505
  const std::string& error() const { return error_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int error_status_ = 0;
  std::string error_;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra (Set-Cookie, Location...)
  bool close = false;
  // The bytes on the wire: status line, our fields (HSTS, CSP, nosniff, no-store...),
  // the extra ones, Content-Length, the body.
  std::string wire() const;
};

const char* reason(int status);
std::string percent_decode(std::string_view s, bool plus_is_space = false);

}  // namespace bulwark::http
