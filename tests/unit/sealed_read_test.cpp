// The read seam of encryption at rest (crypt/file.hpp): every reader of stored mail --
// the spool, the mailbox store -- sees the same plaintext whether a file is plain or
// sealed, refuses a sealed file it has no key for without calling it damaged, and
// fails loudly (never garbage) on a tampered one.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "crypt/convert.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"
#include "policy/greylist.hpp"
#include "queue/spool.hpp"
#include "store/mailstore.hpp"
#include "spool_commit.hpp"
#include "temp_dir.hpp"

using namespace bulwark;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void put(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

std::string body_text(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) s += "line " + std::to_string(i) + " of the body\r\n";
  s.resize(n);
  return s;
}

// Encryption on for one test (the key is process-wide).
struct KeyLoaded {
  KeyLoaded() { crypt::set_data_key(crypt::DataKey::random()); }
  ~KeyLoaded() { crypt::clear_data_key(); }
};

}  // namespace

TEST(CryptPlainFile, ReadsBothFormsAlikeAnywhere) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  std::string plain = body_text(200000);
  put(t.path / "plain", plain);
  put(t.path / "sealed", crypt::seal(*crypt::data_key(), plain, 4096));
  for (const char* name : {"plain", "sealed"}) {
    auto f = crypt::PlainFile::open((t.path / name).string());
    ASSERT_TRUE(f) << name;
    EXPECT_EQ(f->sealed(), std::string(name) == "sealed");
    EXPECT_EQ(f->size(), plain.size()) << name;
    EXPECT_EQ(f->all(), plain) << name;
    EXPECT_EQ(f->read(4090, 20), plain.substr(4090, 20)) << name;  // across a chunk edge
    EXPECT_EQ(f->read(plain.size() - 5, 100), plain.substr(plain.size() - 5)) << name;
    EXPECT_EQ(f->read(plain.size() + 5, 100), "") << name;
    std::string seq;
    while (auto piece = f->next(7000)) {
      if (piece->empty()) break;
      seq += *piece;
    }
    EXPECT_EQ(seq, plain) << name;
  }
  errno = 0;
  EXPECT_FALSE(crypt::PlainFile::open((t.path / "missing").string()));
  EXPECT_EQ(errno, ENOENT);
}

TEST(CryptPlainFile, ATamperedSealedFileFailsWithTheCauseNotGarbage) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  std::string plain = body_text(20000), sealed = crypt::seal(*crypt::data_key(), plain, 4096);
  sealed[sealed.size() / 2] ^= 0x01;
  put(t.path / "m", sealed);
  auto f = crypt::PlainFile::open((t.path / "m").string());
  ASSERT_TRUE(f);  // the header is intact
  std::string why;
  EXPECT_FALSE(f->all(&why));
  EXPECT_NE(why.find("altered"), std::string::npos) << why;
  EXPECT_TRUE(f->read(0, 100)) << "the chunks before the damage still read";
  // A header cut short: damaged (EBADMSG), which the spool quarantines.
  put(t.path / "h", crypt::seal(*crypt::data_key(), plain, 4096).substr(0, crypt::kHeaderSize - 2));
  errno = 0;
  EXPECT_FALSE(crypt::PlainFile::open((t.path / "h").string(), &why));
  EXPECT_EQ(errno, EBADMSG) << why;
}

