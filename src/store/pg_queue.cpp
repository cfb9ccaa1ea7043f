// store/pg_queue.cpp: see pg_queue.hpp.
#include "store/pg_queue.hpp"

#include <fmt/format.h>

#include "crypt/crypt.hpp"
#include "crypt/records.hpp"
#include "logging/logs.hpp"

namespace bulwark::store {

namespace {

std::string seal_text(const crypt::DataKey* key, const std::string& text) {
  return key ? crypt::seal(*key, text) : text;
}

// A stored envelope or piece of state, opened when sealed. Nothing when it cannot be.
std::optional<std::string> open_text(const crypt::DataKey* key, std::string data) {
  if (!crypt::is_sealed(data)) return data;
  if (!key) return std::nullopt;
  return crypt::open(*key, data);
}

std::string lease_seconds(std::chrono::seconds s) { return std::to_string(s.count()); }

void log_unreachable(const char* what, const std::exception& e) {
  static logs::CauseThrottle throttle;
  if (auto held = throttle.allow(what))
    logs::main().error("queue: {}: the cluster's queue (PostgreSQL) cannot be reached: {}{}", what, e.what(),
                       *held ? fmt::format(" ({} more since)", *held) : std::string());
}

// The state lines of a row, in the order they were written.
std::optional<std::string> state_of(pg::Conn& c, const crypt::DataKey* key, const std::string& id) {
  auto r = c.exec(
      "SELECT u.s FROM queue q, unnest(q.state) WITH ORDINALITY AS u(s, n) WHERE q.id = $1 ORDER BY u.n", {id});
  std::string out;
  for (int i = 0; i < r.rows(); ++i) {
    auto piece = open_text(key, r.bytes(i, 0));
    if (!piece) return std::nullopt;
    out += *piece;
  }
  return out;
}

}  // namespace

PgQueue::PgQueue(const pg::Settings& s, std::string node, std::chrono::seconds lease, const crypt::DataKey* key)
    : pool_(s, 4), node_(std::move(node)), lease_(lease), key_(key), blobs_(key) {}

void PgQueue::insert_in(pg::Conn& c, const std::string& id, const std::string& header, const std::string& blob,
                        int64_t arrival, uint64_t size, const std::string& state) {
  c.exec(
      "INSERT INTO queue(id, holder, envelope, sealed, blob, arrival, size, state) "
      "VALUES($1, $2, $3::bytea, $4, $5::bytea, $6, $7, ARRAY[$8::bytea])",
      {id, node_, pg::bytea(seal_text(key_, header)), key_ ? "t" : "f", pg::bytea(blob), std::to_string(arrival),
       std::to_string(size), pg::bytea(seal_text(key_, state))});
}

void PgQueue::writing(const std::string& id) {
  std::lock_guard lk(mu_);
  writing_.insert(id);
}

void PgQueue::written(const std::string& id, bool ok) {
  std::lock_guard lk(mu_);
  writing_.erase(id);
  if (ok) held_.insert(id);
}

bool PgQueue::commit(Spool& spool, const std::vector<std::string>& ids) {
  struct Row {
    std::string id, header, content;
    int64_t arrival = 0;
    uint64_t size = 0;
  };
  std::vector<Row> rows;
  for (auto& id : ids) {  // read back from the files just synced (the page cache has them)
    Loaded l = spool.load(id);
    std::optional<std::string> content;
    if (l.status == Loaded::ok) content = spool.read_content(l.msg);
    if (!content) {
      logs::main().error("queue: message {} cannot be read back for the cluster's queue", id);
      return false;
    }
    rows.push_back({id, serialize_envelope_header(l.msg.envelope, l.msg.arrival, l.msg.content_size, l.msg.eight_bit),
                    std::move(*content), l.msg.arrival, l.msg.content_size});
  }
  try {
    auto c = pool_.get();
    pg::in_transaction(*c, [&] {
      for (auto& r : rows) {
        std::string blob = blobs_.put(*c, r.content);
        c->exec(
            "INSERT INTO queue(id, holder, envelope, sealed, blob, arrival, size) "
            "VALUES($1, $2, $3::bytea, $4, $5::bytea, $6, $7)",
            {r.id, node_, pg::bytea(seal_text(key_, r.header)), key_ ? "t" : "f",
             pg::bytea(blob), std::to_string(r.arrival), std::to_string(r.size)});
      }
      return true;
    });
  } catch (const std::exception& e) {
    log_unreachable("messages not accepted", e);
    return false;
  }
  std::lock_guard lk(mu_);
  for (auto& id : ids) held_.insert(id);
  return true;
}

std::vector<std::string> PgQueue::append(const std::vector<std::pair<std::string, std::string>>& lines) {
  std::vector<std::string> lost;
  auto c = pool_.get();
  pg::in_transaction(*c, [&] {
    lost.clear();
    for (auto& [id, text] : lines) {
      auto r = c->exec("UPDATE queue SET state = array_append(state, $3::bytea) WHERE id = $1 AND holder = $2",
                       {id, node_, pg::bytea(seal_text(key_, text))});
      if (r.affected() == 0) lost.push_back(id);
    }
    return true;
  });
  std::lock_guard lk(mu_);
  for (auto& id : lost) held_.erase(id);
  return lost;
}

bool PgQueue::finished(const std::string& id) {
  {
    std::lock_guard lk(mu_);
    held_.erase(id);
  }
  try {
    auto c = pool_.get();
    c->exec("DELETE FROM queue WHERE id = $1 AND holder = $2", {id, node_});
    return true;
  } catch (const std::exception& e) {
    log_unreachable("a finished message stays in the cluster's queue for now", e);
    return false;
  }
}

bool PgQueue::write_back(pg::Conn& c, Spool& spool, const std::string& id, QueueEntry& entry) {
  auto r = c.exec("SELECT envelope, blob FROM queue WHERE id = $1 AND holder = $2", {id, node_});
  if (!r.rows()) return false;
  auto header = open_text(key_, r.bytes(0, 0));
  auto state = state_of(c, key_, id);
  std::string why;
  auto content = blobs_.get(c, r.bytes(0, 1), why);
  if (!header || !state) why = "its envelope or state is sealed under another key";
  if (!header || !state || !content) {
    logs::main().error("queue: message {} cannot be taken from the cluster's queue: {}", id, why);
    return false;
  }
  if (!spool.adopt(id, *header, *content, *state)) {
    logs::main().error("queue: message {} cannot be written into this node's spool", id);
    return false;
  }
  Loaded l = spool.load(id);
  if (l.status != Loaded::ok) return false;
  entry = {id, l.msg.pending(true), l.msg.pending(false), l.msg.next_attempt};
  return true;
}

std::vector<QueueEntry> PgQueue::reconcile(pg::Conn& c, Spool& spool, const std::vector<QueueEntry>& queued) {
  auto r = c.exec("SELECT id FROM queue WHERE holder = $1", {node_});
  std::set<std::string> mine;
  for (int i = 0; i < r.rows(); ++i) mine.insert(r.text(i, 0));
  std::vector<QueueEntry> out;
  size_t dropped = 0, added = 0, written = 0;
  std::set<std::string> files;
  for (auto& e : queued) {
    files.insert(e.id);
    if (mine.count(e.id)) {
      std::lock_guard lk(mu_);
      held_.insert(e.id);
      out.push_back(e);
      continue;
    }
    // An id without a node is from a single-machine spool: the cluster gets it unless it
    // has it already (`cluster import`).
    if (e.id.find('-') == std::string::npos && !c.exec("SELECT 1 FROM queue WHERE id = $1", {e.id}).rows()) {
      if (!commit(spool, {e.id})) throw std::runtime_error("the spool's message " + e.id + " cannot be added to the cluster's queue");
      out.push_back(e);
      ++added;
      continue;
    }
    spool.remove(e.id);
    ++dropped;
  }
  for (auto& id : mine) {
    if (files.count(id)) continue;
    QueueEntry e;
    if (!write_back(c, spool, id, e)) continue;
    std::lock_guard lk(mu_);
    held_.insert(id);
    out.push_back(e);
    ++written;
  }
  if (dropped || added || written)
    logs::main().info(
        "queue: at start, {} message(s) of this spool dropped (held by another node now, or finished), {} added to "
        "the cluster's queue, {} written back from it",
        dropped, added, written);
  return out;
}

PgQueue::Beat PgQueue::beat(pg::Conn& c, Spool& spool) {
  Beat out;
  // The lease is this node's heartbeat (the caller has just written it): nothing to
  // renew per message. What this node holds is compared with the table when the last
  // look is older than half a lease (a pause -- SIGSTOP, a cut link -- long enough for
  // another node to take its messages over) and every minute regardless (`queue
  // delete`); records and finishes find a lost message on their own meanwhile.
  auto now = std::chrono::steady_clock::now();
  bool full = last_beat_ == std::chrono::steady_clock::time_point{} || now - last_beat_ > lease_ / 2 ||
              now >= next_full_;
  last_beat_ = now;
  if (full) {
    next_full_ = now + std::chrono::minutes(1);
    reconcile_held(c, spool, out);
  }
  take_over(c, spool, out);
  auto retry = c.exec("UPDATE queue SET retry = false WHERE holder = $1 AND retry RETURNING id", {node_});
  for (int i = 0; i < retry.rows(); ++i) out.retry.push_back(retry.text(i, 0));
  return out;
}

void PgQueue::reconcile_held(pg::Conn& c, Spool& spool, Beat& out) {
  std::set<std::string> before;
  {
    std::lock_guard lk(mu_);
    before = held_;
  }
  auto r = c.exec("SELECT id FROM queue WHERE holder = $1", {node_});
  std::set<std::string> mine;
  for (int i = 0; i < r.rows(); ++i) mine.insert(r.text(i, 0));
  // Held before the look and not this node's now: another node has it, or it was deleted.
  for (auto& id : before) {
    if (mine.count(id)) continue;
    {
      std::lock_guard lk(mu_);
      if (!held_.erase(id)) continue;  // finished meanwhile
    }
    logs::main().warn("queue: message {} is no longer this node's (its lease passed to another node, or it was "
                      "deleted): this node's copy goes",
                      id);
    spool.remove_later(id, false);
  }
  // This node's but not known as held: written back when this spool has no file for it (a
  // crash between the commit and the file, a failed write-back, a finish not recorded).
  std::vector<std::string> orphans;
  for (auto& id : mine) {
    std::lock_guard lk(mu_);
    if (held_.count(id) || writing_.count(id)) continue;  // writing_: its file is being written
    if (spool.load(id).status != Loaded::missing) {
      held_.insert(id);  // committed just now, between the two looks
      continue;
    }
    orphans.push_back(id);
  }
  for (auto& id : orphans) take(c, spool, id, out);
}

void PgQueue::take(pg::Conn& c, Spool& spool, const std::string& id, Beat& out) {
  QueueEntry e;
  if (!write_back(c, spool, id, e)) return;
  if (!e.local_pending && !e.remote_pending) {  // finished, but its end was not recorded
    c.exec("DELETE FROM queue WHERE id = $1 AND holder = $2", {id, node_});
    spool.remove(id);
    return;
  }
  std::lock_guard lk(mu_);
  held_.insert(id);
  out.adopted.push_back(e);
}

void PgQueue::take_over(pg::Conn& c, Spool& spool, Beat& out) {
  // Messages of nodes whose heartbeat is older than the lease (and imported ones, held by
  // nobody): this node's now, each taken by one node only (SKIP LOCKED), 100 a beat.
  auto claimed = c.exec(
      "WITH dead AS (SELECT name FROM nodes WHERE heartbeat < now() - $2::bigint * interval '1 second' AND name <> $1), "
      "due AS (SELECT id, holder FROM queue WHERE holder IS NULL OR holder IN (SELECT name FROM dead) "
      "  ORDER BY arrival LIMIT 100 FOR UPDATE SKIP LOCKED) "
      "UPDATE queue q SET holder = $1, retry = false FROM due WHERE q.id = due.id RETURNING q.id, coalesce(due.holder, '')",
      {node_, lease_seconds(lease_)});
  for (int i = 0; i < claimed.rows(); ++i) {
    std::string id = claimed.text(i, 0), from = claimed.text(i, 1);
    logs::main().info("queue: took over message {} from {} (its lease had passed); delivering it now", id,
                      from.empty() ? std::string("an imported queue") : "node " + from);
    take(c, spool, id, out);
  }
}

// ---- the admin side ----

namespace {
std::optional<ClusterQueued> parse_row(pg::Conn& c, const crypt::DataKey* key, const pg::Result& r, int i) {
  ClusterQueued q;
  q.msg.envelope.id = r.text(i, 0);
  q.holder = r.text(i, 1);
  auto header = open_text(key, r.bytes(i, 3));
  auto state = state_of(c, key, q.msg.envelope.id);
  std::string why;
  if (!header || !state || !parse_envelope_header(*header, q.msg, why)) return std::nullopt;
  q.msg.envelope.id = r.text(i, 0);
  apply_state_lines(*state, q.msg);
  return q;
}
constexpr const char* kSelect =
    "SELECT id, coalesce(holder, ''), NULL, envelope FROM queue ";
}  // namespace

std::vector<ClusterQueued> queue_list(pg::Conn& c, const crypt::DataKey* key) {
  auto r = c.run(std::string(kSelect) + "ORDER BY arrival, id");
  std::vector<ClusterQueued> out;
  for (int i = 0; i < r.rows(); ++i)
    if (auto q = parse_row(c, key, r, i)) out.push_back(std::move(*q));
  return out;
}

std::optional<ClusterQueued> queue_get(pg::Conn& c, const crypt::DataKey* key, const std::string& id) {
  auto r = c.run(std::string(kSelect) + "WHERE id = $1", {id});
  if (!r.rows()) return std::nullopt;
  return parse_row(c, key, r, 0);
}

std::string queue_headers(pg::Conn& c, const crypt::DataKey* key, const std::string& id) {
  auto r = c.exec("SELECT blob FROM queue WHERE id = $1", {id});
  if (!r.rows()) return "";
  std::string why;
  auto content = PgBlobs(key).get(c, r.bytes(0, 0), why);
  if (!content) return "";
  size_t end = content->find("\r\n\r\n");
  return content->substr(0, std::min<size_t>(end == std::string::npos ? content->size() : end + 2, 64 * 1024));
}

int64_t queue_retry(pg::Conn& c, const std::string& id) {
  return c.exec("UPDATE queue SET retry = true WHERE $1 = '' OR id = $1", {id}).affected();
}

bool queue_delete(pg::Conn& c, const std::string& id) {
  return c.exec("DELETE FROM queue WHERE id = $1", {id}).affected() > 0;
}

bool queue_import(pg::Conn& c, const crypt::DataKey* key, Spool& spool, const std::string& id) {
  Loaded l = spool.load(id);
  if (l.status != Loaded::ok) return false;
  if (c.exec("SELECT 1 FROM queue WHERE id = $1", {id}).rows()) return false;
  auto content = spool.read_content(l.msg);
  if (!content) return false;
  // The state as one piece, rebuilt from what the file says.
  std::string state;
  auto state_text = crypt::read_text(spool.path_of(id) + ".done", crypt::data_key());
  if (state_text) state = state_text->text;
  PgBlobs blobs(key);
  pg::Transaction t(c);
  std::string blob = blobs.put(c, *content);
  std::string header = serialize_envelope_header(l.msg.envelope, l.msg.arrival, l.msg.content_size, l.msg.eight_bit);
  auto r = c.exec(
      "INSERT INTO queue(id, holder, envelope, sealed, blob, arrival, size, state) "
      "VALUES($1, NULL, $2::bytea, $3, $4::bytea, $5, $6, "
      "  CASE WHEN $7::boolean THEN ARRAY[$8::bytea] ELSE '{}'::bytea[] END) ON CONFLICT (id) DO NOTHING",
      {id, pg::bytea(seal_text(key, header)), key ? "t" : "f", pg::bytea(blob), std::to_string(l.msg.arrival),
       std::to_string(l.msg.content_size), state.empty() ? "f" : "t", pg::bytea(seal_text(key, state))});
  t.commit();
  return r.affected() > 0;
}

}  // namespace bulwark::store
