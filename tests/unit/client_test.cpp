// The outbound SMTP client, sans I/O: scripted server replies in, exact bytes out.
#include <gtest/gtest.h>

#include "auth/password.hpp"
#include "smtp/client.hpp"

using namespace bulwark;
using namespace bulwark::smtp;

namespace {
const std::string kData = "Subject: x\r\n\r\n.leading dot\r\nbody\r\n";

OutMessage message(std::vector<std::string> rcpts = {"b@remote.test", "c@remote.test"}) {
  OutMessage m;
  m.sender = "a@example.test";
  m.recipients = std::move(rcpts);
  m.size = kData.size();
  return m;
}

// Feeds the server's bytes either whole or one byte at a time; collects what the
// client wrote and the events. At the body event it writes kData in pieces of
// `piece` bytes, dot-stuffed, as the outbound driver does from the spool.
struct Script {
  std::string wrote;
  std::vector<ClientEvent> events;
  ClientSession* session = nullptr;
  size_t piece = 5;
  void take(const ClientOutput& o) {
    wrote += o.bytes;
    if (o.event != ClientEvent::none) events.push_back(o.event);
    if (o.event == ClientEvent::body && session) {
      DotStuffer d;
      for (size_t i = 0; i < kData.size(); i += piece) wrote += d.stuff(std::string_view(kData).substr(i, piece));
      wrote += d.finish();
      take(session->body_sent());
    }
  }
  void feed(ClientSession& c, const std::string& bytes, bool bytewise) {
    session = &c;
    if (!bytewise) return take(c.feed(bytes));
    for (char ch : bytes) take(c.feed(std::string(1, ch)));
  }
};
}  // namespace

