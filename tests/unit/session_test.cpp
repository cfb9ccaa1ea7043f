// Session tests over no transport at all: bytes in, reply bytes out. Every script is
// also replayed split at every byte offset, which must not change a single reply.
#include <gtest/gtest.h>

#include "smtp/session.hpp"

using namespace bulwark;
using namespace bulwark::smtp;

namespace {

struct FakeHooks : SessionHooks {
  int next_id = 0;
  RecipientLookup lookup_recipient(const Address& a) override {
    RecipientLookup r;
    std::string k = a.lookup_key();
    if (a.domain.empty()) k = "postmaster@example.test";
    if (!a.domain.empty() && a.domain != "example.test") {
      r.kind = RecipientLookup::not_local;
    } else if (k == "demo@example.test" || k == "postmaster@example.test") {
      r.kind = RecipientLookup::local;
      r.mailboxes = {k};
    } else if (k == "team@example.test") {
      r.kind = RecipientLookup::local;
      r.mailboxes = {"demo@example.test", "other@example.test"};
    } else if (k == "tempfail@example.test") {
      r.kind = RecipientLookup::temp_failure;
    } else {
      r.kind = RecipientLookup::unknown;
    }
    return r;
  }
  bool may_relay(const Address&) override { return false; }
  bool sender_needs_check(const Address& a) override { return a.domain == "nx.test" || a.domain == "dns.test"; }
  std::string new_queue_id() override { return "Q" + std::to_string(++next_id); }
  std::chrono::system_clock::time_point now() override { return std::chrono::system_clock::time_point{}; }
};

struct Result {
  std::string out;
  std::vector<Transaction> committed;
  bool closed = false;
  int tls_handshakes = 0;
  std::vector<std::string> logins;
};

SessionConfig config() {
  SessionConfig c;
  c.hostname = "mx.example.test";
  c.starttls_available = true;
  c.limits.max_message_size = 10000;
  c.limits.max_recipients = 3;
  c.limits.max_hops = 5;
  c.limits.max_failed_commands = 10;
  return c;
}

void handle(ServerSession& s, Output o, Result& run) {
  for (;;) {
    run.out += o.bytes;
    if (o.next == Next::commit) {
      run.committed.push_back(std::move(s.pending()));
      o = s.commit_finished(true);
      continue;
    }
    if (o.next == Next::check) {
      std::optional<Reply> refusal;
      if (s.checking_sender().domain == "nx.test") refusal = Reply(550, "5.1.8", "Sender domain does not exist");
      o = s.check_finished(refusal);
      continue;
    }
    if (o.next == Next::verify) {
      run.logins.push_back(s.pending_login().user);
      o = s.login_finished(s.pending_login().user == "demo@example.test" && s.pending_login().password == "pencil");
      continue;
    }
    if (o.next == Next::starttls) {
      ++run.tls_handshakes;
      o = s.tls_started("TLSv1.3", "TLS_AES_128_GCM_SHA256");
      continue;
    }
    if (o.next == Next::close) run.closed = true;
    return;
  }
}

Result run_chunks(const std::vector<std::string>& chunks, SessionConfig cfg = config()) {
  FakeHooks hooks;
  ServerSession s(cfg, hooks, ClientInfo{"192.0.2.9", false, "", ""});
  Result run;
  handle(s, s.greet(), run);
  for (auto& c : chunks) {
    if (run.closed) break;
    handle(s, s.feed(c), run);
  }
  return run;
}

Result run_script(const std::string& input, SessionConfig cfg = config()) { return run_chunks({input}, cfg); }

// The property every parser here must have: how TCP splits the input is invisible.
void expect_split_invariant(const std::string& input, SessionConfig cfg = config()) {
  Result whole = run_script(input, cfg);
  for (size_t i = 1; i < input.size(); ++i) {
    Result split = run_chunks({input.substr(0, i), input.substr(i)}, cfg);
    ASSERT_EQ(split.out, whole.out) << "split at " << i;
    ASSERT_EQ(split.committed.size(), whole.committed.size()) << "split at " << i;
    for (size_t k = 0; k < whole.committed.size(); ++k)
      ASSERT_EQ(split.committed[k].body.memory(), whole.committed[k].body.memory()) << "split at " << i;
  }
  // and one byte at a time
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  Result bytewise = run_chunks(bytes, cfg);
  ASSERT_EQ(bytewise.out, whole.out);
}

std::vector<std::string> reply_codes(const std::string& out) {
  std::vector<std::string> codes;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t e = out.find("\r\n", pos);
    std::string line = out.substr(pos, e - pos);
    if (line.size() >= 4 && line[3] == ' ') codes.push_back(line.substr(0, 3));
    pos = e + 2;
  }
  return codes;
}

