// policy/pg_greylist.cpp: see pg_greylist.hpp.
#include "policy/pg_greylist.hpp"

#include <algorithm>
#include <sstream>
#include <unordered_map>

#include "logging/logs.hpp"

namespace bulwark {

namespace {

// Array parameters in text form: keys are hex digits, numbers and t/f need no quoting.
template <class T, class F>
std::string array_of(const std::vector<T>& rows, F f) {
  std::string s = "{";
  for (size_t i = 0; i < rows.size(); ++i) s += (i ? "," : "") + f(rows[i]);
  return s + "}";
}

}  // namespace

void PgGreylist::journal(const std::string& key, int64_t first, int64_t last, bool passed) {
  std::lock_guard lk(mu_);
  if (queued_.size() >= kMaxQueued) {
    ++dropped_;
    return;
  }
  queued_.push_back({key, first, last, passed});
}

size_t PgGreylist::dropped() const {
  std::lock_guard lk(mu_);
  return dropped_;
}

void PgGreylist::beat(pg::Conn& c, Greylist& g) {
  std::vector<Row> rows;
  {
    std::lock_guard lk(mu_);
    rows.swap(queued_);
  }
  // One row per key (an upsert may not touch a row twice): the earliest first attempt,
  // the latest use, passed when any says so.
  {
    std::unordered_map<std::string, size_t> at;
    std::vector<Row> merged;
    for (auto& r : rows) {
      auto [it, fresh] = at.try_emplace(r.key, merged.size());
      if (fresh) {
        merged.push_back(r);
        continue;
      }
      Row& m = merged[it->second];
      if (r.first && (!m.first || r.first < m.first)) m.first = r.first;
      m.last = std::max(m.last, r.last);
      m.passed = m.passed || r.passed;
    }
    rows.swap(merged);
  }
  if (!rows.empty()) {
    try {
      // One upsert for the whole lot; a refresh (first = 0) keeps the stored first attempt.
      c.exec(
          "INSERT INTO greylist(key, first, last, passed, node, seq) "
          "SELECT k, CASE WHEN f = 0 THEN l ELSE f END, l, p, $5, nextval('greylist_seq') "
          "FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::boolean[]) AS u(k, f, l, p) "
          "ON CONFLICT (key) DO UPDATE SET "
          "  first = CASE WHEN greylist.passed OR EXCLUDED.first = 0 THEN greylist.first "
          "               ELSE LEAST(greylist.first, EXCLUDED.first) END, "
          "  last = GREATEST(greylist.last, EXCLUDED.last), passed = greylist.passed OR EXCLUDED.passed, "
          "  node = EXCLUDED.node, seq = EXCLUDED.seq",
          {array_of(rows, [](const Row& r) { return r.key; }),
           array_of(rows, [](const Row& r) { return std::to_string(r.first); }),
           array_of(rows, [](const Row& r) { return std::to_string(r.last); }),
           array_of(rows, [](const Row& r) { return std::string(r.passed ? "t" : "f"); }), node_});
    } catch (...) {
      std::lock_guard lk(mu_);  // back in front, for the next beat (still bounded)
      if (queued_.size() + rows.size() <= kMaxQueued) queued_.insert(queued_.begin(), rows.begin(), rows.end());
      else dropped_ += rows.size();
      throw;
    }
  }
  // What the other nodes changed since the last look (at start: every row, newest first).
  if (seen_ < 0) {
    auto top = c.exec("SELECT coalesce(max(seq), 0) FROM greylist");
    int64_t upto = top.integer(0, 0);
    auto r = c.exec("SELECT key, first, passed FROM greylist ORDER BY seq DESC LIMIT 1000000");
    for (int i = 0; i < r.rows(); ++i) g.learn(r.text(i, 0), r.integer(i, 1), r.text(i, 2) == "t");
    seen_ = upto;
    return;
  }
  for (;;) {
    auto r = c.exec("SELECT key, first, passed, seq FROM greylist WHERE seq > $1 AND node <> $2 ORDER BY seq LIMIT 10000",
                    {std::to_string(seen_), node_});
    for (int i = 0; i < r.rows(); ++i) {
      g.learn(r.text(i, 0), r.integer(i, 1), r.text(i, 2) == "t");
      seen_ = r.integer(i, 3);
    }
    if (r.rows() < 10000) break;
  }
}

int64_t purge_greylist(pg::Conn& c, int64_t expire_seconds, int64_t pending_seconds) {
  return c
      .exec("DELETE FROM greylist WHERE (passed AND last < extract(epoch from now())::bigint - $1) "
            "OR (NOT passed AND first < extract(epoch from now())::bigint - $2)",
            {std::to_string(expire_seconds), std::to_string(pending_seconds)})
      .affected();
}

int64_t import_greylist(pg::Conn& c, const std::string& file_text, const crypt::DataKey* key, int64_t now,
                        int64_t expire_seconds) {
  std::istringstream in(file_text);
  std::string line;
  int64_t n = 0;
  pg::Transaction t(c);
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    int64_t first = 0, last = 0;
    std::string plain;
    if (!(ls >> first >> last >> plain) || last + expire_seconds < now) continue;
    n += c.exec("INSERT INTO greylist(key, first, last, passed, node, seq) "
                "VALUES($1, $2, $3, true, 'import', nextval('greylist_seq')) ON CONFLICT (key) DO NOTHING",
                {Greylist::hash_key(plain, key), std::to_string(first), std::to_string(last)})
             .affected();
  }
  t.commit();
  return n;
}

}  // namespace bulwark
