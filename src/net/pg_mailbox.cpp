#include "net/pg_mailbox.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "logging/logs.hpp"
#include "net/sort_cache.hpp"
#include "store/folders.hpp"

namespace bulwark {

std::string pg_for_client(const std::string& detail) {
  if (detail.empty() || detail.front() == '[') return detail;
  static logs::CauseThrottle throttle;
  if (auto held = throttle.allow(detail))
    logs::main().error("mail store: {}{}", detail, *held ? fmt::format(" ({} more since)", *held) : std::string());
  return "[UNAVAILABLE] The mail store cannot be reached now, try again later";
}

namespace {

class PgOpenFolder : public imap::OpenFolder {
 public:
  PgOpenFolder(store::PgStore& st, store::PgStore::Changes all) : st_(st), f_(std::move(all.folder)) {
    refs_.reserve(all.changed.size());
    for (auto& m : all.changed) refs_.push_back({m.uid, m.modseq, m.size, m.flags, m.internal_date});
  }
  uint32_t uidvalidity() const override { return f_.uidvalidity; }
  uint32_t uidnext() const override { return f_.uidnext; }
  uint64_t highestmodseq() const override { return f_.modseq; }
  const std::vector<imap::MessageRef>& messages() const override { return refs_; }
  uint32_t claim_recent() override {
    std::string error;
    return st_.claim_recent(f_.id, f_.uidnext, error);
  }
  uint32_t recent_from() override {
    std::string error;
    auto now = st_.changes(f_.id, f_.modseq, error);
    return now ? now->folder.recent_from : f_.uidnext;
  }
  bool refresh(std::string& error) override {
    // IDLE asks every second. While Redis carries every node's changes, PostgreSQL is
    // asked only when this folder's count moved, or every 10 s regardless.
    auto& w = st_.wakeups();
    auto now = std::chrono::steady_clock::now();
    uint64_t seq = w.seq(f_.id);  // before the query: a change during it moves it again
    if (w.live() && seq == seen_seq_ && now - last_asked_ < std::chrono::seconds(10)) return true;
    seen_seq_ = seq;
    last_asked_ = now;
    auto s = st_.stamp(f_.id, error);
    if (!s) {
      if (!error.empty()) error = pg_for_client(error);
      return error.empty();
    }
    if (s->first == f_.modseq && s->second == f_.uidnext) return true;
    return catch_up(error);
  }
  // SORT and THREAD keys: kept in the process's cache like a Maildir folder's; those not
  // kept are read a thousand headers per query, never the bodies.
  KeyBatch keys(const std::vector<uint32_t>& uids, std::string& error, unsigned ranked) override {
    KeyBatch b;
    std::string name = "pg:" + std::to_string(f_.id);
    b.hold.push_back(sort_key_cache().get(name, f_.uidvalidity, uids, b.keys, ranked, &b.rank));
    std::vector<uint32_t> missing;
    std::map<uint32_t, std::vector<size_t>> where;  // UID -> its places in uids
    for (size_t i = 0; i < uids.size(); ++i)
      if (!b.keys[i]) {
        if (where[uids[i]].empty()) missing.push_back(uids[i]);
        where[uids[i]].push_back(i);
      }
    if (missing.empty()) return b;
    auto heads = st_.headers(f_.id, missing, error);
    if (!heads) {
      error = pg_for_client(error);
      return b;
    }
    bool kept_new = false;
    for (auto& [uid, head] : *heads) {
      std::shared_ptr<const void> hold;
      auto keys = imap::sort_keys(head);
      const imap::SortKeys* kept = sort_key_cache().put(name, f_.uidvalidity, uid, std::move(keys), hold);
      if (kept) {
        kept_new = true;
        if (hold != b.hold.back()) b.hold.push_back(std::move(hold));
      } else {  // no room in the cache: this SORT keeps its own (put moves only what it keeps)
        b.own.push_back(std::move(keys));
        kept = &b.own.back();
      }
      for (size_t i : where[uid]) b.keys[i] = kept;
    }
    if (kept_new && ranked) {  // the ranks, now that the cache has them all (when it has)
      std::vector<const imap::SortKeys*> again;
      b.hold.push_back(sort_key_cache().get(name, f_.uidvalidity, uids, again, ranked, &b.rank));
    }
    return b;
  }
  std::optional<std::string> content(uint32_t uid, std::string& error) override {
    auto c = st_.content(f_.id, uid, error);
    if (!c && !error.empty()) logs::main().error("IMAP: message {} of {}: {}", uid, f_.name, error);
    return c;
  }
  bool change_flags(const std::vector<uint32_t>& uids, const imap::FlagChange& change, imap::FlagChangeResult& result,
                    std::string& error) override {
    std::vector<uint32_t> modified;
    bool ok = st_.change_flags(
        f_.id, uids,
        [&](const store::PgMessage& m) -> std::optional<std::string> {
          if (change.unchanged_since && m.modseq > *change.unchanged_since) {
            modified.push_back(m.uid);
            return std::nullopt;
          }
          return imap::apply_change(m.flags, change);
        },
        result.changed, error);
    if (!ok) {
      error = pg_for_client(error);
      return false;
    }
    std::sort(modified.begin(), modified.end());
    modified.erase(std::unique(modified.begin(), modified.end()), modified.end());  // a retried transaction
    result.modified = std::move(modified);
    std::string ignored;
    catch_up(ignored);
    return true;
  }
  bool expunge(const std::vector<uint32_t>& uids, bool only_deleted, std::string& error) override {
    if (!st_.expunge(f_.id, uids, only_deleted, error)) {
      error = pg_for_client(error);
      return false;
    }
    std::string ignored;
    catch_up(ignored);
    return true;
  }
  std::optional<std::vector<std::pair<uint32_t, uint32_t>>> copy(const std::vector<uint32_t>& uids,
                                                                  const std::string& to, std::string& error) override {
    auto target = st_.folder(f_owner(), to, error);
    if (!target) {
      error = error.empty() ? "[TRYCREATE] No such mailbox" : pg_for_client(error);
      return std::nullopt;
    }
    auto pairs = st_.copy(f_.id, target->id, uids, error);
    if (!pairs) error = pg_for_client(error);
    return pairs;
  }
  std::vector<std::string> keywords() override {
    std::string error;
    return st_.keywords(f_.id, error);
  }
  std::optional<char> keyword_letter(std::string_view name, bool create, std::string& error) override {
    auto l = st_.keyword_letter(f_.id, name, create, error);
    if (!l && !error.empty()) error = pg_for_client(error);
    return l;
  }
  void set_owner(std::string o) { owner_ = std::move(o); }

