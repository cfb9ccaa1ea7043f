#include "delivery/outbound.hpp"

#include <openssl/ssl.h>

#include "auth/password.hpp"
#include "delivery/pop3_login.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

Outbound::Outbound(asio::io_context& io, const RemoteSettings& settings) : io_(io), s(settings) { reload_tls(); }

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

void Outbound::Conn::arm(std::chrono::seconds d) {
  deadline.expires_after(d);
  deadline.async_wait([weak = weak_from_this(), gen = ++armed](const asio::error_code& e) {
    auto self = weak.lock();
    if (e || !self || self->armed != gen) return;
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
  co_return !c.ec;
}

awaitable<bool> Outbound::write(Conn& c, const std::string& bytes) {
  c.arm(s.reply_timeout);
  if (c.tls) co_await asio::async_write(*c.tls, asio::buffer(bytes), asio::redirect_error(use_awaitable, c.ec));
  else co_await asio::async_write(c.sock, asio::buffer(bytes), asio::redirect_error(use_awaitable, c.ec));
  co_return !c.ec;
}

awaitable<size_t> Outbound::read_some(Conn& c) {
  c.arm(s.reply_timeout);
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

awaitable<smtp::ClientEvent> Outbound::drive(Conn& c) {
  smtp::ClientOutput& out = c.out;
  for (;;) {
    if (!out.bytes.empty() && !co_await write(c, out.bytes)) co_return smtp::ClientEvent::closed;
    if (out.event == smtp::ClientEvent::starttls) {
      if (!co_await start_tls(c)) co_return smtp::ClientEvent::closed;
      out = c.client.tls_started();
      continue;
    }
    if (out.event != smtp::ClientEvent::none) co_return out.event;
    size_t n = co_await read_some(c);
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
    size_t n = co_await read_some(c);
    if (c.ec) co_return "POP3 connection to " + c.where + " lost" + (c.timed_out ? " (timeout)" : "");
    out = login.feed(std::string_view(c.buf.data(), n));
  }
}


}  // namespace bulwark
