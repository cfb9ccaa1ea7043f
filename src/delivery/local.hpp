// delivery/: taking spooled messages to where they go. LocalDelivery writes local
// recipients' copies into Maildir (tmp/ -> new/, synced) and removes the message from
// the spool once nothing is left for it. Remote delivery comes with the outbound
// queue manager. Depends on queue/, logging/.
#pragma once
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "queue/spool.hpp"

namespace bulwark {

// <data_dir>/mail/<domain>/<local>/ with bytes outside [a-z0-9._+-] %-escaped, so
// no address can name a path outside the mail tree.
std::string maildir_path(const std::string& data_dir, const std::string& mailbox_key);

class LocalDelivery {
 public:
  LocalDelivery(Spool& spool, std::string data_dir, std::string hostname);
  ~LocalDelivery();
  void start();  // also picks up everything already in the spool
  void stop();
  // `tx`, when given, is the message just committed (saves reading it back).
  void enqueue(const std::string& id, std::shared_ptr<const smtp::Transaction> tx = nullptr);
  // For tests and shutdown: true when nothing is waiting or in progress.
  bool idle();

 private:
  struct Item {
    std::string id;
    std::shared_ptr<const smtp::Transaction> tx;
  };
  void run();
  void deliver_batch(std::vector<Item>& items);

  Spool& spool_;
  std::string data_dir_, hostname_;
  int data_fd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> retry_;
  std::set<std::string> known_dirs_;
  bool stopping_ = false, busy_ = false;
  std::thread thread_;
  uint64_t counter_ = 0;
};

}  // namespace bulwark
