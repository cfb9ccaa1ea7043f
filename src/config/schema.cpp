// config/schema.cpp: see schema.hpp. One entry per key, in the docs' order: what it is and
// how its value is read and checked.
#include "config/schema.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "config/reader.hpp"
#include "core/address.hpp"
#include "core/strings.hpp"

namespace bulwark {

namespace {

using P = ParseContext&;
using V = const ConfigValue&;

// "1.2.3.4", "1.2.3.4:53", "[::1]:53" or "::1".
DnsServer dns_server(P x, const toml::node& el, V v) {
  std::string s = x.r.str(el, v.key);
  DnsServer d;
  d.address = s;
  if (s.size() > 1 && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos) x.fail(el, v, "bad server \"" + s + "\"");
    d.address = s.substr(1, close - 1);
    std::string rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') x.fail(el, v, "bad server \"" + s + "\"");
      d.port = uint16_t(std::atoi(rest.c_str() + 1));
      if (rest.size() < 2 || rest.size() > 6 || d.port == 0) x.fail(el, v, "bad port in \"" + s + "\"");
    }
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    size_t colon = s.find(':');
    d.address = s.substr(0, colon);
    std::string ps = s.substr(colon + 1);
    d.port = uint16_t(std::atoi(ps.c_str()));
    if (ps.empty() || ps.size() > 5 || ps.find_first_not_of("0123456789") != std::string::npos || d.port == 0)
      x.fail(el, v, "bad port in \"" + s + "\"");
  }
  if (!valid_ip(d.address)) x.fail(el, v, "\"" + s + "\" is not an IP address with optional :port");
  return d;
}
// clang-format off
const ConfigKey kKeys[] = {
    {"server", "hostname", "`\"localhost\"`", KeyScope::node, false, [](P x, V v) {
       x.c.server.hostname = x.str(v);
       if (!valid_domain(x.c.server.hostname, false)) x.fail(v, "must be a host name like mail.example.com");
     }},
    {"server", "data_dir", "`\"/var/lib/bulwark\"`", KeyScope::node, true, [](P x, V v) {
       x.c.server.data_dir = x.str(v);
       if (x.c.server.data_dir.empty()) x.fail(v, "must not be empty");
     }},
    {"server", "log_dir", "`\"/var/log/bulwark\"`", KeyScope::node, true, [](P x, V v) {
       x.c.server.log_dir = x.str(v);
       if (x.c.server.log_dir.empty()) x.fail(v, "must not be empty");
     }},
    {"server", "user", "`\"bulwark\"`", KeyScope::node, true, [](P x, V v) { x.c.server.user = x.str(v); }},
    {"server", "postmaster", "`\"\"`", KeyScope::shared, false, [](P x, V v) {
       x.c.server.postmaster = x.str(v);
       if (!x.c.server.postmaster.empty() && !parse_mailbox(x.c.server.postmaster))
         x.fail(v, "must be an address like admin@example.com");
     }},
    {"tls", "certificate", "`\"cert.pem\"`", KeyScope::node, false, [](P x, V v) { x.c.tls.certificate = x.str(v); }},
    {"tls", "private_key", "`\"key.pem\"`", KeyScope::node, false, [](P x, V v) { x.c.tls.private_key = x.str(v); }},
    {"tls", "self_signed", "`true`", KeyScope::node, false, [](P x, V v) { x.c.tls.self_signed = x.boolean(v); }},
    {"tls", "min_version", "`\"1.2\"`", KeyScope::shared, false, [](P x, V v) {
       x.c.tls.min_version = x.str(v);
       if (x.c.tls.min_version != "1.2" && x.c.tls.min_version != "1.3")
         x.fail(v, "must be \"1.2\" or \"1.3\" (older TLS versions are not supported)");
     }},
    {"relay", "open", "`false`", KeyScope::shared, false, [](P x, V v) { x.c.relay.open = x.boolean(v); }},
    {"relay", "allow_ip_group", "`\"local\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.relay.allow_ip_group = x.group_ref(v); }},
    {"relay", "allow_authenticated", "`true`", KeyScope::shared, false,
     [](P x, V v) { x.c.relay.allow_authenticated = x.boolean(v); }},
    {"relay", "pop_before_smtp", "`\"0\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.relay.pop_before_smtp = x.duration(v); }},
    {"relay", "trusted_ip_group", "`\"\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.relay.trusted_ip_group = x.group_ref(v); }},
    {"delivery", "mode", "`\"direct\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.mode = x.one_of(v, {"direct", "relay"}); }},
    {"delivery", "relay_host", "`\"\"`", KeyScope::shared, false, [](P x, V v) {
       auto& h = x.c.delivery.relay_host = x.str(v);
       if (!h.empty() && !valid_domain(h, false) && !valid_ip(h)) x.fail(v, "must be a host name or an IP address");
     }},
    {"delivery", "relay_port", "`25`", KeyScope::shared, false, [](P x, V v) { x.c.delivery.relay_port = x.port(v); }},
    {"delivery", "relay_auth", "`\"none\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.relay_auth = x.one_of(v, {"none", "smtp", "pop3-before-smtp"}); }},
    {"delivery", "relay_user", "`\"\"`", KeyScope::shared, false, [](P x, V v) { x.c.delivery.relay_user = x.str(v); }},
    {"delivery", "relay_password_file", "`\"\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.relay_password_file = x.str(v); }},  // readable: checked in config.cpp
    {"delivery", "tls", "`\"opportunistic\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.tls = x.one_of(v, {"opportunistic", "required", "off"}); }},
    {"delivery", "max_delivery_threads", "`32`", KeyScope::shared, false, [](P x, V v) {
       x.c.delivery.max_delivery_threads = x.count(v, 10000);
       if (x.c.delivery.max_delivery_threads == 0) x.fail(v, "must be at least 1");
     }},
    {"delivery", "retry_interval", "`\"30m\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.retry_interval = x.positive(v); }},
    {"delivery", "warn_after", "`\"4h\"`", KeyScope::shared, false, [](P x, V v) { x.c.delivery.warn_after = x.duration(v); }},
    {"delivery", "bounce_after", "`\"5d\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.bounce_after = x.positive(v); }},
    {"delivery", "report_language", "`\"en\"`", KeyScope::shared, false, [](P x, V v) {
       const std::string& l = x.c.delivery.report_language = x.str(v);
       bool ok = !l.empty() && l.size() <= 16;
       for (char ch : l) ok = ok && ((ch >= 'a' && ch <= 'z') || ch == '-' || ch == '_');
       if (!ok) x.fail(v, "must be a language name like \"en\" or \"de\"");
     }},
    {"delivery", "mx_port", "`25`", KeyScope::shared, false, [](P x, V v) { x.c.delivery.mx_port = x.port(v); }},
    {"delivery", "max_per_destination", "`4`", KeyScope::shared, false, [](P x, V v) {
       x.c.delivery.max_per_destination = x.count(v, 1000);
       if (x.c.delivery.max_per_destination == 0) x.fail(v, "must be at least 1");
     }},
    {"delivery", "tls_ca_file", "`\"\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.tls_ca_file = x.str(v); }},  // readable: checked in config.cpp
    {"delivery", "relay_pop3_port", "`110`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.relay_pop3_port = x.port(v); }},
    {"delivery", "connect_timeout", "`\"30s\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.connect_timeout = x.positive(v); }},
    {"delivery", "reply_timeout", "`\"5m\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.delivery.reply_timeout = x.positive(v); }},
    {"dkim", "sign", "`true`", KeyScope::shared, false, [](P x, V v) { x.c.dkim.sign = x.boolean(v); }},
    {"dkim", "verify", "`true`", KeyScope::shared, false, [](P x, V v) { x.c.dkim.verify = x.boolean(v); }},
    {"encryption", "password_file", "`\"\"`", KeyScope::node, false,
     [](P x, V v) { x.c.encryption.password_file = x.str(v); }},  // readable, mode 600: config.cpp
    {"cluster", "node", "(required)", KeyScope::node, false, [](P x, V v) {
       const std::string& n = x.c.cluster.node = x.str(v);
       bool ok = !n.empty() && n.size() <= 64;
       for (char ch : n)
         ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-');
       if (!ok) x.fail(v, "must be 1-64 of a-z 0-9 . _ - (unique per node, like \"mx1\")");
     }},
    {"cluster", "postgres", "(required)", KeyScope::node, false, [](P x, V v) {
       x.c.cluster.postgres = x.str(v);
       if (x.c.cluster.postgres.find("password") != std::string::npos)
         x.fail(v, "must not hold a password: put it in cluster.postgres_password_file (mode 600) or PGPASSFILE");
     }},
    {"cluster", "postgres_password_file", "`\"\"`", KeyScope::node, false,
     [](P x, V v) { x.c.cluster.postgres_password_file = x.str(v); }},  // readable, mode 600: config.cpp
    {"cluster", "redis", "`\"\"`", KeyScope::node, false, [](P x, V v) {
       const std::string& u = x.c.cluster.redis = x.str(v);
       if (!u.empty() && u.rfind("redis://", 0) != 0 && u.rfind("rediss://", 0) != 0)
         x.fail(v, "must be a URL like \"redis://127.0.0.1:6379/0\" or \"rediss://...\" (TLS)");
       auto at = u.find('@');
       if (at != std::string::npos && u.find(':', u.find("//") + 2) < at)
         x.fail(v, "must not hold a password: put it in cluster.redis_password_file (mode 600)");
     }},
    {"cluster", "redis_password_file", "`\"\"`", KeyScope::node, false,
     [](P x, V v) { x.c.cluster.redis_password_file = x.str(v); }},  // readable, mode 600: config.cpp
    {"cluster", "lease", "`\"2m\"`", KeyScope::node, false, [](P x, V v) {
       x.c.cluster.lease = x.duration(v);
       if (x.c.cluster.lease < std::chrono::seconds(10)) x.fail(v, "must be at least 10s");
     }},
    {"spf", "mode", "`\"tag\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.spf.mode = x.one_of(v, {"off", "tag", "reject"}); }},
    {"dmarc", "mode", "`\"tag\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.dmarc.mode = x.one_of(v, {"off", "tag", "enforce"}); }},
    {"dnsbl", "zones", "`[]`", KeyScope::shared, false, [](P x, V v) {
       const toml::array* arr = v.node.as_array();
       if (!arr) x.fail(v, "must be a list like [\"zen.spamhaus.org\"]");
       for (auto&& el : *arr) {
         std::string z = to_lower(x.r.str(el, v.key));
         while (!z.empty() && z.back() == '.') z.pop_back();
         if (!valid_domain(z, false)) x.fail(el, v, "\"" + z + "\" is not a domain name");
         x.c.dnsbl.zones.push_back(z);
       }
     }},
    {"greylisting", "enabled", "`false`", KeyScope::shared, false,
     [](P x, V v) { x.c.greylisting.enabled = x.boolean(v); }},
    {"greylisting", "delay", "`\"5m\"`", KeyScope::shared, false, [](P x, V v) { x.c.greylisting.delay = x.duration(v); }},
    {"greylisting", "expire", "`\"35d\"`", KeyScope::shared, false, [](P x, V v) {
       x.c.greylisting.expire = x.duration(v);
       if (x.c.greylisting.expire.count() <= 0) x.fail(v, "must be longer than 0");
     }},
    {"dns", "servers", "`[]`", KeyScope::shared, false, [](P x, V v) {
       const toml::array* arr = v.node.as_array();
       if (!arr) x.fail(v, "must be a list like [\"127.0.0.1:5353\"]");
       for (auto&& el : *arr) x.c.dns.servers.push_back(dns_server(x, el, v));
     }},
    {"dns", "timeout", "`\"5s\"`", KeyScope::shared, false, [](P x, V v) { x.c.dns.timeout = x.positive(v); }},
    {"limits", "max_messages_per_hour", "`0`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.max_messages_per_hour = x.count(v, 10000000); }},
    {"limits", "max_connections_per_ip", "`20`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.max_connections_per_ip = x.count(v, 1000000); }},
    {"limits", "max_mailbox_connections_per_ip", "`50`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.max_mailbox_connections_per_ip = x.count(v, 1000000); }},
    {"limits", "max_unknown_recipients", "`20`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.max_unknown_recipients = x.count(v, 1000000); }},
    {"limits", "harvest_block", "`\"1h\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.harvest_block = x.duration(v); }},
    {"limits", "exempt_ip_group", "`\"\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.exempt_ip_group = x.group_ref(v); }},
    {"limits", "require_sender_domain_in_dns", "`false`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.require_sender_domain_in_dns = x.boolean(v); }},
    {"limits", "require_client_ptr", "`false`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.require_client_ptr = x.boolean(v); }},
    {"limits", "max_message_size", "`\"50MB\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.max_message_size = x.size(v); }},
    {"limits", "max_recipients", "`100`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.max_recipients = x.count(v, 1000000); }},
    {"limits", "max_hops", "`30`", KeyScope::shared, false, [](P x, V v) { x.c.limits.max_hops = x.count(v, 1000); }},
    {"limits", "max_failed_commands", "`10`", KeyScope::shared, false,
     [](P x, V v) { x.c.limits.max_failed_commands = x.count(v, 1000000); }},
    {"limits", "message_memory", "`\"256MB\"`", KeyScope::shared, false, [](P x, V v) {
       x.c.limits.message_memory = x.size(v);
       if (x.c.limits.message_memory && x.c.limits.message_memory < (1u << 20))
         x.fail(v, "must be at least 1MB (or 0 for no bound)");
     }},
    {"policy", "mode", "`\"secure-auth\"`", KeyScope::shared, false, [](P x, V v) {
       x.c.policy.mode = x.str(v);
       if (x.c.policy.mode != "none" && x.c.policy.mode != "secure-auth" && x.c.policy.mode != "encrypted")
         x.fail(v, "must be \"none\", \"secure-auth\" or \"encrypted\"");
     }},
    {"policy", "insecure_auth_ip_group", "`\"\"`", KeyScope::shared, false,
     [](P x, V v) { x.c.policy.insecure_auth_ip_group = x.group_ref(v); }},
    {"policy", "auth_mechanisms", "`[\"SCRAM-SHA-256\", \"PLAIN\", \"LOGIN\"]`", KeyScope::shared, false, [](P x, V v) {
       const toml::array* arr = v.node.as_array();
       if (!arr) x.fail(v, "must be a list like [\"SCRAM-SHA-256\", \"PLAIN\"]");
       auto& out = x.c.policy.auth_mechanisms;
       out.clear();
       for (auto&& el : *arr) {
         std::string m = x.r.str(el, v.key), up = m;
         for (auto& ch : up) ch = char(std::toupper(static_cast<unsigned char>(ch)));
         if (up != "SCRAM-SHA-256" && up != "PLAIN" && up != "LOGIN" && up != "CRAM-MD5")
           x.fail(el, v, "unknown mechanism \"" + m + "\" (SCRAM-SHA-256, PLAIN, LOGIN or CRAM-MD5)");
         if (std::find(out.begin(), out.end(), up) != out.end()) x.fail(el, v, "\"" + up + "\" is listed twice");
         out.push_back(up);
       }
     }},
    {"policy", "anti_spoofing", "`true`", KeyScope::shared, false,
     [](P x, V v) { x.c.policy.anti_spoofing = x.boolean(v); }},
    {"policy", "max_auth_failures", "`5`", KeyScope::shared, false,
     [](P x, V v) { x.c.policy.max_auth_failures = x.count(v, 1000000); }},
    {"policy", "auth_failure_delay", "`\"1s\"`", KeyScope::shared, false, [](P x, V v) {
       x.c.policy.auth_failure_delay = x.duration(v);
       if (x.c.policy.auth_failure_delay > std::chrono::seconds(30)) x.fail(v, "must be at most 30s");
     }},
    {"policy", "login_cache_ttl", "`\"1h\"`", KeyScope::shared, false, [](P x, V v) {
       x.c.policy.login_cache_ttl = x.duration(v);
       if (x.c.policy.login_cache_ttl > std::chrono::hours(24)) x.fail(v, "must be at most 1d");
     }},
    {"policy", "received_auth_user", "`false`", KeyScope::shared, false,
     [](P x, V v) { x.c.policy.received_auth_user = x.boolean(v); }},
    {"password_policy", "min_length", "`10`", KeyScope::shared, false,
     [](P x, V v) { x.c.password_policy.min_length = x.count(v, 1024); }},
    {"password_policy", "min_classes", "`3`", KeyScope::shared, false,
     [](P x, V v) { x.c.password_policy.min_classes = x.count(v, 4); }},
    {"password_policy", "forbid_username", "`true`", KeyScope::shared, false,
     [](P x, V v) { x.c.password_policy.forbid_username = x.boolean(v); }},
    {"timeouts", "command", "`\"5m\"`", KeyScope::shared, false, [](P x, V v) { x.c.timeouts.command = x.positive(v); }},
    {"timeouts", "data", "`\"10m\"`", KeyScope::shared, false, [](P x, V v) { x.c.timeouts.data = x.positive(v); }},
    {"timeouts", "min_data_rate", "`500`", KeyScope::shared, false,
     [](P x, V v) { x.c.timeouts.min_data_rate = x.count(v, uint64_t(1) << 30); }},
    {"timeouts", "session", "`\"1h\"`", KeyScope::shared, false, [](P x, V v) { x.c.timeouts.session = x.positive(v); }},
    {"timeouts", "shutdown", "`\"30s\"`", KeyScope::shared, false, [](P x, V v) { x.c.timeouts.shutdown = x.positive(v); }},
    {"listener", "service", "(required)", KeyScope::node, false, [](P x, V v) {
       const std::string& s = x.listener->service = x.str(v);
       if (s != "smtp" && s != "submission" && s != "smtps" && s != "pop3" && s != "pop3s" && s != "imap" &&
           s != "imaps" && s != "admin")
         x.fail(v, "must be \"smtp\", \"submission\", \"smtps\", \"pop3\", \"pop3s\", \"imap\", \"imaps\" or \"admin\"");
     }},
    {"listener", "address", "`\"0.0.0.0\"`", KeyScope::node, false, [](P x, V v) {
       x.listener->address = x.str(v);
       if (!valid_ip(x.listener->address)) x.fail(v, "must be an IPv4 or IPv6 address (0.0.0.0 or :: for all)");
     }},
    {"listener", "port", "25 / 587 / 465 / 110 / 995 / 143 / 993 / 4040 by service", KeyScope::node, false,
     [](P x, V v) {
       x.listener->port = x.port(v);
       x.listener_port = true;
     }},
    {"listener", "allowed_ip_group", "`\"\"` (everyone)", KeyScope::node, false,
     [](P x, V v) { x.listener->allowed_ip_group = x.group_ref(v); }},
    {"listener", "max_connections", "`0` (no cap)", KeyScope::node, false,
     [](P x, V v) { x.listener->max_connections = x.count(v, 10000000); }},
};
// clang-format on
}  // namespace

std::optional<std::string> ConfigKey::toml_default() const {
  if (shown.size() < 2 || shown.front() != '`' || shown.back() != '`' ||
      shown.substr(1, shown.size() - 2).find('`') != std::string_view::npos)
    return std::nullopt;
  return std::string(shown.substr(1, shown.size() - 2));
}

std::span<const ConfigKey> config_schema() { return kKeys; }

const ConfigKey* config_key(std::string_view section, std::string_view key) {
  for (auto& k : kKeys)
    if (k.section == section && k.key == key) return &k;
  return nullptr;
}

}  // namespace bulwark
