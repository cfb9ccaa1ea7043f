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

TEST(Folder, FlagChangesGetModseqsAndRenameTheFiles) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  deliver(dir, "1.a.h,S=1,W=1", "a");
  deliver(dir, "2.b.h,S=1,W=1", "b");
  std::string err;
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f);
  uint64_t before = f->highest_modseq();
  ASSERT_TRUE(f->set_flags({{1, "SF"}, {2, "S"}}, err)) << err;
  EXPECT_TRUE(fs::exists(dir / "cur" / "1.a.h,S=1,W=1:2,FS"));
  EXPECT_EQ(f->messages()[0].flags, "FS");
  EXPECT_GT(f->messages()[0].modseq, before);
  EXPECT_GT(f->messages()[1].modseq, f->messages()[0].modseq);
  EXPECT_EQ(f->highest_modseq(), f->messages()[1].modseq);
  // Another owner sees flags and modseqs from the index.
  auto g = Folder::open(dir.string(), err);
  EXPECT_EQ(g->messages()[0].flags, "FS");
  EXPECT_EQ(g->messages()[1].modseq, f->messages()[1].modseq);
  // A change made by another tool (a rename) gets a modseq at the next sync.
  fs::rename(dir / "cur" / "2.b.h,S=1,W=1:2,S", dir / "cur" / "2.b.h,S=1,W=1:2,RS");
  ASSERT_TRUE(g->sync(err));
  EXPECT_EQ(g->messages()[1].flags, "RS");
  EXPECT_GT(g->messages()[1].modseq, f->messages()[1].modseq);
  EXPECT_FALSE(g->set_flags({{1, "S!"}}, err));
}

// Two owners of one folder, each with its own view: a change is made to the flags as
// stored, never to the owner's stale view (the lost-update bug of two IMAP sessions).
TEST(Folder, ConcurrentOwnersMergeFlagChangesAndModseqsOnlyGrow) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  deliver(dir, "1.a.h,S=1,W=1", "a");
  deliver(dir, "2.b.h,S=1,W=1", "b");
  std::string err;
  auto a = Folder::open(dir.string(), err);
  auto b = Folder::open(dir.string(), err);
  ASSERT_TRUE(a && b) << err;
  auto add = [](char l) {
    return [l](const Message& m) -> std::optional<std::string> { return m.flags + l; };
  };
  auto drop = [](char l) {
    return [l](const Message& m) -> std::optional<std::string> {
      std::string f = m.flags;
      std::erase(f, l);
      return f;
    };
  };
  ASSERT_TRUE(a->update_flags({1}, add('S'), err)) << err;
  ASSERT_TRUE(b->sync(err));  // b has heard of \Seen
  ASSERT_TRUE(a->update_flags({1}, add('R'), err)) << err;
  uint64_t after_a = a->messages()[0].modseq;
  // b has not heard of \Answered: its -\Seen must not take it away
  std::vector<std::pair<uint32_t, uint64_t>> changed;
  ASSERT_TRUE(b->update_flags({1}, drop('S'), err, &changed)) << err;
  EXPECT_EQ(b->messages()[0].flags, "R");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].second, after_a);  // the state the change was made to
  EXPECT_GT(b->messages()[0].modseq, after_a);
  EXPECT_TRUE(fs::exists(dir / "cur" / "1.a.h,S=1,W=1:2,R"));
  // a, stale now, flags message 2: its modseq goes above b's, never below
  ASSERT_TRUE(a->update_flags({2}, add('F'), err)) << err;
  EXPECT_GT(a->messages()[1].modseq, b->messages()[0].modseq);
  EXPECT_EQ(a->messages()[0].flags, "R");  // and a's view has b's change now
  EXPECT_EQ(a->highest_modseq(), a->messages()[1].modseq);
  auto c = Folder::open(dir.string(), err);
  EXPECT_EQ(c->messages()[0].flags, "R");
  EXPECT_EQ(c->messages()[1].flags, "F");
  EXPECT_EQ(c->highest_modseq(), a->highest_modseq());
}

