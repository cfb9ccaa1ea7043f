#include "pop3/session.hpp"

#include <algorithm>
#include <charconv>

#include "core/strings.hpp"

namespace bulwark::pop3 {
namespace {

// RFC 2449 4: a command line is at most 255 octets with its CRLF. The lines of an AUTH
// exchange are not commands and may be longer (RFC 5034 4); they get a larger bound.
constexpr size_t max_command = 255;
constexpr size_t max_auth_line = 12288;

}  // namespace

Session::Session(Config cfg, Hooks& hooks, ClientInfo client)
    : cfg_(std::move(cfg)), hooks_(hooks), client_(std::move(client)) {}

Session::~Session() { auth::wipe(login_.password); }

void Session::ok(Output& out, std::string_view text) {
  out.bytes += "+OK ";
  out.bytes += text;
  out.bytes += "\r\n";
}

void Session::err(Output& out, std::string_view text) {
  ++failed_;
  if (cfg_.max_failed_commands && failed_ >= cfg_.max_failed_commands) {
    hooks_.refused("too many failed commands (" + std::to_string(failed_) + ")");
    out.bytes += "-ERR Too many errors, closing connection\r\n";
    out.next = Next::close;
    state_ = State::closed;
    return;
  }
  out.bytes += "-ERR ";
  out.bytes += text;
  out.bytes += "\r\n";
}

Output Session::greet() {
  Output out;
  ok(out, cfg_.hostname + " POP3 bulwark ready");
  return out;
}

Output Session::shutdown(Closing why) {
  Output out;
  state_ = State::closed;
  out.next = Next::close;
  // RFC 1939 3: a session that times out ends without UPDATE: nothing is deleted.
  out.bytes = why == Closing::timeout ? "-ERR [SYS/TEMP] Idle timeout, closing connection\r\n"
                                      : "-ERR [SYS/TEMP] Server shutting down, closing connection\r\n";
  return out;
}

Output Session::feed(std::string_view bytes) {
  if (state_ == State::closed) return {};
  buf_.append(bytes);
  return process({});
}

Output Session::process(Output out) {
  while (out.next == Next::read && state_ != State::closed) {
    if (!one_line(out)) break;
  }
  return out;
}

bool Session::one_line(Output& out) {
  if (state_ == State::verifying || state_ == State::opening || state_ == State::sending ||
      state_ == State::updating)
    return false;
  size_t limit = mech_ ? max_auth_line : max_command;
  size_t nl = buf_.find('\n');
  if (nl == std::string::npos) {
    if (buf_.size() >= limit) {  // no end in sight: drop what came, answer at its end
      discarding_ = true;
      buf_.clear();
    }
    return false;
  }
  std::string line = buf_.substr(0, nl);
  buf_.erase(0, nl + 1);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  bool too_long = discarding_ || line.size() + 2 > limit;
  discarding_ = false;
  if (too_long) {
    if (mech_) {
      mech_.reset();
      auth_final_ = false;
      err(out, "Authentication exchange line too long");
    } else {
      err(out, "Command line too long (RFC 2449: 255 octets)");
    }
    auth::wipe(line);
    return true;
  }
  if (mech_) auth_line(line, out);
  else command(line, out);
  auth::wipe(line);  // may have been a password
  return true;
}

void Session::command(std::string_view line, Output& out) {
  auto [verb_raw, arg] = split_word(line);
  std::string verb = to_upper(verb_raw);
  for (char c : line)
    if (c == '\0' || c == '\r') return err(out, "Malformed command");
  bool tls_first = cfg_.auth.tls_first(client_.tls);
  if (verb == "CAPA") return cmd_capa(out);
  if (verb == "QUIT") return cmd_quit(out);
  if (state_ == State::authorization) {
    if (verb == "STLS") {
      if (client_.tls) return err(out, "Already using TLS");
      if (!cfg_.stls_available) return err(out, "STLS not available");
      // Whatever the client pipelined behind STLS was sent in clear: discarded.
      buf_.clear();
      out.bytes += "+OK Begin TLS negotiation\r\n";
      out.next = Next::starttls;
      return;
    }
    if (tls_first) {
      // Only a known verb goes to the log: a confused client may type anything.
      static const std::string_view known[] = {"USER", "PASS", "AUTH", "APOP", "STAT", "LIST", "UIDL",
                                               "RETR", "TOP",  "DELE", "RSET", "NOOP"};
      bool is_known = std::find(std::begin(known), std::end(known), verb) != std::end(known);
      hooks_.refused((is_known ? verb : std::string("a command")) + " before STLS");
      return err(out, "[AUTH] TLS required: use STLS first");
    }
    if (verb == "USER") return cmd_user(arg, out);
    if (verb == "PASS") return cmd_pass(arg, out);
    if (verb == "AUTH") return cmd_auth(arg, out);
    if (verb == "APOP") return err(out, "APOP not supported");
    if (verb == "STAT" || verb == "LIST" || verb == "UIDL" || verb == "RETR" || verb == "TOP" || verb == "DELE" ||
        verb == "RSET" || verb == "NOOP")
      return err(out, "Not logged in");
    return err(out, "Unknown command");
  }
  // TRANSACTION
  if (verb == "STAT") {
    if (!arg.empty()) return err(out, "STAT takes no argument");
    uint64_t n = 0, octets = 0;
    for (size_t i = 0; i < entries_.size(); ++i)
      if (!deleted_[i]) ++n, octets += entries_[i].octets;
    return ok(out, std::to_string(n) + " " + std::to_string(octets));
  }
  if (verb == "LIST") return cmd_list(arg, false, out);
  if (verb == "UIDL") return cmd_list(arg, true, out);
  if (verb == "RETR") return cmd_retr(arg, false, out);
  if (verb == "TOP") return cmd_retr(arg, true, out);
  if (verb == "DELE") {
    auto i = message_arg(arg, out);
    if (!i) return;
    deleted_[*i] = true;
    return ok(out, "Message " + std::to_string(*i + 1) + " deleted");
  }
  if (verb == "RSET") {
    if (!arg.empty()) return err(out, "RSET takes no argument");
    std::fill(deleted_.begin(), deleted_.end(), false);
    return ok(out, "Maildrop has " + std::to_string(entries_.size()) + " messages");
  }
  if (verb == "NOOP") {
    if (!arg.empty()) return err(out, "NOOP takes no argument");
    return ok(out, "");
  }
  if (verb == "USER" || verb == "PASS" || verb == "AUTH" || verb == "STLS" || verb == "APOP")
    return err(out, "Already logged in");
  return err(out, "Unknown command");
}

void Session::cmd_capa(Output& out) {
  out.bytes += "+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
  if (state_ == State::authorization) {
    if (plaintext_allowed()) out.bytes += "USER\r\n";
    std::string sasl;
    for (auto m : cfg_.auth.mechanisms)
      if (cfg_.auth.usable(m, client_.tls)) sasl += std::string(" ") + auth::mech_name(m);
    if (!sasl.empty()) out.bytes += "SASL" + sasl + "\r\n";
    if (cfg_.stls_available && !client_.tls) out.bytes += "STLS\r\n";
  }
  out.bytes += "IMPLEMENTATION bulwark\r\n.\r\n";
}

void Session::cmd_user(std::string_view arg, Output& out) {
  if (!plaintext_allowed()) {
    hooks_.refused("USER without TLS");
    return err(out, "[AUTH] Plaintext authentication disallowed without TLS: use STLS or SASL");
  }
  if (arg.empty()) return err(out, "USER needs a name");
  user_ = std::string(arg);
  ok(out, "Send the password");
}

void Session::cmd_pass(std::string_view arg, Output& out) {
  if (user_.empty()) return err(out, "Send USER first");
  if (!plaintext_allowed()) return err(out, "[AUTH] Plaintext authentication disallowed without TLS");
  if (hooks_.login_blocked()) {
    user_.clear();
    return err(out, "[SYS/TEMP] Too many failed logins from your address, try again later");
  }
  login_.user = std::move(user_);
  user_.clear();
  login_.password = std::string(arg);  // RFC 1939: the rest of the line, spaces and all
  mech_name_ = "USER";
  state_ = State::verifying;
  out.next = Next::verify;
}

void Session::cmd_auth(std::string_view arg, Output& out) {
  if (arg.empty()) {  // the list of mechanisms (before RFC 5034, still used by clients)
    out.bytes += "+OK Methods supported\r\n";
    for (auto m : cfg_.auth.mechanisms)
      if (cfg_.auth.usable(m, client_.tls)) out.bytes += std::string(auth::mech_name(m)) + "\r\n";
    out.bytes += ".\r\n";
    return;
  }
  auto [name, initial] = split_word(arg);
  auto m = auth::mech_from_name(name);
  bool configured = false;
  for (auto c : cfg_.auth.mechanisms) configured |= m && c == *m;
  if (!configured) return err(out, "Unsupported authentication mechanism");
  if (!cfg_.auth.usable(*m, client_.tls)) {
    hooks_.refused(std::string("AUTH ") + auth::mech_name(*m) + " without TLS");
    return err(out, "[AUTH] Plaintext authentication disallowed without TLS: use STLS");
  }
  if (hooks_.login_blocked()) return err(out, "[SYS/TEMP] Too many failed logins from your address, try again later");
  std::optional<std::string> init;
  if (!initial.empty()) {
    if (initial == "=") init = std::string();
    else if (!(init = auth::base64_decode(initial))) return err(out, "Cannot decode the Base64 initial response");
  }
  mech_ = auth::make_mechanism(*m, hooks_.secrets(), {cfg_.hostname, {}});
  mech_name_ = auth::mech_name(*m);
  auth_final_ = false;
  if (!hooks_.begin_check()) {
    mech_.reset();
    if (init) auth::wipe(*init);
    return err(out, "[SYS/TEMP] Too many logins at once from your address, try again later");
  }
  auth::Step step = mech_->start(init);
  if (init) auth::wipe(*init);
  if (step.kind != auth::Step::failure) hooks_.end_check();
  auth_step(std::move(step), out);
}

void Session::auth_step(auth::Step step, Output& out) {
  switch (step.kind) {
    case auth::Step::challenge: out.bytes += "+ " + auth::base64_encode(step.data) + "\r\n"; return;
    case auth::Step::verify_password:
      mech_.reset();
      login_.user = std::move(step.user);
      login_.password = std::move(step.password);
      state_ = State::verifying;
      out.next = Next::verify;
      return;
    case auth::Step::success:
      if (step.data.empty()) {
        mech_.reset();
        return logged_in(step.user, out);
      }
      // Additional data with success travels as one more challenge (RFC 5034 4).
      auth_final_ = true;
      auth_user_ = step.user;
      out.bytes += "+ " + auth::base64_encode(step.data) + "\r\n";
      return;
    case auth::Step::failure: mech_.reset(); return auth_failure(step.user, step.why, out);
  }
}

void Session::auth_line(std::string_view line, Output& out) {
  if (line == "*") {
    mech_.reset();
    auth_final_ = false;
    return err(out, "Authentication cancelled");
  }
  if (auth_final_) {
    auth_final_ = false;
    mech_.reset();
    if (line.empty()) return logged_in(auth_user_, out);
    return auth_failure(auth_user_, auth::Step::Why::malformed, out);
  }
  auto decoded = auth::base64_decode(line);
  if (!decoded) {
    mech_.reset();
    return err(out, "Cannot decode the Base64 response");
  }
  if (!hooks_.begin_check()) {
    mech_.reset();
    auth::wipe(*decoded);
    return err(out, "[SYS/TEMP] Too many logins at once from your address, try again later");
  }
  auth::Step step = mech_->next(*decoded);
  auth::wipe(*decoded);
  if (step.kind != auth::Step::failure) hooks_.end_check();
  auth_step(std::move(step), out);
}

void Session::auth_failure(const std::string& user, auth::Step::Why why, Output& out) {
  const char* what = why == auth::Step::Why::malformed       ? "malformed exchange"
                     : why == auth::Step::Why::impersonation ? "authorization identity differs (impersonation)"
                                                             : "invalid credentials";
  hooks_.login_failed(mech_name_, user, what);
  out.delay = cfg_.auth.failure_delay;
  state_ = State::authorization;
  err(out, why == auth::Step::Why::malformed ? "[AUTH] Malformed authentication exchange"
                                             : "[AUTH] Authentication failed");
}

Output Session::login_unavailable(std::string_view why) {
  Output out;
  auth::wipe(login_.password);
  login_ = LoginRequest{};
  state_ = State::authorization;
  err(out, "[SYS/TEMP] " + std::string(why));
  return process(std::move(out));
}

Output Session::login_finished(bool ok_) {
  Output out;
  std::string user = std::move(login_.user);
  auth::wipe(login_.password);
  login_ = LoginRequest{};
  if (ok_) logged_in(user, out);
  else auth_failure(user, auth::Step::Why::bad_credentials, out);
  return process(std::move(out));
}

void Session::logged_in(const std::string& user, Output& out) {
  user_ = user;
  state_ = State::opening;
  out.next = Next::open_mailbox;
}

Output Session::mailbox_opened(Opened result, std::vector<Entry> entries) {
  Output out;
  if (result != Opened::ok) {
    state_ = State::closed;
    out.next = Next::close;
    out.bytes = result == Opened::in_use ? "-ERR [IN-USE] Mailbox is in use by another POP3 session\r\n"
                                         : "-ERR [SYS/TEMP] Cannot open the mailbox, try again later\r\n";
    return out;
  }
  entries_ = std::move(entries);
  deleted_.assign(entries_.size(), false);
  state_ = State::transaction;
  uint64_t octets = 0;
  for (auto& e : entries_) octets += e.octets;
  ok(out, "Logged in, " + std::to_string(entries_.size()) + " messages (" + std::to_string(octets) + " octets)");
  return process(std::move(out));
}

std::optional<size_t> Session::message_arg(std::string_view arg, Output& out) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
  if (arg.empty() || arg.size() > 10 || ec != std::errc() || p != arg.data() + arg.size() || arg[0] == '+') {
    err(out, "Invalid message number");
    return std::nullopt;
  }
  if (n == 0 || n > entries_.size()) {
    err(out, "No such message");
    return std::nullopt;
  }
  if (deleted_[n - 1]) {
    err(out, "Message " + std::to_string(n) + " already deleted");
    return std::nullopt;
  }
  return size_t(n - 1);
}

