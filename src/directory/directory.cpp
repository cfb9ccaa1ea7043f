#include "directory/directory.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "core/strings.hpp"
#include "crypt/file.hpp"
#include "directory/sqlite.hpp"

namespace bulwark {
namespace {

void check_password(const std::string& pw) {
  if (pw.empty()) throw DirectoryError("the password is empty");
  if (pw.size() > 1024) throw DirectoryError("the password is longer than 1024 bytes");
  if (pw.find_first_of("\r\n") != std::string::npos || pw.find('\0') != std::string::npos)
    throw DirectoryError("the password contains a line break or NUL byte");
}

}  // namespace

bool valid_user_local_part(const std::string& local) {
  if (local.empty() || local.size() > 64 || local.front() == '"') return false;
  for (unsigned char c : local)
    if (c == '/' || c == '\\' || c < 0x21 || c == 0x7f) return false;
  return true;
}

std::unique_ptr<Directory> Directory::open(const std::string& data_dir) {
  // A new data_dir is private from the start (serve() also sets 0750 on it).
  if (std::filesystem::create_directories(data_dir)) ::chmod(data_dir.c_str(), 0750);
  if (crypt::data_key()) return open_sealed(data_dir);
  if (::access(sealed_path(data_dir).c_str(), F_OK) == 0)
    throw DirectoryError("the directory in " + data_dir + " is encrypted (directory.sealed) and its key is not loaded");
  std::string path = (std::filesystem::path(data_dir) / "directory.db").string();
  // Password hashes and SCRAM keys: the file is the owner's alone. SQLite gives its
  // -wal and -shm files the database file's permissions.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::fchmod(fd, 0600);
    ::close(fd);
  }
  for (const char* suffix : {"-wal", "-shm"}) ::chmod((path + suffix).c_str(), 0600);
  std::unique_ptr<Directory> d(new Directory(path, connect(path, true)));
  sqlite3* db = d->writer_->db;
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  create_directory_schema(db);
  return d;
}

void create_directory_schema(sqlite3* db) {
  exec(db, "PRAGMA foreign_keys=ON;");
  exec(db,
       "CREATE TABLE IF NOT EXISTS domains(name TEXT PRIMARY KEY, anti_spoofing INTEGER NOT NULL DEFAULT 1);"
       "CREATE TABLE IF NOT EXISTS users(key TEXT PRIMARY KEY, address TEXT NOT NULL, domain TEXT NOT NULL,"
       "  password_hash TEXT NOT NULL);"
       "CREATE TABLE IF NOT EXISTS aliases(alias TEXT NOT NULL, domain TEXT NOT NULL, target TEXT NOT NULL,"
       "  PRIMARY KEY(alias, target));"
       "CREATE TABLE IF NOT EXISTS groups(grp TEXT NOT NULL, domain TEXT NOT NULL, member TEXT NOT NULL,"
       "  PRIMARY KEY(grp, member));"
       "CREATE TABLE IF NOT EXISTS delegations(owner TEXT NOT NULL, delegate TEXT NOT NULL,"
       "  PRIMARY KEY(owner, delegate));"
       "CREATE TABLE IF NOT EXISTS admins(name TEXT PRIMARY KEY, password_hash TEXT NOT NULL,"
       "  read_only INTEGER NOT NULL DEFAULT 0, token_hash TEXT);");
  // Directories made before authentication existed lack the mechanism secrets.
  bool has_scram = false;
  {
    Stmt s(db, "SELECT name FROM pragma_table_info('users')");
    while (s.step())
      if (s.text(0) == "scram") has_scram = true;
  }
  if (!has_scram) exec(db, "ALTER TABLE users ADD COLUMN scram TEXT; ALTER TABLE users ADD COLUMN cram_md5 TEXT;");
}

std::unique_ptr<DbConn> Directory::connect(const std::string& path, bool writer) {
  sqlite3* db = nullptr;
  // URI: the sealed form's shared in-memory database is named "file:/...?vfs=memdb".
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI | (writer ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw DirectoryError("cannot open " + path + ": " + m);
  }
  auto c = std::make_unique<DbConn>(db);
  // The writer waits for another process's write (the admin CLI) up to 5 s. A reader
  // in WAL mode never waits for a writer; the short timeout only covers the moment
  // a checkpoint or recovery holds the WAL index.
  sqlite3_busy_timeout(db, writer ? 5000 : 500);
  if (!writer) exec(db, "PRAGMA query_only=1;");
  return c;
}

