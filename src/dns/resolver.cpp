#include "dns/resolver.hpp"

#include <arpa/inet.h>
#include <ares.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <stdexcept>

namespace bulwark {
namespace {

// Smallest TTL among the answer records of a raw DNS response (c-ares' MX and PTR
// parsers do not report TTLs).
std::chrono::seconds min_answer_ttl(const unsigned char* buf, int len) {
  if (len < 12) return std::chrono::seconds(0);
  int qd = (buf[4] << 8) | buf[5], an = (buf[6] << 8) | buf[7];
  const unsigned char* p = buf + 12;
  const unsigned char* end = buf + len;
  auto skip_name = [&]() -> bool {
    char* name = nullptr;
    long enclen = 0;
    if (ares_expand_name(p, buf, len, &name, &enclen) != ARES_SUCCESS) return false;
    ares_free_string(name);
    p += enclen;
    return p <= end;
  };
  for (int i = 0; i < qd; ++i) {
    if (!skip_name() || end - p < 4) return std::chrono::seconds(0);
    p += 4;
  }
  uint32_t best = UINT32_MAX;
  for (int i = 0; i < an; ++i) {
    if (!skip_name() || end - p < 10) break;
    uint32_t ttl = (uint32_t(p[4]) << 24) | (uint32_t(p[5]) << 16) | (uint32_t(p[6]) << 8) | p[7];
    int rdlen = (p[8] << 8) | p[9];
    p += 10 + rdlen;
    if (p > end) break;
    best = std::min(best, ttl);
  }
  return std::chrono::seconds(best == UINT32_MAX ? 0 : std::min<uint32_t>(best, 86400));
}

struct Pending {
  std::string name;
  DnsType type;
  Resolver::Callback cb;
};

}  // namespace

struct Resolver::Impl {
  ares_channel channel = nullptr;
  int wake_fd = -1;
  std::mutex mu;
  std::deque<Pending> incoming;
  bool stopping = false;
  std::thread thread;

  static void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    std::unique_ptr<Pending> q(static_cast<Pending*>(arg));
    DnsResult r;
    switch (status) {
      case ARES_SUCCESS: break;
      case ARES_ENOTFOUND: r.status = DnsResult::nxdomain; break;
      case ARES_ENODATA: r.status = DnsResult::nodata; break;
      default:
        r.status = DnsResult::failure;
        r.error = ares_strerror(status);
        break;
    }
    if (status == ARES_SUCCESS) {
      r.status = DnsResult::ok;
      r.ttl = min_answer_ttl(abuf, alen);
      int rc = ARES_SUCCESS;
      if (q->type == DnsType::mx) {
        ares_mx_reply* mx = nullptr;
        rc = ares_parse_mx_reply(abuf, alen, &mx);
        std::vector<std::pair<int, std::string>> hosts;
        for (ares_mx_reply* m = mx; m; m = m->next) hosts.emplace_back(m->priority, m->host);
        if (mx) ares_free_data(mx);
        std::stable_sort(hosts.begin(), hosts.end(), [](auto& a, auto& b) { return a.first < b.first; });
        for (auto& h : hosts) {
          r.names.push_back(h.second);
          r.preferences.push_back(h.first);
        }
      } else if (q->type == DnsType::ptr) {
        hostent* h = nullptr;
        rc = ares_parse_ptr_reply(abuf, alen, nullptr, 0, AF_INET, &h);
        if (h) {
          if (h->h_name) r.names.push_back(h->h_name);
          for (char** a = h->h_aliases; a && *a; ++a) r.names.push_back(*a);
          ares_free_hostent(h);
        }
      } else if (q->type == DnsType::txt) {
        ares_txt_ext* txt = nullptr;
        rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
        for (ares_txt_ext* t = txt; t; t = t->next) {
          if (t->record_start || r.texts.empty()) r.texts.emplace_back();
          r.texts.back().append(reinterpret_cast<const char*>(t->txt), t->length);
        }
        if (txt) ares_free_data(txt);
      } else if (q->type == DnsType::a) {
        ares_addrttl ttls[32];
        int n = 32;
        rc = ares_parse_a_reply(abuf, alen, nullptr, ttls, &n);
        if (rc == ARES_SUCCESS) r.addresses = size_t(n);
        for (int i = 0; rc == ARES_SUCCESS && i < n; ++i) {
          char buf[INET6_ADDRSTRLEN];
          if (inet_ntop(AF_INET, &ttls[i].ipaddr, buf, sizeof buf)) r.ips.push_back(buf);
        }
      } else {
        ares_addr6ttl ttls[32];
        int n = 32;
        rc = ares_parse_aaaa_reply(abuf, alen, nullptr, ttls, &n);
        if (rc == ARES_SUCCESS) r.addresses = size_t(n);
        for (int i = 0; rc == ARES_SUCCESS && i < n; ++i) {
          char buf[INET6_ADDRSTRLEN];
          if (inet_ntop(AF_INET6, &ttls[i].ip6addr, buf, sizeof buf)) r.ips.push_back(buf);
        }
      }
      if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && r.names.empty() && r.addresses == 0 && r.texts.empty())) {
        r.status = DnsResult::nodata;
      } else if (rc != ARES_SUCCESS) {
        r.status = DnsResult::failure;
        r.error = std::string("malformed answer: ") + ares_strerror(rc);
      }
    }
    q->cb(std::move(r));
  }

  void run() {
    for (;;) {
      decltype(incoming) batch;
      {
        std::lock_guard lk(mu);
        if (stopping) break;
        batch.swap(incoming);
      }
      // Outside the lock: c-ares may answer inside ares_query() (a send that fails at
      // once -- a server refusing, ICMP unreachable already on the socket), and that
      // callback may query again (SPF include:, DMARC after SPF).
      for (auto& in : batch) {
        auto* q = new Pending(std::move(in));
        ares_query(channel, q->name.c_str(), 1 /* IN */, int(q->type), &Impl::on_answer, q);
      }
      ares_socket_t socks[ARES_GETSOCK_MAXNUM];
      int bits = ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
      std::vector<pollfd> fds{{wake_fd, POLLIN, 0}};
      for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        short ev = 0;
        if (ARES_GETSOCK_READABLE(bits, i)) ev |= POLLIN;
        if (ARES_GETSOCK_WRITABLE(bits, i)) ev |= POLLOUT;
        if (ev) fds.push_back({socks[i], ev, 0});
      }
      timeval tv{}, max{1, 0};
      timeval* t = ares_timeout(channel, &max, &tv);
      int ms = int(t->tv_sec * 1000 + t->tv_usec / 1000) + 1;
      int n = ::poll(fds.data(), fds.size(), ms);
      if (n < 0 && errno != EINTR) break;
      if (fds[0].revents & POLLIN) {
        uint64_t v;
        [[maybe_unused]] ssize_t rd = ::read(wake_fd, &v, sizeof v);
      }
      bool any = false;
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        any = true;
        ares_socket_t r = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
        ares_socket_t w = (fds[i].revents & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD;
        ares_process_fd(channel, r, w);
      }
      if (!any) ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
    }
  }
};