TEST(SealedSpool, WithAKeyLoadedTheSpoolWritesSealedFilesAndReadsThemBack) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  Spool spool(t.path.string());
  spool.recover();
  spool.start();
  std::string small = "Subject: sealed\r\n\r\n" + body_text(150000);
  MessageBody streamed(spool.body_spill());  // over the threshold: streamed to queue.tmp/
  std::string large = "Subject: streamed\r\n\r\n" + body_text(700000);
  for (size_t at = 0; at < large.size(); at += 10000) streamed.append(std::string_view(large).substr(at, 10000));
  ASSERT_TRUE(streamed.finish());
  ASSERT_TRUE(streamed.spilled());
  std::string ids[2] = {test::commit(spool, small), test::commit(spool, std::move(streamed))};
  std::string texts[2] = {small, large};
  for (int i = 0; i < 2; ++i) {
    std::string raw = slurp(spool.path_of(ids[i]));
    EXPECT_TRUE(crypt::is_sealed(raw)) << i;
    EXPECT_EQ(raw.find("line 100 of the body"), std::string::npos) << i;
    EXPECT_EQ(raw.find("a@remote.test"), std::string::npos) << "the envelope is sealed too";
    Loaded l = spool.load(ids[i]);
    ASSERT_EQ(l.status, Loaded::ok) << l.why;
    EXPECT_EQ(l.msg.envelope.sender, "a@remote.test");
    EXPECT_EQ(l.msg.content_size, 16 + texts[i].size());
    EXPECT_EQ(spool.read_content(l.msg), "Received: test\r\n" + texts[i]);
    EXPECT_EQ(spool.read_headers(l.msg).substr(0, 16), "Received: test\r\n");
    Spool::Reader r(spool, l.msg);
    std::string got;
    while (auto piece = r.next(10000)) {
      if (piece->empty()) break;
      got += *piece;
    }
    EXPECT_EQ(got, "Received: test\r\n" + texts[i]) << i;
  }
  // The streamed body's spill file goes when the spool lets go of the transaction
  // (on its committer thread, just after the commit returned).
  auto tmp_empty = [&] {  // but for the commit record
    for (auto& e : fs::directory_iterator(t.path / "queue.tmp"))
      if (!e.path().filename().string().starts_with(CommitRecord::kPrefix)) return false;
    return true;
  };
  for (int i = 0; i < 250 && !tmp_empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(tmp_empty()) << "a spill file was left in queue.tmp/";

  // Altered: the reader fails (delivery keeps it queued) instead of sending garbage.
  Loaded l = spool.load(ids[0]);
  std::string sealed = slurp(spool.path_of(ids[0]));
  sealed[sealed.size() - 100] ^= 0x40;
  put(spool.path_of(ids[0]), sealed);
  EXPECT_FALSE(spool.read_content(l.msg));
  // A damaged header is a damaged spool file (quarantined by the caller, its sender told).
  put(spool.path_of(ids[0]), sealed.substr(0, 20));
  EXPECT_EQ(spool.load(ids[0]).status, Loaded::damaged);
  spool.stop();
}

TEST(SealedStore, AMailboxReadsSealedMessagesWithTheirPlainSizes) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  fs::path dir = t.path / "Maildir";
  fs::create_directories(dir / "new");
  std::string a = "Subject: a\n\n" + std::string(70000, 'x') + "\n", b = "Subject: b\n\nshort\n";
  put(dir / "new" / "1700000000.a.host", a);  // no S=/W=: the store measures them
  put(dir / "new" / "1700000001.b.host", crypt::seal(*crypt::data_key(), b));
  std::string error;
  auto f = store::Folder::open(dir.string(), error);
  ASSERT_TRUE(f) << error;
  ASSERT_EQ(f->messages().size(), 2u);
  const store::Message& ma = f->messages()[0];
  const store::Message& mb = f->messages()[1];
  EXPECT_EQ(mb.size, b.size());
  EXPECT_EQ(mb.vsize, b.size() + 3);  // three LF -> CRLF
  EXPECT_EQ(ma.size, a.size());
  std::string why;
  auto fa = f->read_message(ma, &why);
  auto fb = f->read_message(mb, &why);
  ASSERT_TRUE(fa && fb) << why;
  EXPECT_FALSE(fa->sealed());
  EXPECT_TRUE(fb->sealed());
  EXPECT_EQ(fa->all(), a);
  EXPECT_EQ(fb->all(), b);
}

