#include <gtest/gtest.h>

#include "policy/policy.hpp"

using namespace bulwark;
using namespace std::chrono_literals;

namespace {
IpAddress ip(const char* s) { return *IpAddress::parse(s); }

struct FakeClock {
  SteadyClock::time_point t = SteadyClock::time_point{} + 1000h;
  NowFn fn() {
    return [this] { return t; };
  }
};
}  // namespace

TEST(ClientLimits, SlidingHourWindow) {
  FakeClock clock;
  LimitSettings s;
  s.max_messages_per_hour = 3;
  ClientLimits l(s, clock.fn());
  auto a = ip("192.0.2.1");
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(l.message_allowed(a));
    l.message_accepted(a);
    clock.t += 10min;
  }
  EXPECT_FALSE(l.message_allowed(a));           // 3 in the last 30 minutes
  EXPECT_TRUE(l.message_allowed(ip("192.0.2.2")));  // another address is unaffected
  clock.t += 31min;                                  // the first one is now 61 minutes old
  EXPECT_TRUE(l.message_allowed(a));
  l.message_accepted(a);
  EXPECT_FALSE(l.message_allowed(a));
  clock.t += 3h;
  EXPECT_TRUE(l.message_allowed(a));
}

TEST(ClientLimits, ConnectionsPerIp) {
  FakeClock clock;
  LimitSettings s;
  s.max_connections_per_ip = 2;
  ClientLimits l(s, clock.fn());
  auto a = ip("192.0.2.1");
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::ok);
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::ok);
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::too_many_connections);
  EXPECT_EQ(l.connect(ip("192.0.2.2")), ClientLimits::Connect::ok);
  l.disconnect(a);
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::ok);
}

TEST(ClientLimits, Ipv6CountedPer64) {
  FakeClock clock;
  LimitSettings s;
  s.max_connections_per_ip = 1;
  ClientLimits l(s, clock.fn());
  EXPECT_EQ(l.connect(ip("2001:db8:0:1::1")), ClientLimits::Connect::ok);
  EXPECT_EQ(l.connect(ip("2001:db8:0:1::2")), ClientLimits::Connect::too_many_connections);
  EXPECT_EQ(l.connect(ip("2001:db8:0:2::1")), ClientLimits::Connect::ok);
}

TEST(ClientLimits, HarvestBlockAndExpiry) {
  FakeClock clock;
  LimitSettings s;
  s.max_unknown_recipients = 3;
  s.harvest_block = 1h;
  ClientLimits l(s, clock.fn());
  auto a = ip("192.0.2.1");
  EXPECT_FALSE(l.unknown_recipient(a));
  EXPECT_FALSE(l.unknown_recipient(a));
  EXPECT_TRUE(l.unknown_recipient(a));
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::harvest_blocked);
  clock.t += 59min;
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::harvest_blocked);
  clock.t += 2min;
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::ok);
}

TEST(ClientLimits, MemoryIsBounded) {
  FakeClock clock;
  LimitSettings s;
  s.max_tracked = 1000;
  s.max_messages_per_hour = 10;
  ClientLimits l(s, clock.fn());
  for (uint32_t i = 0; i < 50000; ++i) {
    IpAddress a = ip("10.0.0.0");
    a.bytes[13] = uint8_t(i >> 16);
    a.bytes[14] = uint8_t(i >> 8);
    a.bytes[15] = uint8_t(i);
    l.message_accepted(a);
    clock.t += 1ms;
  }
  EXPECT_LE(l.tracked(), 1000u);
}

