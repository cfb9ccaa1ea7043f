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
        case Next::more: o = s.resume(); break;
        case Next::compress: events.push_back("compress"); return;  // the bytes after it are deflate
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
    "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ENABLE ID IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN "
    "LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH SEARCHRES STATUS=SIZE CONDSTORE QRESYNC SORT ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES COMPRESS=DEFLATE MULTIAPPEND "
    "APPENDLIMIT=52428800 STARTTLS "
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

#include <map>

#include "imap/mutf7.hpp"
#include "imap_mem_folder.hpp"

namespace {
// An in-memory mailbox with the store's rules that matter to the session.
struct FakeMailbox : Mailbox {
  std::map<std::string, FolderInfo> f{{"INBOX", {"INBOX", "", false, true, true}},
                                      {"Sent", {"Sent", "\\Sent", false, true, true}},
                                      {"Work", {"Work", "", true, false, true}},
                                      {"Work/2026", {"Work/2026", "", false, false, true}},
                                      {"Gone", {"Gone", "", false, true, false}}};
  std::vector<FolderInfo> folders() override {
    std::vector<FolderInfo> v;
    v.push_back(f["INBOX"]);
    for (auto& [k, x] : f)
      if (k != "INBOX") v.push_back(x);
    return v;
  }
  std::optional<FolderStatus> status(const std::string& name, std::string& error) override {
    if (!f.count(name) || !f[name].exists) {
      error = "[NONEXISTENT] No such mailbox";
      return std::nullopt;
    }
    FolderStatus s;
    s.messages = uint32_t(name.size());
    s.uidnext = 7;
    s.uidvalidity = 1234;
    s.unseen = 1;
    s.size = 999;
    s.highestmodseq = 42;
    return s;
  }
  bool create(const std::string& name, std::string& error) override {
    if (f.count(name)) {
      error = "[ALREADYEXISTS] Folder already exists";
      return false;
    }
    f[name] = {name, "", false, false, true};
    return true;
  }
  bool remove(const std::string& name, std::string& error) override {
    if (!f.erase(name)) {
      error = "[NONEXISTENT] No such folder";
      return false;
    }
    return true;
  }
  bool rename(const std::string& a, const std::string& b, std::string&) override {
    auto x = f[a];
    f.erase(a);
    x.name = b;
    f[b] = x;
    return true;
  }
  bool subscribe(const std::string& name, bool on, std::string&) override {
    f[name].subscribed = on;
    return true;
  }
  std::map<std::string, test::MemFolderData> data;
  std::unique_ptr<OpenFolder> open(const std::string& name, std::string& error) override {
    if (!data.count(name)) {
      error = "[NONEXISTENT] No such mailbox";
      return nullptr;
    }
    return std::make_unique<test::MemFolder>(data[name], data);
  }
  std::optional<std::pair<uint32_t, uint32_t>> append(const std::string& name, std::string_view content,
                                                       const std::string& flags, const std::vector<std::string>&, int64_t,
                                                       std::string& error) override {
    if (!data.count(name)) {
      error = "[TRYCREATE] No such mailbox";
      return std::nullopt;
    }
    data[name].add(std::string(content), flags);
    return std::pair{data[name].msgs.back().ref.uid, data[name].uidvalidity};
  }
};

std::string logged_in_play(const std::string& script, FakeMailbox& mb) {
  FakeHooks h;
  Driver d(config(auth::Mode::none), h);
  d.feed("a LOGIN demo@example.test secret\r\n");
  d.s.set_mailbox(&mb);
  d.out.clear();
  d.feed(script);
  return d.out;
}
}  // namespace

