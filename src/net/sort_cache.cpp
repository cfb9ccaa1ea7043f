#include "net/sort_cache.hpp"

#include <algorithm>
#include <list>
#include <mutex>
#include <unordered_map>

namespace bulwark {
namespace {

// A folder's keys. Entries are added, never removed (a folder goes whole), and their
// keys never change; unordered_map nodes do not move: a pointer to one stays valid while
// the table lives. The ranks are written and read under the cache's lock only.
struct Entry {
  imap::SortKeys keys;
  std::array<uint32_t, imap::kKeyFields> rank{};
};
struct Table {
  uint32_t uidvalidity = 0;
  std::unordered_map<uint32_t, Entry> keys;
  std::array<size_t, imap::kKeyFields> ranked{};  // keys.size() when the field's ranks were made
  size_t bytes = 0;
};

// Every entry's place among the table's values of field f (the order of the strings;
// equal strings, equal ranks).
void rank(Table& t, size_t f) {
  std::vector<Entry*> all;
  all.reserve(t.keys.size());
  for (auto& [uid, e] : t.keys) all.push_back(&e);
  auto value = [f](const Entry* e) -> const std::string& { return imap::field(e->keys, imap::KeyField(f)); };
  std::sort(all.begin(), all.end(), [&](const Entry* a, const Entry* b) { return value(a) < value(b); });
  uint32_t r = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (i && value(all[i]) != value(all[i - 1])) ++r;
    all[i]->rank[f] = r;
  }
  t.ranked[f] = t.keys.size();
}

struct State {
  mutable std::mutex mu;
  std::list<std::pair<std::string, std::shared_ptr<Table>>> lru;  // most recently used first
  std::unordered_map<std::string, std::list<std::pair<std::string, std::shared_ptr<Table>>>::iterator> by_name;
  size_t bytes = 0;
};

State& state() {
  static State s;
  return s;
}

}  // namespace

std::shared_ptr<const void> SortKeyCache::get(const std::string& folder, uint32_t uidvalidity,
                                              const std::vector<uint32_t>& uids, std::vector<const imap::SortKeys*>& out,
                                              unsigned ranked, std::array<std::vector<uint32_t>, imap::kKeyFields>* ranks) {
  out.assign(uids.size(), nullptr);
  State& s = state();
  std::lock_guard lk(s.mu);
  auto it = s.by_name.find(folder);
  if (it == s.by_name.end() || it->second->second->uidvalidity != uidvalidity) return nullptr;
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  const auto& table = it->second->second;
  std::vector<const Entry*> entries(uids.size(), nullptr);
  bool all = true;
  for (size_t i = 0; i < uids.size(); ++i) {
    auto k = table->keys.find(uids[i]);
    if (k == table->keys.end()) {
      all = false;
      continue;
    }
    entries[i] = &k->second;
    out[i] = &k->second.keys;
  }
  for (size_t f = 0; ranks && all && f < imap::kKeyFields; ++f) {
    if (!(ranked & (1u << f))) continue;
    if (table->ranked[f] != table->keys.size()) rank(*table, f);
    auto& r = (*ranks)[f];
    r.resize(uids.size());
    for (size_t i = 0; i < uids.size(); ++i) r[i] = entries[i]->rank[f];
  }
  return table;
}

const imap::SortKeys* SortKeyCache::put(const std::string& folder, uint32_t uidvalidity, uint32_t uid,
                                        imap::SortKeys&& keys, std::shared_ptr<const void>& hold) {
  size_t cost = keys.bytes() + sizeof(Entry) - sizeof(imap::SortKeys) + 48;  // with the node and the ranks
  if (cost > kMaxBytes / 16) return nullptr;  // one absurd header is not kept
  State& s = state();
  std::lock_guard lk(s.mu);
  auto it = s.by_name.find(folder);
  if (it != s.by_name.end() && it->second->second->uidvalidity != uidvalidity) {  // a new folder by that name
    s.bytes -= it->second->second->bytes;
    s.lru.erase(it->second);
    s.by_name.erase(it);
    it = s.by_name.end();
  }
  if (it == s.by_name.end()) {
    auto t = std::make_shared<Table>();
    t->uidvalidity = uidvalidity;
    s.lru.emplace_front(folder, std::move(t));
    it = s.by_name.emplace(folder, s.lru.begin()).first;
  } else {
    s.lru.splice(s.lru.begin(), s.lru, it->second);
  }
  auto table = it->second->second;
  hold = table;
  if (auto k = table->keys.find(uid); k != table->keys.end()) return &k->second.keys;
  while (s.bytes + cost > kMaxBytes && s.lru.size() > 1) {  // the folder used longest ago goes (never this one)
    auto& last = s.lru.back();
    s.bytes -= last.second->bytes;
    s.by_name.erase(last.first);
    s.lru.pop_back();
  }
  if (s.bytes + cost > kMaxBytes) return nullptr;  // this folder alone fills it: the rest are read each time
  auto& kept = table->keys.emplace(uid, Entry{std::move(keys), {}}).first->second.keys;
  table->bytes += cost;
  s.bytes += cost;
  return &kept;
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
