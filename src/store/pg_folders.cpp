// store/pg_folders.cpp: the cluster mail store's folders -- the defaults a user gets,
// CREATE, DELETE, RENAME, subscriptions. See pg_store.hpp.
#include <strings.h>

#include <algorithm>
#include <map>
#include <set>

#include "store/folders.hpp"
#include "store/pg_detail.hpp"
#include "store/pg_store.hpp"

namespace bulwark::store {

using namespace pg_detail;

std::optional<PgFolder> PgStore::folder_in(pg::Conn& c, const std::string& owner, const std::string& name) {
  auto r = c.exec(
      "SELECT id, name, special, uidvalidity, uidnext, modseq, recent_from FROM mailboxes "
      "WHERE owner=$1 AND name=$2",
      {owner, is_inbox(name) ? std::string("INBOX") : name});
  if (!r.rows()) return std::nullopt;
  return folder_of(r, 0);
}

bool PgStore::ensure_defaults_in(pg::Conn& c, const std::string& owner) {
  if (c.exec("SELECT 1 FROM mailboxes WHERE owner=$1 AND name='INBOX'", {owner}).rows()) return true;
  const char* insert =
      "INSERT INTO mailboxes(owner, name, special, uidvalidity) VALUES($1, $2, $3, nextval('uidvalidity_seq')) "
      "ON CONFLICT DO NOTHING";
  c.exec(insert, {owner, std::string("INBOX"), std::string()});
  for (auto& d : kDefaults) {
    c.exec(insert, {owner, std::string(d[0]), std::string(d[1])});
    c.exec("INSERT INTO subscriptions(owner, name) VALUES($1, $2) ON CONFLICT DO NOTHING", {owner, std::string(d[0])});
  }
  return true;
}

bool PgStore::ensure_defaults(const std::string& owner, std::string& error) {
  try {
    auto c = pool_.get();
    return ensure_defaults_in(*c, owner);
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

std::optional<std::vector<PgFolder>> PgStore::folders(const std::string& owner, std::string& error) {
  try {
    auto c = pool_.get();
    auto r = c->exec(
        "SELECT id, name, special, uidvalidity, uidnext, modseq, recent_from FROM mailboxes "
        "WHERE owner=$1 ORDER BY name <> 'INBOX', name",
        {owner});
    std::vector<PgFolder> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(folder_of(r, i));
    return out;
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

std::optional<PgFolder> PgStore::folder(const std::string& owner, const std::string& name, std::string& error) {
  try {
    auto c = pool_.get();
    return folder_in(*c, owner, name);
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

std::vector<std::string> PgStore::subscriptions(const std::string& owner, std::string& error) {
  std::vector<std::string> out;
  try {
    auto c = pool_.get();
    auto r = c->exec("SELECT name FROM subscriptions WHERE owner=$1 ORDER BY name", {owner});
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  } catch (const pg::Error& e) {
    error = e.what();
  }
  return out;
}

bool PgStore::create(const std::string& owner, const std::string& name, std::string& error) {
  if (!valid_folder_name(name, error)) {
    error = "[CANNOT] " + error;
    return false;
  }
  if (is_inbox(name)) {
    error = "[ALREADYEXISTS] Folder already exists";
    return false;
  }
  try {
    auto c = pool_.get();
    return pg::in_transaction(*c, [&] {
      // Missing parents too (RFC 9051 6.3.4).
      for (size_t slash = name.find('/'); slash != std::string::npos; slash = name.find('/', slash + 1))
        c->exec(
            "INSERT INTO mailboxes(owner, name, uidvalidity) VALUES($1, $2, nextval('uidvalidity_seq')) "
            "ON CONFLICT DO NOTHING",
            {owner, name.substr(0, slash)});
      auto r = c->exec(
          "INSERT INTO mailboxes(owner, name, special, uidvalidity) VALUES($1, $2, $3, "
          "nextval('uidvalidity_seq')) ON CONFLICT DO NOTHING RETURNING id",
          {owner, name, std::string(special_use(name))});
      if (!r.rows()) {
        error = "[ALREADYEXISTS] Folder already exists";
        return false;
      }
      return true;
    });
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

bool PgStore::remove(const std::string& owner, const std::string& name, std::string& error) {
  if (is_inbox(name)) {
    error = "[CANNOT] INBOX cannot be deleted";
    return false;
  }
  try {
    auto c = pool_.get();
    if (c->exec("SELECT 1 FROM mailboxes WHERE owner=$1 AND left(name, length($2) + 1) = $2 || '/'", {owner, name})
            .rows()) {
      error = "[HASCHILDREN] The folder has subfolders; delete them first";
      return false;
    }
    if (!c->exec("DELETE FROM mailboxes WHERE owner=$1 AND name=$2 RETURNING id", {owner, name}).rows()) {
      error = "[NONEXISTENT] No such folder";
      return false;
    }
    return true;
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

bool PgStore::rename(const std::string& owner, const std::string& from, const std::string& to, std::string& error) {
  if (!valid_folder_name(to, error)) {
    error = "[CANNOT] " + error;
    return false;
  }
  try {
    auto c = pool_.get();
    if (is_inbox(from)) {
      // RFC 9051 6.3.6: the messages move to a new folder; INBOX stays, empty.
      if (!create(owner, to, error)) return false;
      auto inbox = folder_in(*c, owner, "INBOX");
      auto target = folder_in(*c, owner, to);
      auto all = changes(inbox->id, 0, error);
      if (!all) return false;
      std::vector<uint32_t> uids;
      for (auto& m : all->changed) uids.push_back(m.uid);
      if (!copy(inbox->id, target->id, uids, error)) return false;
      return expunge(inbox->id, uids, false, error);
    }
    return pg::in_transaction(*c, [&] {
      if (!folder_in(*c, owner, from)) {
        error = "[NONEXISTENT] No such folder";
        return false;
      }
      if (is_inbox(to) || folder_in(*c, owner, to)) {
        error = "[ALREADYEXISTS] Target folder already exists";
        return false;
      }
      for (size_t slash = to.find('/'); slash != std::string::npos; slash = to.find('/', slash + 1))
        c->exec(
            "INSERT INTO mailboxes(owner, name, uidvalidity) VALUES($1, $2, nextval('uidvalidity_seq')) "
            "ON CONFLICT DO NOTHING",
            {owner, to.substr(0, slash)});
      c->exec(
          "UPDATE mailboxes SET name = $3 || substr(name, length($2) + 1) "
          "WHERE owner=$1 AND (name=$2 OR left(name, length($2) + 1) = $2 || '/')",
          {owner, from, to});
      return true;
    });
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

bool PgStore::subscribe(const std::string& owner, const std::string& name, bool on, std::string& error) {
  try {
    auto c = pool_.get();
    std::string n = is_inbox(name) ? "INBOX" : name;
    if (on)
      c->exec("INSERT INTO subscriptions(owner, name) VALUES($1, $2) ON CONFLICT DO NOTHING", {owner, n});
    else
      c->exec("DELETE FROM subscriptions WHERE owner=$1 AND name=$2", {owner, n});
    return true;
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

}  // namespace bulwark::store
