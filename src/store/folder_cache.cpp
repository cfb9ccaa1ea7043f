// store/: the process-wide cache of synced folders. A big folder (1,000 messages or
// more) is kept as it was after a sync that changed nothing, with the stamp of that
// moment; opening the folder again while new/, cur/ and the index still carry that
// stamp (and it had settled: see FolderStamp) copies the kept state instead of
// reading the index and listing every name. Anything that changes the folder --
// a delivery, a flag change, an expunge, a tool renaming a file -- changes a time or
// the index size, and the next open syncs from disk. Bounded: 300,000 messages in all
// (about 90 MB), the least recently used folder goes first.
#include <list>
#include <map>

#include "store/mailstore.hpp"

namespace bulwark::store {
namespace {

constexpr size_t min_messages = 1000;      // smaller folders sync in a few milliseconds
constexpr size_t max_messages = 300'000;  // over all cached folders

struct Entry {
  FolderStamp stamp;
  uint32_t uidvalidity = 0, next_uid = 1;
  uint64_t modseq = 0, index_lines = 0, index_end = 0, index_ino = 0;
  std::string index_head;
  std::vector<Message> msgs;
};

struct Cache {
  std::mutex mu;
  std::list<std::pair<std::string, Entry>> lru;  // most recently used first
  std::map<std::string, std::list<std::pair<std::string, Entry>>::iterator> by_dir;
  size_t messages = 0;

  void drop(const std::string& dir) {
    auto it = by_dir.find(dir);
    if (it == by_dir.end()) return;
    messages -= it->second->second.msgs.size();
    lru.erase(it->second);
    by_dir.erase(it);
  }
};

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace

bool Folder::from_cache() {
  Stamp now = stamp();
  Cache& c = cache();
  std::lock_guard lock(c.mu);
  auto it = c.by_dir.find(dir_);
  if (it == c.by_dir.end()) return false;
  Entry& e = it->second->second;
  if (!e.stamp.same(now)) {
    c.drop(dir_);  // changed since: the next sync that finds nothing new puts it back
    return false;
  }
  c.lru.splice(c.lru.begin(), c.lru, it->second);
  uidvalidity_ = e.uidvalidity;
  next_uid_ = e.next_uid;
  modseq_ = e.modseq;
  index_lines_ = e.index_lines;
  index_end_ = e.index_end;
  index_ino_ = e.index_ino;
  index_head_ = e.index_head;
  msgs_ = e.msgs;
  seen_ = e.stamp;
  return true;
}

void Folder::to_cache(const FolderStamp& after) {
  if (msgs_.size() < min_messages || msgs_.size() > max_messages) return;
  Cache& c = cache();
  std::lock_guard lock(c.mu);
  if (auto it = c.by_dir.find(dir_); it != c.by_dir.end()) {
    if (it->second->second.stamp.same(after)) return;  // already there
    c.drop(dir_);
  }
  while (!c.lru.empty() && c.messages + msgs_.size() > max_messages) c.drop(c.lru.back().first);
  c.lru.emplace_front(dir_, Entry{after, uidvalidity_, next_uid_, modseq_, index_lines_, index_end_, index_ino_, index_head_, msgs_});
  c.by_dir[dir_] = c.lru.begin();
  c.messages += msgs_.size();
}

}  // namespace bulwark::store
