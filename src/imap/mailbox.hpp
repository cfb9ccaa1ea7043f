// imap/: what the IMAP session needs of the user's mailbox, in IMAP's terms (names in
// UTF-8 with "/" as the separator). net/ implements it over store/; the session calls
// it synchronously, so the driver runs the session's work for a logged-in user on the
// disk pool, never on an I/O thread. Tests use an in-memory one.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::imap {

struct FolderInfo {
  std::string name;     // "INBOX", "Sent", "Work/2026"
  std::string special;  // "\\Sent", ... (RFC 6154) or empty
  bool has_children = false;
  bool subscribed = false;
  bool exists = true;  // false: a subscription without a folder (LSUB, LIST (SUBSCRIBED))
};

struct FolderStatus {
  uint32_t messages = 0, uidnext = 1, uidvalidity = 0, unseen = 0, deleted = 0;
  uint64_t size = 0, highestmodseq = 0;
};

class Mailbox {
 public:
  virtual ~Mailbox() = default;
  virtual std::vector<FolderInfo> folders() = 0;  // INBOX first
  // `error` says why not (it becomes the text of a NO; may start with a response code).
  virtual std::optional<FolderStatus> status(const std::string& name, std::string& error) = 0;
  virtual bool create(const std::string& name, std::string& error) = 0;
  virtual bool remove(const std::string& name, std::string& error) = 0;
  virtual bool rename(const std::string& from, const std::string& to, std::string& error) = 0;
  virtual bool subscribe(const std::string& name, bool on, std::string& error) = 0;
};

}  // namespace bulwark::imap
