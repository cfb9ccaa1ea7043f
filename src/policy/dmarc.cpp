// policy/: DMARC (RFC 7489 3, 6.3, 6.6).
#include "policy/dmarc.hpp"

#include <fstream>
#include <map>
#include <mutex>
#include <string_view>
#include <unordered_set>

#include "core/strings.hpp"
#include "dkim/dkim.hpp"

namespace bulwark::dmarc {

namespace {

// Looked up by string_view (C++20 heterogeneous lookup): a domain's tails are
// looked up without making a string of each.
struct ViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view v) const { return std::hash<std::string_view>{}(v); }
};
using NameSet = std::unordered_set<std::string, ViewHash, std::equal_to<>>;

struct Psl {
  NameSet rules, wildcards, exceptions;  // "co.uk"; "*.ck" as "ck"; "!www.ck" as "www.ck"
  bool loaded = false;
};

const Psl& psl(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, Psl> lists;
  std::lock_guard lk(mu);
  auto it = lists.find(path);
  if (it != lists.end()) return it->second;
  Psl& p = lists[path];
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::string_view r = trim(line);
    size_t sp = r.find_first_of(" \t\r");
    if (sp != std::string_view::npos) r = r.substr(0, sp);
    if (r.empty() || r.substr(0, 2) == "//") continue;
    if (r[0] == '!') p.exceptions.insert(to_lower(r.substr(1)));
    else if (r.substr(0, 2) == "*.") p.wildcards.insert(to_lower(r.substr(2)));
    else p.rules.insert(to_lower(r));
    p.loaded = true;
  }
  return p;
}


Policy parse_policy(const std::string& v, bool& ok) {
  ok = true;
  if (v == "none") return Policy::none;
  if (v == "quarantine") return Policy::quarantine;
  if (v == "reject") return Policy::reject;
  ok = false;
  return Policy::none;
}

bool aligned(const std::string& a, const std::string& b, bool strict) {
  if (a.empty() || b.empty()) return false;
  if (strict) return a == b;
  std::string oa = organizational_domain(a), ob = organizational_domain(b);
  return !oa.empty() && oa == ob;
}

// The DMARC record among a name's TXT records: nullptr when none, or several.
const std::string* dmarc_record(const DnsResult& r, bool& several) {
  const std::string* found = nullptr;
  several = false;
  for (auto& t : r.texts) {
    std::string_view v = trim(t);
    if (!istarts_with(v, "v=DMARC1")) continue;
    std::string_view rest = trim(v.substr(8));
    if (!rest.empty() && rest[0] != ';') continue;
    if (found) several = true;
    found = &t;
  }
  return several ? nullptr : found;
}

}  // namespace

std::string organizational_domain(const std::string& domain_in, const std::string& path) {
  std::string domain = to_lower(domain_in);
  while (!domain.empty() && domain.back() == '.') domain.pop_back();
  if (domain.empty()) return "";
  // Where each label starts: the tail from label i is domain.substr(starts[i]).
  std::vector<size_t> starts{0};
  for (size_t i = 0; i < domain.size(); ++i)
    if (domain[i] == '.') starts.push_back(i + 1);
  std::string_view d = domain;
  auto tail = [&](size_t i) { return d.substr(starts[i]); };
  const Psl& p = psl(path);
  // The public suffix: the longest matching rule; an exception rule wins and is one
  // label shorter; no rule: the last label ("*").
  size_t n = starts.size(), suffix_start = n - 1;
  for (size_t i = 0; i < n; ++i) {
    if (p.exceptions.find(tail(i)) != p.exceptions.end()) {
      suffix_start = i + 1;
      break;
    }
    if (p.rules.find(tail(i)) != p.rules.end()) {
      suffix_start = i;
      break;
    }
    if (i + 1 < n && p.wildcards.find(tail(i + 1)) != p.wildcards.end()) {
      suffix_start = i;
      break;
    }
  }
  if (suffix_start == 0) return "";  // the domain is a public suffix
  return std::string(tail(suffix_start - 1));
}

