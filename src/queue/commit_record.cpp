#include "queue/commit_record.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/strings.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"
#include "queue/tokens.hpp"

namespace bulwark {

namespace {

constexpr std::string_view kMagic = "bulwark-commit 1\n";

std::string digest_of(std::string_view bytes) {
  unsigned char h[16];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, 0);
  return hex(std::string_view(reinterpret_cast<const char*>(h), sizeof h));
}

bool sync_parent(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

namespace {

// Size and digest of the open file `fd`, read from its start.
bool fd_digest(int fd, uint64_t& size, std::string& digest) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 16);
  unsigned char buf[64 * 1024];
  size = 0;
  bool ok = true;
  for (off_t at = 0;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    crypto_generichash_update(&st, buf, size_t(n));
    size += uint64_t(n);
    at += n;
  }
  unsigned char h[16];
  crypto_generichash_final(&st, h, sizeof h);
  digest = hex(std::string_view(reinterpret_cast<const char*>(h), sizeof h));
  return ok;
}

// Whether an fsync of one file commits every earlier metadata change of its filesystem
// as well: true for ext4 with a journal (one journal, its transactions committed in
// order) and XFS (one log, forced up to the file's last change). Not for ext4 without
// a journal (an fsync writes that inode only), btrfs (an fsync logs that inode only)
// or anything unknown: those take syncfs.
bool fsync_commits_all(int dir_fd, std::string& why) {
  struct statfs sf{};
  if (::fstatfs(dir_fd, &sf) != 0) return false;
  if (sf.f_type == 0x58465342) {  // XFS_SUPER_MAGIC
    why = "xfs";
    return true;
  }
  if (sf.f_type != 0xEF53) return false;  // EXT4_SUPER_MAGIC (ext2/3/4)
  struct stat st{};
  if (::fstat(dir_fd, &st) != 0) return false;
  char link[PATH_MAX];
  std::string dev = "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  ssize_t n = ::readlink(dev.c_str(), link, sizeof link - 1);
  if (n <= 0) return false;
  std::string name(link, size_t(n));
  name = name.substr(name.rfind('/') + 1);
  std::ifstream options("/proc/fs/ext4/" + name + "/options");
  for (std::string line; std::getline(options, line);)
    if (line.starts_with("data=")) {  // only a filesystem with a journal has a data mode
      why = "ext4 with a journal, " + line;
      return true;
    }
  return false;
}

}  // namespace

bool file_digest(const std::string& path, uint64_t& size, std::string& digest) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = fd_digest(fd, size, digest);
  ::close(fd);
  return ok;
}

CommitRecord::CommitRecord(const std::string& dir) {
  for (int i = 0; i < 2; ++i) {
    std::string path = dir + "/" + kPrefix + std::to_string(i);
    fd_[i] = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_[i] < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  }
  by_fsync_ = fsync_commits_all(fd_[0], how_);
  if (!by_fsync_) how_ = "syncfs";
}

CommitRecord::~CommitRecord() {
  for (int fd : fd_)
    if (fd >= 0) ::close(fd);
}

