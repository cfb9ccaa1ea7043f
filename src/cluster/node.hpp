// cluster/node.hpp: this node in the cluster's `nodes` table -- a heartbeat every few
// seconds (name, version, address, sessions), and the table as `cluster status` shows it.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/pg.hpp"

namespace bulwark::cluster {

class Heartbeat {
 public:
  // Registers the node at once (throws pg::Error when PostgreSQL cannot be reached, or
  // std::runtime_error when another live node has the same name), then beats every
  // `every` on a thread of its own; `sessions` is read at each beat. `chores` (the
  // cluster's housekeeping, e.g. the blob purge) runs on the same thread and
  // connection at the first beat and every `chores_every` after.
  Heartbeat(const pg::Settings& s, std::string node, std::string version, std::string address,
            std::function<int64_t()> sessions, std::function<void(pg::Conn&)> chores = {},
            std::chrono::seconds every = std::chrono::seconds(5),
            std::chrono::seconds chores_every = std::chrono::seconds(600));
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

 private:
  void beat(pg::Conn& c);
  pg::Settings settings_;
  std::string node_, version_, address_;
  std::function<int64_t()> sessions_;
  std::function<void(pg::Conn&)> chores_;
  std::chrono::seconds every_, chores_every_;
  std::atomic<bool> stop_{false};
  int wake_fd_ = -1;
  std::thread thread_;
};

struct NodeStatus {
  std::string name, version, address;
  int64_t pid = 0, sessions = 0;
  double seconds_since_heartbeat = 0;
  std::string started;
  int64_t queued = 0;  // messages of the cluster's queue this node holds
};
std::vector<NodeStatus> nodes(pg::Conn& c);

}  // namespace bulwark::cluster
