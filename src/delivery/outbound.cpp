#include "delivery/outbound.hpp"

#include <linux/sockios.h>
#include <openssl/ssl.h>
#include <sys/ioctl.h>

#include "auth/password.hpp"
#include "delivery/pop3_login.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

Outbound::Outbound(asio::io_context& io, asio::thread_pool& disk, Spool& spool, const RemoteSettings& settings)
    : io_(io), disk_(disk), spool_(spool), s(settings) {
  reload_tls();
}

void Outbound::reload_tls() {
  auto plain = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  auto verify = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  for (auto* ctx : {plain.get(), verify.get()}) {
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression);
  }
  plain->set_verify_mode(asio::ssl::verify_none);
  verify->set_verify_mode(asio::ssl::verify_peer);
  verify->set_default_verify_paths();
  if (!s.tls_ca_file.empty()) verify->load_verify_file(s.tls_ca_file);  // throws if unreadable
  // A connection in its handshake keeps the old context alive through its SSL object.
  tls_plain = std::move(plain);
  tls_verify = std::move(verify);
}

Outbound::Conn::~Conn() {
  asio::error_code ignore;
  deadline.cancel();
  sock.close(ignore);
}

// Bytes we wrote that the kernel has not sent yet (0 when it cannot tell).
static int unsent(asio::ip::tcp::socket& s) {
  int n = 0;
  if (!s.is_open() || ::ioctl(s.native_handle(), SIOCOUTQ, &n) != 0) return 0;
  return n;
}

void Outbound::Conn::arm(std::chrono::seconds d) {
  last_unsent = unsent(sock);
  watch(d, ++armed);
}

void Outbound::Conn::watch(std::chrono::seconds d, uint64_t gen) {
  deadline.expires_after(d);
  deadline.async_wait([weak = weak_from_this(), gen, d](const asio::error_code& e) {
    auto self = weak.lock();
    if (e || !self || self->armed != gen) return;
    // Our data still leaving, just slowly (a large body sits in the kernel's send
    // buffer while we wait for the reply to its end): that is progress, not a stall.
    int left = unsent(self->sock);
    if (left > 0 && left < self->last_unsent) {
      self->last_unsent = left;
      return self->watch(d, gen);
    }
    self->timed_out = true;
    asio::error_code ignore;
    self->sock.cancel(ignore);
  });
}

awaitable<bool> Outbound::connect(Conn& c, const Host& host, uint16_t port) {
  c.where = host.name + "[" + host.ip + "]:" + std::to_string(port);
  c.host_name = host.name;
  c.arm(s.connect_timeout);
  co_await c.sock.async_connect(tcp::endpoint(asio::ip::make_address(host.ip), port),
                                asio::redirect_error(use_awaitable, c.ec));
  // Every write is a whole command or a whole piece of the message: no reason to let
  // Nagle hold a short one back until the peer's (delayed) ACK.
  if (!c.ec) {
    asio::error_code ignore;
    c.sock.set_option(tcp::no_delay(true), ignore);
  }
  co_return !c.ec;
}

awaitable<bool> Outbound::write(Conn& c, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    c.arm(s.reply_timeout);
    auto rest = asio::buffer(bytes.data() + done, bytes.size() - done);
    size_t n = 0;
    if (c.tls) n = co_await c.tls->async_write_some(rest, asio::redirect_error(use_awaitable, c.ec));
    else n = co_await c.sock.async_write_some(rest, asio::redirect_error(use_awaitable, c.ec));
    if (c.ec) co_return false;
    done += n;
  }
  co_return true;
}

awaitable<size_t> Outbound::read_some(Conn& c, std::chrono::seconds timeout) {
  c.arm(timeout);
  size_t n = 0;
  if (c.tls) n = co_await c.tls->async_read_some(asio::buffer(c.buf), asio::redirect_error(use_awaitable, c.ec));
  else n = co_await c.sock.async_read_some(asio::buffer(c.buf), asio::redirect_error(use_awaitable, c.ec));
  co_return c.ec ? 0 : n;
}

awaitable<bool> Outbound::start_tls(Conn& c) {
  bool verify = s.tls == smtp::ClientTls::required;
  c.tls.emplace(c.sock, verify ? *tls_verify : *tls_plain);
  asio::error_code not_ip;
  asio::ip::make_address(c.host_name, not_ip);
  if (not_ip) SSL_set_tlsext_host_name(c.tls->native_handle(), c.host_name.c_str());
  if (verify) c.tls->set_verify_callback(asio::ssl::host_name_verification(c.host_name));
  c.arm(s.reply_timeout);
  co_await c.tls->async_handshake(asio::ssl::stream_base::client, asio::redirect_error(use_awaitable, c.ec));
  if (c.ec) {
    c.tls_error = {451, "4.7.5 TLS handshake with " + c.where + " failed: " + c.ec.message(), true};
    co_return false;
  }
  c.tls_desc = std::string(SSL_get_version(c.tls->native_handle())) + "/" +
               SSL_CIPHER_get_name(SSL_get_current_cipher(c.tls->native_handle()));
  co_return true;
}

