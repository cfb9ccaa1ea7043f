// net/: the SMTP driver -- connects smtp::ServerSession to a connection: reads and
// writes, STARTTLS, the DNS checks at MAIL, password checks, the commit to the spool.
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <set>

#include "core/strings.hpp"
#include "core/metrics.hpp"
#include "logging/logs.hpp"
#include "net/driver.hpp"
#include "net/login.hpp"
#include "net/mail_auth.hpp"
#include "net/smtp_hooks.hpp"
#include "policy/dns_checks.hpp"
#include "queue/spool.hpp"
#include "smtp/session.hpp"
#include "store/pg_queue.hpp"
#include "store/pg_store.hpp"

namespace bulwark {

using asio::awaitable;
using asio::use_awaitable;

namespace {

// Metrics: every final reply line 4xx/5xx in what is about to be written, by code and
// enhanced status code (the server's own words: a bounded set of labels).
void count_refusals(std::string_view bytes) {
  while (!bytes.empty()) {
    size_t eol = bytes.find("\r\n");
    std::string_view line = bytes.substr(0, eol);
    bytes = eol == std::string_view::npos ? std::string_view() : bytes.substr(eol + 2);
    if (line.size() < 4 || (line[0] != '4' && line[0] != '5') || line[3] != ' ') continue;
    std::string_view status = line.substr(4, line.find(' ', 4) == std::string_view::npos ? 0 : line.find(' ', 4) - 4);
    bool enhanced = status.size() >= 5 && status.size() <= 11 && status[1] == '.' &&
                    status.find_first_not_of("0123456789.") == std::string_view::npos;
    metrics::add("bulwark_smtp_refusals_total", "code=\"" + std::string(line.substr(0, 3)) + "\",status=\"" +
                                                    std::string(enhanced ? status : std::string_view()) + "\"");
    metrics::hour_refused();
  }
}

// Resumes the awaiting coroutine on its own executor when the spool has synced.
template <class Token>
auto async_commit(Spool& spool, std::shared_ptr<smtp::Transaction> tx, Token&& token) {
  return asio::async_initiate<Token, void(bool)>(
      [&spool, tx](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        spool.submit(tx, [h, ex](bool ok) { asio::post(ex, [h, ok]() mutable { (*h)(ok); }); });
      },
      token);
}

// Cluster mode: mail with local recipients is committed in PostgreSQL at the end of data
// -- a copy in every local recipient's mailbox, and (with remote recipients too, `queue`
// given) the message's row in the cluster's queue with those copies recorded, all in one
// transaction -- and acknowledged once committed (SPEC 16). A message with remote
// recipients then gets its spool file (the working copy its remote delivery reads)
// after the 250, on the disk pool; a crash before that file is written is covered by
// the heartbeat, which writes it back from the row. `unreachable`: PostgreSQL is lost,
// the client is told to try later; `spool`: any other failure, the message takes the
// spool's way (its local delivery retries and bounces as for any message).
enum class Stored { stored, unreachable, spool };

// A body larger than the memory threshold is in its spill file (core/body.hpp): read
// whole, as the spool's way would for the blob store (PgQueue::commit).
bool read_spilled(const MessageBody& b, std::string& out) {
  size_t at = out.size();
  out.resize(at + b.size());
  uint64_t done = 0;
  while (done < b.size()) {
    ssize_t n = ::pread(b.fd(), out.data() + at + done, b.size() - done, off_t(MessageBody::kHeaderRoom + done));
    if (n <= 0) return false;
    done += uint64_t(n);
  }
  return true;
}
template <class Token>
auto async_store_local(asio::thread_pool& pool, store::PgStore& st, store::PgQueue* queue, Spool& spool,
                       std::shared_ptr<smtp::Transaction> tx, Token&& token) {
  return asio::async_initiate<Token, void(Stored)>(
      [&pool, &st, queue, &spool, tx](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        asio::post(pool, [&pool, &st, queue, &spool, tx, h, ex]() {
          const auto& e = tx->envelope;
          std::vector<std::string> owners;
          bool remote = false;
          for (auto& r : e.recipients) {
            if (r.local) owners.push_back(r.target);
            else remote = true;
          }
          std::set<std::string> once(owners.begin(), owners.end());
          std::string body = tx->received;
          if (!tx->body.spilled()) {
            body += tx->body.memory();
          } else if (!read_spilled(tx->body, body)) {  // the spool's way still has the file
            asio::post(ex, [h]() mutable { (*h)(Stored::spool); });
            return;
          }
          std::string error;
          bool unreachable = false;
          Stored r = Stored::stored;
          // With remote recipients: the queue's row, in the same transaction.
          std::string header, content, state;
          store::PgStore::Also also;
          if (remote && queue) {
            for (auto& t : once) state += delivered_state_line(t);
            queue->writing(e.id);
            also = [&](pg::Conn& c, const std::string& blob, const std::string& crlf) {
              bool eight = std::any_of(crlf.begin(), crlf.end(), [](char ch) { return (unsigned char)ch >= 0x80; });
              header = serialize_envelope_header(e, int64_t(std::time(nullptr)), crlf.size(), eight);
              content = crlf;
              queue->insert_in(c, e.id, header, blob, int64_t(std::time(nullptr)), crlf.size(), state);
            };
          }
          // With a queue row, the copies carry its id as their origin: a node that takes the
          // message over and delivers it again finds them (delivery/local.cpp).
          if (st.deliver_all(owners, e.junk, e.sender, body, error, unreachable, also, also ? e.id : std::string())) {
            for (auto& t : once) {
              metrics::add("bulwark_deliveries_total", "route=\"local\",result=\"delivered\"");
              logs::mail().info("delivered id={} to=<{}> relay=local mailbox={} (PostgreSQL, at the end of data) size={}",
                                e.id, sanitize(t), e.junk ? "Junk" : "INBOX", body.size());
            }
            if (also) {
              // After the 250: the spool file, then remote delivery is told (only the
              // remote recipients: the local ones are done).
              auto rtx = std::make_shared<smtp::Transaction>();
              rtx->envelope = e;
              std::erase_if(rtx->envelope.recipients, [](const smtp::Recipient& x) { return x.local; });
              asio::post(pool, [&spool, queue, rtx, header = std::move(header), content = std::move(content),
                                state = std::move(state)]() {
                const std::string& id = rtx->envelope.id;
                if (!spool.adopt(id, header, content, state)) {
                  logs::main().error("queue: message {} is committed but its spool file cannot be written; the "
                                     "heartbeat writes it back from PostgreSQL",
                                     id);
                  queue->written(id, false);
                  return;
                }
                queue->written(id, true);
                spool.announce(rtx);
              });
            }
          } else {
            if (also) queue->written(e.id, false);
            r = unreachable ? Stored::unreachable : Stored::spool;
            static logs::CauseThrottle throttle;
            if (auto held = throttle.allow(error))
              logs::main().error("mail store: {}: {}{}", error,
                                 unreachable ? "mail is refused with 451 until it is back" : "the message is queued",
                                 *held ? fmt::format(" ({} more since)", *held) : std::string());
          }
          asio::post(ex, [h, r]() mutable { (*h)(r); });
        });
      },
      token);
}

// The DNS checks of SPEC 7 for one MAIL FROM: client PTR, then sender domain.
// Completes on the session's executor with a refusal, or none.
template <class Token>
auto async_dns_check(DnsChecks& dns, std::string ip, Address sender, bool ptr, bool domain, Token&& token) {
  return asio::async_initiate<Token, void(std::optional<smtp::Reply>)>(
      [&dns, ip, sender, ptr, domain](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        auto finish = [h, ex](std::optional<smtp::Reply> r) {
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        };
        auto check_domain = [&dns, ip, sender, domain, finish]() {
          if (!domain || sender.empty()) return finish(std::nullopt);
          if (sender.domain_is_literal()) {
            logs::security().info("SMTP sender <{}> from {} refused: address literal, not a domain",
                                  sanitize(sender.str()), ip);
            return finish(smtp::Reply(550, "5.1.8", "Sender address must use a domain name"));
          }
          dns.sender_domain(sender.domain, [ip, sender, finish](DnsChecks::Verdict v) {
            if (v == DnsChecks::Verdict::ok) return finish(std::nullopt);
            if (v == DnsChecks::Verdict::missing) {
              logs::security().info("SMTP sender <{}> from {} refused: domain {} has no MX, A or AAAA record",
                                    sanitize(sender.str()), ip, sanitize(sender.domain));
              return finish(smtp::Reply(550, "5.1.8", "Sender address domain " + sanitize(sender.domain) +
                                                          " does not exist in DNS"));
            }
            logs::security().info("SMTP sender <{}> from {} deferred: DNS lookup of {} failed",
                                  sanitize(sender.str()), ip, sanitize(sender.domain));
            finish(smtp::Reply(451, "4.4.3", "Temporary DNS failure checking the sender domain, try again later"));
          });
        };
        if (!ptr) return check_domain();
        dns.client_ptr(ip, [ip, finish, check_domain](DnsChecks::Verdict v) {
          if (v == DnsChecks::Verdict::ok) return check_domain();
          if (v == DnsChecks::Verdict::missing) {
            logs::security().info("SMTP client {} refused: no PTR record", ip);
            return finish(smtp::Reply(550, "5.7.25", "Client host [" + ip + "] has no PTR record"));
          }
          logs::security().info("SMTP client {} deferred: PTR lookup failed", ip);
          finish(smtp::Reply(450, "4.7.25", "Temporary DNS failure looking up the PTR of [" + ip + "]"));
        });
      },
      token);
}

// The checks of a whole received message (net/mail_auth.hpp), resumed on the
// session's executor.
template <class Token>
auto async_check(asio::thread_pool& disk, DnsChecks& dns, const std::shared_ptr<smtp::Transaction>& tx,
                 const MessageChecks& what, Token&& token) {
  return asio::async_initiate<Token, void(CheckResults)>(
      [&disk, &dns, tx, what](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        check_message(disk, dns, tx, what, [h, ex](CheckResults r) {
          asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        });
      },
      token);
}

// DNSBL lookups of the client (SPEC 11): the listing zone, or "".
template <class Token>
auto async_dnsbl(DnsChecks& dns, const std::string& ip, const std::vector<std::string>& zones, Token&& token) {
  return asio::async_initiate<Token, void(std::string)>(
      [&dns, ip, zones](auto handler) {
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto ex = asio::get_associated_executor(*h);
        dns.dnsbl(ip, zones, [h, ex, ip](std::string zone, std::vector<std::string> failed) {
          for (auto& f : failed) logs::main().warn("DNSBL {} did not answer for {}: taken as not listed", f, ip);
          asio::post(ex, [h, zone = std::move(zone)]() mutable { (*h)(std::move(zone)); });
        });
      },
      token);
}

// "dkim=pass+fail spf=pass dmarc=none" for the mail.log line ("" when nothing ran).
std::string verdicts_for_log(const CheckResults& r) {
  std::string out;
  if (r.dkim) {
    out += " dkim=";
    if (r.dkim->empty()) out += "none";
    for (size_t i = 0; i < r.dkim->size(); ++i) out += (i ? "+" : "") + std::string(dkim::result_name((*r.dkim)[i].result));
  }
  if (r.spf) out += std::string(" spf=") + spf::result_name(r.spf->result);
  if (r.dmarc) out += std::string(" dmarc=") + dmarc::result_name(r.dmarc->result);
  return out;
}

void log_accepted(const smtp::Transaction& tx, const ListenerConfig& lc, const std::string& verdicts) {
  const auto& e = tx.envelope;
  std::string rcpts;
  std::string last;
  for (auto& r : e.recipients) {
    if (r.rcpt == last) continue;
    last = r.rcpt;
    if (!rcpts.empty()) rcpts += ",";
    rcpts += "<" + sanitize(r.rcpt) + ">";
  }
  logs::mail().info("accepted id={} client={} service={} from=<{}> to={} size={} tls={} auth={}{}{}", e.id,
                    e.client_ip, lc.service, sanitize(e.sender), rcpts, tx.received.size() + tx.body.size(),
                    e.tls.empty() ? "none" : e.tls, e.auth_user.empty() ? "none" : sanitize(e.auth_user), verdicts,
                    e.junk ? " junk=dmarc-quarantine" : "");
}

class SmtpDriver : public Driver {
 public:
  SmtpDriver(Shared& shared, smtp::Service service) : sh_(shared), service_(service) {}
  const char* name() const override { return "SMTP"; }
  bool implicit_tls() const override { return service_ == smtp::Service::smtps; }

