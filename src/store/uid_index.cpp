// store/: the folder's UID index on disk (format in index_format.hpp) -- read whole,
// caught up with what other owners appended since (under the folder's lock, before
// any change is made: a change is always made to the state as stored, never to a
// view that may be stale), appended to, rewritten.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <unordered_map>
#include <unordered_set>

#include "core/body.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"
#include "store/files.hpp"
#include "store/index_format.hpp"

namespace bulwark::store {

namespace uidlist {

std::optional<uint64_t> number(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t sp = line.find(' ', start);
    out.push_back(line.substr(start, sp == std::string_view::npos ? sp : sp - start));
    if (sp == std::string_view::npos) break;
    start = sp + 1;
  }
  return out;
}

bool usable_name(std::string_view n) {
  if (n.empty() || n[0] == '.' || n.size() > 255) return false;
  for (unsigned char c : n)
    if (c <= ' ' || c == 0x7f || c == '/') return false;
  return true;
}

bool usable_flags(std::string_view f) {
  if (f == "-") return true;
  if (f.empty() || f.size() > 26 + 5) return false;
  for (char c : f)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  return true;
}

std::string entry_line(const Message& m) {
  return "+ " + std::to_string(m.uid) + " " + std::to_string(m.modseq) + " " + std::to_string(m.size) + " " +
         std::to_string(m.vsize) + " " + (m.flags.empty() ? std::string("-") : m.flags) + " " + m.base + "\n";
}

std::string removal_line(uint32_t uid, uint64_t modseq) {
  return "- " + std::to_string(uid) + " " + std::to_string(modseq) + "\n";
}

}  // namespace uidlist

using namespace uidlist;

Message* Folder::find(uint32_t uid) {
  auto it = std::lower_bound(msgs_.begin(), msgs_.end(), uid, [](const Message& m, uint32_t u) { return m.uid < u; });
  return it != msgs_.end() && it->uid == uid ? &*it : nullptr;
}

Folder::Applied Folder::apply_index(std::string_view text, bool header) {
  // msgs_ is by UID on entry; a line changes a message in place, new ones are
  // collected and removals marked, then both are merged in once.
  std::unordered_map<uint32_t, size_t> added_at;
  std::vector<Message> added;
  std::unordered_set<uint32_t> removed;
  Applied r;
  bool have_header = !header;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) break;  // torn: never synced, never shown
    auto f = fields(text.substr(pos, nl - pos));
    bool parsed = false;
    if (!have_header) {
      if (f.size() == 5 && f[0] == "bulwark-uidlist" && f[1] == "1") {
        auto v = number(f[2]), n = number(f[3]), ms = number(f[4]);
        if (v && n && ms && *v && *v <= UINT32_MAX && *n && *n <= UINT32_MAX) {
          uidvalidity_ = uint32_t(*v);
          next_uid_ = uint32_t(*n);
          modseq_ = *ms;
          have_header = parsed = true;
        }
      }
      if (!parsed) return r;  // r.header false: not an index
    } else if (f.size() == 7 && f[0] == "+") {
      auto uid = number(f[1]), ms = number(f[2]), size = number(f[3]), vsize = number(f[4]);
      if (uid && ms && size && vsize && *uid && *uid < UINT32_MAX && usable_flags(f[5]) && usable_name(f[6])) {
        Message m;
        m.uid = uint32_t(*uid);
        m.modseq = *ms;
        m.size = *size;
        m.vsize = *vsize;
        if (f[5] != "-") m.flags = std::string(f[5]);
        m.base = std::string(f[6]);
        // Where the owner that wrote this line left the file; a file moved since is
        // found by its base (open_message).
        m.file = "cur/" + m.base + ":2," + m.flags;
        if (Message* old = find(m.uid)) *old = std::move(m);
        else if (auto it = added_at.find(m.uid); it != added_at.end()) added[it->second] = std::move(m);
        else {
          added_at.emplace(m.uid, added.size());
          added.push_back(std::move(m));
        }
        parsed = true;
      }
    } else if (f.size() == 3 && f[0] == "-") {
      auto uid = number(f[1]), ms = number(f[2]);
      if (uid && ms && *uid && *uid < UINT32_MAX) {
        removed.insert(uint32_t(*uid));
        parsed = true;
      }
    }
    if (!parsed) break;  // damaged from here on: a write that never completed
    if (pos > 0 || !header) {
      ++index_lines_;
      next_uid_ = uint32_t(std::max<uint64_t>(next_uid_, *number(f[1]) + 1));
      modseq_ = std::max<uint64_t>(modseq_, *number(f[2]));
    }
    pos = nl + 1;
    r.good = pos;
  }
  r.header = have_header;
  if (!removed.empty()) {
    std::erase_if(msgs_, [&](const Message& m) { return removed.count(m.uid) > 0; });
    std::erase_if(added, [&](const Message& m) { return removed.count(m.uid) > 0; });
  }
  if (!added.empty()) {
    bool in_order = msgs_.empty() || added.front().uid > msgs_.back().uid;
    for (auto& m : added) msgs_.push_back(std::move(m));
    in_order = in_order && std::is_sorted(msgs_.end() - std::ptrdiff_t(added.size()), msgs_.end(),
                                          [](const Message& a, const Message& b) { return a.uid < b.uid; });
    if (!in_order)
      std::sort(msgs_.begin(), msgs_.end(), [](const Message& a, const Message& b) { return a.uid < b.uid; });
  }
  return r;
}

