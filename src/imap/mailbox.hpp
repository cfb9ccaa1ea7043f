// imap/: what the IMAP session needs of the user's mailbox, in IMAP's terms (names in
// UTF-8 with "/" as the separator). net/ implements it over store/; the session calls
// it synchronously, so the driver runs the session's work for a logged-in user on the
// disk pool, never on an I/O thread. Tests use an in-memory one.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>
#include <utility>
#include <optional>
#include <string>
#include <vector>

#include "imap/sort_keys.hpp"

namespace bulwark::imap {

struct FolderInfo {
  std::string name;     // "INBOX", "Sent", "Work/2026"
  std::string special;  // "\\Sent", ... (RFC 6154) or empty
  bool has_children = false;
  bool subscribed = false;
  bool exists = true;  // false: a subscription without a folder (LSUB, LIST (SUBSCRIBED))
};

struct FolderStatus {
  uint32_t messages = 0, uidnext = 1, uidvalidity = 0, unseen = 0, deleted = 0, recent = 0;
  uint64_t size = 0, highestmodseq = 0;
};

// One message as a selected folder shows it.
struct MessageRef {
  uint32_t uid = 0;
  uint64_t modseq = 0;
  uint64_t size = 0;        // with CRLF line ends (RFC822.SIZE)
  std::string flags;        // Maildir letters: D F R S T
  int64_t internal_date = 0;  // seconds since the epoch
};

struct FlagChange {
  enum class Op { add, remove, replace } op = Op::add;
  std::string letters;                      // Maildir letters: system flags and keyword letters
  std::optional<uint64_t> unchanged_since;  // CONDSTORE: not where the stored modseq is above it
};
struct FlagChangeResult {
  std::vector<uint32_t> modified;                      // failed UNCHANGEDSINCE (RFC 7162 MODIFIED)
  std::vector<std::pair<uint32_t, uint64_t>> changed;  // UID, the modseq it had before
};
// The new flags of `stored` under `change` (sorted letters, no repeats).
std::string apply_change(const std::string& stored, const FlagChange& change);

// A folder open in a session. refresh() takes in what others changed; the session
// compares and tells its client.
class OpenFolder {
 public:
  virtual ~OpenFolder() = default;
  virtual uint32_t uidvalidity() const = 0;
  virtual uint32_t uidnext() const = 0;
  virtual uint64_t highestmodseq() const = 0;
  virtual const std::vector<MessageRef>& messages() const = 0;  // by UID
  virtual bool refresh(std::string& error) = 0;
  // \Recent (IMAP4rev1): messages from the returned UID up to uidnext() are recent for
  // this session only -- claimed, so that no other session sees them recent (a
  // read-write SELECT, and new mail it hears of); recent_from() looks without claiming
  // (EXAMINE). The default: nothing is recent.
  virtual uint32_t claim_recent() { return uidnext(); }
  virtual uint32_t recent_from() { return uidnext(); }
  // The message with CRLF line ends; nothing if it is gone (error left empty) or cannot
  // be read (error says why: the session answers NO [SERVERBUG]).
  virtual std::optional<std::string> content(uint32_t uid, std::string& error) = 0;
  // STORE: the change is made to each message's flags as stored at that moment, never
  // to this view (another session may have changed them since): +FLAGS in one session
  // and -FLAGS of another flag in a second both hold afterwards. Each message changed
  // gets a modseq above every one given before. Afterwards messages() holds the stored
  // state (others' changes included); `result` says what changed.
  virtual bool change_flags(const std::vector<uint32_t>& uids, const FlagChange& change, FlagChangeResult& result,
                            std::string& error) = 0;
  // `only_deleted`: EXPUNGE -- only messages that carry \Deleted as stored now; false:
  // MOVE's removal of what was copied.
  virtual bool expunge(const std::vector<uint32_t>& uids, bool only_deleted, std::string& error) = 0;
  // (source UID, new UID) pairs in the target folder.
  virtual std::optional<std::vector<std::pair<uint32_t, uint32_t>>> copy(const std::vector<uint32_t>& uids,
                                                                          const std::string& to,
                                                                          std::string& error) = 0;
  // SORT and THREAD keys (sort_keys.hpp) of each of `uids`, in that order, from the
  // headers only (null for a message gone or unreadable). The store keeps them per
  // folder: the batch points at the kept ones and holds them while it lives. For each
  // field in `ranked` (bit 1 << KeyField), it may give every message's rank among the
  // folder's values of that field (equal values, equal ranks; the order of the strings).
  struct KeyBatch {
    std::vector<const SortKeys*> keys;
    std::array<std::vector<uint32_t>, kKeyFields> rank;  // by KeyField; empty when not given
    std::vector<std::shared_ptr<const void>> hold;      // what keeps kept keys alive
    std::deque<SortKeys> own;                           // keys read now and kept nowhere else
  };
  virtual KeyBatch keys(const std::vector<uint32_t>& uids, std::string& error, unsigned ranked = 0) {
    (void)ranked;
    KeyBatch b;
    for (uint32_t uid : uids) {
      auto text = content(uid, error);
      if (!text) {
        b.keys.push_back(nullptr);
        continue;
      }
      size_t end = text->find("\r\n\r\n");
      b.own.push_back(sort_keys(std::string_view(*text).substr(0, end == std::string::npos ? text->size() : end + 2)));
      b.keys.push_back(&b.own.back());
    }
    return b;
  }
  // Keywords (RFC 9051 2.3.2): MessageRef::flags holds them as the letters a..z; these
  // are the names by letter ('a' first). keyword_letter finds a name (case-insensitive)
  // or, when `create`, adds it; nothing when absent or when the folder is full (26,
  // `error` then starts with [LIMIT]).
  virtual std::vector<std::string> keywords() { return {}; }
  virtual std::optional<char> keyword_letter(std::string_view, bool, std::string& error) {
    error = "[LIMIT] Keywords are not kept here";
    return std::nullopt;
  }
};

// APPEND of a large message, written as it arrives: the session never holds it whole.
// Dropped without commit(): nothing is kept.
class AppendSink {
 public:
  virtual ~AppendSink() = default;
  virtual bool write(std::string_view data) = 0;
  // Why write() failed, as the text of a NO (with its response code).
  virtual std::string error() const { return "[SERVERBUG] The message could not be written"; }
  // The new message's UID and the folder's UIDVALIDITY, as Mailbox::append.
  virtual std::optional<std::pair<uint32_t, uint32_t>> commit(const std::string& flags,
                                                               const std::vector<std::string>& keywords,
                                                               int64_t internal_date, std::string& error) = 0;
};

// One message of an APPEND (several with MULTIAPPEND, RFC 3502).
struct AppendItem {
  std::string_view content;    // a message held in memory, or
  AppendSink* sink = nullptr;  // one written to a file as it came
  std::string flags;           // system flag letters
  std::vector<std::string> keywords;
  int64_t date = 0;            // the epoch second the client gave, 0 for now
};
struct Appended {
  uint32_t uidvalidity = 0;
  std::vector<uint32_t> uids;  // in the order of the items
};

class Mailbox {
 public:
  virtual ~Mailbox() = default;
  virtual std::unique_ptr<OpenFolder> open(const std::string& name, std::string& error) = 0;
  // APPEND: the new message's UID and the folder's UIDVALIDITY. `flags`: system flag
  // letters; `keywords`: names; `internal_date`: the epoch second the client gave, 0
  // for now.
  virtual std::optional<std::pair<uint32_t, uint32_t>> append(const std::string& name, std::string_view content,
                                                               const std::string& flags,
                                                               const std::vector<std::string>& keywords,
                                                               int64_t internal_date, std::string& error) = 0;
  // A sink for a streamed APPEND literal into folder `name`; nullptr when the folder
  // does not exist or streaming is not offered (the session then collects the literal,
  // bounded by Limits::max_literal, and calls append()).
  virtual std::unique_ptr<AppendSink> begin_append(const std::string& name, std::string& error) {
    (void)name, (void)error;
    return nullptr;
  }
  // APPEND of one or more messages: all are added, or none (RFC 3502). The default adds
  // them one after the other (test mailboxes); the store's does it at once.
  virtual std::optional<Appended> append_all(const std::string& name, std::vector<AppendItem>& items,
                                             std::string& error) {
    Appended done;
    for (auto& it : items) {
      auto r = it.sink ? it.sink->commit(it.flags, it.keywords, it.date, error)
                       : append(name, it.content, it.flags, it.keywords, it.date, error);
      if (!r) return std::nullopt;
      done.uidvalidity = r->second;
      done.uids.push_back(r->first);
    }
    return done;
  }
  virtual std::vector<FolderInfo> folders() = 0;  // INBOX first
  // `error` says why not (it becomes the text of a NO; may start with a response code).
  virtual std::optional<FolderStatus> status(const std::string& name, std::string& error) = 0;
  virtual bool create(const std::string& name, std::string& error) = 0;
  virtual bool remove(const std::string& name, std::string& error) = 0;
  virtual bool rename(const std::string& from, const std::string& to, std::string& error) = 0;
  virtual bool subscribe(const std::string& name, bool on, std::string& error) = 0;
};

}  // namespace bulwark::imap
