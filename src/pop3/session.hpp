// pop3/: the POP3 server session without I/O (RFC 1939, CAPA/RESP-CODES/PIPELINING
// of RFC 2449, STLS of RFC 2595, SASL AUTH of RFC 5034 with SASL-IR, [AUTH] and
// [SYS/*] codes of RFC 3206). Bytes in, replies out, and `next` for what only the
// driver can do: a TLS handshake, a password check, opening (and locking) the
// mailbox, sending a message file, the deletions of the UPDATE state. Depends on
// core/ and auth/ only, so the fuzzer builds it alone.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.hpp"

namespace bulwark::pop3 {

struct Config {
  std::string hostname;
  bool stls_available = false;  // the pop3 port with a certificate (never on pop3s)
  auth::LoginPolicy auth;
  uint32_t max_failed_commands = 10;  // 0: no limit
};

struct ClientInfo {
  std::string ip;
  bool tls = false;
};

// What the session needs from its surroundings, synchronously.
class Hooks {
 public:
  virtual ~Hooks() = default;
  virtual auth::SecretSource& secrets() = 0;
  // Logins from this address are refused now (logged by the hook).
  virtual bool login_blocked() = 0;
  // Around each step of a login mechanism, which may check credentials in the session
  // (SCRAM, CRAM-MD5): false -- refused now (blocked, or as many checks in flight from
  // the address as may still fail): the exchange ends with "try later". end_check after
  // a step that did not fail (a failure's login_failed gives the slot back).
  virtual bool begin_check() { return true; }
  virtual void end_check() {}
  virtual void login_failed(std::string_view mech, const std::string& user, std::string_view why) = 0;
  // A command refused for a policy reason (security log).
  virtual void refused(const std::string& what) = 0;
};

enum class Next {
  read,          // write `bytes`, then read more
  close,         // write `bytes`, then close
  starttls,      // write `bytes`, handshake, then tls_started()
  verify,        // check pending_login() off the I/O thread, then login_finished()
  open_mailbox,  // log in login_user(): lock and open the mailbox, then mailbox_opened()
  send_message,  // send sending() (see there), then message_sent()
  update,        // remove to_delete(), then update_finished()
};

struct Output {
  std::string bytes;
  Next next = Next::read;
  std::chrono::milliseconds delay{0};  // wait this long before writing (a failed login)
};

// One message of the maildrop as the session shows it.
struct Entry {
  uint64_t octets = 0;  // with CRLF line ends (RFC 1939 counts what RETR sends)
  std::string uidl;     // 1-70 bytes of 0x21-0x7E, stable across sessions
};

enum class State { authorization, verifying, opening, transaction, sending, updating, closed };

class Session {
 public:
  Session(Config cfg, Hooks& hooks, ClientInfo client);
  ~Session();

  Output greet();
  Output feed(std::string_view bytes);
  Output tls_started();

  struct LoginRequest {
    std::string user, password;
  };
  const LoginRequest& pending_login() const { return login_; }
  Output login_finished(bool ok);
  // No check could be made (the address is blocked, or its checks in flight stayed
  // full): "try again later", counted as nothing.
  // A login that cannot be checked now ("try later"): too many at once from the
  // address, or the user directory unreachable (cluster mode).
  Output login_unavailable(std::string_view why = "Too many logins at once from your address, try again later");

  // After Next::open_mailbox: the user as authenticated and the mechanism used.
  const std::string& login_user() const { return user_; }
  const std::string& login_mech() const { return mech_name_; }
  enum class Opened { ok, in_use, failed };
  Output mailbox_opened(Opened result, std::vector<Entry> entries = {});

  // After Next::send_message: which message (0-based) and how much. The driver
  // writes `ok_line`, the message encoded (MessageEncoder), then calls
  // message_sent(true); if it cannot open the message it writes nothing and calls
  // message_sent(false).
  struct Send {
    size_t index = 0;
    std::optional<uint64_t> body_lines;  // TOP: this many body lines after the header
    std::string ok_line;
  };
  const Send& sending() const { return send_; }
  Output message_sent(bool ok);

  // After Next::update: the 0-based indexes the client deleted.
  std::vector<size_t> to_delete() const;
  Output update_finished(bool ok);

  // The connection ends for a reason of the server's.
  enum class Closing { timeout, shutdown };
  Output shutdown(Closing why);

  State state() const { return state_; }
  size_t buffered() const { return buf_.size(); }
  bool authenticated() const { return state_ == State::transaction || state_ == State::sending; }

 private:
  Output process(Output out);
  bool one_line(Output& out);  // false: needs more input or must wait
  void command(std::string_view line, Output& out);
  void ok(Output& out, std::string_view text);
  void err(Output& out, std::string_view text);  // counts toward max_failed_commands
  void cmd_capa(Output& out);
  void cmd_user(std::string_view arg, Output& out);
  void cmd_pass(std::string_view arg, Output& out);
  void cmd_auth(std::string_view arg, Output& out);
  void auth_line(std::string_view line, Output& out);
  void auth_step(auth::Step step, Output& out);
  void auth_failure(const std::string& user, auth::Step::Why why, Output& out);
  void logged_in(const std::string& user, Output& out);
  std::optional<size_t> message_arg(std::string_view arg, Output& out);  // -ERR if none
  void cmd_list(std::string_view arg, bool uidl, Output& out);
  void cmd_retr(std::string_view arg, bool top, Output& out);
  void cmd_quit(Output& out);
  bool plaintext_allowed() const { return cfg_.auth.plaintext_ok(client_.tls); }

  Config cfg_;
  Hooks& hooks_;
  ClientInfo client_;
  State state_ = State::authorization;
  std::string buf_;
  bool discarding_ = false;  // an over-long line: dropping it up to its end
  uint32_t failed_ = 0;
  std::string user_;            // USER given, or the authenticated user
  std::string mech_name_;       // "USER", "PLAIN", ...
  LoginRequest login_;
  std::unique_ptr<auth::Mechanism> mech_;  // an AUTH exchange in progress
  bool auth_final_ = false;                // waiting for the empty reply to success data
  std::string auth_user_;
  std::vector<Entry> entries_;
  std::vector<bool> deleted_;
  Send send_;
};

// Turns a Maildir file (LF line ends; CRLF tolerated) into what RETR and TOP send:
// CRLF line ends, a leading "." doubled, and a final CRLF if the file lacks one. The
// terminating ".\r\n" is the session's. Feed chunks as they are read.
class MessageEncoder {
 public:
  explicit MessageEncoder(std::optional<uint64_t> body_lines = std::nullopt) : body_lines_(body_lines) {}
  // Appends the encoding of `in` to `out`; false once TOP has all it wants.
  bool put(std::string_view in, std::string& out);
  void finish(std::string& out);  // the final CRLF if missing

 private:
  std::optional<uint64_t> body_lines_;
  bool line_start_ = true, prev_cr_ = false, in_body_ = false, line_empty_ = true, done_ = false;
};

}  // namespace bulwark::pop3
