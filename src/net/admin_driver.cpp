// net/: the admin driver (SPEC 15) -- HTTPS only (implicit TLS on the shared
// connection layer: access group, caps, deadlines, drain), HTTP/1.1 from http/,
// administrators' logins through the shared login machinery (Argon2id on the hashing
// pool, failure delay, per-IP block, security.log), sessions and CSRF, and the JSON API
// (admin/api) run on the hashing pool: directory writes and Argon2id never run on an
// I/O thread.
#include <sodium.h>

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "admin/api.hpp"
#include "cluster/schema.hpp"
#include "cluster/settings.hpp"
#include "cluster/shared_settings.hpp"
#include "admin/console.hpp"
#include "auth/password.hpp"
#include "core/metrics.hpp"
#include "core/strings.hpp"
#include "net/preflight.hpp"
#include "directory/directory.hpp"
#include "http/http.hpp"
#include "logging/logs.hpp"
#include "net/driver.hpp"
#include "net/login.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;

namespace {

// Console sessions: random ids, in memory (a restart logs everyone out), bounded.
class Sessions {
 public:
  struct Session {
    std::string admin, csrf;
    std::chrono::steady_clock::time_point expires;
  };
  static constexpr size_t kMax = 1000;
  static constexpr std::chrono::hours kLifetime{8};

  std::pair<std::string, std::string> open(const std::string& admin) {
    std::string id = token(), csrf = token();
    auto now = std::chrono::steady_clock::now();
    std::lock_guard lk(mu_);
    if (map_.size() >= kMax) {
      std::erase_if(map_, [&](auto& kv) { return kv.second.expires <= now; });
      if (map_.size() >= kMax) {  // all live: the one that ends first goes
        auto first = std::min_element(map_.begin(), map_.end(),
                                      [](auto& a, auto& b) { return a.second.expires < b.second.expires; });
        map_.erase(first);
      }
    }
    map_[id] = {admin, csrf, now + kLifetime};
    return {id, csrf};
  }
  std::optional<Session> find(const std::string& id) {
    std::lock_guard lk(mu_);
    auto it = map_.find(id);
    if (it == map_.end()) return std::nullopt;
    if (it->second.expires <= std::chrono::steady_clock::now()) {
      map_.erase(it);
      return std::nullopt;
    }
    return it->second;
  }
  void close(const std::string& id) {
    std::lock_guard lk(mu_);
    map_.erase(id);
  }

 private:
  static std::string token() { return hex(auth::random_bytes(32)); }
  std::mutex mu_;
  std::unordered_map<std::string, Session> map_;
};

// The cookie `name`'s value ("" when absent). `twice`: it came more than once (in one
// field or in several, which the parser joins with ", ") -- an injected second cookie
// must not let either one count: the request is refused.
std::string cookie(const http::Request& req, const std::string& name, bool& twice) {
  std::string all = req.header("cookie"), found;
  std::string_view v = all;
  int seen = 0;
  while (!v.empty()) {
    size_t sep = v.find_first_of(";,");
    std::string_view part = v.substr(0, sep);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.substr(0, name.size() + 1) == name + "=" && ++seen == 1) found = std::string(part.substr(name.size() + 1));
    if (sep == std::string_view::npos) break;
    v.remove_prefix(sep + 1);
  }
  twice = seen > 1;
  return twice ? std::string() : found;
}

// GET / and the console's files (embedded at build time); anything else 404.
http::Response static_file(const http::Request& req) {
  // /favicon.ico: browsers ask for it whatever the page says.
  std::string path = req.path == "/" ? "/index.html" : req.path == "/favicon.ico" ? "/favicon.svg" : req.path;
  for (auto& [name, bytes] : admin::console_files()) {
    if (name != path) continue;
    if (req.method != "GET") return admin::error(405, "GET only");
    http::Response r;
    r.body = std::string(bytes);
    r.content_type = path.ends_with(".html") ? "text/html; charset=utf-8"
                     : path.ends_with(".js") ? "text/javascript; charset=utf-8"
                     : path.ends_with(".css") ? "text/css; charset=utf-8"
                     : path.ends_with(".svg") ? "image/svg+xml"
                                              : "application/octet-stream";
    return r;
  }
  return admin::error(404, "not found (the API is under /api/v1/, metrics at /metrics, the console at /)");
}