  std::string refusal(Refusal why, const std::string& host) const override {
    switch (why) {
      case Refusal::not_in_group: return smtp::Reply(554, "5.7.1", host + " Access denied").render();
      case Refusal::listener_full:
        return smtp::Reply(421, "4.7.0", host + " Too many connections to this service, try again later").render();
      case Refusal::too_many_from_ip:
        return smtp::Reply(421, "4.7.0", host + " Too many connections from your address, try later").render();
      case Refusal::harvest_blocked:
        return smtp::Reply(421, "4.7.1", host + " Too many unknown recipients from your address, try later").render();
    }
    return {};
  }

  // Every local lives at function scope (see docs/architecture.md on GCC 12).
  awaitable<void> converse(Conn& conn, Admitted& a) override {
    Conn* c = &conn;
    const Config* cfg = a.cfg.get();
    const std::string& ip = a.ip;
    const IpAddress& ipa = a.ipa;
    smtp::SessionConfig sc;
    sc.hostname = cfg->server.hostname;
    sc.service = service_;
    sc.starttls_available = a.tls != nullptr && !implicit_tls();
    if (!a.exempt) {  // the exempt group has none of the limits (SPEC 7)
      sc.limits.max_message_size = cfg->limits.max_message_size;
      sc.limits.max_recipients = cfg->limits.max_recipients;
      sc.limits.max_hops = cfg->limits.max_hops;
      sc.limits.max_failed_commands = cfg->limits.max_failed_commands;
    } else {
      sc.limits.max_message_size = sc.limits.max_recipients = sc.limits.max_hops = sc.limits.max_failed_commands = 0;
    }
    static_cast<auth::LoginPolicy&>(sc.auth) = Logins::policy(*cfg, *a.groups, ipa);
    sc.auth.received_auth_user = cfg->policy.received_auth_user;
    smtp::ClientInfo client{ip, a.tls_active, a.tls_version, a.tls_cipher};
    RelaySettings rs{cfg->relay.open, cfg->relay.allow_ip_group, cfg->relay.allow_authenticated,
                     cfg->relay.pop_before_smtp};
    SessionPolicy policy{a.groups, rs, sh_.limits, sh_.pop, cfg->limits.max_messages_per_hour, a.exempt,
                         a.groups->contains(cfg->relay.trusted_ip_group, ipa), cfg->limits.require_client_ptr,
                         cfg->limits.require_sender_domain_in_dns, cfg->policy.anti_spoofing, cfg->server.postmaster,
                         cfg->dnsbl.zones, cfg->greylisting.enabled ? sh_.greylist : nullptr};
    SmtpHooks hooks(sh_.dir, sh_.spool, sh_.logins, ip, ipa, cfg->server.hostname, policy);
    smtp::ServerSession s(sc, hooks, client);
    ReadPacer pacer(cfg->timeouts.command, cfg->timeouts.data, cfg->timeouts.min_data_rate);
    std::string greeting = s.greet().bytes;  // named: see write()
    std::string bye;
    std::shared_ptr<smtp::Transaction> tx;
    MessageChecks what;      // the checks of the message being committed
    Clock::time_point accept_started;
    std::string service_label = "service=\"" + a.listener.service + "\"";
    CheckResults results;
    std::string verdicts;    // their summary for mail.log
    if (!co_await write(*c, greeting)) co_return;
    for (;;) {
      bool in_data = s.state() == smtp::State::data || s.state() == smtp::State::bdat;
      pacer.before_read(*c, in_data, s.buffered() > 0);
      c->in_transaction = s.in_transaction() || in_data;
      size_t n = 0;
      ReadEnd end = co_await next_read(*c, n);
      if (end != ReadEnd::data) {
        if (end != ReadEnd::closed) {
          bye = s.shutdown(end == ReadEnd::timeout ? smtp::ServerSession::Closing::timeout
                                                   : smtp::ServerSession::Closing::shutdown)
                    .bytes;
          co_await write(*c, bye);
        }
        break;
      }
      pacer.after_read(n);
      smtp::Output o = s.feed(std::string_view(c->buf.data(), n));
      bool close = false;
      for (;;) {
        if (o.delay.count() > 0) co_await pause(*c, o.delay);  // a failed AUTH: slow the guesser down
        count_refusals(o.bytes);
        if (!co_await write(*c, o.bytes)) {
          close = true;
          break;
        }
        if (o.next == smtp::Next::read) break;
        if (o.next == smtp::Next::close) {
          close = true;
          break;
        }
        if (o.next == smtp::Next::check) {
          c->set_deadline(cfg->timeouts.command);
          auto refusal = co_await async_dns_check(sh_.dns, ip, s.checking_sender(), cfg->limits.require_client_ptr,
                                                  cfg->limits.require_sender_domain_in_dns, use_awaitable);
          if (!refusal && hooks.dnsbl_due()) {
            std::string zone = co_await async_dnsbl(sh_.dns, ip, cfg->dnsbl.zones, use_awaitable);
            hooks.dnsbl_result(zone);
          }
          o = s.check_finished(std::move(refusal));
          continue;
        }
        if (o.next == smtp::Next::verify) {
          c->set_deadline(cfg->timeouts.command);
          if (co_await wait_for_slot(*c, hooks.slot(), Clock::now() + cfg->timeouts.command) != Logins::Attempt::ok) {
            o = s.login_unavailable();
            continue;
          }
          if (!sh_.dir.available()) {  // cluster mode, PostgreSQL lost: no answer is certain
            hooks.slot().release();
            o = s.login_unavailable(kDirectoryUnavailable);
            continue;
          }
          auto key = co_await sh_.logins.async_verify(s.pending_login().user, s.pending_login().password,
                                                       use_awaitable);
          if (!key && !sh_.dir.available()) {
            hooks.slot().release();
            o = s.login_unavailable(kDirectoryUnavailable);
            continue;
          }
          o = s.login_finished(key.has_value());
          continue;
        }
        if (o.next == smtp::Next::starttls) {
          if (!co_await handshake(*c, *a.tls, std::min<Clock::duration>(cfg->timeouts.command, std::chrono::seconds(10)))) {
            logs::main().info("STARTTLS handshake with {} failed", ip);
            close = true;
            break;
          }
          auto names = tls_names(*c);
          o = s.tls_started(names.first, names.second);
          continue;
        }
        // commit
        accept_started = Clock::now();
        tx = std::make_shared<smtp::Transaction>(std::move(s.pending()));
        tx->envelope.ours = hooks.ours();
        // Mail of ours is signed when it leaves, not checked when it comes in; the
        // trusted group (a backup MX) skips the sender checks (SPEC 11).
        // DMARC needs both DKIM and SPF results, whatever their own modes say.
        what = MessageChecks{};
        verdicts.clear();
        bool sender_checks = !tx->envelope.ours && !policy.trusted;
        what.dmarc = cfg->dmarc.mode != "off" && sender_checks;
        what.dkim = (cfg->dkim.verify || what.dmarc) && !tx->envelope.ours;
        what.spf = (cfg->spf.mode != "off" || what.dmarc) && sender_checks;
        if (what.dkim || what.spf) {
          what.ip = ip;
          what.sender = tx->envelope.sender;
          what.helo = tx->envelope.helo;
          c->set_deadline(cfg->timeouts.command);
          results = co_await async_check(sh_.disk, sh_.dns, tx, what, use_awaitable);
          verdicts = verdicts_for_log(results);
          if (results.spf && results.spf->result == spf::Result::fail && cfg->spf.mode == "reject") {
            std::string text = "SPF validation failed: [" + ip + "] may not send for " +
                               sanitize(spf::checked_domain(what.sender, what.helo));
            tx.reset();
            o = s.commit_refused(smtp::Reply(550, "5.7.23", text));
            continue;
          }
          if (results.dmarc && results.dmarc->result == dmarc::Result::fail && cfg->dmarc.mode == "enforce") {
            if (results.dmarc->disposition == dmarc::Policy::reject) {
              std::string text = "DMARC policy of " + sanitize(results.from_domain) + " rejects this message";
              tx.reset();
              o = s.commit_refused(smtp::Reply(550, "5.7.1", text));
              continue;
            }
            if (results.dmarc->disposition == dmarc::Policy::quarantine) tx->envelope.junk = true;
          }
          tx->received = authentication_results(cfg->server.hostname, what, results) + tx->received;
        }
        c->set_deadline(cfg->timeouts.data);
        // Local recipients only, or (with the cluster's queue) local and remote ones.
        const auto& rc = tx->envelope.recipients;
        bool any_local = std::any_of(rc.begin(), rc.end(), [](const smtp::Recipient& r) { return r.local; });
        bool any_remote = std::any_of(rc.begin(), rc.end(), [](const smtp::Recipient& r) { return !r.local; });
        bool ok = false, direct = sh_.mail_store && !tx->body.failed() && any_local &&
                                  (!any_remote || sh_.cluster_queue);
        Stored stored = Stored::spool;
        if (direct)
          stored = co_await async_store_local(sh_.disk, *sh_.mail_store, sh_.cluster_queue, sh_.spool, tx, use_awaitable);
        if (stored == Stored::spool) ok = co_await async_commit(sh_.spool, tx, use_awaitable);
        else ok = stored == Stored::stored;
        metrics::observe("bulwark_smtp_accept_seconds", "",
                         std::chrono::duration<double>(Clock::now() - accept_started).count());
        if (ok) {
          metrics::add("bulwark_messages_accepted_total", service_label);
          metrics::hour_accepted();
          log_accepted(*tx, a.listener, verdicts);
          if (!a.exempt) sh_.limits.message_accepted(ipa);
        }  // else: 451, and the spool logged why (once per 10 s for a repeated cause)
        tx.reset();
        o = s.commit_finished(ok);
      }
      if (close) break;
    }
  }

 private:
  Shared& sh_;
  smtp::Service service_;
};

}  // namespace

std::unique_ptr<Driver> make_smtp_driver(Shared& shared, const std::string& service) {
  smtp::Service s = service == "submission" ? smtp::Service::submission
                    : service == "smtps"    ? smtp::Service::smtps
                                            : smtp::Service::smtp;
  return std::make_unique<SmtpDriver>(shared, s);
}

}  // namespace bulwark
