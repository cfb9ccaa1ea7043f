// smtp/: the SMTP client (outbound), without I/O -- the counterpart of ServerSession.
// Bytes from the server go in, bytes to send and events come out: STARTTLS wanted,
// session ready for a message, message finished (with a reply per recipient),
// session failed. EHLO (HELO fallback), STARTTLS per policy, AUTH PLAIN/LOGIN only
// inside TLS, PIPELINING when offered (RFC 2920), SIZE, 8BITMIME, SMTPUTF8, dot-stuffing.
#pragma once
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::smtp {

struct ServerReply {
  int code = 0;
  std::string text;  // every line, joined with "; ", without the codes
  bool local = false;  // made up here (e.g. "TLS required"), not said by the server
  bool positive() const { return code >= 200 && code < 400; }
  bool permanent() const { return code >= 500; }
  std::string enhanced() const;  // "5.1.1" from the text, or derived from the code
  std::string str() const;       // "550 5.1.1 text"
};

enum class ClientTls { opportunistic, required, off };

struct ClientSettings {
  std::string helo;  // our host name
  ClientTls tls = ClientTls::opportunistic;
  std::string auth_user, auth_password;  // empty user = no AUTH
};

struct OutMessage {
  std::string sender;                   // "" = null sender
  std::vector<std::string> recipients;  // addresses without brackets
  uint64_t size = 0;                    // of the content (CRLF lines), for SIZE=
  bool eight_bit = false;
  bool smtputf8 = false;
};

// body: the server said 354; the caller now writes the content, dot-stuffed
// (DotStuffer) and ended with ".", in pieces as it reads them, then calls body_sent().
enum class ClientEvent { none, starttls, ready, body, message_done, failed, closed };

struct ClientOutput {
  std::string bytes;
  ClientEvent event = ClientEvent::none;
};

class ClientSession {
 public:
  explicit ClientSession(ClientSettings s) : s_(std::move(s)) {}

  ClientOutput feed(std::string_view bytes);
  ClientOutput tls_started();                 // after ClientEvent::starttls and a good handshake
  ClientOutput send(const OutMessage& m);     // after ready or message_done
  ClientOutput body_sent();                   // after ClientEvent::body, once the "." is written
  ClientOutput quit();
  // Waiting for the reply to the end of the data (RFC 5321 4.5.3.2.6: 10 minutes).
  bool awaiting_data_end() const { return st_ == St::body; }

  // After message_done: one reply per recipient of the last message, in order
  // (its RCPT refusal, or the reply to the end of data, or why the whole
  // transaction failed).
  const std::vector<ServerReply>& results() const { return results_; }
  // After failed: why the session cannot go on.
  const ServerReply& failure() const { return failure_; }
  bool tls() const { return tls_; }
  bool has(const std::string& ext) const { return ext_.count(ext) > 0; }

 private:
  enum class St { greeting, ehlo, helo, starttls, auth_plain, auth_login_user, auth_login_pass, ready, mail,
                  rcpt, data, body, rset, quit, closed, failed };
  enum class Expect { mail, rcpt, data };
  ClientOutput on_reply(const ServerReply& r);
  ClientOutput after_ehlo();
  ClientOutput authenticate();
  ClientOutput fail(ServerReply r);
  ClientOutput finish_message(ClientOutput out);
  ClientOutput after_transaction_replies(ClientOutput out);

  ClientSettings s_;
  St st_ = St::greeting;
  std::string buf_;
  std::vector<std::string> lines_;  // of the reply being read
  std::set<std::string> ext_;       // EHLO keywords, upper case
  std::vector<std::string> auth_mechs_;
  uint64_t size_limit_ = 0;
  bool tls_ = false;
  ServerReply failure_;
  // The message in flight.
  const OutMessage* msg_ = nullptr;
  OutMessage copy_;
  std::vector<Expect> expect_;
  size_t rcpt_index_ = 0;
  std::optional<ServerReply> mail_reply_, data_reply_;
  std::vector<std::optional<ServerReply>> rcpt_replies_;
  std::vector<ServerReply> results_;
};

// Dot-stuffing (RFC 5321 4.5.2) of content sent in pieces: a "." at the start of a
// line is doubled, whatever way the content is split.
class DotStuffer {
 public:
  std::string stuff(std::string_view chunk);
  // What ends the data: a CRLF if the content did not end with one, then ".".
  std::string finish() const;

 private:
  bool line_start_ = true;
  bool empty_ = true;
};

// "a.b" -> "..a.b" line by line; appends CRLF if missing; no final ".".
std::string dot_stuff(std::string_view data);

}  // namespace bulwark::smtp
