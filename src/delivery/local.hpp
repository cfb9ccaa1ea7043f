// delivery/: taking spooled messages to where they go. LocalDelivery writes local
// recipients' copies into Maildir (tmp/ -> new/, synced) and removes the message from
// the spool once nothing is left for it. A copy is streamed from the spool file in
// chunks, so a large message never sits in memory. A delivery is done only when it
// is durable: a failed sync leaves the message queued (it may then arrive twice,
// never not at all). A mailbox that cannot be written is retried, and after
// delivery.bounce_after its sender gets a report. Depends on queue/, logging/.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "delivery/reports.hpp"
#include "queue/direct.hpp"
#include "queue/spool.hpp"
#include "store/mailstore.hpp"
#include "store/pg_store.hpp"

namespace bulwark {

struct LocalSettings {
  std::string data_dir, hostname;
  std::chrono::seconds retry{30};                 // a failed mailbox is tried again after this
  std::chrono::seconds bounce_after{5 * 86400};   // ...and given up (reported) after this
};

class LocalDelivery : public DirectDelivery {
 public:
  // `sync` makes a filesystem's writes durable (syncfs; injected so a test can make it
  // fail). Throws when <data_dir>/mail cannot be opened.
  using Sync = std::function<int(int fd)>;
  LocalDelivery(Spool& spool, Reporter& reporter, LocalSettings settings, Sync sync = nullptr);
  ~LocalDelivery();
  // Starts the thread; `queued` (from Spool::scan) is what was waiting at start.
  void start(const std::vector<QueueEntry>& queued = {});
  void stop();
  void update(LocalSettings settings);  // SIGHUP: retry and bounce_after
  // `tx`, when given, is the message just committed (saves reading it back).
  void enqueue(const std::string& id, std::shared_ptr<const smtp::Transaction> tx = nullptr);
  // For tests and shutdown: true when nothing is waiting or in progress.
  bool idle();

  // Write-once (queue/direct.hpp), called on the spool's committer thread: a message for
  // local recipients only, written into their Maildirs at its commit. Not in cluster mode.
  bool write(const smtp::Transaction& tx, std::vector<DirectCopy>& out) override;
  int sync_mailboxes(int spool_fd) override;
  void delivered(const smtp::Transaction& tx, const std::vector<DirectCopy>& copies) override;
  // Cluster mode: copies go into PostgreSQL's mail store instead of Maildir (before
  // start()). A copy is done when its transaction committed.
  // Cluster mode: mailboxes in PostgreSQL; `node` names this node's spool in each copy's
  // origin (a repeated delivery after a crash is found there, not made twice).
  void use_store(store::PgStore* s, std::string node) {
    pg_ = s;
    node_ = std::move(node);
  }

 private:
  struct Item {
    std::string id;
    std::shared_ptr<const smtp::Transaction> tx;
  };
  struct Copy;
  struct Msg;
  void run();
  void deliver_batch(std::vector<Item>& items);
  void deliver_batch_pg(std::vector<Msg>& msgs);
  bool prepare(Item& item, Msg& msg);
  bool write_copy(const Msg& msg, const std::string& target, Copy& copy, std::string& error);
  bool ensure_maildir(const std::string& dir, std::string& error);
  // `unsynced`: when given, delivered targets are recorded without a sync and it is set
  // (the caller syncs the state once for the batch).
  void settle(Msg& msg, const std::set<std::string>& ok, bool* unsynced = nullptr);
  void bounce(const Msg& msg, const std::vector<std::pair<std::string, std::string>>& targets);

  Spool& spool_;
  Reporter& reporter_;
  LocalSettings s_;
  Sync sync_;
  int data_fd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> retry_;
  std::mutex dirs_mu_;  // known_dirs_: this thread's and the spool committer's (write-once)
  std::set<std::string> known_dirs_;  // Maildirs seen complete; forgotten when one vanishes
  bool stopping_ = false, busy_ = false;
  std::thread thread_;
  std::atomic<uint64_t> counter_{0};
  store::PgStore* pg_ = nullptr;
  std::string node_;
};

}  // namespace bulwark