// Cluster mode: the nodes and the engines' health as this node sees them now (a
// connection of its own: this runs on the hashing pool, never on an I/O thread).
std::optional<admin::ClusterView> cluster_view(const Config& cfg) {
  try {
    auto c = pg::Conn::open(cluster::pg_settings(cfg, "admin"));
    admin::ClusterView v;
    auto t0 = std::chrono::steady_clock::now();
    c->run("SELECT 1");
    v.postgres_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    v.node = cfg.cluster.node;
    v.schema = cluster::database_version(*c);
    v.redis_up = metrics::value("bulwark_cluster_redis_up") > 0;
    v.nodes = cluster::nodes(*c);
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Cluster mode: a PATCH applied here and its shared keys stored for the other nodes, in
// one transaction holding the shared row (two nodes' PATCHes do not interleave).
void share_settings(const Config& cfg, const nlohmann::json& patch, const std::string& by,
                    const std::function<void()>& apply_here) {
  auto [shared, own] = cluster::split_patch(patch);
  if (shared.empty()) return apply_here();  // only this node's own keys
  std::unique_ptr<pg::Conn> c;
  std::unique_ptr<pg::Transaction> t;
  try {
    c = pg::Conn::open(cluster::pg_settings(cfg, "admin"));
    t = std::make_unique<pg::Transaction>(*c);
    cluster::read_shared(*c, true);
  } catch (const std::exception& e) {
    throw admin::SettingsRefused{503, std::string("the cluster's settings cannot be stored now, nothing changed: ") +
                                          e.what()};
  }
  apply_here();  // refused: the transaction rolls back, nothing shared
  try {
    int64_t v = cluster::store_shared(*c, shared, by + " on " + cfg.cluster.node);
    t->commit();
    logs::main().info("cluster: settings shared, version {}", v);
  } catch (const std::exception& e) {
    throw admin::SettingsRefused{503, std::string("applied on this node only, not shared with the others "
                                                  "(PostgreSQL): ") + e.what()};
  }
}

class AdminDriver : public Driver {
 public:
  explicit AdminDriver(Shared& shared) : sh_(shared), started_(std::chrono::steady_clock::now()) {}
  const char* name() const override { return "ADMIN"; }
  bool implicit_tls() const override { return true; }

  std::string refusal(Refusal why, const std::string&) const override {
    http::Response r = admin::error(why == Refusal::not_in_group ? 403 : 503,
                                    why == Refusal::not_in_group ? "access denied" : "too many connections, try later");
    r.close = true;
    return r.wire();
  }

  // Every local lives at function scope (see docs/architecture.md on GCC 12).
  awaitable<void> converse(Conn& conn, Admitted& a) override {
    Conn* c = &conn;
    const Config* cfg = a.cfg.get();
    const std::string& ip = a.ip;
    http::Parser parser;
    std::string out;
    std::optional<http::Request> req;
    admin::Caller who;
    http::Response resp;
    std::optional<std::string> session_id;
    std::string login_name, login_password;
    std::optional<Directory::AdminInfo> found;
    std::optional<http::Response> bad_login;
    Clock::time_point started;
    auto verify = [this, &login_name, &login_password]() {
      auto r = sh_.dir.verify_admin(login_name, login_password);
      sodium_memzero(login_password.data(), login_password.size());
      return r;
    };
    auto run_api = [this, &req, &who, cfg]() {
      admin::Context ctx{*cfg, sh_.dir, sh_.spool, started_, preflight, sh_.reload};
      if (cfg->cluster.enabled) {
        ctx.cluster = [cfg]() { return cluster_view(*cfg); };
        ctx.share_settings = [cfg](const nlohmann::json& patch, const std::string& by,
                                   const std::function<void()>& apply_here) {
          share_settings(*cfg, patch, by, apply_here);
        };
      }
      return admin::handle(*req, who, ctx);
    };
    auto policy = Logins::policy(*cfg, *a.groups, a.ipa);
    LoginSlot slot(sh_.logins, "ADMIN", ip, a.ipa, Logins::Realm::admin);
    bool waiting = true;  // between requests: a new one gets its own deadline when it starts
    for (;;) {
      // The whole request -- head and body -- within timeouts.command of its first
      // byte, as SMTP's commands: reads do not renew it (a slow drip would).
      if (waiting) c->set_deadline(cfg->timeouts.command);
      size_t n = 0;
      ReadEnd end = co_await next_read(*c, n);
      if (end != ReadEnd::data) break;
      if (waiting) c->set_deadline(cfg->timeouts.command);  // from the first byte of the request
      if (!parser.feed(std::string_view(c->buf.data(), n))) {
        resp = admin::error(parser.error_status(), parser.error());
        resp.close = true;
        out = resp.wire();
        co_await write(*c, out);
        break;
      }
      bool close = false, handled = false;
      while ((req = parser.next())) {
        resp = http::Response{};
        session_id.reset();
        if (req->path.rfind("/api/v1/", 0) != 0 && req->path != "/metrics") {
          resp = static_file(*req);  // the console: public files, no data in them
        } else if (req->path == "/api/v1/login") {
          if (req->method != "POST") {
            resp = admin::error(405, "POST a JSON {\"name\", \"password\"}");
          } else if (slot.blocked()) {
            resp = admin::error(429, "too many failed logins from your address; try later");
          } else {
            bad_login = admin::login_body(*req, login_name, login_password);
            sodium_memzero(req->body.data(), req->body.size());
            if (bad_login) {
              resp = std::move(*bad_login);
            } else if (co_await wait_for_slot(*c, slot, Clock::now() + cfg->timeouts.command) != Logins::Attempt::ok) {
              sodium_memzero(login_password.data(), login_password.size());
              resp = admin::error(429, "too many logins from your address at once or failed; try later");
            } else {
              found = co_await async_on(sh_.hashing, &verify, use_awaitable);
              if (!found) {
                bool known = sh_.dir.admin(login_name).has_value();
                slot.failed("password", login_name, known ? "wrong password" : "no such administrator", known);
                co_await pause(*c, policy.failure_delay);
                resp = admin::error(401, "wrong name or password");
              } else {
                slot.release();
                logs::security().info("ADMIN login from {}: {}{}", ip, sanitize(found->name),
                                      found->read_only ? " (read-only)" : "");
                auto [id, csrf] = sessions_.open(found->name);
                resp = admin::answer(200, nlohmann::json{{"token", id}, {"csrf", csrf}, {"name", found->name},
                                                         {"read_only", found->read_only}}
                                              .dump());
                resp.headers.emplace_back("Set-Cookie", "bulwark_session=" + id +
                                                            "; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=28800");
              }
            }
          }
        } else {
          // Who asks: a bearer token (an API token of `admin token`, or a session's),
          // else the session cookie -- whose changes need the CSRF header too.
          std::string auth = req->header("authorization"), name;
          bool by_cookie = false, ok = false, two_cookies = false;
          std::string id = cookie(*req, "bulwark_session", two_cookies);
          if (two_cookies) {
            resp = admin::error(400, "more than one session cookie");
            ok = true;  // answered
          } else if (auth.size() > 7 && iequals(std::string_view(auth).substr(0, 7), "bearer ")) {  // RFC 9110 11.1
            std::string t = auth.substr(7);
            while (!t.empty() && t.front() == ' ') t.erase(0, 1);
            if (auto s = sessions_.find(t)) {
              name = s->admin;
              session_id = t;
            } else if (auto ad = sh_.dir.admin_by_token(t)) {
              name = ad->name;
            }
          } else if (!id.empty()) {
            if (auto s = sessions_.find(id)) {
              name = s->admin;
              session_id = id;
              by_cookie = true;
              bool safe = req->method == "GET" || req->method == "HEAD";
              if (!safe && !auth::equal_ct(req->header("x-csrf-token"), s->csrf)) {
                resp = admin::error(403, "missing or wrong X-CSRF-Token");
                name.clear();
                ok = true;  // answered
              }
            }
          }
          if (!ok) {
            auto current = name.empty() ? std::nullopt : sh_.dir.admin(name);  // removed meanwhile: out
            if (req->path == "/api/v1/session") {  // the console asks who it is (200 either way)
              nlohmann::json j = nlohmann::json::object();
              if (current && req->method == "GET") {
                j = {{"name", current->name}, {"read_only", current->read_only}};
                if (session_id)
                  if (auto sess = sessions_.find(*session_id)) j["csrf"] = sess->csrf;
              }
              resp = req->method == "GET" ? admin::answer(200, j.dump()) : admin::error(405, "GET only");
            } else if (!current) {
              resp = admin::error(401, "log in first (POST /api/v1/login) or send Authorization: Bearer TOKEN");
              resp.headers.emplace_back("WWW-Authenticate", "Bearer");
            } else if (req->path == "/api/v1/logout" && req->method != "POST") {
              resp = admin::error(405, "POST to log out");  // a change of state: never on GET
            } else if (req->path == "/api/v1/logout") {
              if (session_id) sessions_.close(*session_id);
              resp = admin::answer(204, "");
              resp.headers.emplace_back("Set-Cookie", "bulwark_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
            } else {
              who = admin::Caller{current->name, current->read_only};
              started = Clock::now();
              resp = co_await async_on(sh_.hashing, &run_api, use_awaitable);
              metrics::observe("bulwark_admin_request_seconds", "",
                               std::chrono::duration<double>(Clock::now() - started).count());
              if (req->method != "GET" && req->method != "HEAD")
                logs::main().info("ADMIN {} from {}{}: {} {} -> {}", sanitize(who.name), ip,
                                  by_cookie ? " (console)" : "", req->method, sanitize(req->path), resp.status);
            }
          }
        }
        resp.close = !req->keep_alive;
        close = resp.close;
        out = resp.wire();
        if (!co_await write(*c, out)) close = true;
        handled = true;
        if (close) break;
      }
      if (close) break;
      waiting = !parser.in_request();
      if (!waiting && handled) c->set_deadline(cfg->timeouts.command);  // the next one began in this read
    }
    co_return;
  }

 private:
  Shared& sh_;
  std::chrono::steady_clock::time_point started_;
  Sessions sessions_;
};

}  // namespace

std::unique_ptr<Driver> make_admin_driver(Shared& shared) { return std::make_unique<AdminDriver>(shared); }

}  // namespace bulwark
