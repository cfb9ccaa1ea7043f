// store/: the folders of one mailbox (SPEC 12): IMAP names with "/" as the hierarchy
// separator, on disk Maildir++ directories ".A.B" beside INBOX's cur/ new/ tmp/, names
// in UTF-8. A folder's name may not contain "." (the on-disk separator), control
// characters, or empty parts. Every new user gets Sent, Drafts, Trash, Junk and
// Archive (RFC 6154 special-use). Subscriptions are a file, one name per line, written
// atomically. Blocking: call from a worker thread.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::store {

struct FolderEntry {
  std::string name;     // "INBOX", "Sent", "Work/2026"
  std::string special;  // "\\Sent", ... or empty
  bool has_children = false;
};

// True for a name a client may create; `error` says why not otherwise. INBOX (any
// case) is valid and means the top folder.
bool valid_folder_name(std::string_view name, std::string& error);
bool is_inbox(std::string_view name);
// The directory of a folder (INBOX: the mailbox itself).
std::string folder_dir(const std::string& maildir, std::string_view name);
// Every folder, INBOX first, then by name; parents that exist only implicitly are listed.
std::vector<FolderEntry> list_folders(const std::string& maildir);
const char* special_use(std::string_view name);  // for the default folders

// CREATE: makes missing parents too (RFC 9051 6.3.4). False with `error` if it exists.
bool create_folder(const std::string& maildir, std::string_view name, std::string& error);
// DELETE: not INBOX, not one with children (NO [HASCHILDREN]); its messages go with it.
bool delete_folder(const std::string& maildir, std::string_view name, std::string& error);
// RENAME, children included. (INBOX: the IMAP layer moves its messages into a new
// folder and leaves INBOX empty, RFC 9051 6.3.6.)
bool rename_folder(const std::string& maildir, std::string_view from, std::string_view to, std::string& error);
// Sent, Drafts, Trash, Junk, Archive, when missing.
bool ensure_default_folders(const std::string& maildir, std::string& error);

// Keywords (keywords.cpp): the names behind the letters a..z of a folder's file names,
// by letter ("dovecot-keywords", Dovecot's file); the letter of a name
// (case-insensitive), added when `create` and there is room (26), else nothing
// (`error` then says why: "[LIMIT] ..." when full).
std::vector<std::string> read_keywords(const std::string& folder_dir);
std::optional<char> keyword_letter(const std::string& folder_dir, std::string_view name, bool create,
                                   std::string& error);

std::vector<std::string> subscriptions(const std::string& maildir);
bool set_subscribed(const std::string& maildir, std::string_view name, bool on, std::string& error);

}  // namespace bulwark::store
