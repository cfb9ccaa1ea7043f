#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/header.hpp"
#include "policy/identity.hpp"

using namespace bulwark;

namespace {
Address addr(const char* s) { return *parse_mailbox(s); }

IdentityLookup fake() {
  IdentityLookup l;
  l.domain_switch = [](const std::string& d) -> std::optional<bool> {
    if (d == "example.test") return true;
    if (d == "open.test") return false;
    return std::nullopt;
  };
  l.may_send_as = [](const std::string& u, const Address& a) {
    return a.lookup_key() == u || (u == "demo@example.test" && a.lookup_key() == "sales@example.test");
  };
  return l;
}
}  // namespace

TEST(Identity, Rules) {
  auto d = fake();
  // Authenticated user of a protected domain: own addresses only, any domain.
  EXPECT_TRUE(sender_allowed(true, "demo@example.test", false, addr("demo@example.test"), d));
  EXPECT_TRUE(sender_allowed(true, "demo@example.test", false, addr("sales@example.test"), d));
  EXPECT_FALSE(sender_allowed(true, "demo@example.test", false, addr("other@example.test"), d));
  EXPECT_FALSE(sender_allowed(true, "demo@example.test", true, addr("x@remote.test"), d));
  EXPECT_TRUE(sender_allowed(true, "demo@example.test", false, Address{}, d));  // null sender
  // A user of a domain that opted out.
  EXPECT_TRUE(sender_allowed(true, "free@open.test", false, addr("x@remote.test"), d));
  // Unauthenticated: protected local domains only from the relay group.
  EXPECT_FALSE(sender_allowed(true, "", false, addr("demo@example.test"), d));
  EXPECT_TRUE(sender_allowed(true, "", true, addr("demo@example.test"), d));
  EXPECT_TRUE(sender_allowed(true, "", false, addr("a@open.test"), d));
  EXPECT_TRUE(sender_allowed(true, "", false, addr("a@remote.test"), d));
  EXPECT_TRUE(sender_allowed(true, "", false, addr("a@[192.0.2.1]"), d));
  // Off globally.
  EXPECT_TRUE(sender_allowed(false, "", false, addr("demo@example.test"), d));
  EXPECT_TRUE(sender_allowed(false, "demo@example.test", false, addr("other@example.test"), d));
}

TEST(Header, FromAddresses) {
  auto get = [](const char* msg) { return header_addresses(msg, "from"); };
  auto one = get("Subject: x\r\nFrom: \"Doe, John\" <John@Example.TEST> (work)\r\n\r\nFrom: body@x.test\r\n");
  ASSERT_TRUE(one.ok);
  ASSERT_EQ(one.addresses.size(), 1u);
  EXPECT_EQ(one.addresses[0].lookup_key(), "john@example.test");
  EXPECT_EQ(one.fields, 1u);
  auto folded = get("FROM: Demo\r\n\t<demo@example.test>,\r\n other@example.test\r\n\r\n");
  ASSERT_TRUE(folded.ok);
  ASSERT_EQ(folded.addresses.size(), 2u);
  EXPECT_EQ(folded.addresses[1].str(), "other@example.test");
  auto group = get("From: team: a@x.test, \"b c\" <b@x.test>;\r\n\r\n");
  ASSERT_TRUE(group.ok);
  EXPECT_EQ(group.addresses.size(), 2u);
  auto route = get("From: <@relay.test:real@x.test>\r\n\r\n");
  ASSERT_TRUE(route.ok);
  EXPECT_EQ(route.addresses[0].str(), "real@x.test");
  EXPECT_EQ(get("From: a@x.test\r\nFrom: b@x.test\r\n\r\n").fields, 2u);
  EXPECT_EQ(get("Subject: none\r\n\r\n").fields, 0u);
  for (auto bad : {"From: <>\r\n\r\n", "From: just a name\r\n\r\n", "From: <a@x.test\r\n\r\n",
                   "From: \"unterminated <a@x.test>\r\n\r\n", "From: (open comment a@x.test\r\n\r\n",
                   "From: <a@x.test> <b@x.test>\r\n\r\n"})
    EXPECT_FALSE(get(bad).ok) << bad;
}
