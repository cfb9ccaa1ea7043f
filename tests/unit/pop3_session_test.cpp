// POP3 session tests without a transport: bytes in, replies out, the driver's part
// (password checks, the mailbox, sending a message) played by the test. Scripts are
// replayed split at every byte offset, which must not change a single reply.
#include <gtest/gtest.h>

#include "pop3/session.hpp"

using namespace bulwark;
using namespace bulwark::pop3;

namespace {

struct FakeHooks : Hooks {
  struct NoSecrets : auth::SecretSource {
    std::optional<auth::ScramSecret> scram_secret(const std::string&) override { return std::nullopt; }
    std::optional<auth::CramSecret> cram_md5_secret(const std::string&) override { return std::nullopt; }
  } none;
  bool blocked = false;
  std::vector<std::string> failures, refusals;
  auth::SecretSource& secrets() override { return none; }
  bool login_blocked() override { return blocked; }
  void login_failed(std::string_view mech, const std::string& user, std::string_view why) override {
    failures.push_back(std::string(mech) + " " + user + " " + std::string(why));
  }
  void refused(const std::string& what) override { refusals.push_back(what); }
};

Config config(auth::Mode mode = auth::Mode::secure_auth, bool stls = true) {
  Config c;
  c.hostname = "mail.example.test";
  c.stls_available = stls;
  c.auth.mode = mode;
  c.auth.mechanisms = {auth::Mech::scram_sha_256, auth::Mech::plain, auth::Mech::login};
  c.max_failed_commands = 5;
  return c;
}

const std::vector<Entry> maildrop = {{100, "aaaa0001"}, {250, "aaaa0002"}, {40, "aaaa0003"}};

// Plays the driver: the password "secret" is right, the mailbox has `maildrop`,
// and sending message i writes "<msg i>\r\n".
struct Driver {
  Session s;
  std::string out;
  std::vector<std::string> events;
  bool closed = false;
  Driver(Config c, FakeHooks& h, bool tls = false) : s(std::move(c), h, {"192.0.2.1", tls}) { out = s.greet().bytes; }
  void run(Output o) {
    for (;;) {
      out += o.bytes;
      switch (o.next) {
        case Next::read: return;
        case Next::close: closed = true; return;
        case Next::starttls: events.push_back("starttls"); o = s.tls_started(); break;
        case Next::verify:
          events.push_back("verify " + s.pending_login().user);
          o = s.login_finished(s.pending_login().password == "secret");
          break;
        case Next::open_mailbox:
          events.push_back("open " + s.login_user());
          o = s.mailbox_opened(s.login_user() == "busy@example.test" ? Session::Opened::in_use : Session::Opened::ok,
                               maildrop);
          break;
        case Next::send_message:
          out += s.sending().ok_line + "<msg " + std::to_string(s.sending().index) + ">\r\n";
          o = s.message_sent(true);
          break;
        case Next::update: {
          std::string d = "update";
          for (auto i : s.to_delete()) d += " " + std::to_string(i);
          events.push_back(d);
          o = s.update_finished(true);
          break;
        }
      }
    }
  }
  void feed(std::string_view b) { run(s.feed(b)); }
};

// Runs `script` whole and split at every offset; the replies must be the same.
std::string play(const Config& c, const std::string& script, bool tls = false) {
  FakeHooks h;
  Driver whole(c, h, tls);
  whole.feed(script);
  for (size_t cut = 1; cut < script.size(); ++cut) {
    FakeHooks h2;
    Driver d(c, h2, tls);
    d.feed(script.substr(0, cut));
    if (!d.closed) d.feed(script.substr(cut));
    EXPECT_EQ(d.out, whole.out) << "split at " << cut;
    if (d.out != whole.out) break;
  }
  return whole.out;
}

}  // namespace

