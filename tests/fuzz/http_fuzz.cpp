// libFuzzer target: the admin listener's HTTP/1.1 request parser (http/). The first
// byte picks how the rest is split into reads. Invariants: a request that comes out
// has a method we serve, a path starting with '/' and no NUL, and a body within the
// bound; after an error the status is one of the 4xx/5xx we answer with and every
// later feed is refused; the parser never keeps more than the bounds allow.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http/http.hpp"

using namespace bulwark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t step = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  http::Limits lim;
  lim.max_header = 2048;
  lim.max_body = 4096;
  http::Parser p(lim);
  bool failed = false;
  for (size_t pos = 0; pos < in.size(); pos += step) {
    bool ok = p.feed(in.substr(pos, step));
    if (failed && ok) abort();  // once failed, always failed
    if (!ok) {
      failed = true;
      int s = p.error_status();
      if (s != 400 && s != 413 && s != 414 && s != 431 && s != 501 && s != 505) abort();
    }
    while (auto r = p.next()) {
      if (r->path.empty() || r->path[0] != '/' || r->path.find('\0') != std::string::npos) abort();
      if (r->body.size() > lim.max_body) abort();
      if (r->method != "GET" && r->method != "HEAD" && r->method != "POST" && r->method != "PUT" &&
          r->method != "PATCH" && r->method != "DELETE")
        abort();
      (void)r->param("since");
      http::Response resp;
      resp.body = r->body;
      if (resp.wire().find("\r\n\r\n") == std::string::npos) abort();
    }
  }
  return 0;
}
