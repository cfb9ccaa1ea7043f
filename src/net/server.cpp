#include "net/server.hpp"

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include "core/strings.hpp"
#include "directory/directory.hpp"
#include "logging/logs.hpp"
#include "net/peer.hpp"
#include "net/smtp_hooks.hpp"
#include "net/tls.hpp"
#include "policy/dns_checks.hpp"
#include "policy/policy.hpp"
#include "queue/spool.hpp"
#include "smtp/session.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Resumes the awaiting coroutine on its own executor when the spool has synced.
template <class Token>
auto async_commit(Spool& spool, std::shared_ptr<smtp::Transaction> tx, Token&& token) {
  return asio::async_initiate<Token, void(bool)>(
      [&spool, tx](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        spool.submit(tx, [h, ex](bool ok) { asio::post(ex, [h, ok]() mutable { (*h)(ok); }); });
      },
      token);
}

smtp::Service service_of(const std::string& s) {
  if (s == "submission") return smtp::Service::submission;
  if (s == "smtps") return smtp::Service::smtps;
  return smtp::Service::smtp;
}

}  // namespace

struct Conn {
  explicit Conn(tcp::socket s) : sock(std::move(s)), timer(sock.get_executor()) {}
  tcp::socket sock;
  std::optional<asio::ssl::stream<tcp::socket&>> tls;
  asio::steady_timer timer;  // the watchdog's; expires at `deadline`
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point session_end = Clock::time_point::max();
  bool timed_out = false;
  std::atomic<bool> finished{false};  // read by the shutdown drain on another thread
  bool in_transaction = false;
  bool cut = false;  // the shutdown grace is over: even a transaction ends now
  std::array<char, 4096> buf;

  // The deadline of the current step, never past the whole-session bound. A deadline
  // that moves earlier re-arms the watchdog's timer at once (the watchdog only looks
  // again when its timer fires, so an earlier deadline would otherwise wait for the
  // older, later one). Runs on the connection's strand, like the watchdog.
  void set_deadline_at(Clock::time_point t) {
    deadline = std::min(t, session_end);
    if (deadline < timer.expiry()) timer.expires_at(deadline);
  }
  void set_deadline(Clock::duration d) { set_deadline_at(Clock::now() + d); }
};

struct Server::Impl {
  std::shared_ptr<const Config> cfg;
  Directory& dir;
  Spool& spool;
  // The event loop, owned so that close() can end it at a chosen moment: after the
  // hashing pool and the resolver (whose callbacks post into it) and before the
  // tables that session frames still point to.
  std::unique_ptr<asio::io_context> io_holder = std::make_unique<asio::io_context>();
  asio::io_context& io = *io_holder;
  // Made before any port is open: a SIGTERM from the moment a client can connect
  // ends the server gracefully instead of killing it.
  std::optional<asio::signal_set> signals{std::in_place, io, SIGTERM, SIGINT, SIGHUP};
  Resolver resolver;
  DnsChecks dns;
  std::vector<std::pair<ListenerConfig, std::unique_ptr<tcp::acceptor>>> acceptors;
  std::vector<std::unique_ptr<logs::Throttle>> accept_warnings;  // parallel to acceptors
  std::shared_ptr<asio::ssl::context> tls;
  std::shared_ptr<const IpGroups> groups;
  ClientLimits limits;
  PopLogins pop;
  std::deque<std::atomic<uint64_t>> listener_conns;  // parallel to acceptors
  logs::Throttle table_full{std::chrono::seconds(60)};
  std::mutex mu;  // guards cfg, tls, groups, conns
  std::list<std::weak_ptr<Conn>> conns;
  std::atomic<bool> stopping{false};
  asio::thread_pool workers{2};  // password hashing
  std::function<void(const Config&)> reload_hook;

  Impl(Config c, Directory& d, Spool& s)
      : cfg(std::make_shared<Config>(std::move(c))),
        dir(d),
        spool(s),
        resolver(cfg->dns_server_list(), std::chrono::duration_cast<std::chrono::milliseconds>(cfg->dns.timeout)),
        dns(resolver),
        groups(std::make_shared<IpGroups>(cfg->ip_group_ranges)),
        limits(limit_settings(*cfg)) {}

