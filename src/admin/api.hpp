// admin/api: the JSON API of the HTTPS admin listener (SPEC 15), sans I/O: one
// authenticated request in, one response out. It runs on a worker thread (directory
// writes and Argon2id never on an I/O thread); the driver (net/admin_driver.cpp)
// authenticates, enforces CSRF and the login machinery, and moves the bytes.
// Depends on config/, directory/, store/, http/.
#pragma once
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cluster/node.hpp"
#include "config/config.hpp"
#include "http/http.hpp"

namespace bulwark {
class Directory;
class Spool;
}

namespace bulwark::admin {

struct Caller {
  std::string name;
  bool read_only = false;
};

// Cluster mode (SPEC 16): what GET /api/v1/cluster and /metrics show, read now.
struct ClusterView {
  std::string node;
  int schema = 0;
  double postgres_seconds = 0;  // one round trip to PostgreSQL
  bool redis_up = false;
  std::vector<cluster::NodeStatus> nodes;
};

struct Context {
  const Config& cfg;
  Directory& dir;
  Spool& spool;
  std::chrono::steady_clock::time_point started;
  // The checks serve makes beyond the file's own (net/preflight; throws ConfigError),
  // and applying the file as SIGHUP does (the error when refused).
  std::function<void(const Config&)> preflight;
  std::function<std::optional<std::string>()> reload;
  // Cluster mode only: the view, or nothing when PostgreSQL cannot be reached.
  std::function<std::optional<ClusterView>()> cluster = {};
  // Cluster mode only: runs `apply_here` (which throws SettingsRefused) and stores the
  // patch's shared keys for the other nodes, both or neither (throws SettingsRefused
  // 503 when PostgreSQL cannot take it).
  std::function<void(const nlohmann::json& patch, const std::string& by, const std::function<void()>& apply_here)>
      share_settings = {};
};

// A settings change refused: the HTTP status and the message ("key: problem").
struct SettingsRefused {
  int status;
  std::string msg;
};
// Merges `patch` (sections of keys; null: back to the default) into `running.file`,
// checks the result as check-config and serve do (`preflight`; server.data_dir,
// log_dir and user cannot change while running), replaces the file (the previous one
// kept as FILE.bak) and applies it (`reload`) -- putting the file back when that
// fails. When the merge changes nothing, nothing is written or applied (`changed`
// false). Returns the file's new text; throws SettingsRefused. By: who, for the
// file's first line.
std::string apply_settings(const Config& running, const nlohmann::json& patch, const std::string& by,
                           const std::function<void(const Config&)>& preflight,
                           const std::function<std::optional<std::string>()>& reload, bool* changed = nullptr);

// A JSON answer {"error": msg} with `status`.
http::Response error(int status, const std::string& msg);
// A JSON answer.
http::Response answer(int status, const std::string& body);

// Every /api/v1/ route but login (the driver's). A read-only caller gets 403 for any
// change; unknown paths 404; a known path with another method 405.
http::Response handle(const http::Request& req, const Caller& who, Context& ctx);

// POST /api/v1/login's body, checked like every other body: the name and password,
// or the 4xx answer (the driver does the rest: the block, Argon2id, the session).
std::optional<http::Response> login_body(const http::Request& req, std::string& name, std::string& password);

// Every JSON body is parsed only after this: arrays and objects nested deeper than
// `max_depth` (bodies of this API nest 3 deep; a hostile one 20,000 deep would exhaust
// the parser's stack and take every service down) -- a scan that does not recurse.
constexpr size_t kMaxJsonDepth = 32;
bool json_too_deep(std::string_view body, size_t max_depth = kMaxJsonDepth);

// GET/PATCH /api/v1/settings (settings.cpp; called by handle).
http::Response settings(const http::Request& req, const Caller& who, Context& ctx);

}  // namespace bulwark::admin
