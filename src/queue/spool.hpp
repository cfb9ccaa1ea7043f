// queue/: the durable spool. A message is acknowledged (250) only after its file --
// envelope and content in one -- is written, synced and renamed into queue/, and the
// directory synced. Commits of concurrent sessions are grouped: one committer thread
// writes every waiting message, then syncs the filesystem once for the whole batch.
// A large message arrives already streamed into a file of queue.tmp/ (core/body.hpp);
// its commit writes the header into the room left at the front and renames it.
// Loads read the envelope and delivery state only; content is read in chunks. A file
// that cannot be read as a spool file is moved to quarantine/, never dropped.
// Depends on core/, crypt/ (reads either form of a file) and smtp/ (for the
// Envelope/Transaction vocabulary).
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

#include "core/body.hpp"
#include "queue/commit_record.hpp"
#include "queue/direct.hpp"
#include "queue/ledger.hpp"
#include "crypt/file.hpp"
#include "smtp/session.hpp"

namespace bulwark {

struct StoredMessage {
  smtp::Envelope envelope;
  int64_t arrival = 0;            // unix seconds
  uint64_t content_offset = 0;    // where the content (Received: + message, CRLF) starts in the file
  uint64_t content_size = 0;
  bool eight_bit = false;         // the content has bytes >= 0x80
  std::vector<std::string> done;  // targets already delivered
  std::vector<std::pair<std::string, std::string>> failed;  // bounced targets and why
  std::vector<std::pair<std::string, std::string>> last_error;  // deferred targets: the latest reason
  bool warned = false;            // the delay notice went out
  int64_t next_attempt = 0;       // unix seconds; 0 = now
  uint32_t attempts = 0;          // remote delivery attempts so far
  // Not stored: header fields remote delivery sends in front of the content (the
  // DKIM-Signature fields made when it loads the message for an attempt).
  std::string prepend;

  bool finished(const std::string& target) const;  // delivered or bounced
  bool pending(bool local) const;  // a local (or a remote) target is not finished yet
};

// Each distinct target of a stored message and where it stands, as `queue list` and
// the admin API show it: delivered, bounced (reason: why), or waiting (reason: the
// latest deferral, if any).
struct TargetState {
  std::string target;
  bool local = false;
  std::string state, reason;
};
std::vector<TargetState> target_states(const StoredMessage& m);

// A load: the message, or why not.
struct Loaded {
  enum Status { ok, missing, damaged } status = missing;
  StoredMessage msg;  // ok; damaged: whatever could be read (often sender and recipients)
  std::string why;    // damaged: what is wrong, for the log and the sender
};

// What the spool holds, as delivery needs to know it at start.
struct QueueEntry {
  std::string id;
  bool local_pending = false, remote_pending = false;
  int64_t next_attempt = 0;
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

  // memory_limit: the bound on message bytes held in memory by all sessions together
  // (limits.message_memory; 0 = none). Bodies over it, and any over 256 KiB, stream
  // into queue.tmp/ as they arrive.
  explicit Spool(const std::string& data_dir, uint64_t memory_limit = 0);
  ~Spool();

  void start();
  void stop();  // finishes the batch in progress and every waiting commit

  // Cluster mode (before start()): the cluster's record of this queue, and this node's
  // name, which every new id carries ("<time><counter>-<node>": unique across nodes).
  void set_ledger(QueueLedger* ledger, const std::string& node);
  QueueLedger* ledger() const { return ledger_; }
  // Write-once local delivery (queue/direct.hpp), before start(): a message for local
  // recipients only goes straight into their mailboxes at its commit. Not with a ledger
  // (cluster mode commits such mail in PostgreSQL instead).
  void set_direct(DirectDelivery* d) { direct_ = d; }

  std::string new_id();
  const BodySpill* body_spill() const { return &spill_; }
  const MemoryBudget& memory() const { return budget_; }
  // Called from any thread; `done` runs on the committer thread after the fsync.
  void submit(std::shared_ptr<smtp::Transaction> tx, Done done);
  // Told about each committed message (the delivery side listens); the transaction
  // is handed over so delivery need not read back what was just written.
  using Committed = std::function<void(std::shared_ptr<const smtp::Transaction>)>;
  void on_committed(Committed f) { committed_cb_ = std::move(f); }
  // A message that reached this spool another way (cluster mode: committed in PostgreSQL
  // at the end of data, then adopt()ed): told to the same listener.
  void announce(std::shared_ptr<const smtp::Transaction> tx) {
    if (committed_cb_) committed_cb_(std::move(tx));
  }