  ~Impl() { close(); }

  // The end of the event loop, in order: nothing new arrives (listeners, signals),
  // the threads that post into the loop finish (hashing pool, resolver), then the
  // loop goes with whatever session frames are left in it. Members those frames use
  // (the per-listener counts, ClientLimits) are still alive at that point.
  void close() {
    if (!io_holder) return;
    io.stop();
    acceptors.clear();
    signals.reset();
    workers.join();
    resolver.shutdown();
    io_holder.reset();
  }

  static LimitSettings limit_settings(const Config& c) {
    LimitSettings s;
    s.max_messages_per_hour = c.limits.max_messages_per_hour;
    s.max_connections_per_ip = c.limits.max_connections_per_ip;
    s.max_unknown_recipients = c.limits.max_unknown_recipients;
    s.harvest_block = c.limits.harvest_block;
    s.max_auth_failures = c.policy.max_auth_failures;
    return s;
  }

  struct Snapshot {
    std::shared_ptr<const Config> cfg;
    std::shared_ptr<asio::ssl::context> tls;
    std::shared_ptr<const IpGroups> groups;
  };
  Snapshot snapshot() {
    std::lock_guard lk(mu);
    return {cfg, tls, groups};
  }

  static smtp::AuthSettings auth_settings(const Config& c, const IpGroups& groups, const IpAddress& ip) {
    smtp::AuthSettings a;
    a.mode = c.policy.mode == "none"        ? smtp::AuthMode::none
             : c.policy.mode == "encrypted" ? smtp::AuthMode::encrypted
                                            : smtp::AuthMode::secure_auth;
    for (auto& m : c.policy.auth_mechanisms)
      if (auto mech = auth::mech_from_name(m)) a.mechanisms.push_back(*mech);
    a.insecure_ok = groups.contains(c.policy.insecure_auth_ip_group, ip);
    a.failure_delay = std::chrono::duration_cast<std::chrono::milliseconds>(c.policy.auth_failure_delay);
    a.received_auth_user = c.policy.received_auth_user;
    return a;
  }

  // Checks a password on the worker pool (Argon2id takes 64 MiB and ~0.1 s: never on
  // an I/O thread; the pool's size bounds the memory). Completes on the session's executor.
  template <class Token>
  auto async_verify(const smtp::LoginRequest& login, Token&& token) {
    return asio::async_initiate<Token, void(bool)>(
        [this, &login](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto ex = asio::get_associated_executor(*h);
          asio::post(workers, [this, h, ex, user = login.user, pw = login.password]() mutable {
            bool ok = dir.verify_login(user, pw).has_value();
            auth::wipe(pw);
            asio::post(ex, [h, ok]() mutable { (*h)(ok); });
          });
        },
        token);
  }

