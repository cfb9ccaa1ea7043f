// The read seam of encryption at rest (crypt/file.hpp): every reader of stored mail --
// the spool, the mailbox store -- sees the same plaintext whether a file is plain or
// sealed, refuses a sealed file it has no key for without calling it damaged, and
// fails loudly (never garbage) on a tampered one.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>

#include "crypt/file.hpp"
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

// Seals a file in place with the process's key (what the conversion will do).
void seal_in_place(const fs::path& p, uint32_t chunk = crypt::kDefaultChunk) {
  put(p, crypt::seal(*crypt::data_key(), slurp(p), chunk));
}

std::string body_text(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) s += "line " + std::to_string(i) + " of the body\r\n";
  s.resize(n);
  return s;
}

struct KeyLoaded {
  KeyLoaded() { crypt::set_data_key(crypt::DataKey::random()); }
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

TEST(SealedSpool, ASealedSpoolFileLoadsAndReadsAsThePlainOne) {
  KeyLoaded k;
  test::TempDir t("bulwark-seam-test");
  Spool spool(t.path.string());
  spool.recover();
  spool.start();
  std::string text = "Subject: sealed\r\n\r\n" + body_text(150000);
  std::string id = test::commit(spool, text);
  Loaded before = spool.load(id);
  ASSERT_EQ(before.status, Loaded::ok);
  auto content = spool.read_content(before.msg);
  ASSERT_TRUE(content);
  seal_in_place(spool.path_of(id), 4096);
  EXPECT_EQ(slurp(spool.path_of(id)).find("line 100 of the body"), std::string::npos);
  Loaded after = spool.load(id);
  ASSERT_EQ(after.status, Loaded::ok) << after.why;
  EXPECT_EQ(after.msg.content_offset, before.msg.content_offset);
  EXPECT_EQ(after.msg.content_size, before.msg.content_size);
  EXPECT_EQ(after.msg.envelope.sender, "a@remote.test");
  EXPECT_EQ(spool.read_content(after.msg), content);
  EXPECT_EQ(spool.read_headers(after.msg), "Received: test\r\nSubject: sealed\r\n");
  Spool::Reader r(spool, after.msg);
  std::string streamed;
  while (auto piece = r.next(10000)) {
    if (piece->empty()) break;
    streamed += *piece;
  }
  EXPECT_EQ(streamed, *content);

  // Altered: the reader fails (delivery keeps it queued) instead of sending garbage.
  std::string sealed = slurp(spool.path_of(id));
  sealed[sealed.size() - 100] ^= 0x40;
  put(spool.path_of(id), sealed);
  EXPECT_FALSE(spool.read_content(after.msg));
  // A damaged header is a damaged spool file (quarantined by the caller, its sender told).
  put(spool.path_of(id), sealed.substr(0, 20));
  EXPECT_EQ(spool.load(id).status, Loaded::damaged);
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