const std::string kTx =
    "EHLO client.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n";

}  // namespace

TEST(Session, GreetsAndAdvertises) {
  Result r = run_script("EHLO client.test\r\n");
  EXPECT_EQ(r.out.substr(0, 4), "220 ");
  for (const char* ext : {"PIPELINING", "SIZE 10000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING",
                          "STARTTLS"})
    EXPECT_NE(r.out.find(std::string("250-") + ext + "\r\n"), std::string::npos) << ext;
}

TEST(Session, PlainDeliveryWithDotUnstuffing) {
  std::string in = kTx + "Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n";
  Result r = run_script(in);
  ASSERT_EQ(r.committed.size(), 1u);
  EXPECT_EQ(r.committed[0].body.memory(), "Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");
  EXPECT_EQ(r.committed[0].envelope.sender, "a@remote.test");
  ASSERT_EQ(r.committed[0].envelope.recipients.size(), 1u);
  EXPECT_EQ(r.committed[0].envelope.recipients[0].target, "demo@example.test");
  EXPECT_NE(r.committed[0].received.find("for <demo@example.test>"), std::string::npos);
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "250", "250", "354", "250", "221"}));
  EXPECT_TRUE(r.closed);
  expect_split_invariant(in);
}

TEST(Session, PipelinedTwoMessages) {
  std::string in = kTx + "one\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<team@example.test>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n";
  Result r = run_script(in);
  ASSERT_EQ(r.committed.size(), 2u);
  EXPECT_EQ(r.committed[1].body.memory(), "two\r\n");
  EXPECT_EQ(r.committed[1].envelope.sender, "");
  EXPECT_EQ(r.committed[1].envelope.recipients.size(), 2u);
  expect_split_invariant(in);
}

TEST(Session, SmugglingSequencesNeverEndData) {
  for (std::string end : {"\n.\n", "\n.\r\n", "\r.\r", "\r.\n", "\r\n.\n", "\n.\r"}) {
    std::string in = kTx + "Subject: x\r\n\r\nbody" + end +
                     "MAIL FROM:<evil@remote.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n";
    Result r = run_script(in);
    // Exactly one end of data is seen (the real CRLF.CRLF) and it is refused: no
    // message at all is accepted, the smuggled commands are never executed.
    EXPECT_EQ(r.committed.size(), 0u) << "sequence index";
    auto codes = reply_codes(r.out);
    ASSERT_EQ(codes.back(), "550");
    EXPECT_NE(r.out.find("550 5.6.0"), std::string::npos);
    EXPECT_EQ(std::count(codes.begin(), codes.end(), "354"), 1);
    expect_split_invariant(in);
  }
}

TEST(Session, BareLfAndCrInCommandsRefused) {
  Result r = run_script("EHLO client.test\nNOOP\r\nNO\rOP\r\nNOOP\r\n");
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "500", "250", "500", "250"}));
  expect_split_invariant("EHLO client.test\nNOOP\r\nNO\rOP\r\nNOOP\r\n");
}

TEST(Session, CommandLineLimit) {
  std::string ok = "NOOP " + std::string(512 - 7, 'x') + "\r\n";
  std::string too_long = "NOOP " + std::string(512 - 6, 'x') + "\r\n";
  ASSERT_EQ(ok.size(), 512u);
  EXPECT_EQ(reply_codes(run_script(ok).out).back(), "250");
  EXPECT_EQ(reply_codes(run_script(too_long).out).back(), "500");
  std::string huge = "NOOP " + std::string(100000, 'x') + "\r\nNOOP\r\n";
  auto codes = reply_codes(run_script(huge).out);
  EXPECT_EQ(codes, (std::vector<std::string>{"220", "500", "250"}));
  expect_split_invariant(too_long + "NOOP\r\n");
}

