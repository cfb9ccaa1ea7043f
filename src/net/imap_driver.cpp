// net/: the IMAP driver -- connects imap::Session to a connection: reads and writes,
// STARTTLS, password checks (Logins), and, once a user is logged in, the session's
// work on the disk pool (its commands read and write the store: readdir, fsync,
// message files), never on an I/O thread. In IDLE a ticker asks the session for news
// every second, so a delivery is announced within about that.
#include "core/strings.hpp"
#include "logging/logs.hpp"
#include "net/deflate.hpp"
#include "directory/directory.hpp"
#include "net/driver.hpp"
#include "net/imap_mailbox.hpp"
#include "net/pg_mailbox.hpp"
#include "net/login.hpp"
#include "imap/session.hpp"
#include "store/mailstore.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;

namespace {


// Writes in order from two coroutines on one strand (the conversation and the IDLE
// ticker): a write that finds another under way queues behind it.
// After COMPRESS DEFLATE (RFC 4978) every write is compressed, in the order of the
// calls (a queued write is compressed when it is queued).
struct Writer {
  explicit Writer(Conn& conn) : c(conn) {}
  Conn& c;
  bool busy = false, failed = false;
  std::string queued, sending;
  std::unique_ptr<Deflate> z;
};

awaitable<bool> put(Writer& w, const std::string& plain) {
  if (plain.empty() || w.failed) co_return !w.failed;
  std::string bytes = w.z ? w.z->compress(plain) : plain;
  if (w.busy) {
    w.queued += bytes;
    co_return true;
  }
  w.busy = true;
  w.sending = std::move(bytes);
  for (;;) {
    bool ok = co_await write(w.c, w.sending);
    if (!ok) {
      w.failed = true;
      break;
    }
    if (w.queued.empty()) break;
    w.sending.swap(w.queued);
    w.queued.clear();
  }
  w.busy = false;
  co_return !w.failed;
}

// Until whatever is queued is out (before a handshake or a close).
awaitable<void> drain(Writer& w) {
  while (w.busy && !w.failed) {
    asio::steady_timer t(w.c.sock.get_executor(), std::chrono::milliseconds(5));
    asio::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

// The IDLE ticker's state, shared with the conversation (one strand: no locks).
struct Idle {
  explicit Idle(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
  bool running = false, stop = false, session_busy = false;
  // Until the ticker is not using the session.
  awaitable<void> wait_quiet(Conn& c) {
    while (session_busy) {
      asio::steady_timer t(c.sock.get_executor(), std::chrono::milliseconds(2));
      asio::error_code ec;
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }
};

class ImapDriver : public Driver {
 public:
  ImapDriver(Shared& shared, bool implicit) : sh_(shared), implicit_(implicit) {}
  const char* name() const override { return "IMAP"; }
  bool implicit_tls() const override { return implicit_; }
  bool mailbox_access() const override { return true; }

  std::string refusal(Refusal why, const std::string&) const override {
    switch (why) {
      case Refusal::not_in_group: return "* BYE Access denied\r\n";
      case Refusal::listener_full: return "* BYE Too many connections to this service, try again later\r\n";
      case Refusal::too_many_from_ip: return "* BYE Too many connections from your address, try later\r\n";
      case Refusal::harvest_blocked: return "* BYE Your address is blocked, try later\r\n";
    }
    return {};
  }

  // Every local lives at function scope (see docs/architecture.md on GCC 12).
  awaitable<void> converse(Conn& conn, Admitted& a) override {
    Conn* c = &conn;
    const Config* cfg = a.cfg.get();
    const std::string& ip = a.ip;
    imap::Config ic;
    ic.hostname = cfg->server.hostname;
    ic.starttls_available = a.tls != nullptr && !implicit_;
    ic.auth = Logins::policy(*cfg, *a.groups, a.ipa);
    ic.max_failed_commands = a.exempt ? 0 : uint32_t(std::min<uint64_t>(cfg->limits.max_failed_commands, UINT32_MAX));
    ic.limits.max_literal = cfg->limits.max_message_size ? cfg->limits.max_message_size : (50ull << 20);
    LoginHooks<imap::Hooks> hooks(sh_.logins, "IMAP", ip, a.ipa);
    imap::Session s(ic, hooks, {ip, a.tls_active});
    Writer w(*c);
    // RFC 9051 5.4: an idle client may be logged out after at least 30 minutes.
    ReadPacer pacer(std::max<std::chrono::seconds>(cfg->timeouts.command, std::chrono::minutes(30)),
                    cfg->timeouts.data, cfg->timeouts.min_data_rate);
    std::string greeting = s.greet().bytes;
    std::string bye, key;
    std::unique_ptr<imap::Mailbox> mailbox;
    std::string_view chunk, raw;  // raw: what the socket gave, compressed after COMPRESS
    std::string backlog, inflated;
    imap::Output o;
    bool on_disk = false, more_input = false;
    Idle idle(c->sock.get_executor());
    // The session's work once a user is in: on the disk pool.
    auto feed = [&s, &chunk]() { return s.feed(chunk); };
    auto resume = [&s]() { return s.resume(); };
    if (!co_await put(w, greeting)) co_return;
    for (;;) {
      pacer.before_read(*c, false, false);
      size_t n = 0;
      ReadEnd re = co_await next_read(*c, n);
      if (re != ReadEnd::data) {
        if (re != ReadEnd::closed) {
          bye = s.shutdown(re == ReadEnd::timeout ? imap::Session::Closing::timeout : imap::Session::Closing::shutdown)
                    .bytes;
          co_await put(w, bye);
        }
        break;
      }
      raw = std::string_view(c->buf.data(), n);
      bool close = false;
      do {
      if (w.z) {  // inflated in pieces of at most 64 KiB, each fed before the next is made
        size_t used = 0;
        auto plain = w.z->inflate(raw, used, 64 * 1024);
        if (!plain) {
          logs::main().info("IMAP from {}: the COMPRESS stream is not deflate", ip);
          close = true;
          break;
        }
        raw.remove_prefix(used);
        inflated = std::move(*plain);
        chunk = inflated;
        more_input = !raw.empty() || w.z->output_pending();
        if (chunk.empty()) continue;
      } else {
        chunk = raw;
        raw = {};
        more_input = false;
      }
      co_await idle.wait_quiet(*c);  // the ticker may be asking the session for news
      idle.session_busy = true;
      if (on_disk) o = co_await async_on(sh_.disk, &feed, use_awaitable);
      else o = s.feed(chunk);
      idle.session_busy = false;
      for (;;) {
        if (o.delay.count() > 0) co_await pause(*c, o.delay);
        if (!co_await put(w, o.bytes)) {
          close = true;
          break;
        }
        if (o.next == imap::Next::read) break;
        if (o.next == imap::Next::close) {
          close = true;
          break;
        }
        c->set_deadline(cfg->timeouts.command);
        if (o.next == imap::Next::more) {
          idle.session_busy = true;
          o = co_await async_on(sh_.disk, &resume, use_awaitable);
          idle.session_busy = false;
          continue;
        }
        if (o.next == imap::Next::compress) {  // the OK went out as it is; from here on, deflate
          co_await drain(w);
          w.z = std::make_unique<Deflate>();
          if (!w.z->ok()) {
            close = true;
            break;
          }
          backlog = s.take_input();  // sent behind COMPRESS: already compressed
          raw = backlog;
          more_input = !raw.empty();
          break;
        }
        if (o.next == imap::Next::starttls) {
          co_await drain(w);
          if (!co_await handshake(*c, *a.tls, std::min<Clock::duration>(cfg->timeouts.command, std::chrono::seconds(10)))) {
            logs::main().info("IMAP STARTTLS handshake with {} failed", ip);
            close = true;
            break;
          }
          o = s.tls_started();
          continue;
        }
        if (o.next == imap::Next::verify) {
          if (co_await wait_for_slot(*c, hooks.slot(), Clock::now() + cfg->timeouts.command) != Logins::Attempt::ok) {
            o = s.login_unavailable();
            continue;
          }
          if (!sh_.dir.available()) {  // cluster mode, PostgreSQL lost: no answer is certain
            hooks.slot().release();
            o = s.login_unavailable(kDirectoryUnavailable);
            continue;
          }
          auto found = co_await sh_.logins.async_verify(s.pending_login().user, s.pending_login().password,
                                                        use_awaitable);
          if (!found && !sh_.dir.available()) {
            hooks.slot().release();
            o = s.login_unavailable(kDirectoryUnavailable);
            continue;
          }
          o = s.login_finished(found.has_value());
          continue;
        }
        // logged in
        key = hooks.succeeded(s.login_mech(), s.login_user(), true);
        if (sh_.mail_store) mailbox = std::make_unique<PgImapMailbox>(*sh_.mail_store, key);
        else mailbox = std::make_unique<StoreMailbox>(maildir_path(cfg->server.data_dir, key), key);
        s.set_mailbox(mailbox.get());
        on_disk = true;
        idle.session_busy = true;
        o = co_await async_on(sh_.disk, &resume, use_awaitable);
        idle.session_busy = false;
      }
      } while (!close && more_input);
      if (close) break;
      if (s.state() == imap::State::idle && !idle.running) {
        idle.running = true;
        asio::co_spawn(c->sock.get_executor(), idle_ticker(c, &s, &w, &idle), asio::detached);
      }
    }
    // The ticker's frame points into this one: it must be gone before this returns.
    idle.stop = true;
    idle.timer.cancel();
    while (idle.running) {
      asio::steady_timer t(c->sock.get_executor(), std::chrono::milliseconds(5));
      asio::error_code ec;
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    co_await drain(w);
  }

 private:
  // While the session idles: every second, news from the folder (a delivery, another
  // session's change) goes to the client. Ends when IDLE does.
  awaitable<void> idle_ticker(Conn* c, imap::Session* s, Writer* w, Idle* idle) {
    auto tick = [s]() { return s->idle_tick(); };
    imap::Output o;
    asio::error_code ec;
    while (!idle->stop && s->state() == imap::State::idle) {
      idle->timer.expires_after(std::chrono::seconds(1));
      co_await idle->timer.async_wait(asio::redirect_error(use_awaitable, ec));
      if (idle->stop || s->state() != imap::State::idle) break;
      if (idle->session_busy) continue;  // the conversation has the session now
      idle->session_busy = true;
      o = co_await async_on(sh_.disk, &tick, use_awaitable);
      idle->session_busy = false;
      if (!o.bytes.empty() && !co_await put(*w, o.bytes)) break;
    }
    idle->running = false;
    (void)c;
  }

  Shared& sh_;
  bool implicit_;
};

}  // namespace

std::unique_ptr<Driver> make_imap_driver(Shared& shared, const std::string& service) {
  return std::make_unique<ImapDriver>(shared, service == "imaps");
}

}  // namespace bulwark
