// cluster/shared_settings.hpp: the settings the admin API changes, shared by the nodes
// (SPEC 16). PostgreSQL keeps one accumulated patch (schema version 5): every PATCH's
// shared keys merged in order, a null kept as "back to the default". Each node merges
// it into its own file when its version moves (checked first, as a PATCH is) and at
// start, so a node that was down when a setting changed has it when it comes up. Keys
// that belong to one machine never go there: they stay in each node's file.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "cluster/pg.hpp"

namespace bulwark::cluster {

// server.hostname/data_dir/log_dir/user, tls.certificate/private_key/self_signed,
// encryption.password_file, all of [cluster] and the listeners.
bool per_node_key(const std::string& section, const std::string& key);

// A PATCH body (sections of keys) split into (shared, this node's own); either may be
// an empty object.
std::pair<nlohmann::json, nlohmann::json> split_patch(const nlohmann::json& patch);

// `more` merged into `into`: objects key by key, anything else (null too) replaces.
void merge_keeping_nulls(nlohmann::json& into, const nlohmann::json& more);

struct SharedSettings {
  int64_t version = 0;  // 0: nothing shared yet
  nlohmann::json patch = nlohmann::json::object();
  std::string changed_by;
};
// The stored patch; `for_update` locks the row (inside c's open transaction) so that
// PATCHes through different nodes merge one after the other.
SharedSettings read_shared(pg::Conn& c, bool for_update = false);
// Merges `shared` into the stored patch, in c's open transaction; the new version.
int64_t store_shared(pg::Conn& c, const nlohmann::json& shared, const std::string& by);

}  // namespace bulwark::cluster
