// The IMAP command reader: token trees, the literal handshake, bounds. Every script
// is also fed one byte at a time, which must give the same events.
#include <gtest/gtest.h>

#include "imap/parser.hpp"

using namespace bulwark::imap;

namespace {

// Feeds `in` (whole, or byte by byte) and renders the events as text.
std::string events(const std::string& in, bool bytewise, Limits lim = {}) {
  Reader r(lim);
  std::string out;
  auto drain = [&] {
    for (;;) {
      Reader::Event e = r.next();
      using K = Reader::Event::Kind;
      if (e.kind == K::none) return;
      if (e.kind == K::continuation) out += "[+" + std::to_string(e.size) + "]";
      if (e.kind == K::literal_begin) out += "[begin " + e.tag + " " + e.cmd.name + " " + std::to_string(e.size) + "]";
      if (e.kind == K::literal_data) out += "[data " + std::string(e.data) + "]";
      if (e.kind == K::error)
        out += "[error " + e.tag + " " + e.reason + (e.too_big ? " toobig" : "") + (e.fatal ? " fatal" : "") + "]";
      if (e.kind == K::command) {
        std::function<std::string(const Token&)> show = [&](const Token& t) -> std::string {
          switch (t.kind) {
            case Token::Kind::atom: return t.value;
            case Token::Kind::quoted: return "\"" + t.value + "\"";
            case Token::Kind::literal: return std::string(t.binary ? "~" : "") + "{" + t.value + "}";
            case Token::Kind::streamed: return "{stream " + std::to_string(t.size) + "}";
            case Token::Kind::list: {
              std::string s = "(";
              for (size_t i = 0; i < t.items.size(); ++i) s += (i ? " " : "") + show(t.items[i]);
              return s + ")";
            }
          }
          return "?";
        };
        out += "[" + e.cmd.tag + " " + e.cmd.name;
        for (auto& a : e.cmd.args) out += " " + show(a);
        out += "]";
      }
    }
  };
  if (bytewise) {
    for (char c : in) {
      r.feed(std::string_view(&c, 1));
      drain();
    }
  } else {
    r.feed(in);
    drain();
  }
  return out;
}

std::string both(const std::string& in, Limits lim = {}) {
  std::string whole = events(in, false, lim);
  std::string bytes = events(in, true, lim);
  EXPECT_EQ(whole, bytes) << "byte by byte differs for " << in;
  return whole;
}

}  // namespace

TEST(ImapParser, AtomsQuotedListsAndUidCommands) {
  EXPECT_EQ(both("a1 login user \"pa ss\\\"w\"\r\n"), "[a1 LOGIN user \"pa ss\"w\"]");
  EXPECT_EQ(both("a2 UID fetch 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)\r\n"),
            "[a2 UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)]");
  EXPECT_EQ(both("t select INBOX (CONDSTORE)\r\nt2 noop\n"), "[t SELECT INBOX (CONDSTORE)][t2 NOOP]");
  EXPECT_EQ(both("x list \"\" (\"INBOX\" NIL ()) \r\n"), "[x LIST \"\" (\"INBOX\" NIL ())]");
}

TEST(ImapParser, SynchronizingAndNonSynchronizingLiterals) {
  EXPECT_EQ(both("a login {4}\r\nuser {3+}\r\npwd\r\n"), "[+4][a LOGIN {user} {pwd}]");
  EXPECT_EQ(both("b append INBOX (\\Seen) ~{5}\r\nab\r\nc\r\n"), "[+5][b APPEND INBOX (\\Seen) ~{ab\r\nc}]");
  EXPECT_EQ(both("c search text {0}\r\n\r\n"), "[+0][c SEARCH text {}]");
}