namespace {
// The first bytes of an index: they never change while it is only appended to, and a
// rewrite (a new file, possibly under an inode number the old one had) changes them --
// the header's next UID and modseq have grown, a sealed file has a new random header.
constexpr size_t kHeadBytes = 64;
std::string head_of(int fd, uint64_t size) {
  std::string h(size_t(std::min<uint64_t>(size, kHeadBytes)), '\0');
  ssize_t n;
  do n = ::pread(fd, h.data(), h.size(), 0);
  while (n < 0 && errno == EINTR);
  h.resize(n < 0 ? 0 : size_t(n));
  return h;
}
}  // namespace

bool Folder::read_index(std::string& error) {
  msgs_.clear();
  index_lines_ = 0;
  index_end_ = 0;
  index_ino_ = 0;
  std::string path = index_path();
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) {
      error = "cannot open " + path + ": " + std::strerror(errno);
      return false;
    }
    // A new index. UIDVALIDITY from the clock (like Dovecot): a folder whose index
    // was lost gets a new value, so clients throw away what they cached.
    uidvalidity_ = uint32_t(std::time(nullptr));
    next_uid_ = 1;
    modseq_ = 1;
    return rewrite(error);
  }
  std::string why;
  auto file = crypt::read_text(fd, crypt::data_key(), &why);  // plain lines, or sealed records
  struct stat st{};
  if (!file || ::fstat(fd, &st) != 0) {
    ::close(fd);
    error = "cannot read " + path + ": " + (file ? std::string(std::strerror(errno)) : why);
    return false;
  }
  if (file->sealed && uint64_t(st.st_size) > file->good_end)
    ::ftruncate(fd, off_t(file->good_end));  // a record torn by a crash: never synced, never shown
  Applied a = apply_index(file->text, true);
  if (!a.header) {
    ::close(fd);
    if (file->text.empty()) {  // created, then a crash before its header was synced
      uidvalidity_ = uint32_t(std::time(nullptr));
      next_uid_ = 1;
      modseq_ = 1;
      return rewrite(error);
    }
    error = path + " is not a bulwark UID index";
    return false;
  }
  if (!file->sealed && a.good < file->text.size()) ::ftruncate(fd, off_t(a.good));  // drop the torn tail
  index_end_ = file->sealed ? file->good_end : a.good;
  index_ino_ = uint64_t(st.st_ino);
  index_head_ = head_of(fd, index_end_);
  ::close(fd);
  return true;
}

bool Folder::catch_up(std::string& error) {
  std::string path = index_path();
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  struct stat st{};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  bool same_file = uint64_t(st.st_ino) == index_ino_ && uint64_t(st.st_size) >= index_end_ &&
                   head_of(fd, index_head_.size()) == index_head_;
  if (same_file && uint64_t(st.st_size) == index_end_) {
    ::close(fd);
    return true;  // nobody wrote since we last looked
  }
  auto saved = std::make_tuple(uidvalidity_, next_uid_, modseq_, msgs_, index_lines_, index_end_, index_ino_, index_head_);
  auto restore = [&] {
    std::tie(uidvalidity_, next_uid_, modseq_, msgs_, index_lines_, index_end_, index_ino_, index_head_) =
        std::move(saved);
  };
  if (!same_file) {
    ::close(fd);  // rewritten by another owner: read it whole
    if (read_index(error)) return true;
    restore();
    return false;
  }
  std::string why;
  auto file = crypt::read_text(fd, crypt::data_key(), &why, index_end_);
  if (!file) {
    ::close(fd);
    error = "cannot read " + path + ": " + why;
    return false;
  }
  Applied a = apply_index(file->text, false);
  uint64_t end = file->sealed ? file->good_end : index_end_ + a.good;
  if (end < uint64_t(st.st_size)) ::ftruncate(fd, off_t(end));  // torn by a crash: never synced, never shown
  if (index_head_.size() < kHeadBytes) index_head_ = head_of(fd, end);
  ::close(fd);
  index_end_ = end;
  return true;
}

bool Folder::append(const std::string& lines, std::string& error) {
  std::string path = index_path();
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  struct stat st{};
  bool ok = fd >= 0 && crypt::append_text(fd, lines, crypt::data_key()) && ::fdatasync(fd) == 0 &&
            ::fstat(fd, &st) == 0;
  if (!ok) error = "cannot write " + path + ": " + std::strerror(errno);
  // Appended under the lock to an index this view had caught up with: taken in.
  if (ok) {
    index_end_ = uint64_t(st.st_size);
    if (index_head_.size() < kHeadBytes) index_head_ = head_of(fd, index_end_);
  }
  if (fd >= 0) ::close(fd);
  return ok;
}

bool Folder::rewrite(std::string& error) {
  std::string text = "bulwark-uidlist 1 " + std::to_string(uidvalidity_) + " " + std::to_string(next_uid_) + " " +
                     std::to_string(modseq_) + "\n";
  for (auto& m : msgs_) text += entry_line(m);
  if (const crypt::DataKey* key = crypt::data_key()) text = crypt::seal_records(*key, text);
  std::string tmp = index_path() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  struct stat st{};
  bool ok = fd >= 0 && write_all(fd, text) && ::fsync(fd) == 0 && ::fstat(fd, &st) == 0;
  if (fd >= 0) ::close(fd);
  ok = ok && ::rename(tmp.c_str(), index_path().c_str()) == 0 && sync_dir(dir_);
  if (!ok) {
    error = "cannot write " + index_path() + ": " + std::strerror(errno);
    return false;
  }
  index_lines_ = msgs_.size();
  index_end_ = uint64_t(st.st_size);
  index_ino_ = uint64_t(st.st_ino);
  index_head_ = text.substr(0, kHeadBytes);
  return true;
}

}  // namespace bulwark::store
