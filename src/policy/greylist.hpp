// policy/: greylisting. A triplet (client network -- IPv4 /24, IPv6 /64 --, sender,
// recipient) seen for the first time is deferred (451 4.7.1) until `delay` has passed;
// a retry after that passes and is remembered for `expire` after its last use.
// Passed triplets are appended to <data_dir>/greylist (a line per pass or refresh, no
// fsync: losing the last seconds only means one more delay), read back at start and
// rewritten when it holds twice as many lines as live triplets. The table is bounded:
// pending triplets beyond max_pending push out the oldest pending ones, passed ones
// beyond max_passed the least recently used. Thread-safe.
//
// Cluster mode (SPEC 16): no file. Keys are a keyed hash of the triplet (keyed with the
// data key under encryption at rest: no address in memory, in Redis or in PostgreSQL,
// and every node with the keyring computes the same key); each first attempt, pass and
// daily refresh goes to a journal (store/pg_greylist.hpp writes it into PostgreSQL at
// the heartbeat and feeds the other nodes' rows back through learn()).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/ip.hpp"

namespace bulwark {

namespace crypt {
class DataKey;
}

struct GreylistSettings {
  std::chrono::seconds delay{300}, expire{35 * 86400};
  std::chrono::seconds pending_for{86400};  // a first attempt not retried within this is forgotten
  size_t max_pending = 100000, max_passed = 1000000;
  bool hashed = false;                       // cluster mode: keys are hashes (below)
  const crypt::DataKey* hash_key = nullptr;  // ...keyed with this when set
};

class Greylist {
 public:
  using Clock = std::function<int64_t()>;  // unix seconds
  // `path` "": no file (cluster mode's journal instead).
  Greylist(std::string path, GreylistSettings s, Clock now = {});
  ~Greylist();
  Greylist(const Greylist&) = delete;
  Greylist& operator=(const Greylist&) = delete;

  enum class Verdict { pass, defer };
  // `seconds_left` (defer): how long until a retry passes.
  Verdict check(const IpAddress& ip, const std::string& sender, const std::string& rcpt, int64_t* seconds_left = nullptr);
  size_t pending() const;
  size_t passed() const;

  // Cluster mode (policy/redis_limits.hpp): a first attempt and a pass seen here are
  // told to `shared` (it must not block); those seen on other nodes come in through
  // learn(), so a sender retrying through another node is not delayed again.
  using Shared = std::function<void(const std::string& key, int64_t first, bool passed)>;
  void share(Shared shared);
  void learn(const std::string& key, int64_t first, bool passed);
  // Cluster mode: first attempts, passes and daily refreshes as they happen (must not
  // block: called on I/O threads, outside the table's lock).
  using Journal = std::function<void(const std::string& key, int64_t first, int64_t last, bool passed)>;
  void journal_to(Journal j);
  // A triplet's key: "<network>/<sender>/<recipient>", or its hash (32 hex digits) when
  // `hashed` (keyed with `key` when given).
  static std::string key_of(const IpAddress& ip, const std::string& sender, const std::string& rcpt, bool hashed,
                            const crypt::DataKey* key);
  // A key of the file's form made the hash form (`cluster import`).
  static std::string hash_key(const std::string& plain, const crypt::DataKey* key);

 private:
  struct Entry {
    int64_t first = 0, last = 0, written = 0;
    bool passed = false;
    std::list<std::string>::iterator order;  // in pending_order_ or passed_order_
  };
  Verdict decide(const std::string& key, int64_t now, int64_t* seconds_left,
                 std::optional<std::pair<int64_t, bool>>& tell, bool& refreshed);
  void pass(const std::string& key, Entry& e, int64_t now);  // pending -> passed, under mu_
  void load();
  void append(const std::string& key, const Entry& e);
  void compact();
  void drop_expired(int64_t now);

  Shared shared_;
  Journal journal_;
  std::string path_;
  GreylistSettings s_;
  Clock now_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> pending_order_, passed_order_;  // oldest first
  size_t passed_ = 0, lines_ = 0;
  int fd_ = -1;
  int64_t last_sweep_ = 0;
};

}  // namespace bulwark