TEST(ImapParser, LargeLiteralsAreStreamedNotHeld) {
  Limits lim;
  lim.max_inline_literal = 4;
  std::string out = events("a APPEND INBOX {10}\r\n0123456789 extra\r\n", false, lim);
  EXPECT_EQ(out, "[+10][begin a APPEND 10][data 0123456789][a APPEND INBOX {stream 10} extra]");
  std::string bytewise = events("a APPEND INBOX {3+}\r\nxyz\r\n", true, lim = {.max_inline_literal = 2});
  EXPECT_EQ(bytewise, "[begin a APPEND 3][data x][data y][data z][a APPEND INBOX {stream 3}]");
}

TEST(ImapParser, LiteralsOverTheLimitAreRefusedWithoutBeingRead) {
  Limits lim;
  lim.max_literal = 10;
  // synchronizing: no "+" is sent, the client sends nothing more
  EXPECT_EQ(both("a APPEND INBOX {11}\r\nb NOOP\r\n", lim), "[error a Literal too big toobig][b NOOP]");
  // non-synchronizing: read and discarded (RFC 7888 4), then refused
  EXPECT_EQ(both("a APPEND INBOX {11+}\r\n01234567890 rest\r\nb NOOP\r\n", lim),
            "[error a Literal too big toobig][b NOOP]");
  // LITERAL-: non-synchronizing literals only up to 4096
  lim = {};
  lim.literal_minus = true;
  EXPECT_EQ(both("a APPEND INBOX {4097+}\r\n" + std::string(4097, 'x') + "\r\nb NOOP\r\n", lim),
            "[error a Literal too big toobig][b NOOP]");
  EXPECT_EQ(both("a APPEND INBOX {99999999999999999999999}\r\n"), "[error a Literal too big toobig]");
}

TEST(ImapParser, BadSyntaxGetsAnErrorWithTheTag) {
  EXPECT_EQ(both("\r\n"), "[error * Empty command]");
  EXPECT_EQ(both("a\r\n"), "[error a Missing command]");
  EXPECT_EQ(both("+x NOOP\r\n"), "[error * Missing or bad tag]");
  EXPECT_EQ(both("a LOGIN \"unterminated\r\n"), "[error a Missing closing quote]");
  EXPECT_EQ(both("a FETCH 1 (FLAGS\r\n"), "[error a Missing )]");
  // "[" without "]" is an ordinary atom character (ASTRING-CHAR): a mailbox "a[b"
  EXPECT_EQ(both("a FETCH 1 BODY[TEXT\r\n"), "[a FETCH 1 BODY[TEXT]");
  EXPECT_EQ(both("a SELECT a[b\r\nb LIST \"\" a[%\r\n"), "[a SELECT a[b][b LIST \"\" a[%]");
  EXPECT_EQ(both("a CREATE x[1 (USE (\\Archive))\r\n"), "[a CREATE x[1 (USE (\\Archive))]");
  EXPECT_EQ(both("a FETCH 1 FLAGS)\r\n"), "[error a Unexpected )]");
  EXPECT_EQ(both("a LOGIN \"x\\y\"\r\n"), "[error a Bad escape in a quoted string]");
  EXPECT_EQ(both(std::string("a NOOP \x01\r\n")), "[error a Control character in an atom]");
  EXPECT_EQ(both(std::string("a NO\0OP\r\nb NOOP\r\n", 17)), "[error a NUL in a command][b NOOP]");
}

TEST(ImapParser, BoundsOnLinesDepthAndTokens) {
  Limits lim;
  lim.max_text = 100;
  Reader r(lim);
  for (int i = 0; i < 100; ++i) {
    r.feed(std::string(50, 'x'));
    auto e = r.next();
    if (e.kind == Reader::Event::Kind::error) {
      EXPECT_TRUE(e.fatal);
      EXPECT_EQ(e.reason, "Command line too long");
      break;
    }
    ASSERT_LT(i, 5) << "still buffering";
  }
  EXPECT_LE(r.buffered(), 200u);
  EXPECT_EQ(both("a X " + std::string(40, '(') + std::string(40, ')') + "\r\n"),
            "[error a Parentheses nested too deeply]");
  Limits few;
  few.max_tokens = 5;
  EXPECT_EQ(both("a X 1 2 3 4 5 6\r\n", few), "[error a Too many arguments]");
}