TEST(ImapSession, ListLsubNamespaceAndListExtended) {
  FakeMailbox mb;
  EXPECT_EQ(logged_in_play("n NAMESPACE\r\nl LIST \"\" \"\"\r\nm LIST \"\" %\r\n", mb),
            "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nn OK NAMESPACE completed\r\n"
            "* LIST (\\Noselect) \"/\" \"\"\r\nl OK LIST completed\r\n"
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
            "* LIST (\\HasChildren) \"/\" \"Work\"\r\n"
            "m OK LIST completed\r\n");
  EXPECT_EQ(logged_in_play("a LIST \"Work/\" *\r\nb LSUB \"\" *\r\nc LIST inbox \"\"\r\n", mb),
            "* LIST (\\HasNoChildren) \"/\" \"Work/2026\"\r\na OK LIST completed\r\n"
            // a subscription whose folder is gone: listed as it is (as Dovecot does);
            // \Noselect is for an unsubscribed parent of a subscribed name
            "* LSUB () \"/\" \"INBOX\"\r\n* LSUB () \"/\" \"Gone\"\r\n* LSUB () \"/\" \"Sent\"\r\n"
            "b OK LSUB completed\r\n"
            "* LIST (\\Noselect) \"/\" \"\"\r\nc OK LIST completed\r\n");  // empty pattern: the delimiter
  EXPECT_EQ(logged_in_play("a LIST (SUBSCRIBED) \"\" * RETURN (STATUS (MESSAGES UIDNEXT))\r\n", mb),
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n* STATUS \"INBOX\" (MESSAGES 5 UIDNEXT 7)\r\n"
            "* LIST (\\NonExistent \\Subscribed) \"/\" \"Gone\"\r\n"
            "* LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" \"Sent\"\r\n* STATUS \"Sent\" (MESSAGES 4 UIDNEXT 7)\r\n"
            "a OK LIST completed\r\n");
  EXPECT_EQ(logged_in_play("a LIST (SPECIAL-USE) \"\" *\r\nb LIST \"\" (INBOX Work) RETURN (CHILDREN)\r\n", mb),
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\na OK LIST completed\r\n"
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n* LIST (\\HasChildren) \"/\" \"Work\"\r\nb OK LIST completed\r\n");
}

TEST(ImapSession, StatusAndFolderChanges) {
  FakeMailbox mb;
  EXPECT_EQ(logged_in_play("a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ)\r\n"
                           "b STATUS Nope (MESSAGES)\r\nc STATUS INBOX (BOGUS)\r\n",
                           mb),
            "* STATUS \"INBOX\" (MESSAGES 5 UIDNEXT 7 UIDVALIDITY 1234 UNSEEN 1 SIZE 999 HIGHESTMODSEQ 42)\r\n"
            "a OK STATUS completed\r\nb NO [NONEXISTENT] No such mailbox\r\n"
            "c BAD Usage: STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN ...)\r\n");
  EXPECT_EQ(logged_in_play("a CREATE Projects/\r\nb CREATE Projects\r\nc RENAME Projects Old\r\nd SUBSCRIBE Old\r\n"
                           "e DELETE Old\r\nf DELETE Old\r\n",
                           mb),
            "a OK CREATE completed\r\nb NO [ALREADYEXISTS] Folder already exists\r\nc OK RENAME completed\r\n"
            "d OK SUBSCRIBE completed\r\ne OK DELETE completed\r\nf NO [NONEXISTENT] No such folder\r\n");
}

