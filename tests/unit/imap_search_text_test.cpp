// imap/search_text and the date readers: what SEARCH compares.
#include <gtest/gtest.h>

#include "imap/message_text.hpp"
#include "imap/search_text.hpp"

using namespace bulwark::imap;

TEST(ImapSearchText, EncodedWordsDecodeIntoUtf8) {
  EXPECT_EQ(decode_words("=?UTF-8?B?w5xiZXJwcsO8ZnVuZw==?= der Rechnung"), "Überprüfung der Rechnung");
  EXPECT_EQ(decode_words("=?iso-8859-1?q?Gr=FC=DFe?= und =?UTF-8?Q?caf=C3=A9_au_lait?="), "Grüße und café au lait");
  // white space between two encoded words goes (RFC 2047 6.2); elsewhere it stays
  EXPECT_EQ(decode_words("=?UTF-8?Q?a?= \r\n =?UTF-8?Q?b?= c"), "ab c");
  // unknown charset, broken words: as written, never a crash
  EXPECT_EQ(decode_words("=?x-nonsense?Q?abc?="), "abc");
  EXPECT_EQ(decode_words("=?UTF-8?Q?unterminated"), "=?UTF-8?Q?unterminated");
  EXPECT_EQ(decode_words("=?UTF-8?X?abc?="), "=?UTF-8?X?abc?=");
  EXPECT_EQ(decode_words("=?UTF-8*de?B?w7w=?="), "ü");  // RFC 2231 language
}

// Found by fuzz_imap: glibc's //IGNORE reports EILSEQ having consumed every byte, and the
// converter then skipped one more -- a read past the input (ASan: negative-size-param).
TEST(ImapSearchText, InvalidBytesAtTheEndOfAStatefulCharset) {
  EXPECT_EQ(decode_words("=?shift_jis?Q?ab=FF?="), "ab");
  EXPECT_EQ(decode_words("=?iso-2022-jp?Q?a=1B$B=FF=FF?="), "a");
  EXPECT_EQ(decode_words("=?big5?Q?=8E=FF=80=81=82?= tail"), std::string(decode_words("=?big5?Q?=8E=FF=80=81=82?=")) + " tail");
}

TEST(ImapSearchText, FoldsCaseBeyondAscii) {
  EXPECT_EQ(fold("ÜBER Café ΑΒΓ Жук", false), "über café αβγ жук");
  EXPECT_EQ(fold("a \t\r\n  b  ", true), "a b");
  EXPECT_EQ(fold(std::string("bad \xff\xfe utf-8"), false), std::string("bad \xff\xfe utf-8"));
}

TEST(ImapSearchText, TextPartsDecodedAndConverted) {
  MimePart m = parse_mime(
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
      "Gr=FC=DFe aus K=F6ln, a soft=\r\nbreak\r\n"
      "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "UG9zdGZhY2gg\r\ndm9sbA==\r\n"
      "--b\r\nContent-Type: application/pdf; name=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "JVBERi0=\r\n"
      "--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: =?UTF-8?Q?inner_=C3=BC?=\r\n\r\ninner text\r\n"
      "--b--\r\n");
  std::string t = searchable_text(m);
  EXPECT_NE(t.find("Grüße aus Köln, a softbreak"), std::string::npos) << t;
  EXPECT_NE(t.find("Postfach voll"), std::string::npos) << t;
  EXPECT_NE(t.find("Subject: inner ü"), std::string::npos) << t;
  EXPECT_NE(t.find("inner text"), std::string::npos) << t;
  EXPECT_EQ(t.find("report.pdf"), std::string::npos) << t;  // part headers and non-text parts are not text
  EXPECT_EQ(t.find("%PDF"), std::string::npos) << t;
}

TEST(ImapSearchText, DatesOfAppendAndOfTheDateHeader) {
  EXPECT_EQ(date_time("05-Feb-2023 10:00:00 +0000"), 1675591200);
  EXPECT_EQ(date_time(" 5-Feb-2023 11:30:00 +0130"), 1675591200);
  EXPECT_EQ(date_time("05-Feb-2023 05:00:00 -0500"), 1675591200);
  EXPECT_FALSE(date_time("05-Foo-2023 10:00:00 +0000"));
  EXPECT_FALSE(date_time("05-Feb-2023 25:00:00 +0000"));
  EXPECT_FALSE(date_time("05-Feb-2023 10:00:00 0000"));
  EXPECT_FALSE(date_time(""));
  // SENT*: the day of the Date: header, time and zone disregarded
  EXPECT_EQ(sent_day("Tue, 3 Jan 2023 23:30:00 -0500"), search_date("3-Jan-2023"));
  EXPECT_EQ(sent_day("1 Feb 2023 23:59:59 EST"), search_date("1-Feb-2023"));
  EXPECT_EQ(sent_day("Mon, 2 Jan 99 10:00 GMT"), search_date("2-Jan-1999"));
  EXPECT_FALSE(sent_day("yesterday"));
  EXPECT_FALSE(sent_day(""));
}

TEST(ImapSearchText, TransferEncodingsUndoneForBinary) {
  EXPECT_EQ(decode_transfer("base64", "AAEC\r\nYmlu\r\n"), std::string("\0\1\2bin", 6));
  EXPECT_EQ(decode_transfer(" Quoted-Printable ", "a=3Db=\r\nc=FF\r\n"), "a=bc\xff\r\n");
  EXPECT_EQ(decode_transfer("8bit", "as is\r\n"), "as is\r\n");
  EXPECT_EQ(decode_transfer("", "as is"), "as is");
  EXPECT_FALSE(decode_transfer("x-uuencode", "begin 644 x"));
  // broken base64: what decodes up to the first byte that is not base64, never a failure
  EXPECT_EQ(decode_transfer("base64", "YWJj\r\nZGVm!!garbage"), "abcdef");
}
