#include <gtest/gtest.h>

#include "core/ip.hpp"
#include "net/peer.hpp"

using namespace bulwark;

namespace {
IpAddress ip(const char* s) { return *IpAddress::parse(s); }
bool in(const IpGroupMap& g, const char* name, const char* a) {
  for (auto& r : g.at(name))
    if (r.contains(ip(a))) return true;
  return false;
}
}  // namespace

TEST(Ip, V4MappedIsTheSameAddress) {
  EXPECT_EQ(ip("192.0.2.1"), ip("::ffff:192.0.2.1"));
  EXPECT_TRUE(ip("192.0.2.1").is_v4());
  EXPECT_FALSE(ip("2001:db8::1").is_v4());
  EXPECT_EQ(ip("::ffff:192.0.2.1").str(), "192.0.2.1");
  EXPECT_FALSE(IpAddress::parse("192.0.2"));
  EXPECT_FALSE(IpAddress::parse("host.example"));
}

TEST(Ip, Ranges) {
  auto r = parse_ip_range("10.0.0.5-10.0.0.50");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->contains(ip("10.0.0.5")));
  EXPECT_TRUE(r->contains(ip("10.0.0.50")));
  EXPECT_FALSE(r->contains(ip("10.0.0.51")));
  EXPECT_FALSE(r->contains(ip("10.0.0.4")));
  EXPECT_FALSE(parse_ip_range("10.0.0.50-10.0.0.5"));
  EXPECT_FALSE(parse_ip_range("10.0.0.1-::1"));
}

TEST(Ip, Cidr) {
  auto r = parse_ip_range("192.168.1.0/24");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->contains(ip("192.168.1.255")));
  EXPECT_TRUE(r->contains(ip("::ffff:192.168.1.7")));
  EXPECT_FALSE(r->contains(ip("192.168.2.0")));
  auto v6 = parse_ip_range("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(ip("2001:db8:ffff::1")));
  EXPECT_FALSE(v6->contains(ip("2001:db9::1")));
  EXPECT_FALSE(v6->contains(ip("192.168.1.1")));
  EXPECT_FALSE(parse_ip_range("10.0.0.1/8"));  // host bits set
  EXPECT_FALSE(parse_ip_range("10.0.0.0/33"));
  EXPECT_FALSE(parse_ip_range("::/129"));
  EXPECT_TRUE(parse_ip_range("0.0.0.0/0")->is_everything());
  EXPECT_TRUE(parse_ip_range("::/0")->is_everything());
  EXPECT_FALSE(parse_ip_range("10.0.0.0/8")->is_everything());
}

TEST(Ip, NestedGroups) {
  RawIpGroups raw{{"local", {"127.0.0.0/8", "::1"}},
                  {"office", {"192.168.1.0/24", "@local"}},
                  {"all", {"@office", "2001:db8::5", "10.0.0.5-10.0.0.50"}}};
  auto g = flatten_ip_groups(raw);
  EXPECT_TRUE(in(g, "all", "127.0.0.9"));
  EXPECT_TRUE(in(g, "all", "::1"));
  EXPECT_TRUE(in(g, "all", "::ffff:127.0.0.1"));
  EXPECT_TRUE(in(g, "all", "192.168.1.20"));
  EXPECT_TRUE(in(g, "all", "2001:db8::5"));
  EXPECT_TRUE(in(g, "all", "10.0.0.7"));
  EXPECT_FALSE(in(g, "all", "2001:db8::6"));
  EXPECT_FALSE(in(g, "office", "10.0.0.7"));
  EXPECT_THROW(flatten_ip_groups({{"a", {"@b"}}, {"b", {"@a"}}}), std::invalid_argument);
  EXPECT_THROW(flatten_ip_groups({{"a", {"@a"}}}), std::invalid_argument);
  EXPECT_THROW(flatten_ip_groups({{"a", {"@zzz"}}}), std::invalid_argument);
}

TEST(Ip, LimitKeyIsPer64ForV6) {
  EXPECT_EQ(limit_key(ip("2001:db8:1:2:aaaa::1")), limit_key(ip("2001:db8:1:2:bbbb::2")));
  EXPECT_NE(limit_key(ip("2001:db8:1:2::1")), limit_key(ip("2001:db8:1:3::1")));
  EXPECT_NE(limit_key(ip("192.0.2.1")), limit_key(ip("192.0.2.2")));
}

// Issue 8.4: a link-local peer with a scope id used to dereference an empty optional.
TEST(PeerIp, ScopeIdAndMappedAddresses) {
  auto scoped = asio::ip::make_address("fe80::1%1");
  ASSERT_TRUE(scoped.is_v6());
  EXPECT_NE(scoped.to_v6().scope_id(), 0u);
  EXPECT_FALSE(IpAddress::parse(scoped.to_string()).has_value());  // why text cannot be used
  IpAddress a = peer_ip(scoped);
  EXPECT_EQ(a.str(), "fe80::1");
  EXPECT_EQ(a, *IpAddress::parse("fe80::1"));
  EXPECT_EQ(peer_ip(asio::ip::make_address("::ffff:192.0.2.7")), *IpAddress::parse("192.0.2.7"));
  EXPECT_EQ(peer_ip(asio::ip::make_address("192.0.2.7")).str(), "192.0.2.7");
  EXPECT_EQ(limit_key(peer_ip(scoped)), limit_key(*IpAddress::parse("fe80::2")));
}
