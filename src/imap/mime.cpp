#include "core/address.hpp"
#include "imap/mime.hpp"

#include <algorithm>

#include "core/strings.hpp"
#include "imap/message_text.hpp"

namespace bulwark::imap {
namespace {

constexpr int max_depth = 20;  // nested multiparts / messages (a hostile message nests thousands)
constexpr size_t max_parts = 500;

std::pair<std::string_view, std::string_view> header_and_body(std::string_view m) {
  if (m.substr(0, 2) == "\r\n") return {m.substr(0, 2), m.substr(2)};  // no header: just its end
  return split_message(m);
}

// Content-Type: type/subtype; a=b; c="d e"
void content_type(std::string_view value, MimePart& p) {
  std::string v;
  for (char c : value)  // unfolded: a folded header field is one logical line
    if (c != '\r' && c != '\n') v += c == '\t' ? ' ' : c;
  v = std::string(trim(v));
  size_t semi = v.find(';');
  std::string ts = std::string(trim(std::string_view(v).substr(0, semi)));
  size_t slash = ts.find('/');
  if (slash != std::string::npos && slash > 0 && slash + 1 < ts.size()) {
    p.type = ts.substr(0, slash);
    p.subtype = ts.substr(slash + 1);
    for (char c : ts)
      if (c == ' ' || c == '"') p.type = "text", p.subtype = "plain";  // garbage: the default
  }
  size_t pos = semi;
  while (pos != std::string::npos && pos < v.size()) {
    size_t start = pos + 1;
    size_t eq = v.find('=', start);
    if (eq == std::string::npos) break;
    std::string name = to_lower(trim(std::string_view(v).substr(start, eq - start)));
    size_t i = eq + 1;
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t')) ++i;
    std::string val;
    if (i < v.size() && v[i] == '"') {
      for (++i; i < v.size() && v[i] != '"'; ++i) {
        if (v[i] == '\\' && i + 1 < v.size()) ++i;
        val += v[i];
      }
      pos = v.find(';', i);
    } else {
      size_t end = v.find(';', i);
      val = std::string(trim(std::string_view(v).substr(i, end == std::string::npos ? std::string::npos : end - i)));
      pos = end;
    }
    if (!name.empty() && p.params.size() < 50) p.params.emplace_back(name, val);
  }
}

std::string param(const MimePart& p, std::string_view name) {
  for (auto& [k, v] : p.params)
    if (k == name) return v;
  return {};
}

void parse(std::string_view m, MimePart& p, int depth, size_t& parts, bool digest_child) {
  auto [head, body] = header_and_body(m);
  p.header = head;
  p.body = body;
  std::string ct = header_value(head, "Content-Type");
  if (digest_child && ct.empty()) p.type = "message", p.subtype = "rfc822";  // RFC 2046 5.1.5
  if (!ct.empty()) content_type(ct, p);
  if (++parts > max_parts || depth >= max_depth) return;
  if (p.is_multipart()) {
    std::string boundary = param(p, "boundary");
    if (boundary.empty()) {
      p.type = "text", p.subtype = "plain";
      return;
    }
    std::string delim = "--" + boundary;
    // Lines that start with the delimiter (RFC 2046 5.1.1); a part lies between two.
    std::vector<std::pair<size_t, size_t>> bounds;  // (start of the delimiter line, start of the next line)
    bool closed = false;
    size_t pos = 0;
    std::string crlf_delim = "\r\n" + delim;
    while (pos < body.size()) {
      size_t at;
      if (pos == 0 && body.substr(0, delim.size()) == delim) {
        at = 0;
      } else {
        size_t f = body.find(crlf_delim, pos < 2 ? 0 : pos - 2);
        if (f == std::string_view::npos) break;
        at = f + 2;
      }
      size_t eol = body.find("\r\n", at);
      size_t line_end = eol == std::string_view::npos ? body.size() : eol;
      bounds.emplace_back(at, eol == std::string_view::npos ? body.size() : eol + 2);
      if (body.substr(at + delim.size(), line_end - at - delim.size()).substr(0, 2) == "--") {
        closed = true;
        break;
      }
      if (eol == std::string_view::npos) break;
      pos = eol + 2;
    }
    if (bounds.empty()) {  // no delimiter at all: one text part, as clients show it
      p.type = "text", p.subtype = "plain";
      p.params.clear();
      return;
    }
    if (closed) p.close_end = bounds.back().second;
    bool digest = iequals(p.subtype, "digest");
    size_t last = closed ? bounds.size() - 1 : bounds.size();
    for (size_t i = 0; i < last; ++i) {
      size_t start = bounds[i].second;
      size_t end = i + 1 < bounds.size() ? bounds[i + 1].first - 2 : body.size();  // the CRLF before a delimiter is its own
      if (end < start) end = start;
      MimePart child;
      parse(body.substr(start, end - start), child, depth + 1, parts, digest);
      // A closed multipart inside a multipart ends with its close delimiter's line end
      // (its epilogue is not its own), as Dovecot and clients fetch it.
      // (the line end may be the one before the parent's next delimiter).
      if (child.is_multipart() && child.close_end) {
        size_t at = size_t(child.body.data() - body.data()), ce = child.close_end;
        if (ce == child.body.size() && !child.body.ends_with("\r\n") && body.substr(at + ce, 2) == "\r\n") ce += 2;
        child.body = body.substr(at, ce);
      }
      p.children.push_back(std::move(child));
      if (parts > max_parts) break;
    }
    if (p.children.empty()) p.type = "text", p.subtype = "plain";
  } else if (p.is_message()) {
    p.message = std::make_unique<MimePart>();
    parse(body, *p.message, depth + 1, parts, false);
  }
}

// A string as IMAP writes it: NIL, "quoted", or a literal when it cannot be quoted.
std::string nstring(std::string_view s, bool nil_if_empty = true) {
  if (s.empty() && nil_if_empty) return "NIL";
  bool literal = false;
  for (char c : s) literal |= c == '\r' || c == '\n' || c == '\0';
  if (literal) return "{" + std::to_string(s.size()) + "}\r\n" + std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string unfold(std::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\r' || v[i] == '\n') continue;
    out += v[i];
  }
  return std::string(trim(out));
}

// A quoted-string's content (quotes and backslashes removed) and, for a phrase, runs of
// white space as one space: `"Bob, Jr."` -> Bob, Jr.; `Folded<TAB>Name` -> Folded Name.
std::string unquote(std::string_view s, bool phrase) {
  std::string out;
  bool quote = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      quote = !quote;
      continue;
    }
    if (c == '\\' && quote && i + 1 < s.size()) c = s[++i];
    else if (phrase && !quote && (c == ' ' || c == '\t')) {
      if (!out.empty() && out.back() != ' ') out += ' ';
      continue;
    }
    out += c;
  }
  return std::string(trim(out));
}

