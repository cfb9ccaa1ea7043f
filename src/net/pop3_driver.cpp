// net/: the POP3 driver -- connects pop3::Session to a connection: reads and writes,
// STLS, password checks (Logins), the mailbox lock and store (store/), and streaming
// a message file as RETR/TOP.
#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>

#include "core/strings.hpp"
#include "logging/logs.hpp"
#include "directory/directory.hpp"
#include "net/driver.hpp"
#include "net/login.hpp"
#include "pop3/session.hpp"
#include "store/mailstore.hpp"
#include "store/pg_store.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;

namespace {


// The session's view of a folder: octets with CRLF, and a UIDL that stays the same
// across sessions and restarts (UIDVALIDITY and UID, as Dovecot's default does).
std::vector<pop3::Entry> entries_of(const store::Folder& f) {
  std::vector<pop3::Entry> v;
  v.reserve(f.messages().size());
  char uidl[24];
  for (auto& m : f.messages()) {
    std::snprintf(uidl, sizeof uidl, "%08" PRIx32 "%08" PRIx32, f.uidvalidity(), m.uid);
    v.push_back({m.vsize, uidl});
  }
  return v;
}

class Pop3Driver : public Driver {
 public:
  Pop3Driver(Shared& shared, bool implicit) : sh_(shared), implicit_(implicit) {}
  const char* name() const override { return "POP3"; }
  bool implicit_tls() const override { return implicit_; }
  bool mailbox_access() const override { return true; }

  std::string refusal(Refusal why, const std::string&) const override {
    switch (why) {
      case Refusal::not_in_group: return "-ERR [AUTH] Access denied\r\n";
      case Refusal::listener_full: return "-ERR [SYS/TEMP] Too many connections to this service, try again later\r\n";
      case Refusal::too_many_from_ip: return "-ERR [SYS/TEMP] Too many connections from your address, try later\r\n";
      case Refusal::harvest_blocked: return "-ERR [SYS/TEMP] Your address is blocked, try later\r\n";
    }
    return {};
  }