  // The DNS checks of SPEC 7 for one MAIL FROM: client PTR, then sender domain.
  // Completes on the session's executor with a refusal, or none.
  template <class Token>
  auto async_dns_check(std::string ip, Address sender, bool ptr, bool domain, Token&& token) {
    return asio::async_initiate<Token, void(std::optional<smtp::Reply>)>(
        [this, ip, sender, ptr, domain](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto ex = asio::get_associated_executor(*h);
          auto finish = [h, ex](std::optional<smtp::Reply> r) {
            asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
          };
          auto check_domain = [this, ip, sender, domain, finish]() {
            if (!domain || sender.empty()) return finish(std::nullopt);
            if (sender.domain_is_literal()) {
              logs::security().info("SMTP sender <{}> from {} refused: address literal, not a domain",
                                    sanitize(sender.str()), ip);
              return finish(smtp::Reply(550, "5.1.8", "Sender address must use a domain name"));
            }
            dns.sender_domain(sender.domain, [ip, sender, finish](DnsChecks::Verdict v) {
              if (v == DnsChecks::Verdict::ok) return finish(std::nullopt);
              if (v == DnsChecks::Verdict::missing) {
                logs::security().info("SMTP sender <{}> from {} refused: domain {} has no MX, A or AAAA record",
                                      sanitize(sender.str()), ip, sanitize(sender.domain));
                return finish(smtp::Reply(550, "5.1.8", "Sender address domain " + sanitize(sender.domain) +
                                                            " does not exist in DNS"));
              }
              logs::security().info("SMTP sender <{}> from {} deferred: DNS lookup of {} failed",
                                    sanitize(sender.str()), ip, sanitize(sender.domain));
              finish(smtp::Reply(451, "4.4.3", "Temporary DNS failure checking the sender domain, try again later"));
            });
          };
          if (!ptr) return check_domain();
          dns.client_ptr(ip, [ip, finish, check_domain](DnsChecks::Verdict v) {
            if (v == DnsChecks::Verdict::ok) return check_domain();
            if (v == DnsChecks::Verdict::missing) {
              logs::security().info("SMTP client {} refused: no PTR record", ip);
              return finish(smtp::Reply(550, "5.7.25", "Client host [" + ip + "] has no PTR record"));
            }
            logs::security().info("SMTP client {} deferred: PTR lookup failed", ip);
            finish(smtp::Reply(450, "4.7.25", "Temporary DNS failure looking up the PTR of [" + ip + "]"));
          });
        },
        token);
  }

