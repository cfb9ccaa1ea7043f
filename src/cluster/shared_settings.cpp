// cluster/shared_settings.cpp: see shared_settings.hpp.
#include "cluster/shared_settings.hpp"

#include "config/schema.hpp"

namespace bulwark::cluster {

using nlohmann::json;

bool per_node_key(const std::string& section, const std::string& key) {
  if (section == "cluster" || section == "listener") return true;
  const ConfigKey* k = config_key(section, key);
  return k && k->scope == KeyScope::node;  // an unknown key: the file's check refuses it
}

std::pair<json, json> split_patch(const json& patch) {
  json shared = json::object(), own = json::object();
  for (auto& [section, values] : patch.items()) {
    if (!values.is_object()) {  // not a section of keys: the file's check refuses it
      own[section] = values;
      continue;
    }
    for (auto& [key, v] : values.items()) (per_node_key(section, key) ? own : shared)[section][key] = v;
  }
  return {shared, own};
}

void merge_keeping_nulls(json& into, const json& more) {
  if (!into.is_object()) into = json::object();
  for (auto& [k, v] : more.items()) {
    if (v.is_object() && into.contains(k) && into[k].is_object())
      merge_keeping_nulls(into[k], v);
    else
      into[k] = v;
  }
}

SharedSettings read_shared(pg::Conn& c, bool for_update) {
  SharedSettings s;
  auto r = for_update ? c.exec("SELECT version, patch::text, changed_by FROM shared_settings WHERE id = 1 FOR UPDATE")
                      : c.exec("SELECT version, patch::text, changed_by FROM shared_settings WHERE id = 1");
  if (!r.rows()) return s;
  s.version = r.integer(0, 0);
  s.patch = json::parse(r.text(0, 1), nullptr, false);
  if (s.patch.is_discarded() || !s.patch.is_object()) s.patch = json::object();
  s.changed_by = r.text(0, 2);
  return s;
}

int64_t store_shared(pg::Conn& c, const json& shared, const std::string& by) {
  SharedSettings now = read_shared(c, true);
  merge_keeping_nulls(now.patch, shared);
  return c
      .exec("UPDATE shared_settings SET version = version + 1, patch = $1::jsonb, changed_by = $2, changed_at = now() "
            "WHERE id = 1 RETURNING version",
            {now.patch.dump(), by})
      .integer(0, 0);
}

}  // namespace bulwark::cluster
