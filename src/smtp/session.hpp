// smtp/: the SMTP protocol without I/O. ServerSession turns bytes from a client into
// reply bytes and requests (start TLS, commit a message, close); the network shell
// in net/ moves the bytes. Depends on core/ only, so every byte path is unit-tested
// and fuzzed without sockets.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/sasl.hpp"
#include "core/address.hpp"
#include "smtp/message_sink.hpp"
#include "smtp/reply.hpp"

namespace bulwark::smtp {

enum class Service { smtp, submission, smtps };
const char* service_name(Service s);

struct SessionLimits {
  uint64_t max_message_size = 50ull << 20;  // 0 = no limit
  size_t max_recipients = 100;              // 0 = no limit
  size_t max_hops = 30;                     // 0 = no limit
  size_t max_failed_commands = 10;          // 0 = no limit
  size_t max_command_line = 512;            // including CRLF (RFC 5321 4.5.3.1.4)
  size_t max_text_line = 1000;              // including CRLF (RFC 5321 4.5.3.1.6)
};

// Security policy (SPEC 8): which mechanisms may be used where (auth::LoginPolicy,
// shared with the other protocols), plus what only SMTP has.
using AuthMode = auth::Mode;

struct AuthSettings : auth::LoginPolicy {
  bool received_auth_user = false;     // name the AUTH user in Received:
  size_t max_line = 12288;             // RFC 4954 4: AUTH lines may be this long
};

struct SessionConfig {
  std::string hostname;
  Service service = Service::smtp;
  bool starttls_available = false;
  SessionLimits limits;
  AuthSettings auth;
};

struct ClientInfo {
  std::string ip;
  bool tls = false;  // already TLS (smtps)
  std::string tls_version, tls_cipher;
};

// Where one accepted recipient goes.
struct Recipient {
  std::string rcpt;     // as given in RCPT TO (normalised form)
  std::string target;   // final address: a local mailbox or a remote address
  bool local = true;
};

struct RecipientLookup {
  enum Kind { local, unknown, not_local, temp_failure } kind = unknown;
  std::vector<std::string> mailboxes;  // local users after alias/group expansion
  std::vector<std::string> remote;     // non-local addresses an alias/group points to
};

// What the session needs from the rest of the server. Injected, so tests use fakes.
class SessionHooks {
 public:
  virtual ~SessionHooks() = default;
  // `rcpt` has an empty domain for the bare <Postmaster> of RFC 5321 4.5.1.
  virtual RecipientLookup lookup_recipient(const Address& rcpt) = 0;
  virtual bool may_relay(const Address& rcpt) = 0;
  // MAIL FROM policy (e.g. the hourly message limit): a reply refuses the sender.
  virtual std::optional<Reply> check_sender(const Address&) { return std::nullopt; }
  // True when MAIL FROM needs checks that take time (DNS): the session then returns
  // Next::check and waits for check_finished().
  virtual bool sender_needs_check(const Address&) { return false; }
  // A recipient that exists (or may be relayed to): may this client send it mail now?
  // (DNSBL listing, greylisting.) A 5xx refusal counts as a failed command.
  virtual std::optional<Reply> check_recipient(const std::string& /*sender*/, const Address&) { return std::nullopt; }
  // An unknown local recipient was given; true = the client is now blocked
  // (directory harvest) and the session must end.
  virtual bool unknown_recipient() { return false; }
  // A refusal for a policy reason, for the security log.
  virtual void refused(std::string_view) {}
  // End of data, before the commit: a reply refuses the message (e.g. a From:
  // address the authenticated user may not use). `head`: the message, or its first
  // MessageBody::kHeadKept bytes when it is large (the header section is in there).
  virtual std::optional<Reply> check_message(std::string_view /*head*/) { return std::nullopt; }
  // Where message bodies go when they leave memory (none: they stay in memory).
  virtual const BodySpill* body_spill() { return nullptr; }

  // SMTP AUTH. Secrets for the challenge-response mechanisms:
  virtual auth::SecretSource* secrets() { return nullptr; }
  // True while AUTH is refused to this client (too many failures).
  virtual bool auth_blocked() { return false; }
  // Around each step of a login mechanism, which may check credentials in the session
  // (SCRAM, CRAM-MD5): false -- refused now (blocked, or as many checks in flight from
  // the address as may still fail): the exchange ends with "try later". end_check after
  // a step that did not fail (a failure's login_failed gives the slot back).
  virtual bool begin_check() { return true; }
  virtual void end_check() {}
  // A login succeeded: returns the user's canonical name (lookup key).
  virtual std::string auth_succeeded(auth::Mech, const std::string& user) { return user; }
  // STARTTLS completed: the session forgets its login (RFC 3207 4.2).
  virtual void auth_reset() {}
  // A login failed (why: for the log); true when the client is now blocked.
  virtual bool auth_failed(auth::Mech, const std::string& /*user*/, std::string_view /*why*/) { return false; }
  virtual std::string new_queue_id() = 0;
  virtual std::chrono::system_clock::time_point now() = 0;
};

struct Envelope {
  std::string id;
  std::string client_ip;
  std::string helo;
  std::string sender;  // "" for the null path
  bool smtputf8 = false;
  std::string tls;     // "TLSv1.3/TLS_AES_256_GCM_SHA384" or ""
  std::string auth_user;  // authenticated user, or ""
  // Sent by one of ours: an authenticated user or a client allowed to relay (IP group,
  // POP-before-SMTP), or made by the server itself (reports). Only such mail is
  // DKIM-signed when it leaves.
  bool ours = false;
  // DMARC quarantine (dmarc.mode = "enforce"): local copies go to the Junk folder.
  bool junk = false;
  std::vector<Recipient> recipients;
};

// A message ready to be made durable: Received: header plus the client's bytes.
struct Transaction {
  Envelope envelope;
  std::string received;  // our Received: header field, CRLF-terminated
  MessageBody body;      // message as the client sent it (dot-unstuffed)
};

// What the shell does next. verify: check pending_login() (Argon2id, off the I/O
// thread), then login_finished().
enum class Next { read, starttls, commit, check, verify, close };

struct Output {
  std::string bytes;  // replies to write, in order
  Next next = Next::read;
  std::chrono::milliseconds delay{0};  // wait this long before writing (failed AUTH)
};

enum class State { command, data, bdat, auth, wait_commit, wait_check, wait_verify, wait_tls, closed };

struct LoginRequest {
  std::string user;
  std::string password;
};

class ServerSession {
 public:
  ServerSession(SessionConfig cfg, SessionHooks& hooks, ClientInfo client);