  // Refuses a connection before the greeting: one reply line, then close. On an
  // implicit-TLS port it is said inside TLS (a TLS client cannot read plain text).
  awaitable<void> refuse(Conn& c, const smtp::Reply& r) {
    asio::error_code ec;
    c.set_deadline(std::chrono::seconds(10));
    std::string bytes = r.render();
    if (c.tls) co_await asio::async_write(*c.tls, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
    else co_await asio::async_write(c.sock, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
  }

  awaitable<void> watchdog(std::shared_ptr<Conn> c) {
    while (!c->finished) {
      c->timer.expires_at(c->deadline);
      asio::error_code ec;
      co_await c->timer.async_wait(asio::redirect_error(use_awaitable, ec));
      if (c->finished) break;
      if (Clock::now() < c->deadline) continue;  // moved on, or moved earlier and re-armed
      if (!c->timed_out) {
        // First expiry: interrupt the read so the session can say 421; give it a
        // short while to do so before cutting the connection.
        c->timed_out = true;
        c->deadline = Clock::now() + std::chrono::seconds(10);
        c->sock.cancel(ec);
      } else {
        c->sock.close(ec);
        break;
      }
    }
  }

  awaitable<size_t> read_some(Conn& c, asio::error_code& ec) {
    if (c.tls) co_return co_await c.tls->async_read_some(asio::buffer(c.buf), asio::redirect_error(use_awaitable, ec));
    co_return co_await c.sock.async_read_some(asio::buffer(c.buf), asio::redirect_error(use_awaitable, ec));
  }

  // False when the peer is gone: an I/O error is a value, never an exception (DESIGN 6).
  // Callers pass named strings, never temporaries: GCC 12 destroys class-type
  // temporaries of a co_await expression twice (docs/architecture.md).
  awaitable<bool> write(Conn& c, const std::string& bytes) {
    if (bytes.empty()) co_return true;
    asio::error_code ec;
    if (c.tls) co_await asio::async_write(*c.tls, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
    else co_await asio::async_write(c.sock, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
    co_return !ec;
  }

  // A TLS handshake is bounded by the command timeout, and by 10 s at most: it is
  // machine work, and a client that stalls in it holds a connection slot.
  awaitable<bool> handshake(Conn& c, asio::ssl::context& ctx, const Config& cfg) {
    c.tls.emplace(c.sock, ctx);
    c.set_deadline(std::min<Clock::duration>(cfg.timeouts.command, std::chrono::seconds(10)));
    asio::error_code ec;
    co_await c.tls->async_handshake(asio::ssl::stream_base::server, asio::redirect_error(use_awaitable, ec));
    co_return !ec && !c.timed_out;
  }

  // The connection-time policy of SPEC 2 and 7, decided before any greeting. Returns
  // the refusal, if any; on success the counts it took are released by `held`.
  struct Admission {
    std::optional<smtp::Reply> refusal;
    bool exempt = false;
    bool per_ip_counted = false;
  };
  Admission admit(const ListenerConfig& lc, size_t listener_index, const Config& cfg, const IpGroups& groups_now,
                  const IpAddress& ipa, const std::string& ip) {
    Admission a;
    const std::string& host = cfg.server.hostname;
    std::string where = lc.service + " " + lc.address + ":" + std::to_string(lc.port);
    if (!lc.allowed_ip_group.empty() && !groups_now.contains(lc.allowed_ip_group, ipa)) {
      logs::security().info("SMTP connection from {} rejected: not in IP group {} allowed on {}", ip,
                            lc.allowed_ip_group, where);
      a.refusal = smtp::Reply(554, "5.7.1", host + " Access denied");
      return a;
    }
    if (lc.max_connections && listener_conns[listener_index] > lc.max_connections) {
      logs::security().info("SMTP connection from {} rejected: {} connections reached on {}", ip, lc.max_connections,
                            where);
      a.refusal = smtp::Reply(421, "4.7.0", host + " Too many connections to this service, try again later");
      return a;
    }
    a.exempt = groups_now.contains(cfg.limits.exempt_ip_group, ipa);
    if (a.exempt) return a;
    switch (limits.connect(ipa)) {
      case ClientLimits::Connect::harvest_blocked:
        logs::security().info("SMTP connection from {} rejected: directory harvest attack", ip);
        a.refusal = smtp::Reply(421, "4.7.1", host + " Too many unknown recipients from your address, try later");
        break;
      case ClientLimits::Connect::too_many_connections:
        logs::security().info("SMTP connection from {} rejected: more than {} connections from this address", ip,
                              cfg.limits.max_connections_per_ip);
        a.refusal = smtp::Reply(421, "4.7.0", host + " Too many connections from your address, try later");
        break;
      case ClientLimits::Connect::ok: a.per_ip_counted = true; break;
      case ClientLimits::Connect::untracked:
        if (auto held = table_full.allow())
          logs::security().warn("client table full: {} is served without per-IP limits (AUTH refused to it); "
                                "{} more such connections since the last warning",
                                ip, *held);
        break;
    }
    return a;
  }

  awaitable<void> session(std::shared_ptr<Conn> c, ListenerConfig lc, size_t listener_index) {
    auto [cfg, tls_ctx, groups_now] = snapshot();
    asio::error_code ec;
    auto ep = c->sock.remote_endpoint(ec);
    if (ec) co_return;
    IpAddress ipa = peer_ip(ep.address());
    std::string ip = ipa.str();
    c->session_end = Clock::now() + cfg->timeouts.session;
    c->set_deadline(cfg->timeouts.command);
    asio::co_spawn(c->sock.get_executor(), watchdog(c), asio::detached);
    // Whatever way the session ends, the watchdog stops and the socket closes.
    struct Finish {
      Conn& c;
      ~Finish() {
        asio::error_code ec;
        c.timer.cancel();
        c.sock.close(ec);
        c.finished = true;
      }
    } finish{*c};

    auto& listener_count = listener_conns[listener_index];
    ++listener_count;
    struct Count {
      std::atomic<uint64_t>& n;
      ~Count() { --n; }
    } counted{listener_count};
    Admission adm = admit(lc, listener_index, *cfg, *groups_now, ipa, ip);
    struct Disconnect {
      ClientLimits& l;
      IpAddress a;
      bool on;
      ~Disconnect() {
        if (on) l.disconnect(a);
      }
    } disconnect{limits, ipa, adm.per_ip_counted};

    smtp::SessionConfig sc;
    sc.hostname = cfg->server.hostname;
    sc.service = service_of(lc.service);
    sc.starttls_available = tls_ctx != nullptr && sc.service != smtp::Service::smtps;
    if (!adm.exempt) {  // the exempt group has none of the limits (SPEC 7)
      sc.limits.max_message_size = cfg->limits.max_message_size;
      sc.limits.max_recipients = cfg->limits.max_recipients;
      sc.limits.max_hops = cfg->limits.max_hops;
      sc.limits.max_failed_commands = cfg->limits.max_failed_commands;
    } else {
      sc.limits.max_message_size = sc.limits.max_recipients = sc.limits.max_hops = sc.limits.max_failed_commands = 0;
    }
    sc.auth = auth_settings(*cfg, *groups_now, ipa);
    smtp::ClientInfo client{ip, false, "", ""};

    auto tls_names = [&c]() -> std::pair<std::string, std::string> {
      SSL* ssl = c->tls->native_handle();
      return {SSL_get_version(ssl), SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))};
    };
    if (sc.service == smtp::Service::smtps) {
      // Implicit TLS: the handshake comes first, also for a client about to be
      // refused, so that it can read why (bounded by the handshake deadline).
      if (!tls_ctx || !co_await handshake(*c, *tls_ctx, *cfg)) {
        logs::main().info("smtps: TLS handshake with {} failed", ip);
        co_return;
      }
      auto names = tls_names();
      client.tls = true;
      client.tls_version = names.first;
      client.tls_cipher = names.second;
    }
    if (adm.refusal) {
      co_await refuse(*c, *adm.refusal);
      co_return;
    }
    Talk talk{lc, cfg, tls_ctx, groups_now, ip, ipa, sc, client, adm.exempt};
    co_await converse(*c, talk);
  }

  // What a conversation needs from the connection's setup (passed by reference: GCC 12
  // mishandles class-type coroutine parameters passed by value).
  struct Talk {
    ListenerConfig lc;
    std::shared_ptr<const Config> cfg;
    std::shared_ptr<asio::ssl::context> tls_ctx;
    std::shared_ptr<const IpGroups> groups;
    std::string ip;
    IpAddress ipa;
    smtp::SessionConfig sc;
    smtp::ClientInfo client;
    bool exempt = false;
  };

  // The SMTP conversation on an admitted connection (session() did the admission and
  // the implicit-TLS handshake).
  awaitable<void> converse(Conn& conn, Talk& t) {
    Conn* c = &conn;
    const Config* cfg = t.cfg.get();
    const std::string& ip = t.ip;
    const IpAddress& ipa = t.ipa;
    const ListenerConfig& lc = t.lc;
    auto tls_ctx = t.tls_ctx;
    asio::error_code ec;
    RelaySettings rs{cfg->relay.open, cfg->relay.allow_ip_group, cfg->relay.allow_authenticated,
                     cfg->relay.pop_before_smtp};
    SessionPolicy policy{t.groups, rs, limits, pop, cfg->limits.max_messages_per_hour, t.exempt,
                         t.groups->contains(cfg->relay.trusted_ip_group, ipa), cfg->limits.require_client_ptr,
                         cfg->limits.require_sender_domain_in_dns, cfg->policy.anti_spoofing, cfg->server.postmaster};
    SmtpHooks hooks(dir, spool, ip, ipa, cfg->server.hostname, policy);
    smtp::ServerSession s(t.sc, hooks, t.client);
    std::string greeting = s.greet().bytes;  // named: see write()
    std::string bye;
    bool was_in_data = false;
    Clock::time_point data_start{};
    uint64_t data_bytes = 0;
    auto tls_names = [c]() -> std::pair<std::string, std::string> {
      SSL* ssl = c->tls->native_handle();
      return {SSL_get_version(ssl), SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))};
    };
    if (!co_await write(*c, greeting)) co_return;
    // Read deadlines (DESIGN 13: a deadline never resets per byte). A command line
    // must be complete within timeouts.command of the moment we started waiting
    // for it, however it is split. A DATA/BDAT phase gets timeouts.data for any one
    // wait, and as a whole must average min_data_rate after its first
    // timeouts.data: a client dripping a byte at a time is cut either way.
    for (;;) {
      bool in_data = s.state() == smtp::State::data || s.state() == smtp::State::bdat;
      auto now = Clock::now();
      if (in_data) {
        if (!was_in_data) {
          data_start = now;
          data_bytes = 0;
        }
        auto deadline = now + cfg->timeouts.data;
        if (uint64_t rate = cfg->timeouts.min_data_rate)
          deadline = std::min(deadline, data_start + cfg->timeouts.data +
                                            std::chrono::milliseconds(data_bytes * 1000 / rate));
        c->set_deadline_at(deadline);
      } else if (was_in_data || s.buffered() == 0) {
        c->set_deadline(cfg->timeouts.command);
      }  // else a command is arriving in pieces: its deadline stands
      was_in_data = in_data;
      c->in_transaction = s.in_transaction() || in_data;
      if (stopping && (!c->in_transaction || c->cut)) {
        std::string bye = s.shutdown(smtp::ServerSession::Closing::shutdown).bytes;
        co_await write(*c, bye);
        break;
      }
      asio::error_code rec;
      size_t n = co_await read_some(*c, rec);
      if (rec) {
        if (rec == asio::error::operation_aborted) {
          // Woken by the watchdog (timeout) or by shutdown: say why, then close.
          bool timeout = c->timed_out;
          c->timed_out = true;  // the watchdog now only allows a short grace period
          c->deadline = Clock::now() + std::chrono::seconds(5);
          std::string bye =
              s.shutdown(timeout ? smtp::ServerSession::Closing::timeout : smtp::ServerSession::Closing::shutdown).bytes;
          co_await write(*c, bye);
        }
        break;
      }
      if (in_data) data_bytes += n;
      smtp::Output o = s.feed(std::string_view(c->buf.data(), n));
      bool close = false;
      for (;;) {
        if (o.delay.count() > 0) {  // a failed AUTH: slow the guesser down
          asio::steady_timer pause(c->sock.get_executor(), o.delay);
          co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
        }
        if (!co_await write(*c, o.bytes)) {
          close = true;
          break;
        }
        if (o.next == smtp::Next::read) break;
        if (o.next == smtp::Next::close) {
          close = true;
          break;
        }
        if (o.next == smtp::Next::check) {
          c->set_deadline(cfg->timeouts.command);
          auto refusal = co_await async_dns_check(ip, s.checking_sender(), cfg->limits.require_client_ptr,
                                                  cfg->limits.require_sender_domain_in_dns, use_awaitable);
          o = s.check_finished(std::move(refusal));
          continue;
        }
        if (o.next == smtp::Next::verify) {
          c->set_deadline(cfg->timeouts.command);
          bool ok = co_await async_verify(s.pending_login(), use_awaitable);
          o = s.login_finished(ok);
          continue;
        }
        if (o.next == smtp::Next::starttls) {
          if (!co_await handshake(*c, *tls_ctx, *cfg)) {
            logs::main().info("STARTTLS handshake with {} failed", ip);
            close = true;
            break;
          }
          auto names = tls_names();
          o = s.tls_started(names.first, names.second);
          continue;
        }
        // commit
        auto tx = std::make_shared<smtp::Transaction>(std::move(s.pending()));
        c->set_deadline(cfg->timeouts.data);
        bool ok = co_await async_commit(spool, tx, use_awaitable);
        if (ok) {
          log_accepted(*tx, lc);
          if (!t.exempt) limits.message_accepted(ipa);
        }
        else logs::main().error("spool commit failed for message from {}", ip);
        o = s.commit_finished(ok);
      }
      if (close) break;
    }
  }