TEST(CryptRecords, AppendsKeepTheFilesFormAndReadBack) {
  test::TempDir t("bulwark-seam-test");
  crypt::DataKey key = crypt::DataKey::random();
  auto append = [](const fs::path& p, std::string_view text, const crypt::DataKey* k) {
    int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    bool ok = crypt::append_text(fd, text, k);
    ::close(fd);
    return ok;
  };
  // A new file with a key: sealed; every append a record; the text reads back whole.
  ASSERT_TRUE(append(t.path / "s", "first line\n", &key));
  ASSERT_TRUE(append(t.path / "s", "second\nthird\n", &key));
  std::string raw = slurp(t.path / "s");
  EXPECT_EQ(raw.substr(0, 8), "BWRECS1\n");
  EXPECT_EQ(raw.find("second"), std::string::npos);
  auto r = crypt::read_text((t.path / "s").string(), &key);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->sealed);
  EXPECT_EQ(r->text, "first line\nsecond\nthird\n");
  EXPECT_EQ(r->good_end, raw.size());
  // A plain file stays plain even with a key (the conversion turns it, not an append).
  ASSERT_TRUE(append(t.path / "p", "plain one\n", nullptr));
  ASSERT_TRUE(append(t.path / "p", "plain two\n", &key));
  EXPECT_EQ(slurp(t.path / "p"), "plain one\nplain two\n");
  EXPECT_EQ(crypt::read_text((t.path / "p").string(), &key)->text, "plain one\nplain two\n");
  // A sealed file and no key: refused, both ways.
  errno = 0;
  EXPECT_FALSE(append(t.path / "s", "x\n", nullptr));
  EXPECT_EQ(errno, ENOKEY);
  std::string why;
  EXPECT_FALSE(crypt::read_text((t.path / "s").string(), nullptr, &why));
  // A record torn by a crash (any cut inside the last record) is dropped, not an error.
  for (size_t cut = 1; cut < 4 + 24 + 7 + 16; ++cut) {
    put(t.path / "torn", raw + raw.substr(crypt::kRecordsHeader, cut));
    auto torn = crypt::read_text((t.path / "torn").string(), &key, &why);
    ASSERT_TRUE(torn) << cut << " " << why;
    EXPECT_EQ(torn->text, "first line\nsecond\nthird\n") << cut;
    EXPECT_EQ(torn->good_end, raw.size()) << cut;
  }
  // An altered record, a record from another file, another key: refused -- except a
  // last record whose length now points past the end, which reads as torn (dropped,
  // as a cut file would be: records are not chained, see records.hpp).
  for (size_t i = crypt::kRecordsHeader; i < raw.size(); i += 3) {
    std::string bad = raw;
    bad[i] ^= 0x20;
    put(t.path / "bad", bad);
    auto got = crypt::read_text((t.path / "bad").string(), &key);
    std::string full = "first line\nsecond\nthird\n";
    EXPECT_TRUE(!got || (got->good_end < bad.size() && got->text.size() < full.size() && full.starts_with(got->text)))
        << i;
  }
  std::string other = crypt::seal_records(key, "other\n");
  put(t.path / "moved", raw + other.substr(crypt::kRecordsHeader));
  EXPECT_FALSE(crypt::read_text((t.path / "moved").string(), &key));
  crypt::DataKey key2 = crypt::DataKey::random();
  EXPECT_FALSE(crypt::read_text((t.path / "s").string(), &key2));
}

TEST(SealedStore, TheUidIndexIsSealedRecordsAndSurvivesReopenAndATornAppend) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  fs::path dir = t.path / "Maildir";
  fs::create_directories(dir / "new");
  put(dir / "new" / "1700000000.a.host", "Subject: a\n\na\n");
  std::string error;
  auto f = store::Folder::open(dir.string(), error);
  ASSERT_TRUE(f) << error;
  ASSERT_EQ(f->messages().size(), 1u);
  put(dir / "new" / "1700000001.b.host", "Subject: b\n\nb\n");
  ASSERT_TRUE(f->sync(error)) << error;  // an append to the index
  std::string raw = slurp(dir / "bulwark-uidlist");
  EXPECT_EQ(raw.substr(0, 8), "BWRECS1\n");
  EXPECT_EQ(raw.find("1700000001"), std::string::npos) << "the index names the files: sealed";
  std::ofstream(dir / "bulwark-uidlist", std::ios::app) << std::string("\0\0\0\x50garbage", 11);  // a torn record
  f = store::Folder::open(dir.string(), error);
  ASSERT_TRUE(f) << error;
  ASSERT_EQ(f->messages().size(), 2u);
  EXPECT_EQ(f->messages()[1].uid, 2u);
  EXPECT_EQ(slurp(dir / "bulwark-uidlist").size(), raw.size()) << "the torn record was cut off";
}

TEST(SealedGreylist, PassedTripletsAreSealedRecordsAndSurviveARestart) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  std::string path = (t.path / "greylist").string();
  int64_t now = 1000000;
  GreylistSettings s;
  s.delay = std::chrono::seconds(60);
  auto ip = [](const char* a) { return *IpAddress::parse(a); };
  {
    Greylist g(path, s, [&] { return now; });
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::defer);
    now += 61;
    EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::pass);
  }
  std::string raw = slurp(path);
  EXPECT_EQ(raw.substr(0, 8), "BWRECS1\n");
  EXPECT_EQ(raw.find("x.test"), std::string::npos);
  Greylist g(path, s, [&] { return now; });
  EXPECT_EQ(g.passed(), 1u);
  EXPECT_EQ(g.check(ip("192.0.2.10"), "a@x.test", "u@example.test"), Greylist::Verdict::pass);
}

