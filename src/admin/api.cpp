// admin/api.cpp: see api.hpp. Every body is a JSON object whose fields are checked:
// a missing, mistyped or unknown field is a 400 naming it, before anything changes.
#include "admin/api.hpp"

#include "cluster/dkim_keys.hpp"
#include "cluster/settings.hpp"

#include <sodium.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "admin/audit.hpp"
#include "admin/encryption_cli.hpp"
#include "auth/password.hpp"
#include "core/address.hpp"
#include "core/metrics.hpp"
#include "core/strings.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"
#include "delivery/remote.hpp"
#include "directory/directory.hpp"
#include "dkim/dkim.hpp"
#include "queue/spool.hpp"
#include "store/folders.hpp"
#include "store/mailstore.hpp"
#include "store/pg_queue.hpp"

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
  if (json_too_deep(req.body)) throw Refused{400, "the body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels"};
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
  if (auto problem = password_refused(cfg, pw, address)) {
    sodium_memzero(pw.data(), pw.size());
    throw Refused{400, "password refused: " + *problem};
  }
}

json queue_entry(const StoredMessage& m, bool details) {
  json rcpts = json::array();
  for (auto& t : target_states(m)) {
    json e{{"address", t.target}, {"local", t.local}, {"state", t.state}};
    if (!t.reason.empty()) e["reason"] = t.reason;
    rcpts.push_back(e);
  }
  json j{{"id", m.envelope.id}, {"sender", m.envelope.sender}, {"size", m.content_size},
         {"arrival", iso_utc(m.arrival)}, {"attempts", m.attempts}, {"recipients", rcpts}};
  if (m.attempts) j["next_attempt"] = iso_utc(m.next_attempt);
  if (details) {
    j["client_ip"] = m.envelope.client_ip;
    j["helo"] = m.envelope.helo;
    j["tls"] = m.envelope.tls;
  }
  return j;
}