Directory::Lease Directory::reader() {
  refresh();
  {
    std::lock_guard lk(pool_mu_);
    if (!idle_.empty()) {
      Lease l{this, std::move(idle_.back())};
      idle_.pop_back();
      return l;
    }
  }
  return Lease{this, connect(path_, false)};  // one more thread reading at once
}

Directory::Lease::Lease(Directory* o, std::unique_ptr<DbConn> c) : owner(o), conn(std::move(c)) {}

Directory::Lease::~Lease() {
  if (!conn) return;
  std::lock_guard lk(owner->pool_mu_);
  owner->idle_.push_back(std::move(conn));
}

bool Directory::exists(DbConn& c, const char* sql, const std::string& key) {
  Stmt s(c.db, sql, &c.cache);
  s.bind(1, key);
  return s.step();
}

bool Directory::is_local_domain(const std::string& domain) {
  auto lease = reader();
  DbConn& c = *lease;
  try {
    return exists(c, "SELECT 1 FROM domains WHERE name=?", to_lower(domain));
  } catch (const DirectoryError&) {
    return false;
  }
}

std::string Directory::stored_target(DbConn& c, const Address& target) {
  // A local address by its lookup key; any other as it goes into an SMTP path, the
  // local part's case and quoting kept ("john smith"@remote.invalid), or refused.
  if (exists(c, "SELECT 1 FROM domains WHERE name=?", target.domain)) return target.lookup_key();
  auto text = path_mailbox(target.str());
  if (!text) throw DirectoryError(target.str() + " cannot be written safely in an SMTP path");
  return *text;
}

void Directory::expand(DbConn& c, const std::string& stored, int depth, std::vector<std::string>& visited,
                       Resolution& r) {
  size_t at = stored.rfind('@');
  std::string domain = at == std::string::npos ? "" : stored.substr(at + 1);
  if (!exists(c, "SELECT 1 FROM domains WHERE name=?", domain)) {
    // Written as a path can carry it; a target stored before quoting was kept (its
    // local part unquoted) is quoted now, and one that cannot be written is dropped.
    auto text = path_mailbox(stored);
    if (text && std::find(r.remote.begin(), r.remote.end(), *text) == r.remote.end()) r.remote.push_back(*text);
    return;
  }
  // A target stored for a remote domain that has become local: by its lookup key.
  std::string key = to_lower(unquoted_local(std::string_view(stored).substr(0, at))) + "@" + domain;
  if (depth > 8 || std::find(visited.begin(), visited.end(), key) != visited.end()) return;
  visited.push_back(key);
  if (exists(c, "SELECT 1 FROM users WHERE key=?", key)) {
    if (std::find(r.mailboxes.begin(), r.mailboxes.end(), key) == r.mailboxes.end()) r.mailboxes.push_back(key);
    return;
  }
  {
    Stmt s(c.db, "SELECT target FROM aliases WHERE alias=?", &c.cache);
    s.bind(1, key);
    std::vector<std::string> targets;
    while (s.step()) targets.push_back(s.text(0));
    for (auto& t : targets) expand(c, t, depth + 1, visited, r);
  }
  {
    Stmt s(c.db, "SELECT member FROM groups WHERE grp=?", &c.cache);
    s.bind(1, key);
    std::vector<std::string> members;
    while (s.step()) members.push_back(s.text(0));
    for (auto& m : members) expand(c, m, depth + 1, visited, r);
  }
}

Resolution Directory::resolve(const Address& a) {
  if (!available()) return Resolution{Resolution::temp_failure, {}, {}};
  auto lease = reader();
  DbConn& c = *lease;
  Resolution r;
  try {
    if (a.domain_is_literal() || !exists(c, "SELECT 1 FROM domains WHERE name=?", a.domain)) {
      r.kind = Resolution::not_local;
      return r;
    }
    std::vector<std::string> visited;
    expand(c, a.lookup_key(), 0, visited, r);
    r.kind = (r.mailboxes.empty() && r.remote.empty()) ? Resolution::unknown : Resolution::local;
  } catch (const DirectoryError&) {
    r = Resolution{};
    r.kind = Resolution::temp_failure;
  }
  return r;
}