TEST(Client, PipelinedWithStarttlsAndPerRecipientResults) {
  for (bool bytewise : {false, true}) {
    ClientSession c({"out.example.test", ClientTls::opportunistic, "", ""});
    Script r;
    r.feed(c, "220-mx.remote.test\r\n220 ESMTP\r\n", bytewise);
    EXPECT_EQ(r.wrote, "EHLO out.example.test\r\n");
    r.feed(c, "250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n", bytewise);
    EXPECT_EQ(r.wrote, "EHLO out.example.test\r\nSTARTTLS\r\n");
    r.feed(c, "220 go ahead\r\n", bytewise);
    ASSERT_EQ(r.events, std::vector<ClientEvent>{ClientEvent::starttls});
    r.wrote.clear();
    r.take(c.tls_started());
    EXPECT_TRUE(c.tls());
    r.feed(c, "250-mx\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n", bytewise);
    EXPECT_EQ(r.events.back(), ClientEvent::ready);
    r.wrote.clear();
    r.take(c.send(message()));
    EXPECT_EQ(r.wrote,
              "MAIL FROM:<a@example.test> SIZE=34\r\nRCPT TO:<b@remote.test>\r\nRCPT TO:<c@remote.test>\r\nDATA\r\n");
    r.wrote.clear();
    r.feed(c, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n354 go\r\n", bytewise);
    EXPECT_EQ(r.wrote, "Subject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\n");
    r.feed(c, "250 2.0.0 queued as X\r\n", bytewise);
    EXPECT_EQ(r.events.back(), ClientEvent::message_done);
    ASSERT_EQ(c.results().size(), 2u);
    EXPECT_EQ(c.results()[0].code, 250);
    EXPECT_EQ(c.results()[1].str(), "550 5.1.1 no such user");
    EXPECT_EQ(c.results()[1].enhanced(), "5.1.1");
    // The connection is reused for the next message.
    r.wrote.clear();
    r.take(c.send(message({"d@remote.test"})));
    EXPECT_EQ(r.wrote.substr(0, 10), "MAIL FROM:");
  }
}

TEST(Client, WithoutPipeliningOneStepAtATime) {
  ClientSession c({"out.test", ClientTls::off, "", ""});
  Script r;
  r.feed(c, "220 hi\r\n", false);
  r.feed(c, "250 mx\r\n", false);
  ASSERT_EQ(r.events.back(), ClientEvent::ready);
  r.wrote.clear();
  r.take(c.send(message()));
  EXPECT_EQ(r.wrote, "MAIL FROM:<a@example.test>\r\n");
  r.feed(c, "250 ok\r\n", false);
  EXPECT_EQ(r.wrote.substr(r.wrote.size() - 25), "RCPT TO:<b@remote.test>\r\n");
  r.feed(c, "450 4.2.0 try later\r\n", false);
  r.feed(c, "250 ok\r\n", false);
  EXPECT_TRUE(r.wrote.ends_with("DATA\r\n"));
  r.feed(c, "354 go\r\n", false);
  r.feed(c, "250 done\r\n", false);
  ASSERT_EQ(c.results().size(), 2u);
  EXPECT_EQ(c.results()[0].code, 450);
  EXPECT_EQ(c.results()[1].code, 250);
  r.take(c.quit());
  EXPECT_TRUE(r.wrote.ends_with("QUIT\r\n"));
}

TEST(Client, FailedTransactionsAreReset) {
  ClientSession c({"out.test", ClientTls::off, "", ""});
  Script r;
  r.feed(c, "220 hi\r\n250-mx\r\n250 PIPELINING\r\n", false);
  r.wrote.clear();
  r.take(c.send(message()));
  r.feed(c, "550 5.7.1 sender refused\r\n503 no\r\n503 no\r\n503 no\r\n", false);
  EXPECT_TRUE(r.wrote.ends_with("RSET\r\n"));
  r.feed(c, "250 ok\r\n", false);
  EXPECT_EQ(r.events.back(), ClientEvent::message_done);
  EXPECT_EQ(c.results()[0].str(), "550 5.7.1 sender refused");
  EXPECT_EQ(c.results()[1].str(), "550 5.7.1 sender refused");
  // Every RCPT refused but the server said 354 anyway: an empty message ends it.
  r.wrote.clear();
  r.take(c.send(message()));
  r.feed(c, "250 ok\r\n550 5.1.1 no\r\n551 5.1.1 no\r\n354 go\r\n", false);
  EXPECT_EQ(r.wrote.substr(r.wrote.size() - 3), ".\r\n");
  r.feed(c, "554 no valid recipients\r\n", false);
  EXPECT_EQ(c.results()[1].code, 551);
}

TEST(Client, TlsRequiredAndMessageChecks) {
  ClientSession c({"out.test", ClientTls::required, "", ""});
  Script r;
  r.feed(c, "220 hi\r\n250 mx\r\n", false);
  ASSERT_EQ(r.events.back(), ClientEvent::failed);
  EXPECT_EQ(c.failure().code, 451);
  EXPECT_EQ(c.failure().enhanced(), "4.7.10");

  ClientSession d({"out.test", ClientTls::off, "", ""});
  d.feed("220 hi\r\n");
  d.feed("250-mx\r\n250 SIZE 10\r\n");
  ClientOutput o = d.send(message());
  EXPECT_EQ(o.bytes, "");
  EXPECT_EQ(o.event, ClientEvent::message_done);
  EXPECT_EQ(d.results()[0].enhanced(), "5.3.4");
  OutMessage m8 = message();
  m8.eight_bit = true;
  ClientSession e({"out.test", ClientTls::off, "", ""});
  e.feed("220 hi\r\n");
  e.feed("250 mx\r\n");
  e.send(m8);
  EXPECT_EQ(e.results()[0].enhanced(), "5.6.3");
}

TEST(Client, AuthOnlyInsideTls) {
  ClientSession plain({"out.test", ClientTls::opportunistic, "relay-user", "Relay-Pass-1"});
  plain.feed("220 hi\r\n");
  ClientOutput o = plain.feed("250-mx\r\n250 AUTH PLAIN LOGIN\r\n");
  EXPECT_EQ(o.event, ClientEvent::failed);
  EXPECT_EQ(o.bytes.find("AUTH"), std::string::npos);  // never in clear
  ClientSession c({"out.test", ClientTls::required, "relay-user", "Relay-Pass-1"});
  c.feed("220 hi\r\n");
  c.feed("250-mx\r\n250 STARTTLS\r\n");
  c.feed("220 go\r\n");
  c.tls_started();
  o = c.feed("250-mx\r\n250 AUTH LOGIN\r\n");
  EXPECT_EQ(o.bytes, "AUTH LOGIN " + auth::base64_encode("relay-user") + "\r\n");
  o = c.feed("334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(o.bytes, auth::base64_encode("Relay-Pass-1") + "\r\n");
  o = c.feed("235 ok\r\n");
  EXPECT_EQ(o.event, ClientEvent::ready);
}

TEST(Client, BadRepliesFailTheSession) {
  ClientSession c({"out.test", ClientTls::off, "", ""});
  EXPECT_EQ(c.feed("hello there\r\n").event, ClientEvent::failed);
  ClientSession d({"out.test", ClientTls::off, "", ""});
  EXPECT_EQ(d.feed(std::string(5000, '2')).event, ClientEvent::failed);
  ClientSession e({"out.test", ClientTls::off, "", ""});
  EXPECT_EQ(e.feed("554 go away\r\n").event, ClientEvent::failed);
  EXPECT_TRUE(e.failure().permanent());
}

TEST(Client, DotStuffing) {
  EXPECT_EQ(dot_stuff(".a\r\nb\r\n.\r\n"), "..a\r\nb\r\n..\r\n");
  EXPECT_EQ(dot_stuff("no final newline"), "no final newline\r\n");
  EXPECT_EQ(dot_stuff(""), "");
  // Split anywhere, the same bytes: a "." after a CRLF that ended the previous piece.
  const std::string msg = "a\r\n.b\r\n..c\r\nd";
  for (size_t cut = 0; cut <= msg.size(); ++cut) {
    DotStuffer d;
    std::string out = d.stuff(msg.substr(0, cut));
    out += d.stuff(msg.substr(cut));
    out += d.finish();
    EXPECT_EQ(out, "a\r\n..b\r\n...c\r\nd\r\n.\r\n") << cut;
  }
  DotStuffer empty;
  EXPECT_EQ(empty.finish(), ".\r\n");
}
