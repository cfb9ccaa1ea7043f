// store/pg_queue.hpp: the outbound queue of cluster mode (SPEC 16) -- every queued
// message in PostgreSQL: its envelope (sealed when encryption at rest is on), its body in
// the blob store, and its delivery state as the lines of the spool's <id>.done (each
// piece sealed), under a lease held by one node.
//
// The node that accepted a message holds it; its lease is the node's heartbeat (the
// `nodes` row, written every lease/3 at most): renewing costs one row whatever the
// queue's size. Its spool on disk is the working copy its deliveries read. A result is
// recorded only by the holder (`holder = node` in the same UPDATE), so a node that lost
// its messages -- stopped, cut off, back late -- records nothing and drops its copies.
// When a node's heartbeat is older than the lease, any node takes its messages (FOR
// UPDATE SKIP LOCKED: each one once), writes them into its own spool and delivers them
// at once: at least once, never lost.
//
// The admin side (`queue list/show/retry/delete` and the API on any node) reads and
// changes these rows; a retry is a flag the holder picks up at its next heartbeat.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cluster/pg.hpp"
#include "queue/ledger.hpp"
#include "queue/spool.hpp"
#include "store/pg_blobs.hpp"

namespace bulwark::store {

class PgQueue : public QueueLedger {
 public:
  PgQueue(const pg::Settings& s, std::string node, std::chrono::seconds lease, const crypt::DataKey* key);

  bool commit(Spool& spool, const std::vector<std::string>& ids) override;
  std::vector<std::string> append(const std::vector<std::pair<std::string, std::string>>& lines) override;
  bool finished(const std::string& id) override;

  // At start, before delivery: the spool's messages against the cluster's queue. A file
  // this node holds stays; one another node holds, or that the cluster no longer has
  // (delivered elsewhere, deleted, or never acknowledged), goes; a message held by this
  // node with no file here is written back; a file of a single-machine spool (an id
  // without a node) that the cluster does not know is added. Returns what to deliver.
  std::vector<QueueEntry> reconcile(pg::Conn& c, Spool& spool, const std::vector<QueueEntry>& queued);

  // One heartbeat (after the node's own row was written): drop what this node lost,
  // write back what it holds without a file, take over the messages of nodes whose
  // heartbeat is older than the lease, and pick up retries.
  struct Beat {
    std::vector<QueueEntry> adopted;  // written into this spool: deliver them now
    std::vector<std::string> retry;   // `queue retry` for messages this node holds
  };
  Beat beat(pg::Conn& c, Spool& spool);

  // The end of data (mixed local and remote recipients): the message's row, in the
  // caller's transaction that also makes its local copies; `state` records those as
  // delivered. Call writing(id) first (a heartbeat must not take the committed row for
  // one without a file while the node writes its spool file) and written(id, ok) after
  // the file (ok: held from now on) or a failed transaction (not ok; a committed row
  // then gets its file back from the next full look).
  void insert_in(pg::Conn& c, const std::string& id, const std::string& header, const std::string& blob,
                 int64_t arrival, uint64_t size, const std::string& state);
  void writing(const std::string& id);
  void written(const std::string& id, bool ok);

 private:
  bool write_back(pg::Conn& c, Spool& spool, const std::string& id, QueueEntry& entry);
  void reconcile_held(pg::Conn& c, Spool& spool, Beat& out);
  void take(pg::Conn& c, Spool& spool, const std::string& id, Beat& out);
  void take_over(pg::Conn& c, Spool& spool, Beat& out);
  std::chrono::steady_clock::time_point last_beat_{}, next_full_{};  // the heartbeat thread's
  pg::Pool pool_;
  std::string node_;
  std::chrono::seconds lease_;
  const crypt::DataKey* key_;
  PgBlobs blobs_;
  mutable std::mutex mu_;
  std::set<std::string> held_;  // committed or adopted by this node, lease not lost
  std::set<std::string> writing_;  // committed at the end of data, spool file not yet written
};

// The cluster's queue as the admin commands and the API see it, from any node.
struct ClusterQueued {
  StoredMessage msg;
  std::string holder;  // the node holding the lease ("" = none yet)
};
std::vector<ClusterQueued> queue_list(pg::Conn& c, const crypt::DataKey* key);
std::optional<ClusterQueued> queue_get(pg::Conn& c, const crypt::DataKey* key, const std::string& id);
// The message's header section (what `queue show` prints), from its body.
std::string queue_headers(pg::Conn& c, const crypt::DataKey* key, const std::string& id);
// `queue retry` ("" = every message): the holder retries at its next heartbeat. Returns
// how many were marked.
int64_t queue_retry(pg::Conn& c, const std::string& id);
// `queue delete`: the row goes; its holder drops its copy at its next heartbeat.
bool queue_delete(pg::Conn& c, const std::string& id);
// `cluster import`: a single-machine spool's message, held by nobody (the first node to
// beat takes it). False when the cluster has it already.
bool queue_import(pg::Conn& c, const crypt::DataKey* key, Spool& spool, const std::string& id);

}  // namespace bulwark::store
