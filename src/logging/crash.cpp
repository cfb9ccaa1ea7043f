// logging/: what the process says when it dies of a fault. A crash under load is rare
// and hard to make happen again; a backtrace on stderr (the journal, under systemd)
// turns the one time it happens into a place in the code. Only async-signal-safe calls
// in the handler: write(2) and glibc's backtrace (loaded once beforehand).
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <iterator>
#include <memory>

#include "logging/logs.hpp"

namespace bulwark::logs {

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
namespace {

void say(const char* s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= size_t(w);
  }
}

void on_fatal(int sig) {
  char num[12];
  int i = sizeof num - 1;
  num[i] = '\0';
  for (int v = sig; v > 0 && i > 0; v /= 10) num[--i] = char('0' + v % 10);
  say("bulwark: fatal signal ");
  say(num + i);
  say(" (");
  say(sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
  say("); backtrace (addresses: addr2line -Cfe bulwark OFFSET):\n");
  void* frames[64];
  int n = backtrace(frames, int(std::size(frames)));
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  // SA_RESETHAND put the default action back: the process ends as it would have
  // (with a core dump where they are enabled).
  ::raise(sig);
}

}  // namespace
#endif

void crash_stack_for_this_thread() {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // The thread's own stack may be what overflowed (deep recursion on hostile input).
  struct AltStack {
    char bytes[64 * 1024];
    AltStack() {
      stack_t ss{};
      ss.ss_sp = bytes;
      ss.ss_size = sizeof bytes;
      ::sigaltstack(&ss, nullptr);
    }
    ~AltStack() {
      stack_t ss{};
      ss.ss_flags = SS_DISABLE;
      ::sigaltstack(&ss, nullptr);
    }
  };
  thread_local std::unique_ptr<AltStack> mine;
  if (!mine) mine = std::make_unique<AltStack>();
#endif
}

void install_crash_report() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizer's own report says more; its handler stays.
#else
  crash_stack_for_this_thread();
  void* warm[1];
  backtrace(warm, 1);  // the first call loads libgcc: not something to do in a handler
  struct sigaction sa{};
  sa.sa_handler = on_fatal;
  sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::sigaction(sig, &sa, nullptr);
#endif
}

}  // namespace bulwark::logs
