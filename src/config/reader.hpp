// config/reader.hpp (inside config/ only): what a key's declaration (schema.cpp) is
// given to read and check its value -- the typed readers that fail with
// "FILE:LINE: key: problem", the Config being filled and what cross-key checks
// (config.cpp) need afterwards.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <toml++/toml.h>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace bulwark {

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::node* n, const std::string& key, const std::string& problem) const;
  std::string str(const toml::node& n, const std::string& key) const;
  bool boolean(const toml::node& n, const std::string& key) const;
  uint64_t count(const toml::node& n, const std::string& key, uint64_t max) const;
  uint64_t size(const toml::node& n, const std::string& key) const;
  std::chrono::seconds duration(const toml::node& n, const std::string& key) const;
  std::chrono::seconds positive_duration(const toml::node& n, const std::string& key) const;
  uint16_t port(const toml::node& n, const std::string& key) const;
  // A string that is one of `allowed` (the error lists them).
  std::string one_of(const toml::node& n, const std::string& key, std::initializer_list<const char*> allowed) const;

 private:
  std::string file_;
};

// One key's value as a declaration's parse function gets it.
struct ConfigValue {
  const toml::node& node;
  const std::string& key;  // "delivery.relay_host", for errors
};

// What the parse functions fill and leave for the checks across keys.
struct ParseContext {
  Reader& r;
  Config& c;
  ListenerConfig* listener = nullptr;  // the [[listener]] table being read
  bool listener_port = false;          // that table gave a port
  // Keys that name an [ip_groups] entry (checked once every group is known).
  std::vector<std::pair<std::string, const toml::node*>> group_refs;

  // The readers, at this value.
  std::string str(const ConfigValue& v) const { return r.str(v.node, v.key); }
  bool boolean(const ConfigValue& v) const { return r.boolean(v.node, v.key); }
  uint64_t count(const ConfigValue& v, uint64_t max) const { return r.count(v.node, v.key, max); }
  uint64_t size(const ConfigValue& v) const { return r.size(v.node, v.key); }
  std::chrono::seconds duration(const ConfigValue& v) const { return r.duration(v.node, v.key); }
  std::chrono::seconds positive(const ConfigValue& v) const { return r.positive_duration(v.node, v.key); }
  uint16_t port(const ConfigValue& v) const { return r.port(v.node, v.key); }
  std::string one_of(const ConfigValue& v, std::initializer_list<const char*> allowed) const {
    return r.one_of(v.node, v.key, allowed);
  }
  [[noreturn]] void fail(const ConfigValue& v, const std::string& problem) const { r.fail(&v.node, v.key, problem); }
  [[noreturn]] void fail(const toml::node& n, const ConfigValue& v, const std::string& problem) const {
    r.fail(&n, v.key, problem);
  }
  // An [ip_groups] name ("" = none).
  std::string group_ref(const ConfigValue& v) {
    std::string name = str(v);
    if (!name.empty()) group_refs.emplace_back(v.key, &v.node);
    return name;
  }
};

bool valid_ip(const std::string& s);

}  // namespace bulwark
