#include "store/folders.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <set>

#include "core/body.hpp"
#include "core/strings.hpp"
#include "crypt/file.hpp"

namespace bulwark::store {
namespace fs = std::filesystem;

namespace {
const char* defaults[][2] = {{"Sent", "\\Sent"}, {"Drafts", "\\Drafts"}, {"Trash", "\\Trash"},
                             {"Junk", "\\Junk"}, {"Archive", "\\Archive"}};

std::string disk_name(std::string_view name) {  // "A/B" -> ".A.B"
  std::string d = ".";
  for (char c : name) d += c == '/' ? '.' : c;
  return d;
}

bool make_maildir(const fs::path& d, std::string& error) {
  std::error_code ec;
  for (const char* sub : {"tmp", "new", "cur"}) {
    fs::create_directories(d / sub, ec);
    if (ec) {
      error = "cannot create " + (d / sub).string() + ": " + ec.message();
      return false;
    }
  }
  // Maildir++: marks a folder directory (Courier, Dovecot)
  int fd = ::open((d / "maildirfolder").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
  return true;
}

}  // namespace

bool is_inbox(std::string_view name) { return iequals(name, "INBOX"); }

bool valid_folder_name(std::string_view name, std::string& error) {
  if (is_inbox(name)) return true;
  if (name.empty() || name.size() > 200) {
    error = "Folder names are 1 to 200 bytes long";
    return false;
  }
  if (name.front() == '/' || name.back() == '/' || name.find("//") != std::string_view::npos) {
    error = "Empty part in a folder name";
    return false;
  }
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f || c == '.' || c == '*' || c == '%') {
      error = "Folder names may not contain \".\", \"*\", \"%\" or control characters";
      return false;
    }
  if (istarts_with(name, "INBOX/")) {
    error = "INBOX has no children here";
    return false;
  }
  return true;
}

std::string folder_dir(const std::string& maildir, std::string_view name) {
  if (is_inbox(name)) return maildir;
  return (fs::path(maildir) / disk_name(name)).string();
}

const char* special_use(std::string_view name) {
  for (auto& d : defaults)
    if (name == d[0]) return d[1];
  return "";
}

std::vector<FolderEntry> list_folders(const std::string& maildir) {
  std::set<std::string> names;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(maildir, ec)) {
    std::string n = e.path().filename().string();
    if (n.size() < 2 || n[0] != '.' || n == ".." || !e.is_directory()) continue;
    std::string imap;
    for (char c : n.substr(1)) imap += c == '.' ? '/' : c;
    std::string err;
    if (!valid_folder_name(imap, err)) continue;
    names.insert(imap);
    for (size_t p = imap.find('/'); p != std::string::npos; p = imap.find('/', p + 1)) names.insert(imap.substr(0, p));
  }
  std::vector<FolderEntry> out;
  out.push_back({"INBOX", "", false});
  for (auto& n : names) {
    FolderEntry f{n, special_use(n), false};
    auto next = names.upper_bound(n);
    f.has_children = next != names.end() && next->rfind(n + "/", 0) == 0;
    out.push_back(std::move(f));
  }
  return out;
}