Resolution Directory::resolve_postmaster(const std::string& server_hostname, const std::string& configured) {
  if (auto a = parse_mailbox(configured)) {
    Resolution r = resolve(*a);
    if (r.kind == Resolution::not_local) {  // a remote address: it is sent there
      r.kind = Resolution::local;
      r.remote = {a->str()};
    }
    if (r.kind == Resolution::local || r.kind == Resolution::temp_failure) return r;
  }
  std::vector<std::string> candidates{to_lower(server_hostname)};
  for (auto& d : list_domains()) candidates.push_back(d.name);
  for (auto& d : candidates) {
    Address a{"postmaster", d, false};
    Resolution r = resolve(a);
    if (r.kind == Resolution::local || r.kind == Resolution::temp_failure) return r;
  }
  Resolution none;
  none.kind = Resolution::unknown;
  return none;
}

void Directory::require_local_domain(const std::string& domain) {
  DbConn& c = *writer_;
  if (!exists(c, "SELECT 1 FROM domains WHERE name=?", domain))
    throw DirectoryError("domain " + domain + " is not a local domain (add it with: bulwark domain add " + domain +
                         ")");
}

void Directory::require_free(const std::string& key) {
  DbConn& c = *writer_;
  if (exists(c, "SELECT 1 FROM users WHERE key=?", key)) throw DirectoryError(key + " is already a user");
  if (exists(c, "SELECT 1 FROM aliases WHERE alias=?", key)) throw DirectoryError(key + " is already an alias");
  if (exists(c, "SELECT 1 FROM groups WHERE grp=?", key)) throw DirectoryError(key + " is already a group");
}

void Directory::add_domain(const std::string& domain, bool anti_spoofing) {
  Writing w(*this);
  DbConn& c = *writer_;
  std::string d = to_lower(domain);
  if (!valid_domain(d, false)) throw DirectoryError("\"" + sanitize(domain) + "\" is not a valid domain name");
  if (exists(c, "SELECT 1 FROM domains WHERE name=?", d)) throw DirectoryError("domain " + d + " already exists");
  Stmt(c.db, "INSERT INTO domains(name, anti_spoofing) VALUES(?, ?)", &c.cache)
      .bind(1, d)
      .bind(2, anti_spoofing ? 1 : 0)
      .step();
}

void Directory::remove_domain(const std::string& domain) {
  Writing w(*this);
  DbConn& c = *writer_;
  std::string d = to_lower(domain);
  if (!exists(c, "SELECT 1 FROM domains WHERE name=?", d)) throw DirectoryError("domain " + d + " does not exist");
  for (const char* sql : {"SELECT 1 FROM users WHERE domain=?", "SELECT 1 FROM aliases WHERE domain=?",
                          "SELECT 1 FROM groups WHERE domain=?"})
    if (exists(c, sql, d)) throw DirectoryError("domain " + d + " still has users, aliases or groups; remove them first");
  Stmt(c.db, "DELETE FROM domains WHERE name=?", &c.cache).bind(1, d).step();
}

std::vector<DomainInfo> Directory::list_domains() {
  auto lease = reader();
  DbConn& c = *lease;
  Stmt s(c.db, "SELECT name, anti_spoofing FROM domains ORDER BY name", &c.cache);
  std::vector<DomainInfo> out;
  while (s.step()) out.push_back({s.text(0), s.integer(1) != 0});
  return out;
}

namespace {
struct Secrets {
  std::string hash, scram, cram;
};
Secrets make_secrets(const std::string& password, bool cram_md5) {
  Secrets s;
  s.hash = auth::hash_password(password);
  s.scram = auth::encode_scram(auth::new_scram(password));
  if (cram_md5) {
    auth::CramSecret c = auth::derive_cram_md5(password);
    s.cram = auth::base64_encode(std::string_view(reinterpret_cast<const char*>(c.data()), c.size()));
  }
  return s;
}
}  // namespace

void Directory::add_user(const Address& a, const std::string& password, bool cram_md5) {
  check_password(password);
  if (!valid_user_local_part(a.local) || a.domain_is_literal())
    throw DirectoryError("\"" + sanitize(a.str()) + "\" cannot be a mailbox (use letters, digits and . _ + -)");
  Secrets sec = make_secrets(password, cram_md5);  // slow: outside the lock
  Writing w(*this);
  DbConn& c = *writer_;
  require_local_domain(a.domain);
  require_free(a.lookup_key());
  Stmt st(c.db, "INSERT INTO users(key, address, domain, password_hash, scram, cram_md5) VALUES(?,?,?,?,?,?)",
          &c.cache);
  st.bind(1, a.lookup_key()).bind(2, a.str()).bind(3, a.domain).bind(4, sec.hash).bind(5, sec.scram);
  if (cram_md5) st.bind(6, sec.cram);
  st.step();
}

