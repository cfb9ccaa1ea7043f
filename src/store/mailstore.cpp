#include "store/mailstore.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "core/body.hpp"
#include "core/strings.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"
#include "store/files.hpp"
#include "store/index_format.hpp"

namespace bulwark {
namespace fs = std::filesystem;

namespace store {
namespace {

using uidlist::entry_line;
using uidlist::number;
using uidlist::usable_flags;
using uidlist::usable_name;

template <class F>
bool each_entry(const std::string& dir, F f) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return false;
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n.empty() || n[0] == '.') continue;
    f(n);
  }
  ::closedir(d);
  return true;
}

// Size with CRLF line ends, for a file that does not say it in its name: read once,
// when it gets its UID, then kept in the index.
std::optional<std::pair<uint64_t, uint64_t>> measure(const std::string& path) {
  auto file = crypt::PlainFile::open(path);  // either form: the plaintext's sizes
  if (!file) return std::nullopt;
  uint64_t size = 0, lf = 0;
  char prev = 0;
  uint64_t crlf = 0;
  for (;;) {
    auto piece = file->next(65536);
    if (!piece || piece->empty()) break;
    for (char c : *piece) {
      if (c == '\n') {
        ++lf;
        if (prev == '\r') ++crlf;
      }
      prev = c;
    }
    size += piece->size();
  }
  return std::pair{size, size + lf - crlf};
}

}  // namespace

MaildirName parse_maildir_name(std::string_view name) {
  MaildirName m;
  size_t info = name.find(":2,");
  m.base = std::string(name.substr(0, info));
  if (info != std::string_view::npos) {
    m.flags = std::string(name.substr(info + 3));
    std::sort(m.flags.begin(), m.flags.end());
  }
  // ",S=123" and ",W=456" anywhere after the first dot-free part of the base
  std::string_view b = m.base;
  for (size_t pos = b.find(','); pos != std::string_view::npos; pos = b.find(',', pos + 1)) {
    if (pos + 2 >= b.size() || b[pos + 2] != '=') continue;
    size_t end = b.find(',', pos + 1);
    auto v = number(b.substr(pos + 3, end == std::string_view::npos ? end : end - pos - 3));
    if (b[pos + 1] == 'S') m.size = v;
    if (b[pos + 1] == 'W') m.vsize = v;
  }
  return m;
}

std::unique_ptr<Folder> Folder::open(const std::string& dir, std::string& error) {
  std::error_code ec;
  for (const char* sub : {"tmp", "new", "cur"}) {
    fs::create_directories(fs::path(dir) / sub, ec);
    if (ec) {
      error = "cannot create " + (fs::path(dir) / sub).string() + ": " + ec.message();
      return nullptr;
    }
  }
  std::unique_ptr<Folder> f(new Folder(dir));
  if (f->from_cache()) return f;
  // Maildir's rule: a file in tmp/ untouched for 36 hours is a write that never finished
  // (a crash in the middle of a delivery or an APPEND's *.part): removed.
  std::time_t stale = std::time(nullptr) - 36 * 3600;
  each_entry(dir + "/tmp", [&](std::string_view n) {
    std::string p = dir + "/tmp/" + std::string(n);
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_mtime < stale) ::unlink(p.c_str());
  });
  if (!f->sync(error)) return nullptr;
  return f;
}

Folder::Stamp Folder::stamp() const {
  Stamp s;
  struct stat st;
  auto ns = [](const struct stat& x) { return int64_t(x.st_mtim.tv_sec) * 1000000000 + x.st_mtim.tv_nsec; };
  if (::stat((dir_ + "/new").c_str(), &st) == 0) s.new_ns = ns(st);
  if (::stat((dir_ + "/cur").c_str(), &st) == 0) s.cur_ns = ns(st);
  if (::stat(index_path().c_str(), &st) == 0) {
    s.index_ns = ns(st);
    s.index_size = int64_t(st.st_size);
  }
  s.wall_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
                  .count();
  return s;
}