bool CommitRecord::write(const std::vector<CommitEntry>& entries) {
  int fd = fd_[next_++ % 2];  // first: cancel() then always blanks this batch's record
  std::string text(kMagic);
  // Each file's write-back is started, its digest read (from the page cache), and then
  // waited for, a window of files at a time: its blocks are allocated and its data on
  // the disk before the record changes below -- what the fsync of the record relies on.
  // (syncfs writes everything back itself, in no order: a file torn by a crash during
  // it fails its digest, and was not acknowledged.)
  bool write_back = by_fsync_;
  std::vector<int> started;
  auto wait_started = [&started, write_back] {
    bool ok = true;
    for (int f : started) {
      ok = ok && (!write_back || ::sync_file_range(f, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                                                  SYNC_FILE_RANGE_WAIT_AFTER) == 0);
      ::close(f);
    }
    started.clear();
    return ok;
  };
  for (auto& e : entries) {
    int f = ::open(e.tmp.c_str(), O_RDONLY | O_CLOEXEC);
    if (f < 0) {
      wait_started();
      return false;
    }
    started.push_back(f);
    uint64_t size = 0;
    std::string digest;
    if ((write_back && ::sync_file_range(f, 0, 0, SYNC_FILE_RANGE_WRITE) != 0) || !fd_digest(f, size, digest)) {
      wait_started();
      return false;
    }
    text += std::to_string(size) + " " + digest + " " + enc_token(e.tmp) + " " + enc_token(e.final_path) + "\n";
    if (started.size() >= 256 && !wait_started()) return false;
  }
  if (!wait_started()) return false;
  text += "end " + digest_of(text) + "\n";
  // Sealed when encryption is on: the names of mailboxes and of this host stay inside.
  if (const crypt::DataKey* key = crypt::data_key()) text = crypt::seal_records(*key, text);
  // Emptied first: the file's size changes, so its inode is part of the journal's
  // current transaction, which commit() then makes durable with everything before it.
  if (::ftruncate(fd, 0) != 0) return false;
  for (size_t at = 0; at < text.size();) {
    ssize_t n = ::pwrite(fd, text.data() + at, text.size() - at, off_t(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    at += size_t(n);
  }
  return true;
}

int CommitRecord::commit() {
  int fd = fd_[(next_ + 1) % 2];  // the record write() made: (next_ - 1) % 2
  return by_fsync_ ? ::fsync(fd) : ::syncfs(fd);
}

void CommitRecord::cancel() {
  if (next_ == 0) return;
  int r = ::ftruncate(fd_[(next_ - 1) % 2], 0);
  (void)r;  // the batch's files are removed next; a record without them renames nothing
}

CommitRecord::Replayed CommitRecord::replay() {
  Replayed r;
  for (int fd : fd_) {
    std::string why;
    auto file = crypt::read_text(fd, crypt::data_key(), &why);
    if (!file) {  // a sealed record whose check fails was torn while written: nothing committed
      if (why.find("key") != std::string::npos) throw std::runtime_error("the spool's commit record: " + why);
      continue;
    }
    const std::string& text = file->text;
    if (!text.starts_with(kMagic)) continue;
    size_t end = text.find("\nend ");
    if (end == std::string::npos) continue;
    std::string_view body = std::string_view(text).substr(0, end + 1);
    size_t eol = text.find('\n', end + 1);
    if (eol == std::string::npos || text.substr(end + 5, eol - end - 5) != digest_of(body)) continue;  // torn
    size_t pos = kMagic.size();
    while (pos < body.size()) {
      size_t nl = body.find('\n', pos);
      std::string_view line = body.substr(pos, nl - pos);
      pos = nl + 1;
      std::string_view f[4];
      size_t n = 0;
      for (size_t i = 0; i < line.size() && n < 4;) {
        size_t sp = line.find(' ', i);
        if (sp == std::string_view::npos) sp = line.size();
        f[n++] = line.substr(i, sp - i);
        i = sp + 1;
      }
      if (n != 4) continue;
      std::string tmp = dec_token(f[2]), final_path = dec_token(f[3]);
      if (::access(final_path.c_str(), F_OK) == 0 || ::access(tmp.c_str(), F_OK) != 0) continue;  // done, or gone
      uint64_t size = 0;
      std::string digest;
      if (file_digest(tmp, size, digest) && std::to_string(size) == f[0] && digest == f[1]) {
        // Acknowledged, perhaps: it must get into place, or the server must not start.
        std::error_code ec;
        if (::rename(tmp.c_str(), final_path.c_str()) != 0 && errno == ENOENT)
          std::filesystem::create_directories(std::filesystem::path(final_path).parent_path(), ec);
        if (::access(final_path.c_str(), F_OK) != 0 && ::rename(tmp.c_str(), final_path.c_str()) != 0)
          throw std::runtime_error("cannot move " + tmp + " to " + final_path + " (a committed message): " +
                                   std::strerror(errno));
        if (!sync_parent(final_path))
          throw std::runtime_error("cannot sync the directory of " + final_path + ": " + std::strerror(errno));
        ++r.renamed;
      } else {
        ::unlink(tmp.c_str());
        ++r.torn;
      }
    }
  }
  for (int fd : fd_)
    if (::ftruncate(fd, 0) != 0 || ::fsync(fd) != 0)
      throw std::runtime_error(std::string("cannot empty the spool's commit record: ") + std::strerror(errno));
  return r;
}

}  // namespace bulwark
