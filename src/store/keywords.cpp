// store/: IMAP keywords ($Forwarded, $Junk, a user's "Important") kept the Maildir way,
// as Dovecot keeps them, so that both read the same folders: the letters a..z in a
// file name's ":2," info stand for the names listed in the folder's
// "dovecot-keywords" file ("0 $Forwarded" = 'a'). 26 per folder at most.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "core/body.hpp"
#include "core/strings.hpp"
#include "crypt/file.hpp"
#include "store/files.hpp"
#include "store/folders.hpp"

namespace bulwark::store {

std::vector<std::string> read_keywords(const std::string& dir) {
  std::vector<std::string> names;
  std::istringstream in(crypt::read_small(dir + "/dovecot-keywords").value_or(""));
  std::string line;
  while (std::getline(in, line)) {
    size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    auto i = line.substr(0, sp);
    if (i.empty() || i.size() > 2 || !std::isdigit(static_cast<unsigned char>(i[0]))) continue;
    size_t n = std::stoul(i);
    std::string name = line.substr(sp + 1);
    if (n >= 26 || name.empty()) continue;
    if (names.size() <= n) names.resize(n + 1);
    names[n] = name;
  }
  return names;
}

std::optional<char> keyword_letter(const std::string& dir, std::string_view name, bool create, std::string& error) {
  auto find = [&](const std::vector<std::string>& names) -> std::optional<char> {
    for (size_t i = 0; i < names.size(); ++i)
      if (!names[i].empty() && iequals(names[i], name)) return char('a' + i);
    return std::nullopt;
  };
  if (auto l = find(read_keywords(dir))) return l;
  if (!create) return std::nullopt;
  // Under the folder's lock: two sessions adding keywords at once must not lose one.
  FileLock lock(dir + "/bulwark-uidlist.lock");
  if (!lock.ok()) {
    error = "cannot lock " + dir + ": " + std::strerror(errno);
    return std::nullopt;
  }
  auto names = read_keywords(dir);
  std::optional<char> letter = find(names);
  if (!letter) {
    size_t slot = 0;
    while (slot < names.size() && !names[slot].empty()) ++slot;
    if (slot >= 26) {
      error = "[LIMIT] A folder holds at most 26 keywords";
    } else {
      if (names.size() <= slot) names.resize(slot + 1);
      names[slot] = std::string(name);
      std::string text;
      for (size_t i = 0; i < names.size(); ++i)
        if (!names[i].empty()) text += std::to_string(i) + " " + names[i] + "\n";
      bool ok = crypt::replace_file(dir + "/dovecot-keywords", text);  // sealed when encryption is on
      if (ok) letter = char('a' + slot);
      else error = "cannot write the keywords of " + dir + ": " + std::strerror(errno);
    }
  }
  return letter;
}

}  // namespace bulwark::store
