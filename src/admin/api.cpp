// admin/api.cpp: see api.hpp. Every body is a JSON object whose fields are checked:
// a missing, mistyped or unknown field is a 400 naming it, before anything changes.
#include "admin/api.hpp"

#include <sodium.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "admin/audit.hpp"
#include "auth/password.hpp"
#include "core/address.hpp"
#include "core/strings.hpp"
#include "directory/directory.hpp"
#include "store/folders.hpp"
#include "store/mailstore.hpp"

namespace bulwark::admin {

using nlohmann::json;

http::Response answer(int status, const std::string& body) {
  http::Response r;
  r.status = status;
  r.body = body;
  return r;
}

http::Response error(int status, const std::string& msg) {
  return answer(status, nlohmann::json{{"error", msg}}.dump(-1, ' ', false, json::error_handler_t::replace));
}

namespace {

// A failure with its HTTP status, thrown inside a handler.
struct Refused {
  int status;
  std::string msg;
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The request's JSON object with exactly `required` (+ `optional`) fields.
json body_of(const http::Request& req, std::initializer_list<const char*> required,
             std::initializer_list<const char*> optional = {}) {
  std::string type = req.header("content-type");
  if (type.substr(0, type.find(';')) != "application/json") throw Refused{415, "the body must be application/json"};
  json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded()) throw Refused{400, "the body is not valid JSON"};
  if (!j.is_object()) throw Refused{400, "the body must be a JSON object"};
  for (auto& [k, v] : j.items()) {
    bool known = false;
    for (auto* f : required) known |= k == f;
    for (auto* f : optional) known |= k == f;
    if (!known) throw Refused{400, "unknown field \"" + k + "\""};
  }
  for (auto* f : required)
    if (!j.contains(f)) throw Refused{400, std::string("missing field \"") + f + "\""};
  return j;
}

std::string text_field(const json& j, const char* name) {
  if (!j[name].is_string()) throw Refused{400, std::string("field \"") + name + "\" must be a string"};
  return j[name].get<std::string>();
}

Address address_of(const std::string& s, const char* what) {
  auto a = parse_mailbox(s);
  if (!a) throw Refused{400, std::string(what) + " \"" + sanitize(s) + "\" is not a valid address"};
  return *a;
}

// A path split into segments after /api/v1/.
std::vector<std::string> segments(const std::string& path) {
  std::vector<std::string> out;
  std::string_view p = path;
  p.remove_prefix(std::string_view("/api/v1/").size());
  while (!p.empty()) {
    size_t slash = p.find('/');
    out.emplace_back(p.substr(0, slash));
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash + 1);
  }
  return out;
}

void check_policy(const Config& cfg, std::string& pw, const std::string& address) {
  auth::PasswordPolicy pp{cfg.password_policy.min_length, int(cfg.password_policy.min_classes),
                          cfg.password_policy.forbid_username};
  if (auto problem = auth::check_password_policy(pw, address, pp)) {
    sodium_memzero(pw.data(), pw.size());
    throw Refused{400, "password refused: " + *problem};
  }
}

http::Response route(const http::Request& req, const Caller& who, Context& ctx) {
  auto seg = segments(req.path);
  const std::string& m = req.method;
  bool change = m != "GET" && m != "HEAD";
  if (change && who.read_only) throw Refused{403, "a read-only administrator cannot change anything"};
  auto method_not_allowed = [] { return error(405, "method not allowed here"); };
  Directory& dir = ctx.dir;
  if (seg.empty()) throw Refused{404, "no such endpoint"};
  const std::string& what = seg[0];

  if (what == "status" && seg.size() == 1) {
    if (m != "GET") return method_not_allowed();
    auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - ctx.started);
    size_t queued = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(std::filesystem::path(ctx.cfg.server.data_dir) / "queue", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      queued += it->path().filename().string().find('.') == std::string::npos;
    json j{{"uptime_seconds", up.count()}, {"hostname", ctx.cfg.server.hostname}, {"queue", {{"messages", queued}}},
           {"domains", dir.list_domains().size()}, {"users", dir.list_users().size()}};
    return answer(200, dump(j));
  }
  if (what == "domains") {
    if (seg.size() == 1 && m == "GET") {
      json list = json::array();
      for (auto& d : dir.list_domains()) list.push_back({{"name", d.name}, {"anti_spoofing", d.anti_spoofing}});
      return answer(200, dump(json{{"domains", list}}));
    }
    if (seg.size() == 1 && m == "POST") {
      json b = body_of(req, {"name"}, {"anti_spoofing"});
      bool anti = true;
      if (b.contains("anti_spoofing")) {
        if (!b["anti_spoofing"].is_boolean()) throw Refused{400, "field \"anti_spoofing\" must be true or false"};
        anti = b["anti_spoofing"].get<bool>();
      }
      dir.add_domain(text_field(b, "name"), anti);
      return answer(201, dump(json{{"name", to_lower(text_field(b, "name"))}}));
    }
    if (seg.size() == 2 && m == "DELETE") {
      dir.remove_domain(seg[1]);
      return answer(204, "");
    }
    return method_not_allowed();
  }
  if (what == "users") {
    if (seg.size() == 1 && m == "GET") {
      json list = json::array();
      for (auto& u : dir.list_users(req.param("domain"))) list.push_back({{"address", u}});
      return answer(200, dump(json{{"users", list}}));
    }
    if (seg.size() == 1 && m == "POST") {
      json b = body_of(req, {"address", "password"});
      Address a = address_of(text_field(b, "address"), "address");
      std::string pw = text_field(b, "password");
      check_policy(ctx.cfg, pw, a.lookup_key());
      dir.add_user(a, pw);
      sodium_memzero(pw.data(), pw.size());
      std::string err;
      store::ensure_default_folders(maildir_path(ctx.cfg.server.data_dir, a.lookup_key()), err);
      return answer(201, dump(json{{"address", a.str()}}));
    }
    if (seg.size() == 2 && m == "DELETE") {
      dir.remove_user(address_of(seg[1], "user"));
      return answer(204, "");
    }
    if (seg.size() == 3 && seg[2] == "password" && m == "PUT") {
      Address a = address_of(seg[1], "user");
      json b = body_of(req, {"password"});
      std::string pw = text_field(b, "password");
      check_policy(ctx.cfg, pw, a.lookup_key());
      dir.set_password(a, pw);
      sodium_memzero(pw.data(), pw.size());
      return answer(204, "");
    }
    return method_not_allowed();
  }
  if (what == "aliases") {
    if (seg.size() == 1 && m == "GET") {
      json list = json::array();
      for (auto& [a, t] : dir.list_aliases()) list.push_back({{"alias", a}, {"target", t}});
      return answer(200, dump(json{{"aliases", list}}));
    }
    if (seg.size() == 1 && m == "POST") {
      json b = body_of(req, {"alias", "target"});
      Address a = address_of(text_field(b, "alias"), "alias"), t = address_of(text_field(b, "target"), "target");
      dir.add_alias(a, t);
      return answer(201, dump(json{{"alias", a.lookup_key()}, {"target", t.lookup_key()}}));
    }
    if (seg.size() == 2 && m == "DELETE") {
      dir.remove_alias(address_of(seg[1], "alias"));
      return answer(204, "");
    }
    return method_not_allowed();
  }
  if (what == "groups") {
    if (seg.size() == 1 && m == "GET") {
      std::map<std::string, json> groups;
      for (auto& [g, member] : dir.list_groups()) groups[g].push_back(member);
      json list = json::array();
      for (auto& [g, members] : groups) list.push_back({{"address", g}, {"members", members}});
      return answer(200, dump(json{{"groups", list}}));
    }
    if (seg.size() == 1 && m == "POST") {
      json b = body_of(req, {"address", "members"});
      Address g = address_of(text_field(b, "address"), "address");
      if (!b["members"].is_array()) throw Refused{400, "field \"members\" must be an array of addresses"};
      std::vector<Address> ms;
      for (auto& x : b["members"]) {
        if (!x.is_string()) throw Refused{400, "field \"members\" must be an array of addresses"};
        ms.push_back(address_of(x.get<std::string>(), "member"));
      }
      dir.add_group(g, ms);
      return answer(201, dump(json{{"address", g.lookup_key()}, {"members", b["members"]}}));
    }
    if (seg.size() == 2 && m == "DELETE") {
      dir.remove_group(address_of(seg[1], "group"));
      return answer(204, "");
    }
    return method_not_allowed();
  }
  if (what == "audit" && seg.size() == 1) {
    if (m != "GET") return method_not_allowed();
    json list = json::array();
    for (auto& f : audit(ctx.cfg, dir))
      list.push_back({{"severity", f.level == Finding::warning ? "warning" : "notice"}, {"text", f.text}});
    return answer(200, dump(json{{"findings", list}}));
  }
  throw Refused{404, "no such endpoint"};
}

}  // namespace

http::Response handle(const http::Request& req, const Caller& who, Context& ctx) {
  try {
    return route(req, who, ctx);
  } catch (const Refused& r) {
    return error(r.status, r.msg);
  } catch (const DirectoryError& e) {
    std::string msg = e.what();
    bool missing = msg.find("does not exist") != std::string::npos;
    bool dup = msg.find("already") != std::string::npos;
    return error(missing ? 404 : dup ? 409 : 400, msg);
  } catch (const std::exception& e) {
    return error(500, std::string("internal error: ") + e.what());
  }
}

}  // namespace bulwark::admin