TEST(ImapSession, NamesAreModifiedUtf7ForRev1AndUtf8AfterEnable) {
  FakeMailbox mb;
  mb.f["Entwürfe"] = {"Entwürfe", "", false, false, true};
  EXPECT_EQ(logged_in_play("a LIST \"\" Entw*\r\nb CREATE \"&AMQ-rger\"\r\nc CREATE \"&Jjo\"\r\n", mb),
            "* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\"\r\na OK LIST completed\r\n"
            "b OK CREATE completed\r\nc BAD Bad mailbox name\r\n");
  EXPECT_TRUE(mb.f.count("Ärger"));
  EXPECT_EQ(logged_in_play("e ENABLE IMAP4rev2\r\na LIST \"\" Entw*\r\n", mb),
            "* ENABLED IMAP4rev2\r\ne OK ENABLE completed\r\n"
            "* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"\r\na OK LIST completed\r\n");
}

TEST(ImapMutf7, RoundTripsAndRejectsWhatIsNotModifiedUtf7) {
  for (std::string s : {"INBOX", "Entwürfe", "台北", "a&b", "😀 smile", "~peter/mail/日本語/台北"}) {
    auto back = mutf7_to_utf8(utf8_to_mutf7(s));
    ASSERT_TRUE(back) << s;
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(utf8_to_mutf7("~peter/mail/日本語/台北"), "~peter/mail/&ZeVnLIqe-/&U,BTFw-");  // RFC 3501 5.1.3
  EXPECT_EQ(utf8_to_mutf7("a&b"), "a&-b");
  EXPECT_FALSE(mutf7_to_utf8("&Jjo"));     // unterminated
  EXPECT_FALSE(mutf7_to_utf8("&AGE-"));    // "a" encoded: printable ASCII must not be
  EXPECT_FALSE(mutf7_to_utf8("&2D0-"));    // a lone surrogate
  EXPECT_FALSE(mutf7_to_utf8("a\x80"));    // 8-bit is not modified UTF-7
}

TEST(ImapSession, ManyWildcardsCostLinearTime) {
  FakeMailbox mb;
  mb.f[std::string(150, 'a')] = {std::string(150, 'a'), "", false, false, true};
  std::string pat;
  for (int i = 0; i < 300; ++i) pat += "*%";
  // 600 wildcards against 150 bytes: a backtracking matcher would not finish (ctest's
  // timeout ends it); the dynamic-programming one does 90,000 steps.
  std::string out = logged_in_play("a LIST \"\" \"" + pat + "b\"\r\nb LIST \"\" \"" + pat + "\"\r\n", mb);
  EXPECT_NE(out.find("a OK LIST completed\r\n* LIST"), std::string::npos);
  EXPECT_NE(out.find("\"" + std::string(150, 'a') + "\""), std::string::npos);
}

namespace {
const std::string msg1 =
    "From: Ann <ann@example.test>\r\nTo: demo@example.test\r\nSubject: Hello there\r\n\r\nline one\r\n";
const std::string msg2 = "From: bob@example.test\r\nSubject: Other\r\n\r\nsomething else\r\n";

struct Selected {
  FakeMailbox mb;
  FakeHooks h;
  Driver d{config(auth::Mode::none), h};
  Selected() {
    mb.data["INBOX"].add(msg1);
    mb.data["INBOX"].add(msg2, "S");
    mb.data["INBOX"].add(msg2, "FT");
    mb.data["Sent"];
    d.feed("a LOGIN demo@example.test secret\r\n");
    d.s.set_mailbox(&mb);
  }
  std::string run(const std::string& in) {
    d.out.clear();
    d.feed(in);
    return d.out;
  }
};
}  // namespace

TEST(ImapSelected, SelectFetchFlagsAndBodies) {
  Selected t;
  EXPECT_EQ(t.run("s SELECT INBOX\r\n"),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n"
            "* OK [UNSEEN 1] First unseen\r\n"
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n"
            "* OK [UIDVALIDITY 77] UIDs valid\r\n* OK [UIDNEXT 4] Predicted next UID\r\n"
            "* OK [HIGHESTMODSEQ 4] Highest\r\ns OK [READ-WRITE] SELECT completed\r\n");
  EXPECT_EQ(t.run("f FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n"),
            "* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 87)\r\n* 2 FETCH (UID 2 FLAGS (\\Seen) RFC822.SIZE 58)\r\n"
            "* 3 FETCH (UID 3 FLAGS (\\Flagged \\Deleted) RFC822.SIZE 58)\r\nf OK FETCH completed\r\n");
  EXPECT_EQ(t.run("g UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[TEXT]<0.4>)\r\n"),
            "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (Subject)] {24}\r\nSubject: Hello there\r\n\r\n"
            " BODY[TEXT]<0> {4}\r\nline)\r\ng OK UID FETCH completed\r\n");
  // BODY[] without PEEK sets \Seen and says so
  EXPECT_EQ(t.run("h FETCH 1 BODY[]\r\n"),
            "* 1 FETCH (BODY[] {87}\r\n" + msg1 + " FLAGS (\\Seen))\r\nh OK FETCH completed\r\n");
  EXPECT_EQ(t.mb.data["INBOX"].msgs[0].ref.flags, "S");
}

TEST(ImapSelected, StoreExpungeSearchCopyMove) {
  Selected t;
  t.run("s SELECT INBOX\r\n");
  EXPECT_EQ(t.run("a STORE 1 +FLAGS (\\Flagged)\r\nb UID STORE 2 -FLAGS.SILENT (\\Seen)\r\n"),
            "* 1 FETCH (FLAGS (\\Flagged))\r\na OK STORE completed\r\nb OK UID STORE completed\r\n");
  EXPECT_EQ(t.run("c SEARCH UNSEEN\r\nd UID SEARCH FROM ann SUBJECT hello\r\ne SEARCH OR DELETED SEEN NOT FLAGGED\r\n"
                  "f SEARCH BODY \"something\"\r\ng SEARCH RETURN (MIN MAX COUNT) ALL\r\n"),
            "* SEARCH 1 2 3\r\nc OK SEARCH completed\r\n* SEARCH 1\r\nd OK UID SEARCH completed\r\n"
            "* SEARCH\r\ne OK SEARCH completed\r\n* SEARCH 2 3\r\nf OK SEARCH completed\r\n"
            "* ESEARCH (TAG \"g\") MIN 1 MAX 3 COUNT 3\r\ng OK SEARCH completed\r\n");
  EXPECT_EQ(t.run("h UID COPY 1:2 Sent\r\ni COPY 1 Nowhere\r\n"),
            "h OK [COPYUID 1234 1,2 1,2] UID COPY completed\r\ni NO [TRYCREATE] No such mailbox\r\n");
  EXPECT_EQ(t.run("j EXPUNGE\r\n"), "* 3 EXPUNGE\r\nj OK EXPUNGE completed\r\n");
  EXPECT_EQ(t.run("k MOVE 1 Sent\r\n"), "* OK [COPYUID 1234 1 3] Moved\r\n* 1 EXPUNGE\r\nk OK MOVE completed\r\n");
  EXPECT_EQ(t.mb.data["Sent"].msgs.size(), 3u);
  EXPECT_EQ(t.run("l FETCH 1 (UID)\r\nm CLOSE\r\nn FETCH 1 UID\r\n"),
            "* 1 FETCH (UID 2)\r\nl OK FETCH completed\r\nm OK CLOSE completed\r\nn BAD No mailbox selected\r\n");
}

TEST(ImapSelected, OtherSessionsChangesAreReportedAndIdleEndsWithDone) {
  Selected t;
  t.run("s SELECT INBOX\r\n");
  // another session: a new message, a flag change, an expunge
  t.mb.data["INBOX"].add("Subject: new\r\n\r\nx\r\n");
  t.mb.data["INBOX"].msgs[1].ref.flags = "RS";
  t.mb.data["INBOX"].msgs[1].ref.modseq = 99;
  t.mb.data["INBOX"].msgs.erase(t.mb.data["INBOX"].msgs.begin());
  EXPECT_EQ(t.run("a NOOP\r\n"),
            "* 1 EXPUNGE\r\n* 1 FETCH (UID 2 FLAGS (\\Answered \\Seen))\r\n* 3 EXISTS\r\na OK NOOP completed\r\n");
  EXPECT_EQ(t.run("b IDLE\r\n"), "+ idling\r\n");
  t.mb.data["INBOX"].add("Subject: newer\r\n\r\ny\r\n");
  imap::Output o = t.d.s.idle_tick();
  EXPECT_EQ(o.bytes, "* 4 EXISTS\r\n");
  EXPECT_EQ(t.run("DONE\r\nc NOOP\r\n"), "b OK IDLE terminated\r\nc OK NOOP completed\r\n");
}

TEST(ImapSelected, AppendWithSmallAndStreamedLiterals) {
  Selected t;
  Config c = config(auth::Mode::none);
  EXPECT_EQ(t.run("a APPEND Sent (\\Seen) {13}\r\nSubject: x\r\n\r\n"),
            "+ Ready for literal data\r\na OK [APPENDUID 77 1] APPEND completed\r\n");
  std::string big = "Subject: big\r\n\r\n" + std::string(100000, 'z') + "\r\n";
  EXPECT_EQ(t.run("b APPEND Sent {" + std::to_string(big.size()) + "+}\r\n" + big + "\r\n"),
            "b OK [APPENDUID 77 2] APPEND completed\r\n");
  EXPECT_EQ(t.mb.data["Sent"].msgs[1].content, big);
  EXPECT_EQ(t.run("c APPEND Nope {1+}\r\nx\r\n"), "c NO [TRYCREATE] No such mailbox\r\n");
}

TEST(ImapSelected, LongFetchAnswersComeInPieces) {
  Selected t;
  for (int i = 0; i < 40; ++i) t.mb.data["INBOX"].add("Subject: x\r\n\r\n" + std::string(60000, 'q') + "\r\n");
  t.run("s SELECT INBOX\r\n");
  imap::Output o = t.d.s.feed("f FETCH 1:* BODY.PEEK[]\r\n");
  size_t pieces = 1, total = o.bytes.size();
  while (o.next == imap::Next::more) {
    EXPECT_LT(o.bytes.size(), (1u << 20) + 70000u);
    o = t.d.s.resume();
    total += o.bytes.size();
    ++pieces;
  }
  EXPECT_GE(pieces, 2u);
  EXPECT_NE(o.bytes.find("f OK FETCH completed"), std::string::npos);
  EXPECT_GT(total, 40u * 60000u);
}
