// policy/: SPF check_host() (RFC 7208 4-7).
#include "policy/spf.hpp"

#include <optional>
#include <vector>

#include "core/ip.hpp"
#include "core/strings.hpp"

namespace bulwark::spf {

const char* result_name(Result r) {
  switch (r) {
    case Result::none: return "none";
    case Result::neutral: return "neutral";
    case Result::pass: return "pass";
    case Result::fail: return "fail";
    case Result::softfail: return "softfail";
    case Result::temperror: return "temperror";
    case Result::permerror: return "permerror";
  }
  return "permerror";
}

namespace {

struct Need {
  DnsKey key;
};
struct Stop {  // ends the whole evaluation with a result
  Result result;
  std::string why;
};

struct Ctx {
  IpAddress ip;
  bool v4 = true;
  std::string ip_text, sender, local, sender_domain, helo;
  const DnsAnswers& dns;
  const Peek& peek;
  int lookups = 0, voids = 0;
};

std::string lower_name(std::string_view n) {
  std::string s = to_lower(n);
  while (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

const DnsResult& lookup(Ctx& c, DnsType t, const std::string& name) {
  DnsKey k{t, lower_name(name)};
  auto it = c.dns.find(k);
  if (it != c.dns.end()) return it->second;
  if (c.peek)
    if (const DnsResult* r = c.peek(k)) return *r;
  throw Need{k};
}

void count_lookup(Ctx& c) {
  if (++c.lookups > 10) throw Stop{Result::permerror, "more than 10 DNS lookups"};
}

// A lookup that found nothing counts toward the void limit (RFC 7208 4.6.4).
bool found(Ctx& c, const DnsResult& r) {
  if (r.status == DnsResult::failure) throw Stop{Result::temperror, "DNS failure"};
  if (r.status == DnsResult::ok) return true;
  if (++c.voids > 2) throw Stop{Result::permerror, "more than 2 void lookups"};
  return false;
}

bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.find('.') == std::string_view::npos) return false;
  size_t label = 0;
  for (char ch : d) {
    if (ch == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (++label > 63 || static_cast<unsigned char>(ch) <= ' ') {
      return false;
    }
  }
  return label > 0;
}

bool in_prefix(const IpAddress& a, const IpAddress& net, int bits) {
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : uint8_t(0xff << (8 - bits));
    if ((a.bytes[i] & mask) != (net.bytes[i] & mask)) return false;
  }
  return true;
}

bool matches_any(Ctx& c, const std::vector<std::string>& ips, int cidr4, int cidr6) {
  for (auto& s : ips) {
    auto a = IpAddress::parse(s);
    if (a && a->is_v4() == c.v4 && in_prefix(c.ip, *a, c.v4 ? 96 + cidr4 : cidr6)) return true;
  }
  return false;
}

// RFC 7208 7.3: the i macro, v6 as dot-separated nibbles.
std::string ip_macro(const Ctx& c) {
  if (c.v4) return c.ip_text;
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i) out += '.';
    out += hex[c.ip.bytes[i] >> 4];
    out += '.';
    out += hex[c.ip.bytes[i] & 15];
  }
  return out;
}

std::string url_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (isalnum(u) || std::string_view("-._~").find(ch) != std::string_view::npos) out += ch;
    else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", u);
      out += b;
    }
  }
  return out;
}

