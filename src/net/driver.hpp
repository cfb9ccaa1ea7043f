// net/: the seam between the connection layer and a protocol. The layer accepts,
// applies the listener's access group and cap and the per-IP limits, runs the
// implicit-TLS handshake, enforces deadlines and drains at shutdown; a Driver turns
// one admitted connection into a conversation with its sans-I/O session (smtp/,
// pop3/, ...). A refusal's wording comes from the driver, the decision from policy/.
#pragma once
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "net/connection.hpp"
#include "policy/greylist.hpp"
#include "policy/policy.hpp"

namespace bulwark {

class Directory;
class Spool;
class DnsChecks;
class Logins;
namespace store {
class MailboxLocks;
class PgStore;
class PgQueue;
}

// Why a connection is refused before its greeting.
enum class Refusal { not_in_group, listener_full, too_many_from_ip, harvest_blocked };

// One admitted connection, as its driver sees it.
struct Admitted {
  ListenerConfig listener;
  std::shared_ptr<const Config> cfg;
  std::shared_ptr<asio::ssl::context> tls;  // for STARTTLS/STLS; nullptr: none
  std::shared_ptr<const IpGroups> groups;
  std::string ip;
  IpAddress ipa;
  bool exempt = false;  // limits.exempt_ip_group
  bool tls_active = false;  // implicit TLS: the handshake is done
  std::string tls_version, tls_cipher;
};

// A login's answer while the directory cannot be read (cluster mode, PostgreSQL lost).
inline constexpr const char* kDirectoryUnavailable = "The user directory is unavailable, try again later";

// The server's parts drivers share.
struct Shared {
  Directory& dir;
  Spool& spool;
  ClientLimits& limits;
  PopLogins& pop;
  DnsChecks& dns;
  Logins& logins;
  store::MailboxLocks& mailbox_locks;
  asio::thread_pool& disk;  // mailbox syncs and removals (readdir, fsync): never on an I/O thread
  asio::thread_pool& hashing;  // Argon2id and the admin API's directory work
  Greylist* greylist = nullptr;  // made at start when greylisting.enabled
  store::PgStore* mail_store = nullptr;  // cluster mode: mailboxes in PostgreSQL
  store::PgQueue* cluster_queue = nullptr;  // cluster mode: the queue in PostgreSQL
  // Reads the configuration file again and applies it as SIGHUP does; the error when
  // it is refused (the running configuration stays). Callable from any thread.
  std::function<std::optional<std::string>()> reload;
};

class Driver {
 public:
  virtual ~Driver() = default;
  virtual const char* name() const = 0;   // "SMTP", "POP3": for log lines
  virtual bool implicit_tls() const = 0;  // TLS before the first byte (smtps, pop3s)
  // Counted by limits.max_mailbox_connections_per_ip (POP3, IMAP) rather than
  // max_connections_per_ip (SMTP).
  virtual bool mailbox_access() const { return false; }
  // The refusal before the greeting, in this protocol's words; the connection closes.
  virtual std::string refusal(Refusal why, const std::string& hostname) const = 0;
  // The conversation on an admitted connection; returns when it is over.
  virtual asio::awaitable<void> converse(Conn& c, Admitted& a) = 0;
};

// smtp, submission, smtps
std::unique_ptr<Driver> make_smtp_driver(Shared& shared, const std::string& service);
// pop3, pop3s
std::unique_ptr<Driver> make_pop3_driver(Shared& shared, const std::string& service);
// imap, imaps
std::unique_ptr<Driver> make_imap_driver(Shared& shared, const std::string& service);
// admin (HTTPS only)
std::unique_ptr<Driver> make_admin_driver(Shared& shared);

// Runs (*f)() on `pool` and completes on the caller's executor with its result. `f`
// points to a named callable that outlives the wait (GCC 12: no class-type temporaries
// in a co_await expression).
template <class F, class Token>
auto async_on(asio::thread_pool& pool, F* f, Token&& token) {
  using R = decltype((*f)());
  return asio::async_initiate<Token, void(R)>(
      [&pool, f](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        asio::post(pool, [h, ex, f]() mutable {
          R r = (*f)();
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      token);
}

}  // namespace bulwark