TEST(Session, TextLineLimit) {
  std::string line998(998, 'a');
  Result ok = run_script(kTx + line998 + "\r\n.\r\n");
  EXPECT_EQ(ok.committed.size(), 1u);
  Result bad = run_script(kTx + line998 + "a\r\n.\r\n");
  EXPECT_EQ(bad.committed.size(), 0u);
  EXPECT_NE(bad.out.find("500 5.5.2"), std::string::npos);
  // A very long line that starts with '.' must not end data when its tail is "."
  Result tricky = run_script(kTx + std::string(5000, 'b') + ".\r\nstill data\r\n.\r\n");
  EXPECT_EQ(reply_codes(tricky.out).back(), "500");
  expect_split_invariant(kTx + line998 + "a\r\n.\r\n");
}

TEST(Session, MessageSize) {
  Result r = run_script("EHLO c.test\r\nMAIL FROM:<a@r.test> SIZE=10001\r\nMAIL FROM:<a@r.test> SIZE=10000\r\n");
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "552", "250"}));
  Result big = run_script(kTx + std::string(20, 'x') + "\r\n" + std::string(12000, '.') + "\r\n.\r\nNOOP\r\n");
  auto codes = reply_codes(big.out);
  EXPECT_EQ(codes[codes.size() - 2], "552");
  EXPECT_EQ(big.committed.size(), 0u);
}

TEST(Session, Recipients) {
  Result r = run_script(
      "EHLO c.test\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\n"
      "RCPT TO:<tempfail@example.test>\r\nRCPT TO:<Demo@EXAMPLE.test>\r\nRCPT TO:<Postmaster>\r\n"
      "RCPT TO:<team@example.test>\r\nRCPT TO:<demo@example.test>\r\n");
  EXPECT_EQ(reply_codes(r.out),
            (std::vector<std::string>{"220", "250", "250", "550", "554", "451", "250", "250", "250", "452"}));
  EXPECT_NE(r.out.find("554 5.7.1 Relaying denied"), std::string::npos);
  EXPECT_NE(r.out.find("550 5.1.1"), std::string::npos);
}

// Issue 8.7: refusals a client cannot sensibly go on after count as failed commands.
TEST(Session, RelayDeniedAndTooManyRecipientsCountAsFailures) {
  std::string in = "EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n";
  for (int i = 0; i < 500; ++i) in += "RCPT TO:<x" + std::to_string(i) + "@elsewhere.test>\r\n";
  Result r = run_script(in);
  auto codes = reply_codes(r.out);
  EXPECT_EQ(std::count(codes.begin(), codes.end(), "554"), 10);
  EXPECT_EQ(codes.back(), "421");
  EXPECT_TRUE(r.closed);
  std::string many = "EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n";
  for (int i = 0; i < 20; ++i) many += "RCPT TO:<demo@example.test>\r\nRCPT TO:<team@example.test>\r\n"
                                        "RCPT TO:<postmaster@example.test>\r\nRCPT TO:<Postmaster>\r\n";
  Result m = run_script(many);
  auto mc = reply_codes(m.out);
  EXPECT_EQ(std::count(mc.begin(), mc.end(), "452"), 10);
  EXPECT_TRUE(m.closed);
}

TEST(Session, SequenceErrors) {
  // A refused DATA ends each chunk: a client waits for that reply (RFC 2920).
  Result r = run_chunks({"MAIL FROM:<a@r.test>\r\nEHLO c.test\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n",
                         "MAIL FROM:<a@r.test>\r\nMAIL FROM:<a@r.test>\r\nDATA\r\n",
                         "RSET\r\nHELO c.test\r\nMAIL FROM:<a@r.test> SIZE=1\r\n"});
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "503", "250", "503", "503", "250", "503", "554",
                                                          "250", "250", "501"}));
}

