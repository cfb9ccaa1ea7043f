#include "config/config.hpp"

#include "config/schema.hpp"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <functional>
#include <map>
#include <sstream>
#include <toml++/toml.h>

#include "core/address.hpp"
#include "core/strings.hpp"
#include "core/units.hpp"

namespace bulwark {
namespace {

namespace fs = std::filesystem;

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::node* n, const std::string& key, const std::string& problem) const {
    size_t line = n ? n->source().begin.line : 1;
    throw ConfigError(file_ + ":" + std::to_string(line) + ": " + key + ": " + problem);
  }

  std::string str(const toml::node& n, const std::string& key) const {
    if (!n.is_string()) fail(&n, key, "must be a string");
    return *n.value<std::string>();
  }
  bool boolean(const toml::node& n, const std::string& key) const {
    if (!n.is_boolean()) fail(&n, key, "must be true or false");
    return *n.value<bool>();
  }
  uint64_t count(const toml::node& n, const std::string& key, uint64_t max) const {
    if (!n.is_integer()) fail(&n, key, "must be a whole number");
    int64_t v = *n.value<int64_t>();
    if (v < 0 || uint64_t(v) > max) fail(&n, key, "must be between 0 and " + std::to_string(max));
    return uint64_t(v);
  }
  uint64_t size(const toml::node& n, const std::string& key) const {
    if (n.is_integer()) return count(n, key, uint64_t(1) << 40);
    if (!n.is_string()) fail(&n, key, "must be a size like 10485760 or \"10MB\"");
    auto v = parse_size(*n.value<std::string>());
    if (!v) fail(&n, key, "bad size \"" + *n.value<std::string>() + "\" (use bytes or KB/MB/GB, e.g. \"10MB\")");
    return *v;
  }
  std::chrono::seconds duration(const toml::node& n, const std::string& key) const {
    if (n.is_integer() && *n.value<int64_t>() == 0) return std::chrono::seconds(0);
    if (!n.is_string()) fail(&n, key, "must be a duration like \"30s\", \"5m\", \"1h\", \"2d\"");
    auto v = parse_duration(*n.value<std::string>());
    if (!v) fail(&n, key, "bad duration \"" + *n.value<std::string>() + "\" (use s/m/h/d, e.g. \"5m\")");
    return *v;
  }

  std::chrono::seconds positive_duration(const toml::node& n, const std::string& key) const {
    auto d = duration(n, key);
    if (d.count() == 0) fail(&n, key, "must be longer than 0s");
    return d;
  }
  uint16_t port(const toml::node& n, const std::string& key) const {
    if (!n.is_integer() || *n.value<int64_t>() < 1 || *n.value<int64_t>() > 65535)
      fail(&n, key, "must be a port number between 1 and 65535");
    return uint16_t(*n.value<int64_t>());
  }

  // Walks a table, calling the handler registered for each key; unknown keys fail.
  using Handler = std::function<void(const toml::node&, const std::string& key)>;
  void table(const toml::node& n, const std::string& prefix, const std::map<std::string, Handler>& handlers) const {
    const toml::table* t = n.as_table();
    if (!t) fail(&n, prefix, "must be a table");
    for (auto&& [k, v] : *t) {
      std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      auto it = handlers.find(std::string(k.str()));
      // A section's keys are those the schema declares (config/schema.hpp): one the
      // parser would handle but the schema does not know is unknown all the same.
      if (it == handlers.end() || (!prefix.empty() && !config_key(prefix, k.str())))
        fail(&v, key, "unknown key (check the spelling; see docs/configuration.md)");
      it->second(v, key);
    }
  }

 private:
  std::string file_;
};

bool valid_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

std::string Config::cert_path() const { return (fs::path(server.data_dir) / tls.certificate).string(); }
std::string Config::key_path() const { return (fs::path(server.data_dir) / tls.private_key).string(); }

std::vector<std::string> Config::dns_server_list() const {
  std::vector<std::string> out;
  for (auto& s : dns.servers)
    out.push_back((s.address.find(':') != std::string::npos ? "[" + s.address + "]" : s.address) + ":" +
                  std::to_string(s.port));
  return out;
}