  std::vector<std::string> list();  // ids in arrival order
  // Envelope and delivery state, no content. Reads the file: not on an I/O thread.
  Loaded load(const std::string& id);
  // Every queued message's state, once, at start; damaged files are quarantined on
  // the way and returned so the caller can tell their senders.
  struct Scan {
    std::vector<QueueEntry> queued;
    std::vector<Loaded> quarantined;
  };
  Scan scan();
  // Moves a damaged file (and its state) to <data_dir>/quarantine/, logged.
  void quarantine(const std::string& id, const std::string& why);

  // The content, read in chunks of at most `max` bytes: "" at the end, nothing on an
  // error (the file went away or is shorter than its header says).
  class Reader {
   public:
    Reader(const Spool& spool, const StoredMessage& m);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    std::optional<std::string> next(size_t max = 64 * 1024);
    uint64_t left() const { return size_ - pos_; }

   private:
    std::optional<crypt::PlainFile> file_;  // plain or sealed: crypt/file.hpp
    std::string id_;
    uint64_t offset_ = 0, size_ = 0, pos_ = 0;
  };
  // The whole content (small messages, the CLI), or nothing on an error.
  std::optional<std::string> read_content(const StoredMessage& m);
  // The content's header section (to the first empty line, at most 64 KiB): what a
  // report attaches.
  std::string read_headers(const StoredMessage& m);

  // Records delivered targets (appended to <id>.done and synced; `sync` false: not yet,
  // the caller calls sync_state() once for a batch of them).
  void record_delivered(const std::string& id, const std::vector<std::string>& targets, bool sync = true);
  // Makes the state appended without a sync durable (syncfs of the queue): 0 or -1.
  int sync_state();
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
  // A finished message goes, on the spool's removal thread: an unlink can wait for the
  // disk (ext4 `discard`), and delivery threads should not. Synchronous once the spool
  // stopped. `finished` false: only this node's copy goes (cluster mode: the message is
  // another node's now), the cluster's queue is not told.
  void remove_later(const std::string& id, bool finished = true);
  // Cluster mode: writes a message taken over from another node (its envelope header
  // as serialize_envelope_header makes it, its content and its state lines) into this
  // spool under its id, synced. False when it cannot be written.
  bool adopt(const std::string& id, const std::string& header, std::string_view content, const std::string& state);
  // At start-up: completes the renames of the last batches from their commit record
  // (queue/commit_record.hpp), then deletes half-written files left by a crash (never
  // acknowledged). From then on each batch takes one sync, not two.
  void recover();

  const std::string& queue_dir() const { return queue_dir_; }
  std::string path_of(const std::string& id) const { return queue_dir_ + "/" + id; }
  uint64_t batches() const { return batches_; }

 private:
  struct Job {
    std::shared_ptr<smtp::Transaction> tx;
    Done done;
    bool direct = false;              // written into its mailboxes: no spool file
    std::vector<DirectCopy> copies;   // ...these
  };
  void run();
  bool commit_batch(std::vector<Job>& jobs);
  bool write_job(const smtp::Transaction& tx, int64_t now, std::string& tmp_path);
  bool write_sealed(const smtp::Transaction& tx, const std::string& header, std::string& tmp_path);

  std::string data_dir_, queue_dir_, tmp_dir_, quarantine_dir_;
  MemoryBudget budget_;
  BodySpill spill_;
  int queue_fd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> pending_;
  bool stopping_ = false;
  std::thread thread_;
  Committed committed_cb_;
  uint64_t counter_ = 0;
  uint64_t batches_ = 0;
  QueueLedger* ledger_ = nullptr;
  DirectDelivery* direct_ = nullptr;
  std::unique_ptr<CommitRecord> record_;  // from recover() on; not in cluster mode
  bool mail_unsynced_ = false;            // renames into new/ the last sync did not cover
  std::string id_suffix_;
  // The ledger's answer to a record: the ids no longer ours lose their local copy.
  void drop_lost(const std::vector<std::string>& lost);
  std::mutex state_mu_;  // the <id>.done files
  std::mutex reap_mu_;
  std::condition_variable reap_cv_;
  std::deque<std::pair<std::string, bool>> reap_;
  bool reap_stopping_ = true;  // until start()
  std::thread reaper_;
  void reap();
};

// The envelope as header lines ("key value\n", no closing empty line).
std::string serialize_envelope_header(const smtp::Envelope& e, int64_t arrival, uint64_t content_size,
                                      bool eight_bit);
// The state line that records `target` as delivered (the <id>.done format).
std::string delivered_state_line(const std::string& target);
// The reverse: the envelope's fields into `m` (its id is not read: the caller sets
// it). False, with why, when a line is bad or a field missing.
bool parse_envelope_header(std::string_view head, StoredMessage& m, std::string& why);
// Delivery state lines (the <id>.done format) applied to `m`.
void apply_state_lines(std::string_view text, StoredMessage& m);

}  // namespace bulwark
