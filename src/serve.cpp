// serve.cpp: `bulwark serve` -- the composition root: builds the services from the
// configuration, and tears them down in a stated order (see serve.hpp).
#include "admin/api.hpp"
#include "cluster/shared_settings.hpp"
#include "serve.hpp"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "admin/audit.hpp"
#include "admin/cluster_import.hpp"
#include "admin/encryption_cli.hpp"
#include "auth/password.hpp"
#include "cluster/dkim_keys.hpp"
#include "cluster/node.hpp"
#include "cluster/schema.hpp"
#include "cluster/settings.hpp"
#include "config/config.hpp"
#include "core/metrics.hpp"
#include "core/strings.hpp"
#include "crypt/keystore.hpp"
#include "delivery/local.hpp"
#include "delivery/remote.hpp"
#include "directory/directory.hpp"
#include "dkim/dkim.hpp"
#include "logging/logs.hpp"
#include "net/preflight.hpp"
#include "net/server.hpp"
#include "queue/spool.hpp"
#include "store/folders.hpp"
#include "store/mailstore.hpp"
#include "policy/pg_greylist.hpp"
#include "store/pg_queue.hpp"
#include "store/pg_store.hpp"

namespace bulwark {

namespace fs = std::filesystem;

namespace {

// Started as root: everything under data_dir/log_dir becomes the service user's,
// then we give up root for good.
void drop_privileges(const Config& cfg) {
  if (geteuid() != 0) return;
  if (cfg.server.user.empty()) {
    logs::main().warn("running as root because server.user is empty; set server.user to drop privileges");
    return;
  }
  passwd* pw = getpwnam(cfg.server.user.c_str());
  if (!pw)
    throw std::runtime_error("server.user \"" + cfg.server.user + "\" does not exist (create it, or set server.user)");
  for (const auto& top : {cfg.server.data_dir, cfg.server.log_dir}) {
    ::chown(top.c_str(), pw->pw_uid, pw->pw_gid);
    for (auto& e : fs::recursive_directory_iterator(top)) ::lchown(e.path().c_str(), pw->pw_uid, pw->pw_gid);
  }
  if (setgroups(0, nullptr) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
    throw std::runtime_error("cannot switch to user " + cfg.server.user + ": " + std::strerror(errno));
  if (setuid(0) == 0) throw std::runtime_error("privileges could not be dropped");
  logs::main().info("running as user {}", cfg.server.user);
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

RemoteSettings remote_settings(const Config& cfg) {
  RemoteSettings r;
  const auto& d = cfg.delivery;
  r.hostname = cfg.server.hostname;
  r.data_dir = cfg.server.data_dir;
  r.relay = d.mode == "relay";
  r.relay_host = d.relay_host;
  r.relay_port = d.relay_port;
  if (d.relay_auth == "smtp" || d.relay_auth == "pop3-before-smtp") {
    r.relay_user = d.relay_user;
    r.relay_password = read_secret_line(d.relay_password_file, true);
    if (r.relay_password.empty())
      throw std::runtime_error("delivery.relay_password_file " + d.relay_password_file + " holds no password");
  }
  r.relay_pop_before_smtp = d.relay_auth == "pop3-before-smtp";
  r.relay_pop3_port = d.relay_pop3_port;
  r.tls = d.tls == "required" ? smtp::ClientTls::required
          : d.tls == "off"    ? smtp::ClientTls::off
                              : smtp::ClientTls::opportunistic;
  r.tls_ca_file = d.tls_ca_file;
  r.max_sessions = d.max_delivery_threads;
  r.max_per_destination = d.max_per_destination;
  r.retry_interval = d.retry_interval;
  r.warn_after = d.warn_after;
  r.bounce_after = d.bounce_after;
  r.report_language = d.report_language;
  r.mx_port = d.mx_port;
  r.dkim_sign = cfg.dkim.sign;
  r.connect_timeout = d.connect_timeout;
  r.reply_timeout = d.reply_timeout;
  return r;
}

ReportSettings report_settings(const Config& cfg) {
  return {cfg.server.hostname, cfg.server.data_dir, cfg.delivery.report_language, cfg.delivery.bounce_after};
}

LocalSettings local_settings(const Config& cfg) {
  // A mailbox that cannot be written is tried again soon (a full disk, a removed
  // directory being restored), but never more often than remote retries.
  return {cfg.server.data_dir, cfg.server.hostname,
          std::min<std::chrono::seconds>(cfg.delivery.retry_interval, std::chrono::seconds(30)),
          cfg.delivery.bounce_after};
}

// systemd's readiness protocol (Type=notify): one datagram to $NOTIFY_SOCKET.
void sd_notify(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  size_t len = std::strlen(path);
  if (len >= sizeof sa.sun_path) return;
  std::memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ::sendto(fd, state, std::strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa),
           socklen_t(offsetof(sockaddr_un, sun_path) + len));
  ::close(fd);
}

std::string node_address(const Config& cfg) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string out = host;
  if (!cfg.listeners.empty()) out += "/" + cfg.listeners.front().address;
  return out;
}

}  // namespace

using cluster::pg_settings;

// The directory: embedded (SQLite) or, in cluster mode, PostgreSQL's. A serving node
// makes the schema when the database has none (the first node; under a lock) and
// refuses one of another version; the admin commands only check.
std::unique_ptr<Directory> open_directory(const Config& cfg, bool serving) {
  if (!cfg.cluster.enabled) return Directory::open(cfg.server.data_dir);
  auto c = pg::Conn::open(pg_settings(cfg));
  if (serving && cluster::database_version(*c) == 0) {
    cluster::migrate(*c);
    logs::main().info("cluster: made the schema (version {}) in PostgreSQL at {}", cluster::schema_version(),
                      c->server());
  }
  cluster::require_version(*c);
  return Directory::open_cluster(pg_settings(cfg), serving);
}

// The composition root: builds the services, and tears them down in a stated order.
namespace {

// Cluster mode: the settings shared through the admin API (cluster/shared_settings.hpp)
// merged into this node's file -- checked first, as a PATCH is; refused, the file stays
// as it is and the log says why. True when the file changed. `reload`: applies the new
// file to the running server (empty at start: the caller loads it).
bool follow_shared_settings(pg::Conn& c, const Config& cfg, int64_t& applied,
                            const std::function<std::optional<std::string>()>& reload) {
  auto shared = cluster::read_shared(c);
  if (shared.version == applied) return false;
  bool changed = false;
  try {
    admin::apply_settings(cfg, shared.patch,
                          "the cluster's shared settings (version " + std::to_string(shared.version) + ", " +
                              (shared.changed_by.empty() ? std::string("-") : shared.changed_by) + ")",
                          preflight, reload, &changed);
    if (changed)
      logs::main().info("cluster: applied the shared settings, version {} ({})", shared.version, shared.changed_by);
  } catch (const admin::SettingsRefused& r) {
    logs::main().error("cluster: the shared settings, version {}, are not applied on this node: {}", shared.version,
                       r.msg);
  }
  applied = shared.version;
  return changed;
}

}  // namespace

int serve(const Config& given) {
  Config cfg = given;  // cluster mode: with the shared settings merged in at start
  preflight(cfg);
  logs::install_crash_report();
  // Until the server's signal handlers exist (they are made before any port opens),
  // SIGTERM/SIGINT/SIGHUP wait instead of killing a half-started server.
  sigset_t sigs, old;
  sigemptyset(&sigs);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&sigs, sig);
  pthread_sigmask(SIG_BLOCK, &sigs, &old);
  ::umask(027);           // logs, queue and mailboxes are nobody else's business
  start_encryption(cfg);  // before the logs open: an interrupted conversion may still turn them
  logs::init(cfg.server.log_dir);
  raise_fd_limit();
  fs::create_directories(cfg.server.data_dir);
  ::chmod(cfg.server.data_dir.c_str(), 0750);
  auto dir = open_directory(cfg, true);
  // Cluster mode: a node that was down when a setting changed has it from the start.
  auto shared_applied = std::make_shared<std::atomic<int64_t>>(-1);
  auto server_reload = std::make_shared<std::function<std::optional<std::string>()>>();
  std::mutex reload_mu;  // guards *server_reload (set once the server exists)
  if (cfg.cluster.enabled) {
    auto c = pg::Conn::open(pg_settings(cfg));
    int64_t applied = -1;
    if (follow_shared_settings(*c, cfg, applied, {})) cfg = load_config(cfg.file);
    *shared_applied = applied;
  }
  // Cluster mode: the heartbeat's part in the queue (what this node lost, taking over), set
  // once delivery runs and cleared before it stops.
  auto queue_chore = std::make_shared<std::function<void(pg::Conn&)>>();
  std::mutex queue_chore_mu;
  // A node's heartbeat (its lease on its queue and its counts) beats at least three times a lease.
  const auto beat_every = std::clamp<std::chrono::seconds>(cfg.cluster.lease / 3, std::chrono::seconds(1),
                                                           std::chrono::seconds(5));
  std::unique_ptr<cluster::Heartbeat> heartbeat;
  std::unique_ptr<cluster::DkimFollower> dkim_keys;  // cluster mode: the nodes' DKIM keys kept in step
  if (cfg.cluster.enabled)
    dkim_keys =
        std::make_unique<cluster::DkimFollower>(pg_settings(cfg, "dkim"), cfg.server.data_dir, crypt::data_key());
  if (cfg.cluster.enabled)
    heartbeat = std::make_unique<cluster::Heartbeat>(
        pg_settings(cfg), cfg.cluster.node, BULWARK_VERSION, node_address(cfg),
        []() {
          int64_t n = 0;
          for (const char* svc : {"smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps", "admin"})
            n += metrics::value("bulwark_connections", std::string("service=\"") + svc + "\"");
          return n;
        },
        [cfg, shared_applied, server_reload, &reload_mu, queue_chore, &queue_chore_mu,
         purge_due = std::chrono::steady_clock::now()](pg::Conn& c) mutable {
          // Every beat: this node's leases on its queue, and queues whose lease passed.
          {
            std::lock_guard lk(queue_chore_mu);
            if (*queue_chore) (*queue_chore)(c);
          }
          // Every beat: the shared settings, when their version moved (applied within 10 s).
          {
            std::lock_guard lk(reload_mu);  // the server stays while it is held
            if (*server_reload) {
              int64_t applied = *shared_applied;
              follow_shared_settings(c, cfg, applied, *server_reload);
              *shared_applied = applied;
            }
          }
          // Every 10 minutes: bodies no message refers to (one node at a time), and
          // greylisting's rows past their time.
          if (std::chrono::steady_clock::now() >= purge_due) {
            purge_due = std::chrono::steady_clock::now() + std::chrono::minutes(10);
            if (cfg.greylisting.enabled)
              purge_greylist(c, cfg.greylisting.expire.count(), 86400);
            auto p = store::purge_blobs(c);
            if (p.bodies)
              logs::main().info("cluster: removed {} unreferenced message bodies ({} bytes)", p.bodies, p.bytes);
          }
        },
        beat_every, beat_every);
  // RFC 5321 4.5.1: mail to postmaster must be taken. Once there is a domain to take
  // mail for, there must be somewhere for it to go.
  if (!dir->list_domains().empty() &&
      dir->resolve_postmaster(cfg.server.hostname, cfg.server.postmaster).kind == Resolution::unknown)
    throw std::runtime_error(
        "no postmaster: mail to postmaster@ must be accepted (RFC 5321 4.5.1); add one with "
        "`bulwark alias add postmaster@DOMAIN USER@DOMAIN`, or set server.postmaster in " +
        cfg.file);
  // Cluster mode: the queue is also in PostgreSQL, under this node's leases.
  std::unique_ptr<store::PgQueue> cluster_queue;
  if (cfg.cluster.enabled)
    cluster_queue = std::make_unique<store::PgQueue>(pg_settings(cfg, "queue"), cfg.cluster.node, cfg.cluster.lease,
                                                     crypt::data_key());
  Spool spool(cfg.server.data_dir, cfg.limits.message_memory);
  if (cluster_queue) spool.set_ledger(cluster_queue.get(), cfg.cluster.node);
  spool.recover();
  Spool::Scan queued = spool.scan();  // once, for both deliveries; damaged files go to quarantine/
  if (cluster_queue) {
    auto c = pg::Conn::open(pg_settings(cfg));
    queued.queued = cluster_queue->reconcile(*c, spool, queued.queued);
  }
  // Cluster mode: mailboxes in PostgreSQL (a pool of connections for the disk pool's
  // threads, local delivery and POP3's holds come on top).
  std::unique_ptr<store::PgStore> mail_store;
  if (cfg.cluster.enabled) mail_store = std::make_unique<store::PgStore>(pg_settings(cfg), 8, crypt::data_key());
  Server server(cfg, *dir, spool, mail_store.get());
  server.use_cluster_queue(cluster_queue.get());
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  server.bind();
  drop_privileges(cfg);
  {
    std::lock_guard lk(reload_mu);
    *server_reload = [&server]() { return server.reload(); };
  }
  Reporter reporter(spool, report_settings(cfg), [&dir](const std::string& address) {
    // Where a report to `address` goes: its local mailboxes, or out.
    std::vector<smtp::Recipient> out;
    auto a = parse_mailbox(address);
    if (!a) return out;
    Resolution r = dir->resolve(*a);
    if (r.kind == Resolution::not_local) out.push_back({a->str(), a->str(), false});
    for (auto& m : r.mailboxes) out.push_back({a->str(), m, true});
    for (auto& x : r.remote) out.push_back({a->str(), x, false});
    return out;
  });
  LocalDelivery delivery(spool, reporter, local_settings(cfg));
  delivery.use_store(mail_store.get(), cfg.cluster.node);
  // Write-once: mail for local recipients only goes into the Maildirs at its commit, no
  // spool file (queue/direct.hpp). Cluster mode commits it in PostgreSQL instead.
  if (!cfg.cluster.enabled) spool.set_direct(&delivery);
  Resolver outbound_dns(cfg.dns_server_list(), std::chrono::duration_cast<std::chrono::milliseconds>(cfg.dns.timeout));
  RemoteDelivery remote(spool, outbound_dns, remote_settings(cfg), reporter);
  spool.on_committed([&delivery, &remote](std::shared_ptr<const smtp::Transaction> tx) {
    std::string id = tx->envelope.id;  // before tx is moved (argument order is unspecified)
    bool local = false, far = false;
    for (auto& r : tx->envelope.recipients) (r.local ? local : far) = true;
    if (far) remote.enqueue(id);
    if (local || !far) delivery.enqueue(id, std::move(tx));
  });
  // SIGHUP: the queue manager takes the new [delivery] settings too (a relay password
  // file that cannot be read refuses the reload).
  server.on_reload([&remote, &reporter, &delivery](const Config& next) {
    remote.reload(remote_settings(next));
    reporter.update(report_settings(next));
    delivery.update(local_settings(next));
  });
  spool.start();
  for (auto& damaged : queued.quarantined) report_damaged(reporter, damaged);
  delivery.start(queued.queued);
  remote.start(queued.queued);
  queued = {};
  // Cluster mode's greylisting: the triplets of every node, read now, then kept in step
  // at each heartbeat (policy/pg_greylist.hpp).
  std::unique_ptr<PgGreylist> cluster_greylist;
  if (cfg.cluster.enabled && server.greylist()) {
    cluster_greylist = std::make_unique<PgGreylist>(cfg.cluster.node);
    server.greylist()->journal_to([g = cluster_greylist.get()](const std::string& key, int64_t first, int64_t last,
                                                               bool passed) { g->journal(key, first, last, passed); });
    auto c = pg::Conn::open(pg_settings(cfg));
    cluster_greylist->beat(*c, *server.greylist());
  }
  if (cluster_queue) {
    std::lock_guard lk(queue_chore_mu);
    *queue_chore = [q = cluster_queue.get(), &spool, &delivery, &remote, data = cfg.server.data_dir,
                    g = cluster_greylist.get(), &server](pg::Conn& c) {
      if (g) g->beat(c, *server.greylist());
      auto b = q->beat(c, spool);
      for (auto& e : b.adopted) {
        if (e.local_pending) delivery.enqueue(e.id);
        if (e.remote_pending) remote.enqueue(e.id);
      }
      for (auto& id : b.retry) RemoteDelivery::request_retry(data, id);
    };
  }
  logs::main().info("bulwark started as {} (config {})", cfg.server.hostname, cfg.file);
  if (cfg.cluster.enabled)
    logs::main().info("cluster: node {} (schema version {})", cfg.cluster.node, cluster::schema_version());
  logs::main().info("ready: accepting connections");
  if (crypt::data_key())  // bulwark.log is sealed and not copied to stderr: say that it runs
    std::cerr << "ready: accepting connections (the logs are encrypted: read them with `bulwark log show`)"
              << std::endl;
  sd_notify("READY=1");
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  int rc = server.run(threads);
  sd_notify("STOPPING=1");
  {
    std::lock_guard lk(reload_mu);  // no shared settings applied from here on
    *server_reload = {};
  }
  {
    std::lock_guard lk(queue_chore_mu);  // nothing taken over from here on
    *queue_chore = {};
  }
  if (cluster_greylist) server.greylist()->journal_to(nullptr);
  // Teardown, in this order: the sessions are over (run returned); remote delivery
  // finishes the messages in flight and records their outcomes (its reports still
  // go into the running spool); local delivery finishes what is waiting; the spool
  // commits the last messages; then the event loops end, after everything that
  // posts into them.
  remote.stop();
  delivery.stop();
  spool.stop();
  outbound_dns.shutdown();
  remote.close();
  server.close();
  logs::main().info("stopped");
  logs::flush();
  return rc;
}

}  // namespace bulwark
