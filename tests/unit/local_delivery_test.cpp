// Local delivery is done only when it is durable: a failed sync leaves the message
// queued and it is tried again (issue 8.12).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "delivery/local.hpp"
#include "spool_commit.hpp"
#include "temp_dir.hpp"

using namespace bulwark;
namespace fs = std::filesystem;

namespace {
template <class F>
bool eventually(F f, std::chrono::seconds limit = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

size_t mailbox_files(const fs::path& data) {
  fs::path nd = fs::path(maildir_path(data.string(), "demo@example.test")) / "new";
  return fs::exists(nd) ? size_t(std::distance(fs::directory_iterator(nd), {})) : 0;
}
}  // namespace

TEST(LocalDelivery, AFailedSyncLeavesTheMessageQueuedUntilOneSucceeds) {
  test::TempDir t("bulwark-local-test");
  Spool spool(t.path.string());
  spool.recover();
  spool.start();
  std::string id = test::commit(spool, "Subject: x\r\n\r\nbody\r\n");
  Reporter reporter(spool, {"host.test", t.path.string(), "en", std::chrono::hours(1)},
                    [](const std::string&) { return std::vector<smtp::Recipient>{}; });
  std::atomic<int> syncs{0};
  // The sync after the renames fails the first time (as a dying disk would).
  LocalDelivery local(spool, reporter, {t.path.string(), "host.test", std::chrono::seconds(1), std::chrono::hours(1)},
                      [&syncs](int fd) {
                        if (++syncs == 2) {
                          errno = EIO;
                          return -1;
                        }
                        return ::syncfs(fd);
                      });
  local.start({{id, true, false, 0}});
  ASSERT_TRUE(eventually([&] { return syncs >= 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(fs::exists(spool.path_of(id))) << "removed from the spool although never made durable";
  // The retry succeeds: the message leaves the spool (delivered twice: at least once).
  ASSERT_TRUE(eventually([&] { return !fs::exists(spool.path_of(id)); }));
  EXPECT_GE(mailbox_files(t.path), 1u);
  local.stop();
  spool.stop();
}
