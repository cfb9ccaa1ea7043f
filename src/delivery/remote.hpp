// delivery/: outbound delivery -- the queue manager for non-local recipients.
// Messages stay in the durable spool until every recipient is delivered, bounced or
// expired; per-recipient state is appended to <id>.done (queue/spool.hpp). One
// outbound session per destination (the recipient domain, or the relay server) at a
// time up to max_per_destination, at most max_delivery_threads in all; a session
// delivers every queued message for its destination before QUIT. DNS through the
// c-ares resolver (MX by preference, A/AAAA fallback, null MX), STARTTLS per
// delivery.tls, DSNs (queue/dsn.hpp) for failures, delays and expiry.
// Depends on queue/, smtp/ (client), dns/, logging/.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "delivery/reports.hpp"
#include "dns/resolver.hpp"
#include "queue/spool.hpp"
#include "smtp/client.hpp"

namespace bulwark {

struct RemoteSettings {
  std::string hostname;  // our EHLO name and Reporting-MTA
  std::string data_dir;
  bool relay = false;    // delivery.mode = "relay"
  std::string relay_host;
  uint16_t relay_port = 25;
  std::string relay_user, relay_password;  // AUTH to the relay server (inside TLS only)
  bool relay_pop_before_smtp = false;
  uint16_t relay_pop3_port = 110;
  smtp::ClientTls tls = smtp::ClientTls::opportunistic;
  std::string tls_ca_file;  // required mode: extra trust anchor ("" = system store only)
  size_t max_sessions = 32;
  size_t max_per_destination = 4;
  std::chrono::seconds retry_interval{1800}, warn_after{4 * 3600}, bounce_after{5 * 86400};
  std::string report_language = "en";
  uint16_t mx_port = 25;
  bool dkim_sign = true;  // dkim.sign: sign mail of ours whose From: domain has a key
  // delivery.connect_timeout / reply_timeout: per reply and per block of the message
  // sent (RFC 5321 4.5.3.2 minimums); the reply to the end of the data gets twice it.
  std::chrono::seconds connect_timeout{30}, reply_timeout{300};
};

class RemoteDelivery {
 public:
  RemoteDelivery(Spool& spool, Resolver& resolver, RemoteSettings settings, Reporter& reporter);
  ~RemoteDelivery();
  RemoteDelivery(const RemoteDelivery&) = delete;
  RemoteDelivery& operator=(const RemoteDelivery&) = delete;

  // Runs its own thread; `queued` (from Spool::scan) is what was waiting at start.
  void start(const std::vector<QueueEntry>& queued = {});
  void stop();   // lets sessions in flight finish (bounded), records their results
  // Ends the manager's event loop and what is left in it. After stop() and after the
  // resolver has stopped (its callbacks post into the loop). The destructor calls it.
  void close();
  // SIGHUP: new settings (relay, TLS, limits, intervals...). Sessions in flight finish
  // with what they started with. DNS servers and the hostname need a restart.
  void reload(RemoteSettings settings);
  // A message just committed; ignored unless it has remote recipients.
  void enqueue(const std::string& id);
  // `bulwark queue retry`: <data_dir>/retry-now lists ids ("*" = all); the manager
  // reads and removes it every second.
  static void request_retry(const std::string& data_dir, const std::string& id);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace bulwark
