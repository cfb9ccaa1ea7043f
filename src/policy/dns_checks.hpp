#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "dns/resolver.hpp"
#include "policy/policy.hpp"

namespace bulwark {

// The DNS checks of SPEC 7 with a cache: positive answers are kept for their TTL
// (at most a day), negative ones (NXDOMAIN, no data) for a minute, failures not at
// all. Callbacks run on the resolver's thread.
class DnsChecks {
 public:
  DnsChecks(Resolver& r, NowFn now = SteadyClock::now) : r_(r), now_(std::move(now)) {}

  enum class Verdict { ok, missing, failure };
  using Done = std::function<void(Verdict)>;

  // Does the domain exist for mail: an MX, else an A or AAAA record?
  void sender_domain(const std::string& domain, Done done);
  // Does the client address have a PTR record?
  void client_ptr(const std::string& ip, Done done);

  // DNSBL (RFC 5782): is the client address listed in one of the zones? `done` gets
  // the first zone (in the order given) that lists it, or ""; a zone that does not
  // answer counts as not listing it (named in `failed`, for the log).
  using DnsblDone = std::function<void(std::string listed, std::vector<std::string> failed)>;
  void dnsbl(const std::string& ip, const std::vector<std::string>& zones, DnsblDone done);

  // Any query, through the same cache (DKIM keys, SPF and DMARC records, DNSBL).
  void cached_query(const std::string& name, DnsType type, Resolver::Callback cb);
  // The cached answer, if there is a live one: no query, no callback (the SPF and
  // DMARC evaluations ask this first and only go asynchronous on a miss).
  std::optional<DnsResult> cached(const std::string& name, DnsType type);

 private:
  Resolver& r_;
  NowFn now_;
  std::mutex mu_;
  std::map<std::pair<int, std::string>, std::pair<DnsResult, SteadyClock::time_point>> cache_;
};

}  // namespace bulwark