// RFC 7208 7: macro expansion of a domain-spec. Throws Stop(permerror) on bad syntax.
std::string expand(const Ctx& c, std::string_view spec, const std::string& domain) {
  std::string out;
  for (size_t i = 0; i < spec.size(); ++i) {
    char ch = spec[i];
    if (ch != '%') {
      out += ch;
      continue;
    }
    if (++i >= spec.size()) throw Stop{Result::permerror, "bad macro"};
    char n = spec[i];
    if (n == '%') out += '%';
    else if (n == '_') out += ' ';
    else if (n == '-') out += "%20";
    else if (n == '{') {
      size_t close = spec.find('}', i);
      if (close == std::string_view::npos || close == i + 1) throw Stop{Result::permerror, "bad macro"};
      std::string_view m = spec.substr(i + 1, close - i - 1);
      i = close;
      char letter = ascii_lower(m[0]);
      bool upper = m[0] != letter;
      std::string value;
      switch (letter) {
        case 's': value = c.sender; break;
        case 'l': value = c.local; break;
        case 'o': value = c.sender_domain; break;
        case 'd': value = domain; break;
        case 'i': value = ip_macro(c); break;
        case 'p': value = "unknown"; break;  // RFC 7208 7.3: "SHOULD NOT be used"; no PTR lookup for it
        case 'v': value = c.v4 ? "in-addr" : "ip6"; break;
        case 'h': value = c.helo; break;
        default: throw Stop{Result::permerror, "bad macro letter"};
      }
      size_t p = 1;
      size_t digits = 0;
      bool has_digits = false;
      while (p < m.size() && m[p] >= '0' && m[p] <= '9') {
        digits = digits * 10 + size_t(m[p] - '0');
        has_digits = true;
        if (digits > 128) digits = 128;
        ++p;
      }
      if (has_digits && digits == 0) throw Stop{Result::permerror, "bad macro (0 parts)"};
      bool reverse = false;
      if (p < m.size() && (m[p] == 'r' || m[p] == 'R')) {
        reverse = true;
        ++p;
      }
      std::string delims(m.substr(p));
      for (char d : delims)
        if (std::string_view(".-+,/_=").find(d) == std::string_view::npos) throw Stop{Result::permerror, "bad macro delimiter"};
      if (delims.empty()) delims = ".";
      std::vector<std::string> parts(1);
      for (char v : value) {
        if (delims.find(v) != std::string::npos) parts.emplace_back();
        else parts.back() += v;
      }
      if (reverse) std::reverse(parts.begin(), parts.end());
      if (has_digits && digits < parts.size()) parts.erase(parts.begin(), parts.end() - long(digits));
      std::string joined;
      for (size_t k = 0; k < parts.size(); ++k) joined += (k ? "." : "") + parts[k];
      out += upper ? url_escape(joined) : joined;
    } else {
      throw Stop{Result::permerror, "bad macro"};
    }
  }
  // RFC 7208 7.3: longer than 253 octets: drop labels from the left.
  while (out.size() > 253) {
    size_t dot = out.find('.');
    if (dot == std::string::npos) break;
    out.erase(0, dot + 1);
  }
  return out;
}

struct Term {
  char qualifier = '+';
  std::string name;    // mechanism name, lower case; or the modifier's name
  std::string arg;     // domain-spec / address, before the cidr
  int cidr4 = 32, cidr6 = 128;
  bool modifier = false;
};

Result qualified(char q) {
  switch (q) {
    case '-': return Result::fail;
    case '~': return Result::softfail;
    case '?': return Result::neutral;
    default: return Result::pass;
  }
}

// "/24" or "//64" or "/24//64" at the end of a mechanism's argument.
void split_cidr(Term& t, bool allow_v4, bool allow_v6) {
  size_t dslash = t.arg.find("//");
  auto number = [](std::string_view s, int max) {
    if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) throw Stop{Result::permerror, "bad CIDR length"};
    int v = 0;
    for (char ch : s) {
      if (ch < '0' || ch > '9') throw Stop{Result::permerror, "bad CIDR length"};
      v = v * 10 + (ch - '0');
    }
    if (v > max) throw Stop{Result::permerror, "bad CIDR length"};
    return v;
  };
  if (dslash != std::string::npos) {
    if (!allow_v6) throw Stop{Result::permerror, "bad CIDR length"};
    t.cidr6 = number(std::string_view(t.arg).substr(dslash + 2), 128);
    t.arg.erase(dslash);
  }
  size_t slash = t.arg.rfind('/');
  if (slash != std::string::npos && allow_v4) {
    t.cidr4 = number(std::string_view(t.arg).substr(slash + 1), 32);
    t.arg.erase(slash);
  } else if (slash != std::string::npos && allow_v6 && !allow_v4) {
    t.cidr6 = number(std::string_view(t.arg).substr(slash + 1), 128);
    t.arg.erase(slash);
  }
}

