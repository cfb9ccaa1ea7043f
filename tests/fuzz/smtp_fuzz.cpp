// libFuzzer target: the SMTP command parser, DATA/BDAT reader, address parser, AUTH,
// and the outbound side: the SMTP client and the POP3 login reading hostile replies.
// The first byte picks how the rest is split into reads, so pipelining and every
// buffer boundary are explored; invariants are checked after every step.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/address.hpp"
#include "delivery/pop3_login.hpp"
#include "smtp/client.hpp"
#include "smtp/session.hpp"

using namespace bulwark;
using namespace bulwark::smtp;

namespace {
struct Hooks : SessionHooks, auth::SecretSource {
  auth::SecretSource* secrets() override { return this; }
  std::optional<auth::ScramSecret> scram_secret(const std::string& u) override {
    static const auth::ScramSecret s = auth::derive_scram("pencil", "salt", 1);
    if (u == "u@example.test") return s;
    return std::nullopt;
  }
  std::optional<auth::CramSecret> cram_md5_secret(const std::string& u) override {
    if (u == "u@example.test") return auth::derive_cram_md5("pencil");
    return std::nullopt;
  }
  bool auth_blocked() override { return blocked; }
  bool auth_failed(auth::Mech, const std::string&, std::string_view) override { return blocked = true; }
  bool blocked = false;
  RecipientLookup lookup_recipient(const Address& a) override {
    RecipientLookup r;
    r.kind = a.domain == "example.test" ? RecipientLookup::local : RecipientLookup::not_local;
    if (a.local == "x") r.kind = RecipientLookup::unknown;
    if (r.kind == RecipientLookup::local) r.mailboxes = {a.lookup_key()};
    return r;
  }
  bool may_relay(const Address&) override { return false; }
  bool sender_needs_check(const Address& a) override { return a.domain.size() % 2 == 1; }
  std::string new_queue_id() override { return "ID"; }
  std::chrono::system_clock::time_point now() override { return {}; }
};

void check(const Output& o) {
  // Every reply is a sequence of complete CRLF-terminated lines starting with 3 digits.
  size_t pos = 0;
  while (pos < o.bytes.size()) {
    size_t e = o.bytes.find("\r\n", pos);
    if (e == std::string::npos || e - pos < 3) abort();
    for (int i = 0; i < 3; ++i)
      if (o.bytes[pos + i] < '0' || o.bytes[pos + i] > '9') abort();
    for (size_t i = pos; i < e; ++i)
      if (o.bytes[i] == '\r' || o.bytes[i] == '\n') abort();
    pos = e + 2;
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint8_t split = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  (void)parse_path(in, true, true);
  (void)parse_mailbox(in);

  Hooks hooks;
  SessionConfig cfg;
  cfg.hostname = "mx.example.test";
  cfg.starttls_available = true;
  cfg.limits.max_message_size = 4096;
  cfg.limits.max_recipients = 5;
  cfg.limits.max_failed_commands = 50;
  cfg.auth.mode = AuthMode(split % 3);
  cfg.auth.mechanisms = {auth::Mech::scram_sha_256, auth::Mech::plain, auth::Mech::login, auth::Mech::cram_md5};
  ServerSession s(cfg, hooks, ClientInfo{"192.0.2.1", false, "", ""});
  check(s.greet());
  size_t chunk = split == 0 ? in.size() + 1 : split;
  for (size_t pos = 0; pos < in.size(); pos += chunk) {
    Output o = s.feed(in.substr(pos, chunk));
    for (;;) {
      check(o);
      if (o.next == Next::commit) {
        Transaction& t = s.pending();
        if (t.body.size() > cfg.limits.max_message_size) abort();
        if (t.envelope.recipients.empty()) abort();
        o = s.commit_finished((t.body.size() & 1) == 0);
        continue;
      }
      if (o.next == Next::check) {
        std::optional<Reply> refusal;
        if (s.checking_sender().local.size() % 2) refusal = Reply(550, "5.1.8", "no");
        o = s.check_finished(refusal);
        continue;
      }
      if (o.next == Next::verify) {
        if (s.state() != State::wait_verify || s.pending_login().password.empty()) abort();
        o = s.login_finished(s.pending_login().password == "pencil");
        continue;
      }
      if (o.next == Next::starttls) {
        if (s.buffered() != 0) abort();  // plaintext behind STARTTLS must be gone
        o = s.tls_started("TLSv1.3", "X");
        continue;
      }
      break;
    }
    if (o.next == Next::close) break;
    if (s.buffered() > 70000) abort();  // buffering is bounded
  }

  // The same bytes as a hostile remote server's replies to our outbound client.
  ClientSession client(ClientSettings{"out.example.test", ClientTls(split % 3), split & 4 ? "u" : "", "pw"});
  const std::string content = "Subject: x\r\n\r\n.dot\r\n";
  OutMessage msg{"a@example.test", {"b@remote.test", "c@remote.test"}, content.size(), (split & 8) != 0,
                 (split & 16) != 0};
  int sent = 0;
  for (size_t pos = 0; pos < in.size(); pos += chunk) {
    ClientOutput co = client.feed(in.substr(pos, chunk));
    for (int guard = 0; guard < 4; ++guard) {
      if (co.event == ClientEvent::starttls) co = client.tls_started();
      else if (co.event == ClientEvent::body) {
        DotStuffer d;
        if (d.stuff(content).empty()) abort();
        co = client.body_sent();
      } else if ((co.event == ClientEvent::ready || co.event == ClientEvent::message_done) && sent < 3) {
        if (co.event == ClientEvent::message_done && client.results().size() != 2) abort();
        ++sent;
        co = client.send(msg);
      } else {
        break;
      }
    }
    if (co.event == ClientEvent::failed || co.event == ClientEvent::closed) break;
  }

  // ...and as a POP3 server's replies to the POP-before-SMTP login.
  Pop3Login pop("user", "password");
  bool tls = false;
  for (size_t pos = 0; pos < in.size(); pos += chunk) {
    Pop3Login::Out po = pop.feed(in.substr(pos, chunk));
    // The password is sent only after STLS succeeded.
    if (!tls && po.bytes.find("password") != std::string::npos) abort();
    if (po.event == Pop3Login::Out::starttls) {
      tls = true;
      po = pop.tls_started();
    }
    if (po.event == Pop3Login::Out::failed || po.event == Pop3Login::Out::done) break;
  }
  return 0;
}