namespace {
// Runs f on the disk pool; the awaiting coroutine resumes on `io` with its result. A
// plain function (not a coroutine): GCC 12 mishandles class-type by-value coroutine
// parameters such as this lambda.
template <class F>
auto on_disk(asio::thread_pool& disk, asio::io_context& io, F f) {
  using T = std::invoke_result_t<F>;
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [&disk, &io, f = std::move(f)](auto handler) mutable {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        asio::post(disk, [&io, h, f = std::move(f)]() mutable {
          T r = f();
          asio::post(io, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      use_awaitable);
}
}  // namespace

// GCC 12 destroys class-type temporaries of a co_await expression twice (found by
// ASan here: a lambda holding a shared_ptr). So the disk jobs below capture only
// references and pointers, and what is written is a named local.
awaitable<bool> Outbound::send_body(Conn& c, const StoredMessage& m) {
  std::optional<Spool::Reader> reader;
  Spool* spool = &spool_;
  const StoredMessage* msg = &m;
  smtp::DotStuffer stuffer;
  std::optional<Spool::Reader>* slot = &reader;
  bool opened = co_await on_disk(disk_, io_, [slot, spool, msg] {
    slot->emplace(*spool, *msg);
    return true;
  });
  Spool::Reader* r = &*reader;
  if (opened && !m.prepend.empty()) {
    std::string first = stuffer.stuff(m.prepend);
    if (!co_await write(c, first)) co_return false;
  }
  while (opened && r->left() > 0) {
    std::optional<std::string> chunk = co_await on_disk(disk_, io_, [r] { return r->next(64 * 1024); });
    if (!chunk || chunk->empty()) {
      // The session cannot end the data cleanly now: dropping it makes the server
      // discard the transaction, and the message stays queued.
      c.tls_error = {451, "4.3.0 the queued message could not be read", true};
      co_return false;
    }
    std::string out = stuffer.stuff(*chunk);
    // The end of the data goes with the last chunk: a lone ".\r\n" would wait for the
    // peer's delayed ACK (Nagle), 40 ms per message.
    if (r->left() == 0) out += stuffer.finish();
    if (!co_await write(c, out)) co_return false;
  }
  if (!opened || m.content_size == 0) {
    std::string end = stuffer.finish();
    co_return co_await write(c, end);
  }
  co_return true;
}

awaitable<smtp::ClientEvent> Outbound::drive(Conn& c, const StoredMessage* msg) {
  smtp::ClientOutput& out = c.out;
  for (;;) {
    if (!out.bytes.empty() && !co_await write(c, out.bytes)) co_return smtp::ClientEvent::closed;
    if (out.event == smtp::ClientEvent::starttls) {
      if (!co_await start_tls(c)) co_return smtp::ClientEvent::closed;
      out = c.client.tls_started();
      continue;
    }
    if (out.event == smtp::ClientEvent::body) {
      if (!msg || !co_await send_body(c, *msg)) co_return smtp::ClientEvent::closed;
      out = c.client.body_sent();
      continue;
    }
    if (out.event != smtp::ClientEvent::none) co_return out.event;
    size_t n = co_await read_some(c, c.client.awaiting_data_end() ? 2 * s.reply_timeout : s.reply_timeout);
    if (c.ec) co_return smtp::ClientEvent::closed;
    out = c.client.feed(std::string_view(c.buf.data(), n));
  }
}

awaitable<std::string> Outbound::pop3_login(const Host& host) {
  auto conn = std::make_shared<Conn>(io_, smtp::ClientSettings{s.hostname, s.tls, "", ""});
  Conn& c = *conn;
  if (!co_await connect(c, host, s.relay_pop3_port)) co_return "cannot connect to " + c.where + ": " + c.ec.message();
  Pop3Login login(s.relay_user, s.relay_password);
  Pop3Login::Out out;
  for (;;) {
    if (!out.bytes.empty()) {
      bool ok = co_await write(c, out.bytes);
      auth::wipe(out.bytes);
      if (!ok) co_return "POP3 connection to " + c.where + " lost";
    }
    if (out.event == Pop3Login::Out::done) co_return "";
    if (out.event == Pop3Login::Out::failed) co_return login.error();
    if (out.event == Pop3Login::Out::starttls) {
      if (!co_await start_tls(c)) co_return c.tls_error.text;
      out = login.tls_started();
      continue;
    }
    size_t n = co_await read_some(c, s.reply_timeout);
    if (c.ec) co_return "POP3 connection to " + c.where + " lost" + (c.timed_out ? " (timeout)" : "");
    out = login.feed(std::string_view(c.buf.data(), n));
  }
}


}  // namespace bulwark
