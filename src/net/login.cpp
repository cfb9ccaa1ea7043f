#include "net/login.hpp"

#include <algorithm>

#include "auth/password.hpp"
#include "core/metrics.hpp"
#include "core/strings.hpp"
#include "directory/directory.hpp"
#include "logging/logs.hpp"
#include "net/connection.hpp"

namespace bulwark {

Logins::Logins(Directory& dir, ClientLimits& limits, PopLogins& pop, asio::thread_pool& hashing)
    : dir_(dir),
      limits_(limits),
      pop_(pop),
      hashing_(hashing),
      tag_key_(auth::random_bytes(32)),
      cache_key_(auth::random_bytes(32)) {}

void Logins::set_cache_ttl(std::chrono::seconds ttl) {
  std::lock_guard lk(cache_mu_);
  cache_ttl_ = ttl;
  if (ttl.count() == 0) cache_.clear();
}

bool Logins::cache_hit(const std::string& key, const std::string& hash, const std::string& password) {
  std::string data = hash + '\0' + password;
  auth::Key mac = auth::hmac_sha256(cache_key_, data);
  auth::wipe(data);
  std::lock_guard lk(cache_mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return false;
  if (std::chrono::steady_clock::now() >= it->second.expires) {
    cache_.erase(it);
    return false;
  }
  bool hit = auth::equal_ct(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()),
                            std::string_view(reinterpret_cast<const char*>(it->second.mac.data()), mac.size()));
  if (!hit) cache_.erase(it);  // a different password or a changed hash: check in full
  return hit;
}

void Logins::cache_put(const std::string& key, const std::string& hash, const std::string& password) {
  std::string data = hash + '\0' + password;
  auth::Key mac = auth::hmac_sha256(cache_key_, data);
  auth::wipe(data);
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(cache_mu_);
  if (cache_ttl_.count() == 0) return;
  if (cache_.size() >= cache_capacity && !cache_.count(key)) {
    std::erase_if(cache_, [&](const auto& e) { return e.second.expires <= now; });
    if (cache_.size() >= cache_capacity) {  // all fresh: drop the one that expires first
      auto oldest = std::min_element(cache_.begin(), cache_.end(), [](const auto& a, const auto& b) {
        return a.second.expires < b.second.expires;
      });
      cache_.erase(oldest);
    }
  }
  cache_[key] = Cached{mac, now + cache_ttl_};
}

auth::LoginPolicy Logins::policy(const Config& c, const IpGroups& groups, const IpAddress& ip) {
  auth::LoginPolicy p;
  p.mode = c.policy.mode == "none"        ? auth::Mode::none
           : c.policy.mode == "encrypted" ? auth::Mode::encrypted
                                          : auth::Mode::secure_auth;
  for (auto& m : c.policy.auth_mechanisms)
    if (auto mech = auth::mech_from_name(m)) p.mechanisms.push_back(*mech);
  p.insecure_ok = groups.contains(c.policy.insecure_auth_ip_group, ip);
  p.failure_delay = std::chrono::duration_cast<std::chrono::milliseconds>(c.policy.auth_failure_delay);
  return p;
}

bool Logins::blocked(std::string_view proto, const std::string& ip, const IpAddress& ipa, Realm realm) {
  if (!limits_.auth_blocked(ipa, realm)) return false;
  logs::security().info("{} from {} refused: blocked after too many failed logins", proto, ip);
  return true;
}

Logins::Attempt Logins::attempt(std::string_view proto, const std::string& ip, const IpAddress& ipa, Realm realm) {
  auto a = limits_.auth_attempt(ipa, realm);
  if (a == Attempt::blocked) logs::security().info("{} from {} refused: blocked after too many failed logins", proto, ip);
  return a;
}

asio::awaitable<Logins::Attempt> wait_for_slot(Conn& c, LoginSlot& slot, std::chrono::steady_clock::time_point until) {
  for (;;) {
    auto a = slot.acquire();
    if (a != Logins::Attempt::busy) co_return a;
    if (std::chrono::steady_clock::now() >= until) {
      slot.gave_up();
      co_return a;
    }
    co_await pause(c, std::chrono::milliseconds(50));
  }
}

std::optional<std::string> Logins::check(const std::string& user, std::string& password) {
  // Cluster mode: not from a replica behind a change another node committed. When
  // PostgreSQL cannot be reached, no answer (the caller sees available() false).
  if (!dir_.catch_up()) {
    auth::wipe(password);
    return std::nullopt;
  }
  // Unknown users and wrong passwords always pay the full Argon2id cost.
  auto record = dir_.login_record(user);
  if (record && cache_hit(record->first, record->second, password)) {
    auth::wipe(password);
    return record->first;
  }
  auto key = dir_.verify_login(user, password);
  if (key) {
    if (auto now = dir_.login_record(user)) cache_put(now->first, now->second, password);  // after a rehash too
  }
  auth::wipe(password);
  return key;
}

std::string Logins::loggable(const std::string& user) {
  // A failed login names its user when that user exists. Anything else may be a
  // password typed into the user field, so it appears only as a keyed hash: the same
  // name gives the same tag while the server runs (attempts can be told apart and
  // counted), and the text cannot be recovered from the log.
  if (user.empty()) return "<?>";
  if (auto key = dir_.user_key(user)) return "<" + *key + ">";
  auto mac = auth::hmac_sha256(tag_key_, user);
  static const char* hex = "0123456789abcdef";
  std::string tag;
  for (size_t i = 0; i < 6; ++i) {
    tag += hex[mac[i] >> 4];
    tag += hex[mac[i] & 15];
  }
  return "(unknown user, tag " + tag + ")";
}

std::string Logins::succeeded(std::string_view proto, std::string_view mech, const std::string& user,
                              const std::string& ip, const IpAddress& ipa, bool opens_relay) {
  std::string key = dir_.user_key(user).value_or(to_lower(user));
  logs::main().info("{} {} from {}: {} logged in", proto, mech, ip, sanitize(key));
  if (opens_relay) pop_.record(ipa, key);
  return key;
}

bool Logins::failed(std::string_view proto, std::string_view mech, const std::string& user, const std::string& ip,
                    const IpAddress& ipa, std::string_view why, bool known, Realm realm, bool held) {
  // Never the password or the exchange itself.
  logs::security().info("{} {} failed from {}: user {}: {}", proto, mech, ip,
                        known ? "<" + sanitize(user) + ">" : loggable(user), why);
  metrics::add("bulwark_auth_failures_total", "proto=\"" + std::string(proto) + "\"");
  if (!limits_.auth_failure(ipa, realm, held)) return false;
  logs::security().info("{} from {} blocked for 15 minutes: too many failed logins", proto, ip);
  return true;
}

void Logins::refused(std::string_view proto, const std::string& ip, const std::string& what) {
  logs::security().info("{} from {} refused: {}", proto, ip, sanitize(what));
}

std::optional<auth::ScramSecret> Logins::scram_secret(const std::string& user) { return dir_.scram_secret(user); }

std::optional<auth::CramSecret> Logins::cram_md5_secret(const std::string& user) {
  return dir_.cram_md5_secret(user);
}

}  // namespace bulwark
