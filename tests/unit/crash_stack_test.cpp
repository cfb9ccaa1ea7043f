// The crash report's alternate signal stack: one per thread, on threads we start and on
// every thread of an asio pool (a stack overflow there must still be reported).
#include <gtest/gtest.h>
#include <signal.h>

#include <asio.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "logging/logs.hpp"

// (ASan installs alternate stacks of its own: the test is for the plain build)
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
namespace {
bool has_alt_stack() {
  stack_t now{};
  return ::sigaltstack(nullptr, &now) == 0 && !(now.ss_flags & SS_DISABLE) && now.ss_size >= 32 * 1024;
}
}  // namespace

TEST(CrashStack, EveryThreadGetsItsOwn) {
  bool on_thread = false;
  std::thread t([&] {
    EXPECT_FALSE(has_alt_stack());
    bulwark::logs::crash_stack_for_this_thread();
    on_thread = has_alt_stack();
  });
  t.join();
  EXPECT_TRUE(on_thread);
  asio::thread_pool pool(3);
  bulwark::logs::crash_stacks_for(pool, 3);
  std::mutex mu;
  std::set<std::thread::id> seen;
  int with_stack = 0;
  for (int i = 0; i < 60; ++i)
    asio::post(pool, [&] {
      std::lock_guard lk(mu);
      seen.insert(std::this_thread::get_id());
      with_stack += has_alt_stack();
    });
  pool.join();
  EXPECT_EQ(with_stack, 60);  // whichever thread ran it
  EXPECT_GE(seen.size(), 1u);
}
#endif
