#include <gtest/gtest.h>

#include "core/address.hpp"

using namespace bulwark;

namespace {
std::optional<Address> path(std::string_view s, bool null_ok = true) {
  auto r = parse_path(s, null_ok, true);
  if (!r.path) return std::nullopt;
  return r.path->address;
}
}  // namespace

TEST(Address, Simple) {
  auto a = path("<John.Doe@Example.TEST>");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->local, "John.Doe");
  EXPECT_EQ(a->domain, "example.test");
  EXPECT_EQ(a->lookup_key(), "john.doe@example.test");
}

TEST(Address, NullPath) {
  auto a = path("<>");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->empty());
  EXPECT_FALSE(path("<>", false));
}

TEST(Address, SourceRouteIsDroppedToFinalMailbox) {
  auto a = path("<@relay.one,@relay.two:user@final.test>");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->str(), "user@final.test");
  EXPECT_FALSE(path("<@relay.one:>"));
  EXPECT_FALSE(path("<@relay.one,:user@x.test>"));
  EXPECT_FALSE(path("<relay.one:user@x.test>"));
}

TEST(Address, QuotedLocalPart) {
  auto a = path("<\"john doe\"@example.test>");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->local, "\"john doe\"");
  EXPECT_EQ(a->lookup_key(), "john doe@example.test");
  auto b = path("<\"a@b\\\"c\"@example.test>");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->domain, "example.test");
  EXPECT_EQ(b->lookup_key(), "a@b\"c@example.test");
  EXPECT_FALSE(path("<\"unterminated@example.test>"));
}

TEST(Address, IpLiterals) {
  EXPECT_TRUE(path("<u@[192.0.2.1]>"));
  EXPECT_TRUE(path("<u@[IPv6:2001:db8::1]>"));
  EXPECT_FALSE(path("<u@[192.0.2.300]>"));
  EXPECT_FALSE(path("<u@[2001:db8::1]>"));
  EXPECT_FALSE(path("<u@[]>"));
}

TEST(Address, RejectsBadSyntax) {
  for (const char* bad : {"user@example.test", "<user@example.test", "<@example.test>", "<user@>",
                          "<user@example.test.>", "<user@@example.test>", "<us er@example.test>",
                          "<.user@example.test>", "<user.@example.test>", "<a..b@example.test>",
                          "<user@-bad.test>", "<user@bad-.test>", "<user@exa_mple.test>", "<user@example..test>",
                          "<user@example.test>junk"}) {
    EXPECT_FALSE(path(bad)) << bad;
  }
}

TEST(Address, Lengths) {
  std::string local(64, 'a');
  EXPECT_TRUE(path("<" + local + "@example.test>"));
  EXPECT_FALSE(path("<" + local + "a@example.test>"));
  std::string label(63, 'b');
  EXPECT_TRUE(path("<u@" + label + ".test>"));
  EXPECT_FALSE(path("<u@" + label + "b.test>"));
}

TEST(Address, Params) {
  auto r = parse_path("<a@b.test> SIZE=100 BODY=8BITMIME", true, false);
  ASSERT_TRUE(r.path);
  EXPECT_EQ(r.path->params, "SIZE=100 BODY=8BITMIME");
}

TEST(Address, Postmaster) {
  auto r = parse_path("<Postmaster>", false, true);
  ASSERT_TRUE(r.path);
  EXPECT_EQ(r.path->address.local, "Postmaster");
  EXPECT_FALSE(parse_path("<Postmaster>", false, false).path);
  EXPECT_FALSE(parse_path("<root>", false, true).path);
}

TEST(Address, Utf8) {
  auto a = path("<j\xc3\xb6rg@b\xc3\xbc" "cher.test>");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->utf8);
  EXPECT_FALSE(path("<j\xc3@example.test>"));        // truncated sequence
  EXPECT_FALSE(path("<j\xc0\xaf@example.test>"));    // overlong encoding
  EXPECT_FALSE(path("<j\xed\xa0\x80@example.test>"));  // surrogate
}

TEST(Address, Mailbox) {
  auto a = parse_mailbox("Demo@Example.Test");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->str(), "Demo@example.test");
  EXPECT_FALSE(parse_mailbox("demo"));
  EXPECT_FALSE(parse_mailbox("<demo@example.test>"));
}

// The one writer of a local part into an SMTP path: nothing in it ends the path.
TEST(PathMailbox, QuotesWhatIsNoDotStringAndRefusesWhatNoPathCarries) {
  EXPECT_EQ(*quote_local("john.smith"), "john.smith");
  EXPECT_EQ(*quote_local("john smith"), "\"john smith\"");
  EXPECT_EQ(*quote_local("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(*quote_local(".lead"), "\".lead\"");
  EXPECT_FALSE(quote_local("a\r\nRCPT TO:<x@y>"));
  EXPECT_FALSE(quote_local(""));
  EXPECT_FALSE(quote_local(std::string(65, 'x')));
  // stored targets: quoted or not (stored before quoting was kept), split at the last @
  EXPECT_EQ(*path_mailbox("victim@other.test> NOTIFY=NEVER ORCPT=rfc822;x@remote.test"),
            "\"victim@other.test> NOTIFY=NEVER ORCPT=rfc822;x\"@remote.test");
  EXPECT_EQ(*path_mailbox("\"john smith\"@remote.test"), "\"john smith\"@remote.test");
  EXPECT_EQ(*path_mailbox("john smith@remote.test"), "\"john smith\"@remote.test");
  EXPECT_EQ(*path_mailbox("x@[192.0.2.1]"), "x@[192.0.2.1]");
  EXPECT_FALSE(path_mailbox("x@bad domain>"));
  EXPECT_FALSE(path_mailbox("nodomain"));
  // every parsed path renders as itself
  for (const char* p : {"<a@b.test>", "<\"a b\"@b.test>", "<\"a\\\"b\"@b.test>", "<d\xc3\xa9j\xc3\xa0@b.test>"}) {
    auto r = parse_path(p, false, false);
    ASSERT_TRUE(r.path) << p;
    EXPECT_EQ(*path_mailbox(r.path->address.str()), r.path->address.str()) << p;
  }
}