bool create_folder(const std::string& maildir, std::string_view name, std::string& error) {
  if (!valid_folder_name(name, error)) return false;
  if (is_inbox(name) || fs::exists(folder_dir(maildir, name))) {
    error = "Folder already exists";
    return false;
  }
  std::string n(name);
  for (size_t p = n.find('/'); p != std::string::npos; p = n.find('/', p + 1))
    if (!make_maildir(folder_dir(maildir, n.substr(0, p)), error)) return false;
  if (!make_maildir(folder_dir(maildir, n), error)) return false;
  if (!sync_dir(maildir)) {
    error = "cannot sync " + maildir + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool delete_folder(const std::string& maildir, std::string_view name, std::string& error) {
  if (is_inbox(name)) {
    error = "INBOX cannot be deleted";
    return false;
  }
  if (!valid_folder_name(name, error)) return false;
  std::string dir = folder_dir(maildir, name);
  if (!fs::exists(dir)) {
    error = "No such folder";
    return false;
  }
  for (auto& f : list_folders(maildir))
    if (f.name == name && f.has_children) {
      error = "[HASCHILDREN] Delete the folders inside it first";
      return false;
    }
  // Renamed out of the way first, so a crash never leaves half a folder visible.
  // "..deleted-..." maps to a name with "." in it, which is never listed as a folder.
  static std::atomic<uint64_t> n{0};
  std::string gone =
      (fs::path(maildir) / ("..deleted-" + std::to_string(::getpid()) + "-" + std::to_string(++n))).string();
  std::error_code ec;
  fs::rename(dir, gone, ec);
  if (ec) {
    error = "cannot delete " + dir + ": " + ec.message();
    return false;
  }
  sync_dir(maildir);
  fs::remove_all(gone, ec);
  // Its subscription stays (RFC 3501 6.3.9: never removed unilaterally); LIST
  // (SUBSCRIBED) shows it \NonExistent until the client unsubscribes.
  return true;
}

bool rename_folder(const std::string& maildir, std::string_view from, std::string_view to, std::string& error) {
  if (is_inbox(from)) {
    error = "INBOX is not a directory to rename: its messages are moved (the IMAP layer does it)";
    return false;
  }
  if (!valid_folder_name(from, error) || !valid_folder_name(to, error)) return false;
  if (is_inbox(to) || fs::exists(folder_dir(maildir, to))) {
    error = "Target folder already exists";
    return false;
  }
  if (!fs::exists(folder_dir(maildir, from))) {
    error = "No such folder";
    return false;
  }
  std::string prefix = std::string(from) + "/";
  std::string target(to);
  if (target.rfind(prefix, 0) == 0) {
    error = "A folder cannot be moved into itself";
    return false;
  }
  std::vector<std::string> moving;
  for (auto& f : list_folders(maildir))
    if (f.name == from || f.name.rfind(prefix, 0) == 0)
      if (fs::exists(folder_dir(maildir, f.name))) moving.push_back(f.name);
  for (size_t p = target.find('/'); p != std::string::npos; p = target.find('/', p + 1))
    if (!fs::exists(folder_dir(maildir, target.substr(0, p))) &&
        !make_maildir(folder_dir(maildir, target.substr(0, p)), error))
      return false;
  std::error_code ec;
  for (auto& m : moving) {
    std::string dest = target + m.substr(from.size());
    fs::rename(folder_dir(maildir, m), folder_dir(maildir, dest), ec);
    if (ec) {
      error = "cannot rename " + m + ": " + ec.message();
      return false;
    }
  }
  sync_dir(maildir);
  return true;
}

bool ensure_default_folders(const std::string& maildir, std::string& error) {
  for (auto& d : defaults) {
    if (fs::exists(folder_dir(maildir, d[0]))) continue;
    if (!make_maildir(folder_dir(maildir, d[0]), error)) return false;
    set_subscribed(maildir, d[0], true, error);
  }
  return sync_dir(maildir) || (error = "cannot sync " + maildir, false);
}

std::vector<std::string> subscriptions(const std::string& maildir) {
  std::vector<std::string> out;
  std::istringstream in(crypt::read_small((fs::path(maildir) / "subscriptions").string()).value_or(""));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

bool set_subscribed(const std::string& maildir, std::string_view name, bool on, std::string& error) {
  auto subs = subscriptions(maildir);
  std::string n = is_inbox(name) ? "INBOX" : std::string(name);
  auto it = std::find(subs.begin(), subs.end(), n);
  if (on == (it != subs.end())) return true;
  if (on) subs.push_back(n);
  else subs.erase(it);
  std::string text;
  for (auto& s : subs) text += s + "\n";
  bool ok = crypt::replace_file((fs::path(maildir) / "subscriptions").string(), text);  // sealed when encryption is on
  if (!ok) error = "cannot write the subscriptions of " + maildir + ": " + std::strerror(errno);
  return ok;
}

}  // namespace bulwark::store
