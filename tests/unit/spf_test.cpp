// policy/spf: check_host() against a table of DNS answers (what a zone would say).
#include <gtest/gtest.h>

#include "policy/spf.hpp"

using namespace bulwark;
using namespace bulwark::spf;

namespace {

struct Zone {
  std::map<DnsKey, DnsResult> records;
  void txt(const std::string& n, std::vector<std::string> t) { records[{DnsType::txt, n}] = ok([&](DnsResult& r) { r.texts = t; }); }
  void a(const std::string& n, std::vector<std::string> ips) { records[{DnsType::a, n}] = ok([&](DnsResult& r) { r.ips = ips; r.addresses = ips.size(); }); }
  void aaaa(const std::string& n, std::vector<std::string> ips) { records[{DnsType::aaaa, n}] = ok([&](DnsResult& r) { r.ips = ips; r.addresses = ips.size(); }); }
  void mx(const std::string& n, std::vector<std::string> hosts) { records[{DnsType::mx, n}] = ok([&](DnsResult& r) { r.names = hosts; }); }
  void ptr(const std::string& n, std::vector<std::string> names) { records[{DnsType::ptr, n}] = ok([&](DnsResult& r) { r.names = names; }); }
  void fail(DnsType t, const std::string& n) { records[{t, n}] = DnsResult{}; }
  template <class F>
  static DnsResult ok(F f) {
    DnsResult r;
    r.status = DnsResult::ok;
    f(r);
    return r;
  }

  // Runs evaluate() the way the server does: answer what it asks (NXDOMAIN for names
  // the zone does not have), again, until it is done.
  Outcome check(const std::string& ip, const std::string& sender, const std::string& helo = "mx.client.test",
                size_t* queries = nullptr) {
    DnsAnswers known;
    for (size_t i = 0; i < 500; ++i) {
      Outcome o = evaluate(ip, sender, helo, known);
      if (o.done) {
        if (queries) *queries = i;
        // The server's way with a warm cache: every answer at hand through `peek`, one
        // run, the same outcome.
        DnsAnswers none, seen;
        Peek peek = [&](const DnsKey& k) -> const DnsResult* {
          auto it = records.find(k);
          DnsResult r;
          r.status = DnsResult::nxdomain;
          return &(seen[k] = it != records.end() ? it->second : r);
        };
        Outcome once = evaluate(ip, sender, helo, none, peek);
        EXPECT_TRUE(once.done);
        EXPECT_EQ(once.result, o.result) << sender << " from " << ip;
        EXPECT_EQ(once.why, o.why) << sender << " from " << ip;
        return o;
      }
      auto it = records.find(o.need);
      DnsResult r;
      r.status = DnsResult::nxdomain;
      known[o.need] = it != records.end() ? it->second : r;
    }
    ADD_FAILURE() << "evaluation does not end";
    return {};
  }
  Result result(const std::string& ip, const std::string& sender) { return check(ip, sender).result; }
};

}  // namespace

TEST(Spf, MechanismsAndQualifiers) {
  Zone z;
  z.txt("example.test", {"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mail.example.test/30 -all", "unrelated text"});
  z.a("example.test", {"198.51.100.7"});
  z.mx("mail.example.test", {"mx1.example.test"});
  z.a("mx1.example.test", {"203.0.113.5"});
  EXPECT_EQ(z.result("192.0.2.200", "a@example.test"), Result::pass);
  EXPECT_EQ(z.result("2001:db8::1", "a@example.test"), Result::pass);
  EXPECT_EQ(z.result("198.51.100.7", "a@example.test"), Result::pass);
  EXPECT_EQ(z.result("203.0.113.6", "a@example.test"), Result::pass);   // mx /30
  EXPECT_EQ(z.result("203.0.113.9", "a@example.test"), Result::fail);
  EXPECT_EQ(z.result("2001:db9::1", "a@example.test"), Result::fail);
  z.txt("soft.test", {"v=spf1 ~all"});
  z.txt("neutral.test", {"v=spf1 ?all"});
  z.txt("empty.test", {"v=spf1"});
  EXPECT_EQ(z.result("192.0.2.1", "a@soft.test"), Result::softfail);
  EXPECT_EQ(z.result("192.0.2.1", "a@neutral.test"), Result::neutral);
  EXPECT_EQ(z.result("192.0.2.1", "a@empty.test"), Result::neutral);  // nothing matched
  EXPECT_EQ(z.result("192.0.2.1", "a@nothing.test"), Result::none);   // no record
  EXPECT_EQ(z.result("192.0.2.1", "a@localhost"), Result::none);      // not a multi-label domain
  z.fail(DnsType::txt, "broken.test");
  EXPECT_EQ(z.result("192.0.2.1", "a@broken.test"), Result::temperror);
  // the null sender: postmaster@helo
  z.txt("mx.client.test", {"v=spf1 ip4:192.0.2.1 -all"});
  EXPECT_EQ(z.result("192.0.2.1", ""), Result::pass);
}

