#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
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

 private:
  void cached_query(const std::string& name, DnsType type, Resolver::Callback cb);

  Resolver& r_;
  NowFn now_;
  std::mutex mu_;
  std::map<std::pair<int, std::string>, std::pair<DnsResult, SteadyClock::time_point>> cache_;
};

}  // namespace bulwark