// One mailbox of an address list: (display name, addr-spec). Comments are dropped; a
// comment after a bare addr-spec is its name ("carol@example.com (Carol C)"), as
// Dovecot and old mailers have it.
std::pair<std::string, std::string> one_address(std::string_view it) {
  std::string clean, comment;
  bool quote = false;
  int paren = 0;
  for (size_t i = 0; i < it.size(); ++i) {
    char c = it[i];
    if (paren) {
      if (c == '\\' && i + 1 < it.size()) comment += it[++i];
      else if (c == '(') ++paren, comment += c;
      else if (c == ')' && --paren == 0) clean += ' ';
      else if (paren) comment += c;
      continue;
    }
    if (quote) {
      clean += c;
      if (c == '\\' && i + 1 < it.size()) clean += it[++i];
      else if (c == '"') quote = false;
      continue;
    }
    if (c == '"') quote = true;
    if (c == '(') {
      paren = 1;
      comment.clear();
      if (trim(clean).empty()) comment = "\x01";  // a leading comment is never a name
      continue;
    }
    clean += c;
  }
  size_t lt = std::string::npos, gt = std::string::npos;
  quote = false;
  for (size_t i = 0; i < clean.size(); ++i) {
    if (clean[i] == '"' && (i == 0 || clean[i - 1] != '\\')) quote = !quote;
    else if (!quote && clean[i] == '<' && lt == std::string::npos) lt = i;
    else if (!quote && clean[i] == '>' && lt != std::string::npos) gt = i;
  }
  if (lt != std::string::npos && gt != std::string::npos)
    return {unquote(std::string_view(clean).substr(0, lt), true), std::string(trim(clean.substr(lt + 1, gt - lt - 1)))};
  std::string spec(trim(clean));
  if (comment.rfind("\x01", 0) == 0) comment.clear();
  return {std::string(trim(comment)), spec};
}

}  // namespace

