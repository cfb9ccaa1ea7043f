#include "core/body.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace bulwark {

namespace {
constexpr size_t kWriteChunk = 64 * 1024;
std::atomic<uint64_t> spill_counter{0};

}  // namespace

bool sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(size_t(n));
  }
  return true;
}

bool MemoryBudget::take(uint64_t n) {
  uint64_t cur = used_.load();
  do {
    if (limit_ && cur + n > limit_) return false;
  } while (!used_.compare_exchange_weak(cur, cur + n));
  return true;
}

MessageBody::MessageBody(std::string text) : mem_(std::move(text)), size_(mem_.size()) {
  for (unsigned char ch : mem_)
    if (ch >= 0x80) {
      eight_bit_ = true;
      break;
    }
  if (!mem_.empty()) last_ = mem_.back();
}

MessageBody::~MessageBody() { reset(); }

MessageBody::MessageBody(MessageBody&& o) noexcept { *this = std::move(o); }

MessageBody& MessageBody::operator=(MessageBody&& o) noexcept {
  if (this == &o) return *this;
  reset();
  spill_ = o.spill_;
  mem_ = std::move(o.mem_);
  reserved_ = o.reserved_;
  head_ = std::move(o.head_);
  buf_ = std::move(o.buf_);
  fd_ = o.fd_;
  in_file_ = o.in_file_;
  path_ = std::move(o.path_);
  size_ = o.size_;
  eight_bit_ = o.eight_bit_;
  failed_ = o.failed_;
  last_ = o.last_;
  o.reserved_ = 0;
  o.fd_ = -1;
  o.in_file_ = false;
  o.path_.clear();
  o.mem_.clear();
  o.size_ = 0;
  return *this;
}

void MessageBody::reset() {
  if (reserved_ && spill_ && spill_->budget) spill_->budget->give(reserved_);
  reserved_ = 0;
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
  std::string().swap(mem_);
  std::string().swap(head_);
  std::string().swap(buf_);
}

void MessageBody::discard() {
  reset();
  size_ = 0;
  in_file_ = false;
}

void MessageBody::release_file() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  path_.clear();
}

// Reserves budget for mem_ to hold `need` bytes; false when the body must leave memory.
bool MessageBody::grow(uint64_t need) {
  if (need <= reserved_ || !spill_) return true;
  if (spill_->dir.empty()) {  // nowhere to go: stay in memory, counted while the budget allows
    uint64_t more = need - reserved_;
    if (spill_->budget && spill_->budget->take(more)) reserved_ += more;
    return true;
  }
  if (need > spill_->threshold) return false;
  // Steps that grow with the body (bounded by the threshold), so small messages take
  // one small step and large ones few.
  uint64_t want = std::min<uint64_t>(spill_->threshold, std::max<uint64_t>({need, reserved_ * 2, 8192}));
  uint64_t more = want - reserved_;
  if (spill_->budget && !spill_->budget->take(more)) {
    more = need - reserved_;
    if (!spill_->budget->take(more)) return false;
    want = need;
  }
  reserved_ = want;
  mem_.reserve(size_t(want));
  return true;
}

void MessageBody::spill() {
  path_ = spill_->dir + "/spill." + std::to_string(::getpid()) + "." + std::to_string(++spill_counter);
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd_ < 0 || ::lseek(fd_, off_t(kHeaderRoom), SEEK_SET) < 0) {
    failed_ = true;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    path_.clear();
    return;
  }
  in_file_ = true;
  head_ = mem_.substr(0, std::min(mem_.size(), kHeadKept));
  buf_ = std::move(mem_);
  std::string().swap(mem_);
  if (reserved_ && spill_->budget) spill_->budget->give(reserved_);
  reserved_ = 0;
  if (buf_.size() >= kWriteChunk) write_out();
}

void MessageBody::write_out() {
  if (!failed_ && !write_all(fd_, buf_)) failed_ = true;
  buf_.clear();
}

void MessageBody::append(std::string_view bytes) {
  if (bytes.empty() || failed_) return;
  for (unsigned char ch : bytes)
    if (ch >= 0x80) {
      eight_bit_ = true;
      break;
    }
  size_ += bytes.size();
  last_ = bytes.back();
  if (!in_file_) {
    if (grow(mem_.size() + bytes.size())) {
      mem_.append(bytes);
      return;
    }
    spill();
    if (failed_) return;
  }
  if (head_.size() < kHeadKept) head_.append(bytes.substr(0, kHeadKept - head_.size()));
  buf_.append(bytes);
  if (buf_.size() >= kWriteChunk) write_out();
}

bool MessageBody::finish() {
  if (in_file_ && fd_ >= 0 && !buf_.empty()) write_out();
  std::string().swap(buf_);
  return !failed_;
}

}  // namespace bulwark
