// policy/: who may do what. IP groups, the relay decision, per-client-IP limits
// (connections, message rate, directory harvest), the POP-before-SMTP window.
// Decisions only: no sockets, no session state machine. Depends on core/.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/ip.hpp"

namespace bulwark {

using SteadyClock = std::chrono::steady_clock;
using NowFn = std::function<SteadyClock::time_point()>;

class IpGroups {
 public:
  IpGroups() = default;
  explicit IpGroups(IpGroupMap groups) : groups_(std::move(groups)) {}
  // "" or an unknown name contains nobody.
  bool contains(const std::string& group, const IpAddress& a) const;

 private:
  IpGroupMap groups_;
};

struct IpKeyHash {
  size_t operator()(const IpAddress& a) const noexcept;
};

// Successful POP3 logins by client IP, for the POP-before-SMTP relay window.
class PopLogins {
 public:
  explicit PopLogins(NowFn now = SteadyClock::now) : now_(std::move(now)) {}
  // A POP3 or IMAP login of `user` (lookup key) from `ip`: the window opens, and a
  // session relaying through it is known as that user (SPEC 9).
  void record(const IpAddress& ip, const std::string& user = {});
  // Cluster mode: every login recorded here is also told to `shared` (it must not
  // block); a login another node recorded comes in through learn().
  void share(std::function<void(const IpAddress&, const std::string&)> shared);
  void learn(const IpAddress& ip, const std::string& user);
  bool within(const IpAddress& ip, std::chrono::seconds window) const;
  // The users whose logins from `ip` keep the window open, most recent first (at most
  // kUsersPerAddress: several people behind one NAT).
  std::vector<std::string> users_within(const IpAddress& ip, std::chrono::seconds window) const;
  static constexpr size_t kUsersPerAddress = 8;

 private:
  struct Seen {
    SteadyClock::time_point last{};
    std::vector<std::pair<std::string, SteadyClock::time_point>> users;  // most recent first
  };
  void remember(const IpAddress& ip, const std::string& user);
  NowFn now_;
  mutable std::mutex mu_;
  std::unordered_map<IpAddress, Seen, IpKeyHash> last_;
  std::function<void(const IpAddress&, const std::string&)> shared_;
};

struct RelaySettings {
  bool open = false;
  std::string allow_ip_group;
  bool allow_authenticated = true;
  std::chrono::seconds pop_before_smtp{0};
};

// The inputs of one relay decision. `ip_group_revoked` is set when AUTH failed in
// the session: a failed login must not leave the IP-group right in place.
struct RelayInputs {
  IpAddress ip;
  bool authenticated = false;
  bool ip_group_revoked = false;
};

enum class RelayVerdict { open_relay, ip_group, authenticated, pop_before_smtp, denied };
const char* relay_verdict_name(RelayVerdict v);

RelayVerdict decide_relay(const RelaySettings& s, const IpGroups& groups, const PopLogins& pop,
                          const RelayInputs& in);

struct LimitSettings {
  uint64_t max_messages_per_hour = 0;
  uint64_t max_connections_per_ip = 20;
  uint64_t max_mailbox_connections_per_ip = 50;  // POP3 + IMAP together
  uint64_t max_unknown_recipients = 20;
  std::chrono::seconds harvest_block{3600};
  uint64_t max_auth_failures = 5;  // within auth_window, then AUTH refused for auth_block
  std::chrono::seconds auth_window{900};
  std::chrono::seconds auth_block{900};
  size_t max_tracked = 100000;  // bound on remembered client addresses
};

// Per-client-IP state (IPv6 per /64), bounded in size. An entry is only ever
// forgotten when it holds nothing that matters: no open connection, no block, no
// count inside its window (auth failures, unknown recipients, messages in the last
// hour). When max_tracked entries all hold such state, a new address is not tracked:
// it may connect and send mail (no limit can be counted for it), but AUTH is refused
// to it (454, "try later") because its failures could not be counted. The table is
// then looked through again at most once a second.
class ClientLimits {
 public:
  explicit ClientLimits(LimitSettings s, NowFn now = SteadyClock::now);
  void update(LimitSettings s);

