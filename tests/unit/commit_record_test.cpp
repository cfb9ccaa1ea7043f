// One journal commit per batch (queue/commit_record.hpp): what a crash leaves between
// the batch's sync and its renames is completed at start-up -- whole files moved into
// place, torn ones removed -- and nothing else is touched.
#include "queue/commit_record.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "delivery/local.hpp"
#include "spool_commit.hpp"
#include "temp_dir.hpp"

using namespace bulwark;
namespace fs = std::filesystem;

namespace {
void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}
std::string get(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
}  // namespace

TEST(CommitRecord, ReplayMovesWholeFilesIntoPlaceAndRemovesTornOnes) {
  test::TempDir t("bulwark-commit-test");
  fs::create_directories(t.path / "queue");
  fs::path a_tmp = t.path / "box/tmp/a", a_new = t.path / "box/new/a,S=5";
  fs::path b_tmp = t.path / "q.tmp/b", b_new = t.path / "queue/b";
  fs::path c_tmp = t.path / "box/tmp/c", c_new = t.path / "box/new/c";
  put(a_tmp, "hello");
  put(b_tmp, "queued");
  put(c_tmp, "third");
  fs::create_directories(t.path / "box/new");
  {
    CommitRecord rec((t.path / "queue").string());
    ASSERT_TRUE(rec.write({{a_tmp.string(), a_new.string()}, {b_tmp.string(), b_new.string()}, {c_tmp.string(), c_new.string()}}));
  }
  put(b_tmp, "queu");  // the crash came before the sync: this one is not whole
  fs::rename(c_tmp, c_new);  // this rename had made it to the disk
  CommitRecord again((t.path / "queue").string());
  auto r = again.replay();
  EXPECT_EQ(r.renamed, 1u);
  EXPECT_EQ(r.torn, 1u);
  EXPECT_EQ(get(a_new), "hello");
  EXPECT_FALSE(fs::exists(a_tmp));
  EXPECT_FALSE(fs::exists(b_tmp));
  EXPECT_FALSE(fs::exists(b_new));
  EXPECT_EQ(get(c_new), "third");
  // Replayed once: the records are empty now.
  put(a_tmp, "hello");  // (as if written again)
  auto none = again.replay();
  EXPECT_EQ(none.renamed + none.torn, 0u);
  EXPECT_TRUE(fs::exists(a_tmp));
  EXPECT_EQ(fs::file_size(t.path / "queue/.commit.0") + fs::file_size(t.path / "queue/.commit.1"), 0u);
}

TEST(CommitRecord, ATornOrCancelledRecordRenamesNothing) {
  test::TempDir t("bulwark-commit-test");
  fs::create_directories(t.path / "queue");
  fs::path tmp = t.path / "tmp/x", fin = t.path / "queue/x";
  put(tmp, "content");
  {
    CommitRecord rec((t.path / "queue").string());
    ASSERT_TRUE(rec.write({{tmp.string(), fin.string()}}));
  }
  // A crash while the record was written: one byte of it differs.
  std::string text = get(t.path / "queue/.commit.0");
  ASSERT_FALSE(text.empty());
  text[text.size() / 2] ^= 1;
  put(t.path / "queue/.commit.0", text);
  {
    CommitRecord rec((t.path / "queue").string());
    auto r = rec.replay();
    EXPECT_EQ(r.renamed + r.torn, 0u);
    EXPECT_FALSE(fs::exists(fin));
    ASSERT_TRUE(rec.write({{tmp.string(), fin.string()}}));
    rec.cancel();  // the batch failed after its record was written
  }
  CommitRecord rec((t.path / "queue").string());
  auto r = rec.replay();
  EXPECT_EQ(r.renamed + r.torn, 0u);
  EXPECT_FALSE(fs::exists(fin));
  EXPECT_TRUE(fs::exists(tmp));
}

TEST(CommitRecord, OnlyTheLastTwoBatchesAreReplayed) {
  test::TempDir t("bulwark-commit-test");
  fs::create_directories(t.path / "queue");
  fs::create_directories(t.path / "done");
  CommitRecord rec((t.path / "queue").string());
  for (const char* n : {"1", "2", "3"}) {
    put(t.path / "tmp" / n, n);
    ASSERT_TRUE(rec.write({{(t.path / "tmp" / n).string(), (t.path / "done" / n).string()}}));
  }
  CommitRecord after((t.path / "queue").string());
  auto r = after.replay();
  EXPECT_EQ(r.renamed, 2u);
  EXPECT_TRUE(fs::exists(t.path / "tmp/1")) << "batch 1's record was overwritten by batch 3's";
  EXPECT_TRUE(fs::exists(t.path / "done/2"));
  EXPECT_TRUE(fs::exists(t.path / "done/3"));
}

// The real committer's record, the real recovery: a write-once message whose rename
// into new/ did not reach the disk is in new/ after the restart; a queue file likewise.
TEST(CommitRecord, TheSpoolsRecordBringsBackARenameACrashLost) {
  test::TempDir t("bulwark-commit-test");
  std::string data = t.path.string();
  fs::path box = fs::path(maildir_path(data, "demo@example.test"));
  fs::path delivered, queued_file;
  {
    Spool spool(data);
    spool.recover();
    Reporter reporter(spool, {"host.test", data, "en", std::chrono::hours(1)},
                      [](const std::string&) { return std::vector<smtp::Recipient>{}; });
    LocalDelivery local(spool, reporter, {data, "host.test", std::chrono::seconds(1), std::chrono::hours(1)});
    spool.set_direct(&local);
    spool.start();
    test::commit(spool, "Subject: once\r\n\r\nbody\r\n");
    spool.stop();
    ASSERT_EQ(std::distance(fs::directory_iterator(box / "new"), {}), 1);
    delivered = fs::directory_iterator(box / "new")->path();
  }
  // As if the crash came before the journal held the rename: the copy is back in tmp/.
  std::string name = delivered.filename().string();
  fs::path tmp = box / "tmp" / name.substr(0, name.find(",S="));
  fs::rename(delivered, tmp);
  Spool spool(data);
  spool.recover();
  EXPECT_TRUE(fs::exists(delivered));
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_NE(get(delivered).find("Subject: once"), std::string::npos);
}
