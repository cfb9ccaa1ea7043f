// crypt/file.cpp: PlainFile, the read seam for both forms of a stored file.
#include "crypt/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/body.hpp"

namespace bulwark::crypt {

namespace {
std::optional<DataKey> g_key;

void set_why(std::string* why, std::string text) {
  if (why) *why = std::move(text);
}
}  // namespace

const DataKey* data_key() { return g_key ? &*g_key : nullptr; }
void set_data_key(DataKey key) { g_key = std::move(key); }
void clear_data_key() { g_key.reset(); }

std::optional<PlainFile> PlainFile::open(const std::string& path, std::string* why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    set_why(why, std::strerror(e));
    errno = e;
    return std::nullopt;
  }
  return adopt(fd, why);
}

namespace {
std::nullopt_t fail(std::string* why, std::string text, int error) {
  set_why(why, std::move(text));
  errno = error;
  return std::nullopt;
}
}  // namespace

std::optional<PlainFile> PlainFile::adopt(int fd, std::string* why) {
  PlainFile f(fd);
  struct stat st{};
  if (::fstat(fd, &st) != 0) return fail(why, std::strerror(errno), errno == ENOENT ? EIO : errno);
  // One read for the form and, for a small message (most of them), all of it: the
  // header and chunk 0 of a sealed one, the whole of a plain one.
  std::string start(size_t(std::min<uint64_t>(uint64_t(st.st_size), kHeaderSize + kDefaultChunk + kTagSize)), '\0');
  ssize_t n;
  do n = ::pread(fd, start.data(), start.size(), 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return fail(why, std::strerror(errno), errno == ENOENT ? EIO : errno);
  start.resize(size_t(n));
  if (!is_sealed(start)) {
    f.size_ = uint64_t(st.st_size);
    f.head_ = std::move(start);
    return f;
  }
  const DataKey* key = data_key();
  if (!key) return fail(why, "the file is encrypted and no key is loaded", ENOKEY);
  f.sealed_ = Reader::make(*key, fd, uint64_t(st.st_size), why, start);
  if (!f.sealed_) {
    errno = EBADMSG;
    return std::nullopt;
  }
  f.size_ = f.sealed_->size();
  return f;
}

PlainFile::PlainFile(PlainFile&& o) noexcept
    : fd_(o.fd_), size_(o.size_), pos_(o.pos_), head_(std::move(o.head_)), sealed_(std::move(o.sealed_)) {
  o.fd_ = -1;
}

PlainFile& PlainFile::operator=(PlainFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    size_ = o.size_;
    pos_ = o.pos_;
    head_ = std::move(o.head_);
    sealed_ = std::move(o.sealed_);
    o.fd_ = -1;
  }
  return *this;
}

PlainFile::~PlainFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> PlainFile::read(uint64_t offset, size_t length, std::string* why) {
  if (sealed_) return sealed_->read(offset, length, why);
  std::string out;
  if (offset >= size_) return out;
  if (offset + std::min<uint64_t>(length, size_ - offset) <= head_.size())
    return head_.substr(size_t(offset), size_t(std::min<uint64_t>(length, size_ - offset)));
  out.resize(size_t(std::min<uint64_t>(length, size_ - offset)));
  for (size_t got = 0; got < out.size();) {
    ssize_t n = ::pread(fd_, out.data() + got, out.size() - got, off_t(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(why, std::strerror(errno), errno == ENOENT ? EIO : errno);
    if (n == 0) return set_why(why, "the file is shorter than it was"), std::nullopt;
    got += size_t(n);
  }
  return out;
}

std::optional<std::string> PlainFile::next(size_t max, std::string* why) {
  auto r = read(pos_, max, why);
  if (r) pos_ += r->size();
  return r;
}

std::optional<std::string> read_small(const std::string& path, std::string* why) {
  auto f = PlainFile::open(path, why);
  if (!f) return std::nullopt;
  auto text = f->all(why);
  if (!text) errno = EBADMSG;
  return text;
}

bool replace_file(const std::string& path, std::string_view plain, const DataKey* key) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok;
  {
    FileWriter w(fd, key);
    ok = w.write(plain) && w.finish() && ::fsync(fd) == 0;
  }
  int e = errno;
  ::close(fd);
  std::string dir = path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
  if (ok && (::rename(tmp.c_str(), path.c_str()) != 0 || !sync_dir(dir.empty() ? "." : dir))) {
    ok = false;
    e = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    errno = e;
  }
  return ok;
}

FileWriter::FileWriter(int fd, const DataKey* key) : fd_(fd) {
  if (key) sealer_.emplace(*key, &out_);
}

bool FileWriter::flush() {
  if (ok_ && !out_.empty()) ok_ = write_all(fd_, out_);
  out_.clear();
  return ok_;
}

bool FileWriter::write(std::string_view plain) {
  if (!ok_) return false;
  plain_ += plain.size();
  if (sealer_) sealer_->write(plain);
  else out_.append(plain);
  return out_.size() < 64 * 1024 || flush();
}

bool FileWriter::finish() {
  if (sealer_) sealer_->finish();
  return flush();
}

}  // namespace bulwark::crypt
