// The IMAP session's connection and login states, without a transport; scripts are
// replayed split at every byte offset, which must not change a single reply.
#include <gtest/gtest.h>

#include "imap/session.hpp"

using namespace bulwark;
using namespace bulwark::imap;

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

Config config(auth::Mode mode = auth::Mode::secure_auth) {
  Config c;
  c.hostname = "mail.example.test";
  c.starttls_available = true;
  c.auth.mode = mode;
  c.auth.mechanisms = {auth::Mech::scram_sha_256, auth::Mech::plain, auth::Mech::login};
  c.max_failed_commands = 5;
  return c;
}

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
        case Next::logged_in: events.push_back("logged in " + s.login_user()); o = s.resume(); break;
      }
    }
  }
  void feed(std::string_view b) { run(s.feed(b)); }
};

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

const char* caps_plain =
    "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ENABLE ID IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN STARTTLS "
    "LOGINDISABLED AUTH=SCRAM-SHA-256";

}  // namespace

TEST(ImapSession, GreetingAndCapabilityFollowThePolicy) {
  std::string out = play(config(), "a CAPABILITY\r\nb NOOP\r\nc LOGOUT\r\n");
  EXPECT_EQ(out, std::string("* OK [CAPABILITY ") + caps_plain +
                     "] mail.example.test IMAP bulwark ready\r\n"
                     "* CAPABILITY " + caps_plain + "\r\na OK CAPABILITY completed\r\n"
                     "b OK NOOP completed\r\n"
                     "* BYE mail.example.test IMAP bulwark signing off\r\nc OK LOGOUT completed\r\n");
  FakeHooks h;
  Driver tls(config(), h, true);
  EXPECT_EQ(tls.out.find("LOGINDISABLED"), std::string::npos);
  EXPECT_EQ(tls.out.find("STARTTLS"), std::string::npos);
  EXPECT_NE(tls.out.find("AUTH=PLAIN AUTH=LOGIN"), std::string::npos);
}

TEST(ImapSession, LoginWithQuotedAndLiteralArgumentsAndPipelinedCommands) {
  std::string out = play(config(auth::Mode::none), "a LOGIN \"demo@example.test\" {6+}\r\nsecret\r\nb ENABLE IMAP4rev2 CONDSTORE\r\n");
  EXPECT_NE(out.find("a OK [CAPABILITY "), std::string::npos);
  EXPECT_NE(out.find("] Logged in\r\n* ENABLED IMAP4rev2 CONDSTORE\r\nb OK ENABLE completed\r\n"), std::string::npos)
      << out;
  // a synchronizing literal gets its "+"
  out = play(config(auth::Mode::none), "a LOGIN demo@example.test {6}\r\nsecret\r\n");
  EXPECT_NE(out.find("+ Ready for literal data\r\na OK"), std::string::npos);
}

TEST(ImapSession, SecureAuthRefusesLoginWithoutTls) {
  FakeHooks h;
  Driver d(config(), h);
  d.feed("a LOGIN demo@example.test secret\r\nb AUTHENTICATE PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n");
  EXPECT_NE(d.out.find("a NO [PRIVACYREQUIRED] Plaintext login is disabled"), std::string::npos);
  EXPECT_NE(d.out.find("b NO [PRIVACYREQUIRED] This mechanism needs TLS"), std::string::npos);
  EXPECT_TRUE(d.events.empty());
  d.feed("c STARTTLS\r\n");
  d.feed("d AUTHENTICATE PLAIN AGRlbW9AZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n");
  EXPECT_EQ(d.events, (std::vector<std::string>{"starttls", "verify demo@example.test", "logged in demo@example.test"}));
}

TEST(ImapSession, EncryptedRefusesEverythingButTheWayToTls) {
  FakeHooks h;
  Driver d(config(auth::Mode::encrypted), h);
  d.feed("a LOGIN u p\r\nb AUTHENTICATE SCRAM-SHA-256\r\nc CAPABILITY\r\n");
  EXPECT_NE(d.out.find("a NO [PRIVACYREQUIRED] Use STARTTLS first"), std::string::npos);
  EXPECT_NE(d.out.find("b NO [PRIVACYREQUIRED] Use STARTTLS first"), std::string::npos);
  EXPECT_NE(d.out.find("c OK CAPABILITY"), std::string::npos);
  EXPECT_EQ(h.refusals, (std::vector<std::string>{"LOGIN before STARTTLS", "AUTHENTICATE before STARTTLS"}));
}

TEST(ImapSession, StarttlsDropsWhatWasPipelinedBehindIt) {
  FakeHooks h;
  Driver d(config(auth::Mode::none), h);
  d.feed("a STARTTLS\r\nb LOGIN demo@example.test secret\r\n");
  EXPECT_EQ(d.events, std::vector<std::string>{"starttls"});
  EXPECT_EQ(d.out.substr(d.out.find("a OK")), "a OK Begin TLS negotiation now\r\n");
}

TEST(ImapSession, AuthenticateExchangesCancelAndFailures) {
  std::string out = play(config(auth::Mode::none),
                         "a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE LOGIN\r\nZGVtb0BleGFtcGxlLnRlc3Q=\r\nd3Jvbmc=\r\n"
                         "c AUTHENTICATE PLAIN =\r\nd NOOP\r\n");
  EXPECT_EQ(out.substr(out.find("\r\n") + 2),
            "+ \r\n"
            "a BAD Authentication cancelled\r\n"
            "+ VXNlcm5hbWU6\r\n"
            "+ UGFzc3dvcmQ6\r\n"
            "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
            "c BAD Malformed authentication exchange\r\n"
            "d OK NOOP completed\r\n");
}

TEST(ImapSession, BadInputIsTaggedBadAndTheSessionEndsAfterTheLimit) {
  std::string out = play(config(auth::Mode::none), "a FOO\r\nb SELECT INBOX\r\nc LOGIN\r\n\"x\r\nd NOOP\r\ne X Y\r\nf NOOP\r\n");
  EXPECT_EQ(out.substr(out.find("\r\n") + 2),
            "a BAD Unknown command\r\n"
            "b BAD Log in first\r\n"
            "c BAD Usage: LOGIN user password\r\n"
            "* BAD Missing or bad tag\r\n"
            "d OK NOOP completed\r\n"
            "e BAD Unknown command\r\n"
            "* BYE Too many errors, closing connection\r\n");
}

TEST(ImapSession, BlockedAddressAndLongLines) {
  FakeHooks h;
  h.blocked = true;
  Driver d(config(auth::Mode::none), h);
  d.feed("a LOGIN demo@example.test secret\r\n");
  EXPECT_NE(d.out.find("a NO [UNAVAILABLE] Too many failed logins"), std::string::npos);
  EXPECT_TRUE(d.events.empty());
  FakeHooks h2;
  Config c = config(auth::Mode::none);
  c.limits.max_text = 1000;
  Driver e(c, h2);
  for (int i = 0; i < 20 && !e.closed; ++i) e.feed(std::string(100, 'x'));
  EXPECT_TRUE(e.closed);
  EXPECT_NE(e.out.find("* BYE Command line too long\r\n"), std::string::npos);
}
