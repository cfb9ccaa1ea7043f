// Session: SEARCH (RFC 9051 6.4.4) with ESEARCH return options (RFC 4731).
#include <algorithm>
#include <cctype>
#include <functional>

#include "core/strings.hpp"
#include "imap/message_text.hpp"
#include "imap/mime.hpp"
#include "imap/search_text.hpp"
#include "imap/session.hpp"

namespace bulwark::imap {

void Session::cmd_search(Command& c, Output& out, bool uid) {
  auto& a = c.args;
  size_t i = 0;
  bool esearch = rev2_;
  std::vector<std::string> ret;
  bool save = false;
  if (i < a.size() && a[i].kind == Token::Kind::atom && iequals(a[i].value, "RETURN")) {
    if (i + 1 >= a.size() || a[i + 1].kind != Token::Kind::list) return bad(out, c.tag, "Bad RETURN options");
    for (auto& o : a[i + 1].items) {
      std::string r = to_upper(o.value);
      if (r == "SAVE") save = true;
      else if (r == "MIN" || r == "MAX" || r == "ALL" || r == "COUNT") ret.push_back(r);
      else return bad(out, c.tag, "Unknown RETURN option: " + sanitize(o.value, 20));
    }
    esearch = true;
    i += 2;
  }
  // RETURN () (and IMAP4rev2's plain SEARCH) means ALL; RETURN (SAVE) alone answers
  // nothing but the tagged OK
  if (esearch && ret.empty() && !save) ret = {"ALL"};
  if (save) saved_.clear();  // a failed SEARCH leaves "$" empty (RFC 5182 2.1)
  if (i < a.size() && a[i].kind == Token::Kind::atom && iequals(a[i].value, "CHARSET")) {
    if (i + 1 >= a.size()) return bad(out, c.tag, "CHARSET needs a name");
    std::string cs = to_upper(a[i + 1].value);
    if (cs != "UTF-8" && cs != "US-ASCII") return no(out, c.tag, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
    i += 2;
  }
  if (i >= a.size()) return bad(out, c.tag, "SEARCH needs a key");
  std::vector<Token> keys(a.begin() + long(i), a.end());
  bool used_modseq = false;  // the MODSEQ key: the answer says the highest modseq found
  std::vector<uint32_t> hits;  // UIDs
  std::string why;
  if (!search_hits(keys, hits, used_modseq, why)) return bad(out, c.tag, why);
  answer_search(c, out, uid, hits, used_modseq, ret, esearch, save);
}

bool Session::search_hits(const std::vector<Token>& keys, std::vector<uint32_t>& hits, bool& used_modseq,
                          std::string& why) {
  const auto& msgs = folder_->messages();
  // NOT and OR nest without parentheses (those the reader bounds already): a line of
  // 16,000 NOTs must not become 16,000 frames on an I/O thread's stack
  constexpr int max_nesting = 200;
  int nesting = 0;
  struct Leave {
    int& n;
    ~Leave() { --n; }
  };
  std::string error;
  std::optional<std::string> decoded;  // the current message's text as BODY searches it
  // Evaluates keys[k...] as one key for message m; advances k. nullopt: bad syntax.
  std::function<std::optional<bool>(const std::vector<Token>&, size_t&, const MessageRef&, size_t,
                                    std::optional<std::string>&)>
      key = [&](const std::vector<Token>& ks, size_t& k, const MessageRef& m, size_t seq,
                std::optional<std::string>& content) -> std::optional<bool> {
    Leave leave{++nesting};
    if (nesting > max_nesting) {
      why = "Search keys nested too deeply";
      return std::nullopt;
    }
    if (k >= ks.size()) return std::nullopt;
    const Token& t = ks[k++];
    if (t.kind == Token::Kind::list) {
      bool all = true;
      size_t j = 0;
      while (j < t.items.size()) {
        auto r = key(t.items, j, m, seq, content);
        if (!r) return std::nullopt;
        all = all && *r;
      }
      return all;
    }
    if (t.kind != Token::Kind::atom) return std::nullopt;
    std::string u = to_upper(t.value);
    auto arg = [&]() -> const Token* { return k < ks.size() ? &ks[k++] : nullptr; };
    auto has = [&](char l) { return m.flags.find(l) != std::string::npos; };
    auto text = [&]() -> const std::string& {
      if (!content) {
        std::string e;
        content = folder_->content(m.uid, e).value_or("");
      }
      return *content;
    };
    if (u == "ALL") return true;
    if (u == "SEEN") return has('S');
    if (u == "UNSEEN") return !has('S');
    if (u == "NEW") return recent(m.uid) && !has('S');  // RECENT and UNSEEN
    if (u == "ANSWERED") return has('R');
    if (u == "UNANSWERED") return !has('R');
    if (u == "DELETED") return has('T');
    if (u == "UNDELETED") return !has('T');
    if (u == "FLAGGED") return has('F');
    if (u == "UNFLAGGED") return !has('F');
    if (u == "DRAFT") return has('D');
    if (u == "UNDRAFT") return !has('D');
    if (u == "RECENT") return recent(m.uid);
    if (u == "OLD") return !recent(m.uid);
    if (u == "NOT") {
      auto r = key(ks, k, m, seq, content);
      if (!r) return std::nullopt;
      return !*r;
    }
    if (u == "OR") {
      auto r1 = key(ks, k, m, seq, content);
      auto r2 = key(ks, k, m, seq, content);
      if (!r1 || !r2) return std::nullopt;
      return *r1 || *r2;
    }
    if (u == "KEYWORD" || u == "UNKEYWORD") {
      const Token* kw = arg();
      if (!kw) return std::nullopt;
      char letter = 0;
      for (size_t l = 0; l < keywords_.size(); ++l)
        if (!keywords_[l].empty() && iequals(keywords_[l], kw->value)) letter = char('a' + l);
      return (letter && has(letter)) == (u == "KEYWORD");
    }
    if (u == "MODSEQ") {  // MODSEQ ["/flags/<flag>" priv|shared|all] n (RFC 7162 3.1.5)
      const Token* n = arg();
      if (n && n->is_string()) {  // an entry name: bulwark keeps one modseq per message
        const Token* type = arg();
        if (n->value.rfind("/flags/", 0) != 0 || n->value.size() <= 7 || !type || type->kind != Token::Kind::atom ||
            !(iequals(type->value, "priv") || iequals(type->value, "shared") || iequals(type->value, "all")))
          return std::nullopt;
        n = arg();
      }
      auto v = n && n->kind == Token::Kind::atom ? number(n->value) : std::nullopt;
      if (!v) return std::nullopt;
      used_modseq = true;
      return m.modseq >= *v;
    }
    if (u == "LARGER" || u == "SMALLER") {
      const Token* n = arg();
      auto v = n ? number(n->value) : std::nullopt;
      if (!v) return std::nullopt;
      return u == "LARGER" ? m.size > *v : m.size < *v;
    }
    if (u == "UID") {
      const Token* s = arg();
      auto set = s ? message_set(s->value, true) : std::nullopt;
      if (!set) return std::nullopt;
      return std::binary_search(set->begin(), set->end(), m.uid);
    }
    if (u == "BEFORE" || u == "ON" || u == "SINCE") {
      const Token* d = arg();
      auto day = d ? search_date(d->value) : std::nullopt;
      if (!day) return std::nullopt;
      int64_t mday = m.internal_date - (m.internal_date % 86400 + 86400) % 86400;
      return u == "BEFORE" ? mday < *day : u == "ON" ? mday == *day : mday >= *day;
    }
    if (u == "SENTBEFORE" || u == "SENTON" || u == "SENTSINCE") {
      const Token* d = arg();
      auto day = d ? search_date(d->value) : std::nullopt;
      if (!day) return std::nullopt;
      // no or an unreadable Date: counts as the epoch, as Dovecot has it
      int64_t sent = sent_day(header_value(split_message(text()).first, "Date")).value_or(0);
      return u == "SENTBEFORE" ? sent < *day : u == "SENTON" ? sent == *day : sent >= *day;
    }
    if (u == "FROM" || u == "TO" || u == "CC" || u == "BCC" || u == "SUBJECT") {
      const Token* s = arg();
      if (!s || !s->is_astring()) return std::nullopt;
      std::string value = header_value(split_message(text()).first, u);
      if (u != "SUBJECT") value = address_search_text(value);  // names and addresses, not comments
      return fold(decode_words(value), true).find(fold(s->value, true)) != std::string::npos;
    }
    if (u == "HEADER") {
      const Token* h = arg();
      const Token* s = arg();
      if (!h || !s || !h->is_astring() || !s->is_astring()) return std::nullopt;
      std::string head = header_fields(split_message(text()).first, {h->value}, false);
      if (head.size() <= 2) return false;
      return fold(decode_words(head.substr(head.find(':') + 1)), true).find(fold(s->value, true)) != std::string::npos;
    }
    if (u == "BODY" || u == "TEXT") {
      const Token* s = arg();
      if (!s || !s->is_astring()) return std::nullopt;
      // decoded text parts (and enclosed messages' headers); TEXT adds the header
      if (!decoded) decoded = fold(searchable_text(parse_mime(text())), false);
      std::string needle = fold(s->value, false);
      if (decoded->find(needle) != std::string::npos) return true;
      return u == "TEXT" && fold(decode_words(split_message(text()).first), false).find(needle) != std::string::npos;
    }
    // a sequence set, or "$" (the saved result)
    if (!u.empty() && (std::isdigit(static_cast<unsigned char>(u[0])) || u[0] == '*' || u == "$")) {
      auto set = message_set(t.value, false);
      if (!set) return std::nullopt;
      return std::binary_search(set->begin(), set->end(), m.uid);
    }
    return std::nullopt;
  };
  for (size_t s = 0; s < view_.size(); ++s) {
    auto m = std::lower_bound(msgs.begin(), msgs.end(), view_[s],
                              [](const MessageRef& r, uint32_t x) { return r.uid < x; });
    if (m == msgs.end() || m->uid != view_[s]) continue;
    std::optional<std::string> content;
    decoded.reset();
    size_t k = 0;
    bool all = true;
    while (k < keys.size()) {
      auto r = key(keys, k, *m, s + 1, content);
      if (!r) {
        if (why.empty()) why = "Bad search key";
        return false;
      }
      all = all && *r;
    }
    if (all) hits.push_back(m->uid);
  }
  if (used_modseq) condstore_ = true;
  return true;
}

void Session::answer_search(Command& c, Output& out, bool uid, const std::vector<uint32_t>& hits, bool used_modseq,
                            const std::vector<std::string>& ret, bool esearch, bool save) {
  const auto& msgs = folder_->messages();
  auto highest = [&](const std::vector<uint32_t>& of) {
    uint64_t h = 0;
    for (uint32_t u : of) {
      auto m = std::lower_bound(msgs.begin(), msgs.end(), u, [](const MessageRef& r, uint32_t x) { return r.uid < x; });
      if (m != msgs.end() && m->uid == u) h = std::max(h, m->modseq);
    }
    return h;
  };
  if (save) {  // with MIN or MAX alone, only those are kept (RFC 5182 2.4)
    bool min = std::find(ret.begin(), ret.end(), "MIN") != ret.end();
    bool max = std::find(ret.begin(), ret.end(), "MAX") != ret.end();
    bool all = ret.empty() || std::find(ret.begin(), ret.end(), "ALL") != ret.end() ||
               std::find(ret.begin(), ret.end(), "COUNT") != ret.end();
    if (all || hits.empty()) saved_ = hits;
    else {
      if (min) saved_.push_back(hits.front());
      if (max && (!min || hits.size() > 1)) saved_.push_back(hits.back());
    }
  }
  std::vector<uint64_t> values;
  for (uint32_t h : hits) values.push_back(uid ? h : seq_of(h));
  if (!esearch) {
    std::string line = "* SEARCH";
    for (auto v : values) line += " " + std::to_string(v);
    if (used_modseq && !hits.empty()) line += " (MODSEQ " + std::to_string(highest(hits)) + ")";
    out.bytes += line + "\r\n";
  } else if (!ret.empty()) {
    std::string line = "* ESEARCH (TAG " + std::string("\"") + c.tag + "\")" + (uid ? " UID" : "");
    for (auto& r : ret) {
      if (r == "MIN" && !values.empty()) line += " MIN " + std::to_string(values.front());
      else if (r == "MAX" && !values.empty()) line += " MAX " + std::to_string(values.back());
      else if (r == "COUNT") line += " COUNT " + std::to_string(values.size());
      else if (r == "ALL" && !values.empty()) line += " ALL " + set_text(values);
    }
    if (used_modseq && !hits.empty()) {  // of the messages returned (RFC 7162 3.1.5, RFC 4731)
      bool whole = std::find(ret.begin(), ret.end(), "ALL") != ret.end() ||
                   std::find(ret.begin(), ret.end(), "COUNT") != ret.end();
      std::vector<uint32_t> returned;
      if (!whole) {
        if (std::find(ret.begin(), ret.end(), "MIN") != ret.end()) returned.push_back(hits.front());
        if (std::find(ret.begin(), ret.end(), "MAX") != ret.end()) returned.push_back(hits.back());
      }
      line += " MODSEQ " + std::to_string(highest(whole ? hits : returned));
    }
    out.bytes += line + "\r\n";
  }
  report_changes(out, uid);
  tagged(out, c.tag, "OK", uid ? "UID SEARCH completed" : "SEARCH completed");
}

}  // namespace bulwark::imap