  // Every local lives at function scope (see docs/architecture.md on GCC 12).
  awaitable<void> converse(Conn& conn, Admitted& a) override {
    Conn* c = &conn;
    const Config* cfg = a.cfg.get();
    const std::string& ip = a.ip;
    pop3::Config pc;
    pc.hostname = cfg->server.hostname;
    pc.stls_available = a.tls != nullptr && !implicit_;
    pc.auth = Logins::policy(*cfg, *a.groups, a.ipa);
    pc.max_failed_commands = a.exempt ? 0 : uint32_t(std::min<uint64_t>(cfg->limits.max_failed_commands, UINT32_MAX));
    LoginHooks<pop3::Hooks> hooks(sh_.logins, "POP3", ip, a.ipa);
    pop3::Session s(pc, hooks, {ip, a.tls_active});
    // RFC 1939 3: the autologout timer is at least 10 minutes.
    ReadPacer pacer(std::max<std::chrono::seconds>(cfg->timeouts.command, std::chrono::minutes(10)),
                    cfg->timeouts.data, cfg->timeouts.min_data_rate);
    std::string greeting = s.greet().bytes;  // named: see write()
    std::string bye, encoded;
    std::string key, maildir, error;
    store::MailboxLocks::Lease lease;
    std::unique_ptr<store::Folder> folder;
    std::vector<uint32_t> uids;
    size_t removed = 0;
    auto open_folder = [&maildir, &key, &error]() {
      return store::note_mailbox_owner(maildir, key, error) ? store::Folder::open(maildir, error) : nullptr;
    };
    auto remove_uids = [&folder, &uids, &error]() { return folder->remove(uids, error); };
    // Cluster mode: INBOX in PostgreSQL, held across nodes by an advisory lock.
    store::PgStore* pg = sh_.mail_store;
    std::unique_ptr<store::PgStore::Hold> hold;
    std::optional<store::PgStore::Changes> inbox;  // as this session sees it
    std::optional<std::string> pg_content;
    uint32_t pg_uid = 0;
    size_t pg_sent = 0;
    bool pg_in_use = false;
    auto open_pg = [&pg, &key, &error, &hold, &inbox, &pg_in_use]() {
      std::string ignored;
      pg->ensure_defaults(key, ignored);
      hold = pg->try_hold(key, error);
      pg_in_use = !hold && error.empty();
      if (!hold) return false;
      auto f = pg->folder(key, "INBOX", error);
      if (f) inbox = pg->changes(f->id, 0, error);
      if (!inbox) hold.reset();
      return bool(inbox);
    };
    auto fetch_pg = [&pg, &inbox, &pg_uid, &error]() {
      error.clear();
      return pg->content(inbox->folder.id, pg_uid, error);
    };
    auto remove_pg = [&pg, &inbox, &uids, &error]() -> size_t {
      return pg->expunge(inbox->folder.id, uids, false, error) ? uids.size() : 0;
    };
    // The hold ends with its PostgreSQL connection: closed on the disk pool, not here.
    auto release_hold = [&hold]() {
      hold.reset();
      return true;
    };
    bool released = false;
    if (!co_await write(*c, greeting)) co_return;
    for (;;) {
      pacer.before_read(*c, false, s.buffered() > 0);
      size_t n = 0;
      ReadEnd end = co_await next_read(*c, n);
      if (end != ReadEnd::data) {
        if (end != ReadEnd::closed) {
          bye = s.shutdown(end == ReadEnd::timeout ? pop3::Session::Closing::timeout
                                                   : pop3::Session::Closing::shutdown)
                    .bytes;
          co_await write(*c, bye);
        }
        break;
      }
      pop3::Output o = s.feed(std::string_view(c->buf.data(), n));
      bool close = false;
      for (;;) {
        if (o.delay.count() > 0) co_await pause(*c, o.delay);
        // The mailbox is free before the client reads the last reply: a client that
        // reconnects at once after QUIT must not find it in use.
        if (o.next == pop3::Next::close) {
          lease.release();
          if (hold) released = co_await async_on(sh_.disk, &release_hold, use_awaitable);
        }
        if (!co_await write(*c, o.bytes)) {
          close = true;
          break;
        }
        if (o.next == pop3::Next::read) break;
        if (o.next == pop3::Next::close) {
          close = true;
          break;
        }
        c->set_deadline(cfg->timeouts.command);
        if (o.next == pop3::Next::starttls) {
          if (!co_await handshake(*c, *a.tls, std::min<Clock::duration>(cfg->timeouts.command, std::chrono::seconds(10)))) {
            logs::main().info("POP3 STLS handshake with {} failed", ip);
            close = true;
            break;
          }
          o = s.tls_started();
          continue;
        }
        if (o.next == pop3::Next::verify) {
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
        if (o.next == pop3::Next::open_mailbox) {
          key = hooks.succeeded(s.login_mech(), s.login_user(), true);
          if (pg) {
            bool opened = co_await async_on(sh_.disk, &open_pg, use_awaitable);
            if (!opened && pg_in_use) {
              logs::main().info("POP3 from {}: mailbox of {} is in use by another session", ip, sanitize(key));
              o = s.mailbox_opened(pop3::Session::Opened::in_use);
            } else if (!opened) {
              logs::main().error("POP3: cannot open the mailbox of {}: {}", sanitize(key), error);
              o = s.mailbox_opened(pop3::Session::Opened::failed);
            } else {
              std::vector<pop3::Entry> v;
              char uidl[24];
              for (auto& m : inbox->changed) {
                std::snprintf(uidl, sizeof uidl, "%08" PRIx32 "%08" PRIx32, inbox->folder.uidvalidity, m.uid);
                v.push_back({m.size, uidl});
              }
              o = s.mailbox_opened(pop3::Session::Opened::ok, std::move(v));
            }
            continue;
          }
          lease = sh_.mailbox_locks.try_lock(key);
          if (!lease) {
            logs::main().info("POP3 from {}: mailbox of {} is in use by another session", ip, sanitize(key));
            o = s.mailbox_opened(pop3::Session::Opened::in_use);
            continue;
          }
          maildir = maildir_path(cfg->server.data_dir, key);
          folder = co_await async_on(sh_.disk, &open_folder, use_awaitable);
          if (!folder) {
            logs::main().error("POP3: cannot open the mailbox of {}: {}", sanitize(key), error);
            o = s.mailbox_opened(pop3::Session::Opened::failed);
            continue;
          }
          o = s.mailbox_opened(pop3::Session::Opened::ok, entries_of(*folder));
          continue;
        }
        if (o.next == pop3::Next::send_message) {
          const auto& send = s.sending();
          std::string why;
          std::optional<crypt::PlainFile> file;
          uint32_t uid = pg ? inbox->changed[send.index].uid : folder->messages()[send.index].uid;
          if (pg) {  // cluster mode: fetched on the disk pool, then sent in pieces
            pg_uid = uid;
            pg_content = co_await async_on(sh_.disk, &fetch_pg, use_awaitable);
            pg_sent = 0;
            why = error.empty() ? "expunged meanwhile" : error;
          } else {
            file = folder->read_message(folder->messages()[send.index], &why);
          }
          if (pg ? !pg_content : !file) {
            logs::main().warn("POP3: message {} of {} cannot be read: {}", uid, sanitize(key), why);
            o = s.message_sent(false);
            continue;
          }
          // The file is read on this thread: a Maildir file is small and usually in the
          // page cache, and a blocking read here costs less than a hop to the pool.
          pop3::MessageEncoder enc(send.body_lines);
          encoded = send.ok_line;
          bool ok = true, more = true, sent_any = false;
          while (ok && more) {
            std::optional<std::string> piece;
            if (pg) {
              piece = pg_content->substr(pg_sent, 64 * 1024);
              pg_sent += piece->size();
            } else {
              piece = file->next(64 * 1024, &why);
            }
            if (!piece) {  // a sealed chunk failed its check (altered), or a read error
              logs::main().error("POP3: message {} of {} cannot be read: {}", uid, sanitize(key), why);
              ok = false;
            }
            if (!piece || piece->empty()) break;
            more = enc.put(*piece, encoded);
            if (encoded.size() >= 64 * 1024) {
              c->set_deadline(cfg->timeouts.command);
              ok = co_await write(*c, encoded);
              sent_any = true;
              encoded.clear();
            }
          }
          if (!ok && !sent_any) {  // nothing out yet: an -ERR, and the session goes on
            encoded.clear();
            o = s.message_sent(false);
            continue;
          }
          if (!ok) {  // the +OK may be out already: the client must not take a short message as whole
            logs::main().warn("POP3: sending message {} of {} to {} failed", uid,
                              sanitize(key), ip);
            close = true;
            break;
          }
          enc.finish(encoded);
          if (!co_await write(*c, encoded)) {
            close = true;
            break;
          }
          encoded.clear();
          o = s.message_sent(true);
          continue;
        }
        // update: the deletions of this session, then the end
        uids.clear();
        error.clear();
        for (size_t i : s.to_delete()) uids.push_back(pg ? inbox->changed[i].uid : folder->messages()[i].uid);
        if (pg) removed = co_await async_on(sh_.disk, &remove_pg, use_awaitable);
        else removed = co_await async_on(sh_.disk, &remove_uids, use_awaitable);
        if (removed < uids.size() || !error.empty())
          logs::main().error("POP3: removing {} messages of {} failed: {}", uids.size(), sanitize(key), error);
        else
          logs::main().info("POP3 from {}: {} deleted {} messages", ip, sanitize(key), removed);
        o = s.update_finished(removed == uids.size() && error.empty());
      }
      if (close) break;
    }
    if (hold) released = co_await async_on(sh_.disk, &release_hold, use_awaitable);  // the client went without QUIT
    (void)released;
  }

 private:
  Shared& sh_;
  bool implicit_;
};

}  // namespace

std::unique_ptr<Driver> make_pop3_driver(Shared& shared, const std::string& service) {
  return std::make_unique<Pop3Driver>(shared, service == "pop3s");
}

}  // namespace bulwark