TEST(Pop3Session, UserPassStatListUidlRetrDeleQuit) {
  std::string out = play(config(auth::Mode::none),
                         "USER demo@example.test\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\n"
                         "RETR 2\r\nTOP 1 0\r\nDELE 1\r\nSTAT\r\nLIST 1\r\nRSET\r\nDELE 3\r\nQUIT\r\n");
  EXPECT_EQ(out,
            "+OK mail.example.test POP3 bulwark ready\r\n"
            "+OK Send the password\r\n"
            "+OK Logged in, 3 messages (390 octets)\r\n"
            "+OK 3 390\r\n"
            "+OK Scan listing follows\r\n1 100\r\n2 250\r\n3 40\r\n.\r\n"
            "+OK 2 250\r\n"
            "+OK Unique-ID listing follows\r\n1 aaaa0001\r\n2 aaaa0002\r\n3 aaaa0003\r\n.\r\n"
            "+OK 3 aaaa0003\r\n"
            "+OK 250 octets\r\n<msg 1>\r\n.\r\n"
            "+OK Top of message follows\r\n<msg 0>\r\n.\r\n"
            "+OK Message 1 deleted\r\n"
            "+OK 2 290\r\n"
            "-ERR Message 1 already deleted\r\n"
            "+OK Maildrop has 3 messages\r\n"
            "+OK Message 3 deleted\r\n"
            "+OK mail.example.test POP3 bulwark signing off (1 messages deleted)\r\n");
}

TEST(Pop3Session, DeletionsHappenOnlyAtQuitInTransaction) {
  FakeHooks h;
  Driver d(config(auth::Mode::none), h);
  d.feed("USER demo@example.test\r\nPASS secret\r\nDELE 2\r\nDELE 3\r\n");
  EXPECT_EQ(d.events, (std::vector<std::string>{"verify demo@example.test", "open demo@example.test"}));
  d.feed("QUIT\r\n");
  EXPECT_EQ(d.events.back(), "update 1 2");
  EXPECT_TRUE(d.closed);
}

TEST(Pop3Session, TimeoutEndsWithoutUpdate) {
  FakeHooks h;
  Driver d(config(auth::Mode::none), h);
  d.feed("USER demo@example.test\r\nPASS secret\r\nDELE 2\r\n");
  Output o = d.s.shutdown(Session::Closing::timeout);
  EXPECT_EQ(o.next, Next::close);
  EXPECT_EQ(o.bytes, "-ERR [SYS/TEMP] Idle timeout, closing connection\r\n");
  EXPECT_TRUE(d.s.to_delete().size() == 1);  // marked, but nobody asked for UPDATE
  EXPECT_EQ(d.events.size(), 2u);
}

TEST(Pop3Session, SecureAuthRefusesPlaintextWithoutTls) {
  FakeHooks h;
  Driver d(config(auth::Mode::secure_auth), h);
  d.feed("CAPA\r\nUSER demo@example.test\r\nAUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n");
  EXPECT_EQ(d.out.find("USER\r\n"), std::string::npos);
  EXPECT_NE(d.out.find("SASL SCRAM-SHA-256\r\n"), std::string::npos);
  EXPECT_NE(d.out.find("STLS\r\n"), std::string::npos);
  EXPECT_NE(d.out.find("-ERR [AUTH] Plaintext authentication disallowed without TLS: use STLS or SASL\r\n"),
            std::string::npos);
  EXPECT_NE(d.out.find("-ERR [AUTH] Plaintext authentication disallowed without TLS: use STLS\r\n"),
            std::string::npos);
  EXPECT_EQ(h.refusals.size(), 2u);
  EXPECT_TRUE(d.events.empty());
  // Inside TLS the same works.
  d.out.clear();
  d.feed("STLS\r\n");
  d.feed("CAPA\r\nAUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n");
  EXPECT_NE(d.out.find("USER\r\n"), std::string::npos);
  EXPECT_EQ(d.out.find("STLS\r\n"), std::string::npos);
  EXPECT_NE(d.out.find("+OK Logged in, 3 messages"), std::string::npos);
}

