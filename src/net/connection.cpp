#include "net/connection.hpp"

#include "core/metrics.hpp"

#include <openssl/ssl.h>

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;

awaitable<void> watchdog(std::shared_ptr<Conn> c) {
  while (!c->finished) {
    c->timer.expires_at(c->deadline);
    asio::error_code ec;
    co_await c->timer.async_wait(asio::redirect_error(use_awaitable, ec));
    if (c->finished) break;
    if (Clock::now() < c->deadline) continue;  // moved on, or moved earlier and re-armed
    if (!c->timed_out) {
      // First expiry: interrupt the read so the session can say why; give it a short
      // while to do so before cutting the connection.
      c->timed_out = true;
      c->deadline = Clock::now() + std::chrono::seconds(10);
      c->sock.cancel(ec);
    } else {
      c->sock.close(ec);
      break;
    }
  }
}

awaitable<size_t> read_some(Conn& c, asio::error_code& ec) {
  if (c.tls) co_return co_await c.tls->async_read_some(asio::buffer(c.buf), asio::redirect_error(use_awaitable, ec));
  co_return co_await c.sock.async_read_some(asio::buffer(c.buf), asio::redirect_error(use_awaitable, ec));
}

awaitable<ReadEnd> next_read(Conn& c, size_t& n) {
  n = 0;
  if (c.should_stop()) co_return ReadEnd::shutdown;
  asio::error_code ec;
  n = co_await read_some(c, ec);
  if (!ec) co_return ReadEnd::data;
  if (ec != asio::error::operation_aborted) co_return ReadEnd::closed;
  // Woken by the watchdog (timeout) or by the shutdown: a short grace to say why.
  bool timeout = c.timed_out;
  c.timed_out = true;
  c.deadline = Clock::now() + std::chrono::seconds(5);
  co_return timeout ? ReadEnd::timeout : ReadEnd::shutdown;
}

awaitable<bool> write(Conn& c, const std::string& bytes) {
  if (bytes.empty()) co_return true;
  asio::error_code ec;
  if (c.tls) co_await asio::async_write(*c.tls, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
  else co_await asio::async_write(c.sock, asio::buffer(bytes), asio::redirect_error(use_awaitable, ec));
  co_return !ec;
}

awaitable<bool> handshake(Conn& c, asio::ssl::context& ctx, Clock::duration limit) {
  c.tls.emplace(c.sock, ctx);
  c.set_deadline(limit);
  asio::error_code ec;
  co_await c.tls->async_handshake(asio::ssl::stream_base::server, asio::redirect_error(use_awaitable, ec));
  bool ok = !ec && !c.timed_out;
  if (ok)  // SSL_get_version's names are a fixed set ("TLSv1.2", "TLSv1.3")
    metrics::add("bulwark_tls_handshakes_total",
                 std::string("version=\"") + SSL_get_version(c.tls->native_handle()) + "\"");
  co_return ok;
}

std::pair<std::string, std::string> tls_names(Conn& c) {
  SSL* ssl = c.tls->native_handle();
  return {SSL_get_version(ssl), SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))};
}

awaitable<void> pause(Conn& c, std::chrono::milliseconds d) {
  asio::steady_timer t(c.sock.get_executor(), d);
  asio::error_code ec;
  co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
}

void ReadPacer::before_read(Conn& c, bool bulk, bool partial) {
  auto now = Clock::now();
  if (bulk) {
    if (!in_bulk_) {
      bulk_start_ = now;
      bulk_bytes_ = 0;
    }
    auto deadline = now + data_;
    if (min_rate_)
      deadline = std::min(deadline, bulk_start_ + data_ + std::chrono::milliseconds(bulk_bytes_ * 1000 / min_rate_));
    c.set_deadline_at(deadline);
  } else if (in_bulk_ || !partial) {
    c.set_deadline(command_);
  }  // else a command is arriving in pieces: its deadline stands
  in_bulk_ = bulk;
}

}  // namespace bulwark
