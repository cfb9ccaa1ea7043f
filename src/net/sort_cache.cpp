#include "net/sort_cache.hpp"

#include <list>
#include <mutex>
#include <unordered_map>

namespace bulwark {
namespace {

struct Folder {
  uint32_t uidvalidity = 0;
  std::unordered_map<uint32_t, imap::SortKeys> keys;
  size_t bytes = 0;
};

struct State {
  mutable std::mutex mu;
  std::list<std::pair<std::string, Folder>> lru;  // most recently used first
  std::unordered_map<std::string, std::list<std::pair<std::string, Folder>>::iterator> by_name;
  size_t bytes = 0;
};

State& state() {
  static State s;
  return s;
}

}  // namespace

std::optional<imap::SortKeys> SortKeyCache::get(const std::string& folder, uint32_t uidvalidity, uint32_t uid) {
  State& s = state();
  std::lock_guard lk(s.mu);
  auto it = s.by_name.find(folder);
  if (it == s.by_name.end() || it->second->second.uidvalidity != uidvalidity) return std::nullopt;
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  auto k = it->second->second.keys.find(uid);
  if (k == it->second->second.keys.end()) return std::nullopt;
  return k->second;
}

void SortKeyCache::put(const std::string& folder, uint32_t uidvalidity, uint32_t uid, const imap::SortKeys& keys) {
  size_t cost = keys.bytes() + 32;
  if (cost > kMaxBytes / 16) return;  // one absurd header is not kept
  State& s = state();
  std::lock_guard lk(s.mu);
  auto it = s.by_name.find(folder);
  if (it != s.by_name.end() && it->second->second.uidvalidity != uidvalidity) {  // a new folder by that name
    s.bytes -= it->second->second.bytes;
    s.lru.erase(it->second);
    s.by_name.erase(it);
    it = s.by_name.end();
  }
  if (it == s.by_name.end()) {
    s.lru.emplace_front(folder, Folder{uidvalidity, {}, 0});
    it = s.by_name.emplace(folder, s.lru.begin()).first;
  } else {
    s.lru.splice(s.lru.begin(), s.lru, it->second);
  }
  Folder& f = it->second->second;
  if (f.keys.count(uid)) return;
  while (s.bytes + cost > kMaxBytes && s.lru.size() > 1) {  // the folder used longest ago goes (never this one)
    auto& last = s.lru.back();
    s.bytes -= last.second.bytes;
    s.by_name.erase(last.first);
    s.lru.pop_back();
  }
  if (s.bytes + cost > kMaxBytes) return;  // this folder alone fills it: the rest are read each time
  f.keys.emplace(uid, keys);
  f.bytes += cost;
  s.bytes += cost;
}

size_t SortKeyCache::bytes() const {
  State& s = state();
  std::lock_guard lk(s.mu);
  return s.bytes;
}

SortKeyCache& sort_key_cache() {
  static SortKeyCache c;
  return c;
}

}  // namespace bulwark
