// ENVELOPE, BODYSTRUCTURE and part sections on real-world-shaped messages.
#include <gtest/gtest.h>

#include "imap/mime.hpp"

using namespace bulwark::imap;

namespace {
const std::string nested =
    "From: \"Ann Example\" <ann@example.test>\r\n"
    "To: bob@example.test, Carol <carol@example.test>\r\n"
    "Cc: team: dan@example.test, eve@example.test;\r\n"
    "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
    "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    "Message-ID: <m1@example.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "hello\r\n"
    "world\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "<p>hello</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"a b.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"a b.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0=\r\n"
    "--outer\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: x@y.test\r\n"
    "Subject: inner\r\n"
    "\r\n"
    "inner body\r\n"
    "--outer--\r\n"
    "epilogue\r\n";
}  // namespace

TEST(ImapMime, EnvelopeWithNamesGroupsAndEncodedWords) {
  MimePart m = parse_mime(nested);
  EXPECT_EQ(envelope(m.header),
            "(\"Mon, 23 Nov 2026 10:00:00 +0000\" \"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\" "
            "((\"Ann Example\" NIL \"ann\" \"example.test\")) ((\"Ann Example\" NIL \"ann\" \"example.test\")) "
            "((\"Ann Example\" NIL \"ann\" \"example.test\")) "
            "((NIL NIL \"bob\" \"example.test\")(\"Carol\" NIL \"carol\" \"example.test\")) "
            "((NIL NIL \"team\" NIL)(NIL NIL \"dan\" \"example.test\")(NIL NIL \"eve\" \"example.test\")(NIL NIL NIL NIL)) "
            "NIL NIL \"<m1@example.test>\")");
}

TEST(ImapMime, BodystructureOfNestedParts) {
  MimePart m = parse_mime(nested);
  ASSERT_EQ(m.children.size(), 3u);
  EXPECT_EQ(m.children[0].children.size(), 2u);
  // lines are line ends, as Dovecot counts them: the CRLF before a delimiter is the delimiter's
  EXPECT_EQ(body_structure(m, false),
            "(((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 1)"
            "(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 12 0) \"alternative\")"
            "(\"application\" \"pdf\" (\"name\" \"a b.pdf\") NIL NIL \"base64\" 8)"
            "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 44 "
            "(NIL \"inner\" ((NIL NIL \"x\" \"y.test\")) ((NIL NIL \"x\" \"y.test\")) ((NIL NIL \"x\" \"y.test\")) "
            "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0) 3) \"mixed\")");
  std::string ext = body_structure(m, true);
  EXPECT_NE(ext.find("(\"attachment\" (\"filename\" \"a b.pdf\"))"), std::string::npos) << ext;
  EXPECT_NE(ext.find("\"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)"), std::string::npos) << ext;
}

TEST(ImapMime, SectionsByPartNumber) {
  MimePart m = parse_mime(nested);
  std::string what;
  EXPECT_EQ(*mime_section(m, "1.1", what), "hello\r\nworld");
  EXPECT_EQ(*mime_section(m, "1.2.MIME", what),
            "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
  EXPECT_EQ(*mime_section(m, "2", what), "JVBERi0=");
  EXPECT_EQ(*mime_section(m, "3.HEADER", what), "From: x@y.test\r\nSubject: inner\r\n\r\n");
  EXPECT_EQ(*mime_section(m, "3.TEXT", what), "inner body");
  EXPECT_EQ(*mime_section(m, "3.1", what), "inner body");
  EXPECT_FALSE(mime_section(m, "4", what));
  // a single part's part 1 is itself, once (Dovecot answers the same)
  EXPECT_EQ(*mime_section(m, "1.1.1", what), "hello\r\nworld");
  EXPECT_FALSE(mime_section(m, "1.1.1.1", what));
  // HEADER/TEXT below the top exist only for message/rfc822 parts
  EXPECT_FALSE(mime_section(m, "2.HEADER", what));
  EXPECT_FALSE(mime_section(m, "1.1.TEXT", what));
  MimePart single = parse_mime("Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(*mime_section(single, "1", what), "body\r\n");
  EXPECT_FALSE(mime_section(single, "1.1", what));
}

TEST(ImapMime, BrokenMimeIsShownAsClientsExpect) {
  // no boundary parameter, boundary never used, unterminated, nested too deep
  EXPECT_EQ(body_structure(parse_mime("Content-Type: multipart/mixed\r\n\r\nx\r\n"), false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)");
  EXPECT_EQ(body_structure(parse_mime("Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts\r\n"), false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1)");
  MimePart open = parse_mime("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nlast part, never closed\r\n");
  ASSERT_EQ(open.children.size(), 1u);
  EXPECT_EQ(open.children[0].body, "last part, never closed\r\n");
  std::string deep;
  for (int i = 0; i < 1000; ++i) deep += "Content-Type: message/rfc822\r\n\r\n";
  std::string s = body_structure(parse_mime(deep + "x\r\n"), true);
  EXPECT_LT(s.size(), 200000u);
}