std::vector<Term> parse_record(std::string_view rec) {
  std::vector<Term> terms;
  size_t pos = 6;  // after "v=spf1"
  bool redirect = false, exp = false;
  while (pos < rec.size()) {
    while (pos < rec.size() && rec[pos] == ' ') ++pos;
    size_t end = rec.find(' ', pos);
    if (end == std::string_view::npos) end = rec.size();
    std::string_view w = rec.substr(pos, end - pos);
    pos = end;
    if (w.empty()) continue;
    Term t;
    size_t eq = w.find('=');
    size_t name_end = w.find_first_of(":/=");
    if (eq != std::string_view::npos && eq == name_end) {  // modifier: name=macro-string
      t.modifier = true;
      t.name = to_lower(w.substr(0, eq));
      t.arg = std::string(w.substr(eq + 1));
      if (t.name.empty() || !isalpha(static_cast<unsigned char>(t.name[0]))) throw Stop{Result::permerror, "bad modifier"};
      if (t.name == "redirect") {
        if (redirect) throw Stop{Result::permerror, "redirect= twice"};
        redirect = true;
      } else if (t.name == "exp") {
        if (exp) throw Stop{Result::permerror, "exp= twice"};
        exp = true;
      }
      terms.push_back(std::move(t));
      continue;
    }
    if (w[0] == '+' || w[0] == '-' || w[0] == '~' || w[0] == '?') {
      t.qualifier = w[0];
      w.remove_prefix(1);
    }
    name_end = w.find_first_of(":/");
    t.name = to_lower(w.substr(0, name_end));
    std::string rest(name_end == std::string_view::npos ? "" : w.substr(name_end));
    if (t.name == "all") {
      if (!rest.empty()) throw Stop{Result::permerror, "bad all"};
    } else if (t.name == "include" || t.name == "exists") {
      if (rest.size() < 2 || rest[0] != ':') throw Stop{Result::permerror, "missing domain for " + t.name};
      t.arg = rest.substr(1);
    } else if (t.name == "a" || t.name == "mx" || t.name == "ptr") {
      if (!rest.empty() && rest[0] == ':') {
        if (rest.size() < 2) throw Stop{Result::permerror, "empty domain for " + t.name};
        t.arg = rest.substr(1);
      } else {
        t.arg = rest;  // only a cidr, or nothing
      }
      if (t.name != "ptr") split_cidr(t, true, true);
      else if (t.arg.find('/') != std::string::npos) throw Stop{Result::permerror, "bad ptr"};
      if (!rest.empty() && rest[0] == '/') t.arg.clear();
    } else if (t.name == "ip4" || t.name == "ip6") {
      if (rest.size() < 2 || rest[0] != ':') throw Stop{Result::permerror, "missing address for " + t.name};
      t.arg = rest.substr(1);
      if (t.name == "ip4") split_cidr(t, true, false);
      else split_cidr(t, false, true);
      auto a = IpAddress::parse(t.arg);
      if (!a || a->is_v4() != (t.name == "ip4") || (t.name == "ip6" && t.arg.find(':') == std::string::npos))
        throw Stop{Result::permerror, "bad address in " + t.name};
    } else {
      throw Stop{Result::permerror, "unknown mechanism " + sanitize(t.name, 40)};
    }
    terms.push_back(std::move(t));
  }
  return terms;
}

Result check_host(Ctx& c, const std::string& domain, int depth);

// A domain-spec, expanded; an invalid result is a permerror.
std::string target(Ctx& c, const Term& t, const std::string& domain) {
  if (t.arg.empty()) return domain;
  std::string d = lower_name(expand(c, t.arg, domain));
  if (!valid_domain(d)) throw Stop{Result::permerror, "bad domain in " + t.name};
  return d;
}