  Output greet();
  // Consumes bytes from the client. Whatever cannot be processed yet (a partial line,
  // or input pipelined behind a commit) stays buffered for the next call.
  Output feed(std::string_view bytes);
  // After Next::commit: the transaction to store, then commit_finished() with the result.
  Transaction& pending() { return pending_; }
  Output commit_finished(bool ok);
  // Instead of the commit: the checks of the whole message refuse it (SPF, DMARC).
  Output commit_refused(const Reply& why);
  // After Next::check: the sender being checked, then the outcome (a refusal, or none).
  const Address& checking_sender() const { return checking_sender_; }
  Output check_finished(std::optional<Reply> refusal);
  // After Next::starttls: the handshake succeeded; the session starts over (RFC 3207).
  Output tls_started(std::string version, std::string cipher);
  // After Next::verify: the credentials to check, then the outcome. The password is
  // wiped when login_finished() is called.
  const LoginRequest& pending_login() const { return login_; }
  Output login_finished(bool ok);
  // No check could be made (the address is blocked, or its checks in flight stayed
  // full): "try again later", counted as nothing.
  // A login that cannot be checked now ("try later"): too many at once from the
  // address, or the user directory unreachable (cluster mode).
  Output login_unavailable(std::string_view why = "Too many logins at once from your address, try again later");
  // Server shutdown or timeout: the 421 to send before closing.
  enum class Closing { shutdown, timeout };
  Output shutdown(Closing why);

  State state() const { return state_; }
  bool in_transaction() const { return mail_given_; }
  size_t unknown_recipients() const { return unknown_rcpts_; }
  size_t buffered() const { return buf_.size() - rpos_; }
  const std::string& auth_user() const { return auth_user_; }

 private:
  Output process(Output out);
  enum class LineResult { more, line, bad };
  // One CRLF line of at most `limit` octets; bad = refused, reply written.
  LineResult take_line(Output& out, size_t limit, std::string_view& line, const Reply& too_long);
  bool process_command_line(Output& out);
  bool process_data(Output& out);
  bool process_bdat(Output& out);
  void dispatch(std::string_view line, Output& out);
  void reply(Output& out, const Reply& r);
  void fail(Output& out, const Reply& r);  // a 5xx that counts toward max_failed_commands
  void reset_transaction();
  void set_state(State s) { state_ = s; }
  bool finish_message(Output& out);

  void cmd_ehlo(std::string_view arg, bool extended, Output& out);
  void cmd_mail(std::string_view arg, Output& out);
  void cmd_rcpt(std::string_view arg, Output& out);
  void cmd_data(std::string_view arg, Output& out);
  void refuse_data(Output& out, const Reply& r);
  void drop_pipelined_body(Output& out);
  void cmd_bdat(std::string_view arg, Output& out);
  void cmd_starttls(std::string_view arg, Output& out);
  void cmd_auth(std::string_view arg, Output& out);
  bool process_auth_line(Output& out);
  void auth_step(auth::Step step, Output& out);
  void auth_success(const std::string& user, Output& out);
  void auth_failure(const std::string& user, auth::Step::Why why, Output& out);
  bool mechanism_usable(auth::Mech m) const;
  bool need_tls_first() const;

  SessionConfig cfg_;
  SessionHooks& hooks_;
  ClientInfo client_;
  State state_ = State::command;
  std::string buf_;
  size_t rpos_ = 0;
  bool discarding_long_line_ = false;
  bool data_refused_ = false;  // the last command was a refused DATA
  size_t failed_ = 0;
  size_t unknown_rcpts_ = 0;

  std::string helo_;
  bool esmtp_ = false;
  bool mail_given_ = false;
  bool bdat_used_ = false;
  bool data_mid_line_ = false;  // DATA: inside an over-long line (no dot handling)
  uint64_t bdat_remaining_ = 0;
  bool bdat_last_ = false;
  bool bdat_failed_ = false;
  Envelope env_;
  std::unique_ptr<MessageSink> sink_;
  Transaction pending_;
  std::string pending_id_;  // survives the shell moving pending_ away
  std::unique_ptr<auth::Mechanism> mech_;
  auth::Mech mech_kind_ = auth::Mech::plain;
  bool auth_final_ = false;  // waiting for the client's empty reply to our final data
  std::string auth_pending_user_;
  std::string auth_user_;
  LoginRequest login_;
  Address checking_sender_;
  bool checking_smtputf8_ = false;
  void accept_mail(const Address& a, bool smtputf8, Output& out);
};

}  // namespace bulwark::smtp
