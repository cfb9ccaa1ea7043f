#include "net/imap_mailbox.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <set>

#include "logging/logs.hpp"
#include "net/sort_cache.hpp"
#include "store/folders.hpp"
#include "store/mailstore.hpp"

namespace bulwark {

namespace {

// What a store error may tell an IMAP client: plain words and an RFC 5530 code, never
// the server's paths or errno text. The detail goes to bulwark.log -- once per 10 s for
// a repeated cause, not a line per refused command. Texts already meant for the client
// (they start with a response code: "[TRYCREATE] ...", "[LIMIT] ...") pass as they are.
std::string for_client(const std::string& detail) {
  if (detail.empty() || detail.front() == '[') return detail;
  static logs::CauseThrottle throttle;
  if (auto held = throttle.allow(detail))
    logs::main().error("IMAP: {}{}", detail, *held ? fmt::format(" ({} more since)", *held) : std::string());
  if (detail.find(std::strerror(ENOSPC)) != std::string::npos || detail.find(std::strerror(EDQUOT)) != std::string::npos)
    return "[OVERQUOTA] Not enough disk space; nothing was changed";
  if (detail.find(std::strerror(EFBIG)) != std::string::npos) return "[LIMIT] The message is too large to store";
  return "[SERVERBUG] The mailbox cannot be changed now; nothing was changed";
}

class StoreOpenFolder : public imap::OpenFolder {
 public:
  StoreOpenFolder(std::string maildir, std::unique_ptr<store::Folder> f) : maildir_(std::move(maildir)), f_(std::move(f)) {
    rebuild();
  }
  uint32_t uidvalidity() const override { return f_->uidvalidity(); }
  uint32_t uidnext() const override { return f_->next_uid(); }
  uint64_t highestmodseq() const override { return f_->highest_modseq(); }
  const std::vector<imap::MessageRef>& messages() const override { return refs_; }
  uint32_t claim_recent() override { return f_->claim_recent(f_->next_uid()); }
  uint32_t recent_from() override { return f_->recent_from(); }
  bool refresh(std::string& error) override {
    if (!f_->maybe_changed()) return true;  // IDLE asks every second: three stat calls
    if (!f_->sync(error)) return false;
    rebuild();
    return true;
  }
  std::optional<std::string> content(uint32_t uid, std::string& error) override {
    const auto& msgs = f_->messages();  // by UID
    auto found = std::lower_bound(msgs.begin(), msgs.end(), uid,
                                  [](const store::Message& m, uint32_t u) { return m.uid < u; });
    if (found != msgs.end() && found->uid == uid) {
      const store::Message& m = *found;
      std::string why;
      auto file = f_->read_message(m, &why);
      if (!file && errno == ENOENT) return std::nullopt;  // gone: another session expunged it
      auto raw = file ? file->all(&why) : std::nullopt;
      if (!raw) {
        error = "message " + std::to_string(uid) + " cannot be read: " + why;
        if (file) logs::main().error("IMAP: {} of {}: {}", error, maildir_, why);
        return std::nullopt;
      }
      std::string out;
      out.reserve(raw->size() + raw->size() / 30);
      const std::string& r = *raw;
      for (size_t i = 0; i < r.size();) {  // LF on disk, CRLF on the wire: whole lines at once
        size_t nl = r.find('\n', i);
        if (nl == std::string::npos) {
          out.append(r, i, std::string::npos);
          break;
        }
        out.append(r, i, nl - i);
        if (nl == 0 || r[nl - 1] != '\r') out += '\r';
        out += '\n';
        i = nl + 1;
      }
      return out;
    }
    return std::nullopt;
  }
  bool change_flags(const std::vector<uint32_t>& uids, const imap::FlagChange& change, imap::FlagChangeResult& result,
                    std::string& error) override {
    bool ok = f_->update_flags(
        uids,
        [&](const store::Message& m) -> std::optional<std::string> {
          if (change.unchanged_since && m.modseq > *change.unchanged_since) {
            result.modified.push_back(m.uid);
            return std::nullopt;
          }
          return imap::apply_change(m.flags, change);
        },
        error, &result.changed);
    rebuild();
    if (!ok) error = for_client(error);
    return ok;
  }
  KeyBatch keys(const std::vector<uint32_t>& uids, std::string& error, unsigned ranked) override {
    KeyBatch b;
    b.hold.push_back(sort_key_cache().get(f_->dir(), f_->uidvalidity(), uids, b.keys, ranked, &b.rank));
    const auto& msgs = f_->messages();  // by UID
    std::vector<std::pair<size_t, const store::Message*>> missing;  // (index in uids, message)
    for (size_t i = 0; i < uids.size(); ++i) {
      if (b.keys[i]) continue;
      auto m = std::lower_bound(msgs.begin(), msgs.end(), uids[i],
                                [](const store::Message& x, uint32_t u) { return x.uid < u; });
      if (m != msgs.end() && m->uid == uids[i]) missing.emplace_back(i, &*m);
    }
    // The headers not kept yet (a folder's first SORT): a big batch is read by two
    // threads, this one and a helper, each half (reading the folder changes nothing in it).
    std::vector<std::optional<imap::SortKeys>> read(missing.size());
    auto read_part = [&](size_t from, size_t to, std::string& err) {
      for (size_t k = from; k < to; ++k) read[k] = header_keys(*missing[k].second, err);
    };
    if (missing.size() >= kParallelHeaders) {
      size_t half = missing.size() / 2;
      std::string other_error;
      auto other = std::async(std::launch::async, [&] {
        logs::crash_stack_for_this_thread();
        read_part(half, missing.size(), other_error);
      });
      read_part(0, half, error);
      other.get();
      if (error.empty()) error = other_error;
    } else {
      read_part(0, missing.size(), error);
    }
    bool kept_new = false;
    for (size_t k = 0; k < missing.size(); ++k) {
      if (!read[k]) continue;
      size_t i = missing[k].first;
      std::shared_ptr<const void> hold;
      b.keys[i] = sort_key_cache().put(f_->dir(), f_->uidvalidity(), uids[i], std::move(*read[k]), hold);
      if (b.keys[i] && hold != b.hold.back()) b.hold.push_back(std::move(hold));
      kept_new |= b.keys[i] != nullptr;
      if (!b.keys[i]) {  // no room in the cache: this SORT keeps its own
        b.own.push_back(std::move(*read[k]));
        b.keys[i] = &b.own.back();
      }
    }
    if (kept_new && ranked) {  // the ranks, now that the cache has them all (when it has)
      std::vector<const imap::SortKeys*> again;
      b.hold.push_back(sort_key_cache().get(f_->dir(), f_->uidvalidity(), uids, again, ranked, &b.rank));
    }
    return b;
  }
  static constexpr size_t kParallelHeaders = 2000;
  // A message's keys from its header: read until the blank line (at most 256 KiB -- a
  // header longer than that is cut there), never the body.
  std::optional<imap::SortKeys> header_keys(const store::Message& m, std::string& error) {
    std::string why;
    auto file = f_->read_message(m, &why);
    if (!file) {
      if (errno != ENOENT) error = "message " + std::to_string(m.uid) + " cannot be read: " + why;
      return std::nullopt;
    }
    std::string head;
    size_t end = std::string::npos;
    while (head.size() < (256u << 10)) {
      auto piece = file->next(8192, &why);
      if (!piece || piece->empty()) break;
      size_t from = head.size() >= 1 ? head.size() - 1 : 0;
      head += *piece;
      if ((end = head.find("\n\n", from)) != std::string::npos) break;
    }
    if (end != std::string::npos) head.resize(end + 1);
    return imap::sort_keys(head);
  }
  std::vector<std::string> keywords() override { return store::read_keywords(f_->dir()); }
  std::optional<char> keyword_letter(std::string_view name, bool create, std::string& error) override {
    return store::keyword_letter(f_->dir(), name, create, error);
  }
  bool expunge(const std::vector<uint32_t>& uids, bool only_deleted, std::string& error) override {
    f_->remove(uids, error, only_deleted);
    rebuild();
    if (!error.empty()) error = for_client(error);
    return error.empty();
  }
  std::optional<std::vector<std::pair<uint32_t, uint32_t>>> copy(const std::vector<uint32_t>& uids,
                                                                  const std::string& to, std::string& error) override {
    std::string why;
    if (!store::valid_folder_name(to, why) ||
        (!store::is_inbox(to) && !std::filesystem::exists(store::folder_dir(maildir_, to)))) {
      error = "[TRYCREATE] No such mailbox";
      return std::nullopt;
    }
    auto target = store::Folder::open(store::folder_dir(maildir_, to), error);
    if (!target) {
      error = for_client(error);
      return std::nullopt;
    }
    // keywords are letters per folder: map ours to the target's by name
    std::string letter_map;
    auto names = store::read_keywords(f_->dir());
    for (auto& n : names) {
      std::optional<char> l = n.empty() ? std::nullopt : store::keyword_letter(target->dir(), n, true, error);
      letter_map += l ? *l : ' ';
    }
    error.clear();  // a keyword the target has no room for is dropped from the copy
    auto pairs = f_->copy_to(*target, uids, error, letter_map);
    if (pairs.size() != uids.size() && !error.empty()) {
      error = for_client(error);
      return std::nullopt;
    }
    return pairs;
  }

