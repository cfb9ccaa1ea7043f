// store/pg_store.hpp: the mail store of cluster mode (SPEC 16; docs/cluster.md) --
// folders, messages, UIDs, flags, keywords, modseqs and expunge history in PostgreSQL,
// bodies in a content-addressed blob table (one body per distinct message, shared by
// its recipients; sealed first when encryption at rest is on, so the database never
// holds plaintext mail). The Maildir store's counterpart: IMAP and POP3 see it through
// the same interfaces (net/).
//
// Every change to a folder updates its row first (UPDATE ... RETURNING): the row lock
// orders writers, so UIDs and MODSEQs are handed out in commit order -- no UID twice,
// no MODSEQ that an observer could see go back -- whichever nodes write. A reader
// catches up with `modseq > last seen` (changed and new messages) and the expunge
// history above it. Blocking: call from a worker thread.
#pragma once
#include <cstdint>
#include <atomic>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/pg.hpp"
#include "store/pg_blobs.hpp"

namespace bulwark::crypt {
class DataKey;
}

namespace bulwark::store {

struct PgFolder {
  int64_t id = 0;
  std::string name, special;
  uint32_t uidvalidity = 0, uidnext = 1, recent_from = 1;
  uint64_t modseq = 0;
};

struct PgMessage {
  uint32_t uid = 0;
  uint64_t modseq = 0, size = 0;  // size: CRLF bytes as sent
  std::string flags;              // Maildir letters: D F R S T and keyword letters a..z
  int64_t internal_date = 0;
};

struct NewMessage {
  std::string_view content;  // LF or CRLF
  std::string flags;
  int64_t date = 0;  // 0: now
};

// Which folders changed, as far as this node knows: its own commits, and (while
// `live`: Redis carries every node's) the other nodes'. A session in IDLE asks
// PostgreSQL only when its folder's count moved -- or every 10 s regardless, and every
// second while the feed is not live -- instead of once a second each.
class FolderWakeups {
 public:
  void changed(int64_t folder);  // also told to `publish`, when it is set (our own changes)
  void heard(int64_t folder);    // another node's change
  uint64_t seq(int64_t folder) const;
  bool live() const { return live_; }
  void set_live(bool on) { live_ = on; }
  void publish_with(std::function<void(int64_t)> f);
  static constexpr size_t kMaxFolders = 1000000;  // beyond: forgotten, every session asks once

 private:
  mutable std::mutex mu_;
  std::unordered_map<int64_t, uint64_t> seq_;
  uint64_t epoch_ = 0;  // added to every count: moves when the table is cleared
  std::function<void(int64_t)> publish_;
  std::atomic<bool> live_{false};
};

class PgStore {
 public:
  FolderWakeups& wakeups() { return wakeups_; }
  // `key`: the data key when encryption at rest is on (bodies sealed), else null.
  PgStore(pg::Settings s, size_t connections, const crypt::DataKey* key);
  ~PgStore();

  // A user's folders: INBOX and the defaults (Sent, Drafts, Trash, Junk, Archive) made
  // on first use.
  bool ensure_defaults(const std::string& owner, std::string& error);
  std::optional<std::vector<PgFolder>> folders(const std::string& owner, std::string& error);
  std::optional<PgFolder> folder(const std::string& owner, const std::string& name, std::string& error);
  std::vector<std::string> subscriptions(const std::string& owner, std::string& error);
  bool create(const std::string& owner, const std::string& name, std::string& error);
  bool remove(const std::string& owner, const std::string& name, std::string& error);
  bool rename(const std::string& owner, const std::string& from, const std::string& to, std::string& error);
  bool subscribe(const std::string& owner, const std::string& name, bool on, std::string& error);

