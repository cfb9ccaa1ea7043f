// policy/dmarc: the organizational domain by Debian's Public Suffix List, policy
// discovery, alignment, p=/sp=/pct=.
#include <gtest/gtest.h>

#include "policy/dmarc.hpp"

using namespace bulwark;
using namespace bulwark::dmarc;

TEST(Dmarc, OrganizationalDomainByThePublicSuffixList) {
  EXPECT_EQ(organizational_domain("mail.example.com"), "example.com");
  EXPECT_EQ(organizational_domain("a.b.Example.COM."), "example.com");
  EXPECT_EQ(organizational_domain("mail.example.co.uk"), "example.co.uk");
  EXPECT_EQ(organizational_domain("co.uk"), "");                      // a public suffix
  EXPECT_EQ(organizational_domain("x.y.someone.github.io"), "someone.github.io");  // private section
  EXPECT_EQ(organizational_domain("a.b.ck"), "a.b.ck");               // *.ck
  EXPECT_EQ(organizational_domain("x.www.ck"), "www.ck");             // !www.ck
  EXPECT_EQ(organizational_domain("a.city.kawasaki.jp"), "city.kawasaki.jp");
  EXPECT_EQ(organizational_domain("host.example.unknowntld"), "example.unknowntld");  // default rule "*"
  EXPECT_EQ(organizational_domain("a.b.c", "/nonexistent"), "b.c");
}

namespace {

struct Dns {
  spf::DnsAnswers known;
  std::map<std::string, std::vector<std::string>> txt;  // name -> records
  DnsResult answer(const spf::DnsKey& k) const {
    if (auto at = known.find(k); at != known.end()) return at->second;  // set by the test
    DnsResult r;
    auto it = txt.find(k.second);
    r.status = it == txt.end() ? DnsResult::nxdomain : DnsResult::ok;
    if (it != txt.end()) r.texts = it->second;
    return r;
  }
  Outcome run(Input in) {
    for (int i = 0; i < 5; ++i) {
      Outcome o = evaluate(in, known);
      if (o.done) {
        // With every answer at hand through `peek` (a warm cache): one run, the same outcome.
        spf::DnsAnswers none, seen;
        Outcome once = evaluate(in, none, [&](const spf::DnsKey& k) { return &(seen[k] = answer(k)); });
        EXPECT_TRUE(once.done);
        EXPECT_EQ(once.result, o.result);
        EXPECT_EQ(once.policy, o.policy);
        EXPECT_EQ(once.disposition, o.disposition);
        EXPECT_EQ(once.why, o.why);
        return o;
      }
      known[o.need] = answer(o.need);
    }
    ADD_FAILURE() << "no end";
    return {};
  }
};

Input from(const std::string& d, std::vector<std::string> dkim = {}, bool spf_pass = false, std::string spf_domain = "") {
  Input in;
  in.from_domain = d;
  in.dkim_pass = std::move(dkim);
  in.spf_pass = spf_pass;
  in.spf_domain = std::move(spf_domain);
  return in;
}

}  // namespace

TEST(Dmarc, AlignmentAndPolicies) {
  Dns dns;
  dns.txt["_dmarc.example.com"] = {"v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com", "other text"};
  dns.txt["_dmarc.strict.com"] = {"v=DMARC1; p=quarantine; adkim=s; aspf=s"};
  // relaxed: a subdomain's signature or MAIL FROM aligns
  EXPECT_EQ(dns.run(from("example.com", {"mail.example.com"})).result, Result::pass);
  EXPECT_EQ(dns.run(from("example.com", {}, true, "bounces.example.com")).result, Result::pass);
  Outcome o = dns.run(from("example.com", {"example.net"}, true, "example.net"));
  EXPECT_EQ(o.result, Result::fail);
  EXPECT_EQ(o.policy, Policy::reject);
  EXPECT_EQ(o.disposition, Policy::reject);
  EXPECT_EQ(dns.run(from("example.com", {}, false, "example.com")).result, Result::fail);  // SPF must pass
  // strict: only the exact domain
  EXPECT_EQ(dns.run(from("strict.com", {"mail.strict.com"}, true, "mail.strict.com")).result, Result::fail);
  EXPECT_EQ(dns.run(from("strict.com", {"strict.com"})).result, Result::pass);
  // a subdomain with no record of its own: the organizational domain's sp=
  o = dns.run(from("news.example.com"));
  EXPECT_EQ(o.result, Result::fail);
  EXPECT_EQ(o.policy, Policy::quarantine);
  // no record anywhere: none
  EXPECT_EQ(dns.run(from("nodmarc.org", {})).result, Result::none);
  EXPECT_EQ(dns.run(from("")).result, Result::none);
}

TEST(Dmarc, PctAndBrokenRecords) {
  Dns dns;
  dns.txt["_dmarc.half.com"] = {"v=DMARC1; p=reject; pct=50"};
  Input in = from("half.com");
  in.random_percent = 10;  // inside the sample
  EXPECT_EQ(dns.run(in).disposition, Policy::reject);
  in.random_percent = 70;  // outside: one step milder
  EXPECT_EQ(dns.run(in).disposition, Policy::quarantine);
  EXPECT_EQ(dns.run(in).policy, Policy::reject);
  dns.txt["_dmarc.two.com"] = {"v=DMARC1; p=none", "v=DMARC1; p=reject"};
  EXPECT_EQ(dns.run(from("two.com")).result, Result::permerror);
  dns.txt["_dmarc.nop.com"] = {"v=DMARC1; rua=mailto:x@nop.com"};
  EXPECT_EQ(dns.run(from("nop.com")).result, Result::permerror);
  dns.txt["_dmarc.notdmarc.com"] = {"v=DMARC10; p=reject", "v=spf1 -all"};
  EXPECT_EQ(dns.run(from("notdmarc.com")).result, Result::none);
  Dns failing;
  failing.known[{DnsType::txt, "_dmarc.example.com"}] = DnsResult{};  // status failure
  EXPECT_EQ(failing.run(from("example.com")).result, Result::temperror);
}
