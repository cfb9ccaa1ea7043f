// policy/pg_greylist.hpp: greylisting in cluster mode (SPEC 16) -- the triplets in
// PostgreSQL's `greylist` table (schema version 8), keyed by the hash Greylist makes
// (never an address). The table in each node's memory stays the one that answers RCPT;
// this class carries it to and from the database at the heartbeat:
// - journal(): first attempts, passes and daily refreshes, queued without blocking
//   (bounded: beyond 50,000 waiting rows the newest are dropped and counted -- a
//   triplet dropped costs a sender one more delay, never a message);
// - beat(): writes what is queued (one upsert, the earliest first attempt and the
//   latest use kept, a pass never undone), then reads the rows other nodes changed
//   since the last look (a sequence number, not a clock) into the node's table;
// - at start the node reads every live row (newest first, up to the table's bound).
// Redis, when there, carries the same events within milliseconds; this is what a node
// started later, or a node cut off from Redis, learns from.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "cluster/pg.hpp"
#include "policy/greylist.hpp"

namespace bulwark {

class PgGreylist {
 public:
  explicit PgGreylist(std::string node) : node_(std::move(node)) {}
  void journal(const std::string& key, int64_t first, int64_t last, bool passed);
  // Writes the queued rows, then learns the other nodes' changes. Throws pg::Error.
  void beat(pg::Conn& c, Greylist& g);
  size_t dropped() const;
  static constexpr size_t kMaxQueued = 50000;

 private:
  struct Row {
    std::string key;
    int64_t first, last;
    bool passed;
  };
  std::string node_;
  mutable std::mutex mu_;
  std::vector<Row> queued_;
  size_t dropped_ = 0;
  int64_t seen_ = -1;  // the highest change number learned; -1: nothing read yet
};

// Rows past their time go: passed ones unused for `expire`, attempts never retried
// within `pending_for`. Returns how many.
int64_t purge_greylist(pg::Conn& c, int64_t expire_seconds, int64_t pending_seconds);
// `cluster import`: an old node's passed triplets (its greylist file's "first last key"
// lines, keys of the plain form), hashed with `key` as this cluster's nodes hash them.
int64_t import_greylist(pg::Conn& c, const std::string& file_text, const crypt::DataKey* key, int64_t now,
                        int64_t expire_seconds);

}  // namespace bulwark
