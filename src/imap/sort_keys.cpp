#include "imap/sort_keys.hpp"

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include <cctype>
#include <cstdlib>

#include "core/strings.hpp"
#include "imap/message_text.hpp"
#include "imap/mime.hpp"
#include "imap/search_text.hpp"

namespace bulwark::imap {
namespace {

bool iprefix(std::string_view s, std::string_view p) {
  if (s.size() < p.size()) return false;
  for (size_t i = 0; i < p.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != p[i]) return false;
  return true;
}

bool wsp(char c) { return c == ' ' || c == '\t'; }

// subj-blob = "[" *BLOBCHAR "]" *WSP: its length at the start of s, or 0.
size_t blob(std::string_view s) {
  if (s.empty() || s[0] != '[') return 0;
  size_t i = 1;
  while (i < s.size() && s[i] != '[' && s[i] != ']') ++i;
  if (i >= s.size() || s[i] != ']') return 0;
  ++i;
  while (i < s.size() && wsp(s[i])) ++i;
  return i;
}

// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":": its length, or 0.
size_t refwd(std::string_view s) {
  size_t i = iprefix(s, "re") ? 2 : iprefix(s, "fwd") ? 3 : iprefix(s, "fw") ? 2 : 0;
  if (!i) return 0;
  while (i < s.size() && wsp(s[i])) ++i;
  i += blob(s.substr(i));
  return i < s.size() && s[i] == ':' ? i + 1 : 0;
}

// subj-leader = (*subj-blob subj-refwd) / WSP: its length, or 0.
size_t leader(std::string_view s, bool& reply) {
  if (!s.empty() && wsp(s[0])) return 1;
  size_t i = 0;
  for (size_t b; (b = blob(s.substr(i))) > 0;) i += b;
  size_t r = refwd(s.substr(i));
  if (!r) return 0;
  reply = true;
  return i + r;
}

}  // namespace

std::string base_subject(std::string_view subject, bool* reply) {
  bool re = false;
  // (1) encoded words decoded, tabs and line ends as spaces, runs of spaces as one
  std::string decoded = decode_words(subject), s;
  for (char c : decoded) {
    if (c == '\t' || c == '\r' || c == '\n') c = ' ';
    if (c == ' ' && !s.empty() && s.back() == ' ') continue;
    s += c;
  }
  for (;;) {
    // (2) trailers: "(fwd)" and white space
    for (;;) {
      if (!s.empty() && wsp(s.back())) s.pop_back();
      else if (s.size() >= 5 && iprefix(std::string_view(s).substr(s.size() - 5), "(fwd)")) {
        s.resize(s.size() - 5);
        re = true;
      } else break;
    }
    // (3)-(5) leaders, and a leading blob when something is left after it
    for (bool again = true; again;) {
      again = false;
      if (size_t l = leader(s, re)) {
        s.erase(0, l);
        again = true;
      }
      size_t b = blob(s);
      if (b && b < s.size()) {
        s.erase(0, b);
        again = true;
      }
    }
    // (6) "[fwd: ... ]"
    if (iprefix(s, "[fwd:") && !s.empty() && s.back() == ']') {
      s = s.substr(5, s.size() - 6);
      re = true;
      continue;
    }
    break;
  }
  if (reply) *reply = re;
  return s;
}

std::string casemap(std::string_view utf8) {
  // title case, code point by code point (a byte that is not UTF-8 stays as it is)
  std::u32string title;
  const auto* p = reinterpret_cast<const uint8_t*>(utf8.data());
  size_t n = utf8.size();
  bool ascii = true;
  for (size_t i = 0; i < n;) {
    ucs4_t c;
    int len = u8_mbtouc(&c, p + i, n - i);
    if (len <= 0) len = 1;
    if (c >= 0x80) ascii = false;
    title += char32_t(uc_totitle(c));
    i += size_t(len);
  }
  if (ascii) {  // the common case: no decomposition to do
    std::string out;
    out.reserve(title.size());
    for (char32_t c : title) out += char(c);
    return out;
  }
  size_t len = 0;
  uint32_t* decomposed = u32_normalize(UNINORM_NFKD, reinterpret_cast<const uint32_t*>(title.data()), title.size(),
                                       nullptr, &len);
  const uint32_t* src = decomposed ? decomposed : reinterpret_cast<const uint32_t*>(title.data());
  size_t count = decomposed ? len : title.size();
  size_t out_len = 0;
  uint8_t* out = u32_to_u8(src, count, nullptr, &out_len);
  std::string result = out ? std::string(reinterpret_cast<char*>(out), out_len) : std::string(utf8);
  std::free(out);
  std::free(decomposed);
  return result;
}

int64_t sent_time(std::string_view date) {
  // [day ","] d mon yyyy hh:mm[:ss] zone   (RFC 5322 3.3, obsolete zones of 4.3)
  std::vector<std::string_view> w;
  for (size_t i = 0; i < date.size() && w.size() < 8;) {
    while (i < date.size() && (date[i] == ' ' || date[i] == '\t' || date[i] == ',' || date[i] == '\r' || date[i] == '\n'))
      ++i;
    size_t j = i;
    while (j < date.size() && date[j] != ' ' && date[j] != '\t' && date[j] != ',' && date[j] != '\r' &&
           date[j] != '\n')
      ++j;
    if (j > i) w.push_back(date.substr(i, j - i));
    i = j;
  }
  size_t k = !w.empty() && !std::isdigit(static_cast<unsigned char>(w[0][0])) ? 1 : 0;
  if (w.size() < k + 4) return 0;
  auto day = sent_day(std::string(w[k]) + " " + std::string(w[k + 1]) + " " + std::string(w[k + 2]));
  if (!day) return 0;
  std::string_view t = w[k + 3];
  int hh = 0, mm = 0, ss = 0;
  auto two = [](std::string_view v) -> int {
    if (v.size() != 2 || !std::isdigit(static_cast<unsigned char>(v[0])) || !std::isdigit(static_cast<unsigned char>(v[1])))
      return -1;
    return (v[0] - '0') * 10 + (v[1] - '0');
  };
  size_t c1 = t.find(':');
  if (c1 == std::string_view::npos) return 0;
  size_t c2 = t.find(':', c1 + 1);
  hh = two(t.substr(0, c1));
  mm = two(t.substr(c1 + 1, c2 == std::string_view::npos ? std::string_view::npos : c2 - c1 - 1));
  if (c2 != std::string_view::npos) ss = two(t.substr(c2 + 1));
  if (hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60) return 0;
  int64_t zone = 0;  // seconds east of UTC
  if (w.size() > k + 4) {
    std::string_view z = w[k + 4];
    if ((z[0] == '+' || z[0] == '-') && z.size() == 5) {
      int h = two(z.substr(1, 2)), m = two(z.substr(3, 2));
      if (h >= 0 && m >= 0) zone = (z[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
    } else {
      static const std::pair<const char*, int> names[] = {{"EST", -5}, {"EDT", -4}, {"CST", -6}, {"CDT", -5},
                                                          {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};
      for (auto& [name, h] : names)
        if (iequals(z, name)) zone = h * 3600;
    }
  }
  return *day + hh * 3600 + mm * 60 + ss - zone;
}

size_t SortKeys::bytes() const {
  size_t n = sizeof(SortKeys) + subject.size() + from.size() + to.size() + cc.size() + message_id.size();
  for (auto& r : references) n += sizeof(std::string) + r.size();
  return n;
}

namespace {
// The addr-mailbox of a field's first address as ENVELOPE lists it (RFC 5256) -- for a
// group, its start, whose mailbox is the group's name (as Dovecot sorts it).
std::string first_mailbox(std::string_view value) {
  auto all = parse_addresses(value);
  return all.empty() ? std::string() : casemap(decode_words(all.front().mailbox));
}

// The "<...>" message ids in a field, in order.
std::vector<std::string> message_ids(std::string_view v) {
  std::vector<std::string> out;
  for (size_t i = 0; (i = v.find('<', i)) != std::string_view::npos;) {
    size_t e = v.find('>', i);
    if (e == std::string_view::npos) break;
    std::string id(v.substr(i, e - i + 1));
    if (id.size() > 2 && id.find(' ') == std::string::npos && id.find('<', 1) == std::string::npos) out.push_back(id);
    i = e + 1;
  }
  return out;
}
}  // namespace

SortKeys sort_keys(std::string_view header_in) {
  std::string crlf;  // the header readers want CRLF; a Maildir file has LF
  std::string_view header = header_in;
  if (header.find('\r') == std::string_view::npos) {
    crlf.reserve(header.size() + header.size() / 30);
    for (char c : header) {
      if (c == '\n') crlf += '\r';
      crlf += c;
    }
    header = crlf;
  }
  SortKeys k;
  k.sent = sent_time(header_value(header, "Date"));
  k.subject = casemap(base_subject(header_value(header, "Subject"), &k.reply));
  k.from = first_mailbox(header_value(header, "From"));
  k.to = first_mailbox(header_value(header, "To"));
  k.cc = first_mailbox(header_value(header, "Cc"));
  auto ids = message_ids(header_value(header, "Message-ID"));
  if (!ids.empty()) k.message_id = ids.front();
  k.references = message_ids(header_value(header, "References"));
  if (k.references.empty()) {  // RFC 5256 4: else the first id of In-Reply-To
    auto irt = message_ids(header_value(header, "In-Reply-To"));
    if (!irt.empty()) k.references.push_back(irt.front());
  }
  if (k.references.size() > 200) k.references.erase(k.references.begin(), k.references.end() - 200);
  return k;
}

}  // namespace bulwark::imap
