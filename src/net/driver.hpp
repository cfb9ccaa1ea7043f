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
#include "policy/policy.hpp"

namespace bulwark {

class Directory;
class Spool;
class DnsChecks;
class Logins;

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

// The server's parts drivers share.
struct Shared {
  Directory& dir;
  Spool& spool;
  ClientLimits& limits;
  PopLogins& pop;
  DnsChecks& dns;
  Logins& logins;
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

}  // namespace bulwark