TEST(Pop3Session, EncryptedAllowsOnlyCapaStlsQuitBeforeTls) {
  FakeHooks h;
  Driver d(config(auth::Mode::encrypted), h);
  d.feed("CAPA\r\nAUTH SCRAM-SHA-256\r\nNOOP\r\nSTAT\r\n");
  EXPECT_EQ(d.out.find("SASL"), std::string::npos);
  EXPECT_EQ(d.out.find("USER\r\n"), std::string::npos);
  size_t n = 0;
  for (size_t p = 0; (p = d.out.find("-ERR [AUTH] TLS required: use STLS first", p)) != std::string::npos; ++p) ++n;
  EXPECT_EQ(n, 3u);
  d.feed("QUIT\r\n");
  EXPECT_TRUE(d.closed);
}

TEST(Pop3Session, StlsDiscardsWhatWasPipelinedBehindIt) {
  FakeHooks h;
  Driver d(config(auth::Mode::none), h);
  d.feed("STLS\r\nUSER demo@example.test\r\nPASS secret\r\n");
  EXPECT_EQ(d.events, std::vector<std::string>{"starttls"});
  EXPECT_EQ(d.out, "+OK mail.example.test POP3 bulwark ready\r\n+OK Begin TLS negotiation\r\n");
  d.feed("STLS\r\n");
  EXPECT_NE(d.out.find("-ERR Already using TLS"), std::string::npos);
}

TEST(Pop3Session, StlsNotOfferedWithoutCertificateOrOnPop3s) {
  FakeHooks h;
  Driver d(config(auth::Mode::none, false), h);
  d.feed("CAPA\r\nSTLS\r\n");
  EXPECT_EQ(d.out.find("STLS\r\n"), std::string::npos);
  EXPECT_NE(d.out.find("-ERR STLS not available"), std::string::npos);
}

TEST(Pop3Session, WrongPasswordIsDelayedCountedAndLogged) {
  FakeHooks h;
  Config c = config(auth::Mode::none);
  c.auth.failure_delay = std::chrono::milliseconds(700);
  Driver d(c, h);
  Output o = d.s.feed("USER demo@example.test\r\nPASS wrong\r\n");
  ASSERT_EQ(o.next, Next::verify);
  d.out += o.bytes;
  o = d.s.login_finished(false);
  EXPECT_EQ(o.delay, std::chrono::milliseconds(700));
  EXPECT_EQ(o.bytes, "-ERR [AUTH] Authentication failed\r\n");
  EXPECT_EQ(h.failures, std::vector<std::string>{"USER demo@example.test invalid credentials"});
}

TEST(Pop3Session, BlockedAddressIsRefusedBeforeAnyCheck) {
  FakeHooks h;
  h.blocked = true;
  Driver d(config(auth::Mode::none), h);
  d.feed("USER demo@example.test\r\nPASS secret\r\nAUTH PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n");
  EXPECT_TRUE(d.events.empty());
  EXPECT_NE(d.out.find("-ERR [SYS/TEMP] Too many failed logins"), std::string::npos);
}

TEST(Pop3Session, InUseClosesTheSession) {
  FakeHooks h;
  Driver d(config(auth::Mode::none), h);
  d.feed("USER busy@example.test\r\nPASS secret\r\nSTAT\r\n");
  EXPECT_TRUE(d.closed);
  EXPECT_NE(d.out.find("-ERR [IN-USE] "), std::string::npos);
  EXPECT_EQ(d.out.find("+OK 3"), std::string::npos);
}

