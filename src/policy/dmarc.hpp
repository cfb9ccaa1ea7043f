// policy/: DMARC (RFC 7489) -- the organizational domain through the Public Suffix
// List (Debian's publicsuffix package), policy discovery and identifier alignment.
// Sans-I/O like spf.hpp: evaluate() names the TXT record it needs next.
#pragma once
#include <string>
#include <vector>

#include "policy/spf.hpp"

namespace bulwark::dmarc {

// The organizational domain (RFC 7489 3.2): the public suffix plus one label, by the
// list at `psl_path` (read once per path; a missing file: the last label is the
// suffix). "" for a public suffix itself.
std::string organizational_domain(const std::string& domain,
                                  const std::string& psl_path = "/usr/share/publicsuffix/public_suffix_list.dat");

enum class Result { none, pass, fail, temperror, permerror };
const char* result_name(Result r);
enum class Policy { none, quarantine, reject };
const char* policy_name(Policy p);

struct Input {
  std::string from_domain;               // the RFC5322.From domain, lower case
  std::vector<std::string> dkim_pass;    // d= of every DKIM signature that passed
  bool spf_pass = false;
  std::string spf_domain;                // the domain SPF checked (MAIL FROM, or HELO for <>)
  unsigned random_percent = 0;           // 0..99, for pct= sampling
};

struct Outcome {
  bool done = false;
  spf::DnsKey need;                      // when !done: the TXT record to look up
  Result result = Result::none;
  Policy policy = Policy::none;          // the published policy that applies (p= or sp=)
  Policy disposition = Policy::none;     // what to do: the policy, after pct= sampling; none on pass
  std::string why;
};

// `peek` as for SPF: answers at hand (the cache) before the evaluation names a need.
Outcome evaluate(const Input& in, const spf::DnsAnswers& dns, const spf::Peek& peek = nullptr);

}  // namespace bulwark::dmarc
