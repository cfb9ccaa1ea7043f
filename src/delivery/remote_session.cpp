// delivery/: RemoteDelivery's outbound sessions -- one per destination at a time (up
// to max_per_destination): the MX or relay host's addresses, then connections in
// turn, each delivering queued jobs of its destination until none is left. The queue
// manager that hands out the jobs is in remote.cpp.
#include "core/strings.hpp"
#include "delivery/remote_impl.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;

template <class Token>
auto RemoteDelivery::Impl::async_query(std::string name, DnsType type, Token&& token) {
  return asio::async_initiate<Token, void(DnsResult)>(
      [this, name, type](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        resolver.query(name, type, [this, h](DnsResult r) {
          asio::post(io, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      token);
}

awaitable<void> RemoteDelivery::Impl::addresses_of(const std::string& name, Hosts& out) {
  asio::ip::address ip;
  asio::error_code ec;
  ip = asio::ip::make_address(name, ec);
  if (!ec) {
    out.list.push_back({name, ip.to_string()});
    co_return;
  }
  bool failed = false;
  for (DnsType t : {DnsType::a, DnsType::aaaa}) {
    DnsResult r = co_await async_query(name, t, use_awaitable);
    for (auto& a : r.ips) out.list.push_back({name, a});
    failed |= r.status == DnsResult::failure;
  }
  if (failed && out.list.empty()) out.temporary = {451, "4.4.3 DNS lookup of " + name + " failed", true};
}

awaitable<RemoteDelivery::Impl::Hosts> RemoteDelivery::Impl::hosts_for(const std::string& dest) {
  Hosts h;
  if (s.relay) {
    co_await addresses_of(s.relay_host, h);
    co_return h;
  }
  if (dest.size() > 2 && dest.front() == '[' && dest.back() == ']') {  // address literal
    std::string lit = dest.substr(1, dest.size() - 2);
    if (lit.rfind("IPv6:", 0) == 0 || lit.rfind("ipv6:", 0) == 0) lit = lit.substr(5);
    co_await addresses_of(lit, h);
    co_return h;
  }
  DnsResult mx = co_await async_query(dest, DnsType::mx, use_awaitable);
  if (mx.status == DnsResult::nxdomain) {
    h.permanent = smtp::ServerReply{550, "5.1.2 domain " + dest + " does not exist (NXDOMAIN)", true};
    co_return h;
  }
  if (mx.status == DnsResult::failure) {
    h.temporary = {451, "4.4.3 MX lookup for " + dest + " failed: " + mx.error, true};
    co_return h;
  }
  if (mx.status == DnsResult::ok && mx.names.size() == 1 && (mx.names[0].empty() || mx.names[0] == ".")) {
    h.permanent = smtp::ServerReply{556, "5.1.10 domain " + dest + " accepts no mail (null MX, RFC 7505)", true};
    co_return h;
  }
  std::vector<std::string> names = mx.status == DnsResult::ok ? mx.names : std::vector<std::string>{dest};
  for (auto& n : names) co_await addresses_of(n, h);
  if (h.list.empty() && mx.status == DnsResult::nodata && !h.temporary.text.starts_with("4.4.3 DNS lookup"))
    h.permanent = smtp::ServerReply{550, "5.1.2 domain " + dest + " has no MX, A or AAAA record", true};
  co_return h;
}

std::optional<RemoteDelivery::Impl::Job> RemoteDelivery::Impl::take_job(const std::string& key) {
  auto& d = dests[key];
  if (d.jobs.empty() || stopping) return std::nullopt;
  Job j = std::move(d.jobs.front());
  d.jobs.pop_front();
  return j;
}

void RemoteDelivery::Impl::fail_all(const std::string& key, const smtp::ServerReply& why, Result::Kind kind,
                                    const std::string& tried) {
  while (auto job = take_job(key)) {
    std::vector<Result> rs;
    for (auto& t : job->targets) rs.push_back({t, kind, why, tried});
    complete_job(*job, std::move(rs));
  }
}

awaitable<void> RemoteDelivery::Impl::session(std::string key) {
  auto self = shared_from_this();
  Hosts hosts = co_await hosts_for(key);
  uint16_t port = s.relay ? s.relay_port : s.mx_port;
  if (hosts.permanent) {
    fail_all(key, *hosts.permanent, Result::failed);
  } else if (hosts.list.empty()) {
    fail_all(key, hosts.temporary, Result::deferred);
  } else {
    smtp::ServerReply last = hosts.temporary;
    size_t permanent_refusals = 0;
    bool clean = false;  // a connection ran out of jobs and said QUIT
    std::string tried;   // the last host tried, named in mail.log's line
    for (auto& host : hosts.list) {
      if (dests[key].jobs.empty() || clean) break;
      bool permanent = false;
      tried = host.name + "[" + host.ip + "]:" + std::to_string(port);
      co_await connection(key, host, port, last, permanent, clean);
      permanent_refusals += permanent;
    }
    // Jobs queued while a clean connection said QUIT are not failures: pump() below
    // starts a session for them.
    if (!clean && !dests[key].jobs.empty())
      fail_all(key, last, permanent_refusals == hosts.list.size() ? Result::failed : Result::deferred, tried);
  }
  --dests[key].sessions;
  --sessions;
  if (dests[key].jobs.empty() && dests[key].sessions == 0) dests.erase(key);
  pump();
}

// One TCP connection: deliver queued jobs of `key` until none is left or it fails.
awaitable<void> RemoteDelivery::Impl::connection(const std::string& key, const Host& host, uint16_t port,
                                                 smtp::ServerReply& last, bool& permanent, bool& clean) {
  if (s.relay && s.relay_pop_before_smtp) {
    std::string err = co_await net.pop3_login(host);
    if (!err.empty()) {
      last = {454, "4.7.0 POP-before-SMTP login to " + host.name + " failed: " + err, true};
      co_return;
    }
  }
  bool smtp_auth = s.relay && !s.relay_pop_before_smtp;
  auto conn = std::make_shared<Outbound::Conn>(
      io, smtp::ClientSettings{s.hostname, s.tls, smtp_auth ? s.relay_user : "", smtp_auth ? s.relay_password : ""});
  Outbound::Conn& c = *conn;
  if (!co_await net.connect(c, host, port)) {
    last = {451, "4.4.1 cannot connect to " + c.where + ": " + (c.timed_out ? "timed out" : c.ec.message()), true};
    co_return;
  }
  c.out = {};
  smtp::ClientEvent ev = co_await net.drive(c);
  if (ev != smtp::ClientEvent::ready) {
    if (ev == smtp::ClientEvent::failed) {
      last = c.client.failure();
      permanent = last.permanent() && !last.local;
      last.text = "(" + c.where + ") " + last.text;
    } else if (!c.tls_error.text.empty()) {
      last = c.tls_error;
    } else {
      last = {451, "4.4.2 connection to " + c.where + " lost" + (c.timed_out ? " (timeout)" : ""), true};
    }
    co_return;
  }
  std::string relay_desc = c.where + " tls=" + c.tls_desc;
  while (auto job = take_job(key)) {
    const StoredMessage& m = *job->attempt->msg;
    smtp::OutMessage om{m.envelope.sender, job->targets, m.content_size + m.prepend.size(), m.eight_bit,
                        m.envelope.smtputf8};
    c.out = c.client.send(om);
    ++in_flight;
    ev = co_await net.drive(c, &m);
    --in_flight;
    std::vector<Result> rs;
    if (ev == smtp::ClientEvent::message_done) {
      for (size_t i = 0; i < job->targets.size(); ++i) {
        const smtp::ServerReply& r = c.client.results()[i];
        Result::Kind k = r.positive() ? Result::delivered : r.permanent() ? Result::failed : Result::deferred;
        rs.push_back({job->targets[i], k, r, relay_desc});
      }
      complete_job(*job, std::move(rs));
      continue;
    }
    smtp::ServerReply why =
        ev == smtp::ClientEvent::failed ? c.client.failure()
        : !c.tls_error.text.empty()
            ? c.tls_error
            : smtp::ServerReply{451, "4.4.2 connection to " + c.where + " lost" + (c.timed_out ? " (timeout)" : ""),
                                true};
    for (auto& t : job->targets) rs.push_back({t, Result::deferred, why, relay_desc});
    complete_job(*job, std::move(rs));
    last = why;
    co_return;
  }
  clean = true;
  c.out = c.client.quit();
  co_await net.drive(c);
}

}  // namespace bulwark