TEST(Folder, ExpungeOfDeletedTakesOnlyWhatIsStillDeletedAndStaleViewsReuseNoUid) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  for (int i = 0; i < 3; ++i) deliver(dir, std::to_string(i) + ".x.h,S=1,W=1", "x");
  std::string err;
  auto a = Folder::open(dir.string(), err);
  auto b = Folder::open(dir.string(), err);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->set_flags({{1, "T"}, {2, "T"}}, err));
  ASSERT_TRUE(b->set_flags({{2, ""}}, err));  // b takes \Deleted off message 2 meanwhile
  EXPECT_EQ(a->remove({1, 2}, err, true), 1u) << err;  // a's view still says 2 is \Deleted
  ASSERT_EQ(a->messages().size(), 2u);
  EXPECT_EQ(a->messages()[0].uid, 2u);
  // b (stale: still has UID 1) adds a message: the new one gets UID 4, and the index
  // b writes keeps what a did
  auto uid = b->add("new\n", "", err);
  ASSERT_TRUE(uid) << err;
  EXPECT_EQ(*uid, 4u);
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(b->set_flags({{2, i % 2 ? "S" : "F"}}, err));  // forces rewrites
  ASSERT_TRUE(a->set_flags({{3, "D"}}, err)) << err;  // a catches up with a rewritten index
  EXPECT_EQ(a->messages().size(), 3u);
  auto c = Folder::open(dir.string(), err);
  ASSERT_EQ(c->messages().size(), 3u);
  EXPECT_EQ(c->messages()[0].uid, 2u);
  EXPECT_EQ(c->messages()[1].flags, "D");
  EXPECT_EQ(c->messages()[2].uid, 4u);
  EXPECT_EQ(c->next_uid(), 5u);
}

TEST(Folder, AddAndCopyGiveUidsAtOnce) {
  test::TempDir t;
  std::string err;
  auto inbox = Folder::open((t.path / "box").string(), err);
  auto sent = Folder::open((t.path / "box" / ".Sent").string(), err);
  ASSERT_TRUE(inbox && sent);
  auto uid = inbox->add("Subject: x\r\n\r\nbody\r\n", "S", err);
  ASSERT_TRUE(uid) << err;
  EXPECT_EQ(*uid, 1u);
  const Message& m = inbox->messages().back();
  EXPECT_EQ(m.size, 17u);
  EXPECT_EQ(m.vsize, 20u);
  EXPECT_EQ(m.flags, "S");
  EXPECT_EQ(*inbox->add("second\n", "", err), 2u);
  auto pairs = inbox->copy_to(*sent, {1, 2}, err);
  ASSERT_EQ(pairs.size(), 2u) << err;
  EXPECT_EQ(pairs[0], std::make_pair(1u, 1u));
  EXPECT_EQ(pairs[1], std::make_pair(2u, 2u));
  int fd = sent->open_message(sent->messages()[0]);
  char buf[32] = {};
  ASSERT_GT(::read(fd, buf, sizeof buf), 0);
  ::close(fd);
  EXPECT_EQ(std::string(buf), "Subject: x\n\nbody\n");
  // a move: copy, then remove here
  EXPECT_EQ(inbox->remove({1}, err), 1u);
  EXPECT_EQ(sent->messages().size(), 2u);
}

#include "store/folders.hpp"