// Issue 8.19: a message pipelined behind a DATA that is refused is never run as
// commands -- neither when it is already buffered nor when it arrives a moment later.
TEST(Session, BodyBehindARefusedDataIsNotExecuted) {
  const std::string body =
      "Subject: x\r\n\r\nMAIL FROM:<evil@r.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\nsmuggled\r\n.\r\n";
  const std::string tx = "EHLO c.test\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\n";
  for (auto chunks : {std::vector<std::string>{tx + body}, std::vector<std::string>{tx, body}}) {
    Result r = run_chunks(chunks);
    auto codes = reply_codes(r.out);
    EXPECT_EQ(codes, (std::vector<std::string>{"220", "250", "250", "554", "554", "421"})) << r.out;
    EXPECT_NE(r.out.find("421 4.5.0"), std::string::npos);
    EXPECT_TRUE(r.closed);
    EXPECT_TRUE(r.committed.empty());
  }
  // A client that waits, then goes on with commands, is fine.
  Result ok = run_chunks({tx, "RSET\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n",
                          "hi\r\n.\r\n"});
  EXPECT_EQ(ok.committed.size(), 1u);
}

TEST(Session, TooManyErrorsCloses) {
  std::string in;
  for (int i = 0; i < 12; ++i) in += "BOGUS\r\n";
  Result r = run_script(in);
  auto codes = reply_codes(r.out);
  EXPECT_EQ(codes.back(), "421");
  EXPECT_EQ(std::count(codes.begin(), codes.end(), "500"), 10);
  EXPECT_TRUE(r.closed);
}

TEST(Session, StarttlsDiscardsPipelinedPlaintext) {
  Result r = run_script("EHLO c.test\r\nSTARTTLS\r\nQUIT\r\n");
  EXPECT_EQ(r.tls_handshakes, 1);
  EXPECT_FALSE(r.closed);  // QUIT was discarded, not executed
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "220"}));
  Result after = run_chunks({"EHLO c.test\r\nSTARTTLS\r\n", "MAIL FROM:<a@r.test>\r\nEHLO c.test\r\n"});
  // after TLS the session starts over: MAIL before EHLO is a sequence error, and
  // STARTTLS is no longer advertised
  EXPECT_EQ(reply_codes(after.out), (std::vector<std::string>{"220", "250", "220", "503", "250"}));
  EXPECT_EQ(after.out.rfind("STARTTLS"), after.out.find("STARTTLS"));
}

TEST(Session, Bdat) {
  std::string in = "EHLO c.test\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<demo@example.test>\r\nBDAT 6\r\nSub: aBDAT 8 LAST\r\n\r\nbody\r\nQUIT\r\n";
  Result r = run_script(in);
  ASSERT_EQ(r.committed.size(), 1u);
  EXPECT_EQ(r.committed[0].body.memory(), "Sub: a\r\nbody\r\n");
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "250", "250", "250", "250", "221"}));
  expect_split_invariant(in);
}

TEST(Session, BdatErrors) {
  // BDAT without MAIL: the chunk is still consumed, then refused.
  Result r = run_script("EHLO c.test\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "503", "250"}));
  // Oversize chunk: 552, transaction over.
  std::string in = "EHLO c.test\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<demo@example.test>\r\nBDAT 10001 LAST\r\n" +
                   std::string(10001, 'x') + "NOOP\r\n";
  EXPECT_EQ(reply_codes(run_script(in.c_str()).out).back(), "250");
  EXPECT_NE(run_script(in).out.find("552 5.3.4"), std::string::npos);
  // Unparseable size: the stream is lost, the session closes.
  Result bad = run_script("EHLO c.test\r\nBDAT x\r\nNOOP\r\n");
  EXPECT_TRUE(bad.closed);
  EXPECT_EQ(reply_codes(bad.out), (std::vector<std::string>{"220", "250", "501", "421"}));
  // DATA after BDAT is a sequence error
  Result mixed = run_script("EHLO c.test\r\nMAIL FROM:<a@r.test>\r\nRCPT TO:<demo@example.test>\r\nBDAT 3\r\nabcDATA\r\n");
  EXPECT_EQ(reply_codes(mixed.out).back(), "503");
}

TEST(Session, MailLoopDetected) {
  std::string hdrs;
  for (int i = 0; i < 5; ++i) hdrs += "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n";
  Result r = run_script(kTx + hdrs + "\r\nbody\r\n.\r\n");
  EXPECT_NE(r.out.find("554 5.4.6"), std::string::npos);
  // Received: in the body does not count
  Result ok = run_script(kTx + "Subject: x\r\n\r\n" + hdrs + ".\r\n");
  EXPECT_EQ(ok.committed.size(), 1u);
}

TEST(Session, Smtputf8) {
  Result r = run_script("EHLO c.test\r\nMAIL FROM:<j\xc3\xb6rg@r.test>\r\nMAIL FROM:<j\xc3\xb6rg@r.test> SMTPUTF8\r\n");
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "553", "250"}));
}

