// config/schema: the one declaration of the configuration's keys agrees with the parser
// (every declared key loads with its declared default; a key the schema does not
// declare is refused) and with docs/configuration.md (the same keys, the same defaults).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "config/config.hpp"
#include "config/schema.hpp"
#include "temp_dir.hpp"

using namespace bulwark;

namespace {
Config load_text(const test::TempDir& d, const std::string& text) {
  auto p = d.path / "b.toml";
  std::ofstream(p) << text;
  return load_config(p.string());
}
}  // namespace

TEST(ConfigSchema, EveryDeclaredKeyLoadsWithItsDefaultAndNothingUndeclaredDoes) {
  test::TempDir d;
  // Sections, each key at its declared default (the cluster's required keys given).
  std::map<std::string, std::string> sections;
  for (auto& k : config_schema()) {
    auto v = k.toml_default();
    if (k.section == "listener") continue;  // below
    if (!v) continue;
    sections[std::string(k.section)] += std::string(k.key) + " = " + *v + "\n";
  }
  sections["cluster"] += "node = \"n1\"\npostgres = \"host=db\"\n";
  std::string text;
  for (auto& [s, body] : sections) text += "[" + s + "]\n" + body;
  text += "[[listener]]\nservice = \"smtp\"\naddress = \"0.0.0.0\"\nallowed_ip_group = \"\"\nmax_connections = 0\n";
  EXPECT_NO_THROW(load_text(d, text)) << text;
  Config c = load_text(d, text);
  Config plain = load_text(d, "[[listener]]\nservice = \"smtp\"\n");
  // The declared defaults are the real ones (a sample of each kind).
  EXPECT_EQ(c.server.hostname, plain.server.hostname);
  EXPECT_EQ(c.delivery.retry_interval, plain.delivery.retry_interval);
  EXPECT_EQ(c.limits.max_recipients, plain.limits.max_recipients);
  EXPECT_EQ(c.policy.auth_mechanisms, plain.policy.auth_mechanisms);
  EXPECT_EQ(c.timeouts.shutdown, plain.timeouts.shutdown);
  // A key no section declares is refused, with its name.
  try {
    load_text(d, "[limits]\nmax_recipientz = 5\n");
    FAIL() << "an undeclared key was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("limits.max_recipientz: unknown key"), std::string::npos) << e.what();
  }
  // Per node: the machine's own keys; shared: the rest.
  EXPECT_EQ(config_key("server", "data_dir")->scope, KeyScope::node);
  EXPECT_TRUE(config_key("server", "data_dir")->fixed);
  EXPECT_EQ(config_key("limits", "max_recipients")->scope, KeyScope::shared);
}

TEST(ConfigSchema, TheDocsListExactlyTheDeclaredKeysWithTheirDefaults) {
  std::ifstream in(BULWARK_DOCS "/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md";
  // "## [section]" or "## [[section]]" starts a section's table; any other "## " ends it.
  // A row: "| `key` | default | ...". (Plain string work: libstdc++'s <regex> trips
  // GCC 12's -Wmaybe-uninitialized under the sanitizers.)
  std::string line, section;
  std::map<std::pair<std::string, std::string>, std::string> documented;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) {
      section.clear();
      size_t open = line.find_first_not_of('[', 3), close = line.find(']', 3);
      if (line.size() > 3 && line[3] == '[' && close != std::string::npos && open < close)
        section = line.substr(open, close - open);
      continue;
    }
    if (section.empty() || section == "ip_groups" || line.rfind("| `", 0) != 0) continue;
    size_t key_end = line.find('`', 3);
    if (key_end == std::string::npos || line.compare(key_end, 4, "` | ") != 0) continue;
    std::string key = line.substr(3, key_end - 3);
    size_t from = key_end + 4, to = line.find(" |", from);
    if (to == std::string::npos) continue;
    documented[{section, key}] = line.substr(from, to - from);
  }
  std::set<std::pair<std::string, std::string>> declared;
  for (auto& k : config_schema()) {
    declared.insert({std::string(k.section), std::string(k.key)});
    auto it = documented.find({std::string(k.section), std::string(k.key)});
    if (it == documented.end()) {
      ADD_FAILURE() << k.section << "." << k.key << " is declared but not in docs/configuration.md";
      continue;
    }
    EXPECT_EQ(it->second, k.shown) << k.section << "." << k.key << ": the docs show another default";
  }
  for (auto& [sk, shown] : documented)
    EXPECT_TRUE(declared.count(sk)) << sk.first << "." << sk.second << " is documented but not declared";
}