TEST(Folders, CreateListRenameDeleteAndSubscribe) {
  test::TempDir t;
  std::string md = t.path.string(), err;
  ASSERT_TRUE(ensure_default_folders(md, err)) << err;
  ASSERT_TRUE(create_folder(md, "Work/2026/Q4", err)) << err;
  EXPECT_FALSE(create_folder(md, "Work", err));
  EXPECT_FALSE(create_folder(md, "a.b", err));
  EXPECT_FALSE(create_folder(md, "a//b", err));
  EXPECT_FALSE(create_folder(md, "inbox", err));
  std::vector<std::string> names;
  for (auto& f : list_folders(md)) names.push_back(f.name + (f.special.empty() ? "" : " " + f.special) +
                                                     (f.has_children ? " +" : ""));
  EXPECT_EQ(names, (std::vector<std::string>{"INBOX", "Archive \\Archive", "Drafts \\Drafts", "Junk \\Junk",
                                             "Sent \\Sent", "Trash \\Trash", "Work +", "Work/2026 +", "Work/2026/Q4"}));
  EXPECT_TRUE(fs::exists(t.path / ".Work.2026.Q4" / "cur"));
  EXPECT_FALSE(delete_folder(md, "Work", err));
  EXPECT_NE(err.find("HASCHILDREN"), std::string::npos);
  ASSERT_TRUE(rename_folder(md, "Work", "Old/Work", err)) << err;
  EXPECT_TRUE(fs::exists(t.path / ".Old.Work.2026.Q4" / "cur"));
  EXPECT_FALSE(fs::exists(t.path / ".Work"));
  ASSERT_TRUE(delete_folder(md, "Old/Work/2026/Q4", err)) << err;
  EXPECT_FALSE(fs::exists(t.path / ".Old.Work.2026.Q4"));
  EXPECT_FALSE(delete_folder(md, "INBOX", err));
  auto subs = subscriptions(md);
  EXPECT_EQ(subs.size(), 5u);
  ASSERT_TRUE(set_subscribed(md, "Old", true, err));
  ASSERT_TRUE(set_subscribed(md, "Junk", false, err));
  subs = subscriptions(md);
  EXPECT_EQ(std::count(subs.begin(), subs.end(), "Old"), 1);
  EXPECT_EQ(std::count(subs.begin(), subs.end(), "Junk"), 0);
}

TEST(Folder, MaybeChangedIsCheapAndMissesNothing) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  deliver(dir, "1.a.h,S=1,W=1", "a");
  std::string err;
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f);
  // Times within the last 0.1 s count as changed (coarse clock ticks); older ones do not.
  EXPECT_TRUE(f->maybe_changed());
  auto old = fs::file_time_type::clock::now() - std::chrono::seconds(10) + std::chrono::milliseconds(1);
  fs::last_write_time(dir / "new", old);
  fs::last_write_time(dir / "cur", old);
  fs::last_write_time(dir / "bulwark-uidlist", old);
  ASSERT_TRUE(f->sync(err));
  EXPECT_FALSE(f->maybe_changed());
  deliver(dir, "2.b.h,S=1,W=1", "b");
  EXPECT_TRUE(f->maybe_changed());
  ASSERT_TRUE(f->sync(err));
  EXPECT_EQ(f->messages().size(), 2u);
  auto g = Folder::open(dir.string(), err);
  ASSERT_TRUE(g->set_flags({{1, "S"}}, err));
  EXPECT_TRUE(f->maybe_changed());  // another owner's flag change
}