TEST(Pop3Session, SaslPlainWithAndWithoutInitialResponseAndCancel) {
  std::string out = play(config(auth::Mode::none), "AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nAGRlbW9AZXhhbXBsZS50ZXN0AHNlY3JldA==\r\nQUIT\r\n");
  EXPECT_EQ(out,
            "+OK mail.example.test POP3 bulwark ready\r\n"
            "+ \r\n"
            "-ERR Authentication cancelled\r\n"
            "+ \r\n"
            "+OK Logged in, 3 messages (390 octets)\r\n"
            "+OK mail.example.test POP3 bulwark signing off\r\n");
  out = play(config(auth::Mode::none), "AUTH LOGIN ZGVtb0BleGFtcGxlLnRlc3Q=\r\nc2VjcmV0\r\n");
  EXPECT_EQ(out,
            "+OK mail.example.test POP3 bulwark ready\r\n"
            "+ UGFzc3dvcmQ6\r\n"
            "+OK Logged in, 3 messages (390 octets)\r\n");
  out = play(config(auth::Mode::none), "AUTH\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\n");
  EXPECT_EQ(out,
            "+OK mail.example.test POP3 bulwark ready\r\n"
            "+OK Methods supported\r\nSCRAM-SHA-256\r\nPLAIN\r\nLOGIN\r\n.\r\n"
            "-ERR Unsupported authentication mechanism\r\n"
            "-ERR Cannot decode the Base64 initial response\r\n");
}

TEST(Pop3Session, BadInputGetsErrAndTheSessionEndsAfterTheLimit) {
  std::string out = play(config(auth::Mode::none),
                         "STAT\r\nXYZZY\r\n" + std::string(300, 'A') + "\r\nUSER\r\nPASS x\r\nNOOP\r\n");
  EXPECT_EQ(out,
            "+OK mail.example.test POP3 bulwark ready\r\n"
            "-ERR Not logged in\r\n"
            "-ERR Unknown command\r\n"
            "-ERR Command line too long (RFC 2449: 255 octets)\r\n"
            "-ERR USER needs a name\r\n"
            "-ERR Too many errors, closing connection\r\n");
}

TEST(Pop3Session, MessageNumbersAreCheckedStrictly) {
  std::string out = play(config(auth::Mode::none),
                         "USER d@example.test\r\nPASS secret\r\nRETR 0\r\nRETR 4\r\nLIST +1\r\nTOP 1\r\nRETR 1 2\r\n");
  EXPECT_NE(out.find("-ERR No such message\r\n-ERR No such message\r\n-ERR Invalid message number\r\n"
                     "-ERR Usage: TOP msg n\r\n-ERR Too many errors"),
            std::string::npos)
      << out;
}

TEST(Pop3Session, OverlongLineArrivingInPiecesIsDiscardedWhole) {
  FakeHooks h;
  Driver d(config(auth::Mode::none), h);
  for (int i = 0; i < 100; ++i) d.feed(std::string(100, 'x'));  // 10,000 bytes, no end
  EXPECT_LE(d.s.buffered(), 300u);
  d.feed("yyy\r\nCAPA\r\n");
  EXPECT_NE(d.out.find("-ERR Command line too long"), std::string::npos);
  EXPECT_NE(d.out.find("+OK Capability list follows"), std::string::npos);
}

TEST(Pop3Encoder, CrlfDotStuffingAndFinalLineEnd) {
  MessageEncoder e;
  std::string out;
  e.put("Subject: x\n\n.hidden\n..two\nlast", out);
  e.finish(out);
  EXPECT_EQ(out, "Subject: x\r\n\r\n..hidden\r\n...two\r\nlast\r\n");
  // CRLF already in the file is kept as it is, split anywhere.
  std::string in = "A: b\r\n\r\n.x\r\n";
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    MessageEncoder e2;
    std::string o2;
    e2.put(in.substr(0, cut), o2);
    e2.put(in.substr(cut), o2);
    e2.finish(o2);
    EXPECT_EQ(o2, "A: b\r\n\r\n..x\r\n") << cut;
  }
}

TEST(Pop3Encoder, TopSendsTheHeaderAndNBodyLines) {
  std::string msg = "A: 1\nB: 2\n\nl1\nl2\nl3\n";
  for (uint64_t n : {0, 1, 2, 5}) {
    MessageEncoder e(n);
    std::string out;
    for (char c : msg) e.put(std::string_view(&c, 1), out);
    e.finish(out);
    std::string want = "A: 1\r\nB: 2\r\n\r\n";
    for (uint64_t i = 1; i <= std::min<uint64_t>(n, 3); ++i) want += "l" + std::to_string(i) + "\r\n";
    EXPECT_EQ(out, want) << n;
  }
}