bool FolderStamp::settled() const {
  int64_t last = std::max({new_ns, cur_ns, index_ns});
  // Whole-second times (ext3, some network file systems): wait two seconds, as Dovecot
  // does; nanosecond times move with the kernel tick: a tenth of a second is ample.
  bool coarse = new_ns % 1'000'000'000 == 0 && cur_ns % 1'000'000'000 == 0 && index_ns % 1'000'000'000 == 0;
  return wall_ns - last > (coarse ? 2'000'000'000 : 100'000'000);
}

bool Folder::maybe_changed() const {
  // While the times of the last look are that recent, a change may hide in the same tick.
  return !stamp().same(seen_) || !seen_.settled();
}

bool Folder::sync(std::string& error) {
  FileLock lock(dir_ + "/bulwark-uidlist.lock");
  if (!lock.ok()) {
    error = "cannot lock " + dir_ + ": " + std::strerror(errno);
    return false;
  }
  return sync_locked(error, {});
}

bool Folder::sync_locked(std::string& error, const std::vector<std::string>& first) {
  // Taken before reading: a change made while this sync runs shows at the next check.
  Stamp before = stamp();
  // On failure the view stays as it was (moved aside, not copied: 100,000 entries).
  auto saved = std::make_tuple(uidvalidity_, next_uid_, modseq_, std::move(msgs_), index_lines_);
  auto restore = [&] { std::tie(uidvalidity_, next_uid_, modseq_, msgs_, index_lines_) = std::move(saved); };
  if (!read_index(error)) {
    restore();
    return false;
  }
  std::unordered_map<std::string, size_t> by_base;
  by_base.reserve(msgs_.size());
  for (size_t i = 0; i < msgs_.size(); ++i) by_base.emplace(msgs_[i].base, i);
  std::vector<bool> present(msgs_.size(), false);
  struct Found {
    MaildirName name;
    std::string file;
  };
  std::vector<Found> fresh;
  std::set<std::string> fresh_bases;
  std::vector<size_t> changed;
  auto take = [&](std::string file, MaildirName name) {
    if (!usable_name(name.base)) return;
    if (auto it = by_base.find(name.base); it != by_base.end()) {
      if (present[it->second]) return;  // a second file with the same base: ignored
      present[it->second] = true;
      msgs_[it->second].file = std::move(file);
      if (msgs_[it->second].flags != name.flags) {  // changed by another tool (mutt, a script)
        msgs_[it->second].flags = std::move(name.flags);
        changed.push_back(it->second);
      }
    } else if (fresh_bases.insert(name.base).second) {
      fresh.push_back({std::move(name), std::move(file)});
    }
  };
  bool ok = each_entry(dir_ + "/cur", [&](std::string_view n) { take("cur/" + std::string(n), parse_maildir_name(n)); });
  std::vector<std::string> arrived;
  ok = ok && each_entry(dir_ + "/new", [&](std::string_view n) { arrived.emplace_back(n); });
  if (!ok) {
    error = "cannot read " + dir_ + ": " + std::strerror(errno);
    restore();
    return false;
  }
  // Seen by a client now: new/ -> cur/ (no sync needed: should the rename be lost,
  // the file is in new/ again under the same base name, hence the same UID).
  for (auto& n : arrived) {
    MaildirName name = parse_maildir_name(n);
    std::string to = name.base + ":2," + name.flags;
    if (::rename((dir_ + "/new/" + n).c_str(), (dir_ + "/cur/" + to).c_str()) == 0) take("cur/" + to, name);
    else if (errno != ENOENT) take("new/" + n, name);
  }
  std::string lines;
  for (size_t i : changed)
    if (present[i]) {
      msgs_[i].modseq = ++modseq_;
      lines += entry_line(msgs_[i]);
    }
  for (size_t i = 0; i < msgs_.size(); ++i)
    if (!present[i]) {
      lines += "- " + std::to_string(msgs_[i].uid) + " " + std::to_string(++modseq_) + "\n";
      msgs_[i].uid = 0;
    }
  std::erase_if(msgs_, [](const Message& m) { return m.uid == 0; });
  // New files get UIDs in name order (the arrival time leads the name), those named in
  // `first` before them, in that order (a MULTIAPPEND's messages, in the order given).
  auto rank = [&](const Found& f) {
    auto it = std::find(first.begin(), first.end(), f.name.base);
    return it == first.end() ? first.size() : size_t(it - first.begin());
  };
  std::sort(fresh.begin(), fresh.end(), [&](const Found& a, const Found& b) {
    size_t ra = rank(a), rb = rank(b);
    return ra != rb ? ra < rb : a.name.base < b.name.base;
  });
  for (auto& f : fresh) {
    Message m;
    if (f.name.size && f.name.vsize) {
      m.size = *f.name.size;
      m.vsize = *f.name.vsize;
    } else if (auto measured = measure(dir_ + "/" + f.file)) {
      std::tie(m.size, m.vsize) = *measured;
    } else {
      continue;  // gone meanwhile
    }
    if (next_uid_ == UINT32_MAX) {
      error = dir_ + ": no UIDs left";
      restore();
      return false;
    }
    m.uid = next_uid_++;
    m.modseq = ++modseq_;
    m.base = std::move(f.name.base);
    m.flags = std::move(f.name.flags);
    m.file = std::move(f.file);
    lines += entry_line(m);
    msgs_.push_back(std::move(m));
  }
  if (lines.empty()) {
    seen_ = before;
    if (before.settled()) to_cache(before);  // nothing written: as it was when this sync began
    return true;
  }
  index_lines_ += uint64_t(std::count(lines.begin(), lines.end(), '\n'));
  bool written = index_lines_ > 2 * msgs_.size() + 1000 ? rewrite(error) : append(lines, error);
  if (!written) {
    restore();
    return false;
  }
  // Our own writes (renames, the index) changed the stamp too: the next check syncs
  // once more and finds nothing -- never misses what others did meanwhile.
  seen_ = before;
  return true;
}

int Folder::open_message(const Message& m) {
  int fd = ::open((dir_ + "/" + m.file).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT) return fd;
  // Renamed by another owner (a flag change, new/ -> cur/): find it by its base.
  std::string found;
  for (const char* sub : {"cur", "new"})
    each_entry(dir_ + "/" + sub, [&](std::string_view n) {
      if (found.empty() && parse_maildir_name(n).base == m.base) found = std::string(sub) + "/" + std::string(n);
    });
  if (found.empty()) return -1;
  return ::open((dir_ + "/" + found).c_str(), O_RDONLY | O_CLOEXEC);
}

std::optional<crypt::PlainFile> Folder::read_message(const Message& m, std::string* why) {
  int fd = open_message(m);
  if (fd < 0) {
    int e = errno;
    if (why) *why = e == ENOENT ? "it is gone" : std::strerror(e);
    errno = e;
    return std::nullopt;
  }
  return crypt::PlainFile::adopt(fd, why);
}

size_t Folder::remove(const std::vector<uint32_t>& uids, std::string& error, bool only_deleted) {
  FileLock lock(dir_ + "/bulwark-uidlist.lock");
  if (!lock.ok()) {
    error = "cannot lock " + dir_ + ": " + std::strerror(errno);
    return 0;
  }
  if (!catch_up(error)) return 0;  // removed meanwhile, or \Deleted taken away: as stored now
  std::set<uint32_t> wanted;
  for (uint32_t uid : uids)
    if (Message* m = find(uid); m && (!only_deleted || m->flags.find('T') != std::string::npos)) wanted.insert(uid);
  std::vector<uint32_t> gone;
  for (auto& m : msgs_) {
    if (!wanted.count(m.uid)) continue;
    if (::unlink((dir_ + "/" + m.file).c_str()) != 0 && errno == ENOENT) {
      // Renamed by another owner meanwhile (a flag change): remove it by its base.
      for (const char* sub : {"cur", "new"})
        each_entry(dir_ + "/" + sub, [&](std::string_view n) {
          if (parse_maildir_name(n).base == m.base) ::unlink((dir_ + "/" + sub + "/" + std::string(n)).c_str());
        });
    }
    gone.push_back(m.uid);
  }
  if (gone.empty()) return 0;
  if (!sync_dir(dir_ + "/cur") || !sync_dir(dir_ + "/new")) {
    error = "cannot sync " + dir_ + ": " + std::strerror(errno);
    return 0;
  }
  std::string lines;
  for (uint32_t uid : gone) lines += uidlist::removal_line(uid, ++modseq_);
  std::erase_if(msgs_, [&](const Message& m) { return wanted.count(m.uid) > 0; });
  index_lines_ += gone.size();
  // The files are gone for good now; should this write fail, the next sync finds
  // them missing and says so in the index itself.
  if (index_lines_ > 2 * msgs_.size() + 1000) rewrite(error);
  else append(lines, error);
  return gone.size();
}

bool Folder::update_flags(const std::vector<uint32_t>& uids, const FlagRule& next, std::string& error,
                          std::vector<std::pair<uint32_t, uint64_t>>* changed) {
  FileLock lock(dir_ + "/bulwark-uidlist.lock");
  if (!lock.ok()) {
    error = "cannot lock " + dir_ + ": " + std::strerror(errno);
    return false;
  }
  if (!catch_up(error)) return false;
  std::vector<std::pair<Message*, std::string>> changing;
  for (uint32_t uid : uids) {
    Message* m = find(uid);
    if (!m) continue;  // expunged meanwhile
    auto wanted = next(*m);
    if (!wanted) continue;
    std::string f = std::move(*wanted);
    std::sort(f.begin(), f.end());
    f.erase(std::unique(f.begin(), f.end()), f.end());
    if (!usable_flags(f.empty() ? "-" : f)) {
      error = "bad flags \"" + f + "\"";
      return false;
    }
    if (f == m->flags) continue;
    changing.emplace_back(m, f);
  }
  if (changing.empty()) return true;
  std::vector<Message> before;
  std::string lines;
  for (auto& [m, f] : changing) {
    before.push_back(*m);
    m->flags = f;
    m->modseq = ++modseq_;
    lines += entry_line(*m);
  }
  index_lines_ += changing.size();
  bool written = index_lines_ > 2 * msgs_.size() + 1000 ? rewrite(error) : append(lines, error);
  if (!written) {  // nothing changed: the view as it was
    for (size_t i = 0; i < changing.size(); ++i) *changing[i].first = before[i];
    modseq_ -= changing.size();
    index_lines_ -= changing.size();
    return false;
  }
  for (size_t i = 0; i < changing.size(); ++i) {
    Message* m = changing[i].first;
    std::string to = "cur/" + m->base + ":2," + m->flags;
    if (::rename((dir_ + "/" + m->file).c_str(), (dir_ + "/" + to).c_str()) != 0 && errno == ENOENT) {
      // renamed meanwhile by another owner (or another tool): find it by its base
      for (const char* sub : {"cur", "new"})
        each_entry(dir_ + "/" + sub, [&](std::string_view n) {
          if (parse_maildir_name(n).base == m->base)
            ::rename((dir_ + "/" + sub + "/" + std::string(n)).c_str(), (dir_ + "/" + to).c_str());
        });
    }
    if (changed) changed->emplace_back(m->uid, before[i].modseq);
    m->file = to;
  }
  return true;
}

bool Folder::set_flags(const std::vector<std::pair<uint32_t, std::string>>& changes, std::string& error) {
  std::unordered_map<uint32_t, const std::string*> by_uid;
  std::vector<uint32_t> uids;
  for (auto& [uid, flags] : changes) {
    by_uid[uid] = &flags;
    uids.push_back(uid);
  }
  return update_flags(uids, [&](const Message& m) -> std::optional<std::string> { return *by_uid.at(m.uid); },
                      error);
}

std::optional<std::vector<uint32_t>> Folder::take_in(const std::vector<std::string>& bases, std::string& error) {
  // A sync gives every new file its UID (ours among them, in name order).
  if (!sync(error)) return std::nullopt;
  return uids_of(bases, error);
}

std::optional<std::vector<uint32_t>> Folder::uids_of(const std::vector<std::string>& bases, std::string& error) {
  std::vector<uint32_t> uids;
  for (auto& b : bases) {
    auto it = std::find_if(msgs_.rbegin(), msgs_.rend(), [&](const Message& m) { return m.base == b; });
    if (it == msgs_.rend()) {
      error = "a new message vanished from " + dir_;
      return std::nullopt;
    }
    uids.push_back(it->uid);
  }
  return uids;
}


uint32_t Folder::recent_from() const {
  auto text = crypt::read_small(dir_ + "/bulwark-recent");
  auto n = text ? number(std::string_view(*text).substr(0, text->find('\n'))) : std::nullopt;
  return n && *n >= 1 && *n <= UINT32_MAX ? uint32_t(*n) : 1;
}

uint32_t Folder::claim_recent(uint32_t upto) {
  FileLock lock(dir_ + "/bulwark-uidlist.lock");
  uint32_t from = recent_from();
  if (!lock.ok() || upto <= from) return std::max(from, upto);  // nothing new to claim (or no lock: none)
  std::string tmp = dir_ + "/bulwark-recent.tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return upto;  // cannot record it: claim nothing rather than twice
  bool ok = write_all(fd, std::to_string(upto) + "\n");
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), (dir_ + "/bulwark-recent").c_str()) != 0) {
    ::unlink(tmp.c_str());
    return upto;
  }
  return from;
}

MailboxLocks::Lease& MailboxLocks::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    release();
    locks_ = o.locks_;
    key_ = std::move(o.key_);
    o.locks_ = nullptr;
  }
  return *this;
}

void MailboxLocks::Lease::release() {
  if (!locks_) return;
  std::lock_guard lk(locks_->mu_);
  locks_->held_.erase(key_);
  locks_ = nullptr;
}

MailboxLocks::Lease MailboxLocks::try_lock(const std::string& key) {
  std::lock_guard lk(mu_);
  if (!held_.insert(key).second) return {};
  return Lease(this, key);
}

}  // namespace store
}  // namespace bulwark
