// Session: the selected state (RFC 9051 6.4) -- SELECT/EXAMINE, STORE, EXPUNGE,
// COPY/MOVE, CLOSE/UNSELECT, IDLE, and APPEND (authenticated state). FETCH is in
// fetch.cpp, SEARCH in search.cpp.
#include <algorithm>
#include <cctype>
#include <functional>
#include <charconv>
#include <ctime>

#include "core/strings.hpp"
#include "imap/message_text.hpp"
#include "imap/mime.hpp"
#include "imap/search_text.hpp"
#include "imap/session.hpp"

namespace bulwark::imap {
namespace {

// In the order RFC 9051 lists them (and Dovecot answers them)
const char* flag_names[][2] = {{"R", "\\Answered"}, {"F", "\\Flagged"}, {"T", "\\Deleted"}, {"S", "\\Seen"},
                               {"D", "\\Draft"}};

// A mailbox error as the text of a NO: with its response code, or [SERVERBUG].
std::string coded(const std::string& error) { return !error.empty() && error[0] == '[' ? error : "[SERVERBUG] " + error; }

std::optional<char> letter_of(std::string_view flag) {
  for (auto& f : flag_names)
    if (iequals(flag, f[1])) return f[0][0];
  return std::nullopt;
}


}  // namespace

std::string apply_change(const std::string& stored, const FlagChange& change) {
  std::string f = change.op == FlagChange::Op::replace ? change.letters : stored;
  if (change.op == FlagChange::Op::add) f += change.letters;
  if (change.op == FlagChange::Op::remove)
    std::erase_if(f, [&](char ch) { return change.letters.find(ch) != std::string::npos; });
  std::sort(f.begin(), f.end());
  f.erase(std::unique(f.begin(), f.end()), f.end());
  return f;
}

std::string Session::flags_text(const std::string& letters, uint32_t uid) const {
  std::string s = recent(uid) ? "\\Recent" : "";
  for (auto& f : flag_names)
    if (letters.find(f[0][0]) != std::string::npos) s += (s.empty() ? "" : " ") + std::string(f[1]);
  for (char l : letters)  // keywords
    if (l >= 'a' && l <= 'z' && size_t(l - 'a') < keywords_.size() && !keywords_[size_t(l - 'a')].empty())
      s += (s.empty() ? "" : " ") + keywords_[size_t(l - 'a')];
  return "(" + s + ")";
}

std::string Session::flag_list() const {
  std::string s = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";
  for (auto& k : keywords_)
    if (!k.empty()) s += " " + k;
  return s;
}

size_t Session::seq_of(uint32_t uid) const {
  auto it = std::lower_bound(view_.begin(), view_.end(), uid);
  return it != view_.end() && *it == uid ? size_t(it - view_.begin()) + 1 : 0;
}

namespace {
// A sequence set as (low, high) pairs in the order written; `*` is `star`.
std::optional<std::vector<std::pair<uint64_t, uint64_t>>> parse_set(std::string_view s, uint64_t star) {
  std::vector<std::pair<uint64_t, uint64_t>> r;
  for (size_t pos = 0; pos <= s.size();) {
    size_t comma = s.find(',', pos);
    std::string_view part = s.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    size_t colon = part.find(':');
    auto value = [&](std::string_view v) -> std::optional<uint64_t> {
      if (v == "*") return star;
      auto n = number(v);
      if (!n || *n == 0 || *n > UINT32_MAX) return std::nullopt;
      return n;
    };
    auto a = value(part.substr(0, colon));
    auto b = colon == std::string_view::npos ? a : value(part.substr(colon + 1));
    if (!a || !b) return std::nullopt;
    r.emplace_back(std::min(*a, *b), std::max(*a, *b));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return r;
}
}  // namespace

std::optional<std::vector<uint32_t>> Session::message_set(std::string_view s, bool uid) const {
  std::vector<uint32_t> out;
  if (s == "$") {  // the saved SEARCH result, less what was expunged since (RFC 5182)
    for (uint32_t u : saved_)
      if (std::binary_search(view_.begin(), view_.end(), u)) out.push_back(u);
    return out;
  }
  uint64_t star = uid ? (view_.empty() ? 0 : view_.back()) : view_.size();
  auto ranges = parse_set(s, star);
  if (!ranges) return std::nullopt;
  for (auto [lo, hi] : *ranges) {
    if (uid) {
      for (auto it = std::lower_bound(view_.begin(), view_.end(), uint32_t(std::min<uint64_t>(lo, UINT32_MAX)));
           it != view_.end() && *it <= hi; ++it)
        out.push_back(*it);
    } else {
      if (lo == 0 || hi > view_.size()) {
        if (view_.empty() || lo > view_.size()) return std::vector<uint32_t>{};  // "no such message" below
        hi = std::min<uint64_t>(hi, view_.size());
      }
      for (uint64_t q = lo; q <= hi; ++q) out.push_back(view_[q - 1]);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::optional<std::vector<std::pair<uint64_t, uint64_t>>> Session::uid_ranges(std::string_view s) const {
  auto r = parse_set(s, std::max<uint64_t>(folder_->uidnext(), 2) - 1);
  if (!r) return std::nullopt;
  std::sort(r->begin(), r->end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (auto& x : *r) {
    if (!merged.empty() && x.first <= merged.back().second + 1) merged.back().second = std::max(merged.back().second, x.second);
    else merged.push_back(x);
  }
  return merged;
}

std::string Session::vanished_in(const std::vector<std::pair<uint64_t, uint64_t>>& ranges) const {
  // Every UID below UIDNEXT in the ranges that the view does not hold: bulwark keeps no
  // modseq for expunged messages, and RFC 7162 3.2.5.1 lets a server report all of them.
  std::string set;
  auto add = [&](uint64_t lo, uint64_t hi) {
    set += (set.empty() ? "" : ",") + std::to_string(lo) + (hi > lo ? ":" + std::to_string(hi) : std::string());
  };
  uint64_t top = folder_->uidnext() ? folder_->uidnext() - 1 : 0;
  for (auto [lo, hi] : ranges) {
    hi = std::min(hi, top);
    if (lo > hi) continue;
    uint64_t cur = lo;
    for (auto it = std::lower_bound(view_.begin(), view_.end(), uint32_t(lo)); it != view_.end() && *it <= hi; ++it) {
      if (*it > cur) add(cur, *it - 1);
      cur = uint64_t(*it) + 1;
    }
    if (cur <= hi) add(cur, hi);
  }
  return set;
}

void Session::report_changes(Output& out, bool expunges_allowed) {
  if (!folder_) return;
  std::string error;
  if (!folder_->refresh(error)) return;
  const auto& now = folder_->messages();
  // A keyword letter above those looked up so far: another session may have added a
  // keyword. Looked up once per letter (a letter no name stands for, left by another
  // tool, must not make every IDLE tick read the file and tell FLAGS again).
  char highest = 0;
  for (auto& m : now)
    if (!m.flags.empty() && m.flags.back() >= 'a') highest = std::max(highest, m.flags.back());
  if (highest > keywords_checked_ && size_t(highest - 'a') >= keywords_.size()) {
    keywords_checked_ = highest;
    auto names = folder_->keywords();
    if (names != keywords_) {
      keywords_ = std::move(names);
      out.bytes += "* FLAGS (" + flag_list() + ")\r\n";
    }
  }
  if (expunges_allowed) {
    // gone: one walk over both (by UID), told highest sequence number first so that
    // no renumbering is needed in between, then the view compacted once
    std::vector<size_t> gone;
    auto it = now.begin();
    for (size_t i = 0; i < view_.size(); ++i) {
      while (it != now.end() && it->uid < view_[i]) ++it;
      if (it == now.end() || it->uid != view_[i]) gone.push_back(i);
    }
    if (qresync_ && !gone.empty()) {  // RFC 7162 3.2.10: UIDs, one response
      std::vector<uint64_t> uids;
      for (size_t g : gone) uids.push_back(view_[g]);
      out.bytes += "* VANISHED " + set_text(uids) + "\r\n";
    } else {
      for (size_t g = gone.size(); g-- > 0;) out.bytes += "* " + std::to_string(gone[g] + 1) + " EXPUNGE\r\n";
    }
    size_t kept = 0;
    for (size_t i = 0, g = 0; i < view_.size(); ++i) {
      if (g < gone.size() && gone[g] == i) {
        ++g;
        continue;
      }
      view_[kept] = view_[i];
      view_modseq_[kept++] = view_modseq_[i];
    }
    view_.resize(kept);
    view_modseq_.resize(kept);
    if (!gone.empty() && !recent_.empty())
      std::erase_if(recent_, [&](uint32_t u) { return !std::binary_search(view_.begin(), view_.end(), u); });
  }
  size_t known = view_.size();
  auto it = now.begin();  // both by UID: one walk, not a search per message
  for (size_t i = 0; i < view_.size(); ++i) {
    while (it != now.end() && it->uid < view_[i]) ++it;
    if (it == now.end() || it->uid != view_[i] || it->modseq == view_modseq_[i]) continue;
    view_modseq_[i] = it->modseq;
    out.bytes += "* " + std::to_string(i + 1) + " FETCH (UID " + std::to_string(it->uid) + " FLAGS " +
                 flags_text(it->flags, it->uid) + (condstore_ ? " MODSEQ (" + std::to_string(it->modseq) + ")" : "") +
                 ")\r\n";
  }
  uint32_t last = view_.empty() ? 0 : view_.back();
  for (auto& m : now)
    if (m.uid > last) {
      view_.push_back(m.uid);
      view_modseq_.push_back(m.modseq);
    }
  if (view_.size() != known) {
    out.bytes += "* " + std::to_string(view_.size()) + " EXISTS\r\n";
    size_t had = recent_.size();
    take_recent(known);
    if (!rev2_ && recent_.size() != had) out.bytes += "* " + std::to_string(recent_.size()) + " RECENT\r\n";
  }
}

void Session::take_recent(size_t from) {
  if (from >= view_.size()) return;
  uint32_t first = readonly_ ? folder_->recent_from() : folder_->claim_recent();
  for (size_t i = from; i < view_.size(); ++i)
    if (view_[i] >= first) recent_.push_back(view_[i]);
}

void Session::deselect() {
  folder_.reset();
  saved_.clear();
  keywords_.clear();
  view_.clear();
  view_modseq_.clear();
  recent_.clear();
  fetch_.reset();
  folder_name_.clear();
  state_ = State::authenticated;
}

void Session::cmd_select(Command& c, Output& out, bool readonly) {
  if (c.args.empty() || c.args.size() > 2) return bad(out, c.tag, "Usage: SELECT mailbox [(CONDSTORE)]");
  auto name = name_arg(c.args[0]);
  if (!name) return bad(out, c.tag, "Bad mailbox name");
  struct Resync {  // QRESYNC (uidvalidity modseq [known-uids [seq-match-data]]), RFC 7162 3.2.5
    uint64_t uidvalidity = 0, modseq = 0;
    std::string known;
  };
  std::optional<Resync> resync;
  if (c.args.size() == 2) {
    if (c.args[1].kind != Token::Kind::list) return bad(out, c.tag, "Bad SELECT parameters");
    const auto& ps = c.args[1].items;
    for (size_t k = 0; k < ps.size(); ++k) {
      if (ps[k].kind == Token::Kind::atom && iequals(ps[k].value, "CONDSTORE")) {
        condstore_ = true;
      } else if (ps[k].kind == Token::Kind::atom && iequals(ps[k].value, "QRESYNC")) {
        if (!qresync_) return bad(out, c.tag, "QRESYNC is not enabled (ENABLE QRESYNC first)");
        if (k + 1 >= ps.size() || ps[k + 1].kind != Token::Kind::list) return bad(out, c.tag, "Bad QRESYNC parameters");
        const auto& q = ps[++k].items;
        auto v = q.size() >= 2 ? number(q[0].value) : std::nullopt, m = q.size() >= 2 ? number(q[1].value) : std::nullopt;
        if (!v || !m || *v == 0 || q.size() > 4 || (q.size() >= 3 && q[2].kind != Token::Kind::atom) ||
            (q.size() == 4 && q[3].kind != Token::Kind::list))
          return bad(out, c.tag, "Bad QRESYNC parameters");
        resync = Resync{*v, *m, q.size() >= 3 ? q[2].value : std::string()};
        // seq-match-data is a hint for servers that forget expunges; bulwark reports all
      } else {
        return bad(out, c.tag, "Unknown SELECT parameter");
      }
    }
  }
  bool had = folder_ != nullptr;
  deselect();
  if (had) out.bytes += "* OK [CLOSED] Previous mailbox closed\r\n";
  std::string error;
  folder_ = mailbox_->open(*name, error);
  if (!folder_) return no(out, c.tag, error.empty() ? "[NONEXISTENT] No such mailbox" : error);
  folder_name_ = *name;
  readonly_ = readonly;
  for (auto& m : folder_->messages()) {
    view_.push_back(m.uid);
    view_modseq_.push_back(m.modseq);
  }
  state_ = State::selected;
  take_recent(0);  // EXAMINE looks, SELECT claims: one session per message sees it recent
  keywords_ = folder_->keywords();
  keywords_checked_ = 0;
  out.bytes += "* FLAGS (" + flag_list() + ")\r\n";
  out.bytes += "* " + std::to_string(view_.size()) + " EXISTS\r\n";
  if (!rev2_) {
    out.bytes += "* " + std::to_string(recent_.size()) + " RECENT\r\n";
    for (size_t i = 0; i < view_.size(); ++i)
      if (folder_->messages()[i].flags.find('S') == std::string::npos) {
        out.bytes += "* OK [UNSEEN " + std::to_string(i + 1) + "] First unseen\r\n";
        break;
      }
  }
  // \* : new keywords may be made (up to 26 per folder, Maildir's letters)
  out.bytes += "* OK [PERMANENTFLAGS (" + (readonly ? std::string() : flag_list() + " \\*") + ")] Flags permitted\r\n";
  out.bytes += "* OK [UIDVALIDITY " + std::to_string(folder_->uidvalidity()) + "] UIDs valid\r\n";
  out.bytes += "* OK [UIDNEXT " + std::to_string(folder_->uidnext()) + "] Predicted next UID\r\n";
  out.bytes += "* OK [HIGHESTMODSEQ " + std::to_string(folder_->highestmodseq()) + "] Highest\r\n";
  if (resync && resync->uidvalidity == folder_->uidvalidity()) {
    auto ranges = resync->known.empty() ? std::optional(std::vector<std::pair<uint64_t, uint64_t>>{{1, UINT32_MAX}})
                                        : uid_ranges(resync->known);
    if (!ranges) return bad(out, c.tag, "Bad known UIDs");
    std::string gone = vanished_in(*ranges);
    if (!gone.empty()) out.bytes += "* VANISHED (EARLIER) " + gone + "\r\n";
    const auto& msgs = folder_->messages();
    auto r = ranges->begin();
    for (size_t i = 0; i < msgs.size(); ++i) {  // changed since: flags and modseq
      while (r != ranges->end() && r->second < msgs[i].uid) ++r;
      if (r == ranges->end()) break;
      if (msgs[i].uid < r->first || msgs[i].modseq <= resync->modseq) continue;
      out.bytes += "* " + std::to_string(i + 1) + " FETCH (UID " + std::to_string(msgs[i].uid) + " FLAGS " +
                   flags_text(msgs[i].flags, msgs[i].uid) + " MODSEQ (" + std::to_string(msgs[i].modseq) + "))\r\n";
    }
  }
  tagged(out, c.tag, "OK", std::string(readonly ? "[READ-ONLY] EXAMINE" : "[READ-WRITE] SELECT") + " completed");
}

void Session::cmd_store(Command& c, Output& out, bool uid) {
  // STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] (flags)
  auto& a = c.args;
  if (a.size() < 3 || a[0].kind != Token::Kind::atom) return bad(out, c.tag, "Usage: STORE set +FLAGS (flags)");
  auto set = message_set(a[0].value, uid);
  if (!set) return bad(out, c.tag, "Bad sequence set");
  size_t i = 1;
  std::optional<uint64_t> unchanged_since;
  if (a[i].kind == Token::Kind::list) {
    if (a[i].items.size() != 2 || !iequals(a[i].items[0].value, "UNCHANGEDSINCE") ||
        !(unchanged_since = number(a[i].items[1].value)))
      return bad(out, c.tag, "Bad STORE modifier");
    condstore_ = true;
    ++i;
  }
  if (i + 2 > a.size() || a[i].kind != Token::Kind::atom) return bad(out, c.tag, "Usage: STORE set +FLAGS (flags)");
  std::string op = to_upper(a[i].value);
  bool silent = op.size() > 7 && op.substr(op.size() - 7) == ".SILENT";
  if (silent) op.resize(op.size() - 7);
  if (op != "FLAGS" && op != "+FLAGS" && op != "-FLAGS") return bad(out, c.tag, "Usage: STORE set +FLAGS (flags)");
  std::vector<Token> flag_tokens;
  if (a[i + 1].kind == Token::Kind::list) flag_tokens = a[i + 1].items;
  else
    for (size_t k = i + 1; k < a.size(); ++k) flag_tokens.push_back(a[k]);
  if (readonly_) return no(out, c.tag, "[READ-ONLY] The mailbox is read-only");
  std::string letters;
  size_t known_keywords = keywords_.size();
  bool any_keyword = false;
  for (auto& f : flag_tokens) {
    if (f.kind != Token::Kind::atom) return bad(out, c.tag, "Bad flag");
    if (auto l = letter_of(f.value)) {
      letters += *l;
    } else if (f.value.empty() || f.value[0] == '\\') {
      return bad(out, c.tag, "Unknown system flag " + sanitize(f.value, 40));
    } else {  // a keyword: its letter in this folder, made when it is being set
      any_keyword = true;
      std::string error;
      auto l = folder_->keyword_letter(f.value, op != "-FLAGS", error);
      if (l) letters += *l;
      else if (op != "-FLAGS") return no(out, c.tag, error.empty() ? "[LIMIT] No room for another keyword" : error);
    }
  }
  if (any_keyword) keywords_ = folder_->keywords();
  if (keywords_.size() != known_keywords) out.bytes += "* FLAGS (" + flag_list() + ")\r\n";
  FlagChange change;
  change.op = op == "FLAGS" ? FlagChange::Op::replace : op == "+FLAGS" ? FlagChange::Op::add : FlagChange::Op::remove;
  change.letters = letters;
  change.unchanged_since = unchanged_since;
  FlagChangeResult result;
  std::string error;
  if (!set->empty() && !folder_->change_flags(*set, change, result, error)) return no(out, c.tag, coded(error));
  std::sort(result.modified.begin(), result.modified.end());
  std::sort(result.changed.begin(), result.changed.end());
  // What the client is told: the flags as stored now (another session's change to
  // the same message included) with their modseq. .SILENT leaves out a message only
  // when the client can know its flags -- it had heard of the state this change was
  // made to -- and never under UNCHANGEDSINCE (RFC 7162 3.1.3).
  const auto& msgs = folder_->messages();
  for (uint32_t u : *set) {
    size_t q = seq_of(u);
    if (!q || std::binary_search(result.modified.begin(), result.modified.end(), u)) continue;
    auto m = std::lower_bound(msgs.begin(), msgs.end(), u, [](const MessageRef& r, uint32_t x) { return r.uid < x; });
    if (m == msgs.end() || m->uid != u) continue;  // expunged by another session: told later
    auto ch = std::lower_bound(result.changed.begin(), result.changed.end(), std::pair<uint32_t, uint64_t>{u, 0});
    bool changed_here = ch != result.changed.end() && ch->first == u;
    if (silent && !unchanged_since) {
      if (changed_here && ch->second == view_modseq_[q - 1]) view_modseq_[q - 1] = m->modseq;
      continue;  // otherwise report_changes tells what the client has not heard
    }
    view_modseq_[q - 1] = m->modseq;
    out.bytes += "* " + std::to_string(q) + " FETCH (" + (uid ? "UID " + std::to_string(u) + " " : std::string()) +
                 "FLAGS " + flags_text(m->flags, u) + (condstore_ ? " MODSEQ (" + std::to_string(m->modseq) + ")" : "") +
                 ")\r\n";
  }
  report_changes(out, uid);
  std::string text = uid ? "UID STORE completed" : "STORE completed";
  if (!result.modified.empty()) {
    std::string s;
    for (uint32_t u : result.modified)
      if (!uid && !seq_of(u)) continue;
      else s += (s.empty() ? "" : ",") + std::to_string(uid ? u : uint32_t(seq_of(u)));
    if (!s.empty()) text = "[MODIFIED " + s + "] " + text;
  }
  tagged(out, c.tag, "OK", text);
}

void Session::cmd_expunge(Command& c, Output& out, bool uid) {
  std::optional<std::vector<uint32_t>> only;
  if (uid) {
    if (c.args.size() != 1 || c.args[0].kind != Token::Kind::atom) return bad(out, c.tag, "Usage: UID EXPUNGE set");
    if (!(only = message_set(c.args[0].value, true))) return bad(out, c.tag, "Bad sequence set");
  } else if (!c.args.empty()) {
    return bad(out, c.tag, "EXPUNGE takes no arguments");
  }
  if (readonly_) return no(out, c.tag, "[READ-ONLY] The mailbox is read-only");
  std::vector<uint32_t> gone;
  for (auto& m : folder_->messages())
    if (m.flags.find('T') != std::string::npos &&
        (!only || std::binary_search(only->begin(), only->end(), m.uid)) && seq_of(m.uid))
      gone.push_back(m.uid);
  std::string error;
  if (!gone.empty() && !folder_->expunge(gone, true, error)) return no(out, c.tag, coded(error));
  report_changes(out);
  tagged(out, c.tag, "OK", uid ? "UID EXPUNGE completed" : "EXPUNGE completed");
}

void Session::cmd_copy(Command& c, Output& out, bool uid, bool move) {
  if (c.args.size() != 2 || c.args[0].kind != Token::Kind::atom) return bad(out, c.tag, "Usage: COPY set mailbox");
  auto set = message_set(c.args[0].value, uid);
  auto to = name_arg(c.args[1]);
  if (!set || !to) return bad(out, c.tag, "Usage: COPY set mailbox");
  if (move && readonly_) return no(out, c.tag, "[READ-ONLY] The mailbox is read-only");
  std::string error;
  auto pairs = folder_->copy(*set, *to, error);
  if (!pairs) return no(out, c.tag, error.empty() ? "[TRYCREATE] No such mailbox" : error);
  std::string code;
  if (!pairs->empty()) {
    std::string from, there;
    for (auto& [a, b] : *pairs) {
      from += (from.empty() ? "" : ",") + std::to_string(a);
      there += (there.empty() ? "" : ",") + std::to_string(b);
    }
    std::string err2;
    auto st = mailbox_->status(*to, err2);
    code = "[COPYUID " + std::to_string(st ? st->uidvalidity : 0) + " " + from + " " + there + "] ";
  }
  if (move) {
    if (!code.empty()) out.bytes += "* OK " + code + "Moved\r\n";
    std::vector<uint32_t> src;
    for (auto& [a, b] : *pairs) src.push_back(a);
    if (!src.empty() && !folder_->expunge(src, false, error)) return no(out, c.tag, coded(error));
    report_changes(out);
    return tagged(out, c.tag, "OK", std::string(uid ? "UID MOVE" : "MOVE") + " completed");
  }
  report_changes(out, uid);
  tagged(out, c.tag, "OK", code + (uid ? "UID COPY" : "COPY") + " completed");
}

void Session::cmd_append(Command& c, Output& out) {
  // APPEND mailbox 1*([(flags)] [date-time] literal)   (MULTIAPPEND, RFC 3502)
  auto& a = c.args;
  if (a.size() < 2) return bad(out, c.tag, "Usage: APPEND mailbox [(flags)] [date] {size}");
  auto name = name_arg(a[0]);
  if (!name) return bad(out, c.tag, "Bad mailbox name");
  std::vector<AppendItem> items;
  size_t next_streamed = 0;
  for (size_t i = 1; i < a.size();) {
    AppendItem item;
    if (a[i].kind == Token::Kind::list) {
      for (auto& f : a[i].items) {
        if (auto l = letter_of(f.value)) item.flags += *l;
        else if (f.value.empty() || f.value[0] == '\\' || f.kind != Token::Kind::atom)
          return bad(out, c.tag, "Unknown system flag");
        else item.keywords.push_back(f.value);
      }
      ++i;
    }
    if (i < a.size() && a[i].kind == Token::Kind::quoted) {
      auto d = date_time(a[i].value);
      if (!d || *d <= 0) return bad(out, c.tag, "Bad date-time (dd-Mon-yyyy hh:mm:ss +zzzz)");
      item.date = *d;
      ++i;
    }
    if (i >= a.size() || (a[i].kind != Token::Kind::literal && a[i].kind != Token::Kind::streamed))
      return bad(out, c.tag, "APPEND needs each message as a literal");
    if (a[i].kind == Token::Kind::streamed) {  // written to a file as it came, or held
      if (next_streamed >= streamed_.size()) return no(out, c.tag, "[SERVERBUG] The message was not received whole");
      Streamed& st = streamed_[next_streamed++];
      if (st.failed && st.sink) return no(out, c.tag, coded(st.sink->error()));
      if (st.failed) return no(out, c.tag, "[TOOBIG] The messages together are larger than APPENDLIMIT");
      if (!st.sink && st.buf.size() != a[i].size) return no(out, c.tag, "[SERVERBUG] The message was not received whole");
      if (st.sink) item.sink = st.sink.get();
      else item.content = st.buf;
    } else {
      item.content = a[i].value;
    }
    if (a[i].size == 0 && a[i].value.empty()) return no(out, c.tag, "An empty message is not stored");
    items.push_back(std::move(item));
    ++i;
  }
  std::string error;
  auto r = mailbox_->append_all(*name, items, error);
  streamed_.clear();  // committed, or their files go
  if (!r) return no(out, c.tag, error.empty() ? "[TRYCREATE] No such mailbox" : coded(error));
  if (folder_) report_changes(out);
  std::string uids;
  for (uint32_t u : r->uids) uids += (uids.empty() ? "" : ",") + std::to_string(u);
  tagged(out, c.tag, "OK", "[APPENDUID " + std::to_string(r->uidvalidity) + " " + uids + "] APPEND completed");
}

Output Session::idle_tick() {
  Output out;
  if (state_ != State::idle) return out;
  report_changes(out);
  return out;
}

}  // namespace bulwark::imap
