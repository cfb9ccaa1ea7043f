// delivery/: the transport of outbound sessions -- connect with a deadline, read and
// write with a deadline per step (RFC 5321 4.5.3.2: each reply, each block of the
// message; the reply to the end of the data gets twice as long), STARTTLS/STLS with
// SNI and (in required mode) certificate verification, and the two protocol drivers:
// SMTP (smtp::ClientSession, the content streamed from the spool file in chunks read
// on the disk thread) and the POP3 login of POP-before-SMTP. The queue logic is in
// remote.cpp.
#pragma once
#include <array>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <memory>
#include <optional>
#include <string>

#include "delivery/remote.hpp"
#include "smtp/client.hpp"

namespace bulwark {

struct Host {
  std::string name;  // MX or relay host name (for logs, SNI and verification)
  std::string ip;
};

class Outbound {
 public:
  // File reads run on `disk`; their results come back to `io`.
  Outbound(asio::io_context& io, asio::thread_pool& disk, Spool& spool, const RemoteSettings& s);
  // Rebuilds the TLS contexts from the settings (tls_ca_file may have changed).
  void reload_tls();

  // The state of one outbound TCP connection (SMTP, or POP3 before SMTP). Held by a
  // shared_ptr: the deadline handler keeps only a weak reference to it.
  struct Conn : std::enable_shared_from_this<Conn> {
    Conn(asio::io_context& io, smtp::ClientSettings cs) : sock(io), deadline(io), client(std::move(cs)) {}
    ~Conn();
    asio::ip::tcp::socket sock;
    asio::steady_timer deadline;
    smtp::ClientSession client;
    std::optional<asio::ssl::stream<asio::ip::tcp::socket&>> tls;
    std::string where, host_name, tls_desc = "none";
    std::array<char, 8192> buf;
    bool timed_out = false;
    asio::error_code ec;
    smtp::ServerReply tls_error;  // why the connection ended, when not the peer's reply
    smtp::ClientOutput out;  // what drive() writes next (kept here, not in a coroutine
                             // parameter: GCC 12 mishandles class-type temporaries there)
    uint64_t armed = 0;  // which arm() the pending deadline belongs to
    int last_unsent = 0;  // the kernel's unsent bytes at the last look
    // Starts the deadline of the next operation: at expiry the socket is cancelled,
    // unless the kernel's queue of our unsent bytes shrank meanwhile (then it starts
    // again). A handler of an earlier arm() that already fired is ignored (no spurious
    // timeout), and one that outlives the connection finds nothing (weak reference).
    void arm(std::chrono::seconds d);
    void watch(std::chrono::seconds d, uint64_t gen);
  };

  asio::awaitable<bool> connect(Conn& c, const Host& host, uint16_t port);
  // Every step of progress (one write call) gets its own deadline: a slow but moving
  // link is never cut, a stalled one is.
  asio::awaitable<bool> write(Conn& c, const std::string& bytes);
  asio::awaitable<size_t> read_some(Conn& c, std::chrono::seconds timeout);
  // The TLS handshake: SNI, and in required mode a certificate valid for the host name.
  asio::awaitable<bool> start_tls(Conn& c);
  // Writes c.out, then reads until the client session reports an event; at the body
  // event it streams `msg`'s content from the spool.
  asio::awaitable<smtp::ClientEvent> drive(Conn& c, const StoredMessage* msg = nullptr);
  // POP-before-SMTP: log in to the relay host's POP3 service (STLS, USER, PASS).
  // Returns "" on success, else why not.
  asio::awaitable<std::string> pop3_login(const Host& host);

 private:
  asio::awaitable<bool> send_body(Conn& c, const StoredMessage& m);
  asio::io_context& io_;
  asio::thread_pool& disk_;
  Spool& spool_;
  const RemoteSettings& s;
  std::unique_ptr<asio::ssl::context> tls_plain, tls_verify;
};

}  // namespace bulwark