 private:
  void rebuild() {
    refs_.clear();
    refs_.reserve(f_->messages().size());
    for (auto& m : f_->messages()) refs_.push_back({m.uid, m.modseq, m.vsize, m.flags, store::arrival_time(m.base)});
  }
  std::string maildir_;
  std::unique_ptr<store::Folder> f_;
  std::vector<imap::MessageRef> refs_;
};

}  // namespace

bool StoreMailbox::exists(const std::string& name) const {
  std::string why;
  return store::valid_folder_name(name, why) &&
         (store::is_inbox(name) || std::filesystem::exists(store::folder_dir(dir_, name)));
}

std::unique_ptr<imap::OpenFolder> StoreMailbox::open(const std::string& name, std::string& error) {
  if (!exists(name)) {
    error = "[NONEXISTENT] No such mailbox";
    return nullptr;
  }
  auto f = store::Folder::open(store::folder_dir(dir_, name), error);
  if (!f) {
    error = "[SERVERBUG] The mailbox cannot be read now";
    return nullptr;
  }
  return std::make_unique<StoreOpenFolder>(dir_, std::move(f));
}

std::optional<std::pair<uint32_t, uint32_t>> StoreMailbox::append(const std::string& name, std::string_view content,
                                                                  const std::string& flags,
                                                                  const std::vector<std::string>& keywords,
                                                                  int64_t internal_date, std::string& error) {
  if (!exists(name)) {
    error = "[TRYCREATE] No such mailbox";
    return std::nullopt;
  }
  auto f = store::Folder::open(store::folder_dir(dir_, name), error);
  std::optional<uint32_t> uid;
  std::string letters = flags;
  for (auto& k : keywords) {
    auto l = f ? store::keyword_letter(f->dir(), k, true, error) : std::nullopt;
    if (!l) f.reset();
    else letters += *l;
  }
  if (f) uid = f->add(content, letters, error, internal_date);
  if (!uid) {
    error = for_client(error);
    return std::nullopt;
  }
  return std::pair{*uid, f->uidvalidity()};
}

namespace {
class StoreAppendSink : public imap::AppendSink {
 public:
  StoreAppendSink(std::unique_ptr<store::Folder> f, std::unique_ptr<store::Folder::Incoming> in)
      : f_(std::move(f)), in_(std::move(in)) {}
  bool write(std::string_view data) override { return in_->write(data); }
  std::string error() const override { return for_client(in_->error()); }
  std::optional<std::pair<uint32_t, uint32_t>> commit(const std::string& flags, const std::vector<std::string>& keywords,
                                                      int64_t internal_date, std::string& error) override {
    std::string letters = flags;
    for (auto& k : keywords) {
      auto l = store::keyword_letter(f_->dir(), k, true, error);
      if (!l) {
        error = for_client(error);
        return std::nullopt;
      }
      letters += *l;
    }
    auto uid = in_->finish(*f_, letters, internal_date, error);
    if (!uid) {
      error = for_client(error);
      return std::nullopt;
    }
    return std::pair{*uid, f_->uidvalidity()};
  }
  store::Folder::Incoming& incoming() { return *in_; }
  const std::string& dir() const { return f_->dir(); }

