#include "net/imap_mailbox.hpp"

#include <algorithm>
#include <filesystem>
#include <set>

#include "store/folders.hpp"
#include "store/mailstore.hpp"

namespace bulwark {

StoreMailbox::StoreMailbox(std::string maildir) : dir_(std::move(maildir)) {
  std::string error;
  std::filesystem::create_directories(dir_);
  store::ensure_default_folders(dir_, error);  // a failure shows at the first command
}

std::vector<imap::FolderInfo> StoreMailbox::folders() {
  auto subs = store::subscriptions(dir_);
  std::set<std::string> subscribed(subs.begin(), subs.end());
  std::vector<imap::FolderInfo> out;
  for (auto& f : store::list_folders(dir_)) {
    bool sub = subscribed.erase(f.name) > 0;
    out.push_back({f.name, f.special, f.has_children, sub, true});
  }
  for (auto& s : subscribed) out.push_back({s, "", false, true, false});  // subscribed, gone
  return out;
}

std::optional<imap::FolderStatus> StoreMailbox::status(const std::string& name, std::string& error) {
  std::string why;
  if (!store::valid_folder_name(name, why) ||
      (!store::is_inbox(name) && !std::filesystem::exists(store::folder_dir(dir_, name)))) {
    error = "[NONEXISTENT] No such mailbox";
    return std::nullopt;
  }
  auto f = store::Folder::open(store::folder_dir(dir_, name), why);
  if (!f) {
    error = "[SERVERBUG] The mailbox cannot be read now";
    return std::nullopt;
  }
  imap::FolderStatus st;
  st.messages = uint32_t(f->messages().size());
  st.uidnext = f->next_uid();
  st.uidvalidity = f->uidvalidity();
  st.highestmodseq = f->highest_modseq();
  for (auto& m : f->messages()) {
    st.size += m.vsize;
    st.unseen += m.flags.find('S') == std::string::npos;
    st.deleted += m.flags.find('T') != std::string::npos;
  }
  return st;
}

bool StoreMailbox::create(const std::string& name, std::string& error) {
  if (store::create_folder(dir_, name, error)) return true;
  if (error == "Folder already exists") error = "[ALREADYEXISTS] " + error;
  else if (error.find("cannot") == std::string::npos) error = "[CANNOT] " + error;
  return false;
}

bool StoreMailbox::remove(const std::string& name, std::string& error) {
  if (store::delete_folder(dir_, name, error)) return true;
  if (error == "No such folder") error = "[NONEXISTENT] " + error;
  else if (error.rfind("[", 0) != 0) error = "[CANNOT] " + error;
  return false;
}

bool StoreMailbox::rename(const std::string& from, const std::string& to, std::string& error) {
  if (store::rename_folder(dir_, from, to, error)) return true;
  if (error == "No such folder") error = "[NONEXISTENT] " + error;
  else if (error == "Target folder already exists") error = "[ALREADYEXISTS] " + error;
  else error = "[CANNOT] " + error;
  return false;
}

bool StoreMailbox::subscribe(const std::string& name, bool on, std::string& error) {
  std::string why;
  if (!store::valid_folder_name(name, why)) {
    error = "[CANNOT] " + why;
    return false;
  }
  return store::set_subscribed(dir_, name, on, error);
}

}  // namespace bulwark