void Session::cmd_list(std::string_view arg, bool uidl, Output& out) {
  auto value = [&](size_t i) { return uidl ? entries_[i].uidl : std::to_string(entries_[i].octets); };
  if (!arg.empty()) {
    auto i = message_arg(arg, out);
    if (i) ok(out, std::to_string(*i + 1) + " " + value(*i));
    return;
  }
  out.bytes += uidl ? "+OK Unique-ID listing follows\r\n" : "+OK Scan listing follows\r\n";
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (deleted_[i]) continue;
    out.bytes += std::to_string(i + 1);
    out.bytes += ' ';
    out.bytes += value(i);
    out.bytes += "\r\n";
  }
  out.bytes += ".\r\n";
}

void Session::cmd_retr(std::string_view arg, bool top, Output& out) {
  auto [num, rest] = split_word(arg);
  std::optional<uint64_t> lines;
  if (top) {
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
    if (rest.empty() || ec != std::errc() || p != rest.data() + rest.size()) return err(out, "Usage: TOP msg n");
    lines = n;
  } else if (!rest.empty()) {
    return err(out, "Usage: RETR msg");
  }
  auto i = message_arg(num, out);
  if (!i) return;
  send_ = Send{*i, lines, top ? "+OK Top of message follows\r\n"
                              : "+OK " + std::to_string(entries_[*i].octets) + " octets\r\n"};
  state_ = State::sending;
  out.next = Next::send_message;
}

