// net/: the login machinery every protocol shares (SMTP AUTH now; POP3, IMAP and the
// admin console next): the security policy for a connection (SPEC 8), the per-IP
// failure block, password checks on the hashing pool (never on an I/O thread), the
// secrets of the challenge-response mechanisms, and the log lines of success and
// failure. One implementation; protocols differ only in their framing.
#pragma once
#include <asio.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <string>
#include <string_view>

#include "auth/sasl.hpp"
#include "config/config.hpp"
#include "core/ip.hpp"
#include "policy/policy.hpp"

namespace bulwark {

class Directory;

class Logins : public auth::SecretSource {
 public:
  Logins(Directory& dir, ClientLimits& limits, PopLogins& pop, asio::thread_pool& hashing);

  // The verified-credentials cache (policy.login_cache_ttl; 0 turns it off). SIGHUP.
  void set_cache_ttl(std::chrono::seconds ttl);
  static constexpr size_t cache_capacity = 10000;  // users; the oldest go first when full

  // SPEC 8 for a client at `ip`: mode, mechanisms in order, plaintext allowed here.
  static auth::LoginPolicy policy(const Config& cfg, const IpGroups& groups, const IpAddress& ip);

  using Realm = ClientLimits::Realm;
  using Attempt = ClientLimits::Attempt;
  // True (and logged) while logins are refused to the address: too many failures, or
  // the per-IP table cannot track it. `proto`: "SMTP AUTH", "POP3", ...
  bool blocked(std::string_view proto, const std::string& ip, const IpAddress& ipa, Realm realm = Realm::mail);
  // May a check of credentials from the address go ahead? At most max_auth_failures
  // per window get there, counting those being checked, so that parallel guesses on many
  // connections cannot get past the block (ClientLimits::auth_attempt). ok holds a slot
  // until failed(.., held) or release(): use a LoginSlot. blocked is logged; busy is
  // not (the caller waits and asks again).
  Attempt attempt(std::string_view proto, const std::string& ip, const IpAddress& ipa, Realm realm = Realm::mail);
  void release(const IpAddress& ipa, Realm realm = Realm::mail) { limits_.auth_release(ipa, realm); }

  // Checks a password on the hashing pool (Argon2id: 64 MiB, ~0.1 s; the pool's size
  // bounds the memory). Completes on the caller's executor with the user's lookup key,
  // or nothing. The password is wiped once checked.
  // (References, copied inside: no class-type temporaries in a co_await expression.)
  template <class Token>
  auto async_verify(const std::string& user, const std::string& password, Token&& token) {
    return asio::async_initiate<Token, void(std::optional<std::string>)>(
        [this, &user, &password](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto ex = asio::get_associated_executor(*h);
          asio::post(hashing_, [this, h, ex, user = user, password = password]() mutable {
            std::optional<std::string> key = check(user, password);
            asio::post(ex, [h, key = std::move(key)]() mutable { (*h)(std::move(key)); });
          });
        },
        token);
  }

  // A login succeeded: logs it, and when `opens_relay` (POP3, IMAP) opens the
  // POP-before-SMTP window for the address. Returns the user's lookup key.
  std::string succeeded(std::string_view proto, std::string_view mech, const std::string& user,
                        const std::string& ip, const IpAddress& ipa, bool opens_relay);
  // A login failed (`why` for the log): counts toward the per-IP block; true when
  // the address is blocked now.
  // `known`: the caller knows the name is a real account of its own (an administrator)
  // and may show it; otherwise the log shows a mail user's address or a tag.
  // `held`: the attempt had a slot of attempt(), given back now.
  bool failed(std::string_view proto, std::string_view mech, const std::string& user, const std::string& ip,
              const IpAddress& ipa, std::string_view why, bool known = false, Realm realm = Realm::mail,
              bool held = false);

  // A command refused for a policy reason (security log).
  void refused(std::string_view proto, const std::string& ip, const std::string& what);

  // auth::SecretSource, from the directory.
  std::optional<auth::ScramSecret> scram_secret(const std::string& user) override;
  std::optional<auth::CramSecret> cram_md5_secret(const std::string& user) override;

 private:
  std::optional<std::string> check(const std::string& user, std::string& password);
  // The user as the log may show it: the address when it is a user, else a tag.
  std::string loggable(const std::string& user);