TEST(Session, UnknownParamsAndVrfy) {
  Result r = run_script("EHLO c.test\r\nVRFY demo\r\nMAIL FROM:<a@r.test> RET=FULL\r\nHELP\r\nEXPN x\r\nNOOP\r\n");
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "252", "555", "214", "502", "250"}));
}

TEST(Session, SubmissionRequiresAuth) {
  SessionConfig c = config();
  c.service = Service::submission;
  Result r = run_script("EHLO c.test\r\nMAIL FROM:<a@r.test>\r\n", c);
  EXPECT_NE(r.out.find("530 5.7.0"), std::string::npos);
}

TEST(Session, AsyncSenderCheckKeepsPipelinedCommands) {
  // The first group ends with DATA (refused: the sender failed its check), and the
  // client waits for that reply before it goes on (RFC 2920).
  std::string first = "EHLO c.test\r\nMAIL FROM:<a@nx.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n";
  std::string second = "MAIL FROM:<a@dns.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\nx\r\n.\r\n";
  Result r = run_chunks({first, second});
  EXPECT_EQ(reply_codes(r.out),
            (std::vector<std::string>{"220", "250", "550", "503", "503", "250", "250", "354", "250"}));
  ASSERT_EQ(r.committed.size(), 1u);
  EXPECT_EQ(r.committed[0].envelope.sender, "a@dns.test");
  expect_split_invariant("EHLO c.test\r\n" + second);
}

namespace {
SessionConfig auth_config(AuthMode mode, Service svc = Service::submission) {
  SessionConfig c = config();
  c.service = svc;
  c.auth.mode = mode;
  c.auth.mechanisms = {auth::Mech::scram_sha_256, auth::Mech::plain, auth::Mech::login};
  return c;
}
// "\0demo@example.test\0pencil" and "demo@example.test" / "pencil" in base64
const std::string kPlain = "AGRlbW9AZXhhbXBsZS50ZXN0AHBlbmNpbA==";
const std::string kUser = "ZGVtb0BleGFtcGxlLnRlc3Q=", kPass = "cGVuY2ls";
}  // namespace

TEST(SessionAuth, PlainPipelinedIntoATransaction) {
  std::string in = "EHLO c.test\r\nAUTH PLAIN " + kPlain +
                   "\r\nMAIL FROM:<demo@example.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
  SessionConfig c = auth_config(AuthMode::none);
  Result r = run_script(in, c);
  EXPECT_EQ(reply_codes(r.out),
            (std::vector<std::string>{"220", "250", "235", "250", "250", "354", "250", "221"}));
  ASSERT_EQ(r.committed.size(), 1u);
  EXPECT_EQ(r.committed[0].envelope.auth_user, "demo@example.test");
  EXPECT_NE(r.committed[0].received.find("with ESMTPA id"), std::string::npos);
  EXPECT_NE(r.committed[0].received.find("\r\nMessage-ID: <"), std::string::npos);
  EXPECT_EQ(r.out.find("authenticated as"), std::string::npos);
  expect_split_invariant(in, c);
}

TEST(SessionAuth, LoginExchangeAndFailure) {
  std::string in = "EHLO c.test\r\nAUTH LOGIN\r\n" + kUser + "\r\nd3Jvbmc=\r\nAUTH LOGIN " + kUser + "\r\n" + kPass +
                   "\r\nAUTH LOGIN\r\n";
  SessionConfig c = auth_config(AuthMode::none);
  Result r = run_script(in, c);
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "334", "334", "535", "334", "235", "503"}));
  EXPECT_NE(r.out.find("334 VXNlcm5hbWU6\r\n"), std::string::npos);  // "Username:"
  EXPECT_EQ(r.logins, (std::vector<std::string>{"demo@example.test", "demo@example.test"}));
  expect_split_invariant(in, c);
}