// A log's lines, newest first, filtered (SPEC 15): since (ISO 8601 prefix), ip,
// address (case-insensitive), at most `limit`. A plain log is read from its last
// 16 MiB; a sealed one whole (records cannot be entered in the middle).
// Paging: `before` (a time) with `skip` (how many of the matching lines stamped
// exactly that time the caller has already seen): lines share a millisecond under
// load, so a time alone would lose the rest of them. The answer's `next` is that
// query for the following page.
json log_lines(const Config& cfg, const std::string& name, const http::Request& req) {
  std::string since = req.param("since"), before = req.param("before"), ip = req.param("ip"),
              address = to_lower(req.param("address"));
  // ISO 8601 UTC times, whole or cut short ("2026-11-24T10"); the lines begin with one
  // (milliseconds included), so a comparison of the prefix orders them.
  auto time_param = [](std::string& t, const char* name) {
    if (!t.empty() && t.back() == 'Z') t.pop_back();
    static const std::string shape = "0000-00-00T00:00:00.000";
    bool ok = t.empty() || (t.size() >= 4 && t.size() <= shape.size());
    for (size_t i = 0; ok && i < t.size(); ++i) ok = shape[i] == '0' ? (t[i] >= '0' && t[i] <= '9') : t[i] == shape[i];
    // month, day, hour, minute, second in range, where given whole
    auto field = [&t](size_t at) { return t.size() >= at + 2 ? std::stoi(t.substr(at, 2)) : -1; };
    int mo = ok ? field(5) : 0, d = ok ? field(8) : 0, h = ok ? field(11) : 0, mi = ok ? field(14) : 0,
        se = ok ? field(17) : 0;
    ok = ok && mo != 0 && mo <= 12 && d != 0 && d <= 31 && h <= 23 && mi <= 59 && se <= 60 &&
         (t.size() < 5 || t.size() >= 7) && (t.size() < 8 || t.size() >= 10);
    if (!ok) throw Refused{400, std::string(name) + " must be an ISO 8601 time like 2026-11-24T10:00:00Z"};
  };
  time_param(since, "since");
  time_param(before, "before");
  size_t limit = 100;
  if (std::string l = req.param("limit"); !l.empty()) {
    if (l.size() > 5 || l.find_first_not_of("0123456789") != std::string::npos || std::stoul(l) == 0)
      throw Refused{400, "limit must be a number from 1 to 10000"};
    limit = std::min<size_t>(std::stoul(l), 10000);
  }
  const std::string skip_param = req.param("skip");
  bool with_skip = !skip_param.empty();
  size_t skip = 0;
  if (with_skip) {
    if (skip_param.size() > 5 || skip_param.find_first_not_of("0123456789") != std::string::npos || before.size() != 23)
      throw Refused{400, "skip must be a number up to 99999, with a whole before= time (to the millisecond)"};
    skip = std::stoul(skip_param);
  }
  const size_t skipped = skip;
  std::string path = (std::filesystem::path(cfg.server.log_dir) / (name + ".log")).string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  json lines = json::array();
  if (fd < 0) return json{{"lines", lines}};  // nothing logged yet
  struct stat st{};
  ::fstat(fd, &st);
  char magic[8] = {0};
  bool sealed = ::pread(fd, magic, sizeof magic, 0) == 8 && std::string_view(magic, 8) == crypt::kRecordsMagic;
  uint64_t from = !sealed && st.st_size > (16 << 20) ? uint64_t(st.st_size) - (16 << 20) : 0;
  std::string why;
  auto text = crypt::read_text(fd, crypt::data_key(), &why, from);
  ::close(fd);
  if (!text) throw Refused{500, "cannot read " + path + ": " + why};
  std::string_view all = text->text;
  if (from) all.remove_prefix(std::min(all.size(), all.find('\n') + 1));  // the cut line
  while (!all.empty() && lines.size() < limit) {
    if (all.back() == '\n') all.remove_suffix(1);
    size_t start = all.rfind('\n');
    std::string_view line = start == std::string_view::npos ? all : all.substr(start + 1);
    all = start == std::string_view::npos ? std::string_view() : all.substr(0, start + 1);
    if (!since.empty() && line.substr(0, since.size()) < since) break;  // older from here on
    // paging: newer than asked (with skip, the lines of that very time are still due)
    if (!before.empty() && (with_skip ? line.substr(0, before.size()) > before : line.substr(0, before.size()) >= before))
      continue;
    if (!ip.empty()) {
      size_t at = line.find(ip);
      bool whole = false;
      while (at != std::string_view::npos && !whole) {
        auto part = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == '.' || c == ':'; };
        size_t after = at + ip.size();
        // "from 127.0.0.1: user ..." -- a colon then a space ends an address too
        bool end = after >= line.size() || !part(line[after]) ||
                   (line[after] == ':' && (after + 1 >= line.size() || line[after + 1] == ' '));
        whole = (at == 0 || !part(line[at - 1])) && end;
        if (!whole) at = line.find(ip, at + 1);
      }
      if (!whole) continue;
    }
    if (!address.empty() && to_lower(std::string(line)).find(address) == std::string::npos) continue;
    if (skip > 0 && line.substr(0, before.size()) == before) {
      --skip;  // seen on the page before
      continue;
    }
    lines.push_back(std::string(line));
  }
  json out{{"lines", lines}};
  std::string oldest = lines.empty() ? "" : lines.back().get<std::string>().substr(0, 23);
  if (lines.size() == limit && oldest.size() == 23 && oldest[10] == 'T') {  // a line that starts with its time
    // The oldest line's time, and how many lines of this page carry it.
    size_t same = oldest == before ? skipped : 0;
    for (auto& l : lines) same += l.get<std::string>().compare(0, 23, oldest) == 0;
    out["next"] = "before=" + oldest + "Z&skip=" + std::to_string(same);
  }
  return out;
}

