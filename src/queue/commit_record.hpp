// queue/commit_record.hpp: one journal commit per batch. The spool's committer writes a
// batch's files (queue files in queue.tmp/, write-once copies in the mailboxes' tmp/),
// has their data written to the disk, then writes this record -- every file's size and
// BLAKE2b digest, where it is and where it goes -- and makes it durable with ONE journal
// commit (an fsync of the record, which commits the files' metadata with it; syncfs on
// filesystems where an fsync commits one inode only); the 250 may then go out. The
// renames into queue/ and new/ follow without a sync of their own: the next batch's
// commit (or the kernel's own) makes them durable, and until then the record is what
// makes them certain: at start-up, replay() completes every rename the record lists
// whose file is whole (its digest matches) and removes the torn ones (a crash before the
// commit finished: never acknowledged).
//
// Two record files alternate (queue.tmp/.commit.0 and .1): batch N overwrites the record
// of batch N-2, whose renames batch N-1's commit made durable. A record carries a digest
// of itself (and is sealed when encryption is on), so one torn by a crash while it was
// written counts for nothing.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace bulwark {

struct CommitEntry {
  std::string tmp;         // written, whole
  std::string final_path;  // renamed here after the sync
};

class CommitRecord {
 public:
  static constexpr const char* kPrefix = ".commit.";  // the files' names: .commit.0, .commit.1
  // Opens (creates) the two record files in `dir` (the spool's queue.tmp/). Throws when
  // it cannot.
  explicit CommitRecord(const std::string& dir);
  ~CommitRecord();
  CommitRecord(const CommitRecord&) = delete;
  CommitRecord& operator=(const CommitRecord&) = delete;

  // The record of the next batch, its files' data written to the disk first (their
  // digests read back from the page cache); not yet durable. False, with errno, when it
  // cannot.
  bool write(const std::vector<CommitEntry>& entries);
  // Makes the record and everything before it on its filesystem durable: one journal
  // commit. An fsync of the record where that commits the whole journal (ext4 with a
  // journal, XFS), else syncfs. 0, or -1 with errno.
  int commit();
  // How commit() syncs, for the log: "ext4 with a journal, data=ordered", "syncfs".
  const std::string& how() const { return how_; }
  // The batch that write() recorded failed: its record no longer counts.
  void cancel();

  struct Replayed {
    size_t renamed = 0;  // moved into place now
    size_t torn = 0;     // not whole: removed
  };
  // At start-up, before anything else touches queue.tmp/ or the mailboxes: completes
  // what both records list, each rename made durable (its directory synced); then
  // empties the records.
  Replayed replay();

 private:
  int fd_[2] = {-1, -1};
  bool by_fsync_ = false;
  std::string how_;
  uint64_t next_ = 0;  // the next batch's number: its record is fd_[next_ % 2]
};

// Size and BLAKE2b-128 digest (hex) of a file's bytes; false when it cannot be read.
bool file_digest(const std::string& path, uint64_t& size, std::string& digest);

}  // namespace bulwark
