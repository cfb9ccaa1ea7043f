// libFuzzer target: the POP3 server session (commands, AUTH exchanges, STLS, the
// TRANSACTION commands over a small maildrop) and the RETR/TOP encoder. The first
// byte picks how the rest is split into reads; invariants are checked after every
// step: replies are whole CRLF lines starting "+OK", "-ERR", "+ " or a multi-line
// body ending ".", nothing is buffered past the line bound, and the session never
// asks for something its state does not allow.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "pop3/session.hpp"

using namespace bulwark;
using namespace bulwark::pop3;

namespace {
struct FuzzHooks : pop3::Hooks, auth::SecretSource {
  auth::SecretSource& secrets() override { return *this; }
  std::optional<auth::ScramSecret> scram_secret(const std::string& u) override {
    static const auth::ScramSecret s = auth::derive_scram("pencil", "salt", 1);
    if (u == "u@example.test") return s;
    return std::nullopt;
  }
  std::optional<auth::CramSecret> cram_md5_secret(const std::string& u) override {
    if (u == "u@example.test") return auth::derive_cram_md5("pencil");
    return std::nullopt;
  }
  bool login_blocked() override { return failures > 3; }
  void login_failed(std::string_view, const std::string&, std::string_view) override { ++failures; }
  void refused(const std::string&) override {}
  int failures = 0;
};

void check_lines(const std::string& bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t e = bytes.find("\r\n", pos);
    if (e == std::string::npos) abort();
    pos = e + 2;
  }
}

void drive(Session& s, Output o) {
  for (int guard = 0; guard < 10000; ++guard) {
    check_lines(o.bytes);
    if (s.buffered() > 13000) abort();  // the bound of an AUTH line, with one read of slack
    switch (o.next) {
      case Next::read:
      case Next::close: return;
      case Next::starttls: o = s.tls_started(); break;
      case Next::verify: {
        if (s.state() != State::verifying) abort();
        bool ok = s.pending_login().password == "pencil";
        o = s.login_finished(ok);
        break;
      }
      case Next::open_mailbox: {
        if (s.state() != State::opening) abort();
        std::vector<Entry> e{{10, "a"}, {0, "b"}, {123456, "c"}};
        o = s.mailbox_opened(s.login_user().size() % 5 == 0 ? Session::Opened::in_use : Session::Opened::ok, e);
        break;
      }
      case Next::send_message: {
        if (!s.authenticated() || s.sending().index >= 3) abort();
        MessageEncoder enc(s.sending().body_lines);
        std::string out;
        enc.put("A: b\n\n.x\nline\r\nlast", out);
        enc.finish(out);
        check_lines(out);
        o = s.message_sent(s.sending().index != 1);
        break;
      }
      case Next::update: {
        for (size_t i : s.to_delete())
          if (i >= 3) abort();
        o = s.update_finished(true);
        break;
      }
    }
  }
  abort();  // a loop that never asks for input
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t step = data[0] % 17 + 1;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  FuzzHooks h;
  Config c;
  c.hostname = "mx.example.test";
  c.stls_available = data[0] & 1;
  c.auth.mode = data[0] & 2 ? auth::Mode::none : data[0] & 4 ? auth::Mode::encrypted : auth::Mode::secure_auth;
  c.auth.mechanisms = {auth::Mech::scram_sha_256, auth::Mech::plain, auth::Mech::login, auth::Mech::cram_md5};
  c.max_failed_commands = data[0] & 8 ? 0 : 20;
  Session s(c, h, {"192.0.2.1", bool(data[0] & 16)});
  drive(s, s.greet());
  for (size_t i = 0; i < in.size() && s.state() != State::closed; i += step) drive(s, s.feed(in.substr(i, step)));
  // and the encoder alone on the raw input, every TOP size
  for (uint64_t n : {0, 1, 7}) {
    MessageEncoder enc(n);
    std::string out;
    enc.put(in, out);
    enc.finish(out);
    check_lines(out);
  }
  MessageEncoder whole;
  std::string out;
  whole.put(in, out);
  whole.finish(out);
  check_lines(out);
  return 0;
}