  enum class Connect { ok, harvest_blocked, too_many_connections, untracked };
  // SMTP connections and mailbox (POP3, IMAP) connections are counted separately,
  // each against its own limit (SPEC 2). The harvest block refuses SMTP only.
  enum class Kind { smtp, mailbox };
  // On ok the connection is counted; call disconnect() when it ends. untracked: the
  // table is full (see above); the connection may go on, uncounted.
  Connect connect(const IpAddress& ip, Kind kind = Kind::smtp);
  void disconnect(const IpAddress& ip, Kind kind = Kind::smtp);
  // At MAIL: may this IP start another message within the hourly limit?
  bool message_allowed(const IpAddress& ip);
  void message_accepted(const IpAddress& ip);
  // An unknown local recipient; true when this makes the IP blocked.
  bool unknown_recipient(const IpAddress& ip);
  // Password guessing (SPEC 8). Mail users' logins (SMTP AUTH, POP3, IMAP) and
  // administrators' (the console) count on their own: five wrong console passwords
  // from an office must not lock every mail client behind its address out.
  enum class Realm { mail, admin };
  enum class Attempt { ok, blocked, busy };
  // A login is about to reach the password check. At most max_auth_failures attempts
  // per window get there, counting those still being checked, so that parallel guesses
  // on many connections cannot get past the block: blocked (or the address cannot be
  // tracked), busy (that many are being checked now: try later), or ok -- a slot is
  // then held until auth_failure(.., true) or auth_release().
  Attempt auth_attempt(const IpAddress& ip, Realm realm = Realm::mail);
  void auth_release(const IpAddress& ip, Realm realm = Realm::mail);
  // A failed login (`held`: it had a slot of auth_attempt, given back now); true when
  // this makes logins refused for the IP.
  bool auth_failure(const IpAddress& ip, Realm realm = Realm::mail, bool held = false);
  // True while logins are refused to the IP: blocked, or not trackable (table full).
  bool auth_blocked(const IpAddress& ip, Realm realm = Realm::mail);
  size_t tracked() const;

  // Cluster mode (SPEC 16, policy/redis_limits.hpp): what this node counts is also
  // told to `sharing` (outside the lock; it must not block), keyed by limit_key();
  // what the cluster decided comes back through impose() and others().
  class Sharing {
   public:
    virtual ~Sharing() = default;
    virtual void connections(const IpAddress& key, Kind kind, uint32_t here) = 0;
    virtual void message(const IpAddress& key) = 0;
    virtual void unknown_recipient(const IpAddress& key) = 0;
    virtual void auth_failure(const IpAddress& key, Realm realm) = 0;
  };
  void share(Sharing* s);
  enum class Block { harvest, rate, auth_mail, auth_admin };
  // A block the cluster decided: from now for `length` (a longer one stays).
  void impose(const IpAddress& key, Block b, std::chrono::milliseconds length);
  // The other nodes' open connections from the address, counted against the limit.
  void others(const IpAddress& key, Kind kind, uint32_t n);

  // Times a new address could not be tracked because the table was full.
  uint64_t untracked() const;

 private:
  struct Entry {
    uint32_t connections = 0;
    uint32_t mailbox_connections = 0;
    uint32_t unknown = 0;
    SteadyClock::time_point unknown_since{};
    SteadyClock::time_point blocked_until{};
    struct Logins {
      uint32_t failures = 0, pending = 0;
      SteadyClock::time_point since{}, blocked_until{};
    };
    std::array<Logins, 2> auth{};  // by Realm
    std::array<uint32_t, 2> others{};           // other nodes' connections, by Kind
    SteadyClock::time_point rate_blocked_until{};  // the cluster's hourly count is spent
    SteadyClock::time_point last_seen{};
    int64_t minute = 0;                   // the minute buckets[minute % 60] holds
    std::array<uint32_t, 60> buckets{};  // messages per minute, last hour
  };
  // The entry for ip, made if needed; nullptr when the table is full of live state.
  Entry* entry(const IpAddress& ip, SteadyClock::time_point now);
  bool live(const Entry& e, SteadyClock::time_point now) const;
  static void rotate(Entry& e, int64_t minute);
  // One more event in a window; at `max` the IP is blocked for `block` (returns true).
  static bool count_toward_block(uint32_t& count, SteadyClock::time_point& since, SteadyClock::time_point& blocked_until,
                                 SteadyClock::time_point now, std::chrono::seconds window, uint64_t max,
                                 std::chrono::seconds block);
  void evict(SteadyClock::time_point now);

  LimitSettings s_;
  NowFn now_;
  mutable std::mutex mu_;
  std::unordered_map<IpAddress, Entry, IpKeyHash> map_;
  SteadyClock::time_point next_evict_{};  // a full table is not scanned again before this
  uint64_t untracked_ = 0;
  Sharing* sharing_ = nullptr;
};

}  // namespace bulwark
