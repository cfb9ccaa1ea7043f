// config/schema.hpp: every key of the configuration file, declared once -- its section,
// its name, its default as docs/configuration.md shows it, whether it belongs to one
// machine (per node) or may be shared by the nodes of a cluster, whether it can change
// while the server runs, and how its value is read and checked. What reads this
// declaration:
// - load_config: each key's value goes through its declaration's `parse`; a key that is
//   not declared is refused as unknown (config.cpp keeps only the checks across keys:
//   a relay host for relay mode, readable password files, ip_groups references);
// - the admin API's settings PATCH: `fixed` keys are refused while running
//   (admin/settings.cpp);
// - cluster mode's shared settings: only `shared` keys go to the other nodes
//   (cluster/shared_settings.cpp);
// - the tests: every declared key with a literal default loads with it, and
//   docs/configuration.md documents exactly these keys with these defaults
//   (tests/unit/config_schema_test.cpp).
// [ip_groups] has no fixed keys (its keys are group names) and is not listed.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace bulwark {

struct ParseContext;  // config/reader.hpp
struct ConfigValue;
// Reads one key's value into the Config (fails with the key and its line when it is
// not acceptable).
using ParseFn = void (*)(ParseContext&, const ConfigValue&);

enum class KeyScope {
  shared,  // the same on every node (cluster mode shares a change made through the API)
  node,    // this machine's: paths, its name, its listeners, its engines
};

struct ConfigKey {
  std::string_view section;   // "server"; "listener" for [[listener]] tables
  std::string_view key;
  std::string_view shown;     // the default as the docs show it ("`\"5m\"`", "(required)")
  KeyScope scope;
  bool fixed;                 // cannot change while the server runs (restart)
  ParseFn parse;
  // The default as a TOML value ("\"5m\""), when the docs show one literally.
  std::optional<std::string> toml_default() const;
};

std::span<const ConfigKey> config_schema();
const ConfigKey* config_key(std::string_view section, std::string_view key);

}  // namespace bulwark
