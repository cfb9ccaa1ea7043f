// admin/settings.cpp: GET and PATCH /api/v1/settings (SPEC 15). GET: the configuration
// file as JSON (what is set; unset keys have their defaults, docs/configuration.md).
// PATCH: a JSON object of sections merged into the file's TOML, checked by the same
// loader as `check-config` on a temporary copy beside the file, then the file is
// replaced atomically (the previous one kept as FILE.bak) and the server reloads as
// on SIGHUP -- refused (and the file put back) when that fails. Anything refused
// changes nothing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <toml++/toml.h>

#include "admin/api.hpp"
#include "config/schema.hpp"
#include "core/body.hpp"

namespace bulwark::admin {

namespace {

using nlohmann::json;

struct Bad {
  std::string msg;
};

json to_json(const toml::node& n) {
  if (auto* t = n.as_table()) {
    json o = json::object();
    for (auto& [k, v] : *t) o[std::string(k.str())] = to_json(v);
    return o;
  }
  if (auto* a = n.as_array()) {
    json arr = json::array();
    for (auto& v : *a) arr.push_back(to_json(v));
    return arr;
  }
  if (auto v = n.value<bool>(); n.is_boolean()) return *v;
  if (n.is_integer()) return *n.value<int64_t>();
  if (n.is_floating_point()) return *n.value<double>();
  if (n.is_string()) return *n.value<std::string>();
  std::ostringstream os;  // dates and times: as TOML writes them
  os << toml::toml_formatter(n);
  return os.str();
}

// A JSON value as TOML; objects only where the file has tables.
void put(toml::table& into, const std::string& key, const json& v, const std::string& where) {
  if (v.is_boolean()) into.insert_or_assign(key, v.get<bool>());
  else if (v.is_number_integer()) into.insert_or_assign(key, v.get<int64_t>());
  else if (v.is_number_float()) into.insert_or_assign(key, v.get<double>());
  else if (v.is_string()) into.insert_or_assign(key, v.get<std::string>());
  else if (v.is_array()) {
    toml::array arr;
    for (auto& x : v) {
      if (x.is_string()) arr.push_back(x.get<std::string>());
      else if (x.is_number_integer()) arr.push_back(x.get<int64_t>());
      else throw Bad{where + ": only arrays of strings or numbers can be set here"};
    }
    into.insert_or_assign(key, std::move(arr));
  } else if (v.is_object()) {
    auto* sub = into[key].as_table();
    if (!sub) {
      into.insert_or_assign(key, toml::table{});
      sub = into[key].as_table();
    }
    for (auto& [k, x] : v.items()) put(*sub, k, x, where + "." + k);
  } else if (v.is_null()) {
    into.erase(key);  // back to the default
  } else {
    throw Bad{where + ": unsupported value"};
  }
}

// Replaces a file durably, keeping its mode: temp + fsync + rename + fsync(dir).
bool replace_keeping_mode(const std::string& path, const std::string& text) {
  struct stat st{};
  mode_t mode = ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0640;
  std::string tmp = path + ".api-tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  ::fchmod(fd, mode);
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    ::unlink(tmp.c_str());
    errno = err;
    return false;
  }
  sync_dir(std::filesystem::path(path).parent_path().string());
  return true;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string apply_settings(const Config& running, const nlohmann::json& patch, const std::string& by,
                           const std::function<void(const Config&)>& preflight,
                           const std::function<std::optional<std::string>()>& reload, bool* changed) {
  const std::string& file = running.file;
  // One change of the file at a time: a PATCH and the cluster's shared settings arriving
  // on the heartbeat thread must not read the same file and write over each other.
  static std::mutex one_at_a_time;
  std::lock_guard lk(one_at_a_time);
  toml::table root;
  try {
    root = toml::parse(slurp(file), file);
  } catch (const toml::parse_error& e) {
    throw SettingsRefused{500, "cannot read " + file + ": " + std::string(e.description())};
  }
  toml::table before = root;
  try {
    for (auto& [section, values] : patch.items()) {
      if (section == "listener")
        throw Bad{"listener: listeners are an array of tables and change at restart; edit them in " + file};
      if (!values.is_object()) throw Bad{section + ": must be an object of keys"};
      put(root, section, values, section);
    }
  } catch (const Bad& b) {
    throw SettingsRefused{400, b.msg};
  }
  std::ostringstream text;
  text << "# Written by " << by << "; the previous file is " << file << ".bak\n" << root << "\n";
  if (changed) *changed = !(root == before);
  if (root == before) return text.str();  // nothing to write or apply
  // Checked exactly as `check-config` checks, on a copy beside the file (relative
  // paths in it mean the same).
  std::string tmp = file + ".api-check";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text.str();
  }
  // "FILE:LINE: key: problem" -> "key: problem" (the line is the temporary copy's)
  auto key_problem = [&tmp](const std::string& m) {
    size_t c1 = m.find(':', tmp.size()), c2 = c1 == std::string::npos ? c1 : m.find(": ", c1 + 1);
    return c2 == std::string::npos ? m : m.substr(c2 + 2);
  };
  try {
    Config next = load_config(tmp);
    // What cannot change while the server runs is refused, not saved for a restart
    // that would then surprise.
    // The keys the schema marks fixed (config/schema.hpp): their values as loaded.
    auto value_of = [](const Config& c, std::string_view section, std::string_view key) -> std::optional<std::string> {
      if (section == "server" && key == "data_dir") return c.server.data_dir;
      if (section == "server" && key == "log_dir") return c.server.log_dir;
      if (section == "server" && key == "user") return c.server.user;
      return std::nullopt;
    };
    for (auto& k : config_schema()) {
      if (!k.fixed) continue;
      auto now = value_of(running, k.section, k.key), wanted = value_of(next, k.section, k.key);
      if (!now) throw std::logic_error("config schema: fixed key without a value: " + std::string(k.key));
      if (now != wanted)
        throw Bad{std::string(k.section) + "." + std::string(k.key) + ": cannot change while the server runs; edit " +
                  file + " and restart"};
    }
    if (preflight) preflight(next);  // the certificate loads, the relay password file reads, ...
  } catch (const ConfigError& e) {
    ::unlink(tmp.c_str());
    throw SettingsRefused{400, key_problem(e.what())};
  } catch (const Bad& b) {
    ::unlink(tmp.c_str());
    throw SettingsRefused{400, b.msg};
  }
  ::unlink(tmp.c_str());
  std::string old = slurp(file);
  if (!replace_keeping_mode(file + ".bak", old) || !replace_keeping_mode(file, text.str()))
    throw SettingsRefused{500, "cannot write " + file + ": " + std::strerror(errno)};
  if (reload) {
    if (auto refused = reload()) {  // applied as a SIGHUP applies it -- or not kept
      replace_keeping_mode(file, old);
      throw SettingsRefused{400, "not applied, the file is as it was: " + *refused};
    }
  }
  return text.str();
}

http::Response settings(const http::Request& req, const Caller& who, Context& ctx) {
  const std::string& file = ctx.cfg.file;
  if (req.method == "GET") {
    try {
      return answer(200, to_json(toml::parse(slurp(file), file)).dump(-1, ' ', false, json::error_handler_t::replace));
    } catch (const toml::parse_error& e) {
      return error(500, "cannot read " + file + ": " + std::string(e.description()));
    }
  }
  if (req.method != "PATCH") return error(405, "GET or PATCH");
  std::string type = req.header("content-type");
  if (type.substr(0, type.find(';')) != "application/json") return error(415, "the body must be application/json");
  if (json_too_deep(req.body))
    return error(400, "the body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json patch = json::parse(req.body, nullptr, false);
  if (patch.is_discarded() || !patch.is_object() || patch.empty())
    return error(400, "the body must be a JSON object of sections, e.g. {\"limits\": {\"max_recipients\": 50}}");
  std::string by = "the admin API (" + who.name + ")";
  try {
    if (!ctx.share_settings) {
      auto text = apply_settings(ctx.cfg, patch, by, ctx.preflight, ctx.reload);
      return answer(200, to_json(toml::parse(text, file)).dump(-1, ' ', false, json::error_handler_t::replace));
    }
    // Cluster mode: applied here first, then shared -- in one PostgreSQL transaction
    // that holds the shared row, so that PATCHes through two nodes do not interleave.
    std::string text;
    ctx.share_settings(patch, by, [&] { text = apply_settings(ctx.cfg, patch, by, ctx.preflight, ctx.reload); });
    return answer(200, to_json(toml::parse(text, file)).dump(-1, ' ', false, json::error_handler_t::replace));
  } catch (const SettingsRefused& r) {
    return error(r.status, r.msg);
  }
}

}  // namespace bulwark::admin