void Directory::set_password(const Address& a, const std::string& password, bool cram_md5) {
  check_password(password);
  Secrets sec = make_secrets(password, cram_md5);
  Writing w(*this);
  DbConn& c = *writer_;
  if (!exists(c, "SELECT 1 FROM users WHERE key=?", a.lookup_key()))
    throw DirectoryError("user " + a.lookup_key() + " does not exist");
  Stmt st(c.db, "UPDATE users SET password_hash=?, scram=?, cram_md5=? WHERE key=?", &c.cache);
  st.bind(1, sec.hash).bind(2, sec.scram).bind(4, a.lookup_key());
  if (cram_md5) st.bind(3, sec.cram);
  st.step();
}

std::vector<Directory::UserSecurity> Directory::user_security() {
  auto lease = reader();
  DbConn& c = *lease;
  Stmt s(c.db, "SELECT address, password_hash, scram, cram_md5 FROM users ORDER BY domain, key", &c.cache);
  std::vector<UserSecurity> out;
  while (s.step())
    out.push_back({s.text(0), !s.text(2).empty(), !s.text(3).empty(), auth::needs_rehash(s.text(1))});
  return out;
}

std::optional<std::string> Directory::user_key(const std::string& user) {
  auto a = parse_mailbox(user);
  if (!a) return std::nullopt;
  auto lease = reader();
  DbConn& c = *lease;
  try {
    if (exists(c, "SELECT 1 FROM users WHERE key=?", a->lookup_key())) return a->lookup_key();
  } catch (const DirectoryError&) {
  }
  return std::nullopt;
}

std::string Directory::user_column(const char* sql, const std::string& key) {
  auto lease = reader();
  DbConn& c = *lease;
  try {
    Stmt s(c.db, sql, &c.cache);
    s.bind(1, key);
    if (s.step()) return s.text(0);
  } catch (const DirectoryError&) {
  }
  return {};
}

std::optional<std::string> Directory::verify_login(const std::string& user, const std::string& password) {
  auto a = parse_mailbox(user);
  std::string key = a ? a->lookup_key() : std::string();
  std::string hash = a ? user_column("SELECT password_hash FROM users WHERE key=?", key) : std::string();
  // An unknown user costs the same Argon2id run as a wrong password.
  bool ok = auth::verify_password(hash.empty() ? auth::dummy_hash() : hash, password) && !hash.empty();
  if (!ok) return std::nullopt;
  if (auth::needs_rehash(hash)) {
    std::string fresh = auth::hash_password(password);
    try {
      Writing w(*this);
      DbConn& c = *writer_;
      Stmt(c.db, "UPDATE users SET password_hash=? WHERE key=? AND password_hash=?", &c.cache)
          .bind(1, fresh)
          .bind(2, key)
          .bind(3, hash)
          .step();
    } catch (const DirectoryError&) {
      // The login stands; the upgrade is tried again next time.
    }
  }
  return key;
}

std::optional<std::pair<std::string, std::string>> Directory::login_record(const std::string& user) {
  auto a = parse_mailbox(user);
  if (!a) return std::nullopt;
  std::string key = a->lookup_key();
  std::string hash = user_column("SELECT password_hash FROM users WHERE key=?", key);
  if (hash.empty()) return std::nullopt;
  return std::pair{key, hash};
}

std::optional<auth::ScramSecret> Directory::scram_secret(const std::string& user) {
  auto a = parse_mailbox(user);
  if (!a) return std::nullopt;
  std::string text = user_column("SELECT scram FROM users WHERE key=?", a->lookup_key());
  if (text.empty()) return std::nullopt;
  return auth::decode_scram(text);
}

std::optional<auth::CramSecret> Directory::cram_md5_secret(const std::string& user) {
  auto a = parse_mailbox(user);
  if (!a) return std::nullopt;
  std::string text = user_column("SELECT cram_md5 FROM users WHERE key=?", a->lookup_key());
  auto raw = auth::base64_decode(text);
  if (text.empty() || !raw || raw->size() != 32) return std::nullopt;
  auth::CramSecret out{};
  std::copy(raw->begin(), raw->end(), out.begin());
  return out;
}

