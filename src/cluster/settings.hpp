// cluster/settings.hpp: the [cluster] keys as the engines' connection settings.
#pragma once
#include <string>

#include "cluster/pg.hpp"
#include "config/config.hpp"

namespace bulwark::cluster {

// `role` names the connection in pg_stat_activity: "bulwark <node>[ <role>]".
inline pg::Settings pg_settings(const Config& cfg, const std::string& role = "") {
  pg::Settings s;
  s.conninfo = cfg.cluster.postgres;
  s.password_file = cfg.cluster.postgres_password_file;
  s.application = "bulwark " + cfg.cluster.node + (role.empty() ? "" : " " + role);
  return s;
}

}  // namespace bulwark::cluster
