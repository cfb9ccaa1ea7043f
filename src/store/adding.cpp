// store/: messages coming into a folder from IMAP -- APPEND (Folder::add) and
// COPY/MOVE (Folder::copy_to) -- written whole and synced before they get UIDs.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/body.hpp"
#include "store/files.hpp"
#include "store/mailstore.hpp"

namespace bulwark::store {

namespace {
// `time`: the seconds the name starts with (the arrival time, INTERNALDATE), 0 for now.
std::string unique_base(size_t size, size_t vsize, int64_t time = 0) {
  static std::atomic<uint64_t> counter{0};
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  if (time > 0) us = time * 1000000 + us % 1000000;
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  for (char* h = host; *h; ++h)
    if (*h == '/' || *h == ':' || *h == ' ') *h = '_';
  // Zero-padded, so that names sort in the order they were made (a sync gives UIDs in
  // name order, and COPYUID lists them in the order of the source).
  char head[96];
  std::snprintf(head, sizeof head, "%lld.M%06lldP%dQ%08llu.", (long long)(us / 1000000), (long long)(us % 1000000),
                int(::getpid()), (unsigned long long)++counter);
  return head + std::string(host) + ",S=" + std::to_string(size) + ",W=" + std::to_string(vsize);
}
}  // namespace

std::optional<uint32_t> Folder::add(std::string_view content, const std::string& flags, std::string& error,
                                    int64_t time) {
  // LF line ends on disk, whatever came (the Maildir convention).
  std::string text;
  text.reserve(content.size());
  uint64_t lines = 0;
  for (size_t i = 0; i < content.size(); ++i) {
    if (content[i] == '\r' && i + 1 < content.size() && content[i + 1] == '\n') continue;
    text += content[i];
    lines += content[i] == '\n';
  }
  std::string f = flags;
  std::sort(f.begin(), f.end());
  std::string base = unique_base(text.size(), text.size() + lines, time);
  std::string tmp = dir_ + "/tmp/" + base;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  if (ok) {
    crypt::FileWriter w(fd);  // sealed when encryption is on
    ok = w.write(text) && w.finish() && ::fsync(fd) == 0;
    ::close(fd);
  }
  std::string cur = dir_ + "/cur/" + base + ":2," + f;
  ok = ok && ::rename(tmp.c_str(), cur.c_str()) == 0 && sync_dir(dir_ + "/cur");
  if (!ok) {
    error = "cannot write a message into " + dir_ + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return std::nullopt;
  }
  auto uids = take_in({base}, error);
  if (!uids) return std::nullopt;
  return uids->front();
}

std::vector<std::pair<uint32_t, uint32_t>> Folder::copy_to(Folder& to, const std::vector<uint32_t>& uids,
                                                          std::string& error, const std::string& letter_map) {
  {  // the copies get the flags as stored now, not as this view last saw them
    FileLock lock(dir_ + "/bulwark-uidlist.lock");
    if (!lock.ok()) {
      error = "cannot lock " + dir_ + ": " + std::strerror(errno);
      return {};
    }
    if (!catch_up(error)) return {};
  }
  std::vector<std::pair<uint32_t, std::string>> made;  // source UID, base there
  for (uint32_t uid : uids) {
    Message* m = find(uid);
    if (!m) continue;
    // the copy keeps the arrival time (INTERNALDATE, RFC 9051 6.4.7)
    std::string_view name = std::string_view(m->file).substr(m->file.find('/') + 1);
    int64_t arrived = 0;
    for (size_t k = 0; k < name.size() && name[k] >= '0' && name[k] <= '9' && k < 12; ++k)
      arrived = arrived * 10 + (name[k] - '0');
    std::string base = unique_base(m->size, m->vsize, arrived);
    std::string flags;
    for (char f : m->flags) {
      if (f >= 'a' && f <= 'z' && !letter_map.empty()) f = size_t(f - 'a') < letter_map.size() ? letter_map[size_t(f - 'a')] : ' ';
      if (f != ' ') flags += f;
    }
    std::sort(flags.begin(), flags.end());
    std::string target = to.dir_ + "/cur/" + base + ":2," + flags;
    std::string source = dir_ + "/" + m->file;
    if (::link(source.c_str(), target.c_str()) != 0) {
      // another filesystem, or renamed meanwhile: copy the bytes
      int in = open_message(*m);
      std::string text;
      bool ok = in >= 0 && read_all(in, text);
      if (in >= 0) ::close(in);
      std::string tmp = to.dir_ + "/tmp/" + base;
      int out = ok ? ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
      ok = out >= 0 && write_all(out, text) && ::fsync(out) == 0;
      if (out >= 0) ::close(out);
      if (!ok || ::rename(tmp.c_str(), target.c_str()) != 0) {
        ::unlink(tmp.c_str());
        error = "cannot copy message " + std::to_string(uid) + " of " + dir_ + ": " + std::strerror(errno);
        break;
      }
    }
    made.emplace_back(uid, base);
  }
  std::vector<std::pair<uint32_t, uint32_t>> out;
  if (made.empty()) return out;
  if (!sync_dir(to.dir_ + "/cur")) {
    error = "cannot sync " + to.dir_ + ": " + std::strerror(errno);
    return out;
  }
  std::vector<std::string> bases;
  for (auto& [u, b] : made) bases.push_back(b);
  auto given = to.take_in(bases, error);
  if (!given) return out;
  for (size_t i = 0; i < made.size(); ++i) out.emplace_back(made[i].first, (*given)[i]);
  return out;
}

std::unique_ptr<Folder::Incoming> Folder::incoming(std::string& error) {
  std::unique_ptr<Incoming> in(new Incoming);
  in->dir_ = dir_;
  in->tmp_ = dir_ + "/tmp/" + unique_base(0, 0) + ".part";
  in->fd_ = ::open(in->tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (in->fd_ < 0) {
    error = "cannot write a message into " + dir_ + ": " + std::strerror(errno);
    return nullptr;
  }
  in->writer_ = std::make_unique<crypt::FileWriter>(in->fd_);  // sealed when encryption is on
  return in;
}

Folder::Incoming::~Incoming() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

bool Folder::Incoming::write(std::string_view data) {
  if (failed_ || fd_ < 0) return false;
  buf_.clear();
  buf_.reserve(data.size() + 1);
  for (char c : data) {  // CRLF -> LF; a CR that ends a piece waits for the next one
    if (cr_ && c != '\n') buf_ += '\r';
    cr_ = c == '\r';
    if (cr_) continue;
    buf_ += c;
    lines_ += c == '\n';
  }
  size_ += buf_.size();
  if (!writer_->write(buf_)) {
    failed_ = true;
    error_ = "cannot write a message into " + dir_ + ": " + std::strerror(errno);
  }
  return !failed_;
}

bool Folder::Incoming::complete(std::string& error) {
  if (cr_ && !failed_ && fd_ >= 0) {  // a lone CR at the very end is content
    cr_ = false;
    failed_ = !writer_->write("\r");
    ++size_;
  }
  if (!failed_ && fd_ >= 0) failed_ = !writer_->finish();
  if (failed_ || fd_ < 0 || ::fsync(fd_) != 0) {
    error = !error_.empty() ? error_ : "cannot write a message into " + dir_ + ": " + std::strerror(errno);
    return false;
  }
  ::close(fd_);
  fd_ = -1;
  return true;
}

std::optional<uint32_t> Folder::Incoming::finish(Folder& f, const std::string& flags, int64_t time,
                                                 std::string& error) {
  if (!complete(error)) return std::nullopt;
  auto uids = f.add_all({this}, {flags}, {time}, error);
  if (!uids) return std::nullopt;
  return uids->front();
}

std::optional<std::vector<uint32_t>> Folder::add_all(const std::vector<Incoming*>& in,
                                                    const std::vector<std::string>& flags,
                                                    const std::vector<int64_t>& times, std::string& error) {
  std::vector<std::string> bases, moved;  // moved: their paths in cur/
  {
    FileLock lock(dir_ + "/bulwark-uidlist.lock");  // no sync sees some of them and not the others
    if (!lock.ok()) {
      error = "cannot lock " + dir_ + ": " + std::strerror(errno);
      return std::nullopt;
    }
    for (size_t i = 0; i < in.size(); ++i) {
      std::string fl = flags[i];
      std::sort(fl.begin(), fl.end());
      std::string base = unique_base(in[i]->size_, in[i]->size_ + in[i]->lines_, times[i]);
      std::string cur = dir_ + "/cur/" + base + ":2," + fl;
      if (in[i]->fd_ >= 0 || ::rename(in[i]->tmp_.c_str(), cur.c_str()) != 0) {
        error = in[i]->fd_ >= 0 ? "a message was not complete"
                                : "cannot write a message into " + dir_ + ": " + std::strerror(errno);
        for (size_t k = 0; k < moved.size(); ++k) ::rename(moved[k].c_str(), in[k]->tmp_.c_str());  // none
        return std::nullopt;
      }
      moved.push_back(cur);
      bases.push_back(base);
    }
    if (!sync_dir(dir_ + "/cur")) {
      error = "cannot write a message into " + dir_ + ": " + std::strerror(errno);
      for (size_t k = 0; k < moved.size(); ++k) ::rename(moved[k].c_str(), in[k]->tmp_.c_str());
      return std::nullopt;
    }
    for (auto* i : in) i->tmp_.clear();  // the folder's now: not removed when the Incomings go
    // UIDs in the order given, while the lock is still held
    if (!sync_locked(error, bases)) return std::nullopt;
  }
  return uids_of(bases, error);
}

}  // namespace bulwark::store