bool Directory::may_send_as(const std::string& user_key, const Address& sender) {
  if (sender.lookup_key() == user_key) return true;
  Resolution r = resolve(sender);
  if (r.kind != Resolution::local) return false;
  // An alias or group that leads to the user, or an address whose owner delegated.
  if (std::find(r.mailboxes.begin(), r.mailboxes.end(), user_key) != r.mailboxes.end()) return true;
  auto lease = reader();
  DbConn& c = *lease;
  try {
    std::vector<std::string> owners{sender.lookup_key()};
    owners.insert(owners.end(), r.mailboxes.begin(), r.mailboxes.end());
    for (auto& o : owners) {
      Stmt s(c.db, "SELECT 1 FROM delegations WHERE owner=? AND delegate=?", &c.cache);
      s.bind(1, o).bind(2, user_key);
      if (s.step()) return true;
    }
  } catch (const DirectoryError&) {
  }
  return false;
}

std::optional<bool> Directory::domain_anti_spoofing(const std::string& domain) {
  auto lease = reader();
  DbConn& c = *lease;
  try {
    Stmt s(c.db, "SELECT anti_spoofing FROM domains WHERE name=?", &c.cache);
    s.bind(1, to_lower(domain));
    if (s.step()) return s.integer(0) != 0;
  } catch (const DirectoryError&) {
    return true;  // cannot tell: the secure choice
  }
  return std::nullopt;
}

void Directory::add_delegation(const Address& owner, const Address& to) {
  Writing w(*this);
  DbConn& c = *writer_;
  require_local_domain(owner.domain);
  if (!exists(c, "SELECT 1 FROM users WHERE key=?", to.lookup_key()))
    throw DirectoryError("user " + to.lookup_key() + " does not exist");
  if (owner.lookup_key() == to.lookup_key()) throw DirectoryError("a user may always send as itself");
  Stmt(c.db, "INSERT OR IGNORE INTO delegations(owner, delegate) VALUES(?,?)", &c.cache)
      .bind(1, owner.lookup_key())
      .bind(2, to.lookup_key())
      .step();
}

void Directory::remove_delegation(const Address& owner, const Address& to) {
  Writing w(*this);
  DbConn& c = *writer_;
  {
    Stmt s(c.db, "SELECT 1 FROM delegations WHERE owner=? AND delegate=?", &c.cache);
    s.bind(1, owner.lookup_key()).bind(2, to.lookup_key());
    if (!s.step()) throw DirectoryError("no delegation of " + owner.lookup_key() + " to " + to.lookup_key());
  }
  Stmt(c.db, "DELETE FROM delegations WHERE owner=? AND delegate=?", &c.cache)
      .bind(1, owner.lookup_key())
      .bind(2, to.lookup_key())
      .step();
}

std::vector<std::pair<std::string, std::string>> Directory::list_delegations() {
  auto lease = reader();
  DbConn& c = *lease;
  Stmt s(c.db, "SELECT owner, delegate FROM delegations ORDER BY owner, delegate", &c.cache);
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) out.emplace_back(s.text(0), s.text(1));
  return out;
}

void Directory::remove_user(const Address& a) {
  Writing w(*this);
  DbConn& c = *writer_;
  if (!exists(c, "SELECT 1 FROM users WHERE key=?", a.lookup_key()))
    throw DirectoryError("user " + a.lookup_key() + " does not exist");
  Stmt(c.db, "DELETE FROM users WHERE key=?", &c.cache).bind(1, a.lookup_key()).step();
}

std::vector<std::string> Directory::list_users(const std::string& domain_filter) {
  auto lease = reader();
  DbConn& c = *lease;
  std::vector<std::string> out;
  Stmt s(c.db, domain_filter.empty() ? "SELECT address FROM users ORDER BY domain, key"
                                    : "SELECT address FROM users WHERE domain=? ORDER BY key");
  if (!domain_filter.empty()) s.bind(1, to_lower(domain_filter));
  while (s.step()) out.push_back(s.text(0));
  return out;
}

void Directory::add_alias(const Address& alias, const Address& target) {
  Writing w(*this);
  DbConn& c = *writer_;
  require_local_domain(alias.domain);
  std::string key = alias.lookup_key();
  if (exists(c, "SELECT 1 FROM users WHERE key=?", key)) throw DirectoryError(key + " is already a user");
  if (exists(c, "SELECT 1 FROM groups WHERE grp=?", key)) throw DirectoryError(key + " is already a group");
  if (key == target.lookup_key()) throw DirectoryError("an alias cannot point to itself");
  Stmt(c.db, "INSERT OR IGNORE INTO aliases(alias, domain, target) VALUES(?,?,?)", &c.cache)
      .bind(1, key)
      .bind(2, alias.domain)
      .bind(3, stored_target(c, target))
      .step();
}