  void log_accepted(const smtp::Transaction& tx, const ListenerConfig& lc) {
    const auto& e = tx.envelope;
    std::string rcpts;
    std::string last;
    for (auto& r : e.recipients) {
      if (r.rcpt == last) continue;
      last = r.rcpt;
      if (!rcpts.empty()) rcpts += ",";
      rcpts += "<" + sanitize(r.rcpt) + ">";
    }
    logs::mail().info("accepted id={} client={} service={} from=<{}> to={} size={} tls={} auth={}", e.id,
                      e.client_ip, lc.service, sanitize(e.sender), rcpts, tx.received.size() + tx.body.size(),
                      e.tls.empty() ? "none" : e.tls, e.auth_user.empty() ? "none" : sanitize(e.auth_user));
  }

  awaitable<void> accept_loop(tcp::acceptor& acc, ListenerConfig lc, size_t index) {
    for (;;) {
      asio::error_code ec;
      tcp::socket sock = co_await acc.async_accept(asio::make_strand(io), asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping) co_return;
        // EMFILE and friends: back off briefly instead of spinning, and say so at
        // most once per 10 s (it repeats every 100 ms while the condition lasts).
        if (auto held = accept_warnings[index]->allow())
          logs::main().warn("accept on {}:{} failed: {}{}", lc.address, lc.port, ec.message(),
                            *held ? fmt::format(" ({} more since the last warning)", *held) : std::string());
        asio::steady_timer t(io, std::chrono::milliseconds(100));
        co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      sock.set_option(tcp::no_delay(true), ec);
      auto c = std::make_shared<Conn>(std::move(sock));
      ListenerConfig current;
      {
        std::lock_guard lk(mu);
        current = acceptors[index].first;  // SIGHUP may have changed its access settings
        for (auto it = conns.begin(); it != conns.end();) it = it->expired() ? conns.erase(it) : std::next(it);
        conns.push_back(c);
      }
      // What a session throws (not I/O: that is values) ends that session only and
      // is logged here (DESIGN 6: one catch at the top).
      asio::co_spawn(c->sock.get_executor(), session(c, current, index), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          logs::main().warn("session ended by an error: {}", ex.what());
        } catch (...) {
          logs::main().warn("session ended by an unknown error");
        }
      });
    }
  }

  void reload() {
    try {
      Config next = load_config(cfg->file);
      ensure_certificate(next);
      auto ctx = make_server_tls(next);
      std::lock_guard lk(mu);
      bool listeners_changed = next.listeners.size() != cfg->listeners.size();
      for (size_t i = 0; !listeners_changed && i < next.listeners.size(); ++i)
        listeners_changed = next.listeners[i].address != cfg->listeners[i].address ||
                            next.listeners[i].port != cfg->listeners[i].port ||
                            next.listeners[i].service != cfg->listeners[i].service;
      if (listeners_changed) logs::main().warn("reload: listener changes take effect at the next restart");
      // Per-listener access groups and caps may change; addresses and ports may not.
      for (size_t i = 0; i < next.listeners.size() && i < cfg->listeners.size(); ++i) {
        auto& l = acceptors[i].first;
        if (!listeners_changed) {
          l.allowed_ip_group = next.listeners[i].allowed_ip_group;
          l.max_connections = next.listeners[i].max_connections;
        }
      }
      next.listeners = cfg->listeners;
      if (reload_hook) reload_hook(next);  // may refuse the reload by throwing
      for (auto& w : next.warnings) logs::main().warn("{}", w);
      limits.update(limit_settings(next));
      groups = std::make_shared<IpGroups>(next.ip_group_ranges);
      cfg = std::make_shared<Config>(std::move(next));
      tls = ctx;
      logs::main().info("reload: configuration and certificate reloaded from {}", cfg->file);
    } catch (const std::exception& e) {
      logs::main().error("reload failed, keeping the running configuration: {}", e.what());
    }
  }

  void begin_shutdown() {
    if (stopping.exchange(true)) return;
    logs::main().info("shutting down: no new connections, finishing transactions in flight");
    for (auto& [lc, acc] : acceptors) {
      asio::error_code ec;
      acc->close(ec);
    }
    // Wake idle sessions so they can say 421; busy ones notice between commands.
    for_each_conn([](Conn& c) {
      asio::error_code ec;
      if (!c.in_transaction) c.sock.cancel(ec);
    });
  }

  // The shutdown grace is over: every session says 421 and ends now, also one in the
  // middle of a transaction (its message was not acknowledged, so nothing is lost).
  void cut_all() {
    for_each_conn([](Conn& c) {
      asio::error_code ec;
      c.cut = true;
      c.sock.cancel(ec);
    });
  }

  // Runs f on each live connection's own strand.
  template <class F>
  void for_each_conn(F f) {
    std::lock_guard lk(mu);
    for (auto& w : conns)
      if (auto c = w.lock()) asio::post(c->sock.get_executor(), [c, f] { f(*c); });
  }

  size_t live_connections() {
    std::lock_guard lk(mu);
    size_t n = 0;
    for (auto& w : conns)
      if (auto c = w.lock(); c && !c->finished) ++n;
    return n;
  }
};

