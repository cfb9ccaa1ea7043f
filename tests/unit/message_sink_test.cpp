// The DATA/BDAT content checks, fed in every possible split.
#include <gtest/gtest.h>

#include "smtp/message_sink.hpp"

using bulwark::smtp::MessageSink;

namespace {
struct Verdict {
  bool bare, too_long, too_big;
  size_t received;
  std::string data;
  bool operator==(const Verdict&) const = default;
};

Verdict feed(const std::string& in, size_t split, uint64_t max = 0) {
  MessageSink s(max, 1000);
  s.append(std::string_view(in).substr(0, split));
  s.append(std::string_view(in).substr(split));
  s.finish();
  return {s.bare_cr_lf(), s.line_too_long(), s.too_big(), s.received_count(), s.body().memory()};
}

Verdict check_all_splits(const std::string& in, uint64_t max = 0) {
  Verdict whole = feed(in, in.size(), max);
  for (size_t i = 0; i <= in.size(); ++i) EXPECT_EQ(feed(in, i, max), whole) << "split " << i;
  return whole;
}
}  // namespace

TEST(MessageSink, CleanMessage) {
  auto v = check_all_splits("Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: in body\r\n");
  EXPECT_FALSE(v.bare);
  EXPECT_FALSE(v.too_long);
  EXPECT_EQ(v.received, 2u);
}

TEST(MessageSink, BareCrAndLf) {
  EXPECT_TRUE(check_all_splits("a\nb\r\n").bare);
  EXPECT_TRUE(check_all_splits("a\rb\r\n").bare);
  EXPECT_TRUE(check_all_splits("a\r\nb\r").bare);  // ends in a lone CR
  EXPECT_FALSE(check_all_splits("a\r\nb\r\n").bare);
}

TEST(MessageSink, LineLength) {
  EXPECT_FALSE(check_all_splits(std::string(998, 'x') + "\r\n").too_long);
  EXPECT_TRUE(check_all_splits(std::string(999, 'x') + "\r\n").too_long);
  EXPECT_TRUE(check_all_splits(std::string(1500, 'x')).too_long);
}

TEST(MessageSink, SizeLimitDropsContent) {
  auto v = check_all_splits(std::string(50, 'x') + "\r\n", 40);
  EXPECT_TRUE(v.too_big);
  EXPECT_TRUE(v.data.empty());
  EXPECT_FALSE(check_all_splits(std::string(38, 'x') + "\r\n", 40).too_big);
}

TEST(MessageSink, FinalCrlfAddedForBdat) {
  EXPECT_EQ(check_all_splits("Subject: x\r\n\r\nno newline").data, "Subject: x\r\n\r\nno newline\r\n");
}

TEST(MessageSinkAuthResults, ForgedFieldsClaimingOurHostnameAreDropped) {
  // RFC 8601 5: our own Authentication-Results may only come from us; others' stay.
  std::string in =
      "Authentication-Results: mx.example.com; dkim=pass\r\n"
      "Received: from a\r\n"
      "authentication-results:  (comment) MX.EXAMPLE.COM;\r\n\tspf=pass smtp.mailfrom=x\r\n"
      "Authentication-Results: other.example.net; dkim=fail\r\n"
      "Authentication-Results:\r\n mx.example.com; dmarc=pass\r\n"
      "Authentication-Results:\r\n someone.else; dmarc=none\r\n"
      "Subject: Authentication-Results: mx.example.com; in a subject\r\n"
      "\r\n"
      "Authentication-Results: mx.example.com; in the body stays\r\n";
  for (size_t piece : {size_t(1), size_t(3), in.size()}) {
    MessageSink sink(0, 1000, nullptr, "mx.example.com");
    for (size_t i = 0; i < in.size(); i += piece) sink.append(std::string_view(in).substr(i, piece));
    sink.finish();
    EXPECT_EQ(sink.body().memory(),
              "Received: from a\r\n"
              "Authentication-Results: other.example.net; dkim=fail\r\n"
              "Authentication-Results:\r\n someone.else; dmarc=none\r\n"
              "Subject: Authentication-Results: mx.example.com; in a subject\r\n"
              "\r\n"
              "Authentication-Results: mx.example.com; in the body stays\r\n")
        << piece;
    EXPECT_EQ(sink.dropped_results(), 3u);
    EXPECT_EQ(sink.received_count(), 1u);
    EXPECT_EQ(sink.size(), in.size());
  }
}

TEST(MessageSinkAuthResults, HeaderOnlyMessageKeepsItsLastLine) {
  MessageSink sink(0, 1000, nullptr, "mx.example.com");
  sink.append("Subject: x\r\nAuthentication-Results:");
  sink.finish();
  EXPECT_EQ(sink.body().memory(), "Subject: x\r\nAuthentication-Results:\r\n");
}
