#include "net/login.hpp"

#include "auth/password.hpp"
#include "core/strings.hpp"
#include "directory/directory.hpp"
#include "logging/logs.hpp"

namespace bulwark {

Logins::Logins(Directory& dir, ClientLimits& limits, PopLogins& pop, asio::thread_pool& hashing)
    : dir_(dir), limits_(limits), pop_(pop), hashing_(hashing), tag_key_(auth::random_bytes(32)) {}

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

bool Logins::blocked(std::string_view proto, const std::string& ip, const IpAddress& ipa) {
  if (!limits_.auth_blocked(ipa)) return false;
  logs::security().info("{} from {} refused: blocked after too many failed logins", proto, ip);
  return true;
}

std::optional<std::string> Logins::check(const std::string& user, std::string& password) {
  auto key = dir_.verify_login(user, password);
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
  if (opens_relay) pop_.record(ipa);
  return key;
}

bool Logins::failed(std::string_view proto, std::string_view mech, const std::string& user, const std::string& ip,
                    const IpAddress& ipa, std::string_view why) {
  // Never the password or the exchange itself.
  logs::security().info("{} {} failed from {}: user {}: {}", proto, mech, ip, loggable(user), why);
  if (!limits_.auth_failure(ipa)) return false;
  logs::security().info("{} from {} blocked for 15 minutes: too many failed logins", proto, ip);
  return true;
}

std::optional<auth::ScramSecret> Logins::scram_secret(const std::string& user) { return dir_.scram_secret(user); }

std::optional<auth::CramSecret> Logins::cram_md5_secret(const std::string& user) {
  return dir_.cram_md5_secret(user);
}

}  // namespace bulwark