 private:
  std::unique_ptr<store::Folder> f_;
  std::unique_ptr<store::Folder::Incoming> in_;
};
}  // namespace

std::optional<imap::Appended> StoreMailbox::append_all(const std::string& name, std::vector<imap::AppendItem>& items,
                                                       std::string& error) {
  if (!exists(name)) {
    error = "[TRYCREATE] No such mailbox";
    return std::nullopt;
  }
  auto f = store::Folder::open(store::folder_dir(dir_, name), error);
  if (!f) {
    error = for_client(error);
    return std::nullopt;
  }
  // Every message complete in tmp/ first (those held in memory written now), then all
  // moved in at once: a failure on the way adds none of them.
  std::vector<std::unique_ptr<store::Folder::Incoming>> made;
  std::vector<store::Folder::Incoming*> ins;
  std::vector<std::string> letters;
  std::vector<int64_t> times;
  for (auto& it : items) {
    store::Folder::Incoming* in = nullptr;
    if (auto* sink = dynamic_cast<StoreAppendSink*>(it.sink); sink && sink->dir() == f->dir()) {
      in = &sink->incoming();
    } else if (!it.sink) {
      made.push_back(f->incoming(error));
      if (!made.back() || !made.back()->write(it.content)) {
        error = for_client(made.back() ? made.back()->error() : error);
        return std::nullopt;
      }
      in = made.back().get();
    } else {
      error = "[SERVERBUG] The message was written elsewhere";
      return std::nullopt;
    }
    std::string l = it.flags;
    for (auto& k : it.keywords) {
      auto letter = store::keyword_letter(f->dir(), k, true, error);
      if (!letter) {
        error = for_client(error);
        return std::nullopt;
      }
      l += *letter;
    }
    if (!in->complete(error)) {
      error = for_client(error);
      return std::nullopt;
    }
    ins.push_back(in);
    letters.push_back(l);
    times.push_back(it.date);
  }
  auto uids = f->add_all(ins, letters, times, error);
  if (!uids) {
    error = for_client(error);
    return std::nullopt;
  }
  return imap::Appended{f->uidvalidity(), std::move(*uids)};
}

std::unique_ptr<imap::AppendSink> StoreMailbox::begin_append(const std::string& name, std::string& error) {
  if (!exists(name)) return nullptr;
  auto f = store::Folder::open(store::folder_dir(dir_, name), error);
  auto in = f ? f->incoming(error) : nullptr;
  if (!in) return nullptr;
  return std::make_unique<StoreAppendSink>(std::move(f), std::move(in));
}

StoreMailbox::StoreMailbox(std::string maildir, const std::string& key) : dir_(std::move(maildir)) {
  std::string error;
  std::filesystem::create_directories(dir_);
  store::note_mailbox_owner(dir_, key, error);
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
  uint32_t recent = f->recent_from();
  st.uidnext = f->next_uid();
  st.uidvalidity = f->uidvalidity();
  st.highestmodseq = f->highest_modseq();
  for (auto& m : f->messages()) {
    st.size += m.vsize;
    st.unseen += m.flags.find('S') == std::string::npos;
    st.deleted += m.flags.find('T') != std::string::npos;
    st.recent += m.uid >= recent;
  }
  return st;
}

bool StoreMailbox::create(const std::string& name, std::string& error) {
  if (store::create_folder(dir_, name, error)) return true;
  if (error == "Folder already exists") error = "[ALREADYEXISTS] " + error;
  else if (error.find("cannot") == std::string::npos) error = "[CANNOT] " + error;
  else error = for_client(error);
  return false;
}

bool StoreMailbox::remove(const std::string& name, std::string& error) {
  if (store::delete_folder(dir_, name, error)) return true;
  if (error == "No such folder") error = "[NONEXISTENT] " + error;
  else if (error.find("cannot") != std::string::npos) error = for_client(error);
  else if (error.rfind("[", 0) != 0) error = "[CANNOT] " + error;
  return false;
}

bool StoreMailbox::rename(const std::string& from, const std::string& to, std::string& error) {
  if (store::is_inbox(from)) {
    // RFC 9051 6.3.6: the messages move to a new folder, INBOX stays (empty). A copy,
    // then a removal: a crash in between leaves them in both, never in neither.
    if (!create(to, error)) return false;
    auto inbox = store::Folder::open(dir_, error);
    auto target = inbox ? store::Folder::open(store::folder_dir(dir_, to), error) : nullptr;
    if (!target) {
      error = for_client(error);
      return false;
    }
    std::vector<uint32_t> uids;
    for (auto& m : inbox->messages()) uids.push_back(m.uid);
    error.clear();
    auto copied = inbox->copy_to(*target, uids, error);
    std::vector<uint32_t> done;
    for (auto& [source, dest] : copied) done.push_back(source);
    inbox->remove(done, error);
    if (done.size() != uids.size() || !error.empty()) {
      for_client(error);  // logged
      error = "[SERVERBUG] INBOX was renamed in part; the server's log says why";
      return false;
    }
    return true;
  }
  if (store::rename_folder(dir_, from, to, error)) return true;
  if (error == "No such folder") error = "[NONEXISTENT] " + error;
  else if (error == "Target folder already exists") error = "[ALREADYEXISTS] " + error;
  else if (error.find("cannot") != std::string::npos) error = for_client(error);
  else error = "[CANNOT] " + error;
  return false;
}

bool StoreMailbox::subscribe(const std::string& name, bool on, std::string& error) {
  std::string why;
  if (!store::valid_folder_name(name, why)) {
    error = "[CANNOT] " + why;
    return false;
  }
  if (store::set_subscribed(dir_, name, on, error)) return true;
  error = for_client(error);
  return false;
}

}  // namespace bulwark
