// store/pg_store.cpp: the cluster mode's mail store. See pg_store.hpp.
#include "store/pg_store.hpp"

#include <strings.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "crypt/crypt.hpp"
#include "store/folders.hpp"
#include "store/pg_detail.hpp"

namespace bulwark::store {

using namespace pg_detail;


void FolderWakeups::changed(int64_t folder) {
  heard(folder);
  std::function<void(int64_t)> p;
  {
    std::lock_guard lk(mu_);
    p = publish_;
  }
  if (p) p(folder);
}

void FolderWakeups::heard(int64_t folder) {
  std::lock_guard lk(mu_);
  if (seq_.size() >= kMaxFolders && !seq_.count(folder)) {
    seq_.clear();
    ++epoch_;
  }
  ++seq_[folder];
}

uint64_t FolderWakeups::seq(int64_t folder) const {
  std::lock_guard lk(mu_);
  auto it = seq_.find(folder);
  return epoch_ * 1000003 + (it == seq_.end() ? 0 : it->second);
}

void FolderWakeups::publish_with(std::function<void(int64_t)> f) {
  std::lock_guard lk(mu_);
  publish_ = std::move(f);
}

std::string to_crlf(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 30);
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) out += '\r';
    out += in[i];
  }
  return out;
}

PgStore::PgStore(pg::Settings s, size_t connections, const crypt::DataKey* key)
    : settings_(s), pool_(std::move(s), connections), blobs_(std::make_unique<PgBlobs>(key)), key_(key) {}

PgStore::~PgStore() = default;

