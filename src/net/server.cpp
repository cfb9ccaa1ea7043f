#include "net/server.hpp"

#include "crypt/file.hpp"

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include "directory/directory.hpp"
#include "core/metrics.hpp"
#include "logging/logs.hpp"
#include "net/connection.hpp"
#include "net/driver.hpp"
#include "net/login.hpp"
#include "net/peer.hpp"
#include "net/preflight.hpp"
#include "net/tls.hpp"
#include "policy/dns_checks.hpp"
#include "policy/policy.hpp"
#include "policy/redis_limits.hpp"
#include "store/pg_store.hpp"
#include "queue/spool.hpp"
#include "store/mailstore.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

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
  std::mutex reload_mu;
  std::list<std::weak_ptr<Conn>> conns;
  std::atomic<bool> stopping{false};
  asio::thread_pool workers{2};  // password hashing
  // Mailbox syncs and removals; in cluster mode also every mail store call (they wait
  // on PostgreSQL, not the disk, and the store's pool has 8 connections).
  unsigned disk_threads;
  asio::thread_pool disk;
  store::MailboxLocks mailbox_locks;
  Logins logins{dir, limits, pop, workers};
  std::unique_ptr<Greylist> greylist;
  std::unique_ptr<RedisLimits> shared_limits;  // cluster mode with Redis
  Shared shared{dir, spool, limits, pop, dns, logins, mailbox_locks, disk, workers, nullptr, nullptr, nullptr, {}};
  std::vector<std::unique_ptr<Driver>> drivers;  // parallel to acceptors
  std::function<void(const Config&)> reload_hook;

  Impl(Config c, Directory& d, Spool& s, store::PgStore* mail)
      : cfg(std::make_shared<Config>(std::move(c))),
        dir(d),
        spool(s),
        resolver(cfg->dns_server_list(), std::chrono::duration_cast<std::chrono::milliseconds>(cfg->dns.timeout)),
        dns(resolver),
        groups(std::make_shared<IpGroups>(cfg->ip_group_ranges)),
        limits(limit_settings(*cfg)),
        disk_threads(mail ? 8 : 2),
        disk(disk_threads) {
    shared.reload = [this] { return reload(); };
    shared.mail_store = mail;
    logs::crash_stacks_for(workers, 2);
    logs::crash_stacks_for(disk, disk_threads);
    logins.set_cache_ttl(cfg->policy.login_cache_ttl);
    if (cfg->cluster.enabled && !cfg->cluster.redis.empty())
      shared_limits = std::make_unique<RedisLimits>(
          RedisLimitSettings{cfg->cluster.redis, cfg->cluster.redis_password_file, cfg->cluster.node, cfg->cluster.lease},
          limit_settings(*cfg), limits, pop);
    if (shared_limits && mail) {  // IDLE across nodes: woken through Redis, PostgreSQL asked less
      store::FolderWakeups& w = mail->wakeups();
      RedisLimits* r = shared_limits.get();
      w.publish_with([r](int64_t folder) { r->folder_changed(folder); });
      shared_limits->share_folders({[&w](int64_t folder) { w.heard(folder); }, [&w](bool on) { w.set_live(on); }});
    }
    if (cfg->greylisting.enabled) {
      GreylistSettings gs;
      gs.delay = cfg->greylisting.delay;
      gs.expire = cfg->greylisting.expire;
      // Cluster mode: keyed hashes, and PostgreSQL instead of the file (serve.cpp).
      gs.hashed = cfg->cluster.enabled;
      gs.hash_key = crypt::data_key();
      greylist = std::make_unique<Greylist>(
          cfg->cluster.enabled ? std::string() : (std::filesystem::path(cfg->server.data_dir) / "greylist").string(), gs);
      shared.greylist = greylist.get();
      if (shared_limits) shared_limits->share_greylist(greylist.get());
    }
  }

  ~Impl() {
    close();
    // The mail store outlives the server; its commits must not reach for shared_limits.
    if (shared.mail_store) shared.mail_store->wakeups().publish_with(nullptr);
  }

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
    disk.join();
    resolver.shutdown();
    io_holder.reset();
  }

  static LimitSettings limit_settings(const Config& c) {
    LimitSettings s;
    s.max_messages_per_hour = c.limits.max_messages_per_hour;
    s.max_connections_per_ip = c.limits.max_connections_per_ip;
    s.max_mailbox_connections_per_ip = c.limits.max_mailbox_connections_per_ip;
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

  // Refuses a connection before the greeting: one reply, in the protocol's words,
  // then close. On an implicit-TLS port it is said inside TLS.
  awaitable<void> refuse(Conn& c, const std::string& bytes) {
    c.set_deadline(std::chrono::seconds(10));
    co_await write(c, bytes);
  }

  // The connection-time policy of SPEC 2 and 7, decided before any greeting.
  struct Admission {
    std::optional<Refusal> refusal;
    bool exempt = false;
    bool per_ip_counted = false;
  };
  Admission admit(const Driver& d, const ListenerConfig& lc, size_t listener_index, const Config& cfg,
                  const IpGroups& groups_now, const IpAddress& ipa, const std::string& ip) {
    Admission a;
    std::string where = lc.service + " " + lc.address + ":" + std::to_string(lc.port);
    if (!lc.allowed_ip_group.empty() && !groups_now.contains(lc.allowed_ip_group, ipa)) {
      logs::security().info("{} connection from {} rejected: not in IP group {} allowed on {}", d.name(), ip,
                            lc.allowed_ip_group, where);
      a.refusal = Refusal::not_in_group;
      return a;
    }
    if (lc.max_connections && listener_conns[listener_index] > lc.max_connections) {
      logs::security().info("{} connection from {} rejected: {} connections reached on {}", d.name(), ip,
                            lc.max_connections, where);
      a.refusal = Refusal::listener_full;
      return a;
    }
    a.exempt = groups_now.contains(cfg.limits.exempt_ip_group, ipa);
    if (a.exempt) return a;
    switch (limits.connect(ipa, d.mailbox_access() ? ClientLimits::Kind::mailbox : ClientLimits::Kind::smtp)) {
      case ClientLimits::Connect::harvest_blocked:
        logs::security().info("{} connection from {} rejected: directory harvest attack", d.name(), ip);
        a.refusal = Refusal::harvest_blocked;
        break;
      case ClientLimits::Connect::too_many_connections:
        logs::security().info("{} connection from {} rejected: more than {} connections from this address", d.name(),
                              ip, d.mailbox_access() ? cfg.limits.max_mailbox_connections_per_ip
                                                     : cfg.limits.max_connections_per_ip);
        a.refusal = Refusal::too_many_from_ip;
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

  // One connection: admission, the implicit-TLS handshake, then the protocol's
  // conversation. Whatever way it ends, the counts it took are given back, the
  // watchdog stops and the socket closes.
  awaitable<void> session(std::shared_ptr<Conn> c, ListenerConfig lc, size_t listener_index) {
    auto [cfg, tls_ctx, groups_now] = snapshot();
    Driver& driver = *drivers[listener_index];
    asio::error_code ec;
    auto ep = c->sock.remote_endpoint(ec);
    if (ec) co_return;
    IpAddress ipa = peer_ip(ep.address());
    std::string ip = ipa.str();
    c->stopping = &stopping;
    c->session_end = Clock::now() + cfg->timeouts.session;
    c->set_deadline(cfg->timeouts.command);
    asio::co_spawn(c->sock.get_executor(), watchdog(c), asio::detached);
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
    std::string service_label = "service=\"" + lc.service + "\"";
    metrics::add("bulwark_connections_total", service_label);
    metrics::add("bulwark_connections", service_label);
    struct Count {
      std::atomic<uint64_t>& n;
      const std::string& label;
      ~Count() {
        --n;
        metrics::add("bulwark_connections", label, -1);
      }
    } counted{listener_count, service_label};
    Admission adm = admit(driver, lc, listener_index, *cfg, *groups_now, ipa, ip);
    struct Disconnect {
      ClientLimits& l;
      IpAddress a;
      ClientLimits::Kind kind;
      bool on;
      ~Disconnect() {
        if (on) l.disconnect(a, kind);
      }
    } disconnect{limits, ipa, driver.mailbox_access() ? ClientLimits::Kind::mailbox : ClientLimits::Kind::smtp,
                 adm.per_ip_counted};
    Admitted admitted{lc, cfg, tls_ctx, groups_now, ip, ipa, adm.exempt, false, "", ""};
    if (driver.implicit_tls()) {
      // The handshake comes first, also for a client about to be refused, so that it
      // can read why (bounded: it is machine work, and a stalled one holds a slot).
      if (!tls_ctx || !co_await handshake(*c, *tls_ctx, std::min<Clock::duration>(cfg->timeouts.command,
                                                                                  std::chrono::seconds(10)))) {
        logs::main().info("{}: TLS handshake with {} failed", lc.service, ip);
        co_return;
      }
      auto names = tls_names(*c);
      admitted.tls_active = true;
      admitted.tls_version = names.first;
      admitted.tls_cipher = names.second;
    }
    if (adm.refusal) {
      static const char* const why[] = {"not_in_group", "listener_full", "too_many_from_ip", "harvest_blocked"};
      metrics::add("bulwark_connections_refused_total",
                   service_label + ",reason=\"" + why[static_cast<int>(*adm.refusal)] + "\"");
      std::string bytes = driver.refusal(*adm.refusal, cfg->server.hostname);
      co_await refuse(*c, bytes);
      co_return;
    }
    co_await driver.converse(*c, admitted);
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

  // Reads the file again and applies it; the error when it is refused (the running
  // configuration then stays). One at a time: SIGHUP and the settings API may meet.
  std::optional<std::string> reload() {
    std::lock_guard one(reload_mu);
    try {
      Config next = load_config(cfg->file);
      preflight(next);
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
      if (shared_limits) shared_limits->update(limit_settings(next));
      logins.set_cache_ttl(next.policy.login_cache_ttl);
      groups = std::make_shared<IpGroups>(next.ip_group_ranges);
      cfg = std::make_shared<Config>(std::move(next));
      tls = ctx;
      logs::main().info("reload: configuration and certificate reloaded from {}", cfg->file);
      return std::nullopt;
    } catch (const std::exception& e) {
      logs::main().error("reload failed, keeping the running configuration: {}", e.what());
      return std::string(e.what());
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

Server::Server(Config cfg, Directory& dir, Spool& spool, store::PgStore* mail)
    : impl_(std::make_unique<Impl>(std::move(cfg), dir, spool, mail)) {
  ensure_certificate(*impl_->cfg);
  impl_->tls = make_server_tls(*impl_->cfg);
}

Server::~Server() = default;

void Server::on_reload(std::function<void(const Config&)> f) { impl_->reload_hook = std::move(f); }

std::optional<std::string> Server::reload() { return impl_->reload(); }

Greylist* Server::greylist() { return impl_->greylist.get(); }

void Server::use_cluster_queue(store::PgQueue* q) { impl_->shared.cluster_queue = q; }

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
    // Listening from here (connections wait in the backlog until run() accepts): said
    // now, so that serve's "ready" comes after every listener.
    logs::main().info("listening: {} on {} port {}", lc.service, lc.address, lc.port);
    bool pop = lc.service == "pop3" || lc.service == "pop3s";
    bool imap = lc.service == "imap" || lc.service == "imaps";
    impl_->drivers.push_back(lc.service == "admin" ? make_admin_driver(impl_->shared)
                             : pop                  ? make_pop3_driver(impl_->shared, lc.service)
                             : imap                 ? make_imap_driver(impl_->shared, lc.service)
                                                    : make_smtp_driver(impl_->shared, lc.service));
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
      logs::reopen();  // log rotation: new files where logrotate moved the old ones away
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
  for (unsigned i = 1; i < threads; ++i)
    pool.emplace_back([&] {
      logs::crash_stack_for_this_thread();
      m.io.run();
    });
  m.io.run();
  for (auto& t : pool) t.join();
  drain.cancel();
  logs::main().info("stopped accepting; {} session(s) left", m.live_connections());
  return 0;
}

void Server::close() { impl_->close(); }

}  // namespace bulwark
