// net/: the SORT and THREAD keys of messages (imap/sort_keys.hpp), kept for the whole
// process by folder, UIDVALIDITY and UID: a message's header never changes, so its
// keys are read once -- from the header alone, never the body -- and a SORT of a
// 100,000-message folder after the first is a sort of pointers to kept records (one
// lock and one lookup per message, nothing copied). Bounded: 64 MiB of keys in all;
// when full, the folder used longest ago goes (a SORT still using its keys keeps them
// alive until it is done).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "imap/sort_keys.hpp"

namespace bulwark {

class SortKeyCache {
 public:
  static constexpr size_t kMaxBytes = 64u << 20;
  // The kept keys of each of `uids` into `out` (nullptr where none are kept). The
  // handle keeps them valid, whatever the cache does meanwhile. For each field in
  // `ranked` (bits 1 << KeyField), when every one is kept: each message's rank among
  // the folder's kept values (computed once per set of messages, then reused).
  std::shared_ptr<const void> get(const std::string& folder, uint32_t uidvalidity, const std::vector<uint32_t>& uids,
                                  std::vector<const imap::SortKeys*>& out, unsigned ranked = 0,
                                  std::array<std::vector<uint32_t>, imap::kKeyFields>* ranks = nullptr);
  // Keeps a message's keys (moved from only when kept): the kept copy, valid while
  // `hold` is, or nullptr when the cache has no room for them.
  const imap::SortKeys* put(const std::string& folder, uint32_t uidvalidity, uint32_t uid, imap::SortKeys&& keys,
                            std::shared_ptr<const void>& hold);
  size_t bytes() const;
};

SortKeyCache& sort_key_cache();

}  // namespace bulwark
