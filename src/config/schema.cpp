// config/schema.cpp: see schema.hpp. One line per key, in the docs' order.
#include "config/schema.hpp"

namespace bulwark {

namespace {
// clang-format off
const ConfigKey kKeys[] = {
    {"server", "hostname", "`\"localhost\"`", KeyScope::node, false},
    {"server", "data_dir", "`\"/var/lib/bulwark\"`", KeyScope::node, true},
    {"server", "log_dir", "`\"/var/log/bulwark\"`", KeyScope::node, true},
    {"server", "user", "`\"bulwark\"`", KeyScope::node, true},
    {"server", "postmaster", "`\"\"`", KeyScope::shared, false},
    {"tls", "certificate", "`\"cert.pem\"`", KeyScope::node, false},
    {"tls", "private_key", "`\"key.pem\"`", KeyScope::node, false},
    {"tls", "self_signed", "`true`", KeyScope::node, false},
    {"tls", "min_version", "`\"1.2\"`", KeyScope::shared, false},
    {"relay", "open", "`false`", KeyScope::shared, false},
    {"relay", "allow_ip_group", "`\"local\"`", KeyScope::shared, false},
    {"relay", "allow_authenticated", "`true`", KeyScope::shared, false},
    {"relay", "pop_before_smtp", "`\"0\"`", KeyScope::shared, false},
    {"relay", "trusted_ip_group", "`\"\"`", KeyScope::shared, false},
    {"delivery", "mode", "`\"direct\"`", KeyScope::shared, false},
    {"delivery", "relay_host", "`\"\"`", KeyScope::shared, false},
    {"delivery", "relay_port", "`25`", KeyScope::shared, false},
    {"delivery", "relay_auth", "`\"none\"`", KeyScope::shared, false},
    {"delivery", "relay_user", "`\"\"`", KeyScope::shared, false},
    {"delivery", "relay_password_file", "`\"\"`", KeyScope::shared, false},
    {"delivery", "tls", "`\"opportunistic\"`", KeyScope::shared, false},
    {"delivery", "max_delivery_threads", "`32`", KeyScope::shared, false},
    {"delivery", "retry_interval", "`\"30m\"`", KeyScope::shared, false},
    {"delivery", "warn_after", "`\"4h\"`", KeyScope::shared, false},
    {"delivery", "bounce_after", "`\"5d\"`", KeyScope::shared, false},
    {"delivery", "report_language", "`\"en\"`", KeyScope::shared, false},
    {"delivery", "mx_port", "`25`", KeyScope::shared, false},
    {"delivery", "max_per_destination", "`4`", KeyScope::shared, false},
    {"delivery", "tls_ca_file", "`\"\"`", KeyScope::shared, false},
    {"delivery", "relay_pop3_port", "`110`", KeyScope::shared, false},
    {"delivery", "connect_timeout", "`\"30s\"`", KeyScope::shared, false},
    {"delivery", "reply_timeout", "`\"5m\"`", KeyScope::shared, false},
    {"dkim", "sign", "`true`", KeyScope::shared, false},
    {"dkim", "verify", "`true`", KeyScope::shared, false},
    {"encryption", "password_file", "`\"\"`", KeyScope::node, false},
    {"cluster", "node", "(required)", KeyScope::node, false},
    {"cluster", "postgres", "(required)", KeyScope::node, false},
    {"cluster", "postgres_password_file", "`\"\"`", KeyScope::node, false},
    {"cluster", "redis", "`\"\"`", KeyScope::node, false},
    {"cluster", "redis_password_file", "`\"\"`", KeyScope::node, false},
    {"cluster", "lease", "`\"2m\"`", KeyScope::node, false},
    {"spf", "mode", "`\"tag\"`", KeyScope::shared, false},
    {"dmarc", "mode", "`\"tag\"`", KeyScope::shared, false},
    {"dnsbl", "zones", "`[]`", KeyScope::shared, false},
    {"greylisting", "enabled", "`false`", KeyScope::shared, false},
    {"greylisting", "delay", "`\"5m\"`", KeyScope::shared, false},
    {"greylisting", "expire", "`\"35d\"`", KeyScope::shared, false},
    {"dns", "servers", "`[]`", KeyScope::shared, false},
    {"dns", "timeout", "`\"5s\"`", KeyScope::shared, false},
    {"limits", "max_messages_per_hour", "`0`", KeyScope::shared, false},
    {"limits", "max_connections_per_ip", "`20`", KeyScope::shared, false},
    {"limits", "max_mailbox_connections_per_ip", "`50`", KeyScope::shared, false},
    {"limits", "max_unknown_recipients", "`20`", KeyScope::shared, false},
    {"limits", "harvest_block", "`\"1h\"`", KeyScope::shared, false},
    {"limits", "exempt_ip_group", "`\"\"`", KeyScope::shared, false},
    {"limits", "require_sender_domain_in_dns", "`false`", KeyScope::shared, false},
    {"limits", "require_client_ptr", "`false`", KeyScope::shared, false},
    {"limits", "max_message_size", "`\"50MB\"`", KeyScope::shared, false},
    {"limits", "max_recipients", "`100`", KeyScope::shared, false},
    {"limits", "max_hops", "`30`", KeyScope::shared, false},
    {"limits", "max_failed_commands", "`10`", KeyScope::shared, false},
    {"limits", "message_memory", "`\"256MB\"`", KeyScope::shared, false},
    {"policy", "mode", "`\"secure-auth\"`", KeyScope::shared, false},
    {"policy", "insecure_auth_ip_group", "`\"\"`", KeyScope::shared, false},
    {"policy", "auth_mechanisms", "`[\"SCRAM-SHA-256\", \"PLAIN\", \"LOGIN\"]`", KeyScope::shared, false},
    {"policy", "anti_spoofing", "`true`", KeyScope::shared, false},
    {"policy", "max_auth_failures", "`5`", KeyScope::shared, false},
    {"policy", "auth_failure_delay", "`\"1s\"`", KeyScope::shared, false},
    {"policy", "login_cache_ttl", "`\"1h\"`", KeyScope::shared, false},
    {"policy", "received_auth_user", "`false`", KeyScope::shared, false},
    {"password_policy", "min_length", "`10`", KeyScope::shared, false},
    {"password_policy", "min_classes", "`3`", KeyScope::shared, false},
    {"password_policy", "forbid_username", "`true`", KeyScope::shared, false},
    {"timeouts", "command", "`\"5m\"`", KeyScope::shared, false},
    {"timeouts", "data", "`\"10m\"`", KeyScope::shared, false},
    {"timeouts", "min_data_rate", "`500`", KeyScope::shared, false},
    {"timeouts", "session", "`\"1h\"`", KeyScope::shared, false},
    {"timeouts", "shutdown", "`\"30s\"`", KeyScope::shared, false},
    {"listener", "service", "(required)", KeyScope::node, false},
    {"listener", "address", "`\"0.0.0.0\"`", KeyScope::node, false},
    {"listener", "port", "25 / 587 / 465 / 110 / 995 / 143 / 993 / 4040 by service", KeyScope::node, false},
    {"listener", "allowed_ip_group", "`\"\"` (everyone)", KeyScope::node, false},
    {"listener", "max_connections", "`0` (no cap)", KeyScope::node, false},
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
