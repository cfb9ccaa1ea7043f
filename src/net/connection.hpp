// net/: one client connection, whatever protocol runs on it -- the socket, TLS
// (implicit or upgraded), the read deadlines and the watchdog that enforces them,
// and the byte-moving primitives a protocol driver uses. No protocol logic here.
#pragma once
#include <array>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "core/ip.hpp"

namespace bulwark {

using Clock = std::chrono::steady_clock;

struct Conn {
  explicit Conn(asio::ip::tcp::socket s) : sock(std::move(s)), timer(sock.get_executor()) {}
  asio::ip::tcp::socket sock;
  std::optional<asio::ssl::stream<asio::ip::tcp::socket&>> tls;
  asio::steady_timer timer;  // the watchdog's; expires at `deadline`
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point session_end = Clock::time_point::max();
  bool timed_out = false;
  std::atomic<bool> finished{false};  // read by the shutdown drain on another thread
  bool in_transaction = false;        // a shutdown lets it finish (for timeouts.shutdown)
  bool cut = false;                   // the shutdown grace is over: even a transaction ends now
  const std::atomic<bool>* stopping = nullptr;  // the server's shutdown flag
  std::array<char, 4096> buf;

  // The deadline of the current step, never past the whole-session bound. A deadline
  // that moves earlier re-arms the watchdog's timer at once (the watchdog only looks
  // again when its timer fires, so an earlier deadline would otherwise wait for the
  // older, later one). Runs on the connection's strand, like the watchdog.
  void set_deadline_at(Clock::time_point t) {
    deadline = std::min(t, session_end);
    if (deadline < timer.expiry()) timer.expires_at(deadline);
  }
  void set_deadline(Clock::duration d) { set_deadline_at(Clock::now() + d); }
  // The server is shutting down and this connection should end now.
  bool should_stop() const { return stopping && *stopping && (!in_transaction || cut); }
};

// Enforces c's deadlines until it is finished: at the first expiry the pending read
// is cancelled (the driver says why and closes), at the second the socket is closed.
asio::awaitable<void> watchdog(std::shared_ptr<Conn> c);

// A read into c.buf; ec set on error (operation_aborted: timeout or shutdown).
asio::awaitable<size_t> read_some(Conn& c, asio::error_code& ec);

// The read of a session loop: `data` (n bytes in c.buf), or why the session ends now:
// the peer closed or failed (`closed`: nothing to say), the read deadline passed, or
// the server is shutting down. For the last two the driver says why, in its protocol,
// within the 5 s the watchdog then allows, and closes.
enum class ReadEnd { data, closed, timeout, shutdown };
asio::awaitable<ReadEnd> next_read(Conn& c, size_t& n);

// False when the peer is gone: an I/O error is a value, never an exception (DESIGN 6).
// Callers pass named strings, never temporaries: GCC 12 destroys class-type
// temporaries of a co_await expression twice (docs/architecture.md).
asio::awaitable<bool> write(Conn& c, const std::string& bytes);

// The server side of a TLS handshake, bounded by `limit`.
asio::awaitable<bool> handshake(Conn& c, asio::ssl::context& ctx, Clock::duration limit);

// The negotiated TLS version and cipher ("TLSv1.3", "TLS_AES_256_GCM_SHA384").
std::pair<std::string, std::string> tls_names(Conn& c);

// Waits (a failed login's delay) on the connection's strand.
asio::awaitable<void> pause(Conn& c, std::chrono::milliseconds d);

// The read deadlines of DESIGN 13, for any line protocol with a bulk phase: a command
// line must be complete within `command` of the moment the server started waiting
// for it, however it is split; a bulk phase (SMTP DATA/BDAT, IMAP literal, POP3 has
// none) gets `data` for any one wait and must average `min_rate` bytes/s after its
// first `data`. No deadline is extended per byte.
class ReadPacer {
 public:
  ReadPacer(std::chrono::seconds command, std::chrono::seconds data, uint64_t min_rate)
      : command_(command), data_(data), min_rate_(min_rate) {}
  // Before each read: `bulk` = inside a bulk phase; `partial` = part of a command line
  // is already buffered.
  void before_read(Conn& c, bool bulk, bool partial);
  void after_read(size_t n) {
    if (in_bulk_) bulk_bytes_ += n;
  }

 private:
  std::chrono::seconds command_, data_;
  uint64_t min_rate_;
  bool in_bulk_ = false;
  Clock::time_point bulk_start_{};
  uint64_t bulk_bytes_ = 0;
};

}  // namespace bulwark