// /metrics: the registry, and the queue's size and age measured now.
http::Response metrics_page(Context& ctx) {
  std::vector<metrics::Sample> extra;
  auto ids = ctx.spool.list();  // arrival order
  int64_t oldest = 0;
  for (auto& id : ids) {
    Loaded l = ctx.spool.load(id);
    if (l.status != Loaded::ok) continue;
    oldest = std::max<int64_t>(0, int64_t(std::time(nullptr)) - l.msg.arrival);
    break;
  }
  extra.push_back({"bulwark_queue_messages", "", double(ids.size())});
  extra.push_back({"bulwark_queue_oldest_seconds", "", double(oldest)});
  if (ctx.cluster) {
    auto view = ctx.cluster();
    extra.push_back({"bulwark_cluster_postgres_up", "", view ? 1.0 : 0.0});
    if (view) {
      extra.push_back({"bulwark_cluster_postgres_roundtrip_seconds", "", view->postgres_seconds});
      double up = 0;
      for (auto& n : view->nodes) up += n.seconds_since_heartbeat < 15;
      extra.push_back({"bulwark_cluster_nodes_up", "", up});
    }
  }
  extra.push_back({"bulwark_uptime_seconds", "",
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.started).count()});
  http::Response r = answer(200, metrics::render(extra));
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  return r;
}

// Cluster mode: the cluster's queue (store/pg_queue.hpp), the same answers from any
// node; each message names the node holding it.
http::Response cluster_queue(const http::Request& req, const std::vector<std::string>& seg, Context& ctx) {
  const std::string& m = req.method;
  std::unique_ptr<pg::Conn> c;
  try {
    c = pg::Conn::open(cluster::pg_settings(ctx.cfg, "admin"));
  } catch (const pg::Error&) {
    throw Refused{503, "PostgreSQL cannot be reached from this node"};
  }
  const crypt::DataKey* key = crypt::data_key();
  auto entry = [](const store::ClusterQueued& q, bool details) {
    json j = queue_entry(q.msg, details);
    j["node"] = q.holder;
    return j;
  };
  if (seg.size() == 1 && m == "GET") {
    json list = json::array();
    for (auto& q : store::queue_list(*c, key)) list.push_back(entry(q, false));
    return answer(200, dump(json{{"messages", list}}));
  }
  if (seg.size() < 2) return error(405, "method not allowed here");
  auto q = store::queue_get(*c, key, seg[1]);
  if (!q) throw Refused{404, "no queued message " + sanitize(seg[1])};
  if (seg.size() == 2 && m == "GET") {
    json j = entry(*q, true);
    j["headers"] = store::queue_headers(*c, key, seg[1]);
    return answer(200, dump(j));
  }
  if (seg.size() == 2 && m == "DELETE") {
    store::queue_delete(*c, seg[1]);
    return answer(204, "");
  }
  if (seg.size() == 3 && seg[2] == "retry" && m == "POST") {
    store::queue_retry(*c, seg[1]);
    return answer(202, dump(json{{"id", seg[1]}, {"retry", "requested"}}));
  }
  return error(405, "method not allowed here");
}

