// policy/: SPF (RFC 7208) check_host(), sans-I/O. The evaluation runs against the DNS
// answers known so far (and what `peek` has at once: the cache); when it needs one
// more it says which, the caller looks it up and runs it again. Answers are replayed,
// so a record with N uncached lookups costs N runs of a cheap parse; the limits of
// RFC 7208 4.6.4 (10 DNS mechanisms, 2 void lookups, 10 MX/PTR names) bound N.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "dns/resolver.hpp"

namespace bulwark::spf {

enum class Result { none, neutral, pass, fail, softfail, temperror, permerror };
const char* result_name(Result r);

using DnsKey = std::pair<DnsType, std::string>;  // name in lower case, no trailing dot
using DnsAnswers = std::map<DnsKey, DnsResult>;

struct Outcome {
  bool done = false;   // false: look up `need`, add it to the answers, evaluate again
  DnsKey need;
  Result result = Result::none;
  std::string why;     // for permerror/temperror and the log
};

// Answers that can be had at once beyond `dns` (a cache), or null: asked before an
// evaluation stops to say what it needs, so that with a warm cache one run does it all
// (no replay, no unwinding).
using Peek = std::function<const DnsResult*(const DnsKey&)>;

// ip: the client address in text form; sender: the MAIL FROM address ("" for the null
// sender: postmaster@helo is checked, RFC 7208 2.4); helo: the EHLO/HELO name.
Outcome evaluate(const std::string& ip, const std::string& sender, const std::string& helo, const DnsAnswers& dns,
                 const Peek& peek = nullptr);

// The domain evaluate() checks for this sender ("" when there is none to check).
std::string checked_domain(const std::string& sender, const std::string& helo);

}  // namespace bulwark::spf