Server::Server(Config cfg, Directory& dir, Spool& spool) : impl_(std::make_unique<Impl>(std::move(cfg), dir, spool)) {
  ensure_certificate(*impl_->cfg);
  impl_->tls = make_server_tls(*impl_->cfg);
}

Server::~Server() = default;

void Server::on_reload(std::function<void(const Config&)> f) { impl_->reload_hook = std::move(f); }

void Server::bind() {
  for (auto& lc : impl_->cfg->listeners) {
    auto acc = std::make_unique<tcp::acceptor>(impl_->io);
    asio::error_code ec;
    tcp::endpoint ep(asio::ip::make_address(lc.address, ec), lc.port);
    if (!ec) acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && ep.address().is_v6()) acc->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(1024, ec);
    if (ec)
      throw std::runtime_error("cannot listen on " + lc.address + " port " + std::to_string(lc.port) + " (" +
                               lc.service + "): " + ec.message());
    impl_->acceptors.emplace_back(lc, std::move(acc));
    impl_->accept_warnings.push_back(std::make_unique<logs::Throttle>());
    impl_->listener_conns.emplace_back(0);
  }
}

int Server::run(unsigned threads) {
  Impl& m = *impl_;
  for (auto& w : m.cfg->warnings) logs::main().warn("{}", w);
  for (size_t i = 0; i < m.acceptors.size(); ++i) {
    auto& [lc, acc] = m.acceptors[i];
    asio::co_spawn(m.io, m.accept_loop(*acc, lc, i), asio::detached);
    logs::main().info("listening: {} on {} port {}", lc.service, lc.address, lc.port);
  }
  // Shutdown: stop accepting, let transactions in flight finish for
  // timeouts.shutdown, then cut what is left and give it 10 s to say 421 and go.
  // run() returns once every session has ended (or, should one hang, after that).
  asio::steady_timer drain(m.io);
  Clock::time_point until;
  bool cutting = false;
  std::function<void(const asio::error_code&)> check = [&](const asio::error_code&) {
    size_t live = m.live_connections();
    if (live == 0) {
      m.io.stop();
      return;
    }
    if (Clock::now() >= until) {
      if (cutting) {
        logs::main().error("shutdown: {} session(s) did not end; stopping anyway", live);
        m.io.stop();
        return;
      }
      logs::main().info("shutdown: {} session(s) still busy after {}s, closing them", live,
                        std::chrono::duration_cast<std::chrono::seconds>(m.cfg->timeouts.shutdown).count());
      m.cut_all();
      cutting = true;
      until = Clock::now() + std::chrono::seconds(10);
    }
    drain.expires_after(std::chrono::milliseconds(50));
    drain.async_wait(check);
  };
  std::function<void(const asio::error_code&, int)> on_signal = [&](const asio::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      m.reload();
      m.signals->async_wait(on_signal);
      return;
    }
    m.begin_shutdown();
    until = Clock::now() + m.cfg->timeouts.shutdown;
    check({});
  };
  m.signals->async_wait(on_signal);
  auto guard = asio::make_work_guard(m.io);
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { m.io.run(); });
  m.io.run();
  for (auto& t : pool) t.join();
  drain.cancel();
  logs::main().info("stopped accepting; {} session(s) left", m.live_connections());
  return 0;
}

void Server::close() { impl_->close(); }

}  // namespace bulwark
