// policy/redis_limits.hpp: the per-IP limits and the POP-before-SMTP window shared by
// the nodes of a cluster through Redis (SPEC 16; docs/cluster.md).
//
// Every decision is still taken at once from the node's own memory (ClientLimits,
// PopLogins: no network wait on an I/O thread); this keeps that memory in step with
// the cluster's:
// - failed logins, unknown recipients and accepted messages are counted in Redis
//   (INCR with the window as expiry, in one script); the node whose count reaches a
//   limit sets the block key and PUBLISHes it, and every node imposes it;
// - open connections: each node PUBLISHes its own count per address when it changes,
//   and again every lease/3; a node's counts that are not renewed within `lease` (it
//   died) are forgotten;
// - a POP3/IMAP login PUBLISHes the window it opens;
// - greylisting: a first attempt and a pass PUBLISHed, so a retry through another node
//   passes as it would have here (a node started later may delay a sender once more).
// A node that (re)connects reads the blocks in force (SCAN) before it listens.
// Without Redis, each node counts alone (its memory always counts): logged, and the
// metric bulwark_cluster_redis_up is 0. Work for Redis waits in a bounded queue; what
// does not fit is dropped (and counted) rather than slowing a session.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "policy/greylist.hpp"
#include "policy/policy.hpp"

namespace bulwark {

struct RedisLimitSettings {
  std::string url, password_file, node;
  std::chrono::seconds lease{120};
};

class RedisLimits : public ClientLimits::Sharing {
 public:
  RedisLimits(RedisLimitSettings s, LimitSettings limits, ClientLimits& local, PopLogins& pop);
  ~RedisLimits() override;
  RedisLimits(const RedisLimits&) = delete;
  RedisLimits& operator=(const RedisLimits&) = delete;
  void update(LimitSettings limits);  // SIGHUP
  // Greylisting shared too (set once, before connections; null: none).
  void share_greylist(Greylist* g);
  // Change wake-ups of cluster mode's mail store (IDLE): `changed(folder)` is called
  // for every other node's change, `live(on)` while they can be heard. Set once.
  struct FolderFeed {
    std::function<void(int64_t)> changed;
    std::function<void(bool)> live;
  };
  void share_folders(FolderFeed feed);
  // Our own folder changes, to the other nodes.
  void folder_changed(int64_t folder);
  bool up() const { return up_; }

  void connections(const IpAddress& key, ClientLimits::Kind kind, uint32_t here) override;
  void message(const IpAddress& key) override;
  void unknown_recipient(const IpAddress& key) override;
  void auth_failure(const IpAddress& key, ClientLimits::Realm realm) override;

  static constexpr size_t kQueue = 10000;         // waiting operations
  static constexpr size_t kOthersTracked = 100000;  // addresses with other nodes' connections

 private:
  struct Op {
    enum Kind { conns, message, unknown, auth_fail, pop, grey, folder } kind;
    IpAddress key;
    int sub = 0;  // Kind of connection, or Realm
    uint32_t count = 0;
    std::string user;  // pop: the user; grey: the triplet's key
    int64_t first = 0;  // grey
  };
  void push(Op op);
  void writer_loop();
  void reader_loop();
  void state(bool up, const std::string& why);
  void on_message(const std::string& text);
  void sweep(std::chrono::steady_clock::time_point now);

  RedisLimitSettings s_;
  ClientLimits& local_;
  PopLogins& pop_;
  std::atomic<Greylist*> greylist_{nullptr};
  FolderFeed folders_;  // set before the threads look (share_folders, at start)
  std::mutex folders_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  LimitSettings limits_;
  // This node's open connections by address (what it republishes), by Kind.
  std::map<std::pair<IpAddress, int>, uint32_t> own_;
  // Other nodes' counts: (address, Kind) -> node -> (count, when heard).
  std::map<std::pair<IpAddress, int>, std::map<std::string, std::pair<uint32_t, std::chrono::steady_clock::time_point>>>
      others_;
  std::atomic<bool> stop_{false}, up_{false}, writer_up_{false}, reader_up_{false};
  std::atomic<uint64_t> dropped_{0};
  std::mutex state_mu_;
  std::chrono::steady_clock::time_point last_complaint_{};
  bool reported_up_ = false;
  std::thread writer_, reader_;
};

}  // namespace bulwark