TEST(SessionAuth, SecureAuthHidesPlaintextMechanismsUntilTls) {
  SessionConfig c = auth_config(AuthMode::secure_auth);
  Result r = run_chunks({"EHLO c.test\r\nAUTH PLAIN " + kPlain + "\r\nSTARTTLS\r\n",
                         "EHLO c.test\r\nAUTH PLAIN " + kPlain + "\r\n"},
                        c);
  EXPECT_NE(r.out.find("250-AUTH SCRAM-SHA-256\r\n"), std::string::npos);
  EXPECT_NE(r.out.find("538 5.7.11"), std::string::npos);
  EXPECT_NE(r.out.find("250-AUTH SCRAM-SHA-256 PLAIN LOGIN\r\n"), std::string::npos);
  EXPECT_EQ(reply_codes(r.out).back(), "235");
  c.auth.insecure_ok = true;
  Result lan = run_script("EHLO c.test\r\nAUTH PLAIN " + kPlain + "\r\n", c);
  EXPECT_EQ(reply_codes(lan.out).back(), "235");
}

TEST(SessionAuth, EncryptedSubmissionNeedsTlsFirst) {
  SessionConfig c = auth_config(AuthMode::encrypted);
  Result r = run_script("EHLO c.test\r\nMAIL FROM:<a@r.test>\r\nAUTH PLAIN " + kPlain + "\r\nNOOP\r\n", c);
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "530", "530", "250"}));
  EXPECT_EQ(r.out.find("AUTH "), std::string::npos);  // not advertised
  // Port 25 in encrypted mode: mail yes, AUTH no.
  SessionConfig smtp = auth_config(AuthMode::encrypted, Service::smtp);
  Result m = run_script("EHLO c.test\r\nAUTH PLAIN " + kPlain + "\r\nMAIL FROM:<a@r.test>\r\n", smtp);
  EXPECT_EQ(reply_codes(m.out), (std::vector<std::string>{"220", "250", "530", "250"}));
}

TEST(SessionAuth, FailedLoginIsDelayedAndCancelWorks) {
  SessionConfig c = auth_config(AuthMode::none);
  c.auth.failure_delay = std::chrono::milliseconds(700);
  FakeHooks hooks;
  ServerSession s(c, hooks, ClientInfo{"192.0.2.9", false, "", ""});
  s.greet();
  s.feed("EHLO c.test\r\n");
  Output o = s.feed("AUTH PLAIN AHgAeQ==\r\n");  // \0x\0y
  ASSERT_EQ(o.next, Next::verify);
  o = s.login_finished(false);
  EXPECT_EQ(o.delay, std::chrono::milliseconds(700));
  EXPECT_EQ(o.bytes.substr(0, 9), "535 5.7.8");
  o = s.feed("AUTH LOGIN\r\n*\r\n");
  EXPECT_EQ(reply_codes(o.bytes), (std::vector<std::string>{"334", "501"}));
  EXPECT_EQ(o.delay.count(), 0);
}

TEST(SessionAuth, AuthLinesMayBeLongOtherCommandsMayNot) {
  SessionConfig c = auth_config(AuthMode::none);
  std::string long_b64(4000, 'A');
  Result r = run_script("EHLO c.test\r\nAUTH PLAIN " + long_b64 + "\r\nNOOP " + std::string(600, 'x') + "\r\n", c);
  // 4000 'A's decode to NUL bytes: a malformed PLAIN message, not a too-long line.
  EXPECT_EQ(reply_codes(r.out), (std::vector<std::string>{"220", "250", "501", "500"}));
  Result too = run_script("EHLO c.test\r\nAUTH PLAIN\r\n" + std::string(13000, 'A') + "\r\nNOOP\r\n", c);
  EXPECT_EQ(reply_codes(too.out), (std::vector<std::string>{"220", "250", "334", "500", "250"}));
  EXPECT_NE(too.out.find("500 5.5.6"), std::string::npos);
}