  Directory& dir_;
  ClientLimits& limits_;
  PopLogins& pop_;
  asio::thread_pool& hashing_;
  std::string tag_key_;

  // A successful password check, remembered as a keyed hash (HMAC-SHA-256 under a
  // random key made at start, never written anywhere) of the stored password hash and
  // the password. A hit needs the same password and the same stored hash: a new
  // password (`user passwd`) or a removed user misses at once, also when the change
  // came from the CLI in another process. Failures are never cached.
  struct Cached {
    auth::Key mac;
    std::chrono::steady_clock::time_point expires;
  };
  bool cache_hit(const std::string& key, const std::string& hash, const std::string& password);
  void cache_put(const std::string& key, const std::string& hash, const std::string& password);
  std::mutex cache_mu_;
  std::unordered_map<std::string, Cached> cache_;
  std::chrono::seconds cache_ttl_{3600};
  std::string cache_key_;
};

// One connection's claim on its address's credential checks: taken just before a
// check, turned into a failure when it fails, given back when it succeeds or the
// connection ends. A connection holds at most one.
class LoginSlot {
 public:
  LoginSlot(Logins& logins, std::string proto, const std::string& ip, const IpAddress& ipa,
            Logins::Realm realm = Logins::Realm::mail)
      : logins_(logins), proto_(std::move(proto)), ip_(ip), ipa_(ipa), realm_(realm) {}
  LoginSlot(const LoginSlot&) = delete;
  LoginSlot& operator=(const LoginSlot&) = delete;
  ~LoginSlot() { release(); }
  Logins::Attempt acquire() {
    if (!held_) {
      auto a = logins_.attempt(proto_, ip_, ipa_, realm_);
      held_ = a == Logins::Attempt::ok;
      return a;
    }
    return Logins::Attempt::ok;
  }
  bool blocked() { return logins_.blocked(proto_, ip_, ipa_, realm_); }
  // Logs that a check waited for a slot in vain.
  void gave_up() { logins_.refused(proto_, ip_, "as many logins as may still fail were being checked; try later"); }
  bool failed(std::string_view mech, const std::string& user, std::string_view why, bool known = false) {
    bool was = held_;
    held_ = false;
    return logins_.failed(proto_, mech, user, ip_, ipa_, why, known, realm_, was);
  }
  void release() {
    if (held_) logins_.release(ipa_, realm_);
    held_ = false;
  }

 private:
  Logins& logins_;
  std::string proto_;
  const std::string& ip_;
  const IpAddress& ipa_;
  Logins::Realm realm_;
  bool held_ = false;
};

// A mailbox protocol's session hooks (pop3::Hooks, imap::Hooks: the same four calls)
// answered by Logins for one client: `proto` names the protocol in log lines.
template <class Base>
class LoginHooks : public Base {
 public:
  LoginHooks(Logins& logins, const char* proto, const std::string& ip, const IpAddress& ipa)
      : logins_(logins), proto_(proto), ip_(ip), ipa_(ipa), slot_(logins, proto, ip, ipa) {}
  auth::SecretSource& secrets() override { return logins_; }
  bool login_blocked() override { return slot_.blocked(); }
  bool begin_check() override { return slot_.acquire() == Logins::Attempt::ok; }
  void end_check() override { slot_.release(); }
  void login_failed(std::string_view mech, const std::string& user, std::string_view why) override {
    slot_.failed(mech, user, why);
  }
  LoginSlot& slot() { return slot_; }
  void refused(const std::string& what) override { logins_.refused(proto_, ip_, what); }
  // The login succeeded: logged, the slot given back; the user's lookup key.
  std::string succeeded(std::string_view mech, const std::string& user, bool opens_relay) {
    slot_.release();
    return logins_.succeeded(proto_, mech, user, ip_, ipa_, opens_relay);
  }

 private:
  Logins& logins_;
  const char* proto_;
  const std::string& ip_;
  const IpAddress& ipa_;
  LoginSlot slot_;
};

struct Conn;
// Before a password check that runs off the session (PLAIN, LOGIN, USER/PASS, the
// console): a slot, waiting in 50 ms steps while other checks from the address fill
// them (a mail client opening several connections at once is served, one after the
// other) -- until `until`, when a busy address gets "try later" (logged).
asio::awaitable<Logins::Attempt> wait_for_slot(Conn& c, LoginSlot& slot, std::chrono::steady_clock::time_point until);

}  // namespace bulwark
