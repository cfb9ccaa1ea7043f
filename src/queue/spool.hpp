// queue/: the durable spool. A message is acknowledged (250) only after its file --
// envelope and content in one -- is written, synced and renamed into queue/, and the
// directory synced. Commits of concurrent sessions are grouped: one committer thread
// writes every waiting message, then syncs the filesystem once for the whole batch.
// Depends on core/ and smtp/ (for the Envelope/Transaction vocabulary).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "smtp/session.hpp"

namespace bulwark {

struct StoredMessage {
  smtp::Envelope envelope;
  int64_t arrival = 0;            // unix seconds
  std::string content;            // Received: + message, CRLF line ends
  std::vector<std::string> done;  // targets already delivered
  std::vector<std::pair<std::string, std::string>> failed;  // bounced targets and why
  std::vector<std::pair<std::string, std::string>> last_error;  // deferred targets: the latest reason
  bool warned = false;            // the delay notice went out
  int64_t next_attempt = 0;       // unix seconds; 0 = now
  uint32_t attempts = 0;          // remote delivery attempts so far

  bool finished(const std::string& target) const;  // delivered or bounced
};

// What happened to one target in a delivery attempt, for the state file.
struct TargetOutcome {
  enum Kind { delivered, failed, deferred } kind = delivered;
  std::string target;
  std::string reason;  // failed/deferred: the reply or why
};

class Spool {
 public:
  using Done = std::function<void(bool ok)>;

  explicit Spool(const std::string& data_dir);
  ~Spool();

  void start();
  void stop();  // finishes the batch in progress and every waiting commit

  std::string new_id();
  // Called from any thread; `done` runs on the committer thread after the fsync.
  void submit(std::shared_ptr<smtp::Transaction> tx, Done done);
  // Told about each committed message (the delivery side listens); the transaction
  // is handed over so delivery need not read back what was just written.
  using Committed = std::function<void(std::shared_ptr<const smtp::Transaction>)>;
  void on_committed(Committed f) { committed_cb_ = std::move(f); }

  std::vector<std::string> list();  // ids in arrival order
  std::optional<StoredMessage> load(const std::string& id);
  // Records delivered targets (appended to <id>.done and synced).
  void record_delivered(const std::string& id, const std::vector<std::string>& targets);
  // Remote delivery state: outcomes, the delay notice, the next attempt.
  struct StateRecord {
    std::string id;
    std::vector<TargetOutcome> outcomes;
    bool warned = false;
    int64_t next_attempt = -1;  // -1: no schedule change
    uint32_t attempts = 0;
  };
  // Appends every record (written, not synced: see spool.cpp).
  void record_many(const std::vector<StateRecord>& records);
  // Removes the message if every target is delivered or bounced; true if it did.
  // Local and remote delivery both call it; it is serialised here.
  bool finish_if_complete(const std::string& id);
  void remove(const std::string& id);
  // The same, on the spool's removal thread: an unlink can wait for the disk (ext4
  // `discard`), and delivery threads should not. Synchronous once the spool stopped.
  void remove_later(const std::string& id);
  // Deletes half-written files left by a crash (never acknowledged).
  void recover();

  const std::string& queue_dir() const { return queue_dir_; }
  uint64_t batches() const { return batches_; }

 private:
  struct Job {
    std::shared_ptr<smtp::Transaction> tx;
    Done done;
  };
  void run();
  bool commit_batch(std::vector<Job>& jobs);

  std::string data_dir_, queue_dir_, tmp_dir_;
  int queue_fd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> pending_;
  bool stopping_ = false;
  std::thread thread_;
  Committed committed_cb_;
  uint64_t counter_ = 0;
  uint64_t batches_ = 0;
  std::mutex state_mu_;  // the <id>.done files
  std::mutex reap_mu_;
  std::condition_variable reap_cv_;
  std::deque<std::string> reap_;
  bool reap_stopping_ = true;  // until start()
  std::thread reaper_;
  void reap();
};

std::string serialize_envelope_header(const smtp::Envelope& e, int64_t arrival, uint64_t content_size);
// Writes all of `data` to fd; false on error.
bool write_all(int fd, std::string_view data);

}  // namespace bulwark