std::optional<PgStore::Changes> PgStore::changes(int64_t folder, uint64_t since, std::string& error) {
  try {
    auto c = pool_.get();
    pg::Transaction t(*c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    auto f = c->exec("SELECT id, name, special, uidvalidity, uidnext, modseq, recent_from FROM mailboxes WHERE id=$1",
                     {std::to_string(folder)});
    if (!f.rows()) {
      error = "[NONEXISTENT] The folder was deleted";
      return std::nullopt;
    }
    Changes out;
    out.folder = folder_of(f, 0);
    auto m = c->exec("SELECT uid, modseq, flags, size, internal_date FROM messages WHERE mailbox=$1 AND modseq > $2 "
                     "ORDER BY uid",
                     {std::to_string(folder), std::to_string(since)});
    out.changed.reserve(size_t(m.rows()));
    for (int i = 0; i < m.rows(); ++i)
      out.changed.push_back({uint32_t(m.integer(i, 0)), uint64_t(m.integer(i, 1)), uint64_t(m.integer(i, 3)),
                             m.text(i, 2), m.integer(i, 4)});
    if (since) {
      auto x = c->exec("SELECT uid FROM expunged WHERE mailbox=$1 AND modseq > $2 ORDER BY uid",
                       {std::to_string(folder), std::to_string(since)});
      for (int i = 0; i < x.rows(); ++i) out.expunged.push_back(uint32_t(x.integer(i, 0)));
    }
    t.commit();
    return out;
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

std::optional<std::pair<uint64_t, uint32_t>> PgStore::stamp(int64_t folder, std::string& error) {
  try {
    auto c = pool_.get();
    auto r = c->exec("SELECT modseq, uidnext FROM mailboxes WHERE id=$1", {std::to_string(folder)});
    if (!r.rows()) return std::nullopt;
    return std::pair{uint64_t(r.integer(0, 0)), uint32_t(r.integer(0, 1))};
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

// A message's own head (the lines delivery put before the body), opened when sealed.
std::optional<std::string> PgStore::open_head(std::string head, std::string& error) const {
  if (!key_ || head.empty()) return head;
  std::string why;
  auto plain = crypt::open(*key_, head, &why);
  if (!plain) error = "a sealed message head fails its check: " + why;
  return plain;
}

std::optional<std::vector<std::pair<uint32_t, std::string>>> PgStore::headers(int64_t folder,
                                                                             const std::vector<uint32_t>& uids,
                                                                             std::string& error) {
  constexpr size_t kMaxHead = 256u << 10, kBatch = 1000;
  std::vector<std::pair<uint32_t, std::string>> out;
  try {
    auto c = pool_.get();
    for (size_t from = 0; from < uids.size(); from += kBatch) {
      std::vector<uint32_t> part(uids.begin() + long(from), uids.begin() + long(std::min(uids.size(), from + kBatch)));
      static_assert(kMaxHead == 262144);
      auto r = c->exec("SELECT m.uid, m.head, CASE WHEN b.sealed THEN b.data ELSE substring(b.data FROM 1 FOR 262144) END, "
                       "b.sealed FROM messages m JOIN blobs b ON b.id = m.blob WHERE m.mailbox=$1 AND m.uid = ANY($2::bigint[])",
                       {std::to_string(folder), int_array(part)});
      for (int i = 0; i < r.rows(); ++i) {
        auto head = open_head(r.bytes(i, 1), error);
        if (!head) return std::nullopt;
        auto body = blobs_->plain(r.bytes(i, 2), r.text(i, 3) == "t", error);
        if (!body) return std::nullopt;
        size_t end = body->find("\r\n\r\n");
        body->resize(std::min(end == std::string::npos ? body->size() : end + 2, kMaxHead));
        out.emplace_back(uint32_t(r.integer(i, 0)), *head + *body);
      }
    }
    return out;
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

std::optional<std::string> PgStore::content(int64_t folder, uint32_t uid, std::string& error) {
  try {
    auto c = pool_.get();
    auto r = c->exec("SELECT head, blob FROM messages WHERE mailbox=$1 AND uid=$2",
                     {std::to_string(folder), std::to_string(uid)});
    if (!r.rows()) return std::nullopt;
    auto head = open_head(r.bytes(0, 0), error);
    if (!head) return std::nullopt;
    auto body = blobs_->get(*c, r.bytes(0, 1), error);
    if (!body) return std::nullopt;
    return *head + *body;
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

std::optional<std::vector<uint32_t>> PgStore::append(int64_t folder, const std::vector<NewMessage>& msgs,
                                                     std::string& error) {
  try {
    auto c = pool_.get();
    std::vector<std::pair<std::string, uint64_t>> ids;  // blob, size
    for (auto& m : msgs) {
      std::string crlf = to_crlf(m.content);
      ids.emplace_back(blobs_->put(*c, crlf), crlf.size());
    }
    auto done = pg::in_transaction(*c, [&]() -> std::optional<std::vector<uint32_t>> {
      auto r = c->exec("UPDATE mailboxes SET uidnext = uidnext + $2, modseq = modseq + 1 WHERE id=$1 "
                       "RETURNING uidnext - $2, modseq",
                       {std::to_string(folder), std::to_string(msgs.size())});
      if (!r.rows()) {
        error = "[TRYCREATE] No such mailbox";
        return std::nullopt;
      }
      uint32_t first = uint32_t(r.integer(0, 0));
      std::string ms = r.text(0, 1);
      std::vector<uint32_t> uids;
      for (size_t i = 0; i < msgs.size(); ++i) {
        uids.push_back(first + uint32_t(i));
        c->exec("INSERT INTO messages(mailbox, uid, modseq, flags, size, internal_date, head, blob) "
                "VALUES($1, $2, $3, $4, $5, $6, ''::bytea, $7::bytea)",
                {std::to_string(folder), std::to_string(uids.back()), ms, msgs[i].flags, std::to_string(ids[i].second),
                 std::to_string(msgs[i].date ? msgs[i].date : now_seconds()), pg::bytea(ids[i].first)});
      }
      return uids;
    });
    if (done) wakeups_.changed(folder);
    return done;
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

bool PgStore::change_flags(int64_t folder, const std::vector<uint32_t>& uids, const FlagRule& next,
                           std::vector<std::pair<uint32_t, uint64_t>>& changed, std::string& error) {
  try {
    auto c = pool_.get();
    bool ok = pg::in_transaction(*c, [&] {
      changed.clear();
      auto f = c->exec("SELECT modseq FROM mailboxes WHERE id=$1 FOR UPDATE", {std::to_string(folder)});
      if (!f.rows()) {
        error = "[NONEXISTENT] The folder was deleted";
        return false;
      }
      uint64_t ms = uint64_t(f.integer(0, 0)) + 1;
      auto r = c->exec("SELECT uid, modseq, flags, size, internal_date FROM messages "
                       "WHERE mailbox=$1 AND uid = ANY($2::bigint[]) ORDER BY uid",
                       {std::to_string(folder), int_array(uids)});
      std::vector<uint32_t> which;
      std::vector<std::string> flags;
      for (int i = 0; i < r.rows(); ++i) {
        PgMessage m{uint32_t(r.integer(i, 0)), uint64_t(r.integer(i, 1)), uint64_t(r.integer(i, 3)), r.text(i, 2),
                    r.integer(i, 4)};
        auto now = next(m);
        if (!now || *now == m.flags) continue;
        which.push_back(m.uid);
        flags.push_back(*now);
        changed.emplace_back(m.uid, m.modseq);
      }
      if (which.empty()) return true;
      c->exec("UPDATE mailboxes SET modseq=$2 WHERE id=$1", {std::to_string(folder), std::to_string(ms)});
      c->exec("UPDATE messages m SET flags = v.f, modseq = $2 FROM unnest($3::bigint[], $4::text[]) AS v(u, f) "
              "WHERE m.mailbox=$1 AND m.uid = v.u",
              {std::to_string(folder), std::to_string(ms), int_array(which), text_array(flags)});
      return true;
    });
    if (ok && !changed.empty()) wakeups_.changed(folder);
    return ok;
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

bool PgStore::expunge(int64_t folder, const std::vector<uint32_t>& uids, bool only_deleted, std::string& error) {
  if (uids.empty()) return true;
  try {
    auto c = pool_.get();
    bool ok = pg::in_transaction(*c, [&] {
      auto f = c->exec("SELECT modseq FROM mailboxes WHERE id=$1 FOR UPDATE", {std::to_string(folder)});
      if (!f.rows()) return true;  // the folder went: so did its messages
      std::string ms = std::to_string(f.integer(0, 0) + 1);
      auto gone = c->exec("DELETE FROM messages WHERE mailbox=$1 AND uid = ANY($2::bigint[]) "
                          "AND ($3::boolean = false OR strpos(flags, 'T') > 0) RETURNING uid",
                          {std::to_string(folder), int_array(uids), only_deleted ? "t" : "f"});
      if (!gone.rows()) return true;
      std::vector<uint32_t> removed;
      for (int i = 0; i < gone.rows(); ++i) removed.push_back(uint32_t(gone.integer(i, 0)));
      c->exec("UPDATE mailboxes SET modseq=$2 WHERE id=$1", {std::to_string(folder), ms});
      c->exec("INSERT INTO expunged(mailbox, uid, modseq) SELECT $1, unnest($2::bigint[]), $3 "
              "ON CONFLICT (mailbox, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
              {std::to_string(folder), int_array(removed), ms});
      return true;
    });
    if (ok) wakeups_.changed(folder);
    return ok;
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

std::optional<std::vector<std::pair<uint32_t, uint32_t>>> PgStore::copy(int64_t from, int64_t to,
                                                                         const std::vector<uint32_t>& uids,
                                                                         std::string& error) {
  try {
    auto c = pool_.get();
    auto pairs = pg::in_transaction(*c, [&]() -> std::optional<std::vector<std::pair<uint32_t, uint32_t>>> {
      // Both rows locked, in id order (no deadlock with a copy the other way).
      auto lk = c->exec("SELECT id, array_to_string(keywords, E'\\n') FROM mailboxes WHERE id = ANY($1::bigint[]) "
                        "ORDER BY id FOR UPDATE",
                        {"{" + std::to_string(from) + "," + std::to_string(to) + "}"});
      std::vector<std::string> src_kw, dst_kw;
      bool have_to = false;
      for (int i = 0; i < lk.rows(); ++i) {
        if (lk.integer(i, 0) == from) src_kw = lines(lk.text(i, 1));
        if (lk.integer(i, 0) == to) {
          dst_kw = lines(lk.text(i, 1));
          have_to = true;
        }
      }
      if (!have_to) {
        error = "[TRYCREATE] No such mailbox";
        return std::nullopt;
      }
      // Keyword letters here -> letters there, by name (added there when there is room).
      std::string map;
      for (auto& n : src_kw) {
        auto it = std::find_if(dst_kw.begin(), dst_kw.end(), [&](auto& d) { return strcasecmp(d.c_str(), n.c_str()) == 0; });
        if (it == dst_kw.end() && dst_kw.size() < 26) {
          dst_kw.push_back(n);
          it = dst_kw.end() - 1;
        }
        map += it == dst_kw.end() ? ' ' : char('a' + (it - dst_kw.begin()));
      }
      auto src = c->exec("SELECT uid, flags, size, internal_date, head, blob FROM messages "
                         "WHERE mailbox=$1 AND uid = ANY($2::bigint[]) ORDER BY uid",
                         {std::to_string(from), int_array(uids)});
      std::vector<std::pair<uint32_t, uint32_t>> pairs;
      if (!src.rows()) return pairs;
      auto r = c->exec("UPDATE mailboxes SET uidnext = uidnext + $2, modseq = modseq + 1, keywords = $3::text[] "
                       "WHERE id=$1 RETURNING uidnext - $2, modseq",
                       {std::to_string(to), std::to_string(src.rows()), text_array(dst_kw)});
      uint32_t first = uint32_t(r.integer(0, 0));
      std::string ms = r.text(0, 1);
      for (int i = 0; i < src.rows(); ++i) {
        std::string flags;
        for (char l : src.text(i, 1)) {
          if (l >= 'a' && l <= 'z') {
            size_t k = size_t(l - 'a');
            if (k < map.size() && map[k] != ' ') flags += map[k];
          } else {
            flags += l;
          }
        }
        std::sort(flags.begin(), flags.end());
        uint32_t uid = first + uint32_t(i);
        c->exec("INSERT INTO messages(mailbox, uid, modseq, flags, size, internal_date, head, blob) "
                "VALUES($1, $2, $3, $4, $5, $6, $7::bytea, $8::bytea)",
                {std::to_string(to), std::to_string(uid), ms, flags, src.text(i, 2), src.text(i, 3), src.text(i, 4),
                 src.text(i, 5)});
        pairs.emplace_back(uint32_t(src.integer(i, 0)), uid);
      }
      return pairs;
    });
    if (pairs && !pairs->empty()) wakeups_.changed(to);
    return pairs;
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

uint32_t PgStore::claim_recent(int64_t folder, uint32_t upto, std::string& error) {
  try {
    auto c = pool_.get();
    auto r = c->exec("UPDATE mailboxes m SET recent_from = GREATEST(m.recent_from, $2) "
                     "FROM (SELECT id, recent_from AS old FROM mailboxes WHERE id=$1 FOR UPDATE) o "
                     "WHERE m.id = o.id RETURNING o.old",
                     {std::to_string(folder), std::to_string(upto)});
    return r.rows() ? uint32_t(r.integer(0, 0)) : upto;
  } catch (const pg::Error& e) {
    error = e.what();
    return upto;
  }
}

std::vector<std::string> PgStore::keywords(int64_t folder, std::string& error) {
  try {
    auto c = pool_.get();
    auto r = c->exec("SELECT array_to_string(keywords, E'\\n') FROM mailboxes WHERE id=$1", {std::to_string(folder)});
    return r.rows() ? lines(r.text(0, 0)) : std::vector<std::string>{};
  } catch (const pg::Error& e) {
    error = e.what();
    return {};
  }
}

std::optional<char> PgStore::keyword_letter(int64_t folder, std::string_view name, bool create, std::string& error) {
  try {
    auto c = pool_.get();
    return pg::in_transaction(*c, [&]() -> std::optional<char> {
      auto r = c->exec("SELECT array_to_string(keywords, E'\\n') FROM mailboxes WHERE id=$1 FOR UPDATE",
                       {std::to_string(folder)});
      if (!r.rows()) return std::nullopt;
      auto names = lines(r.text(0, 0));
      for (size_t i = 0; i < names.size(); ++i)
        if (names[i].size() == name.size() && strncasecmp(names[i].data(), name.data(), name.size()) == 0)
          return char('a' + i);
      if (!create) return std::nullopt;
      if (names.size() >= 26) {
        error = "[LIMIT] This folder has as many keywords as it can keep (26)";
        return std::nullopt;
      }
      c->exec("UPDATE mailboxes SET keywords = array_append(keywords, $2) WHERE id=$1",
              {std::to_string(folder), std::string(name)});
      return char('a' + names.size());
    });
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

// Into the owner's INBOX or Junk (made when missing), inside c's transaction: the new
// message's folder.
int64_t PgStore::deliver_in(pg::Conn& c, const std::string& owner, bool junk, const std::string& sealed_head,
                            size_t size, const std::string& blob, const std::string& origin) {
  ensure_defaults_in(c, owner);
  auto f = folder_in(c, owner, junk ? "Junk" : "INBOX");
  if (!f) {
    c.exec("INSERT INTO mailboxes(owner, name, special, uidvalidity) VALUES($1, 'Junk', '\\Junk', "
           "nextval('uidvalidity_seq')) ON CONFLICT DO NOTHING",
           {owner});
    f = folder_in(c, owner, "Junk");
  }
  if (!origin.empty()) {  // the folder's row locked first: two tries cannot both miss it
    c.exec("SELECT 1 FROM mailboxes WHERE id=$1 FOR UPDATE", {std::to_string(f->id)});
    if (c.exec("SELECT 1 FROM messages WHERE mailbox=$1 AND origin=$2", {std::to_string(f->id), origin}).rows())
      return 0;
  }
  auto r = c.exec("UPDATE mailboxes SET uidnext = uidnext + 1, modseq = modseq + 1 WHERE id=$1 "
                  "RETURNING uidnext - 1, modseq",
                  {std::to_string(f->id)});
  c.exec("INSERT INTO messages(mailbox, uid, modseq, flags, size, internal_date, head, blob, origin) "
         "VALUES($1, $2, $3, '', $4, $5, $6::bytea, $7::bytea, $8)",
         {std::to_string(f->id), r.text(0, 0), r.text(0, 1), std::to_string(size), std::to_string(now_seconds()),
          pg::bytea(sealed_head), pg::bytea(blob), origin.empty() ? pg::Param() : pg::Param(origin)});
  return f->id;
}

bool PgStore::deliver(const std::string& owner, bool junk, const std::string& head, std::string_view body,
                      std::string& error, const std::string& origin) {
  try {
    auto c = pool_.get();
    std::string crlf = to_crlf(body);
    std::string id = blobs_->put(*c, crlf);
    std::string h = to_crlf(head);
    int64_t into = 0;
    bool ok = pg::in_transaction(*c, [&] {
      into = deliver_in(*c, owner, junk, seal_head(key_, h), h.size() + crlf.size(), id, origin);
      return true;
    });
    if (ok && into) wakeups_.changed(into);
    return ok;
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

bool PgStore::deliver_all(const std::vector<std::string>& owners, bool junk, const std::string& sender,
                          std::string_view body, std::string& error, bool& unreachable, const Also& also,
                          const std::string& origin) {
  unreachable = false;
  try {
    auto c = pool_.get();
    std::string crlf = to_crlf(body);
    std::vector<std::string> order(owners);
    std::sort(order.begin(), order.end());
    order.erase(std::unique(order.begin(), order.end()), order.end());
    std::vector<int64_t> into;
    // The body in the same transaction: one commit for the whole message (it goes in
    // before any folder row is locked, so the locks are not held while it travels).
    pg::in_transaction(*c, [&] {
      into.clear();
      std::string id = blobs_->put(*c, crlf);
      for (auto& owner : order) {
        std::string h = "Return-Path: <" + sender + ">\r\nDelivered-To: " + owner + "\r\n";
        into.push_back(deliver_in(*c, owner, junk, seal_head(key_, h), h.size() + crlf.size(), id, origin));
      }
      if (also) also(*c, id, crlf);
      return true;
    });
    for (int64_t f : into) wakeups_.changed(f);
    return true;
  } catch (const pg::Error& e) {
    error = e.what();
    unreachable = e.connection;
    return false;
  }
}

std::optional<PgStore::Imported> PgStore::import_folder(const std::string& owner, const PgFolder& want,
                                                       const std::vector<std::string>& keywords, std::string& error) {
  try {
    auto c = pool_.get();
    return pg::in_transaction(*c, [&]() -> std::optional<Imported> {
      std::string name = is_inbox(want.name) ? "INBOX" : want.name;
      c->exec("INSERT INTO mailboxes(owner, name, special, uidvalidity, uidnext, modseq, recent_from, keywords) "
              "VALUES($1, $2, $3, $4, $5, $6, $7, $8::text[]) ON CONFLICT DO NOTHING",
              {owner, name, want.special, std::to_string(want.uidvalidity), std::to_string(want.uidnext),
               std::to_string(want.modseq), std::to_string(want.recent_from), text_array(keywords)});
      auto f = folder_in(*c, owner, name);
      if (!f) throw pg::Error("the folder " + name + " could not be made", "", false);
      if (f->uidvalidity != want.uidvalidity && f->uidnext == 1) {
        // Made in the cluster but never used (`user add` before the import): the old
        // folder's identity wins, so the old installation's clients need no resync.
        c->exec("UPDATE mailboxes SET uidvalidity=$2 WHERE id=$1", {std::to_string(f->id), std::to_string(want.uidvalidity)});
        f->uidvalidity = want.uidvalidity;
      }
      if (f->uidvalidity != want.uidvalidity) {
        error = "folder " + name + " of " + owner + " exists in the cluster with UIDVALIDITY " +
                std::to_string(f->uidvalidity) + ", not " + std::to_string(want.uidvalidity) +
                " as in the old installation: delete it there first, or its clients resync";
        return std::nullopt;
      }
      c->exec("UPDATE mailboxes SET uidnext = GREATEST(uidnext, $2), modseq = GREATEST(modseq, $3), "
              "recent_from = GREATEST(recent_from, $4), keywords = CASE WHEN cardinality(keywords) = 0 THEN $5::text[] "
              "ELSE keywords END WHERE id=$1",
              {std::to_string(f->id), std::to_string(want.uidnext), std::to_string(want.modseq),
               std::to_string(want.recent_from), text_array(keywords)});
      Imported out;
      out.id = f->id;
      auto r = c->exec("SELECT uid FROM messages WHERE mailbox=$1", {std::to_string(f->id)});
      for (int i = 0; i < r.rows(); ++i) out.uids.push_back(uint32_t(r.integer(i, 0)));
      return out;
    });
  } catch (const pg::Error& e) {
    error = e.what();
    return std::nullopt;
  }
}

bool PgStore::import_messages(int64_t folder, const std::vector<OldMessage>& msgs, std::string& error) {
  try {
    auto c = pool_.get();
    std::vector<std::pair<std::string, uint64_t>> ids;
    for (auto& m : msgs) {
      std::string crlf = to_crlf(m.content);
      ids.emplace_back(blobs_->put(*c, crlf), crlf.size());
    }
    return pg::in_transaction(*c, [&] {
      for (size_t i = 0; i < msgs.size(); ++i)
        c->exec("INSERT INTO messages(mailbox, uid, modseq, flags, size, internal_date, head, blob) "
                "VALUES($1, $2, $3, $4, $5, $6, ''::bytea, $7::bytea) ON CONFLICT DO NOTHING",
                {std::to_string(folder), std::to_string(msgs[i].uid), std::to_string(msgs[i].modseq), msgs[i].flags,
                 std::to_string(ids[i].second), std::to_string(msgs[i].date), pg::bytea(ids[i].first)});
      return true;
    });
  } catch (const pg::Error& e) {
    error = e.what();
    return false;
  }
}

namespace {
class AdvisoryHold : public PgStore::Hold {
 public:
  explicit AdvisoryHold(std::unique_ptr<pg::Conn> c) : c_(std::move(c)) {}  // closing it releases the lock

 private:
  std::unique_ptr<pg::Conn> c_;
};
}  // namespace

std::unique_ptr<PgStore::Hold> PgStore::try_hold(const std::string& owner, std::string& error) {
  try {
    auto c = pg::Conn::open(settings_);
    auto r = c->exec("SELECT pg_try_advisory_lock(('x' || substr(md5('pop3 ' || $1), 1, 16))::bit(64)::bigint)", {owner});
    if (r.text(0, 0) != "t") return nullptr;
    return std::make_unique<AdvisoryHold>(std::move(c));
  } catch (const pg::Error& e) {
    error = e.what();
    return nullptr;
  }
}

}  // namespace bulwark::store