TEST(CryptConvert, BothWaysResumableAfterAnInterruptionAtAnyFileAndByteExactBack) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  fs::path data = t.path / "data", logs = t.path / "log";
  std::map<std::string, std::string> covered = {
      {"queue/6610A", "bulwark-spool 1\narrival 1\nsize 3\n\nhi\n"},
      {"queue/6610A.done", "x@far.test\n"},
      {"quarantine/6610B", "bulwark-spool 1\nbroken\n"},
      {"mail/example.test/demo/cur/1700000000.a.host,S=5,W=6:2,S", "a\nbcd"},
      {"mail/example.test/demo/new/1700000001.b.host", std::string(200000, 'm') + "\n"},
      {"mail/example.test/demo/.Sent/cur/1700000002.c.host:2,", "sent\n"},
      {"mail/example.test/demo/bulwark-uidlist", "bulwark-uidlist 1 1 3 1\n+ 1 1 5 6 S 1700000000.a.host,S=5,W=6\n"},
      {"mail/example.test/demo/subscriptions", "INBOX\nSent\n"},
      {"mail/example.test/demo/dovecot-keywords", "0 $Junk\n"},
      {"dkim/example.test/s1.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
      {"greylist", "1 2 192.0.2/a@b/c@d\n"},
  };
  std::map<std::string, std::string> left = {
      {"keyring", "bulwark-keyring 1\n"},
      {"directory.db", "SQLite format 3"},
      {"cert.pem", "-----BEGIN CERTIFICATE-----\n"},
      {"mail/example.test/demo/.Sent/maildirfolder", ""},
      {"mail/example.test/demo/tmp/1700000003.d.host", "being written\n"},
      {"queue.tmp/spill.1.1", "partial\n"},
      {"reports/en/failed.txt", "template\n"},
  };
  for (auto& [rel, text] : covered) {
    fs::create_directories((data / rel).parent_path());
    put(data / rel, text);
  }
  for (auto& [rel, text] : left) {
    fs::create_directories((data / rel).parent_path());
    put(data / rel, text);
  }
  fs::create_directories(logs);
  put(logs / "mail.log", "2026-11-24T10:00:00Z accepted id=6610A\n");
  covered["../log/mail.log"] = "2026-11-24T10:00:00Z accepted id=6610A\n";
  auto at = [&](const std::string& rel) { return rel.starts_with("../") ? t.path / rel.substr(3) : data / rel; };
  fs::file_time_type mtime = fs::last_write_time(at("mail/example.test/demo/new/1700000001.b.host"));
  // Reads what a file holds, in either form, as the server does.
  auto plaintext = [&](const std::string& rel) -> std::optional<std::string> {
    crypt::Form f = rel.starts_with("../") ? crypt::Form::records : crypt::form_of(rel, false);
    if (f == crypt::Form::records) {
      auto r = crypt::read_text(at(rel).string(), crypt::data_key());
      return r ? std::optional<std::string>(r->text) : std::nullopt;
    }
    return crypt::read_small(at(rel).string());
  };
  for (bool to_sealed : {true, false}) {
    // Interrupted after every file in turn: each time every file still reads the same,
    // and the next run goes on where it stopped.
    for (size_t step = 0;; ++step) {
      put(at("mail/example.test/demo/bulwark-uidlist").string() + ".bwconv", "half-written");  // a killed run's
      auto p = crypt::convert(data.string(), logs.string(), *crypt::data_key(), to_sealed, 1);
      ASSERT_TRUE(p.failed.empty()) << p.failed.front();
      EXPECT_EQ(p.total, covered.size());
      EXPECT_FALSE(fs::exists(at("mail/example.test/demo/bulwark-uidlist").string() + ".bwconv"));
      for (auto& [rel, text] : covered) EXPECT_EQ(plaintext(rel), text) << rel << " after step " << step;
      if (p.converted == 0) {
        EXPECT_EQ(p.already, covered.size());
        break;
      }
      ASSERT_LT(step, covered.size());
    }
    for (auto& [rel, text] : covered) {
      std::string raw = slurp(at(rel));
      crypt::Form f = rel.starts_with("../") ? crypt::Form::records : crypt::form_of(rel, false);
      bool sealed = f == crypt::Form::whole ? crypt::is_sealed(raw) : raw.starts_with(crypt::kRecordsMagic);
      EXPECT_EQ(sealed, to_sealed) << rel;
      if (!to_sealed) {
        EXPECT_EQ(raw, text) << rel << ": byte-exact after the way back";
      }
    }
    for (auto& [rel, text] : left) EXPECT_EQ(slurp(data / rel), text) << rel << " is not the conversion's";
    EXPECT_EQ(fs::last_write_time(at("mail/example.test/demo/new/1700000001.b.host")), mtime);
  }
}