// A /48 rotating through its /64s must not flush other clients' blocks out of a full
// table, nor reset its own partly spent failure budget (eviction keeps live state).
TEST(ClientLimits, FullTableNeverLiftsABlockOrACount) {
  FakeClock clock;
  LimitSettings s;
  s.max_tracked = 100;
  s.max_auth_failures = 3;
  s.max_unknown_recipients = 2;
  ClientLimits l(s, clock.fn());
  auto victim = ip("192.0.2.1");
  EXPECT_FALSE(l.unknown_recipient(victim));
  EXPECT_TRUE(l.unknown_recipient(victim));  // harvest block
  auto attacker = ip("2001:db8:1:1::1");
  EXPECT_FALSE(l.auth_failure(attacker));
  EXPECT_FALSE(l.auth_failure(attacker));  // 2 of 3 spent
  for (uint32_t i = 2; i < 10000; ++i) {
    IpAddress a = ip("2001:db8:1::1");
    a.bytes[6] = uint8_t(i >> 8);
    a.bytes[7] = uint8_t(i);
    if (l.connect(a) == ClientLimits::Connect::ok) l.disconnect(a);
    l.auth_failure(a);
    clock.t += 1ms;
  }
  EXPECT_LE(l.tracked(), 100u);
  EXPECT_GT(l.untracked(), 0u);
  EXPECT_EQ(l.connect(victim), ClientLimits::Connect::harvest_blocked);
  EXPECT_TRUE(l.auth_failure(attacker));  // the third failure still counts
  EXPECT_TRUE(l.auth_blocked(attacker));
  // A newcomer while the table is full of live state: served, uncounted, no AUTH.
  auto newcomer = ip("203.0.113.5");
  EXPECT_EQ(l.connect(newcomer), ClientLimits::Connect::untracked);
  EXPECT_TRUE(l.auth_blocked(newcomer));
  // Once the windows have passed the entries hold nothing and make room again.
  clock.t += 2h;
  EXPECT_EQ(l.connect(newcomer), ClientLimits::Connect::ok);
  EXPECT_FALSE(l.auth_blocked(newcomer));
  EXPECT_EQ(l.connect(victim), ClientLimits::Connect::ok);
}

TEST(Relay, Decision) {
  IpGroups groups(flatten_ip_groups({{"local", {"127.0.0.0/8"}}, {"office", {"192.168.1.0/24"}}}));
  FakeClock clock;
  PopLogins pop(clock.fn());
  RelaySettings s;
  s.allow_ip_group = "office";
  auto decide = [&](const char* a, bool auth = false, bool revoked = false) {
    return decide_relay(s, groups, pop, RelayInputs{ip(a), auth, revoked});
  };
  EXPECT_EQ(decide("192.168.1.5"), RelayVerdict::ip_group);
  EXPECT_EQ(decide("::ffff:192.168.1.5"), RelayVerdict::ip_group);
  EXPECT_EQ(decide("192.168.1.5", false, true), RelayVerdict::denied);  // failed AUTH revokes
  EXPECT_EQ(decide("203.0.113.1"), RelayVerdict::denied);
  EXPECT_EQ(decide("203.0.113.1", true), RelayVerdict::authenticated);
  s.allow_authenticated = false;
  EXPECT_EQ(decide("203.0.113.1", true), RelayVerdict::denied);
  s.pop_before_smtp = 30min;
  pop.record(ip("203.0.113.1"));
  clock.t += 29min;
  EXPECT_EQ(decide("203.0.113.1"), RelayVerdict::pop_before_smtp);
  EXPECT_EQ(decide("203.0.113.2"), RelayVerdict::denied);
  clock.t += 2min;
  EXPECT_EQ(decide("203.0.113.1"), RelayVerdict::denied);
  s.open = true;
  EXPECT_EQ(decide("203.0.113.9"), RelayVerdict::open_relay);
}

TEST(ClientLimits, AuthFailureLockoutAndExpiry) {
  FakeClock clock;
  LimitSettings s;
  s.max_auth_failures = 3;
  ClientLimits l(s, clock.fn());
  auto a = ip("192.0.2.1");
  EXPECT_FALSE(l.auth_failure(a));
  clock.t += 10min;
  EXPECT_FALSE(l.auth_failure(a));
  EXPECT_FALSE(l.auth_blocked(a));
  EXPECT_TRUE(l.auth_failure(a));  // third within 15 minutes
  EXPECT_TRUE(l.auth_blocked(a));
  EXPECT_FALSE(l.auth_blocked(ip("192.0.2.2")));
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::ok);  // mail from it is still taken
  clock.t += 14min;
  EXPECT_TRUE(l.auth_blocked(a));
  clock.t += 2min;
  EXPECT_FALSE(l.auth_blocked(a));
  // Failures spread wider than the window never add up to a block.
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(l.auth_failure(ip("192.0.2.9")));
    EXPECT_FALSE(l.auth_failure(ip("192.0.2.9")));
    clock.t += 16min;
  }
}