Resolver::Resolver(const std::vector<std::string>& servers, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options opts{};
  opts.timeout = int(std::max<int64_t>(timeout.count(), 1));
  opts.tries = 1;
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
  if (ares_init_options(&impl_->channel, &opts, mask) != ARES_SUCCESS)
    throw std::runtime_error("cannot initialise the DNS resolver (c-ares)");
  if (!servers.empty()) {
    std::string csv;
    for (auto& s : servers) csv += (csv.empty() ? "" : ",") + s;
    if (ares_set_servers_ports_csv(impl_->channel, csv.c_str()) != ARES_SUCCESS) {
      ares_destroy(impl_->channel);
      throw std::runtime_error("bad DNS server list: " + csv);
    }
  }
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  impl_->thread = std::thread([this] { impl_->run(); });
}

Resolver::~Resolver() {
  shutdown();
  ::close(impl_->wake_fd);
}

void Resolver::shutdown() {
  std::deque<Pending> never_sent;
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    never_sent.swap(impl_->incoming);
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(impl_->wake_fd, &one, sizeof one);
  impl_->thread.join();
  ares_destroy(impl_->channel);  // pending queries' callbacks run with ARES_EDESTRUCTION
  impl_->channel = nullptr;
  for (auto& q : never_sent) {
    DnsResult r;
    r.error = "resolver stopped";
    q.cb(std::move(r));
  }
}

void Resolver::query(std::string name, DnsType type, Callback cb) {
  {
    std::lock_guard lk(impl_->mu);
    if (!impl_->stopping) {
      impl_->incoming.push_back({std::move(name), type, std::move(cb)});
      cb = nullptr;
    }
  }
  if (cb) {  // stopped: fail at once (outside the lock: the callback may query again)
    DnsResult r;
    r.error = "resolver stopped";
    cb(std::move(r));
    return;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = ::write(impl_->wake_fd, &one, sizeof one);
}

std::string Resolver::reverse_name(const std::string& ip) {
  unsigned char b[16];
  char buf[80];
  if (inet_pton(AF_INET, ip.c_str(), b) == 1) {
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
    return buf;
  }
  if (inet_pton(AF_INET6, ip.c_str(), b) == 1) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (int i = 15; i >= 0; --i) {
      out += hex[b[i] & 15];
      out += '.';
      out += hex[b[i] >> 4];
      out += '.';
    }
    return out + "ip6.arpa";
  }
  return "";
}

}  // namespace bulwark
