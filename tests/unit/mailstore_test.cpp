// MailStore: the Maildir++ folder and its UID index, on a real filesystem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "store/mailstore.hpp"
#include "temp_dir.hpp"

using namespace bulwark;
using namespace bulwark::store;
namespace fs = std::filesystem;

namespace {

void deliver(const fs::path& dir, const std::string& name, const std::string& body) {
  fs::create_directories(dir / "new");
  std::ofstream(dir / "new" / name, std::ios::binary) << body;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(MaildirName, ParsesSizesAndFlags) {
  auto n = parse_maildir_name("1700000000.M1P2Q3.host,S=120,W=125:2,SF");
  EXPECT_EQ(n.base, "1700000000.M1P2Q3.host,S=120,W=125");
  EXPECT_EQ(n.flags, "FS");
  EXPECT_EQ(n.size, 120u);
  EXPECT_EQ(n.vsize, 125u);
  auto plain = parse_maildir_name("1700000000.abc.host");
  EXPECT_EQ(plain.base, "1700000000.abc.host");
  EXPECT_FALSE(plain.size);
  EXPECT_TRUE(plain.flags.empty());
}

TEST(Folder, GivesUidsInArrivalOrderAndKeepsThemAcrossOpens) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  deliver(dir, "1700000001.a.h,S=4,W=6", "a\nb\n");
  deliver(dir, "1700000000.b.h", "x\r\ny\n");  // no sizes in the name: measured once
  std::string err;
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f) << err;
  ASSERT_EQ(f->messages().size(), 2u);
  EXPECT_EQ(f->messages()[0].base, "1700000000.b.h");
  EXPECT_EQ(f->messages()[0].uid, 1u);
  EXPECT_EQ(f->messages()[0].size, 5u);
  EXPECT_EQ(f->messages()[0].vsize, 6u);
  EXPECT_EQ(f->messages()[1].uid, 2u);
  EXPECT_EQ(f->messages()[1].vsize, 6u);
  // Seen now: moved to cur/ with an empty info part, as Maildir readers expect.
  EXPECT_TRUE(fs::exists(dir / "cur" / "1700000001.a.h,S=4,W=6:2,"));
  EXPECT_TRUE(fs::is_empty(dir / "new"));
  uint32_t validity = f->uidvalidity();
  deliver(dir, "1700000002.c.h,S=1,W=1", "z");
  auto g = Folder::open(dir.string(), err);
  ASSERT_TRUE(g) << err;
  EXPECT_EQ(g->uidvalidity(), validity);
  ASSERT_EQ(g->messages().size(), 3u);
  EXPECT_EQ(g->messages()[2].uid, 3u);
  EXPECT_EQ(g->messages()[0].uid, 1u);
  // The first owner sees the delivery at its next sync.
  ASSERT_TRUE(f->sync(err)) << err;
  EXPECT_EQ(f->messages().size(), 3u);
}

TEST(Folder, RemovedUidsAreNeverGivenAgain) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  deliver(dir, "1.a.h,S=1,W=1", "a");
  deliver(dir, "2.b.h,S=1,W=1", "b");
  std::string err;
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->remove({2}, err), 1u);
  EXPECT_EQ(f->messages().size(), 1u);
  EXPECT_FALSE(fs::exists(dir / "cur" / "2.b.h,S=1,W=1:2,"));
  auto g = Folder::open(dir.string(), err);
  ASSERT_EQ(g->messages().size(), 1u);
  EXPECT_EQ(g->next_uid(), 3u);
  deliver(dir, "3.c.h,S=1,W=1", "c");
  ASSERT_TRUE(g->sync(err));
  EXPECT_EQ(g->messages().back().uid, 3u);
  // A file removed by another tool is forgotten, and its UID stays used.
  fs::remove(dir / "cur" / "3.c.h,S=1,W=1:2,");
  ASSERT_TRUE(g->sync(err));
  EXPECT_EQ(g->messages().size(), 1u);
  deliver(dir, "4.d.h,S=1,W=1", "d");
  ASSERT_TRUE(g->sync(err));
  EXPECT_EQ(g->messages().back().uid, 4u);
}

TEST(Folder, ATornIndexTailIsDroppedAndNoUidIsReused) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  deliver(dir, "1.a.h,S=1,W=1", "a");
  std::string err;
  { ASSERT_TRUE(Folder::open(dir.string(), err)); }
  // A crash in the middle of an append: half a line, never synced, never shown.
  std::ofstream(dir / "bulwark-uidlist", std::ios::app) << "+ 2 9 1 1 2.b.h,S";
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f) << err;
  ASSERT_EQ(f->messages().size(), 1u);
  deliver(dir, "2.b.h,S=1,W=1", "b");
  ASSERT_TRUE(f->sync(err));
  EXPECT_EQ(f->messages().back().uid, 2u);
  EXPECT_EQ(read(dir / "bulwark-uidlist").find("2.b.h,S\n"), std::string::npos);
}

TEST(Folder, FlagChangesByOtherToolsAreFollowed) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  deliver(dir, "1.a.h,S=5,W=5", "hello");
  std::string err;
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f);
  fs::rename(dir / "cur" / "1.a.h,S=5,W=5:2,", dir / "cur" / "1.a.h,S=5,W=5:2,S");
  int fd = f->open_message(f->messages()[0]);
  ASSERT_GE(fd, 0);
  char buf[8] = {};
  EXPECT_EQ(::read(fd, buf, sizeof buf), 5);
  ::close(fd);
  ASSERT_TRUE(f->sync(err));
  EXPECT_EQ(f->messages()[0].flags, "S");
  EXPECT_EQ(f->messages()[0].uid, 1u);
  EXPECT_EQ(f->remove({1}, err), 1u);
  EXPECT_TRUE(fs::is_empty(dir / "cur"));
}

TEST(Folder, TheIndexIsRewrittenWhenMostlyDead) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  std::string err;
  for (int i = 0; i < 1500; ++i) deliver(dir, std::to_string(1000 + i) + ".x.h,S=1,W=1", "x");
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f);
  std::vector<uint32_t> all;
  for (auto& m : f->messages()) all.push_back(m.uid);
  all.pop_back();
  EXPECT_EQ(f->remove(all, err), 1499u);
  std::string idx = read(dir / "bulwark-uidlist");
  EXPECT_LT(std::count(idx.begin(), idx.end(), '\n'), 10) << "rewritten, not 3000 lines";
  auto g = Folder::open(dir.string(), err);
  ASSERT_EQ(g->messages().size(), 1u);
  EXPECT_EQ(g->messages()[0].uid, 1500u);
  EXPECT_EQ(g->next_uid(), 1501u);
}

TEST(MailboxLocks, OneLeasePerMailbox) {
  MailboxLocks locks;
  auto a = locks.try_lock("demo@example.test");
  EXPECT_TRUE(a);
  EXPECT_FALSE(locks.try_lock("demo@example.test"));
  EXPECT_TRUE(locks.try_lock("other@example.test"));
  a.release();
  EXPECT_TRUE(locks.try_lock("demo@example.test"));
}
