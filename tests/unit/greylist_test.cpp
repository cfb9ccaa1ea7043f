// policy/greylist: defer, pass after the delay, remembered across restarts, expiry,
// bounded tables.
#include <gtest/gtest.h>

#include "crypt/crypt.hpp"
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

// Cluster mode: no file, keys are keyed hashes (no address), and the journal hears of
// first attempts, passes and the daily refresh; another node's pass learned by key.
TEST(Greylist, HashedKeysAndTheJournalForClusterMode) {
  auto k1 = crypt::DataKey::random(), k2 = crypt::DataKey::random();
  std::string plain = Greylist::key_of(ip("192.0.2.10"), "A@x.test", "u@example.test", false, nullptr);
  EXPECT_EQ(plain, "192.0.2.0/a@x.test/u@example.test");
  std::string h1 = Greylist::key_of(ip("192.0.2.10"), "A@x.test", "u@example.test", true, &k1);
  EXPECT_EQ(h1.size(), 32u);
  EXPECT_EQ(h1.find("x.test"), std::string::npos);
  EXPECT_EQ(h1, Greylist::hash_key(plain, &k1));  // what `cluster import` computes from a file
  EXPECT_NE(h1, Greylist::key_of(ip("192.0.2.10"), "A@x.test", "u@example.test", true, &k2));
  EXPECT_NE(h1, Greylist::key_of(ip("192.0.2.10"), "A@x.test", "u@example.test", true, nullptr));

  int64_t now = 1000000;
  GreylistSettings s;
  s.delay = std::chrono::seconds(300);
  s.hashed = true;
  s.hash_key = &k1;
  Greylist g("", s, [&] { return now; });
  struct Event {
    std::string key;
    int64_t first, last;
    bool passed;
  };
  std::vector<Event> heard;
  g.journal_to([&](const std::string& key, int64_t first, int64_t last, bool passed) {
    heard.push_back({key, first, last, passed});
  });
  EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::defer);
  now += 300;
  EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::pass);
  now += 86400;
  EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::pass);
  ASSERT_EQ(heard.size(), 3u);
  EXPECT_EQ(heard[0].key, h1);
  EXPECT_FALSE(heard[0].passed);
  EXPECT_EQ(heard[0].first, 1000000);
  EXPECT_TRUE(heard[1].passed);
  EXPECT_EQ(heard[1].first, 1000000);
  EXPECT_TRUE(heard[2].passed);  // the daily refresh: first 0 (kept as stored)
  EXPECT_EQ(heard[2].first, 0);
  EXPECT_EQ(heard[2].last, now);
  // Another node's pass, learned by its key: a first attempt here passes at once.
  g.learn(Greylist::key_of(ip("203.0.113.5"), "b@y.test", "u@example.test", true, &k1), now - 10, true);
  EXPECT_EQ(g.check(ip("203.0.113.9"), "b@y.test", "u@example.test"), Greylist::Verdict::pass);
}
