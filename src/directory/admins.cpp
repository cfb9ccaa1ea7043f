// directory/admins.cpp: the administrators of the HTTPS console and API (SPEC 15),
// kept beside the mail users in the directory (sealed with it when encryption is on).
#include "auth/password.hpp"
#include "core/strings.hpp"
#include "directory/sqlite.hpp"

namespace bulwark {

namespace {

bool valid_admin_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

std::string token_hash(const std::string& token) {
  auth::Key h = auth::sha256(token);
  return hex(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}

}  // namespace

void Directory::add_admin(const std::string& name, const std::string& password, bool read_only) {
  if (!valid_admin_name(name))
    throw DirectoryError("\"" + sanitize(name) + "\" cannot be an administrator's name (1-64 of a-z 0-9 . _ -)");
  if (password.empty() || password.size() > 1024 || password.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
    throw DirectoryError("the password is empty, too long or contains a line break");
  std::string hash = auth::hash_password(password);  // slow: outside the lock
  Writing w(*this);
  DbConn& c = *writer_;
  if (exists(c, "SELECT 1 FROM admins WHERE name=?", name)) throw DirectoryError("administrator " + name + " already exists");
  Stmt(c.db, "INSERT INTO admins(name, password_hash, read_only) VALUES(?,?,?)", &c.cache)
      .bind(1, name)
      .bind(2, hash)
      .bind(3, read_only ? 1 : 0)
      .step();
}

void Directory::remove_admin(const std::string& name) {
  Writing w(*this);
  DbConn& c = *writer_;
  if (!exists(c, "SELECT 1 FROM admins WHERE name=?", name))
    throw DirectoryError("administrator " + sanitize(name) + " does not exist");
  Stmt(c.db, "DELETE FROM admins WHERE name=?", &c.cache).bind(1, name).step();
}

std::vector<Directory::AdminInfo> Directory::list_admins() {
  auto lease = reader();
  DbConn& c = *lease;
  Stmt s(c.db, "SELECT name, read_only, token_hash IS NOT NULL FROM admins ORDER BY name", &c.cache);
  std::vector<AdminInfo> out;
  while (s.step()) out.push_back({s.text(0), s.integer(1) != 0, s.integer(2) != 0});
  return out;
}

std::optional<Directory::AdminInfo> Directory::admin(const std::string& name) {
  auto lease = reader();
  DbConn& c = *lease;
  try {
    Stmt s(c.db, "SELECT name, read_only, token_hash IS NOT NULL FROM admins WHERE name=?", &c.cache);
    s.bind(1, name);
    if (s.step()) return AdminInfo{s.text(0), s.integer(1) != 0, s.integer(2) != 0};
  } catch (const DirectoryError&) {
  }
  return std::nullopt;
}

std::optional<Directory::AdminInfo> Directory::verify_admin(const std::string& name, const std::string& password) {
  std::string hash;
  {
    auto lease = reader();
    DbConn& c = *lease;
    try {
      Stmt s(c.db, "SELECT password_hash FROM admins WHERE name=?", &c.cache);
      s.bind(1, name);
      if (s.step()) hash = s.text(0);
    } catch (const DirectoryError&) {
    }
  }
  bool ok = auth::verify_password(hash.empty() ? auth::dummy_hash() : hash, password) && !hash.empty();
  if (!ok) return std::nullopt;
  return admin(name);
}

std::string Directory::new_admin_token(const std::string& name) {
  std::string token = "bwt_" + auth::base64_encode(auth::random_bytes(32));
  for (auto& ch : token)  // URL- and header-safe
    if (ch == '+') ch = '-';
    else if (ch == '/') ch = '_';
  while (!token.empty() && token.back() == '=') token.pop_back();
  Writing w(*this);
  DbConn& c = *writer_;
  if (!exists(c, "SELECT 1 FROM admins WHERE name=?", name))
    throw DirectoryError("administrator " + sanitize(name) + " does not exist");
  Stmt(c.db, "UPDATE admins SET token_hash=? WHERE name=?", &c.cache).bind(1, token_hash(token)).bind(2, name).step();
  return token;
}

std::optional<Directory::AdminInfo> Directory::admin_by_token(const std::string& token) {
  if (token.size() < 20 || token.size() > 200) return std::nullopt;
  auto lease = reader();
  DbConn& c = *lease;
  try {
    Stmt s(c.db, "SELECT name, read_only FROM admins WHERE token_hash=?", &c.cache);
    s.bind(1, token_hash(token));
    if (s.step()) return AdminInfo{s.text(0), s.integer(1) != 0, true};
  } catch (const DirectoryError&) {
  }
  return std::nullopt;
}

}  // namespace bulwark
