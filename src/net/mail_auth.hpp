// net/: the checks of inbound mail that need the whole message and DNS, run between
// the end of DATA and the commit: DKIM verification (dkim/), SPF (policy/spf) and
// then DMARC (policy/dmarc) on their results,
// their DNS through DnsChecks' cache, summed up in one Authentication-Results field
// (RFC 8601) that goes on top of the message. Hashing runs on the caller's thread for a
// small message in memory, else on the disk pool; DNS on the resolver thread; `done`
// is called on any of them: post it to your executor.
#pragma once
#include <asio.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dkim/dkim.hpp"
#include "policy/dmarc.hpp"
#include "policy/dns_checks.hpp"
#include "policy/spf.hpp"
#include "smtp/session.hpp"

namespace bulwark {

struct MessageChecks {
  bool dkim = false, spf = false, dmarc = false;  // dmarc needs both others
  std::string ip, sender, helo;  // for SPF: client address, MAIL FROM ("" = null), EHLO name
};

struct CheckResults {
  std::optional<std::vector<dkim::Verdict>> dkim;  // when checked: one per signature
  std::optional<spf::Outcome> spf;
  std::optional<dmarc::Outcome> dmarc;
  std::string from_domain;  // the one From: domain DMARC judged ("" when not one)
};

// "Authentication-Results: host;\r\n\tdkim=pass header.d=...;\r\n\tspf=pass smtp.mailfrom=...\r\n"
std::string authentication_results(const std::string& hostname, const MessageChecks& what, const CheckResults& r);

void check_message(asio::thread_pool& disk, DnsChecks& dns, std::shared_ptr<smtp::Transaction> tx,
                   MessageChecks what, std::function<void(CheckResults)> done);

}  // namespace bulwark