std::vector<EnvelopeAddress> parse_addresses(std::string_view value) {
  std::vector<EnvelopeAddress> out;
  std::string v = unfold(value);
  if (v.empty()) return out;
  // split at commas outside quotes, angle brackets and comments; ':' opens a group, ';' closes
  std::vector<std::string> items;
  std::string cur;
  int angle = 0, paren = 0;
  bool quote = false;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (quote) {
      cur += c;
      if (c == '\\' && i + 1 < v.size()) cur += v[++i];
      else if (c == '"') quote = false;
      continue;
    }
    if (c == '"') quote = true;
    else if (c == '(') ++paren;
    else if (c == ')' && paren) --paren;
    else if (c == '<') ++angle;
    else if (c == '>' && angle) --angle;
    if ((c == ',' || c == ';' || c == ':') && !angle && !paren) {
      if (c == ':') {
        items.push_back(cur + ":");
        cur.clear();
        continue;
      }
      items.push_back(cur);
      if (c == ';') items.push_back(";");
      cur.clear();
      continue;
    }
    cur += c;
  }
  items.push_back(cur);
  for (auto& raw : items) {
    std::string it = std::string(trim(raw));
    if (it.empty()) continue;
    EnvelopeAddress a;
    if (it == ";") {  // end of group: (NIL NIL NIL NIL)
      a.kind = EnvelopeAddress::group_end;
      out.push_back(std::move(a));
      continue;
    }
    if (it.back() == ':') {  // start of group: (NIL NIL "name" NIL)
      a.kind = EnvelopeAddress::group_start;
      a.mailbox = std::string(trim(std::string_view(it).substr(0, it.size() - 1)));
      out.push_back(std::move(a));
      continue;
    }
    auto [name, addr] = one_address(it);
    if (size_t colon = addr.find(':'); colon != std::string::npos && !addr.empty() && addr[0] == '@') {
      a.route = addr.substr(0, colon);  // a source route ("@a,@b"): the "adl" of RFC 3501
      addr = addr.substr(colon + 1);
    }
    size_t at = addr.rfind('@');
    a.name = std::move(name);
    a.mailbox = unquote(at == std::string::npos ? addr : addr.substr(0, at), false);
    a.has_host = at != std::string::npos;
    a.host = a.has_host ? addr.substr(at + 1) : std::string();
    out.push_back(std::move(a));
  }
  return out;
}

std::string address_search_text(std::string_view value) {
  std::string out;
  for (auto& a : parse_addresses(value)) {
    if (a.kind == EnvelopeAddress::group_end) continue;
    if (!out.empty()) out += ", ";
    if (a.kind == EnvelopeAddress::group_start) {
      out += a.mailbox + ":";
      continue;
    }
    if (!a.name.empty()) out += a.name + " ";
    // the local part as it is written in a header: quoted when it needs to be
    out += "<" + quote_local(a.mailbox).value_or(a.mailbox) + (a.has_host ? "@" + a.host : std::string()) + ">";
  }
  return out;
}

