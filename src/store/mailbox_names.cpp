// store/: where a user's mailbox lives. Plain: <data_dir>/mail/<domain>/<local>/ with
// bytes outside [a-z0-9._+-] %-escaped, so that no address can name a path outside the
// mail tree and standard tools find the mailboxes. With encryption at rest on (SPEC 13)
// the names would still tell every domain and user: the mailbox is then
// <data_dir>/mail/=<32 hex digits>/, a keyed BLAKE2b of the address under the data key,
// and the address itself is kept, sealed, in the mailbox's "bulwark-owner" file, so that
// `encryption disable` can give the directory its name back. `encryption enable` and
// `disable` rename every mailbox (convert_mailbox_names), resumable like the rest: each
// rename is atomic, and a rerun renames what is left.
#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/body.hpp"
#include "core/strings.hpp"
#include "crypt/file.hpp"
#include "store/files.hpp"
#include "store/mailstore.hpp"

namespace bulwark {
namespace fs = std::filesystem;

namespace {

constexpr const char* kOwner = "bulwark-owner";

std::string escape(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-' ||
              (c == '.' && !out.empty());
    if (ok) out += char(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += char(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string lower_key(const std::string& mailbox_key) {
  size_t at = mailbox_key.rfind('@');
  std::string local = to_lower(mailbox_key.substr(0, at));
  return at == std::string::npos ? local : local + "@" + to_lower(mailbox_key.substr(at + 1));
}

}  // namespace

std::string plain_maildir_path(const std::string& data_dir, const std::string& mailbox_key) {
  size_t at = mailbox_key.rfind('@');
  std::string local = to_lower(mailbox_key.substr(0, at));
  std::string domain = at == std::string::npos ? "" : to_lower(mailbox_key.substr(at + 1));
  return (fs::path(data_dir) / "mail" / escape(domain) / escape(local)).string();
}

std::optional<std::string> hashed_maildir_path(const std::string& data_dir, const std::string& mailbox_key) {
  const crypt::DataKey* key = crypt::data_key();
  if (!key) return std::nullopt;
  std::string in = "bulwark mailbox name\n" + lower_key(mailbox_key);
  unsigned char h[16];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(in.data()), in.size(), key->bytes(),
                     crypt::DataKey::size);
  static const char* hex = "0123456789abcdef";
  std::string name = "=";
  for (unsigned char c : h) {
    name += hex[c >> 4];
    name += hex[c & 15];
  }
  return (fs::path(data_dir) / "mail" / name).string();
}

std::string maildir_path(const std::string& data_dir, const std::string& mailbox_key) {
  if (auto hashed = hashed_maildir_path(data_dir, mailbox_key)) return *hashed;
  return plain_maildir_path(data_dir, mailbox_key);
}

namespace store {

namespace {
bool write_owner(const std::string& dir, const std::string& mailbox_key, std::string& error) {
  std::string owner = dir + "/" + kOwner;
  if (crypt::replace_file(owner, lower_key(mailbox_key) + "\n")) return true;  // sealed: encryption is on
  error = "cannot write " + owner + ": " + std::strerror(errno);
  return false;
}
}  // namespace

bool note_mailbox_owner(const std::string& dir, const std::string& mailbox_key, std::string& error) {
  if (fs::path(dir).filename().string().rfind('=', 0) != 0) return true;  // a plain name says it already
  if (::access((dir + "/" + kOwner).c_str(), F_OK) == 0) return true;
  std::error_code ec;
  fs::create_directories(dir, ec);
  return write_owner(dir, mailbox_key, error);
}

NameProgress convert_mailbox_names(const std::string& data_dir, bool to_hashed) {
  NameProgress pr;
  fs::path mail = fs::path(data_dir) / "mail";
  std::error_code ec;
  if (!fs::is_directory(mail, ec)) return pr;
  auto move = [&](const fs::path& from, const std::string& to) {
    if (fs::exists(to, ec)) {
      pr.failed.push_back(from.string() + ": " + to + " exists already");
      return false;
    }
    fs::create_directories(fs::path(to).parent_path(), ec);
    if (::rename(from.c_str(), to.c_str()) != 0) {
      pr.failed.push_back(from.string() + ": " + std::strerror(errno));
      return false;
    }
    ++pr.renamed;
    return true;
  };
  std::vector<fs::path> tops;
  for (auto& e : fs::directory_iterator(mail, ec))
    if (e.is_directory(ec)) tops.push_back(e.path());
  for (auto& top : tops) {
    std::string name = top.filename().string();
    bool hashed = name.rfind('=', 0) == 0;
    if (to_hashed && !hashed) {  // mail/<domain>/<local>/
      std::vector<fs::path> boxes;
      for (auto& e : fs::directory_iterator(top, ec))
        if (e.is_directory(ec)) boxes.push_back(e.path());
      for (auto& box : boxes) {
        std::string key = unescape(box.filename().string()) + "@" + unescape(name);
        auto to = hashed_maildir_path(data_dir, key);
        std::string why;
        // The owner first, inside the mailbox: whichever name it has when a run is
        // interrupted, a rerun (or a disable) knows whose it is.
        if (!to || !write_owner(box.string(), key, why)) {
          pr.failed.push_back(box.string() + ": " + (why.empty() ? "no key" : why));
          continue;
        }
        move(box, *to);
      }
      ::rmdir(top.c_str());  // the domain's directory, when empty now
    } else if (!to_hashed && hashed) {
      if (!fs::exists(top / kOwner, ec)) {
        pr.failed.push_back(top.string() + ": no " + std::string(kOwner) + " file names its user");
        continue;
      }
      std::string why;
      auto owner = crypt::read_small((top / kOwner).string(), &why);
      std::string key = owner ? *owner : "";
      while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
      if (key.empty() || key.find('@') == std::string::npos) {
        pr.failed.push_back(top.string() + ": " + kOwner + " cannot be read (" + why + ")");
        continue;
      }
      std::string back = plain_maildir_path(data_dir, key);
      if (move(top, back)) fs::remove(fs::path(back) / kOwner, ec);
    } else {
      ++pr.already;
    }
  }
  sync_dir(mail.string());
  return pr;
}

}  // namespace store
}  // namespace bulwark
