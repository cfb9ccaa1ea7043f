// net/: imap::Mailbox over store/pg_store (cluster mode): the user's folders in
// PostgreSQL as the IMAP session sees them. Blocking: used from the disk pool.
#pragma once
#include <string>

#include "imap/mailbox.hpp"
#include "store/pg_store.hpp"

namespace bulwark {

class PgImapMailbox : public imap::Mailbox {
 public:
  PgImapMailbox(store::PgStore& store, std::string owner);
  std::vector<imap::FolderInfo> folders() override;
  std::unique_ptr<imap::OpenFolder> open(const std::string& name, std::string& error) override;
  std::optional<std::pair<uint32_t, uint32_t>> append(const std::string& name, std::string_view content,
                                                       const std::string& flags,
                                                       const std::vector<std::string>& keywords,
                                                       int64_t internal_date, std::string& error) override;
  std::optional<imap::Appended> append_all(const std::string& name, std::vector<imap::AppendItem>& items,
                                           std::string& error) override;
  std::optional<imap::FolderStatus> status(const std::string& name, std::string& error) override;
  bool create(const std::string& name, std::string& error) override;
  bool remove(const std::string& name, std::string& error) override;
  bool rename(const std::string& from, const std::string& to, std::string& error) override;
  bool subscribe(const std::string& name, bool on, std::string& error) override;

 private:
  void ready();  // INBOX and the default folders, once
  store::PgStore& st_;
  std::string owner_;
  bool ready_ = false;
};

// What a PostgreSQL error may tell a client: "try later", never the server's text (it
// goes to bulwark.log, once per 10 s per cause). Texts meant for the client (they
// start with a response code) pass as they are.
std::string pg_for_client(const std::string& detail);

}  // namespace bulwark