bool mechanism_matches(Ctx& c, const Term& t, const std::string& domain, int depth) {
  if (t.name == "all") return true;
  if (t.name == "ip4" || t.name == "ip6") return matches_any(c, {t.arg}, t.cidr4, t.cidr6);
  count_lookup(c);
  std::string d = target(c, t, domain);
  DnsType addr = c.v4 ? DnsType::a : DnsType::aaaa;
  if (t.name == "include") {
    Result r = check_host(c, d, depth + 1);
    switch (r) {
      case Result::pass: return true;
      case Result::fail:
      case Result::softfail:
      case Result::neutral: return false;
      case Result::temperror: throw Stop{Result::temperror, "DNS failure in include:" + d};
      default: throw Stop{Result::permerror, "include:" + d + " has no valid SPF record"};
    }
  }
  if (t.name == "a") {
    const DnsResult& r = lookup(c, addr, d);
    return found(c, r) && matches_any(c, r.ips, t.cidr4, t.cidr6);
  }
  if (t.name == "mx") {
    const DnsResult& r = lookup(c, DnsType::mx, d);
    if (!found(c, r)) return false;
    if (r.names.size() > 10) throw Stop{Result::permerror, "more than 10 MX names"};
    for (auto& host : r.names) {
      if (host.empty() || host == ".") continue;
      const DnsResult& a = lookup(c, addr, host);
      if (a.status == DnsResult::failure) throw Stop{Result::temperror, "DNS failure"};
      if (a.status == DnsResult::ok && matches_any(c, a.ips, t.cidr4, t.cidr6)) return true;
    }
    return false;
  }
  if (t.name == "ptr") {  // RFC 7208 5.5: validated names ending in the target domain
    const DnsResult& r = lookup(c, DnsType::ptr, Resolver::reverse_name(c.ip_text));
    if (r.status != DnsResult::ok) return false;
    size_t n = 0;
    for (auto& name : r.names) {
      if (++n > 10) break;
      std::string ln = lower_name(name);
      if (!(ln == d || (ln.size() > d.size() && ln.substr(ln.size() - d.size() - 1) == "." + d))) continue;
      const DnsResult& a = lookup(c, addr, ln);
      if (a.status == DnsResult::ok && matches_any(c, a.ips, 32, 128)) return true;
    }
    return false;
  }
  // exists
  const DnsResult& r = lookup(c, DnsType::a, d);
  return found(c, r);
}

Result check_host(Ctx& c, const std::string& domain, int depth) {
  if (depth > 20) throw Stop{Result::permerror, "include/redirect loop"};
  if (!valid_domain(domain)) return Result::none;
  const DnsResult& r = lookup(c, DnsType::txt, domain);
  if (r.status == DnsResult::failure) return Result::temperror;
  std::vector<std::string> spf;
  for (auto& t : r.texts)
    if (istarts_with(t, "v=spf1") && (t.size() == 6 || t[6] == ' ')) spf.push_back(t);
  if (spf.empty()) return Result::none;
  if (spf.size() > 1) throw Stop{Result::permerror, "more than one SPF record at " + domain};
  std::vector<Term> terms = parse_record(spf[0]);
  for (auto& t : terms) {
    if (t.modifier) continue;
    if (mechanism_matches(c, t, domain, depth)) return qualified(t.qualifier);
  }
  for (auto& t : terms) {
    if (!t.modifier || t.name != "redirect") continue;
    count_lookup(c);
    std::string d = lower_name(expand(c, t.arg, domain));
    if (!valid_domain(d)) throw Stop{Result::permerror, "bad redirect domain"};
    Result res = check_host(c, d, depth + 1);
    if (res == Result::none) throw Stop{Result::permerror, "redirect=" + d + " has no SPF record"};
    return res;
  }
  return Result::neutral;
}

}  // namespace

std::string checked_domain(const std::string& sender, const std::string& helo) {
  if (sender.empty()) return lower_name(helo);
  size_t at = sender.rfind('@');
  return at == std::string::npos ? "" : lower_name(sender.substr(at + 1));
}

Outcome evaluate(const std::string& ip, const std::string& sender_in, const std::string& helo,
                 const DnsAnswers& dns, const Peek& peek) {
  Outcome out;
  auto addr = IpAddress::parse(ip);
  Ctx c{addr.value_or(IpAddress{}), addr && addr->is_v4(), ip, "", "", "", helo, dns, peek};
  if (addr && c.v4) c.ip_text = addr->str();
  std::string sender = sender_in.empty() ? "postmaster@" + helo : sender_in;
  size_t at = sender.rfind('@');
  c.sender = sender;
  c.local = at == std::string::npos ? "postmaster" : sender.substr(0, at);
  if (c.local.empty()) c.local = "postmaster";
  c.sender_domain = checked_domain(sender_in, helo);
  out.done = true;
  if (!addr || c.sender_domain.empty()) {
    out.result = Result::none;
    return out;
  }
  try {
    out.result = check_host(c, c.sender_domain, 0);
  } catch (const Need& n) {
    out.done = false;
    out.need = n.key;
  } catch (const Stop& s) {
    out.result = s.result;
    out.why = s.why;
  }
  return out;
}

}  // namespace bulwark::spf
