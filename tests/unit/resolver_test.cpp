// dns/resolver: a DNS server that refuses at once (a closed port: ICMP unreachable) must
// not hang the resolver. c-ares may run a query's callback inside ares_query() when its
// socket already holds the error, and a callback that queries again (SPF's include:,
// DMARC after SPF) must not find the resolver's lock held by its own thread.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "dns/resolver.hpp"

using namespace bulwark;

namespace {
// A UDP port on loopback with nothing listening (bound, read, closed).
int closed_udp_port() {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}
}  // namespace

TEST(Resolver, ARefusingServerFailsQueriesAndCallbacksThatQueryAgainDoNotHang) {
  Resolver r({"127.0.0.1:" + std::to_string(closed_udp_port())}, std::chrono::milliseconds(500));
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  const int threads = 4, per_thread = 100, depth = 3;
  std::atomic<int> failures{0};
  // Each answer asks the next name from inside its callback, as SPF's include: does.
  std::function<void(int)> ask = [&](int left) {
    r.query("example.test", DnsType::txt, [&, left](DnsResult res) {
      if (res.status != DnsResult::ok) ++failures;
      if (left > 0) return ask(left - 1);
      std::lock_guard lk(mu);
      ++done;
      cv.notify_all();
    });
  };
  // Many at once from several threads (sessions): the queries of one batch are sent
  // while the refusals of the earlier ones arrive on the same socket.
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t)
    senders.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) ask(depth);
    });
  for (auto& t : senders) t.join();
  std::unique_lock lk(mu);
  bool all = cv.wait_for(lk, std::chrono::seconds(30), [&] { return done == threads * per_thread; });
  ASSERT_TRUE(all) << "only " << done << " of " << threads * per_thread << " chains of queries ended: the resolver hangs";
  EXPECT_EQ(failures.load(), threads * per_thread * (depth + 1));
  lk.unlock();
  r.shutdown();
}
