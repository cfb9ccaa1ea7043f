// config/config.cpp: the file read through each key's declaration (config/schema.cpp),
// then the checks that span keys: a relay host for relay mode, credentials only over
// verified TLS, ip_groups and the names that refer to them, password and CA files that
// can be read (and are not readable by others), the cluster's required keys.
#include "config/config.hpp"

#include <sys/stat.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "config/reader.hpp"
#include "config/schema.hpp"
#include "core/units.hpp"

namespace bulwark {

namespace fs = std::filesystem;

void Reader::fail(const toml::node* n, const std::string& key, const std::string& problem) const {
  size_t line = n ? n->source().begin.line : 1;
  throw ConfigError(file_ + ":" + std::to_string(line) + ": " + key + ": " + problem);
}

std::string Reader::str(const toml::node& n, const std::string& key) const {
  if (!n.is_string()) fail(&n, key, "must be a string");
  return *n.value<std::string>();
}

bool Reader::boolean(const toml::node& n, const std::string& key) const {
  if (!n.is_boolean()) fail(&n, key, "must be true or false");
  return *n.value<bool>();
}

uint64_t Reader::count(const toml::node& n, const std::string& key, uint64_t max) const {
  if (!n.is_integer()) fail(&n, key, "must be a whole number");
  int64_t v = *n.value<int64_t>();
  if (v < 0 || uint64_t(v) > max) fail(&n, key, "must be between 0 and " + std::to_string(max));
  return uint64_t(v);
}

uint64_t Reader::size(const toml::node& n, const std::string& key) const {
  if (n.is_integer()) return count(n, key, uint64_t(1) << 40);
  if (!n.is_string()) fail(&n, key, "must be a size like 10485760 or \"10MB\"");
  auto v = parse_size(*n.value<std::string>());
  if (!v) fail(&n, key, "bad size \"" + *n.value<std::string>() + "\" (use bytes or KB/MB/GB, e.g. \"10MB\")");
  return *v;
}

std::chrono::seconds Reader::duration(const toml::node& n, const std::string& key) const {
  if (n.is_integer() && *n.value<int64_t>() == 0) return std::chrono::seconds(0);
  if (!n.is_string()) fail(&n, key, "must be a duration like \"30s\", \"5m\", \"1h\", \"2d\"");
  auto v = parse_duration(*n.value<std::string>());
  if (!v) fail(&n, key, "bad duration \"" + *n.value<std::string>() + "\" (use s/m/h/d, e.g. \"5m\")");
  return *v;
}

std::chrono::seconds Reader::positive_duration(const toml::node& n, const std::string& key) const {
  auto d = duration(n, key);
  if (d.count() == 0) fail(&n, key, "must be longer than 0s");
  return d;
}

uint16_t Reader::port(const toml::node& n, const std::string& key) const {
  if (!n.is_integer() || *n.value<int64_t>() < 1 || *n.value<int64_t>() > 65535)
    fail(&n, key, "must be a port number between 1 and 65535");
  return uint16_t(*n.value<int64_t>());
}

std::string Reader::one_of(const toml::node& n, const std::string& key,
                           std::initializer_list<const char*> allowed) const {
  std::string v = str(n, key), list;
  for (auto* a : allowed) {
    if (v == a) return v;
    list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
  }
  fail(&n, key, "must be one of " + list);
}

bool valid_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

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

namespace {

bool declared_section(std::string_view section) {
  for (auto& k : config_schema())
    if (k.section == section) return true;
  return false;
}

// [ip_groups]: name = ["10.0.0.0/8", "192.0.2.1-192.0.2.9", "@other"].
void read_ip_groups(const Reader& r, const toml::node& n, Config& c, std::map<std::string, const toml::node*>& at) {
  const toml::table* t = n.as_table();
  if (!t) r.fail(&n, "ip_groups", "must be a table of name = [addresses]");
  for (auto&& [name, v] : *t) {
    std::string key = "ip_groups." + std::string(name.str());
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
    at[key] = &v;
  }
}

}  // namespace

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
  ParseContext x{r, c, nullptr, false, {}};
  std::map<std::string, const toml::node*> at;  // every table and key read, for the line of a later error
  // One table's keys, each read by its declaration; an undeclared one is refused.
  auto keys = [&](const toml::node& n, const std::string& section) {
    const toml::table* t = n.as_table();
    if (!t) r.fail(&n, section, "must be a table");
    for (auto&& [k, v] : *t) {
      std::string key = section + "." + std::string(k.str());
      const ConfigKey* d = config_key(section, k.str());
      if (!d) r.fail(&v, key, "unknown key (check the spelling; see docs/configuration.md)");
      at[key] = &v;
      d->parse(x, ConfigValue{v, key});
    }
  };
  bool saw_listener = false;
  for (auto&& [name, n] : root) {
    std::string section(name.str());
    at[section] = &n;
    if (section == "ip_groups") {
      read_ip_groups(r, n, c, at);
    } else if (section == "listener") {
      const toml::array* arr = n.as_array();
      if (!arr || !arr->is_array_of_tables()) r.fail(&n, section, "must be written as [[listener]] tables");
      saw_listener = true;
      for (auto&& item : *arr) {
        ListenerConfig l;
        x.listener = &l;
        x.listener_port = false;
        keys(item, section);
        x.listener = nullptr;
        if (l.service.empty())
          r.fail(&item, "listener.service", "missing (smtp, submission, smtps, pop3, pop3s, imap, imaps or admin)");
        if (l.address.empty()) l.address = "0.0.0.0";
        if (!x.listener_port)
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
            r.fail(&item, "listener.port",
                   "port " + std::to_string(l.port) + " on " + l.address + " is used by two listeners");
        c.listeners.push_back(l);
      }
    } else if (declared_section(section)) {
      if (section == "cluster") c.cluster.enabled = true;  // the table's presence turns cluster mode on
      keys(n, section);
    } else {
      r.fail(&n, section, "unknown key (check the spelling; see docs/configuration.md)");
    }
  }
  // Across keys.
  if (c.delivery.mode == "relay" && c.delivery.relay_host.empty())
    r.fail(at["delivery"], "delivery.relay_host", "is required when delivery.mode = \"relay\"");
  if (c.delivery.relay_auth != "none" && (c.delivery.relay_user.empty() || c.delivery.relay_password_file.empty()))
    r.fail(at["delivery"], "delivery.relay_auth",
           "\"" + c.delivery.relay_auth +
               "\" needs relay_user and relay_password_file (the password never goes in this file)");
  // Credentials go only to a server that proved who it is: over opportunistic TLS (no
  // verification) an active attacker would collect them.
  if (c.delivery.relay_auth != "none" && c.delivery.tls != "required")
    r.fail(at["delivery"], "delivery.tls",
           "\"" + c.delivery.tls + "\" with relay_auth = \"" + c.delivery.relay_auth +
               "\" would give the relay password to an unverified server; set delivery.tls = "
               "\"required\" (and tls_ca_file if the relay's certificate is from a private CA)");
  try {
    c.ip_group_ranges = flatten_ip_groups(c.ip_groups);
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    std::string group = msg.substr(0, msg.find(':'));
    r.fail(at["ip_groups." + group], "ip_groups." + group, msg.substr(msg.find(':') + 2));
  }
  for (auto& [key, node] : x.group_refs) {
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
    if (!in) r.fail(at["delivery.relay_password_file"], "delivery.relay_password_file", "cannot read " + pwf);
  }
  auto& epf = c.encryption.password_file;  // SPEC 13: read by `serve` when encryption is on
  if (!epf.empty()) {
    if (fs::path(epf).is_relative()) epf = (base / epf).lexically_normal().string();
    struct stat st{};
    if (::stat(epf.c_str(), &st) != 0 || !std::ifstream(epf))
      r.fail(at["encryption.password_file"], "encryption.password_file", "cannot read " + epf);
    if (st.st_mode & 077)
      r.fail(at["encryption.password_file"], "encryption.password_file",
             epf + " is readable by others: it holds the encryption password (chmod 600 " + epf + ")");
  }
  if (c.cluster.enabled) {
    if (c.cluster.node.empty()) r.fail(at["cluster"], "cluster.node", "is required in cluster mode (unique per node)");
    if (c.cluster.postgres.empty())
      r.fail(at["cluster"], "cluster.postgres", "is required in cluster mode (a libpq conninfo like \"host=db dbname=bulwark\")");
    for (auto [key, file] : {std::pair<const char*, std::string*>{"cluster.postgres_password_file", &c.cluster.postgres_password_file},
                             {"cluster.redis_password_file", &c.cluster.redis_password_file}}) {
      if (file->empty()) continue;
      if (fs::path(*file).is_relative()) *file = (base / *file).lexically_normal().string();
      struct stat st{};
      if (::stat(file->c_str(), &st) != 0 || !std::ifstream(*file)) r.fail(at[key], key, "cannot read " + *file);
      if (st.st_mode & 077)
        r.fail(at[key], key, *file + " is readable by others: it holds a password (chmod 600 " + *file + ")");
    }
  }
  auto& ca = c.delivery.tls_ca_file;
  if (!ca.empty()) {
    if (fs::path(ca).is_relative()) ca = (base / ca).lexically_normal().string();
    std::ifstream in(ca);
    if (!in) r.fail(at["delivery.tls_ca_file"], "delivery.tls_ca_file", "cannot read " + ca);
  }
  return c;
}

}  // namespace bulwark