TEST(Folder, OpeningAnUnchangedBigFolderAgainUsesTheCacheAndSeesEveryChange) {
  test::TempDir t;
  fs::path dir = t.path / "big";
  for (int i = 0; i < 1200; ++i) deliver(dir, std::to_string(1000 + i) + ".a.h,S=1,W=1", "a");
  std::string err;
  auto settle = [&] {  // as if the last change were 10 s ago
    auto old = fs::file_time_type::clock::now() - std::chrono::seconds(10) + std::chrono::milliseconds(1);
    for (const char* p : {"new", "cur", "bulwark-uidlist"}) fs::last_write_time(dir / p, old);
  };
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f) << err;
  settle();
  ASSERT_TRUE(f->sync(err));  // finds nothing new: kept
  // Proof that the kept copy is what an unchanged folder opens with: the index
  // overwritten with garbage of the same size and time (what a disk read would choke
  // on) goes unread. Then every real change is seen.
  fs::path index = dir / "bulwark-uidlist";
  std::string saved = read(index);
  auto when = fs::last_write_time(index);
  std::ofstream(index, std::ios::binary | std::ios::trunc) << std::string(saved.size(), 'x');
  fs::last_write_time(index, when);
  auto g = Folder::open(dir.string(), err);
  ASSERT_TRUE(g) << err;
  EXPECT_EQ(g->messages().size(), 1200u);
  std::ofstream(index, std::ios::binary | std::ios::trunc) << saved;
  fs::last_write_time(index, when);
  EXPECT_EQ(g->uidvalidity(), f->uidvalidity());
  EXPECT_FALSE(g->maybe_changed());
  deliver(dir, "9999.z.h,S=1,W=1", "z");  // a delivery: new/ changes
  auto h = Folder::open(dir.string(), err);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->messages().size(), 1201u);
  EXPECT_EQ(h->messages().back().uid, 1201u);
  settle();
  ASSERT_TRUE(h->sync(err));
  ASSERT_TRUE(h->set_flags({{5, "S"}}, err));  // a flag change: index and cur/ change
  auto k = Folder::open(dir.string(), err);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->messages()[4].flags, "S");
  settle();
  ASSERT_TRUE(k->sync(err));
  ASSERT_EQ(k->remove({7}, err), 1u);  // an expunge
  auto m = Folder::open(dir.string(), err);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->messages().size(), 1200u);
  EXPECT_EQ(m->messages()[6].uid, 8u);
}

TEST(Folder, IncomingMessagesAreWrittenAsTheyComeWhateverThePieces) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  std::string err;
  auto f = Folder::open(dir.string(), err);
  ASSERT_TRUE(f) << err;
  const std::string msg = "Subject: x\r\n\r\na\r\nb\rc\r\n\r\r";  // lone CRs, CRLF at every place
  for (size_t cut = 0; cut <= msg.size(); ++cut) {
    auto in = f->incoming(err);
    ASSERT_TRUE(in) << err;
    ASSERT_TRUE(in->write(msg.substr(0, cut)));
    ASSERT_TRUE(in->write(msg.substr(cut)));
    auto uid = in->finish(*f, "S", 0, err);
    ASSERT_TRUE(uid) << err;
    const Message& m = f->messages().back();
    EXPECT_EQ(m.uid, *uid);
    EXPECT_EQ(read(dir / m.file), "Subject: x\n\na\nb\rc\n\r\r") << cut;
    EXPECT_EQ(m.size, 20u);
    EXPECT_EQ(m.vsize, 24u);  // as a client counts it: each LF as CRLF
  }
  {  // dropped unfinished: nothing stays, no UID given
    auto in = f->incoming(err);
    ASSERT_TRUE(in->write("half a message"));
  }
  EXPECT_TRUE(fs::is_empty(dir / "tmp"));
  ASSERT_TRUE(f->sync(err));
  EXPECT_EQ(f->messages().size(), msg.size() + 1);
}

TEST(Folder, WritesLeftInTmpForThirtySixHoursAreRemoved) {
  test::TempDir t;
  fs::path dir = t.path / "box";
  std::string err;
  ASSERT_TRUE(Folder::open(dir.string(), err)) << err;
  std::ofstream(dir / "tmp" / "1.crashed.part") << "half";
  std::ofstream(dir / "tmp" / "2.in-flight.part") << "being written";
  fs::last_write_time(dir / "tmp" / "1.crashed.part", fs::file_time_type::clock::now() - std::chrono::hours(37));
  fs::last_write_time(dir / "tmp" / "2.in-flight.part", fs::file_time_type::clock::now() - std::chrono::hours(35));
  ASSERT_TRUE(Folder::open(dir.string(), err)) << err;
  EXPECT_FALSE(fs::exists(dir / "tmp" / "1.crashed.part"));
  EXPECT_TRUE(fs::exists(dir / "tmp" / "2.in-flight.part"));  // could still be on its way
}
