#include "address.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "strings.hpp"

namespace bulwark {
namespace {

bool is_atext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != 0;
}

bool is_let_dig(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Local-part = Dot-string / Quoted-string. Returns the length consumed or 0.
size_t scan_local(std::string_view s, bool& utf8) {
  if (s.empty()) return 0;
  if (s[0] == '"') {
    size_t i = 1;
    while (i < s.size()) {
      unsigned char c = s[i];
      if (c == '"') return i + 1;
      if (c == '\\') {
        if (i + 1 >= s.size()) return 0;
        unsigned char n = s[i + 1];
        if (n < 32 || n > 126) return 0;
        i += 2;
        continue;
      }
      if (c >= 0x80) utf8 = true;
      else if (c < 32 || c == 127) return 0;
      ++i;
    }
    return 0;
  }
  size_t i = 0;
  bool need_atom = true;
  while (i < s.size()) {
    unsigned char c = s[i];
    if (c == '.') {
      if (need_atom) return 0;  // leading or double dot
      need_atom = true;
    } else if (is_atext(c)) {
      need_atom = false;
    } else if (c >= 0x80) {
      utf8 = true;
      need_atom = false;
    } else {
      break;
    }
    ++i;
  }
  if (need_atom) return 0;  // empty or trailing dot
  return i;
}

bool valid_literal(std::string_view lit) {
  // lit includes the brackets
  if (lit.size() < 3 || lit.front() != '[' || lit.back() != ']') return false;
  std::string inner(lit.substr(1, lit.size() - 2));
  unsigned char buf[16];
  if (istarts_with(inner, "IPv6:")) return inet_pton(AF_INET6, inner.c_str() + 5, buf) == 1;
  // inet_pton(AF_INET) accepts only dotted quads, which is what RFC 5321 wants.
  return inet_pton(AF_INET, inner.c_str(), buf) == 1;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    else if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
    else return false;
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      unsigned char cc = s[i + k];
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

bool valid_domain(std::string_view d, bool allow_utf8) {
  if (d.empty() || d.size() > 255) return false;
  size_t label_len = 0;
  unsigned char prev = '.';
  for (unsigned char c : d) {
    if (c == '.') {
      if (label_len == 0 || prev == '-') return false;
      label_len = 0;
    } else {
      bool ok = is_let_dig(c) || (c == '-' && label_len > 0) || (allow_utf8 && c >= 0x80);
      if (!ok || ++label_len > 63) return false;
    }
    prev = c;
  }
  if (label_len == 0 || prev == '-') return false;  // trailing dot or hyphen
  return !allow_utf8 || valid_utf8(d);
}

std::string Address::lookup_key() const {
  std::string l;
  if (!local.empty() && local.front() == '"') {
    for (size_t i = 1; i + 1 < local.size(); ++i) {
      if (local[i] == '\\' && i + 2 < local.size()) ++i;
      l += local[i];
    }
  } else {
    l = local;
  }
  l = to_lower(l);
  return domain.empty() ? l : l + "@" + domain;
}

PathResult parse_path(std::string_view text, bool allow_null, bool allow_bare_postmaster) {
  PathResult r;
  if (text.empty() || text.front() != '<') return r;
  size_t close = std::string_view::npos;
  // find the matching '>' while skipping quoted strings
  bool in_quote = false;
  for (size_t i = 1; i < text.size(); ++i) {
    char c = text[i];
    if (in_quote) {
      if (c == '\\') ++i;
      else if (c == '"') in_quote = false;
    } else if (c == '"') {
      in_quote = true;
    } else if (c == '>') {
      close = i;
      break;
    }
  }
  if (close == std::string_view::npos) return r;
  std::string_view inner = text.substr(1, close - 1);
  std::string_view rest = text.substr(close + 1);
  if (!rest.empty() && rest.front() != ' ') return r;
  rest = trim(rest);
  if (inner.size() > 254) {  // path limit 256 octets including brackets
    r.error = AddressError::too_long;
    return r;
  }
  ParsedPath p;
  p.params = std::string(rest);
  if (inner.empty()) {
    if (!allow_null) return r;
    r.path = std::move(p);
    return r;
  }
  // Source route: "@a,@b:mailbox" -- syntax-checked, then ignored (RFC 5321 C).
  if (inner.front() == '@') {
    size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return r;
    std::string_view route = inner.substr(0, colon);
    size_t pos = 0;
    while (pos < route.size()) {
      if (route[pos] != '@') return r;
      size_t end = route.find(',', pos);
      if (end == std::string_view::npos) end = route.size();
      if (!valid_domain(route.substr(pos + 1, end - pos - 1), false)) return r;
      pos = end + 1;
      if (end == route.size()) break;
      if (pos >= route.size()) return r;  // trailing comma
    }
    inner = inner.substr(colon + 1);
  }
  bool utf8 = false;
  size_t llen = scan_local(inner, utf8);
  if (llen == 0) {
    r.error = AddressError::bad_local;
    return r;
  }
  std::string_view local = inner.substr(0, llen);
  if (llen == inner.size()) {
    if (allow_bare_postmaster && iequals(local, "postmaster")) {
      p.address.local = std::string(local);
      r.path = std::move(p);
    }
    return r;
  }
  if (inner[llen] != '@') return r;
  std::string_view domain = inner.substr(llen + 1);
  if (local.size() > 64) {
    r.error = AddressError::too_long;
    return r;
  }
  if (utf8 && !valid_utf8(local)) {
    r.error = AddressError::bad_local;
    return r;
  }
  if (!domain.empty() && domain.front() == '[') {
    if (!valid_literal(domain)) {
      r.error = AddressError::bad_domain;
      return r;
    }
  } else if (!valid_domain(domain, true)) {
    r.error = AddressError::bad_domain;
    return r;
  }
  for (unsigned char c : domain)
    if (c >= 0x80) utf8 = true;
  p.address.local = std::string(local);
  p.address.domain = domain.front() == '[' ? std::string(domain) : to_lower(domain);
  p.address.utf8 = utf8;
  r.path = std::move(p);
  return r;
}

std::string unquoted_local(std::string_view local) {
  if (local.size() < 2 || local.front() != '"' || local.back() != '"') return std::string(local);
  std::string out;
  for (size_t i = 1; i + 1 < local.size(); ++i) {
    if (local[i] == '\\' && i + 2 < local.size()) ++i;
    out += local[i];
  }
  return out;
}

std::optional<std::string> quote_local(std::string_view local) {
  if (local.empty() || local.size() > 64 || !valid_utf8(local)) return std::nullopt;
  bool utf8 = false;
  if (local.front() != '"' && scan_local(local, utf8) == local.size()) return std::string(local);  // a Dot-string
  std::string q = "\"";
  for (unsigned char c : local) {
    if (c < 32 || c == 127) return std::nullopt;
    if (c == '"' || c == '\\') q += '\\';
    q += char(c);
  }
  return q + "\"";
}

std::optional<std::string> path_mailbox(std::string_view text) {
  size_t at = text.rfind('@');
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  std::string_view domain = text.substr(at + 1);
  if (!valid_domain(domain, true) && !valid_literal(domain)) return std::nullopt;
  auto local = quote_local(unquoted_local(text.substr(0, at)));
  if (!local) return std::nullopt;
  return *local + "@" + std::string(domain);
}

std::optional<Address> parse_mailbox(std::string_view text) {
  std::string wrapped = "<" + std::string(trim(text)) + ">";
  auto r = parse_path(wrapped, false, false);
  if (!r.path || !r.path->params.empty() || r.path->address.domain.empty()) return std::nullopt;
  return r.path->address;
}

}  // namespace bulwark