TEST(Spf, IncludeRedirectAndErrors) {
  Zone z;
  z.txt("example.test", {"v=spf1 include:_spf.provider.test -all"});
  z.txt("_spf.provider.test", {"v=spf1 ip4:10.1.0.0/16 ~all"});
  EXPECT_EQ(z.result("10.1.2.3", "a@example.test"), Result::pass);
  EXPECT_EQ(z.result("10.2.2.3", "a@example.test"), Result::fail);  // include's softfail: no match, then -all
  z.txt("redir.test", {"v=spf1 redirect=_spf.provider.test"});
  EXPECT_EQ(z.result("10.2.2.3", "a@redir.test"), Result::softfail);
  z.txt("redir-none.test", {"v=spf1 redirect=nothing.test"});
  EXPECT_EQ(z.result("10.2.2.3", "a@redir-none.test"), Result::permerror);
  z.txt("inc-none.test", {"v=spf1 include:nothing.test -all"});
  EXPECT_EQ(z.result("10.2.2.3", "a@inc-none.test"), Result::permerror);
  z.txt("two.test", {"v=spf1 -all", "v=spf1 +all"});
  EXPECT_EQ(z.result("10.2.2.3", "a@two.test"), Result::permerror);
  z.txt("syntax.test", {"v=spf1 ip4:10.0.0.1 foo:bar -all"});
  EXPECT_EQ(z.result("10.0.0.1", "a@syntax.test"), Result::permerror);  // syntax errors anywhere: permerror
  z.txt("badcidr.test", {"v=spf1 ip4:10.0.0.1/33 -all"});
  EXPECT_EQ(z.result("10.0.0.1", "a@badcidr.test"), Result::permerror);
  z.txt("unknownmod.test", {"v=spf1 foo=bar ip4:10.0.0.1 -all"});
  EXPECT_EQ(z.result("10.0.0.1", "a@unknownmod.test"), Result::pass);  // unknown modifiers are ignored
  z.txt("loop.test", {"v=spf1 include:loop.test -all"});
  EXPECT_EQ(z.result("10.0.0.1", "a@loop.test"), Result::permerror);
}

TEST(Spf, LookupAndVoidLimits) {
  Zone z;
  std::string rec = "v=spf1";
  for (int i = 0; i < 11; ++i) {
    rec += " a:h" + std::to_string(i) + ".limit.test";
    z.a("h" + std::to_string(i) + ".limit.test", {"10.9.9.9"});
  }
  z.txt("limit.test", {rec + " -all"});
  size_t queries = 0;
  Outcome o = z.check("10.0.0.1", "a@limit.test", "h", &queries);
  EXPECT_EQ(o.result, Result::permerror);
  EXPECT_EQ(o.why, "more than 10 DNS lookups");
  EXPECT_LE(queries, 12u);
  // ten lookups are fine, and the eleventh is never asked when an earlier one matches
  z.txt("ten.test", {"v=spf1 a:h0.limit.test a:h1.limit.test a:h2.limit.test a:h3.limit.test a:h4.limit.test "
                     "a:h5.limit.test a:h6.limit.test a:h7.limit.test a:h8.limit.test a:h9.limit.test -all"});
  EXPECT_EQ(z.result("10.9.9.9", "a@ten.test"), Result::pass);
  EXPECT_EQ(z.result("10.0.0.1", "a@ten.test"), Result::fail);
  z.txt("void.test", {"v=spf1 a:v1.void.test a:v2.void.test a:v3.void.test -all"});
  o = z.check("10.0.0.1", "a@void.test");
  EXPECT_EQ(o.result, Result::permerror);
  EXPECT_EQ(o.why, "more than 2 void lookups");
  std::vector<std::string> many;
  for (int i = 0; i < 11; ++i) many.push_back("m" + std::to_string(i) + ".mx.test");
  z.mx("mx.test", many);
  z.txt("mx.test", {"v=spf1 mx -all"});
  EXPECT_EQ(z.result("10.0.0.1", "a@mx.test"), Result::permerror);
}

TEST(Spf, Macros) {
  Zone z;
  // RFC 7208 7.4's examples, through exists: and include:
  z.txt("email.example.com", {"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all"});
  z.a("1.2.0.192.someuser._spf.email.example.com", {"127.0.0.2"});
  EXPECT_EQ(z.result("192.0.2.1", "strong-bad@email.example.com"), Result::fail);  // l1r+-: "strong" (RFC 7208 7.4)
  z.a("1.2.0.192.strong._spf.email.example.com", {"127.0.0.2"});
  EXPECT_EQ(z.result("192.0.2.1", "strong-bad@email.example.com"), Result::pass);
  z.txt("v6.test", {"v=spf1 exists:%{i}.%{v}.%{d2} -all"});
  z.a("2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.ip6.v6.test", {"127.0.0.2"});
  EXPECT_EQ(z.result("2001:db8::1", "x@v6.test"), Result::pass);
  z.txt("badmacro.test", {"v=spf1 exists:%{z}.x.test -all"});
  EXPECT_EQ(z.result("192.0.2.1", "x@badmacro.test"), Result::permerror);
  z.txt("ptr.test", {"v=spf1 ptr -all"});
  z.ptr("1.2.0.192.in-addr.arpa", {"host.ptr.test", "other.test"});
  z.a("host.ptr.test", {"192.0.2.1"});
  EXPECT_EQ(z.result("192.0.2.1", "x@ptr.test"), Result::pass);
  EXPECT_EQ(z.result("192.0.2.2", "x@ptr.test"), Result::fail);
}