http::Response route(const http::Request& req, const Caller& who, Context& ctx) {
  if (req.path == "/metrics") return req.method == "GET" ? metrics_page(ctx) : error(405, "GET /metrics");
  auto seg = segments(req.path);
  const std::string& m = req.method;
  bool change = m != "GET" && m != "HEAD";
  if (change && who.read_only) throw Refused{403, "a read-only administrator cannot change anything"};
  auto method_not_allowed = [] { return error(405, "method not allowed here"); };
  Directory& dir = ctx.dir;
  if (seg.empty()) throw Refused{404, "no such endpoint"};
  const std::string& what = seg[0];

  if (what == "cluster" && seg.size() == 1) {
    if (m != "GET") return method_not_allowed();
    if (!ctx.cluster) return answer(200, json{{"cluster", false}}.dump());
    auto view = ctx.cluster();
    if (!view) return error(503, "PostgreSQL cannot be reached from this node");
    json nodes = json::array();
    auto lease = double(ctx.cfg.cluster.lease.count());
    for (auto& n : view->nodes)
      nodes.push_back({{"name", n.name},
                       {"state", n.seconds_since_heartbeat < 15 ? "up" : n.seconds_since_heartbeat < lease ? "late" : "down"},
                       {"version", n.version},
                       {"address", n.address},
                       {"sessions", n.sessions},
                       {"queued", n.queued},
                       {"seconds_since_heartbeat", n.seconds_since_heartbeat},
                       {"started", n.started}});
    return answer(200, json{{"cluster", true},
                            {"node", view->node},
                            {"schema_version", view->schema},
                            {"postgres_roundtrip_seconds", view->postgres_seconds},
                            {"redis_up", view->redis_up},
                            {"nodes", nodes}}
                           .dump());
  }

  if (what == "status" && seg.size() == 1) {
    if (m != "GET") return method_not_allowed();
    auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - ctx.started);
    size_t queued = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(std::filesystem::path(ctx.cfg.server.data_dir) / "queue", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      queued += it->path().filename().string().find('.') == std::string::npos;
    json conns = json::object();
    for (auto& l : ctx.cfg.listeners)
      conns[l.service] = metrics::value("bulwark_connections", "service=\"" + l.service + "\"");
    json hours = json::array();
    int64_t accepted = 0, refused = 0;
    for (auto& [a, r] : metrics::per_hour(24)) {
      hours.push_back({{"accepted", a}, {"refused", r}});
      accepted += a;
      refused += r;
    }
    json j{{"uptime_seconds", up.count()},
           {"hostname", ctx.cfg.server.hostname},
           {"connections", conns},
           {"queue", {{"messages", queued}}},
           {"messages", {{"accepted_24h", accepted}, {"refused_24h", refused}, {"per_hour", hours}}},
           {"domains", dir.list_domains().size()},
           {"users", dir.list_users().size()}};
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
      std::string md = maildir_path(ctx.cfg.server.data_dir, a.lookup_key());
      if (store::note_mailbox_owner(md, a.lookup_key(), err)) store::ensure_default_folders(md, err);
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
  if (what == "delegations") {
    if (seg.size() == 1 && m == "GET") {
      json list = json::array();
      for (auto& [o, d] : dir.list_delegations()) list.push_back({{"owner", o}, {"user", d}});
      return answer(200, dump(json{{"delegations", list}}));
    }
    if (seg.size() == 1 && m == "POST") {
      json b = body_of(req, {"owner", "user"});
      Address o = address_of(text_field(b, "owner"), "owner"), u = address_of(text_field(b, "user"), "user");
      dir.add_delegation(o, u);
      return answer(201, dump(json{{"owner", o.lookup_key()}, {"user", u.lookup_key()}}));
    }
    if (seg.size() == 3 && m == "DELETE") {  // /delegations/{owner}/{user}
      dir.remove_delegation(address_of(seg[1], "owner"), address_of(seg[2], "user"));
      return answer(204, "");
    }
    return method_not_allowed();
  }
  if (what == "queue" && ctx.cfg.cluster.enabled) return cluster_queue(req, seg, ctx);
  if (what == "queue") {
    Spool& spool = ctx.spool;
    if (seg.size() == 1 && m == "GET") {
      json list = json::array();
      for (auto& id : spool.list()) {
        Loaded l = spool.load(id);
        if (l.status == Loaded::ok) list.push_back(queue_entry(l.msg, false));
        else if (l.status == Loaded::damaged) list.push_back({{"id", id}, {"damaged", l.why}});
      }
      return answer(200, dump(json{{"messages", list}}));
    }
    if (seg.size() < 2) return method_not_allowed();
    Loaded l = spool.load(seg[1]);  // refuses ids with '/' or '.'
    if (l.status == Loaded::missing) throw Refused{404, "no queued message " + sanitize(seg[1])};
    if (seg.size() == 2 && m == "GET") {
      if (l.status != Loaded::ok) return answer(200, dump(json{{"id", seg[1]}, {"damaged", l.why}}));
      json j = queue_entry(l.msg, true);
      j["headers"] = spool.read_headers(l.msg);
      return answer(200, dump(j));
    }
    if (seg.size() == 2 && m == "DELETE") {
      spool.remove(seg[1]);
      return answer(204, "");
    }
    if (seg.size() == 3 && seg[2] == "retry" && m == "POST") {
      RemoteDelivery::request_retry(ctx.cfg.server.data_dir, seg[1]);
      return answer(202, dump(json{{"id", seg[1]}, {"retry", "requested"}}));
    }
    return method_not_allowed();
  }
  if (what == "dkim") {
    const std::string& data = ctx.cfg.server.data_dir;
    if (seg.size() == 1 && m == "GET") {
      json list = json::array();
      for (auto& k : dkim::list_keys(data))
        list.push_back({{"domain", k.domain}, {"selector", k.selector}, {"algorithm", dkim::algorithm_name(k.algorithm)},
                        {"created", iso_utc(k.created)}, {"record", dkim::dns_record(k)}});
      return answer(200, dump(json{{"keys", list}}));
    }
    if (seg.size() == 1 && m == "POST") {
      json b = body_of(req, {"domain"}, {"selector", "algorithm"});
      std::string domain = to_lower(text_field(b, "domain"));
      if (!dir.is_local_domain(domain)) throw Refused{400, "domain " + sanitize(domain) + " is not a local domain"};
      std::string alg_name = b.contains("algorithm") ? text_field(b, "algorithm") : "rsa2048";
      if (alg_name != "rsa2048" && alg_name != "ed25519") throw Refused{400, "algorithm must be \"rsa2048\" or \"ed25519\""};
      auto alg = alg_name == "ed25519" ? dkim::Algorithm::ed25519 : dkim::Algorithm::rsa2048;
      std::string selector = b.contains("selector") ? text_field(b, "selector")
                                                    : dkim::default_selector(alg, int64_t(std::time(nullptr)));
      try {
        dkim::Key k = dkim::keygen(data, domain, selector, alg);
        if (ctx.cfg.cluster.enabled) {  // every node signs with it
          auto c = pg::Conn::open(cluster::pg_settings(ctx.cfg, "admin"));
          cluster::dkim_published(*c, data, domain, selector, crypt::data_key());
        }
        return answer(201, dump(json{{"domain", domain}, {"selector", selector}, {"algorithm", alg_name},
                                     {"record", dkim::dns_record(k)}}));
      } catch (const std::invalid_argument& e) {
        throw Refused{400, e.what()};
      } catch (const std::runtime_error& e) {
        throw Refused{409, e.what()};
      }
    }
    if (seg.size() == 3 && m == "DELETE") {
      try {
        dkim::remove_key(data, seg[1], seg[2]);
        if (ctx.cfg.cluster.enabled) {
          auto c = pg::Conn::open(cluster::pg_settings(ctx.cfg, "admin"));
          cluster::dkim_removed(*c, to_lower(seg[1]), seg[2]);
        }
      } catch (const std::exception& e) {
        throw Refused{404, e.what()};
      }
      return answer(204, "");
    }
    return method_not_allowed();
  }
  if (what == "logs" && seg.size() == 2 && (seg[1] == "mail" || seg[1] == "security")) {
    if (m != "GET") return method_not_allowed();
    return answer(200, dump(log_lines(ctx.cfg, seg[1], req)));
  }
  if (what == "settings" && seg.size() == 1) return settings(req, who, ctx);
  if (what == "audit" && seg.size() == 1) {
    if (m != "GET") return method_not_allowed();
    json list = json::array();
    for (auto& f : audit(ctx.cfg, &dir))
      list.push_back({{"severity", f.level == Finding::warning ? "warning" : "notice"}, {"text", f.text}});
    return answer(200, dump(json{{"findings", list}}));
  }
  throw Refused{404, "no such endpoint"};
}

}  // namespace

bool json_too_deep(std::string_view body, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

std::optional<http::Response> login_body(const http::Request& req, std::string& name, std::string& password) {
  try {
    json b = body_of(req, {"name", "password"});
    name = text_field(b, "name");
    password = text_field(b, "password");
    std::string& pw = b["password"].get_ref<std::string&>();
    sodium_memzero(pw.data(), pw.size());
    return std::nullopt;
  } catch (const Refused& r) {
    return error(r.status, r.msg);
  }
}

http::Response handle(const http::Request& req, const Caller& who, Context& ctx) {
  try {
    return route(req, who, ctx);
  } catch (const Refused& r) {
    return error(r.status, r.msg);
  } catch (const DirectoryError& e) {
    std::string msg = e.what();
    bool missing = msg.find("does not exist") != std::string::npos || msg.rfind("no ", 0) == 0;
    bool dup = msg.find("already") != std::string::npos;
    return error(missing ? 404 : dup ? 409 : 400, msg);
  } catch (const std::exception& e) {
    return error(500, std::string("internal error: ") + e.what());
  }
}

}  // namespace bulwark::admin
