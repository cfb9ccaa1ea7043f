// policy/greylist: defer, pass after the delay, remembered across restarts, expiry,
// bounded tables.
#include <gtest/gtest.h>

#include "policy/greylist.hpp"
#include "temp_dir.hpp"

using namespace bulwark;

namespace {
IpAddress ip(const char* s) { return *IpAddress::parse(s); }
}  // namespace

TEST(Greylist, DeferThenPassAfterTheDelayAndSurviveARestart) {
  test::TempDir d;
  std::string path = (d.path / "greylist").string();
  int64_t now = 1000000;
  GreylistSettings s;
  s.delay = std::chrono::seconds(300);
  s.expire = std::chrono::seconds(86400 * 35);
  {
    Greylist g(path, s, [&] { return now; });
    int64_t left = 0;
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test", &left), Greylist::Verdict::defer);
    EXPECT_EQ(left, 300);
    now += 100;
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test", &left), Greylist::Verdict::defer);
    EXPECT_EQ(left, 200);
    now += 200;
    // the same /24 and case-insensitive addresses: the same triplet
    EXPECT_EQ(g.check(ip("192.0.2.77"), "A@X.test", "U@example.test"), Greylist::Verdict::pass);
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::pass);
    // another recipient, another network: new triplets
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "v@example.test"), Greylist::Verdict::defer);
    EXPECT_EQ(g.check(ip("198.51.100.1"), "a@x.test", "u@example.test"), Greylist::Verdict::defer);
    EXPECT_EQ(g.passed(), 1u);
    EXPECT_EQ(g.pending(), 2u);
  }
  {
    Greylist g(path, s, [&] { return now; });  // a restart keeps the passed triplet
    EXPECT_EQ(g.passed(), 1u);
    EXPECT_EQ(g.pending(), 0u);
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::pass);
    now += 86400 * 36;  // unused longer than expire: forgotten
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::defer);
  }
  Greylist g(path, s, [&] { return now; });
  EXPECT_EQ(g.passed(), 0u);
}

TEST(Greylist, AFirstAttemptRetriedTooLateStartsAgainAndTablesAreBounded) {
  test::TempDir d;
  int64_t now = 5000000;
  GreylistSettings s;
  s.delay = std::chrono::seconds(60);
  s.pending_for = std::chrono::seconds(3600);
  s.max_pending = 100;
  s.max_passed = 10;
  Greylist g((d.path / "greylist").string(), s, [&] { return now; });
  EXPECT_EQ(g.check(ip("2001:db8::1"), "a@x.test", "u@e.test"), Greylist::Verdict::defer);
  now += 7200;
  EXPECT_EQ(g.check(ip("2001:db8::2"), "a@x.test", "u@e.test"), Greylist::Verdict::defer);  // same /64, too late
  now += 60;
  EXPECT_EQ(g.check(ip("2001:db8::3"), "a@x.test", "u@e.test"), Greylist::Verdict::pass);
  for (int i = 0; i < 1000; ++i) g.check(ip("203.0.113.1"), "s" + std::to_string(i) + "@x.test", "u@e.test");
  EXPECT_EQ(g.pending(), 100u);
  now += 60;
  for (int i = 900; i < 1000; ++i) g.check(ip("203.0.113.1"), "s" + std::to_string(i) + "@x.test", "u@e.test");
  EXPECT_EQ(g.passed(), 10u);
}