 private:
  const std::string& f_owner() const { return owner_; }
  // What changed since this view: changed and new messages by modseq, and expunges.
  bool catch_up(std::string& error) {
    auto ch = st_.changes(f_.id, f_.modseq, error);
    if (!ch) {
      error = pg_for_client(error);
      return false;
    }
    if (!ch->expunged.empty()) {
      std::set<uint32_t> gone(ch->expunged.begin(), ch->expunged.end());
      std::erase_if(refs_, [&](const imap::MessageRef& r) { return gone.count(r.uid) > 0; });
    }
    for (auto& m : ch->changed) {
      imap::MessageRef r{m.uid, m.modseq, m.size, m.flags, m.internal_date};
      auto it = std::lower_bound(refs_.begin(), refs_.end(), m.uid,
                                 [](const imap::MessageRef& x, uint32_t u) { return x.uid < u; });
      if (it != refs_.end() && it->uid == m.uid) *it = r;
      else refs_.insert(it, r);
    }
    f_ = ch->folder;
    return true;
  }
  store::PgStore& st_;
  store::PgFolder f_;
  uint64_t seen_seq_ = ~uint64_t(0);
  std::chrono::steady_clock::time_point last_asked_{};
  std::string owner_;
  std::vector<imap::MessageRef> refs_;
};

}  // namespace

// Made on the I/O thread: nothing is asked of PostgreSQL before the first command,
// which runs on the disk pool.
PgImapMailbox::PgImapMailbox(store::PgStore& store, std::string owner) : st_(store), owner_(std::move(owner)) {}

void PgImapMailbox::ready() {
  if (ready_) return;
  std::string error;
  ready_ = st_.ensure_defaults(owner_, error);  // a failure shows in the command's answer
}

std::vector<imap::FolderInfo> PgImapMailbox::folders() {
  ready();
  std::string error;
  auto all = st_.folders(owner_, error);
  if (!all) {
    pg_for_client(error);
    return {};
  }
  auto subs = st_.subscriptions(owner_, error);
  std::set<std::string> subscribed(subs.begin(), subs.end());
  std::set<std::string> names;
  for (auto& f : *all) names.insert(f.name);
  std::vector<imap::FolderInfo> out;
  for (auto& f : *all) {
    bool children = false;
    auto it = names.upper_bound(f.name);
    if (it != names.end() && it->rfind(f.name + "/", 0) == 0) children = true;
    out.push_back({f.name, f.special, children, subscribed.erase(f.name) > 0, true});
  }
  for (auto& s : subscribed) out.push_back({s, "", false, true, false});
  return out;
}

std::unique_ptr<imap::OpenFolder> PgImapMailbox::open(const std::string& name, std::string& error) {
  ready();
  auto f = st_.folder(owner_, name, error);
  if (!f) {
    error = error.empty() ? "[NONEXISTENT] No such mailbox" : pg_for_client(error);
    return nullptr;
  }
  auto all = st_.changes(f->id, 0, error);
  if (!all) {
    error = pg_for_client(error);
    return nullptr;
  }
  auto open = std::make_unique<PgOpenFolder>(st_, std::move(*all));
  open->set_owner(owner_);
  return open;
}

std::optional<std::pair<uint32_t, uint32_t>> PgImapMailbox::append(const std::string& name, std::string_view content,
                                                                   const std::string& flags,
                                                                   const std::vector<std::string>& keywords,
                                                                   int64_t internal_date, std::string& error) {
  std::vector<imap::AppendItem> items(1);
  items[0].content = content;
  items[0].flags = flags;
  items[0].keywords = keywords;
  items[0].date = internal_date;
  auto done = append_all(name, items, error);
  if (!done) return std::nullopt;
  return std::pair{done->uids.front(), done->uidvalidity};
}

std::optional<imap::Appended> PgImapMailbox::append_all(const std::string& name, std::vector<imap::AppendItem>& items,
                                                        std::string& error) {
  ready();
  auto f = st_.folder(owner_, name, error);
  if (!f) {
    error = error.empty() ? "[TRYCREATE] No such mailbox" : pg_for_client(error);
    return std::nullopt;
  }
  std::vector<store::NewMessage> msgs;
  for (auto& it : items) {
    if (it.sink) {  // not offered by this store (begin_append gives none)
      error = "[SERVERBUG] The message was written elsewhere";
      return std::nullopt;
    }
    std::string letters = it.flags;
    for (auto& k : it.keywords) {
      auto l = st_.keyword_letter(f->id, k, true, error);
      if (!l) {
        error = pg_for_client(error);
        return std::nullopt;
      }
      letters += *l;
    }
    std::sort(letters.begin(), letters.end());
    letters.erase(std::unique(letters.begin(), letters.end()), letters.end());
    msgs.push_back({it.content, letters, it.date});
  }
  auto uids = st_.append(f->id, msgs, error);
  if (!uids) {
    error = pg_for_client(error);
    return std::nullopt;
  }
  return imap::Appended{f->uidvalidity, std::move(*uids)};
}

std::optional<imap::FolderStatus> PgImapMailbox::status(const std::string& name, std::string& error) {
  ready();
  auto f = st_.folder(owner_, name, error);
  if (!f) {
    error = error.empty() ? "[NONEXISTENT] No such mailbox" : pg_for_client(error);
    return std::nullopt;
  }
  auto all = st_.changes(f->id, 0, error);
  if (!all) {
    error = pg_for_client(error);
    return std::nullopt;
  }
  imap::FolderStatus st;
  st.messages = uint32_t(all->changed.size());
  st.uidnext = all->folder.uidnext;
  st.uidvalidity = all->folder.uidvalidity;
  st.highestmodseq = all->folder.modseq;
  for (auto& m : all->changed) {
    st.size += m.size;
    st.unseen += m.flags.find('S') == std::string::npos;
    st.deleted += m.flags.find('T') != std::string::npos;
    st.recent += m.uid >= all->folder.recent_from;
  }
  return st;
}

bool PgImapMailbox::create(const std::string& name, std::string& error) {
  ready();
  if (st_.create(owner_, name, error)) return true;
  error = pg_for_client(error);
  return false;
}

bool PgImapMailbox::remove(const std::string& name, std::string& error) {
  ready();
  if (st_.remove(owner_, name, error)) return true;
  error = pg_for_client(error);
  return false;
}

bool PgImapMailbox::rename(const std::string& from, const std::string& to, std::string& error) {
  ready();
  if (st_.rename(owner_, from, to, error)) return true;
  error = pg_for_client(error);
  return false;
}

bool PgImapMailbox::subscribe(const std::string& name, bool on, std::string& error) {
  ready();
  std::string why;
  if (!store::valid_folder_name(name, why)) {
    error = "[CANNOT] " + why;
    return false;
  }
  if (st_.subscribe(owner_, name, on, error)) return true;
  error = pg_for_client(error);
  return false;
}

}  // namespace bulwark