Output Session::message_sent(bool ok_) {
  Output out;
  state_ = State::transaction;
  if (ok_) out.bytes += ".\r\n";
  else err(out, "[SYS/TEMP] Message cannot be read now, try again later");
  return process(std::move(out));
}

void Session::cmd_quit(Output& out) {
  if (state_ != State::transaction) {
    state_ = State::closed;
    out.next = Next::close;
    out.bytes += "+OK " + cfg_.hostname + " POP3 bulwark signing off\r\n";
    return;
  }
  if (std::find(deleted_.begin(), deleted_.end(), true) == deleted_.end()) {
    state_ = State::closed;
    out.next = Next::close;
    out.bytes += "+OK " + cfg_.hostname + " POP3 bulwark signing off\r\n";
    return;
  }
  state_ = State::updating;
  out.next = Next::update;
}

std::vector<size_t> Session::to_delete() const {
  std::vector<size_t> v;
  for (size_t i = 0; i < deleted_.size(); ++i)
    if (deleted_[i]) v.push_back(i);
  return v;
}

Output Session::update_finished(bool ok_) {
  Output out;
  state_ = State::closed;
  out.next = Next::close;
  // RFC 1939 6: -ERR when some deleted message could not be removed.
  out.bytes = ok_ ? "+OK " + cfg_.hostname + " POP3 bulwark signing off (" + std::to_string(to_delete().size()) +
                        " messages deleted)\r\n"
                  : "-ERR [SYS/TEMP] Some deleted messages were not removed\r\n";
  return out;
}

