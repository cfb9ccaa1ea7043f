// logging/: the three logs. mail.log (one line per accepted message and per delivery),
// security.log (every refusal for a policy reason), bulwark.log (server events, also
// on stderr). Every line starts with an ISO-8601 UTC timestamp. Callers pass values
// through sanitize() when they come from the network. With a data key loaded (encryption
// at rest) the files are sealed records and bulwark.log is not copied to stderr.
// Depends on spdlog and crypt/.
#pragma once
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace bulwark::logs {

// Opens the files under log_dir (created 0750 if needed; the files are made 0640:
// client addresses and user names are not for everyone). Without init, all three go
// to stderr.
void init(const std::string& log_dir, bool also_stderr = true);
spdlog::logger& mail();
spdlog::logger& security();
spdlog::logger& main();
void flush();
// Log rotation: closes the three files and opens them by name again, making new ones
// after logrotate (or anyone) renamed them. The server calls it on SIGHUP.
void reopen();
// On SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT: a line and a backtrace on stderr,
// then the default action (crash.cpp). Not in sanitizer builds (their report is better).
void install_crash_report();
// The report runs on an alternate signal stack, so that a stack overflow can still be
// reported; that stack is per thread: every thread calls this when it starts
// (install_crash_report does it for the main thread).
void crash_stack_for_this_thread();
// The same for each of a thread pool's `n` threads (asio::thread_pool): one task per
// thread, each waiting until all have run, so that no thread takes two.
template <class Pool>
void crash_stacks_for(Pool& pool, unsigned n) {
  // Shared: a thread may still be inside arrive_and_wait when the caller's wait ends.
  auto all = std::make_shared<std::latch>(n);
  for (unsigned i = 0; i < n; ++i)
    post(pool, [all] {
      crash_stack_for_this_thread();
      all->arrive_and_wait();
    });
  all->wait();
}

// For a line that a fault can repeat many times a second (accept() failing while
// the process is out of file descriptors): at most one line per `every`. allow()
// says whether to write now and, if so, how many were held back since the last one.
class Throttle {
 public:
  explicit Throttle(std::chrono::seconds every = std::chrono::seconds(10)) : every_(every) {}
  std::optional<uint64_t> allow();

 private:
  std::chrono::seconds every_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
  bool any_ = false;
  uint64_t held_ = 0;
};

// The same per cause (a message text): a full disk refusing every message of many
// sessions is one line per 10 s, while another cause still gets its own. At most 256
// causes are remembered (the one seen longest ago goes).
class CauseThrottle {
 public:
  explicit CauseThrottle(std::chrono::seconds every = std::chrono::seconds(10)) : every_(every) {}
  std::optional<uint64_t> allow(const std::string& cause);

 private:
  struct Seen {
    std::chrono::steady_clock::time_point last{};
    uint64_t held = 0;
  };
  std::chrono::seconds every_;
  std::mutex mu_;
  std::map<std::string, Seen> seen_;
};

}  // namespace bulwark::logs
