// net/: imap::Mailbox over store/ -- the user's Maildir++ folders as the IMAP session
// sees them. Blocking (readdir, fsync): used from the disk pool.
#pragma once
#include <string>

#include "imap/mailbox.hpp"

namespace bulwark {

class StoreMailbox : public imap::Mailbox {
 public:
  // `maildir`: the user's mailbox directory (maildir_path() of `key`); the default
  // folders are made on first use.
  StoreMailbox(std::string maildir, const std::string& key);
  std::vector<imap::FolderInfo> folders() override;
  std::unique_ptr<imap::OpenFolder> open(const std::string& name, std::string& error) override;
  std::optional<std::pair<uint32_t, uint32_t>> append(const std::string& name, std::string_view content,
                                                       const std::string& flags,
                                                       const std::vector<std::string>& keywords,
                                                       int64_t internal_date, std::string& error) override;
  std::unique_ptr<imap::AppendSink> begin_append(const std::string& name, std::string& error) override;
  std::optional<imap::Appended> append_all(const std::string& name, std::vector<imap::AppendItem>& items,
                                           std::string& error) override;
  std::optional<imap::FolderStatus> status(const std::string& name, std::string& error) override;
  bool create(const std::string& name, std::string& error) override;
  bool remove(const std::string& name, std::string& error) override;
  bool rename(const std::string& from, const std::string& to, std::string& error) override;
  bool subscribe(const std::string& name, bool on, std::string& error) override;

 private:
  bool exists(const std::string& name) const;
  std::string dir_;
};

}  // namespace bulwark