const char* result_name(Result r) {
  switch (r) {
    case Result::none: return "none";
    case Result::pass: return "pass";
    case Result::fail: return "fail";
    case Result::temperror: return "temperror";
    case Result::permerror: return "permerror";
  }
  return "none";
}

const char* policy_name(Policy p) {
  switch (p) {
    case Policy::none: return "none";
    case Policy::quarantine: return "quarantine";
    case Policy::reject: return "reject";
  }
  return "none";
}

Outcome evaluate(const Input& in, const spf::DnsAnswers& dns, const spf::Peek& peek) {
  Outcome out;
  out.done = true;
  if (in.from_domain.empty()) return out;  // none: no single From: domain to judge
  // Policy discovery (6.6.3): _dmarc.<From domain>, else _dmarc.<organizational domain>.
  std::string org = organizational_domain(in.from_domain);
  const std::string* record = nullptr;
  bool at_org = false;
  for (int step = 0; step < 2 && !record; ++step) {
    std::string d = step == 0 ? in.from_domain : org;
    if (step == 1 && (org.empty() || org == in.from_domain)) break;
    spf::DnsKey key{DnsType::txt, "_dmarc." + d};
    auto it = dns.find(key);
    const DnsResult* answer = it != dns.end() ? &it->second : peek ? peek(key) : nullptr;
    if (!answer) {
      out.done = false;
      out.need = key;
      return out;
    }
    if (answer->status == DnsResult::failure) {
      out.result = Result::temperror;
      out.why = "DNS failure looking up _dmarc." + d;
      return out;
    }
    bool several = false;
    record = dmarc_record(*answer, several);
    if (several) {
      out.result = Result::permerror;
      out.why = "more than one DMARC record at _dmarc." + d;
      return out;
    }
    at_org = step == 1;
  }
  if (!record) return out;  // none
  auto tags = dkim::parse_tags(*record);
  if (!tags) {
    out.result = Result::permerror;
    out.why = "malformed DMARC record";
    return out;
  }
  std::map<std::string, std::string> t;
  for (auto& [k, v] : *tags) t[to_lower(k)] = v;
  bool ok = false;
  Policy p = parse_policy(to_lower(t["p"]), ok);
  if (!ok) {  // 6.6.3: no valid p=: no DMARC processing (we say why)
    out.result = Result::permerror;
    out.why = "DMARC record without a valid p=";
    return out;
  }
  Policy sp = p;
  if (t.count("sp")) {
    sp = parse_policy(to_lower(t["sp"]), ok);
    if (!ok) sp = p;
  }
  bool strict_dkim = to_lower(t["adkim"]) == "s", strict_spf = to_lower(t["aspf"]) == "s";
  unsigned pct = 100;
  if (t.count("pct")) {
    pct = 0;
    for (char c : t["pct"]) pct = (c >= '0' && c <= '9' && pct <= 100) ? pct * 10 + unsigned(c - '0') : 101;
    if (pct > 100) pct = 100;
  }
  // A subdomain's mail under the organizational domain's record follows sp=.
  out.policy = at_org ? sp : p;
  bool dkim_ok = false;
  for (auto& d : in.dkim_pass) dkim_ok |= aligned(to_lower(d), in.from_domain, strict_dkim);
  bool spf_ok = in.spf_pass && aligned(to_lower(in.spf_domain), in.from_domain, strict_spf);
  if (dkim_ok || spf_ok) {
    out.result = Result::pass;
    return out;
  }
  out.result = Result::fail;
  out.why = "neither DKIM nor SPF aligned with " + in.from_domain;
  out.disposition = out.policy;
  // pct= (6.6.4): outside the sample the policy is one step milder.
  if (in.random_percent >= pct && out.disposition != Policy::none)
    out.disposition = out.disposition == Policy::reject ? Policy::quarantine : Policy::none;
  return out;
}

}  // namespace bulwark::dmarc
