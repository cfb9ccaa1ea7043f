// store/: the mailboxes users read (SPEC 12). Maildir++ under
// <data_dir>/mail/<domain>/<user>/ (INBOX at the top, folders as ".Name"), so that
// standard tools can read them, plus per folder a durable UID index
// ("bulwark-uidlist"): UIDVALIDITY, the next UID, and for each message its UID, the
// file's base name, its size on disk and its size with CRLF line ends (what POP3 and
// IMAP count), its flags and a modification sequence. System flags live in the file name's
// ":2," info as every Maildir reader expects.
//
// The index is an append-only log, synced before a UID is shown to anyone, and
// rewritten (temp file, sync, rename, sync directory) when it has grown to twice its
// live size. A UID once given is never given again, also across kill -9 at any
// instant: a torn last line is a line that was never synced, hence never shown.
// Deliveries (delivery/) only write tmp/ -> new/ and never touch the index; the next
// sync of the folder sees them and gives them UIDs, so delivery costs what it did
// before. Listing reads names and the index, never message bodies.
//
// Blocking (readdir, fsync): call from a worker thread, not an I/O thread. Depends
// on core/ only.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "crypt/file.hpp"

namespace bulwark {

// The user's mailbox directory (mailbox_names.cpp): <data_dir>/mail/<domain>/<local>/
// with bytes outside [a-z0-9._+-] %-escaped, so no address can name a path outside the
// mail tree -- or, with encryption at rest on, <data_dir>/mail/=<keyed hash>/, so that
// the tree names no domain and no user.
std::string maildir_path(const std::string& data_dir, const std::string& mailbox_key);
std::string plain_maildir_path(const std::string& data_dir, const std::string& mailbox_key);
std::optional<std::string> hashed_maildir_path(const std::string& data_dir, const std::string& mailbox_key);

namespace store {

// A Maildir file name: "<base>[:2,<flags>]", where base may carry ",S=<size>" and
// ",W=<size with CRLF>" (the Dovecot convention, written by local delivery).
struct MaildirName {
  std::string base;
  std::string flags;  // the letters after ":2,", sorted
  std::optional<uint64_t> size, vsize;
};
MaildirName parse_maildir_name(std::string_view name);
// A Maildir base name starts with the delivery time (seconds): INTERNALDATE without a
// stat() per message.
inline int64_t arrival_time(std::string_view base) {
  int64_t t = 0;
  for (char c : base) {
    if (c < '0' || c > '9') break;
    t = t * 10 + (c - '0');
  }
  return t;
}

struct Message {
  uint32_t uid = 0;
  uint64_t modseq = 0;
  uint64_t size = 0;   // bytes in the file (LF line ends)
  uint64_t vsize = 0;  // bytes as sent to a client (CRLF line ends)
  std::string base;
  std::string file;  // path relative to the folder: "cur/<base>:2,<flags>" or "new/<base>"
  std::string flags;
};

// When a folder was looked at: the modification times of new/, cur/ and the index
// (and its size), and the wall clock then.
struct FolderStamp {
  int64_t new_ns = -1, cur_ns = -1, index_ns = -1, index_size = -1;
  int64_t wall_ns = 0;  // when taken; not part of the comparison
  bool same(const FolderStamp& o) const {
    return new_ns == o.new_ns && cur_ns == o.cur_ns && index_ns == o.index_ns && index_size == o.index_size;
  }
  // File times are as coarse as the kernel's clock tick (a few ms; whole seconds on
  // some file systems): a change in the same tick as this look would leave them equal.
  // Settled: taken long enough after the last change that any later change must show.
  bool settled() const;
};

// One Maildir folder with its index. Not thread-safe: one owner at a time (a
// session); several owners of the same folder (processes or threads) serialise
// through a lock file.
class Folder {
 public:
  // Creates the folder's tmp/ new/ cur/ when missing, reads the index and syncs.
  static std::unique_ptr<Folder> open(const std::string& dir, std::string& error);

  // Takes in what changed on disk: new deliveries get UIDs (new/ -> cur/), files gone
  // are forgotten. False (and `error`) when the folder cannot be read or the index
  // not written; the view is then unchanged.
  bool sync(std::string& error);
  // Cheap (three stat calls): false when nothing in new/, cur/ or the index changed
  // since the last sync began, so a sync would find nothing (IMAP IDLE asks often).
  bool maybe_changed() const;

