// queue/ledger.hpp: the cluster's record of a node's queue (SPEC 16). In cluster mode the
// spool on a node's disk is that node's working copy; what each message is and where
// its delivery stands is also committed in PostgreSQL, under a lease that the node
// renews while it lives. When a node is gone, another takes the message over once the
// lease has passed (store/pg_queue.hpp). Without [cluster] there is no ledger.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace bulwark {

class Spool;

class QueueLedger {
 public:
  virtual ~QueueLedger() = default;
  // The spool's batch, durable on this disk, recorded in the cluster's queue under this
  // node's lease: all of it, or none (false; the sessions then answer 451). Runs on the
  // spool's committer thread, before any 250.
  virtual bool commit(Spool& spool, const std::vector<std::string>& ids) = 0;
  // State lines (the <id>.done format) for messages this node holds. Returns the ids
  // this node no longer holds -- the lease went to another node, or the message was
  // deleted: their lines are not recorded. Throws when the cluster cannot be reached.
  virtual std::vector<std::string> append(const std::vector<std::pair<std::string, std::string>>& lines) = 0;
  // Every target is finished: the message leaves the cluster's queue (when this node
  // holds it). False when that could not be recorded now.
  virtual bool finished(const std::string& id) = 0;
};

}  // namespace bulwark
