#include "policy/dns_checks.hpp"

#include <optional>
#include <vector>

#include "core/ip.hpp"

#include "core/strings.hpp"

namespace bulwark {

std::optional<DnsResult> DnsChecks::cached(const std::string& name, DnsType type) {
  auto key = std::make_pair(int(type), to_lower(name));
  std::lock_guard lk(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return std::nullopt;
  if (it->second.second > now_()) return it->second.first;
  cache_.erase(it);
  return std::nullopt;
}

void DnsChecks::cached_query(const std::string& name, DnsType type, Resolver::Callback cb) {
  // Outside the lock: the callback may start the next cached query.
  if (auto hit = cached(name, type)) return cb(std::move(*hit));
  auto key = std::make_pair(int(type), to_lower(name));
  r_.query(name, type, [this, key, cb = std::move(cb)](DnsResult r) {
    std::chrono::seconds keep{0};
    if (r.status == DnsResult::ok) keep = std::max(r.ttl, std::chrono::seconds(0));
    else if (r.status == DnsResult::nxdomain || r.status == DnsResult::nodata) keep = std::chrono::seconds(60);
    if (keep.count() > 0) {
      std::lock_guard lk(mu_);
      if (cache_.size() > 50000) {
        auto now = now_();
        std::erase_if(cache_, [&](auto& kv) { return kv.second.second <= now; });
        if (cache_.size() > 50000) cache_.clear();
      }
      cache_[key] = {r, now_() + keep};
    }
    cb(std::move(r));
  });
}

void DnsChecks::sender_domain(const std::string& domain, Done done) {
  cached_query(domain, DnsType::mx, [this, domain, done](DnsResult mx) {
    if (mx.status == DnsResult::ok) return done(Verdict::ok);
    if (mx.status == DnsResult::failure) return done(Verdict::failure);
    if (mx.status == DnsResult::nxdomain) return done(Verdict::missing);
    // No MX: the domain may still receive mail at its A/AAAA (RFC 5321 5.1).
    cached_query(domain, DnsType::a, [this, domain, done](DnsResult a) {
      if (a.status == DnsResult::ok) return done(Verdict::ok);
      if (a.status == DnsResult::failure) return done(Verdict::failure);
      cached_query(domain, DnsType::aaaa, [done](DnsResult aaaa) {
        if (aaaa.status == DnsResult::ok) return done(Verdict::ok);
        if (aaaa.status == DnsResult::failure) return done(Verdict::failure);
        done(Verdict::missing);
      });
    });
  });
}

void DnsChecks::client_ptr(const std::string& ip, Done done) {
  std::string name = Resolver::reverse_name(ip);
  if (name.empty()) return done(Verdict::missing);
  cached_query(name, DnsType::ptr, [done](DnsResult r) {
    if (r.status == DnsResult::ok) return done(Verdict::ok);
    if (r.status == DnsResult::failure) return done(Verdict::failure);
    done(Verdict::missing);
  });
}

void DnsChecks::dnsbl(const std::string& ip, const std::vector<std::string>& zones, DnsblDone done) {
  // The query name: the address's octets (IPv4) or nibbles (IPv6) reversed, then the zone.
  std::string rev = Resolver::reverse_name(ip);
  size_t cut = rev.rfind(".in-addr.arpa");
  if (cut == std::string::npos) cut = rev.rfind(".ip6.arpa");
  if (rev.empty() || cut == std::string::npos || zones.empty()) return done("", {});
  rev.erase(cut);
  struct State {
    std::mutex mu;
    std::vector<int> listed;  // per zone: -1 unknown, 0 no, 1 yes, 2 failed
    size_t left;
    DnsblDone done;
  };
  auto st = std::make_shared<State>();
  st->listed.assign(zones.size(), -1);
  st->left = zones.size();
  st->done = std::move(done);
  for (size_t i = 0; i < zones.size(); ++i) {
    cached_query(rev + "." + zones[i], DnsType::a, [st, i, zones](DnsResult r) {
      int v = 0;
      if (r.status == DnsResult::failure) v = 2;
      // Listed: an A record in 127.0.0.0/8 (RFC 5782 2.1). 127.255.255.0/24 is what
      // Spamhaus answers to refused queries (public resolvers, over quota): an error.
      for (auto& a : r.ips)
        if (a.rfind("127.", 0) == 0) v = a.rfind("127.255.255.", 0) == 0 ? 2 : 1;
      bool last;
      {
        std::lock_guard lk(st->mu);
        st->listed[i] = v;
        last = --st->left == 0;
      }
      if (!last) return;
      std::string zone;
      std::vector<std::string> failed;
      for (size_t k = 0; k < zones.size(); ++k) {
        if (st->listed[k] == 1 && zone.empty()) zone = zones[k];
        if (st->listed[k] == 2) failed.push_back(zones[k]);
      }
      st->done(zone, failed);
    });
  }
}

}  // namespace bulwark