  uint32_t uidvalidity() const { return uidvalidity_; }
  uint32_t next_uid() const { return next_uid_; }
  uint64_t highest_modseq() const { return modseq_; }
  const std::vector<Message>& messages() const { return msgs_; }  // by UID
  const std::string& dir() const { return dir_; }

  // Opens a message's file as it is on disk (O_RDONLY fd, or -1; a copy keeps its
  // form, plain or sealed): follows a file another owner renamed (a flag change) by
  // looking it up again.
  int open_message(const Message& m);
  // The message's plaintext, whichever form the file is in (crypt/file.hpp); nullopt
  // with the cause in *why (and errno ENOENT) when it is gone, or when it cannot be read
  // or is sealed and fails its check.
  std::optional<crypt::PlainFile> read_message(const Message& m, std::string* why);

  // \Recent (RFC 3501 2.3.2): "bulwark-recent" holds the lowest UID no session has
  // claimed yet (1 when absent). claim_recent, under the folder's lock, marks every UID
  // below `upto` claimed and returns the marker as it was: the messages from there up to
  // `upto` are recent for the caller and for nobody else. recent_from reads the marker
  // without claiming (EXAMINE, STATUS). Losing the file to a crash makes messages recent
  // again, nothing worse: it is written without a sync.
  uint32_t claim_recent(uint32_t upto);
  uint32_t recent_from() const;

  // Removes messages (POP3 UPDATE, IMAP EXPUNGE): files unlinked and the directory
  // synced, then the index told and synced. A crash in between leaves an index entry
  // without a file, which the next sync forgets: never a message back from the dead,
  // never a UID reused. `only_deleted`: only those that carry \Deleted ('T') as stored
  // now -- another session may have taken it away since this view was made (IMAP
  // EXPUNGE). Returns how many were removed; `error` names the first failure.
  size_t remove(const std::vector<uint32_t>& uids, std::string& error, bool only_deleted = false);

  // Changes the flags of messages as they are stored at this moment (under the
  // folder's lock, after catching up with what other owners wrote): `next` gets a
  // message as stored and returns its new flags (Maildir letters), or nothing to leave
  // it alone. Each message whose flags change gets a new modification sequence, above
  // every one given before, written and synced before the files are renamed (a crash
  // in between costs a spurious change, never a lost one). `changed` (optional): the
  // UIDs that changed, each with the modseq it had before. False and `error` when the
  // index cannot be written or `next` gives unusable letters; nothing changes then.
  // Afterwards the view holds the stored state of every message (others' changes too).
  using FlagRule = std::function<std::optional<std::string>(const Message&)>;
  bool update_flags(const std::vector<uint32_t>& uids, const FlagRule& next, std::string& error,
                    std::vector<std::pair<uint32_t, uint64_t>>* changed = nullptr);
  // The same with the new flags given per message.
  bool set_flags(const std::vector<std::pair<uint32_t, std::string>>& changes, std::string& error);

  // Adds a message (IMAP APPEND): `content` with LF or CRLF line ends is written to
  // tmp/, synced, moved to cur/ with `flags`, the directory synced, and the message
  // given its UID before this returns. Nothing on failure.
  // `time`: the arrival time to record (IMAP APPEND's date-time), 0 for now.
  std::optional<uint32_t> add(std::string_view content, const std::string& flags, std::string& error,
                              int64_t time = 0);

  // Copies messages into `to` (hard links where possible) and gives them UIDs there;
  // returns (UID here, UID there) pairs (UIDPLUS COPYUID). A move is a copy, then
  // remove() here: a crash in between leaves the message in both, never in neither.
  // A message written into tmp/ as it arrives (IMAP APPEND of a large message: the
  // session never holds it whole), CRLF or LF in, LF on disk. finish() syncs it, moves
  // it to cur/ with `flags` and gives it its UID, as add() does; an Incoming dropped
  // unfinished removes its file.
  class Incoming {
   public:
    ~Incoming();
    bool write(std::string_view data);
    const std::string& error() const { return error_; }  // why write() failed
    std::optional<uint32_t> finish(Folder& f, const std::string& flags, int64_t time, std::string& error);
    // The file whole and synced in tmp/, ready for Folder::add_all (finish does both).
    bool complete(std::string& error);

   private:
    friend class Folder;
    std::string dir_, tmp_;
    int fd_ = -1;
    std::unique_ptr<crypt::FileWriter> writer_;  // into fd_
    uint64_t size_ = 0, lines_ = 0;
    bool cr_ = false, failed_ = false;
    std::string buf_, error_;
  };
  std::unique_ptr<Incoming> incoming(std::string& error);
  // Messages complete in tmp/ (Incoming::complete), added all or none (IMAP MULTIAPPEND,
  // RFC 3502): under the folder's lock each is moved to cur/ with its flags and arrival
  // time -- a failure moves back those already moved, so no other owner ever sees a
  // part of them -- then they get their UIDs together, in order.
  std::optional<std::vector<uint32_t>> add_all(const std::vector<Incoming*>& in, const std::vector<std::string>& flags,
                                               const std::vector<int64_t>& times, std::string& error);

  // `letter_map`: for keywords, the letter 'a' + i here becomes letter_map[i] there
  // (a space: dropped); empty: letters kept as they are.
  std::vector<std::pair<uint32_t, uint32_t>> copy_to(Folder& to, const std::vector<uint32_t>& uids,
                                                     std::string& error, const std::string& letter_map = {});

 private:
  explicit Folder(std::string dir) : dir_(std::move(dir)) {}
  // The index (uid_index.cpp). read_index: whole; catch_up: what other owners added
  // since this view last read or wrote it (lock held), so a change is made to the
  // stored state, never to a stale view. append: lines, to an index caught up with.
  bool read_index(std::string& error);
  bool catch_up(std::string& error);
  struct Applied {
    bool header = false;  // the text began with a well-formed header (when one was expected)
    size_t good = 0;      // bytes of whole, well-formed lines taken
  };
  Applied apply_index(std::string_view text, bool header);
  bool append(const std::string& lines, std::string& error);
  bool rewrite(std::string& error);
  // Takes files already in cur/ (named by base) into the index under the lock, and
  // returns the UIDs they got, in order.
  std::optional<std::vector<uint32_t>> take_in(const std::vector<std::string>& bases, std::string& error);
  std::optional<std::vector<uint32_t>> uids_of(const std::vector<std::string>& bases, std::string& error);
  // sync() with the lock held; new files named in `first` get their UIDs first, in order.
  bool sync_locked(std::string& error, const std::vector<std::string>& first);
  Message* find(uint32_t uid);
  std::string index_path() const { return dir_ + "/bulwark-uidlist"; }

  // The process-wide cache of synced folders (folder_cache.cpp): a SELECT of a big
  // folder nobody changed since it was last synced copies the result instead of
  // reading the index and listing 100,000 names again.
  bool from_cache();
  void to_cache(const FolderStamp& after);

  std::string dir_;
  uint32_t uidvalidity_ = 0, next_uid_ = 1;
  uint64_t modseq_ = 0;
  std::vector<Message> msgs_;
  uint64_t index_lines_ = 0;  // entries in the log (live + dead): when to rewrite
  uint64_t index_end_ = 0;    // bytes of the index taken into this view
  uint64_t index_ino_ = 0;    // the index file they were in (a rewrite replaces it)
  std::string index_head_;    // and its first bytes (an inode number may come back)
  using Stamp = FolderStamp;
  Stamp stamp() const;
  Stamp seen_;  // as it was when the last sync began
};

// A mailbox under a hashed name keeps its owner's address, sealed, in "bulwark-owner":
// written here when missing (whoever makes the mailbox first: delivery, a login, `user
// add`). Nothing to do for a plain name.
bool note_mailbox_owner(const std::string& dir, const std::string& mailbox_key, std::string& error);

// `encryption enable` (to_hashed) and `disable`: every mailbox directory renamed to the
// other form; a rerun after an interruption renames what is left.
struct NameProgress {
  size_t renamed = 0, already = 0;
  std::vector<std::string> failed;  // "path: why"
};
NameProgress convert_mailbox_names(const std::string& data_dir, bool to_hashed);

// The per-mailbox session lock of POP3 (a second session gets [IN-USE]). In-process:
// the server is the only program that serves mailboxes.
class MailboxLocks {
 public:
  class Lease {
   public:
    Lease() = default;
    Lease(MailboxLocks* l, std::string k) : locks_(l), key_(std::move(k)) {}
    Lease(Lease&& o) noexcept : locks_(o.locks_), key_(std::move(o.key_)) { o.locks_ = nullptr; }
    Lease& operator=(Lease&& o) noexcept;
    ~Lease() { release(); }
    explicit operator bool() const { return locks_ != nullptr; }
    void release();

   private:
    MailboxLocks* locks_ = nullptr;
    std::string key_;
  };
  Lease try_lock(const std::string& key);  // empty Lease: held by another session

 private:
  std::mutex mu_;
  std::set<std::string> held_;
};

}  // namespace store
}  // namespace bulwark