void Directory::remove_alias(const Address& alias) {
  Writing w(*this);
  DbConn& c = *writer_;
  if (!exists(c, "SELECT 1 FROM aliases WHERE alias=?", alias.lookup_key()))
    throw DirectoryError("alias " + alias.lookup_key() + " does not exist");
  Stmt(c.db, "DELETE FROM aliases WHERE alias=?", &c.cache).bind(1, alias.lookup_key()).step();
}

std::vector<std::pair<std::string, std::string>> Directory::list_aliases() {
  auto lease = reader();
  DbConn& c = *lease;
  Stmt s(c.db, "SELECT alias, target FROM aliases ORDER BY alias, target", &c.cache);
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) out.emplace_back(s.text(0), s.text(1));
  return out;
}

void Directory::add_group(const Address& group, const std::vector<Address>& members) {
  Writing w(*this);
  DbConn& c = *writer_;
  require_local_domain(group.domain);
  std::string key = group.lookup_key();
  if (members.empty()) throw DirectoryError("a group needs at least one --member");
  if (exists(c, "SELECT 1 FROM users WHERE key=?", key)) throw DirectoryError(key + " is already a user");
  if (exists(c, "SELECT 1 FROM aliases WHERE alias=?", key)) throw DirectoryError(key + " is already an alias");
  exec(c.db, "BEGIN IMMEDIATE");
  try {
    for (auto& m : members)
      Stmt(c.db, "INSERT OR IGNORE INTO groups(grp, domain, member) VALUES(?,?,?)", &c.cache)
          .bind(1, key)
          .bind(2, group.domain)
          .bind(3, stored_target(c, m))
          .step();
    exec(c.db, "COMMIT");
  } catch (...) {
    exec(c.db, "ROLLBACK");
    throw;
  }
}

void Directory::remove_group(const Address& group) {
  Writing w(*this);
  DbConn& c = *writer_;
  if (!exists(c, "SELECT 1 FROM groups WHERE grp=?", group.lookup_key()))
    throw DirectoryError("group " + group.lookup_key() + " does not exist");
  Stmt(c.db, "DELETE FROM groups WHERE grp=?", &c.cache).bind(1, group.lookup_key()).step();
}

std::vector<std::pair<std::string, std::string>> Directory::list_groups() {
  auto lease = reader();
  DbConn& c = *lease;
  Stmt s(c.db, "SELECT grp, member FROM groups ORDER BY grp, member", &c.cache);
  std::vector<std::pair<std::string, std::string>> out;
  while (s.step()) out.emplace_back(s.text(0), s.text(1));
  return out;
}

}  // namespace bulwark

namespace bulwark {

size_t Directory::import_rows(Directory& from) {
  static const char* const tables[] = {"domains", "users", "aliases", "groups", "delegations", "admins"};
  auto lease = from.reader();
  Writing w(*this);
  size_t added = 0;
  for (const char* t : tables) {
    std::vector<std::string> cols;
    {
      Stmt s(writer_->db, "SELECT name FROM pragma_table_info(?) ORDER BY cid");
      s.bind(1, std::string(t));
      while (s.step()) cols.push_back(s.text(0));
    }
    std::string names, marks;
    for (size_t i = 0; i < cols.size(); ++i) {
      names += (i ? ",\"" : "\"") + cols[i] + "\"";
      marks += i ? ",?" : "?";
    }
    std::string select = "SELECT " + names + " FROM \"" + t + "\"";
    std::string insert = "INSERT OR IGNORE INTO \"" + std::string(t) + "\"(" + names + ") VALUES(" + marks + ")";
    sqlite3_stmt* src = nullptr;
    if (sqlite3_prepare_v2((*lease).db, select.c_str(), -1, &src, nullptr) != SQLITE_OK)
      throw DirectoryError(std::string("directory: cannot read ") + t + ": " + sqlite3_errmsg((*lease).db));
    while (sqlite3_step(src) == SQLITE_ROW) {
      Stmt ins(writer_->db, insert.c_str());
      for (int i = 0; i < int(cols.size()); ++i) {
        if (sqlite3_column_type(src, i) == SQLITE_NULL) continue;
        auto p = reinterpret_cast<const char*>(sqlite3_column_text(src, i));
        ins.bind(i + 1, std::string(p ? p : "", size_t(sqlite3_column_bytes(src, i))));
      }
      ins.step();
      added += size_t(sqlite3_changes(writer_->db));
    }
    sqlite3_finalize(src);
  }
  return added;
}

}  // namespace bulwark
