#include "cluster/redis.hpp"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace bulwark::redis {

std::optional<Url> parse_url(const std::string& url) {
  Url u;
  std::string rest;
  if (url.rfind("redis://", 0) == 0) rest = url.substr(8);
  else if (url.rfind("rediss://", 0) == 0) {
    u.tls = true;
    rest = url.substr(9);
  } else {
    return std::nullopt;
  }
  if (rest.find('@') != std::string::npos) return std::nullopt;  // credentials: from the password file only
  std::string hostport = rest.substr(0, rest.find('/'));
  if (rest.find('/') != std::string::npos) {
    std::string db = rest.substr(rest.find('/') + 1);
    if (!db.empty()) {
      if (db.size() > 4 || db.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
      u.db = std::stoi(db);
    }
  }
  if (!hostport.empty() && hostport.front() == '[') {  // [v6]:port
    auto close = hostport.find(']');
    if (close == std::string::npos) return std::nullopt;
    u.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return std::nullopt;
      u.port = hostport.substr(close + 2);
    }
  } else if (!hostport.empty()) {
    auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    if (colon != std::string::npos) u.port = hostport.substr(colon + 1);
  }
  if (u.host.empty() || u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return u;
}

struct Conn::Impl {
  int fd = -1;
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  redisReader* reader = nullptr;
  ~Impl() {
    if (ssl) SSL_free(ssl);
    if (ctx) SSL_CTX_free(ctx);
    if (fd >= 0) ::close(fd);
    if (reader) redisReaderFree(reader);
  }
};

namespace {

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = Reply::integer;
      out.number = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = Reply::string;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::status;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::error;
      out.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::array;
      for (size_t i = 0; i < r->elements; ++i) out.items.push_back(convert(r->element[i]));
      break;
    default:
      out.type = Reply::nil;
  }
  return out;
}

std::string ssl_error() {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return e ? buf : "connection closed";
}

}  // namespace

std::unique_ptr<Conn> Conn::open(const std::string& url, const std::string& password_file,
                                 std::chrono::milliseconds timeout) {
  auto u = parse_url(url);
  if (!u) throw Error("Redis: cannot read the URL (redis://host:port/db or rediss://...)");
  std::unique_ptr<Conn> c(new Conn());
  c->impl_ = std::make_unique<Impl>();
  c->timeout_ = timeout;
  c->server_ = (u->host.find(':') != std::string::npos ? "[" + u->host + "]" : u->host) + ":" + u->port;
  Impl& im = *c->impl_;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(u->host.c_str(), u->port.c_str(), &hints, &res); rc != 0)
    throw Error("Redis " + c->server_ + ": " + gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* a = res; a && im.fd < 0; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, int(timeout.count())) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
      why = err ? std::strerror(err) : "timed out";
      ::close(fd);
      continue;
    }
    im.fd = fd;
  }
  ::freeaddrinfo(res);
  if (im.fd < 0) throw Error("Redis " + c->server_ + ": cannot connect: " + why);
  if (u->tls) {
    im.ctx = SSL_CTX_new(TLS_client_method());
    if (!im.ctx) throw Error("Redis: out of memory");
    SSL_CTX_set_min_proto_version(im.ctx, TLS1_2_VERSION);
    SSL_CTX_set_default_verify_paths(im.ctx);
    SSL_CTX_set_verify(im.ctx, SSL_VERIFY_PEER, nullptr);
    im.ssl = SSL_new(im.ctx);
    SSL_set_fd(im.ssl, im.fd);
    SSL_set_tlsext_host_name(im.ssl, u->host.c_str());
    SSL_set1_host(im.ssl, u->host.c_str());
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int rc = SSL_connect(im.ssl);
      if (rc == 1) break;
      int e = SSL_get_error(im.ssl, rc);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || left.count() <= 0)
        throw Error("Redis " + c->server_ + ": TLS handshake failed: " + ssl_error());
      pollfd p{im.fd, short(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
      ::poll(&p, 1, int(left.count()));
    }
  }
  im.reader = redisReaderCreate();
  if (!password_file.empty()) {
    std::ifstream in(password_file);
    std::string pw;
    if (!in || !std::getline(in, pw)) throw Error("Redis: cannot read " + password_file);
    while (!pw.empty() && (pw.back() == '\r' || pw.back() == '\n')) pw.pop_back();
    Reply r = c->command({"AUTH", pw});
    std::fill(pw.begin(), pw.end(), '\0');
    if (r.type == Reply::error) throw Error("Redis " + c->server_ + ": AUTH refused: " + r.text.substr(0, 120));
  }
  if (u->db) {
    Reply r = c->command({"SELECT", std::to_string(u->db)});
    if (r.type == Reply::error) throw Error("Redis " + c->server_ + ": " + r.text.substr(0, 120));
  }
  return c;
}

