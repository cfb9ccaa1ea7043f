// Session: the folder commands of the authenticated state (RFC 9051 6.3) -- LIST and
// LSUB with LIST-EXTENDED/LIST-STATUS/SPECIAL-USE, STATUS, CREATE, DELETE, RENAME,
// SUBSCRIBE, UNSUBSCRIBE -- and folder names in and out (modified UTF-7 or UTF-8).
#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "core/strings.hpp"
#include "imap/mutf7.hpp"
#include "imap/session.hpp"

namespace bulwark::imap {
namespace {

// RFC 9051 6.3.9: "*" matches anything, "%" anything but the separator. Dynamic
// programming over (pattern, name) positions: O(|pattern| x |name|) whatever the
// pattern -- a backtracking matcher is exponential in the wildcards a client sends.
bool matches(std::string_view pat, std::string_view name) {
  size_t n = name.size();
  std::vector<char> next(n + 1, 0), row(n + 1, 0);
  next[n] = 1;  // the empty pattern matches the empty rest
  for (size_t i = pat.size(); i-- > 0;) {
    char p = pat[i];
    for (size_t j = n + 1; j-- > 0;) {
      if (p == '*') row[j] = next[j] || (j < n && row[j + 1]);
      else if (p == '%') row[j] = next[j] || (j < n && name[j] != '/' && row[j + 1]);
      else row[j] = j < n && name[j] == p && next[j + 1];
    }
    std::swap(row, next);
  }
  return next[0];
}

// INBOX is case-insensitive, in names and in patterns.
std::string canonical(std::string_view name) {
  if (iequals(name.substr(0, 5), "INBOX") && (name.size() == 5 || name[5] == '/'))
    return "INBOX" + std::string(name.substr(5));
  return std::string(name);
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}
}  // namespace

std::optional<std::string> Session::name_arg(const Token& t) const {
  if (!t.is_astring()) return std::nullopt;
  if (rev2_ || utf8_) return canonical(t.value);
  auto u = mutf7_to_utf8(t.value);
  if (!u) return std::nullopt;
  return canonical(*u);
}

std::string Session::name_out(const std::string& utf8) const {
  return quote(rev2_ || utf8_ ? utf8 : utf8_to_mutf7(utf8));
}

std::string Session::status_items(const FolderStatus& st, const std::vector<std::string>& items) const {
  std::string s;
  for (auto& i : items) {
    if (!s.empty()) s += ' ';
    if (i == "MESSAGES") s += "MESSAGES " + std::to_string(st.messages);
    else if (i == "UIDNEXT") s += "UIDNEXT " + std::to_string(st.uidnext);
    else if (i == "UIDVALIDITY") s += "UIDVALIDITY " + std::to_string(st.uidvalidity);
    else if (i == "UNSEEN") s += "UNSEEN " + std::to_string(st.unseen);
    else if (i == "DELETED") s += "DELETED " + std::to_string(st.deleted);
    else if (i == "SIZE") s += "SIZE " + std::to_string(st.size);
    else if (i == "HIGHESTMODSEQ") s += "HIGHESTMODSEQ " + std::to_string(st.highestmodseq);
    else if (i == "RECENT") s += "RECENT " + std::to_string(st.recent);  // IMAP4rev1; rev2 dropped \Recent
  }
  return s;
}

namespace {
// STATUS items from a list token; nothing when one is unknown.
std::optional<std::vector<std::string>> status_list(const Token& t) {
  if (t.kind != Token::Kind::list || t.items.empty()) return std::nullopt;
  static const char* known[] = {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
                                "HIGHESTMODSEQ", "RECENT"};
  std::vector<std::string> items;
  for (auto& i : t.items) {
    if (i.kind != Token::Kind::atom) return std::nullopt;
    std::string u = to_upper(i.value);
    if (std::find(std::begin(known), std::end(known), u) == std::end(known)) return std::nullopt;
    items.push_back(u);
  }
  return items;
}
}  // namespace

void Session::cmd_list(Command& c, Output& out, bool lsub) {
  // LIST [(selection)] reference (pattern | (patterns)) [RETURN (options)]  (RFC 5258)
  std::vector<Token>& a = c.args;
  size_t i = 0;
  bool sel_subscribed = lsub, sel_special = false, ret_subscribed = false, ret_special = false, recursive = false;
  std::optional<std::vector<std::string>> ret_status;
  if (!lsub && i < a.size() && a[i].kind == Token::Kind::list) {
    for (auto& o : a[i].items) {
      std::string u = o.kind == Token::Kind::atom ? to_upper(o.value) : "";
      if (u == "SUBSCRIBED") sel_subscribed = true;
      else if (u == "SPECIAL-USE") sel_special = true;
      else if (u == "RECURSIVEMATCH") recursive = true;
      else if (u != "REMOTE") return bad(out, c.tag, "Unknown LIST selection option");
    }
    // RFC 5258 3.1: RECURSIVEMATCH only with an option it can recurse on
    if (recursive && !sel_subscribed && !sel_special)
      return bad(out, c.tag, "RECURSIVEMATCH needs another selection option, e.g. (SUBSCRIBED RECURSIVEMATCH)");
    ++i;
  }
  if (i + 2 > a.size()) return bad(out, c.tag, "Usage: LIST reference pattern");
  auto ref = name_arg(a[i]);
  if (!ref) return bad(out, c.tag, "Bad reference name");
  std::vector<std::string> patterns;
  const Token& pt = a[i + 1];
  if (pt.kind == Token::Kind::list && !lsub) {
    for (auto& p : pt.items) {
      auto s = name_arg(p);
      if (!s) return bad(out, c.tag, "Bad pattern");
      patterns.push_back(*s);
    }
  } else {
    auto s = name_arg(pt);
    if (!s) return bad(out, c.tag, "Bad pattern");
    patterns.push_back(*s);
  }
  i += 2;
  if (i < a.size()) {
    if (lsub || a[i].kind != Token::Kind::atom || !iequals(a[i].value, "RETURN") || i + 2 != a.size() ||
        a[i + 1].kind != Token::Kind::list)
      return bad(out, c.tag, "Usage: LIST ... RETURN (options)");
    const auto& opts = a[i + 1].items;
    for (size_t k = 0; k < opts.size(); ++k) {
      std::string u = opts[k].kind == Token::Kind::atom ? to_upper(opts[k].value) : "";
      if (u == "SUBSCRIBED") ret_subscribed = true;
      else if (u == "SPECIAL-USE") ret_special = true;
      else if (u == "CHILDREN") continue;  // always returned
      else if (u == "STATUS" && k + 1 < opts.size() && (ret_status = status_list(opts[k + 1]))) ++k;
      else return bad(out, c.tag, "Unknown LIST return option");
    }
  }
  const char* verb = lsub ? "LSUB" : "LIST";
  if (patterns.size() == 1 && patterns[0].empty() && !lsub) {  // the hierarchy delimiter
    out.bytes += "* LIST (\\Noselect) \"/\" \"\"\r\n";
    return tagged(out, c.tag, "OK", "LIST completed");
  }
  auto matched = [&](const std::string& name) {
    for (auto& p : patterns)
      if (matches(canonical(*ref + p), name)) return true;
    return false;
  };
  auto folders = mailbox_->folders();
  // Subscribed names below each name that the patterns do not reach themselves: LSUB
  // shows such a parent \Noselect (RFC 3501 6.3.9), LIST with RECURSIVEMATCH returns
  // it with CHILDINFO (RFC 5258 3.5) -- also a parent that is no folder at all.
  std::map<std::string, bool> parent_of_unmatched;  // name -> it exists
  if (lsub || (sel_subscribed && recursive)) {
    std::set<std::string> existing;
    for (auto& f : folders)
      if (f.exists) existing.insert(f.name);
    for (auto& f : folders) {
      if (!f.subscribed || matched(f.name)) continue;
      for (size_t slash = f.name.find('/'); slash != std::string::npos; slash = f.name.find('/', slash + 1)) {
        std::string parent = f.name.substr(0, slash);
        parent_of_unmatched.emplace(parent, existing.count(parent) > 0);
      }
    }
  }
  std::set<std::string> shown;
  auto line = [&](const std::string& name, std::string attrs, const std::string& extra) {
    shown.insert(name);
    out.bytes += std::string("* ") + verb + " (" + attrs + ") \"/\" " + name_out(name) + extra + "\r\n";
  };
  for (auto& f : folders) {
    if (!matched(f.name)) continue;
    bool childinfo = sel_subscribed && recursive && parent_of_unmatched.count(f.name);
    if (sel_subscribed && !f.subscribed) {
      if (!childinfo && !(lsub && parent_of_unmatched.count(f.name))) continue;
      // not subscribed itself: only as the parent of subscribed names
      if (lsub) line(f.name, "\\Noselect", "");
      else line(f.name, f.exists ? "" : "\\NonExistent", " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
      continue;
    }
    if (sel_special && f.special.empty()) continue;
    if (!f.exists && !sel_subscribed) continue;
    std::string attrs;
    auto add = [&](std::string_view s) { attrs += (attrs.empty() ? "" : " ") + std::string(s); };
    if (!f.exists) {
      if (!lsub) add("\\NonExistent");  // RFC 5258; LSUB shows a subscribed name as it is
    } else if (!lsub) {
      add(f.has_children ? "\\HasChildren" : "\\HasNoChildren");
    }
    if ((ret_subscribed || sel_subscribed) && f.subscribed && !lsub) add("\\Subscribed");
    if (!f.special.empty() && (!lsub || ret_special)) add(f.special);
    line(f.name, attrs, childinfo ? " (\"CHILDINFO\" (\"SUBSCRIBED\"))" : "");
    if (ret_status && f.exists) {
      std::string err;
      if (auto st = mailbox_->status(f.name, err))
        out.bytes += "* STATUS " + name_out(f.name) + " (" + status_items(*st, *ret_status) + ")\r\n";
    }
  }
  // parents that are no folder and no subscription: only their subscribed children say them
  for (auto& [name, exists] : parent_of_unmatched) {
    if (shown.count(name) || !matched(name)) continue;
    if (lsub) line(name, "\\Noselect", "");
    else line(name, "\\NonExistent", " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
  }
  tagged(out, c.tag, "OK", std::string(verb) + " completed");
}

void Session::cmd_status(Command& c, Output& out) {
  if (c.args.size() != 2) return bad(out, c.tag, "Usage: STATUS mailbox (items)");
  auto name = name_arg(c.args[0]);
  auto items = status_list(c.args[1]);
  if (!name || !items) return bad(out, c.tag, "Usage: STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN ...)");
  std::string err;
  auto st = mailbox_->status(*name, err);
  if (!st) return no(out, c.tag, err.empty() ? "[NONEXISTENT] No such mailbox" : err);
  out.bytes += "* STATUS " + name_out(*name) + " (" + status_items(*st, *items) + ")\r\n";
  tagged(out, c.tag, "OK", "STATUS completed");
}

void Session::cmd_folder_change(Command& c, Output& out) {
  const std::string& n = c.name;
  size_t want = n == "RENAME" ? 2 : 1;
  if (c.args.size() != want) return bad(out, c.tag, "Wrong number of arguments");
  auto a = name_arg(c.args[0]);
  std::optional<std::string> b = want == 2 ? name_arg(c.args[1]) : std::optional<std::string>("");
  if (!a || !b) return bad(out, c.tag, "Bad mailbox name");
  if (n == "CREATE" && !a->empty() && a->back() == '/') a->pop_back();  // RFC 9051 6.3.4
  std::string err;
  bool ok = n == "CREATE"        ? mailbox_->create(*a, err)
            : n == "DELETE"      ? mailbox_->remove(*a, err)
            : n == "RENAME"      ? mailbox_->rename(*a, *b, err)
            : n == "SUBSCRIBE"   ? mailbox_->subscribe(*a, true, err)
                                 : mailbox_->subscribe(*a, false, err);
  if (!ok) return no(out, c.tag, err);
  tagged(out, c.tag, "OK", n + " completed");
}

}  // namespace bulwark::imap
