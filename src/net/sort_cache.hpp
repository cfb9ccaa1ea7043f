// net/: the SORT and THREAD keys of messages (imap/sort_keys.hpp), kept for the whole
// process by folder, UIDVALIDITY and UID: a message's header never changes, so its
// keys are read once -- from the header alone, never the body -- and a SORT of a
// 100,000-message folder after the first is a sort of small records. Bounded: 64 MiB of
// keys in all; when full, the folder used longest ago goes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "imap/sort_keys.hpp"

namespace bulwark {

class SortKeyCache {
 public:
  static constexpr size_t kMaxBytes = 64u << 20;
  std::optional<imap::SortKeys> get(const std::string& folder, uint32_t uidvalidity, uint32_t uid);
  void put(const std::string& folder, uint32_t uidvalidity, uint32_t uid, const imap::SortKeys& keys);
  size_t bytes() const;
};

SortKeyCache& sort_key_cache();

}  // namespace bulwark