  // The folder's row now, and its messages changed (or added) above `since` -- all of
  // them for 0 -- with the UIDs expunged above it.
  struct Changes {
    PgFolder folder;
    std::vector<PgMessage> changed;  // by UID
    std::vector<uint32_t> expunged;
  };
  std::optional<Changes> changes(int64_t folder, uint64_t since, std::string& error);
  // Cheap: the folder's modseq and uidnext (IDLE asks often). Nothing when it is gone.
  std::optional<std::pair<uint64_t, uint32_t>> stamp(int64_t folder, std::string& error);
  // The message, CRLF; nothing and `error` empty when it is gone.
  std::optional<std::string> content(int64_t folder, uint32_t uid, std::string& error);
  // The headers of `uids` (to the blank line, at most 256 KiB each; SORT and THREAD
  // keys), a thousand per query; a body not sealed is read only that far. (UID, header)
  // for those that exist; nothing and `error` set when the store cannot be read.
  std::optional<std::vector<std::pair<uint32_t, std::string>>> headers(int64_t folder,
                                                                      const std::vector<uint32_t>& uids,
                                                                      std::string& error);
  // All or none; their UIDs in order.
  std::optional<std::vector<uint32_t>> append(int64_t folder, const std::vector<NewMessage>& msgs, std::string& error);
  // Flags as stored now (`next` sees each message as stored and gives its new letters
  // or nothing); every message changed gets the folder's next modseq. `changed`: UID
  // and the modseq it had before.
  using FlagRule = std::function<std::optional<std::string>(const PgMessage&)>;
  bool change_flags(int64_t folder, const std::vector<uint32_t>& uids, const FlagRule& next,
                    std::vector<std::pair<uint32_t, uint64_t>>& changed, std::string& error);
  // `only_deleted`: only those carrying \Deleted ('T') as stored now.
  bool expunge(int64_t folder, const std::vector<uint32_t>& uids, bool only_deleted, std::string& error);
  // (UID here, UID there); keywords carried over by name.
  std::optional<std::vector<std::pair<uint32_t, uint32_t>>> copy(int64_t from, int64_t to,
                                                                  const std::vector<uint32_t>& uids,
                                                                  std::string& error);
  uint32_t claim_recent(int64_t folder, uint32_t upto, std::string& error);
  // Keywords: names by letter ('a' first); a name's letter, added when `create` (26 at
  // most: "[LIMIT] ...").
  std::vector<std::string> keywords(int64_t folder, std::string& error);
  std::optional<char> keyword_letter(int64_t folder, std::string_view name, bool create, std::string& error);

  // Local delivery: the message (its head -- Return-Path, Delivered-To -- kept apart,
  // so the body is stored once for every recipient) into the user's INBOX, or Junk.
  // `origin` (the spool's "node/queue id"): a copy with the same origin in the folder
  // already is not delivered again (true, nothing done) -- a delivery repeated after a
  // crash between the commit and the spool's record of it.
  bool deliver(const std::string& owner, bool junk, const std::string& head, std::string_view body, std::string& error,
               const std::string& origin = "");
  // The same for every owner at once, in one transaction (the end of data for mail to
  // local recipients only: acknowledged once committed, SPEC 16). Each copy's head is
  // Return-Path (`sender`) and Delivered-To (its owner). Owners are locked in one
  // order, so concurrent deliveries do not deadlock. `unreachable` tells a lost
  // PostgreSQL (try later) from any other failure.
  // `also`, when given, runs in the same transaction after the copies, with the body's
  // blob id and the body as stored (CRLF): cluster mode's queue row for the message's
  // remote recipients (store/pg_queue.hpp).
  using Also = std::function<void(pg::Conn&, const std::string& blob, const std::string& crlf)>;
  // `origin` (when not empty) marks each copy as local delivery from a spool does (messages.origin).
  bool deliver_all(const std::vector<std::string>& owners, bool junk, const std::string& sender, std::string_view body,
                   std::string& error, bool& unreachable, const Also& also = {}, const std::string& origin = "");

  // `cluster import`: the folder `want` describes (name, special, UIDVALIDITY, next UID,
  // modseq, \Recent marker) with `keywords` -- made when missing, its counters raised to
  // `want`'s when below; an existing folder of another UIDVALIDITY is refused (its
  // clients would resync). Returns its id and the UIDs it holds already.
  struct Imported {
    int64_t id = 0;
    std::vector<uint32_t> uids;
  };
  std::optional<Imported> import_folder(const std::string& owner, const PgFolder& want,
                                        const std::vector<std::string>& keywords, std::string& error);
  struct OldMessage {
    uint32_t uid = 0;
    uint64_t modseq = 0;
    std::string flags;
    int64_t date = 0;
    std::string content;
  };
  // Messages with their own UIDs and modseqs, in one transaction (none already there).
  bool import_messages(int64_t folder, const std::vector<OldMessage>& msgs, std::string& error);

  // POP3's exclusive hold on a mailbox across nodes: an advisory lock on a connection
  // of its own, released when the returned object goes (or its node dies).
  class Hold {
   public:
    virtual ~Hold() = default;
  };
  std::unique_ptr<Hold> try_hold(const std::string& owner, std::string& error);

 private:
  std::optional<PgFolder> folder_in(pg::Conn& c, const std::string& owner, const std::string& name);
  bool ensure_defaults_in(pg::Conn& c, const std::string& owner);
  // 0: a copy of `origin` is there already.
  int64_t deliver_in(pg::Conn& c, const std::string& owner, bool junk, const std::string& sealed_head, size_t size,
                     const std::string& blob, const std::string& origin = "");
  pg::Settings settings_;
  pg::Pool pool_;
  std::optional<std::string> open_head(std::string head, std::string& error) const;
  std::unique_ptr<PgBlobs> blobs_;  // (the headers query reads its table too)
  const crypt::DataKey* key_;
  FolderWakeups wakeups_;
};

// CRLF line ends throughout (a lone LF becomes CRLF).
std::string to_crlf(std::string_view in);

}  // namespace bulwark::store