Output Session::tls_started() {
  client_.tls = true;
  buf_.clear();
  discarding_ = false;
  user_.clear();
  return {};  // RFC 2595 4: the client speaks first after the handshake
}

bool MessageEncoder::put(std::string_view in, std::string& out) {
  if (done_) return false;
  out.reserve(out.size() + in.size() + in.size() / 32);
  for (char c : in) {
    if (line_start_) {
      if (in_body_ && body_lines_ && *body_lines_ == 0) {  // TOP has what it asked for
        done_ = true;
        return false;
      }
      line_start_ = false;
      line_empty_ = true;
      if (c == '.') out += '.';  // RFC 1939 3: byte-stuffing
    }
    if (c == '\n') {
      if (!prev_cr_) out += '\r';
      out += '\n';
      prev_cr_ = false;
      line_start_ = true;
      if (in_body_) {
        if (body_lines_) --*body_lines_;
      } else if (line_empty_) {
        in_body_ = true;  // the blank line after the header
      }
      continue;
    }
    if (c != '\r') line_empty_ = false;
    prev_cr_ = c == '\r';
    out += c;
  }
  return true;
}

void MessageEncoder::finish(std::string& out) {
  if (done_) return;
  if (!line_start_) {
    if (!prev_cr_) out += '\r';
    out += '\n';
  }
  line_start_ = true;
  done_ = true;
}

}  // namespace bulwark::pop3
