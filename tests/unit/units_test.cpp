#include <gtest/gtest.h>

#include "core/strings.hpp"
#include "core/units.hpp"

using namespace bulwark;

TEST(Units, Sizes) {
  EXPECT_EQ(parse_size("1024"), 1024u);
  EXPECT_EQ(parse_size("10MB"), 10u << 20);
  EXPECT_EQ(parse_size("512KB"), 512u << 10);
  EXPECT_EQ(parse_size("1GB"), 1ull << 30);
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_FALSE(parse_size("10 apples"));
  EXPECT_FALSE(parse_size("MB"));
  EXPECT_FALSE(parse_size("-1"));
  EXPECT_FALSE(parse_size("99999999999999999GB"));
}

TEST(Units, Durations) {
  EXPECT_EQ(parse_duration("30s")->count(), 30);
  EXPECT_EQ(parse_duration("5m")->count(), 300);
  EXPECT_EQ(parse_duration("1h")->count(), 3600);
  EXPECT_EQ(parse_duration("2d")->count(), 172800);
  EXPECT_EQ(parse_duration("0")->count(), 0);
  EXPECT_FALSE(parse_duration("5"));
  EXPECT_FALSE(parse_duration("5w"));
  EXPECT_FALSE(parse_duration("m"));
  EXPECT_FALSE(parse_duration("-5m"));
}

TEST(Strings, SanitizeEscapesControlBytes) {
  EXPECT_EQ(sanitize("a\r\nb"), "a\\x0d\\x0ab");
  EXPECT_EQ(sanitize("ok"), "ok");
}
