// cluster/dkim_keys.hpp: DKIM signing keys shared by the nodes (SPEC 16). PostgreSQL
// holds every key (the PEM sealed with the data key when encryption at rest is on) and
// the keys removed (so that a node that was down does not bring one back); each node
// keeps its files under <data_dir>/dkim/ in step: a key made on this node goes up, one
// made elsewhere comes down, a removed one goes, and where two nodes made the same
// selector at once, PostgreSQL's copy wins. The signer reads the files as on one machine.
#pragma once
#include <atomic>
#include <string>
#include <thread>

#include "cluster/pg.hpp"

namespace bulwark::crypt {
class DataKey;
}

namespace bulwark::cluster {

// After `dkim keygen` (CLI or API): the key up at once (and not removed any more).
void dkim_published(pg::Conn& c, const std::string& data_dir, const std::string& domain, const std::string& selector,
                    const crypt::DataKey* key);
// `cluster import`: the keys under `data_dir` that PostgreSQL lacks (and were not
// removed in the cluster) go up; returns how many.
size_t dkim_import(pg::Conn& c, const std::string& data_dir, const crypt::DataKey* key);
// After `dkim remove`: gone everywhere.
void dkim_removed(pg::Conn& c, const std::string& domain, const std::string& selector);
// One round of keeping this node's files in step; returns what changed here (for the log).
std::string dkim_sync(pg::Conn& c, const std::string& data_dir, const crypt::DataKey* key);

// A serving node's round every `every` on a thread of its own.
class DkimFollower {
 public:
  DkimFollower(pg::Settings s, std::string data_dir, const crypt::DataKey* key,
               std::chrono::seconds every = std::chrono::seconds(5));
  ~DkimFollower();

 private:
  pg::Settings s_;
  std::string data_dir_;
  const crypt::DataKey* key_;
  std::chrono::seconds every_;
  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;
  std::thread thread_;
};

}  // namespace bulwark::cluster