namespace {

// An address list for ENVELOPE: ((name adl mailbox host) ...) or NIL.
std::string addresses(std::string_view value) {
  std::string out;
  for (auto& a : parse_addresses(value)) {
    if (a.kind == EnvelopeAddress::group_end) out += "(NIL NIL NIL NIL)";
    else if (a.kind == EnvelopeAddress::group_start) out += "(NIL NIL " + nstring(a.mailbox, false) + " NIL)";
    else
      out += "(" + nstring(a.name) + " " + nstring(a.route) + " " + nstring(a.mailbox, false) + " " +
             (a.has_host ? nstring(a.host, false) : std::string("NIL")) + ")";
  }
  return out.empty() ? "NIL" : "(" + out + ")";
}

// Lines as IMAP clients count them: line ends (the CRLF before a delimiter is the
// delimiter's, so a part "text" without one has 0 lines, as Dovecot says).
size_t count_lines(std::string_view s) { return size_t(std::count(s.begin(), s.end(), '\n')); }

// The parameters, RFC 2231 ones (name*) after the plain ones, as Dovecot lists them.
std::string params_list(const MimePart& p) {
  if (p.params.empty()) return "NIL";
  auto ps = p.params;
  std::stable_partition(ps.begin(), ps.end(), [](auto& kv) { return kv.first.find('*') == std::string::npos; });
  std::string out = "(";
  for (size_t i = 0; i < ps.size(); ++i)
    out += (i ? " " : "") + nstring(ps[i].first, false) + " " + nstring(ps[i].second, false);
  return out + ")";
}

std::string disposition(std::string_view header) {
  std::string d = unfold(header_value(header, "Content-Disposition"));
  if (d.empty()) return "NIL";
  MimePart tmp;
  tmp.params.clear();
  content_type("x/x;" + (d.find(';') == std::string::npos ? std::string() : d.substr(d.find(';') + 1)), tmp);
  std::string kind = std::string(trim(std::string_view(d).substr(0, d.find(';'))));
  return "(" + nstring(kind, false) + " " + params_list(tmp) + ")";
}

std::string field(std::string_view header, std::string_view name) { return nstring(unfold(header_value(header, name))); }

// Content-Language: one string, or a list when it names several ("en, de").
std::string languages(std::string_view header) {
  std::string v = unfold(header_value(header, "Content-Language"));
  std::vector<std::string> tags;
  for (std::string_view rest = v; !rest.empty();) {
    size_t comma = rest.find(',');
    std::string_view t = trim(rest.substr(0, comma));
    if (!t.empty()) tags.emplace_back(t);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  if (tags.size() < 2) return nstring(tags.empty() ? std::string() : tags[0]);
  std::string out = "(";
  for (size_t i = 0; i < tags.size(); ++i) out += (i ? " " : "") + nstring(tags[i], false);
  return out + ")";
}

}  // namespace

bool MimePart::is_multipart() const { return iequals(type, "multipart"); }
bool MimePart::is_message() const { return iequals(type, "message") && iequals(subtype, "rfc822"); }

MimePart parse_mime(std::string_view message) {
  MimePart root;
  size_t parts = 0;
  parse(message, root, 0, parts, false);
  return root;
}

std::string envelope(std::string_view header) {
  // A field given twice counts by its last occurrence, as Dovecot shows it.
  auto last = [&](std::string_view name) { return header_value(header, name, true); };
  std::string from = last("From"), sender = last("Sender"), reply = last("Reply-To");
  auto text = [&](std::string_view name) { return nstring(trim(last(name))); };
  std::string f = addresses(from);
  return "(" + text("Date") + " " + text("Subject") + " " + f + " " +
         (trim(sender).empty() ? f : addresses(sender)) + " " + (trim(reply).empty() ? f : addresses(reply)) + " " +
         addresses(last("To")) + " " + addresses(last("Cc")) + " " + addresses(last("Bcc")) + " " +
         text("In-Reply-To") + " " + text("Message-ID") + ")";
}

std::string body_structure(const MimePart& p, bool ext) {
  if (p.is_multipart()) {
    std::string out = "(";
    for (auto& c : p.children) out += body_structure(c, ext);
    out += " " + nstring(p.subtype, false);
    if (ext)
      out += " " + params_list(p) + " " + disposition(p.header) + " " + languages(p.header) + " " +
             field(p.header, "Content-Location");
    return out + ")";
  }
  std::string enc = unfold(header_value(p.header, "Content-Transfer-Encoding"));
  std::string out = "(" + nstring(p.type, false) + " " + nstring(p.subtype, false) + " ";
  if (iequals(p.type, "text") && param(p, "charset").empty()) {  // RFC 2045 5.2: the default, said
    MimePart with;
    with.params = p.params;
    with.params.emplace_back("charset", "us-ascii");
    out += params_list(with);
  } else {
    out += params_list(p);
  }
  out += " " + field(p.header, "Content-ID") + " " + field(p.header, "Content-Description") + " " +
         nstring(enc.empty() ? "7bit" : enc, false) + " " + std::to_string(p.body.size());
  if (p.is_message() && p.message)
    out += " " + envelope(p.message->header) + " " + body_structure(*p.message, ext) + " " +
           std::to_string(count_lines(p.body));
  else if (iequals(p.type, "text"))
    out += " " + std::to_string(count_lines(p.body));
  if (ext)
    out += " " + field(p.header, "Content-MD5") + " " + disposition(p.header) + " " +
           languages(p.header) + " " + field(p.header, "Content-Location");
  return out + ")";
}

std::optional<std::string_view> mime_section(const MimePart& root, std::string_view spec, std::string& what,
                                             const MimePart** part) {
  const MimePart* p = &root;
  bool top = true;  // a message's own level: there a single part is "part 1" of it
  bool numbered = false;
  bool stayed = false;  // the last number named the part itself ("2.1" of a single part 2)
  what.clear();
  while (!spec.empty()) {
    size_t dot = spec.find('.');
    std::string_view part = spec.substr(0, dot);
    if (part.empty() || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      what = to_upper(spec);
      break;
    }
    auto n = number(part);
    if (!n || *n == 0) return std::nullopt;
    // inside a message/rfc822 part, numbers refer to the enclosed message's parts
    if (!top && p->is_message() && p->message) {
      p = p->message.get();
      top = true;
      stayed = false;
    }
    if (p->is_multipart()) {
      if (*n > p->children.size()) return std::nullopt;
      p = &p->children[*n - 1];
      stayed = false;
    } else if (*n != 1 || stayed) {
      return std::nullopt;  // a single part has only part 1: itself (RFC 9051 6.4.5), once
    } else {
      stayed = true;
    }
    top = false;
    numbered = true;
    spec = dot == std::string_view::npos ? std::string_view() : spec.substr(dot + 1);
  }
  if (part) *part = p;
  if (what.empty()) return p->body;
  if (what == "MIME") return p->header;
  // HEADER and TEXT of a part number exist only for a message/rfc822 part (empty
  // otherwise, as Dovecot answers); without a part number they are the message's own.
  const MimePart* m = p->is_message() && p->message ? p->message.get() : !numbered ? p : nullptr;
  if (!m) return std::nullopt;
  if (what == "HEADER" || what.rfind("HEADER.FIELDS", 0) == 0) return m->header;
  if (what == "TEXT") return m->body;
  return std::nullopt;
}

}  // namespace bulwark::imap
