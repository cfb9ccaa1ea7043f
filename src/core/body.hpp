// core/: the bytes of one message, held in memory while small and streamed to a file
// when large or when memory is short, so that no client can make the server hold
// more than a fixed amount (DESIGN 13). Used by smtp/ (receiving), queue/ (commit)
// and delivery/. Depends on the standard library and POSIX files only.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace bulwark {

// Writes all of `data` to fd (retrying short writes and EINTR); false on error.
bool write_all(int fd, std::string_view data);
// fsync of a directory (after creating, renaming or unlinking in it); false on error.
bool sync_dir(const std::string& dir);

// A process-wide bound on message bytes held in memory.
class MemoryBudget {
 public:
  explicit MemoryBudget(uint64_t limit) : limit_(limit) {}
  bool take(uint64_t n);  // false (and nothing taken) when it would go over the limit
  void give(uint64_t n) { used_ -= n; }
  uint64_t used() const { return used_; }
  uint64_t limit() const { return limit_; }

 private:
  uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

// Where bodies go when they leave memory.
struct BodySpill {
  std::string dir;                   // on the spool's filesystem (its queue.tmp/)
  uint64_t threshold = 256 * 1024;   // a body larger than this always goes to a file
  MemoryBudget* budget = nullptr;    // bodies in memory count here; none = no global bound
};

class MessageBody {
 public:
  // A spilled body starts this far into its file: the spool writes its header (and
  // the Received: field) into the room before it at commit, then renames the file.
  static constexpr uint64_t kHeaderRoom = 64 * 1024;
  // This much of the start of a spilled body stays in memory too: the header checks
  // (From:, Date:, Message-ID:) read it.
  static constexpr size_t kHeadKept = 64 * 1024;

  MessageBody() = default;  // memory only, unbounded: locally made messages (reports), tests
  explicit MessageBody(const BodySpill* spill) : spill_(spill) {}
  explicit MessageBody(std::string text);  // a message made here (a report)
  ~MessageBody();
  MessageBody(MessageBody&& o) noexcept;
  MessageBody& operator=(MessageBody&& o) noexcept;
  MessageBody(const MessageBody&) = delete;
  MessageBody& operator=(const MessageBody&) = delete;

  void append(std::string_view bytes);
  // Ends the writing: flushes a spilled body's buffer. False when a write failed.
  bool finish();
  // Drops what was received (a refused message): memory and file go.
  void discard();

  uint64_t size() const { return size_; }
  bool eight_bit() const { return eight_bit_; }
  bool failed() const { return failed_; }  // a write to the spill file failed (disk full...)
  char last() const { return last_; }      // the last byte, '\0' when empty
  // The content is in a file, not in memory (also after the spool took the file over).
  bool spilled() const { return in_file_; }
  // The whole body when in memory, else its first kHeadKept bytes.
  std::string_view head() const { return spilled() ? std::string_view(head_) : std::string_view(mem_); }
  const std::string& memory() const { return mem_; }  // when !spilled()
  // When spilled: the open file (body at kHeaderRoom) and its path. After the spool
  // renamed it, release_file() closes it and keeps the destructor from unlinking it;
  // the content is then read from the spool.
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  void release_file();

 private:
  void spill();
  bool grow(uint64_t need);
  void write_out();
  void reset();

  const BodySpill* spill_ = nullptr;
  std::string mem_;
  uint64_t reserved_ = 0;  // taken from the budget for mem_
  std::string head_, buf_;  // spilled: kept head, bytes not yet written
  int fd_ = -1;
  bool in_file_ = false;
  std::string path_;
  uint64_t size_ = 0;
  bool eight_bit_ = false, failed_ = false;
  char last_ = '\0';
};

}  // namespace bulwark
