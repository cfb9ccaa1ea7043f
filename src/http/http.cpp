// http/http.cpp: see http.hpp.
#include "http/http.hpp"

#include <http_parser.h>

#include <deque>

#include "core/strings.hpp"

namespace bulwark::http {

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
      out += char(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string Request::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string Request::param(const std::string& name) const {
  std::string_view q = query;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    size_t eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq), true) == name)
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
  }
  return {};
}

struct Parser::Impl {
  Limits limits;
  http_parser p{};
  http_parser_settings settings{};
  Request cur;
  std::string url, field, value;
  bool in_value = false;
  bool started = false;  // a request's first byte is in, its end is not
  size_t header_bytes = 0;
  std::deque<Request> done;
  int status = 0;  // set by a callback that stops the parse
  std::string why;

  // Stops the parse (for on_headers_complete, 1 and 2 mean "no body" / "upgrade",
  // so an error is another value).
  int fail(int st, const char* w) {
    status = st;
    why = w;
    return -1;
  }
  void flush_field() {
    if (!in_value) return;
    std::string name = to_lower(field);
    auto [it, fresh] = cur.headers.emplace(name, value);
    if (!fresh) it->second += ", " + value;
    field.clear();
    value.clear();
    in_value = false;
  }
  bool count(size_t n) { return (header_bytes += n) <= limits.max_header; }
};

Parser::Parser(Limits limits) : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  http_parser_init(&impl_->p, HTTP_REQUEST);
  impl_->p.data = impl_.get();
  auto& s = impl_->settings;
  http_parser_settings_init(&s);
  s.on_message_begin = [](http_parser* p) {
    auto* m = static_cast<Impl*>(p->data);
    m->cur = Request{};
    m->url.clear();
    m->field.clear();
    m->value.clear();
    m->in_value = false;
    m->header_bytes = 0;
    m->started = true;
    return 0;
  };
  s.on_url = [](http_parser* p, const char* at, size_t n) {
    auto* m = static_cast<Impl*>(p->data);
    if (!m->count(n)) return m->fail(414, "the request target is too long");
    m->url.append(at, n);
    return 0;
  };
  s.on_header_field = [](http_parser* p, const char* at, size_t n) {
    auto* m = static_cast<Impl*>(p->data);
    if (!m->count(n)) return m->fail(431, "the request's header fields are too large");
    m->flush_field();
    m->field.append(at, n);
    return 0;
  };
  s.on_header_value = [](http_parser* p, const char* at, size_t n) {
    auto* m = static_cast<Impl*>(p->data);
    if (!m->count(n)) return m->fail(431, "the request's header fields are too large");
    m->in_value = true;
    m->value.append(at, n);
    return 0;
  };
  s.on_headers_complete = [](http_parser* p) {
    auto* m = static_cast<Impl*>(p->data);
    m->flush_field();
    if (p->http_major != 1) return m->fail(505, "only HTTP/1.x is spoken here");
    if (p->upgrade) return m->fail(400, "protocol upgrades are not supported");
    switch (p->method) {
      case HTTP_GET: case HTTP_HEAD: case HTTP_POST: case HTTP_PUT: case HTTP_PATCH: case HTTP_DELETE: break;
      default: return m->fail(501, "method not implemented");
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > m->limits.max_body)
      return m->fail(413, "the request body is too large");
    m->cur.method = http_method_str(http_method(p->method));
    size_t q = m->url.find('?');
    std::string raw = m->url.substr(0, q);
    if (raw.empty() || raw[0] != '/') return m->fail(400, "the request target must be a path");
    m->cur.path = percent_decode(raw);
    if (m->cur.path.find('\0') != std::string::npos) return m->fail(400, "NUL in the path");
    if (q != std::string::npos) m->cur.query = m->url.substr(q + 1);
    m->cur.keep_alive = http_should_keep_alive(p) != 0;
    return 0;
  };
  s.on_body = [](http_parser* p, const char* at, size_t n) {
    auto* m = static_cast<Impl*>(p->data);
    if (m->cur.body.size() + n > m->limits.max_body) return m->fail(413, "the request body is too large");
    m->cur.body.append(at, n);
    return 0;
  };
  s.on_message_complete = [](http_parser* p) {
    auto* m = static_cast<Impl*>(p->data);
    if (m->status) return -1;  // never a request that failed a check
    m->cur.keep_alive = http_should_keep_alive(p) != 0;
    m->done.push_back(std::move(m->cur));
    m->cur = Request{};
    m->started = false;
    return 0;
  };
}

Parser::~Parser() = default;

bool Parser::feed(std::string_view data) {
  if (error_status_) return false;
  size_t n = http_parser_execute(&impl_->p, &impl_->settings, data.data(), data.size());
  auto err = HTTP_PARSER_ERRNO(&impl_->p);
  if (impl_->status) {
    error_status_ = impl_->status;
    error_ = impl_->why;
    return false;
  }
  if (err != HPE_OK || (n != data.size() && !impl_->p.upgrade)) {
    error_status_ = err == HPE_HEADER_OVERFLOW ? 431 : 400;
    error_ = http_errno_description(err);
    return false;
  }
  if (impl_->p.upgrade) {
    error_status_ = 400;
    error_ = "protocol upgrades are not supported";
    return false;
  }
  return true;
}

bool Parser::in_request() const { return impl_->started; }

std::optional<Request> Parser::next() {
  if (impl_->done.empty()) return std::nullopt;
  Request r = std::move(impl_->done.front());
  impl_->done.pop_front();
  return r;
}

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

std::string Response::wire() const {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  out += "Content-Type: " + content_type + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  // Every answer: HTTPS only from now on, no framing, no sniffing, nothing cached,
  // nothing loaded from anywhere but here.
  out += "Strict-Transport-Security: max-age=31536000\r\n"
         "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
         "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'\r\n"
         "X-Content-Type-Options: nosniff\r\n"
         "X-Frame-Options: DENY\r\n"
         "Referrer-Policy: no-referrer\r\n"
         "Cache-Control: no-store\r\n";
  for (auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace bulwark::http
