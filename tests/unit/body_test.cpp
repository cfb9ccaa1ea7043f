// MessageBody: small bodies in memory, large ones (or any once the budget is used up)
// streamed to a file with room for the spool header in front.
#include <gtest/gtest.h>

#include "temp_dir.hpp"
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/body.hpp"

using namespace bulwark;

namespace {
using test::TempDir;

std::string file_body(const MessageBody& b) {
  std::ifstream in(b.path(), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str().substr(MessageBody::kHeaderRoom);
}
}  // namespace

TEST(MessageBody, SmallStaysInMemoryAndCountsAgainstTheBudget) {
  TempDir t;
  MemoryBudget budget(1 << 20);
  BodySpill spill{t.path.string(), 256 * 1024, &budget};
  {
    MessageBody b(&spill);
    b.append("Subject: x\r\n\r\nhello\r\n");
    ASSERT_TRUE(b.finish());
    EXPECT_FALSE(b.spilled());
    EXPECT_EQ(b.memory(), "Subject: x\r\n\r\nhello\r\n");
    EXPECT_GT(budget.used(), 0u);
    EXPECT_EQ(t.files(), 0u);
  }
  EXPECT_EQ(budget.used(), 0u);  // given back
}

TEST(MessageBody, LargeGoesToAFileWithHeaderRoomAndKeepsItsHead) {
  TempDir t;
  MemoryBudget budget(64 << 20);
  BodySpill spill{t.path.string(), 256 * 1024, &budget};
  std::string all;
  {
    MessageBody b(&spill);
    for (int i = 0; i < 5000; ++i) {
      std::string line = "line " + std::to_string(i) + std::string(100, 'x') + (i == 7 ? "\xc3\xa9" : "") + "\r\n";
      b.append(line);
      all += line;
    }
    ASSERT_TRUE(b.finish());
    EXPECT_TRUE(b.spilled());
    EXPECT_TRUE(b.eight_bit());
    EXPECT_EQ(b.size(), all.size());
    EXPECT_EQ(budget.used(), 0u);  // nothing held in memory but the head
    EXPECT_EQ(std::string(b.head()), all.substr(0, MessageBody::kHeadKept));
    EXPECT_EQ(file_body(b), all);
    EXPECT_EQ(t.files(), 1u);
  }
  EXPECT_EQ(t.files(), 0u);  // never committed: its file goes with it
}

TEST(MessageBody, ABudgetUsedUpSendsEvenSmallBodiesToDisk) {
  TempDir t;
  MemoryBudget budget(20000);
  BodySpill spill{t.path.string(), 256 * 1024, &budget};
  MessageBody first(&spill), second(&spill);
  first.append(std::string(15000, 'a'));
  EXPECT_FALSE(first.spilled());
  second.append(std::string(15000, 'b'));
  EXPECT_TRUE(second.spilled());
  EXPECT_LE(budget.used(), budget.limit());
  ASSERT_TRUE(second.finish());
  EXPECT_EQ(file_body(second), std::string(15000, 'b'));
}

TEST(MessageBody, ReleasedFileStaysAndMovesKeepOwnership) {
  TempDir t;
  BodySpill spill{t.path.string(), 1024, nullptr};
  MessageBody b(&spill);
  b.append(std::string(5000, 'z'));
  ASSERT_TRUE(b.finish());
  std::string path = b.path();
  MessageBody moved(std::move(b));
  EXPECT_TRUE(moved.spilled());
  moved.release_file();  // the spool renamed it into the queue
  EXPECT_TRUE(moved.spilled());  // still "in a file": read it from the spool
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(MessageBody, MadeFromTextKnowsItsSize) {
  MessageBody b(std::string("Subject: r\xc3\xa9port\r\n\r\nx\r\n"));
  EXPECT_EQ(b.size(), b.memory().size());
  EXPECT_TRUE(b.eight_bit());
  EXPECT_EQ(b.last(), '\n');
}
