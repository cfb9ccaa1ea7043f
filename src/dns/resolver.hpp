// dns/: an asynchronous resolver on c-ares. One thread owns the c-ares channel and
// polls its sockets; callers submit queries from any thread and get the result in a
// callback (on the resolver thread: post it back to your own executor). A slow or
// silent DNS server therefore delays only the queries waiting for it.
// Depends on core/ and c-ares.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bulwark {

struct DnsResult {
  enum Status { ok, nxdomain, nodata, failure } status = failure;
  std::vector<std::string> names;  // MX exchanges (by preference) or PTR names
  std::vector<int> preferences;    // MX: parallel to names
  size_t addresses = 0;            // A/AAAA records
  std::vector<std::string> ips;    // A/AAAA: the addresses in text form
  std::vector<std::string> texts;  // TXT: one per record, its strings joined
  std::chrono::seconds ttl{0};     // smallest TTL of the answer (0 when none)
  std::string error;               // for failures: what c-ares said
};

enum class DnsType { a = 1, ptr = 12, mx = 15, txt = 16, aaaa = 28 };

class Resolver {
 public:
  // servers: "ip" or "ip:port" / "[v6]:port"; empty = /etc/resolv.conf.
  Resolver(const std::vector<std::string>& servers, std::chrono::milliseconds timeout);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  using Callback = std::function<void(DnsResult)>;
  void query(std::string name, DnsType type, Callback cb);
  // Ends the resolver thread; queries still pending get their callback now (status
  // failure), on the calling thread. Call it while whatever the callbacks post to is
  // still alive. Idempotent; the destructor calls it. Queries after it fail at once.
  void shutdown();

  // in-addr.arpa / ip6.arpa name for an address in text form; "" if not an address.
  static std::string reverse_name(const std::string& ip);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark
