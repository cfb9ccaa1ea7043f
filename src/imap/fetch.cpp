// Session: FETCH and UID FETCH (RFC 9051 6.4.5): items, body sections by part number,
// partial ranges, BINARY, CHANGEDSINCE/VANISHED; answered in pieces (continue_fetch)
// so that a FETCH of a large folder never holds its whole answer in memory.
#include <algorithm>
#include <ctime>

#include "core/strings.hpp"
#include "imap/message_text.hpp"
#include "imap/mime.hpp"
#include "imap/search_text.hpp"
#include "imap/session.hpp"

namespace bulwark::imap {
namespace {

constexpr size_t fetch_chunk = 1 << 20;  // a FETCH answer is written in pieces of about this

std::string literal(std::string_view data) { return "{" + std::to_string(data.size()) + "}\r\n" + std::string(data); }

std::string internal_date(int64_t t) { return utc_time(t, "\"%d-%b-%Y %H:%M:%S +0000\""); }

}  // namespace

void Session::cmd_fetch(Command& c, Output& out, bool uid) {
  if (c.args.size() < 2 || c.args[0].kind != Token::Kind::atom)
    return bad(out, c.tag, "Usage: FETCH sequence-set items");
  auto set = message_set(c.args[0].value, uid);
  if (!set) return bad(out, c.tag, "Bad sequence set");
  std::vector<Token> items;
  const Token& spec = c.args[1];
  auto macro = [&](std::initializer_list<const char*> names) {
    for (auto n : names) items.push_back(Token{Token::Kind::atom, n, {}, 0, false});
  };
  // The macros of RFC 3501 6.4.5 (RFC 9051 keeps them)
  if (spec.kind == Token::Kind::atom && iequals(spec.value, "ALL"))
    macro({"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"});
  else if (spec.kind == Token::Kind::atom && iequals(spec.value, "FAST")) macro({"FLAGS", "INTERNALDATE", "RFC822.SIZE"});
  else if (spec.kind == Token::Kind::atom && iequals(spec.value, "FULL"))
    macro({"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"});
  else if (spec.kind == Token::Kind::list) items = spec.items;
  else if (spec.kind == Token::Kind::atom) items.push_back(spec);
  else return bad(out, c.tag, "Bad FETCH items");
  if (c.args.size() > 2) {  // (CHANGEDSINCE n [VANISHED]): CONDSTORE, QRESYNC
    if (c.args.size() != 3 || c.args[2].kind != Token::Kind::list) return bad(out, c.tag, "Bad FETCH modifiers");
    const auto& mods = c.args[2].items;
    std::optional<uint64_t> changed;
    bool vanished = false;
    for (size_t k = 0; k < mods.size(); ++k) {
      if (iequals(mods[k].value, "CHANGEDSINCE") && k + 1 < mods.size() && number(mods[k + 1].value))
        changed = number(mods[++k].value);
      else if (iequals(mods[k].value, "VANISHED")) vanished = true;
      else return bad(out, c.tag, "Bad FETCH modifiers");
    }
    if (!changed) return bad(out, c.tag, "Bad FETCH modifiers: CHANGEDSINCE needed");
    if (vanished && (!uid || !qresync_)) return bad(out, c.tag, "VANISHED needs UID FETCH and ENABLE QRESYNC");
    if (vanished) {  // RFC 7162 3.2.6: expunged UIDs of the set, before the FETCH responses
      auto ranges = uid_ranges(c.args[0].value);
      if (!ranges) return bad(out, c.tag, "Bad sequence set");
      std::string gone = vanished_in(*ranges);
      if (!gone.empty()) out.bytes += "* VANISHED (EARLIER) " + gone + "\r\n";
    }
    uint64_t since = *changed;
    condstore_ = true;
    std::erase_if(*set, [&](uint32_t u) {
      size_t q = seq_of(u);
      return q == 0 || view_modseq_[q - 1] <= since;
    });
    items.push_back(Token{Token::Kind::atom, "MODSEQ", {}, 0, false});
  }
  for (auto& it : items) {
    if (it.kind != Token::Kind::atom) return bad(out, c.tag, "Bad FETCH item");
    std::string u = to_upper(it.value);
    bool known = u == "UID" || u == "FLAGS" || u == "INTERNALDATE" || u == "RFC822.SIZE" || u == "RFC822" ||
                 u == "RFC822.HEADER" || u == "RFC822.TEXT" || u == "MODSEQ" || u.rfind("BODY[", 0) == 0 ||
                 u.rfind("BODY.PEEK[", 0) == 0 || u.rfind("BINARY[", 0) == 0 || u.rfind("BINARY.PEEK[", 0) == 0 ||
                 u.rfind("BINARY.SIZE[", 0) == 0 || u == "ENVELOPE" || u == "BODYSTRUCTURE" || u == "BODY";
    if (!known) return bad(out, c.tag, "FETCH item not supported: " + sanitize(it.value, 40));
    if (u.find('[') != std::string::npos && u.find(']') == std::string::npos) return bad(out, c.tag, "Missing ]");
    std::string sec = u.substr(u.find('[') == std::string::npos ? 0 : u.find('[') + 1);
    sec = sec.substr(0, sec.find(']'));
    bool numbered = !sec.empty() && sec[0] >= '0' && sec[0] <= '9';
    if (u.find('[') != std::string::npos && !(sec.empty() || sec == "HEADER" || sec == "TEXT" || numbered ||
                                               sec.rfind("HEADER.FIELDS", 0) == 0))
      return bad(out, c.tag, "Bad body section: " + sanitize(sec, 40));
    if (u.rfind("BINARY", 0) == 0 &&  // part numbers only (RFC 9051 6.4.5)
        !std::all_of(sec.begin(), sec.end(), [](char ch) { return (ch >= '0' && ch <= '9') || ch == '.'; }))
      return bad(out, c.tag, "BINARY takes a part number: " + sanitize(sec, 40));
    if (u == "MODSEQ") condstore_ = true;
  }
  if (uid) items.insert(items.begin(), Token{Token::Kind::atom, "UID", {}, 0, false});
  fetch_ = PendingFetch{c.tag, uid, std::move(*set), 0, std::move(items)};
  continue_fetch(out);
}

void Session::continue_fetch(Output& out) {
  PendingFetch& f = *fetch_;
  while (f.next < f.uids.size()) {
    if (out.bytes.size() >= fetch_chunk) {
      out.next = Next::more;
      return;
    }
    uint32_t uid = f.uids[f.next++];
    size_t q = seq_of(uid);
    const auto& msgs = folder_->messages();
    auto m = std::lower_bound(msgs.begin(), msgs.end(), uid, [](const MessageRef& r, uint32_t u) { return r.uid < u; });
    if (q == 0 || m == msgs.end() || m->uid != uid) continue;
    std::optional<std::string> content;
    std::optional<MimePart> mime;
    std::string error, parts, flags = m->flags;
    bool sent_uid = false, sent_flags = false, set_seen = false;
    size_t modseq_at = std::string::npos;  // where MODSEQ's value stands in `parts`
    size_t flags_at = std::string::npos;   // and the FLAGS list
    for (auto& it : f.items) {
      std::string u = to_upper(it.value);
      if (!parts.empty()) parts += ' ';
      if (u == "UID") {
        if (sent_uid) {
          parts.pop_back();
          continue;
        }
        sent_uid = true;
        parts += "UID " + std::to_string(uid);
      } else if (u == "FLAGS") {
        sent_flags = true;
        parts += "FLAGS ";
        flags_at = parts.size();
        parts += flags_text(flags, uid);
      } else if (u == "INTERNALDATE") {
        parts += "INTERNALDATE " + internal_date(m->internal_date);
      } else if (u == "RFC822.SIZE") {
        parts += "RFC822.SIZE " + std::to_string(m->size);
      } else if (u == "MODSEQ") {
        parts += "MODSEQ (";
        modseq_at = parts.size();
        parts += std::to_string(m->modseq) + ")";
      } else if (u == "ENVELOPE" || u == "BODYSTRUCTURE" || u == "BODY") {
        if (!content) content = folder_->content(uid, error);
        if (!content) {
          f.unreadable |= !error.empty();
          parts.clear();
          break;
        }
        if (!mime) mime = parse_mime(*content);
        parts += u == "ENVELOPE" ? "ENVELOPE " + envelope(mime->header) : u + " " + body_structure(*mime, u == "BODYSTRUCTURE");
      } else {
        if (!content) content = folder_->content(uid, error);
        if (!content) {  // gone meanwhile (another session expunged it), or unreadable
          f.unreadable |= !error.empty();
          parts.clear();
          break;
        }
        auto [head, text] = split_message(*content);
        bool binary = u.rfind("BINARY", 0) == 0, binary_size = u.rfind("BINARY.SIZE[", 0) == 0;
        bool peek = u.rfind("BODY.PEEK[", 0) == 0 || u.rfind("BINARY.PEEK[", 0) == 0 || u == "RFC822.HEADER" ||
                    binary_size;
        std::string name = u, data;
        if (u == "RFC822") data = *content;
        else if (u == "RFC822.HEADER") data = std::string(head);
        else if (u == "RFC822.TEXT") data = std::string(text);
        else {
          std::string sec = u.substr(u.find('[') + 1);
          std::string partial = sec.substr(sec.find(']') + 1);
          sec = sec.substr(0, sec.find(']'));
          std::string original = it.value.substr(it.value.find('[') + 1);
          original = original.substr(0, original.find(']'));
          std::string_view section_head = head;
          std::string what = sec;
          if (!sec.empty() && sec[0] >= '0' && sec[0] <= '9') {  // a MIME part: "1.2", "2.HEADER", "1.MIME"
            if (!mime) mime = parse_mime(*content);
            std::string spec = original.substr(0, original.find(' '));
            const MimePart* part = nullptr;
            auto found = mime_section(*mime, spec, what, &part);
            if (!found) {
              what = "NONE";
            } else if (what.empty() && binary && part && !part->is_multipart() && !part->is_message()) {
              // BINARY: the part's content with its transfer encoding undone (RFC 3516)
              auto decoded = decode_transfer(header_value(part->header, "Content-Transfer-Encoding"), *found);
              if (!decoded) f.unknown_cte = true;
              data = decoded ? std::move(*decoded) : std::string(), what = "DONE";
            } else if (what.empty() || what == "TEXT" || what == "MIME") {
              data = std::string(*found), what = "DONE";
            } else {
              section_head = *found;
            }
          }
          if (what == "DONE" || what == "NONE") {
            // (a part that does not exist is an empty string)
          } else if (what.empty()) data = *content;
          else if (what == "HEADER") data = std::string(section_head);
          else if (what == "TEXT") data = std::string(text);
          else {  // HEADER.FIELDS[.NOT] (names)
            bool exclude = what.find("HEADER.FIELDS.NOT") != std::string::npos;
            std::vector<std::string> names;
            size_t lp = original.find('('), rp = original.find(')');
            if (lp != std::string::npos && rp != std::string::npos)
              for (auto& n : [&] {
                     std::vector<std::string> v;
                     std::string_view in = std::string_view(original).substr(lp + 1, rp - lp - 1);
                     while (!in.empty()) {
                       auto [w, rest] = split_word(in);
                       if (!w.empty()) v.emplace_back(w);
                       in = rest;
                     }
                     return v;
                   }())
                names.push_back(n);
            data = header_fields(section_head, names, exclude);
          }
          name = (binary_size ? "BINARY.SIZE[" : binary ? "BINARY[" : "BODY[") + original + "]";
          if (binary_size) {
            parts += name + " " + std::to_string(data.size());
            continue;
          }
          if (!partial.empty()) {  // <offset.length>
            size_t dot = partial.find('.');
            auto off = number(partial.substr(1, dot == std::string::npos ? partial.size() - 2 : dot - 1));
            auto len = dot == std::string::npos ? std::optional<uint64_t>(UINT64_MAX)
                                                : number(partial.substr(dot + 1, partial.size() - dot - 2));
            uint64_t o = off ? *off : 0;
            data = o >= data.size() ? std::string() : data.substr(size_t(o), size_t(std::min<uint64_t>(len ? *len : 0, data.size() - o)));
            name += "<" + std::to_string(o) + ">";
          }
        }
        if (!peek && !readonly_ && flags.find('S') == std::string::npos) set_seen = true;
        // BINARY data with a NUL goes as literal8 (RFC 9051 4.3)
        parts += name + " " + (binary && data.find('\0') != std::string::npos ? "~" + literal(data) : literal(data));
      }
    }
    if (parts.empty()) continue;
    if (set_seen) {  // \Seen added to the flags as stored now (RFC 9051 6.4.5)
      FlagChange seen{FlagChange::Op::add, "S", std::nullopt};
      FlagChangeResult result;
      std::string error2;
      if (folder_->change_flags({uid}, seen, result, error2)) {
        const auto& msgs = folder_->messages();  // by UID
        auto r = std::lower_bound(msgs.begin(), msgs.end(), uid, [](const MessageRef& x, uint32_t v) { return x.uid < v; });
        if (r != msgs.end() && r->uid == uid) {
          flags = r->flags;
          std::string ms = std::to_string(r->modseq);
          // FLAGS and MODSEQ asked for already stand before any literal: the new values
          if (modseq_at != std::string::npos) {
            size_t len = parts.find(')', modseq_at) - modseq_at;
            parts.replace(modseq_at, len, ms);
            if (flags_at != std::string::npos && flags_at > modseq_at) flags_at = flags_at - len + ms.size();
          }
          if (flags_at != std::string::npos)
            parts.replace(flags_at, parts.find(')', flags_at) + 1 - flags_at, flags_text(flags, uid));
          if (!sent_flags)
            parts += " FLAGS " + flags_text(flags, uid) + (condstore_ && modseq_at == std::string::npos ? " MODSEQ (" + ms + ")" : "");
          // our own change is reported here, not again by report_changes
          if (!result.changed.empty() && result.changed.front().second == view_modseq_[q - 1])
            view_modseq_[q - 1] = r->modseq;
        }
      }
    }
    out.bytes += "* " + std::to_string(q) + " FETCH (" + parts + ")\r\n";
  }
  std::string tag = f.tag;
  bool uid = f.uid, unknown_cte = f.unknown_cte, unreadable = f.unreadable;
  fetch_.reset();
  report_changes(out, uid);  // a sequence-number FETCH must not be followed by EXPUNGEs
  if (unreadable) return no(out, tag, "[SERVERBUG] A message could not be read; the server log says why");
  if (unknown_cte) return no(out, tag, "[UNKNOWN-CTE] A part is in a transfer encoding bulwark cannot decode");
  tagged(out, tag, "OK", uid ? "UID FETCH completed" : "FETCH completed");
}

}  // namespace bulwark::imap