// Parallel guesses (many connections at once, each checked on the hashing pool): at
// most max_auth_failures of them ever reach the password check in a window.
TEST(ClientLimits, AttemptsInFlightCountTowardTheBlock) {
  FakeClock clock;
  LimitSettings s;
  s.max_auth_failures = 3;
  ClientLimits l(s, clock.fn());
  auto a = ip("192.0.2.1");
  using A = ClientLimits::Attempt;
  int admitted = 0;
  for (int i = 0; i < 19; ++i) admitted += l.auth_attempt(a) == A::ok;
  EXPECT_EQ(admitted, 3);  // the other 16 were told "try later" before any check
  EXPECT_FALSE(l.auth_failure(a, ClientLimits::Realm::mail, true));
  EXPECT_FALSE(l.auth_failure(a, ClientLimits::Realm::mail, true));
  EXPECT_EQ(l.auth_attempt(a), A::busy);  // 2 failed + 1 in flight
  EXPECT_TRUE(l.auth_failure(a, ClientLimits::Realm::mail, true));
  EXPECT_EQ(l.auth_attempt(a), A::blocked);  // the 20th, with the right password, too
  // A success gives its slot back; abandoned attempts too.
  auto b = ip("192.0.2.2");
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(l.auth_attempt(b), A::ok);
    l.auth_release(b);
  }
  EXPECT_FALSE(l.auth_blocked(b));
  // Administrators' failures count on their own: the mail clients behind the same
  // address (an office's NAT) still log in.
  auto office = ip("198.51.100.7");
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(l.auth_attempt(office, ClientLimits::Realm::admin), A::ok);
    l.auth_failure(office, ClientLimits::Realm::admin, true);
  }
  EXPECT_TRUE(l.auth_blocked(office, ClientLimits::Realm::admin));
  EXPECT_FALSE(l.auth_blocked(office));
  EXPECT_EQ(l.auth_attempt(office), A::ok);
  l.auth_release(office);
  clock.t += 16min;
  EXPECT_EQ(l.auth_attempt(a), A::ok);  // the block has passed
}

// Cluster mode: what other nodes count and decide (policy/redis_limits.hpp).
TEST(ClientLimits, TheClustersBlocksAndConnectionsCountHere) {
  FakeClock clock;
  LimitSettings s;
  s.max_connections_per_ip = 3;
  s.max_messages_per_hour = 100;
  ClientLimits l(s, clock.fn());
  auto a = ip("192.0.2.1");
  l.others(a, ClientLimits::Kind::smtp, 2);
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::ok);  // 2 elsewhere + 1 here
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::too_many_connections);
  EXPECT_EQ(l.connect(a, ClientLimits::Kind::mailbox), ClientLimits::Connect::ok);  // counted apart
  l.others(a, ClientLimits::Kind::smtp, 0);
  EXPECT_EQ(l.connect(a), ClientLimits::Connect::ok);

  auto b = ip("192.0.2.2");
  l.impose(b, ClientLimits::Block::harvest, 60s);
  l.impose(b, ClientLimits::Block::harvest, 10s);  // a shorter one does not shorten it
  l.impose(b, ClientLimits::Block::rate, 30s);
  l.impose(b, ClientLimits::Block::auth_mail, 20s);
  EXPECT_EQ(l.connect(b), ClientLimits::Connect::harvest_blocked);
  EXPECT_FALSE(l.message_allowed(b));
  EXPECT_TRUE(l.auth_blocked(b));
  EXPECT_FALSE(l.auth_blocked(b, ClientLimits::Realm::admin));
  clock.t += 31s;
  EXPECT_TRUE(l.message_allowed(b));
  EXPECT_FALSE(l.auth_blocked(b));
  EXPECT_EQ(l.connect(b), ClientLimits::Connect::harvest_blocked);
  clock.t += 30s;
  EXPECT_EQ(l.connect(b), ClientLimits::Connect::ok);
}

namespace {
struct Recorder : ClientLimits::Sharing {
  std::vector<std::string> seen;
  void connections(const IpAddress& k, ClientLimits::Kind, uint32_t here) override {
    seen.push_back("c " + k.str() + " " + std::to_string(here));
  }
  void message(const IpAddress& k) override { seen.push_back("m " + k.str()); }
  void unknown_recipient(const IpAddress& k) override { seen.push_back("u " + k.str()); }
  void auth_failure(const IpAddress& k, ClientLimits::Realm) override { seen.push_back("a " + k.str()); }
};
}  // namespace

TEST(ClientLimits, WhatIsCountedIsToldToTheCluster) {
  FakeClock clock;
  LimitSettings s;
  s.max_messages_per_hour = 10;
  ClientLimits l(s, clock.fn());
  Recorder r;
  l.share(&r);
  auto v6 = ip("2001:db8::1");  // told by its /64, like every per-IP count
  l.connect(v6);
  l.connect(v6);
  l.disconnect(v6);
  l.message_accepted(v6);
  l.unknown_recipient(v6);
  l.auth_failure(v6);
  EXPECT_EQ(r.seen, (std::vector<std::string>{"c 2001:db8:: 1", "c 2001:db8:: 2", "c 2001:db8:: 1", "m 2001:db8::",
                                              "u 2001:db8::", "a 2001:db8::"}));
}