ConfigError config_error(const Config& cfg, const std::string& key, const std::string& problem) {
  size_t line = 1;
  try {
    std::ifstream in(cfg.file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    toml::table root = toml::parse(ss.str(), cfg.file);
    if (auto node = root.at_path(key)) line = node.node()->source().begin.line;
  } catch (const toml::parse_error&) {
  }
  return ConfigError(cfg.file + ":" + std::to_string(line) + ": " + key + ": " + problem);
}

Config load_config(const std::string& path) {
  Reader r(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ":1: config: cannot read the file (" + std::strerror(errno) + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  toml::table root;
  try {
    root = toml::parse(ss.str(), path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(path + ":" + std::to_string(e.source().begin.line) + ": syntax: " + std::string(e.description()));
  }

  Config c;
  c.file = path;
  bool saw_listener = false;
  std::map<std::string, const toml::node*> group_nodes;       // for line numbers
  std::map<std::string, const toml::node*> delivery_nodes;    // for line numbers
  const toml::node* password_file_node = nullptr;              // for line numbers
  std::map<std::string, const toml::node*> cluster_nodes;       // for line numbers
  std::vector<std::pair<std::string, const toml::node*>> refs;  // group names used by keys
  // Handlers that store a checked value.
  auto port = [&](uint16_t& out) {
    return [&](const toml::node& v, const std::string& k) { out = r.port(v, k); };
  };
  auto positive = [&](std::chrono::seconds& out) {
    return [&](const toml::node& v, const std::string& k) { out = r.positive_duration(v, k); };
  };
  auto group_ref = [&](std::string& out) {
    return [&](const toml::node& v, const std::string& k) {
      out = r.str(v, k);
      if (!out.empty()) refs.emplace_back(k, &v);
    };
  };
  // A string key that takes one of a few values.
  auto one_of = [&](std::string& out, std::vector<std::string> allowed) {
    return [&, allowed](const toml::node& v, const std::string& k) {
      out = r.str(v, k);
      std::string list;
      for (auto& a : allowed) {
        if (a == out) return;
        list += (list.empty() ? "\"" : ", \"") + a + "\"";
      }
      r.fail(&v, k, "must be one of " + list);
    };
  };
  r.table(root, "",
          {
              {"server",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"hostname",
                           [&](const toml::node& v, const std::string& k) {
                             c.server.hostname = r.str(v, k);
                             if (!valid_domain(c.server.hostname, false))
                               r.fail(&v, k, "must be a host name like mail.example.com");
                           }},
                          {"data_dir",
                           [&](const toml::node& v, const std::string& k) {
                             c.server.data_dir = r.str(v, k);
                             if (c.server.data_dir.empty()) r.fail(&v, k, "must not be empty");
                           }},
                          {"log_dir",
                           [&](const toml::node& v, const std::string& k) {
                             c.server.log_dir = r.str(v, k);
                             if (c.server.log_dir.empty()) r.fail(&v, k, "must not be empty");
                           }},
                          {"user", [&](const toml::node& v, const std::string& k) { c.server.user = r.str(v, k); }},
                          {"postmaster", [&](const toml::node& v, const std::string& k) {
                             c.server.postmaster = r.str(v, k);
                             if (!c.server.postmaster.empty() && !parse_mailbox(c.server.postmaster))
                               r.fail(&v, k, "must be an address like admin@example.com");
                           }}});
               }},
              {"tls",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"certificate",
                           [&](const toml::node& v, const std::string& k) { c.tls.certificate = r.str(v, k); }},
                          {"private_key",
                           [&](const toml::node& v, const std::string& k) { c.tls.private_key = r.str(v, k); }},
                          {"self_signed",
                           [&](const toml::node& v, const std::string& k) { c.tls.self_signed = r.boolean(v, k); }},
                          {"min_version", [&](const toml::node& v, const std::string& k) {
                             c.tls.min_version = r.str(v, k);
                             if (c.tls.min_version != "1.2" && c.tls.min_version != "1.3")
                               r.fail(&v, k, "must be \"1.2\" or \"1.3\" (older TLS versions are not supported)");
                           }}});
               }},
              {"ip_groups",
               [&](const toml::node& n, const std::string& p) {
                 const toml::table* t = n.as_table();
                 if (!t) r.fail(&n, p, "must be a table of name = [addresses]");
                 for (auto&& [name, v] : *t) {
                   std::string key = p + "." + std::string(name.str());
                   const toml::array* arr = v.as_array();
                   if (!arr) r.fail(&v, key, "must be a list of addresses, CIDR blocks, ranges or \"@group\"");
                   std::vector<std::string> els;
                   for (auto&& el : *arr) {
                     std::string s = r.str(el, key);
                     if (!s.empty() && s.front() == '@') {
                       if (s.size() == 1) r.fail(&el, key, "\"@\" needs a group name");
                     } else {
                       std::string why;
                       if (!parse_ip_range(s, &why)) r.fail(&el, key, why);
                     }
                     els.push_back(s);
                   }
                   c.ip_groups[std::string(name.str())] = std::move(els);
                   group_nodes[std::string(name.str())] = &v;
                 }
               }},
              {"relay",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"open", [&](const toml::node& v, const std::string& k) { c.relay.open = r.boolean(v, k); }},
                          {"allow_ip_group", group_ref(c.relay.allow_ip_group)},
                          {"allow_authenticated",
                           [&](const toml::node& v, const std::string& k) {
                             c.relay.allow_authenticated = r.boolean(v, k);
                           }},
                          {"pop_before_smtp",
                           [&](const toml::node& v, const std::string& k) {
                             c.relay.pop_before_smtp = r.duration(v, k);
                           }},
                          {"trusted_ip_group", group_ref(c.relay.trusted_ip_group)}});
               }},
              {"dkim",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"sign", [&](const toml::node& v, const std::string& k) { c.dkim.sign = r.boolean(v, k); }},
                          {"verify", [&](const toml::node& v, const std::string& k) { c.dkim.verify = r.boolean(v, k); }}});
               }},
              {"encryption",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p, {{"password_file", [&](const toml::node& v, const std::string& k) {
                                   c.encryption.password_file = r.str(v, k);
                                   password_file_node = &v;
                                 }}});
               }},
              {"cluster",
               [&](const toml::node& n, const std::string& p) {
                 c.cluster.enabled = true;
                 cluster_nodes[""] = &n;
                 auto text = [&](std::string& out) {
                   return [&](const toml::node& v, const std::string& k) {
                     out = r.str(v, k);
                     cluster_nodes[k] = &v;
                   };
                 };
                 r.table(n, p,
                         {{"node",
                           [&](const toml::node& v, const std::string& k) {
                             c.cluster.node = r.str(v, k);
                             bool ok = !c.cluster.node.empty() && c.cluster.node.size() <= 64;
                             for (char ch : c.cluster.node)
                               if (!(std::islower(static_cast<unsigned char>(ch)) || std::isdigit(static_cast<unsigned char>(ch)) ||
                                     ch == '.' || ch == '_' || ch == '-'))
                                 ok = false;
                             if (!ok) r.fail(&v, k, "must be 1-64 of a-z 0-9 . _ - (unique per node, like \"mx1\")");
                           }},
                          {"postgres", text(c.cluster.postgres)},
                          {"postgres_password_file", text(c.cluster.postgres_password_file)},
                          {"redis",
                           [&](const toml::node& v, const std::string& k) {
                             c.cluster.redis = r.str(v, k);
                             if (!c.cluster.redis.empty() && c.cluster.redis.rfind("redis://", 0) != 0 &&
                                 c.cluster.redis.rfind("rediss://", 0) != 0)
                               r.fail(&v, k, "must be a URL like \"redis://127.0.0.1:6379/0\" or \"rediss://...\" (TLS)");
                           }},
                          {"redis_password_file", text(c.cluster.redis_password_file)},
                          {"lease", [&](const toml::node& v, const std::string& k) {
                             c.cluster.lease = r.duration(v, k);
                             if (c.cluster.lease < std::chrono::seconds(10)) r.fail(&v, k, "must be at least 10s");
                           }}});
               }},
              {"spf",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p, {{"mode", one_of(c.spf.mode, {"off", "tag", "reject"})}});
               }},
              {"dmarc",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p, {{"mode", one_of(c.dmarc.mode, {"off", "tag", "enforce"})}});
               }},
              {"dnsbl",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p, {{"zones", [&](const toml::node& v, const std::string& k) {
                                   const toml::array* arr = v.as_array();
                                   if (!arr) r.fail(&v, k, "must be a list like [\"zen.spamhaus.org\"]");
                                   for (auto&& el : *arr) {
                                     std::string z = to_lower(r.str(el, k));
                                     while (!z.empty() && z.back() == '.') z.pop_back();
                                     if (!valid_domain(z, false)) r.fail(&el, k, "\"" + z + "\" is not a domain name");
                                     c.dnsbl.zones.push_back(z);
                                   }
                                 }}});
               }},
              {"greylisting",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"enabled", [&](const toml::node& v, const std::string& k) { c.greylisting.enabled = r.boolean(v, k); }},
                          {"delay", [&](const toml::node& v, const std::string& k) { c.greylisting.delay = r.duration(v, k); }},
                          {"expire", [&](const toml::node& v, const std::string& k) {
                             c.greylisting.expire = r.duration(v, k);
                             if (c.greylisting.expire.count() <= 0) r.fail(&v, k, "must be longer than 0");
                           }}});
               }},
              {"dns",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"servers",
                           [&](const toml::node& v, const std::string& k) {
                             const toml::array* arr = v.as_array();
                             if (!arr) r.fail(&v, k, "must be a list like [\"127.0.0.1:5353\"]");
                             for (auto&& el : *arr) {
                               std::string s = r.str(el, k);
                               DnsServer d;
                               d.address = s;
                               // "1.2.3.4", "1.2.3.4:53", "[::1]:53" or "::1"
                               if (s.size() > 1 && s.front() == '[') {
                                 size_t close = s.find(']');
                                 if (close == std::string::npos) r.fail(&el, k, "bad server \"" + s + "\"");
                                 d.address = s.substr(1, close - 1);
                                 std::string rest = s.substr(close + 1);
                                 if (!rest.empty()) {
                                   if (rest.front() != ':') r.fail(&el, k, "bad server \"" + s + "\"");
                                   d.port = uint16_t(std::atoi(rest.c_str() + 1));
                                   if (rest.size() < 2 || rest.size() > 6 || d.port == 0) r.fail(&el, k, "bad port in \"" + s + "\"");
                                 }
                               } else if (std::count(s.begin(), s.end(), ':') == 1) {
                                 size_t colon = s.find(':');
                                 d.address = s.substr(0, colon);
                                 std::string ps = s.substr(colon + 1);
                                 d.port = uint16_t(std::atoi(ps.c_str()));
                                 if (ps.empty() || ps.size() > 5 || ps.find_first_not_of("0123456789") != std::string::npos ||
                                     d.port == 0)
                                   r.fail(&el, k, "bad port in \"" + s + "\"");
                               }
                               if (!valid_ip(d.address))
                                 r.fail(&el, k, "\"" + s + "\" is not an IP address with optional :port");
                               c.dns.servers.push_back(d);
                             }
                           }},
                          {"timeout", [&](const toml::node& v, const std::string& k) {
                             c.dns.timeout = r.positive_duration(v, k);
                           }}});
               }},
              {"policy",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"mode",
                           [&](const toml::node& v, const std::string& k) {
                             c.policy.mode = r.str(v, k);
                             if (c.policy.mode != "none" && c.policy.mode != "secure-auth" &&
                                 c.policy.mode != "encrypted")
                               r.fail(&v, k, "must be \"none\", \"secure-auth\" or \"encrypted\"");
                           }},
                          {"insecure_auth_ip_group", group_ref(c.policy.insecure_auth_ip_group)},
                          {"auth_mechanisms",
                           [&](const toml::node& v, const std::string& k) {
                             const toml::array* arr = v.as_array();
                             if (!arr) r.fail(&v, k, "must be a list like [\"SCRAM-SHA-256\", \"PLAIN\"]");
                             c.policy.auth_mechanisms.clear();
                             for (auto&& el : *arr) {
                               std::string m = r.str(el, k);
                               std::string up = m;
                               for (auto& ch : up) ch = char(std::toupper(static_cast<unsigned char>(ch)));
                               if (up != "SCRAM-SHA-256" && up != "PLAIN" && up != "LOGIN" && up != "CRAM-MD5")
                                 r.fail(&el, k, "unknown mechanism \"" + m +
                                                    "\" (SCRAM-SHA-256, PLAIN, LOGIN or CRAM-MD5)");
                               for (auto& seen : c.policy.auth_mechanisms)
                                 if (seen == up) r.fail(&el, k, "\"" + up + "\" is listed twice");
                               c.policy.auth_mechanisms.push_back(up);
                             }
                           }},
                          {"anti_spoofing",
                           [&](const toml::node& v, const std::string& k) { c.policy.anti_spoofing = r.boolean(v, k); }},
                          {"max_auth_failures",
                           [&](const toml::node& v, const std::string& k) {
                             c.policy.max_auth_failures = r.count(v, k, 1000000);
                           }},
                          {"auth_failure_delay",
                           [&](const toml::node& v, const std::string& k) {
                             c.policy.auth_failure_delay = r.duration(v, k);
                             if (c.policy.auth_failure_delay > std::chrono::seconds(30))
                               r.fail(&v, k, "must be at most 30s");
                           }},
                          {"login_cache_ttl",
                           [&](const toml::node& v, const std::string& k) {
                             c.policy.login_cache_ttl = r.duration(v, k);
                             if (c.policy.login_cache_ttl > std::chrono::hours(24))
                               r.fail(&v, k, "must be at most 1d");
                           }},
                          {"received_auth_user", [&](const toml::node& v, const std::string& k) {
                             c.policy.received_auth_user = r.boolean(v, k);
                           }}});
               }},
              {"password_policy",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"min_length",
                           [&](const toml::node& v, const std::string& k) {
                             c.password_policy.min_length = r.count(v, k, 1024);
                           }},
                          {"min_classes",
                           [&](const toml::node& v, const std::string& k) {
                             c.password_policy.min_classes = r.count(v, k, 4);
                           }},
                          {"forbid_username", [&](const toml::node& v, const std::string& k) {
                             c.password_policy.forbid_username = r.boolean(v, k);
                           }}});
               }},
              {"delivery",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"mode", one_of(c.delivery.mode, {"direct", "relay"})},
                          {"relay_host",
                           [&](const toml::node& v, const std::string& k) {
                             c.delivery.relay_host = r.str(v, k);
                             if (!c.delivery.relay_host.empty() && !valid_domain(c.delivery.relay_host, false) &&
                                 !valid_ip(c.delivery.relay_host))
                               r.fail(&v, k, "must be a host name or an IP address");
                             delivery_nodes["relay_host"] = &v;
                           }},
                          {"relay_port", port(c.delivery.relay_port)},
                          {"relay_auth", one_of(c.delivery.relay_auth, {"none", "smtp", "pop3-before-smtp"})},
                          {"relay_user", [&](const toml::node& v, const std::string& k) {
                             c.delivery.relay_user = r.str(v, k);
                           }},
                          {"relay_password_file",
                           [&](const toml::node& v, const std::string& k) {
                             c.delivery.relay_password_file = r.str(v, k);
                             delivery_nodes["relay_password_file"] = &v;
                           }},
                          {"tls", one_of(c.delivery.tls, {"opportunistic", "required", "off"})},
                          {"max_delivery_threads",
                           [&](const toml::node& v, const std::string& k) {
                             c.delivery.max_delivery_threads = r.count(v, k, 10000);
                             if (c.delivery.max_delivery_threads == 0) r.fail(&v, k, "must be at least 1");
                           }},
                          {"max_per_destination",
                           [&](const toml::node& v, const std::string& k) {
                             c.delivery.max_per_destination = r.count(v, k, 1000);
                             if (c.delivery.max_per_destination == 0) r.fail(&v, k, "must be at least 1");
                           }},
                          {"retry_interval", positive(c.delivery.retry_interval)},
                          {"warn_after", [&](const toml::node& v, const std::string& k) {
                             c.delivery.warn_after = r.duration(v, k);
                           }},
                          {"bounce_after", positive(c.delivery.bounce_after)},
                          {"report_language",
                           [&](const toml::node& v, const std::string& k) {
                             c.delivery.report_language = r.str(v, k);
                             const std::string& l = c.delivery.report_language;
                             bool ok = !l.empty() && l.size() <= 16;
                             for (char ch : l) ok = ok && ((ch >= 'a' && ch <= 'z') || ch == '-' || ch == '_');
                             if (!ok) r.fail(&v, k, "must be a language name like \"en\" or \"de\"");
                           }},
                          {"mx_port", port(c.delivery.mx_port)},
                          {"relay_pop3_port", port(c.delivery.relay_pop3_port)},
                          {"connect_timeout", positive(c.delivery.connect_timeout)},
                          {"reply_timeout", positive(c.delivery.reply_timeout)},
                          {"tls_ca_file", [&](const toml::node& v, const std::string& k) {
                             c.delivery.tls_ca_file = r.str(v, k);
                             delivery_nodes["tls_ca_file"] = &v;
                           }}});
                 if (c.delivery.mode == "relay" && c.delivery.relay_host.empty())
                   r.fail(&n, p + ".relay_host", "is required when delivery.mode = \"relay\"");
                 if (c.delivery.relay_auth != "none" &&
                     (c.delivery.relay_user.empty() || c.delivery.relay_password_file.empty()))
                   r.fail(&n, p + ".relay_auth",
                          "\"" + c.delivery.relay_auth +
                              "\" needs relay_user and relay_password_file (the password never goes in this file)");
                 // Credentials go only to a server that proved who it is: over opportunistic
                 // TLS (no verification) an active attacker would collect them.
                 if (c.delivery.relay_auth != "none" && c.delivery.tls != "required")
                   r.fail(&n, p + ".tls",
                          "\"" + c.delivery.tls + "\" with relay_auth = \"" + c.delivery.relay_auth +
                              "\" would give the relay password to an unverified server; set delivery.tls = "
                              "\"required\" (and tls_ca_file if the relay's certificate is from a private CA)");
               }},
              {"limits",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"max_messages_per_hour",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.max_messages_per_hour = r.count(v, k, 10000000);
                           }},
                          {"max_connections_per_ip",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.max_connections_per_ip = r.count(v, k, 1000000);
                           }},
                          {"max_mailbox_connections_per_ip",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.max_mailbox_connections_per_ip = r.count(v, k, 1000000);
                           }},
                          {"max_unknown_recipients",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.max_unknown_recipients = r.count(v, k, 1000000);
                           }},
                          {"harvest_block",
                           [&](const toml::node& v, const std::string& k) { c.limits.harvest_block = r.duration(v, k); }},
                          {"exempt_ip_group", group_ref(c.limits.exempt_ip_group)},
                          {"require_sender_domain_in_dns",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.require_sender_domain_in_dns = r.boolean(v, k);
                           }},
                          {"require_client_ptr",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.require_client_ptr = r.boolean(v, k);
                           }},
                          {"max_message_size",
                           [&](const toml::node& v, const std::string& k) { c.limits.max_message_size = r.size(v, k); }},
                          {"message_memory",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.message_memory = r.size(v, k);
                             if (c.limits.message_memory && c.limits.message_memory < (1u << 20))
                               r.fail(&v, k, "must be at least 1MB (or 0 for no bound)");
                           }},
                          {"max_recipients",
                           [&](const toml::node& v, const std::string& k) {
                             c.limits.max_recipients = r.count(v, k, 1000000);
                           }},
                          {"max_hops",
                           [&](const toml::node& v, const std::string& k) { c.limits.max_hops = r.count(v, k, 1000); }},
                          {"max_failed_commands", [&](const toml::node& v, const std::string& k) {
                             c.limits.max_failed_commands = r.count(v, k, 1000000);
                           }}});
               }},
              {"timeouts",
               [&](const toml::node& n, const std::string& p) {
                 r.table(n, p,
                         {{"command", positive(c.timeouts.command)},
                          {"data", positive(c.timeouts.data)},
                          {"session", positive(c.timeouts.session)},
                          {"min_data_rate",
                           [&](const toml::node& v, const std::string& k) {
                             c.timeouts.min_data_rate = r.count(v, k, uint64_t(1) << 30);
                           }},
                          {"shutdown", positive(c.timeouts.shutdown)}});
               }},
              {"listener",
               [&](const toml::node& n, const std::string& p) {
                 const toml::array* arr = n.as_array();
                 if (!arr || !arr->is_array_of_tables())
                   r.fail(&n, p, "must be written as [[listener]] tables");
                 saw_listener = true;
                 for (auto&& item : *arr) {
                   ListenerConfig l;
                   bool has_service = false, has_port = false;
                   r.table(item, p,
                           {{"service",
                             [&](const toml::node& v, const std::string& k) {
                               l.service = r.str(v, k);
                               has_service = true;
                               if (l.service != "smtp" && l.service != "submission" && l.service != "smtps" &&
                                   l.service != "pop3" && l.service != "pop3s" && l.service != "imap" &&
                                   l.service != "imaps" && l.service != "admin")
                                 r.fail(&v, k,
                                        "must be \"smtp\", \"submission\", \"smtps\", \"pop3\", \"pop3s\", "
                                        "\"imap\", \"imaps\" or \"admin\"");
                             }},
                            {"address",
                             [&](const toml::node& v, const std::string& k) {
                               l.address = r.str(v, k);
                               if (!valid_ip(l.address))
                                 r.fail(&v, k, "must be an IPv4 or IPv6 address (0.0.0.0 or :: for all)");
                             }},
                            {"allowed_ip_group", group_ref(l.allowed_ip_group)},
                            {"max_connections",
                             [&](const toml::node& v, const std::string& k) {
                               l.max_connections = r.count(v, k, 10000000);
                             }},
                            {"port", [&](const toml::node& v, const std::string& k) {
                               l.port = r.port(v, k);
                               has_port = true;
                             }}});
                   if (!has_service) r.fail(&item, p + ".service", "missing (smtp, submission or smtps)");
                   if (l.address.empty()) l.address = "0.0.0.0";
                   if (!has_port)
                     l.port = l.service == "smtp"         ? 25
                              : l.service == "submission" ? 587
                              : l.service == "smtps"      ? 465
                              : l.service == "pop3"       ? 110
                              : l.service == "pop3s"      ? 995
                              : l.service == "imap"       ? 143
                              : l.service == "admin"      ? 4040
                                                          : 993;
                   for (auto& other : c.listeners)
                     if (other.address == l.address && other.port == l.port)
                       r.fail(&item, p + ".port", "port " + std::to_string(l.port) + " on " + l.address +
                                                      " is used by two listeners");
                   c.listeners.push_back(l);
                 }
               }},
          });
  try {
    c.ip_group_ranges = flatten_ip_groups(c.ip_groups);
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    std::string group = msg.substr(0, msg.find(':'));
    auto it = group_nodes.find(group);
    r.fail(it == group_nodes.end() ? nullptr : it->second, "ip_groups." + group, msg.substr(msg.find(':') + 2));
  }
  for (auto& [key, node] : refs) {
    std::string name = *node->value<std::string>();
    if (!c.ip_groups.count(name))
      r.fail(node, key, "no [ip_groups] entry named \"" + name + "\"");
  }
  if (c.relay.open) c.warnings.push_back("relay.open = true: this server is an OPEN RELAY, anyone may send anywhere");
  if (!c.relay.allow_ip_group.empty())
    for (auto& range : c.ip_group_ranges[c.relay.allow_ip_group])
      if (range.is_everything())
        c.warnings.push_back("relay.allow_ip_group \"" + c.relay.allow_ip_group +
                             "\" contains every address: this server is an OPEN RELAY");

  if (!saw_listener)
    c.listeners = {{"smtp", "0.0.0.0", 25, "", 0}, {"submission", "0.0.0.0", 587, "", 0}, {"smtps", "0.0.0.0", 465, "", 0}};

  // Relative directories are relative to the config file, so a config and its data
  // can move together (the demo keeps both under the checkout).
  fs::path base = fs::absolute(fs::path(path)).parent_path();
  if (fs::path(c.server.data_dir).is_relative()) c.server.data_dir = (base / c.server.data_dir).lexically_normal().string();
  if (fs::path(c.server.log_dir).is_relative()) c.server.log_dir = (base / c.server.log_dir).lexically_normal().string();
  auto& pwf = c.delivery.relay_password_file;
  if (!pwf.empty()) {
    if (fs::path(pwf).is_relative()) pwf = (base / pwf).lexically_normal().string();
    std::ifstream in(pwf);
    if (!in) r.fail(delivery_nodes["relay_password_file"], "delivery.relay_password_file", "cannot read " + pwf);
  }
  auto& epf = c.encryption.password_file;  // SPEC 13: read by `serve` when encryption is on
  if (!epf.empty()) {
    if (fs::path(epf).is_relative()) epf = (base / epf).lexically_normal().string();
    struct stat st{};
    if (::stat(epf.c_str(), &st) != 0 || !std::ifstream(epf))
      r.fail(password_file_node, "encryption.password_file", "cannot read " + epf);
    if (st.st_mode & 077)
      r.fail(password_file_node, "encryption.password_file",
             epf + " is readable by others: it holds the encryption password (chmod 600 " + epf + ")");
  }
  if (c.cluster.enabled) {
    if (c.cluster.node.empty()) r.fail(cluster_nodes[""], "cluster.node", "is required in cluster mode (unique per node)");
    if (c.cluster.postgres.empty())
      r.fail(cluster_nodes[""], "cluster.postgres", "is required in cluster mode (a libpq conninfo like \"host=db dbname=bulwark\")");
    if (c.cluster.postgres.find("password") != std::string::npos)
      r.fail(cluster_nodes["cluster.postgres"], "cluster.postgres",
             "must not hold a password: put it in cluster.postgres_password_file (mode 600) or PGPASSFILE");
    for (auto [key, file] : {std::pair<const char*, std::string*>{"cluster.postgres_password_file", &c.cluster.postgres_password_file},
                             {"cluster.redis_password_file", &c.cluster.redis_password_file}}) {
      if (file->empty()) continue;
      if (fs::path(*file).is_relative()) *file = (base / *file).lexically_normal().string();
      struct stat st{};
      if (::stat(file->c_str(), &st) != 0 || !std::ifstream(*file)) r.fail(cluster_nodes[key], key, "cannot read " + *file);
      if (st.st_mode & 077)
        r.fail(cluster_nodes[key], key, *file + " is readable by others: it holds a password (chmod 600 " + *file + ")");
    }
    auto at = c.cluster.redis.find('@');
    if (at != std::string::npos && c.cluster.redis.find(':', c.cluster.redis.find("//") + 2) < at)
      r.fail(cluster_nodes["cluster.redis"], "cluster.redis",
             "must not hold a password: put it in cluster.redis_password_file (mode 600)");
  }
  auto& ca = c.delivery.tls_ca_file;
  if (!ca.empty()) {
    if (fs::path(ca).is_relative()) ca = (base / ca).lexically_normal().string();
    std::ifstream in(ca);
    if (!in) r.fail(delivery_nodes["tls_ca_file"], "delivery.tls_ca_file", "cannot read " + ca);
  }
  return c;
}

}  // namespace bulwark
