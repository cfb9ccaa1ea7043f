// SORT and THREAD keys (RFC 5256 2.1 base subject, RFC 5051 casemap, RFC 5322 dates).
#include <gtest/gtest.h>

#include "imap/sort_keys.hpp"

using namespace bulwark::imap;

TEST(ImapSortKeys, BaseSubjectTakesLeadersTrailersAndForwardWrappers) {
  bool reply = false;
  EXPECT_EQ(base_subject("Plans", &reply), "Plans");
  EXPECT_FALSE(reply);
  EXPECT_EQ(base_subject("Re: Plans", &reply), "Plans");
  EXPECT_TRUE(reply);
  EXPECT_EQ(base_subject("RE:  Re[2]: Fwd: Plans", &reply), "Plans");
  EXPECT_EQ(base_subject("[team] Re: Plans (fwd)", &reply), "Plans");
  EXPECT_TRUE(reply);
  EXPECT_EQ(base_subject("[fwd: Re: Plans]", &reply), "Plans");
  EXPECT_EQ(base_subject("[team] Plans", &reply), "Plans");  // a leading blob, something after it
  EXPECT_FALSE(reply);
  EXPECT_EQ(base_subject("[team]", &reply), "[team]");  // nothing after it: it stays
  EXPECT_EQ(base_subject("Re: ", &reply), "");
  EXPECT_EQ(base_subject("Réponse:\tdu\r\n   lundi", &reply), "Réponse: du lundi");
  EXPECT_EQ(base_subject("=?UTF-8?Q?Re=3A_caf=C3=A9?=", &reply), "café");
}

TEST(ImapSortKeys, CasemapIsTitleCaseDecomposed) {
  EXPECT_EQ(casemap("apple"), "APPLE");
  EXPECT_EQ(casemap("_x"), "_X");
  EXPECT_LT(casemap("apple"), casemap("_x"));  // as i;unicode-casemap orders them
  EXPECT_EQ(casemap("café"), "CAFE\xcc\x81");  // E + combining acute
  EXPECT_EQ(casemap("Émile"), casemap("émile"));
  EXPECT_EQ(casemap(std::string("a\xff")), "A\xef\xbf\xbd");  // not UTF-8: compares as U+FFFD
}

TEST(ImapSortKeys, SentTimeInUtcWithZonesAndWithoutSeconds) {
  EXPECT_EQ(sent_time("Mon, 6 Feb 2023 09:00:00 +0000"), 1675674000);
  EXPECT_EQ(sent_time("6 Feb 2023 08:00:00 -0100"), 1675674000);
  EXPECT_EQ(sent_time("Mon, 6 Feb 2023 04:00 EST"), 1675674000);
  EXPECT_EQ(sent_time("garbage"), 0);
  EXPECT_EQ(sent_time("Mon, 6 Feb 2023 25:00:00 +0000"), 0);
}

TEST(ImapSortKeys, KeysFromAHeader) {
  auto k = sort_keys(
      "From: \"Ann\" <Ann.Lee@example.org>\nTo: team: bob@x.test;\nSubject: Re: [x] Hello\n"
      "Message-ID: <a@b>\nReferences: <r1@b> <r2@b>\nIn-Reply-To: <ignored@b>\nDate: 6 Feb 2023 09:00:00 +0000\n\n");
  EXPECT_EQ(k.from, "ANN.LEE");
  EXPECT_EQ(k.to, "TEAM");  // a group's name, as ENVELOPE lists it first
  EXPECT_EQ(k.subject, "HELLO");
  EXPECT_TRUE(k.reply);
  EXPECT_EQ(k.message_id, "<a@b>");
  EXPECT_EQ(k.references, (std::vector<std::string>{"<r1@b>", "<r2@b>"}));
  EXPECT_EQ(k.sent, 1675674000);
  auto irt = sort_keys("In-Reply-To: <p@b> (was: <q@b>)\n\n");
  EXPECT_EQ(irt.references, (std::vector<std::string>{"<p@b>"}));
}