Conn::~Conn() = default;

void Conn::write_all(const std::string& bytes) {
  Impl& im = *impl_;
  size_t off = 0;
  auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (off < bytes.size()) {
    ssize_t n;
    short want = POLLOUT;
    if (im.ssl) {
      int rc = SSL_write(im.ssl, bytes.data() + off, int(bytes.size() - off));
      n = rc;
      if (rc <= 0) {
        int e = SSL_get_error(im.ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) throw Error("Redis " + server_ + ": " + ssl_error());
        want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        n = 0;
      }
    } else {
      n = ::send(im.fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) throw Error("Redis " + server_ + ": " + std::strerror(errno));
        n = 0;
      }
    }
    off += size_t(n);
    if (off < bytes.size()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw Error("Redis " + server_ + ": write timed out");
      pollfd p{im.fd, want, 0};
      ::poll(&p, 1, int(left.count()));
    }
  }
}

bool Conn::fill(int wait_ms) {
  Impl& im = *impl_;
  char buf[16384];
  for (;;) {
    ssize_t n;
    short want = POLLIN;
    if (im.ssl) {
      int rc = SSL_read(im.ssl, buf, sizeof buf);
      n = rc;
      if (rc <= 0) {
        int e = SSL_get_error(im.ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) throw Error("Redis " + server_ + ": " + ssl_error());
        want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        n = -1;
      }
    } else {
      n = ::recv(im.fd, buf, sizeof buf, 0);
      if (n == 0) throw Error("Redis " + server_ + ": connection closed");
      if (n < 0 && errno != EAGAIN && errno != EINTR) throw Error("Redis " + server_ + ": " + std::strerror(errno));
    }
    if (n > 0) {
      if (redisReaderFeed(im.reader, buf, size_t(n)) != REDIS_OK) throw Error("Redis " + server_ + ": protocol error");
      return true;
    }
    pollfd p{im.fd, want, 0};
    int rc = ::poll(&p, 1, wait_ms);
    if (rc == 0) return false;
    if (rc < 0 && errno != EINTR) throw Error("Redis " + server_ + ": poll failed");
  }
}

std::optional<Reply> Conn::read(std::chrono::milliseconds wait) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    void* r = nullptr;
    if (redisReaderGetReply(impl_->reader, &r) != REDIS_OK) throw Error("Redis " + server_ + ": protocol error");
    if (r) {
      Reply out = convert(static_cast<redisReply*>(r));
      freeReplyObject(r);
      return out;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0 || !fill(int(left.count()))) return std::nullopt;
  }
}

void Conn::send(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  int n = redisFormatCommandArgv(&cmd, int(argv.size()), argv.data(), lens.data());
  if (n < 0) throw Error("Redis: out of memory");
  std::string bytes(cmd, size_t(n));
  std::fill(cmd, cmd + n, '\0');  // AUTH's password
  redisFreeCommand(cmd);
  write_all(bytes);
  std::fill(bytes.begin(), bytes.end(), '\0');
}

Reply Conn::command(const std::vector<std::string>& args) {
  send(args);
  auto r = read(timeout_);
  if (!r) throw Error("Redis " + server_ + ": no answer within " + std::to_string(timeout_.count()) + " ms");
  return std::move(*r);
}

}  // namespace bulwark::redis
