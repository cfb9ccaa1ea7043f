#include "imap/session.hpp"

#include "core/strings.hpp"
#include "imap/mutf7.hpp"

#include <algorithm>
#include <vector>

namespace bulwark::imap {

namespace {
constexpr size_t max_auth_line = 12288;

// An astring argument as text, or nothing (a streamed literal or a list is not one).
std::optional<std::string> astring(const Token& t) {
  if (!t.is_astring()) return std::nullopt;
  return t.value;
}

}  // namespace

namespace {
// Before login: literals of a few kilobytes (a LOGIN's password), and one over that
// bound that the client would push without asking ends the connection (`a LOGIN
// {99999999+}` must not be read and thrown away at line speed).
Limits pre_auth(Limits l) {
  l.max_literal = std::min<uint64_t>(l.max_literal, kPreAuthLiteral);
  l.max_inline_literal = std::min<uint64_t>(l.max_inline_literal, kPreAuthLiteral);
  l.oversize_fatal = true;
  return l;
}
}  // namespace

Session::Session(Config cfg, Hooks& hooks, ClientInfo client)
    : cfg_(std::move(cfg)), hooks_(hooks), client_(std::move(client)), reader_(pre_auth(cfg_.limits)) {}

Session::~Session() {
  auth::wipe(login_.password);
  auth::wipe(auth_buf_);
}

std::string Session::capabilities() const {
  // Only what works (docs/mailbox.md): clients use what is advertised.
  std::string c =
      "IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ENABLE ID IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN "
      "LIST-EXTENDED LIST-STATUS SPECIAL-USE ESEARCH SEARCHRES STATUS=SIZE CONDSTORE QRESYNC SORT ESORT "
      "THREAD=ORDEREDSUBJECT THREAD=REFERENCES COMPRESS=DEFLATE MULTIAPPEND APPENDLIMIT=" +
      std::to_string(cfg_.limits.max_literal);
  if (state_ == State::not_authenticated) {
    if (cfg_.starttls_available && !client_.tls) c += " STARTTLS";
    if (!plaintext_allowed()) c += " LOGINDISABLED";
    for (auto m : cfg_.auth.mechanisms)
      if (cfg_.auth.usable(m, client_.tls)) c += std::string(" AUTH=") + auth::mech_name(m);
  }
  return c;
}

void Session::tagged(Output& out, const std::string& tag, std::string_view status, std::string_view text) {
  out.bytes += tag + " " + std::string(status) + " " + std::string(text) + "\r\n";
}

void Session::bad(Output& out, const std::string& tag, std::string_view text) {
  ++failed_;
  tagged(out, tag, "BAD", text);
  if (cfg_.max_failed_commands && failed_ >= cfg_.max_failed_commands) {
    hooks_.refused("too many failed commands (" + std::to_string(failed_) + ")");
    out.bytes += "* BYE Too many errors, closing connection\r\n";
    out.next = Next::close;
    state_ = State::logout;
  }
}

// A NO is an answer to a well-formed command ("no such mailbox", "over quota"):
// it never counts toward limits.max_failed_commands -- only protocol errors (BAD) do,
// so that a conformant client is never cut off for asking (login failures have their
// own block).
void Session::no(Output& out, const std::string& tag, std::string_view text) { tagged(out, tag, "NO", text); }

Output Session::greet() {
  Output out;
  out.bytes = "* OK [CAPABILITY " + capabilities() + "] " + cfg_.hostname + " IMAP bulwark ready\r\n";
  return out;
}

Output Session::shutdown(Closing why) {
  Output out;
  state_ = State::logout;
  out.next = Next::close;
  out.bytes = why == Closing::timeout ? "* BYE Idle timeout, closing connection\r\n"
                                      : "* BYE Server shutting down, closing connection\r\n";
  return out;
}

Output Session::feed(std::string_view bytes) {
  if (state_ == State::logout) return {};
  if (mech_) {
    auth_buf_.append(bytes);
  } else {
    give_back();
    reader_.feed(bytes);
  }
  return process({});
}

Output Session::process(Output out) {
  while (out.next == Next::read && state_ != State::logout && state_ != State::verifying) {
    give_back();
    if (fetch_) {  // a long FETCH answer goes on first
      continue_fetch(out);
      continue;
    }
    if (mech_) {  // an AUTHENTICATE exchange: raw lines, not commands
      size_t nl = auth_buf_.find('\n');
      if (nl == std::string::npos) {
        if (auth_buf_.size() > max_auth_line) {
          mech_.reset();
          auth::wipe(auth_buf_);
          bad(out, tag_, "Authentication exchange line too long");
        }
        break;
      }
      std::string line = auth_buf_.substr(0, nl);
      auth_buf_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auth_line(line, out);
      auth::wipe(line);
      continue;
    }
    Reader::Event e = reader_.next();
    using K = Reader::Event::Kind;
    if (e.kind == K::none) break;
    if (e.kind == K::continuation) {
      out.bytes += "+ Ready for literal data\r\n";
      continue;
    }
    if (e.kind == K::literal_begin) {
      Streamed st;
      if (state_ == State::selected || state_ == State::authenticated) {
        // APPEND mailbox ...: to a file in that folder as it comes, where offered
        std::optional<std::string> name;
        bool append = iequals(e.cmd.name, "APPEND");
        if (append && !e.cmd.args.empty()) name = name_arg(e.cmd.args[0]);
        std::string error;
        if (name) st.sink = mailbox_->begin_append(*name, error);
        if (!st.sink) {  // held in memory for an APPEND the mailbox takes whole; other commands use no large literal
          size_t held = 0;
          for (auto& s : streamed_) held += s.buf.size();
          st.failed = !append || held + e.size > cfg_.limits.max_literal;  // all held together are bounded
          if (!st.failed) st.buf.reserve(size_t(e.size));
        }
      } else {
        st.failed = true;
      }
      streamed_.push_back(std::move(st));
      continue;
    }
    if (e.kind == K::literal_data) {  // a large literal: bounded by the reader's max_literal
      Streamed& st = streamed_.back();
      if (st.sink) st.failed |= !st.sink->write(e.data);
      else if (!st.failed) st.buf.append(e.data);
      continue;
    }
    if (state_ == State::idle) {  // only "DONE" ends IDLE (RFC 2177)
      std::string tag = idle_tag_;
      state_ = folder_ ? State::selected : State::authenticated;
      if (e.kind == K::error && iequals(e.tag, "DONE") && e.reason == "Missing command") {
        report_changes(out);
        tagged(out, tag, "OK", "IDLE terminated");
      } else {
        bad(out, tag, "Expected DONE");
      }
      continue;
    }
    if (e.kind == K::error) {
      if (e.fatal) {
        hooks_.refused(e.reason);
        out.bytes += "* BYE " + e.reason + "\r\n";
        out.next = Next::close;
        state_ = State::logout;
        break;
      }
      streamed_.clear();
      if (e.too_big) no(out, e.tag, "[TOOBIG] " + e.reason);
      else bad(out, e.tag, e.reason);
      continue;
    }
    command(e.cmd, out);
    streamed_.clear();  // what the command did not commit: its files go
  }
  return out;
}

void Session::command(Command& c, Output& out) {
  const std::string& n = c.name;
  if (n == "CAPABILITY") {
    if (!c.args.empty()) return bad(out, c.tag, "CAPABILITY takes no arguments");
    out.bytes += "* CAPABILITY " + capabilities() + "\r\n";
    return tagged(out, c.tag, "OK", "CAPABILITY completed");
  }
  if (n == "NOOP") {
    if (state_ == State::selected) report_changes(out);
    return tagged(out, c.tag, "OK", "NOOP completed");
  }
  if (n == "LOGOUT") {
    out.bytes += "* BYE " + cfg_.hostname + " IMAP bulwark signing off\r\n";
    tagged(out, c.tag, "OK", "LOGOUT completed");
    out.next = Next::close;
    state_ = State::logout;
    return;
  }
  if (n == "ID") return cmd_id(c, out);
  if (state_ == State::not_authenticated) {
    if (n == "STARTTLS") {
      if (client_.tls) return bad(out, c.tag, "TLS is already active");
      if (!cfg_.starttls_available) return bad(out, c.tag, "STARTTLS not available");
      reader_.discard_buffer();  // sent in clear behind STARTTLS: never executed
      tagged(out, c.tag, "OK", "Begin TLS negotiation now");
      out.next = Next::starttls;
      return;
    }
    if (cfg_.auth.tls_first(client_.tls)) {
      static const std::string_view known[] = {"LOGIN", "AUTHENTICATE", "ENABLE", "SELECT", "EXAMINE", "LIST"};
      bool is_known = false;
      for (auto k : known) is_known |= n == k;
      hooks_.refused((is_known ? n : std::string("a command")) + " before STARTTLS");
      return no(out, c.tag, "[PRIVACYREQUIRED] Use STARTTLS first");
    }
    if (n == "LOGIN") return cmd_login(c, out);
    if (n == "AUTHENTICATE") return cmd_authenticate(c, out);
    if (n == "STARTTLS" || n == "ENABLE" || n == "SELECT" || n == "EXAMINE" || n == "LIST" || n == "LSUB" ||
        n == "STATUS" || n == "CREATE" || n == "DELETE" || n == "RENAME" || n == "SUBSCRIBE" ||
        n == "UNSUBSCRIBE" || n == "APPEND" || n == "NAMESPACE" || n == "IDLE")
      return bad(out, c.tag, "Log in first");
    return bad(out, c.tag, "Unknown command");
  }
  // authenticated
  if (n == "LOGIN" || n == "AUTHENTICATE" || n == "STARTTLS") return bad(out, c.tag, "Already logged in");
  if (n == "ENABLE") return cmd_enable(c, out);
  if (n == "COMPRESS") {  // RFC 4978
    if (c.args.size() != 1 || !iequals(c.args[0].value, "DEFLATE")) return bad(out, c.tag, "Usage: COMPRESS DEFLATE");
    if (compressed_) return no(out, c.tag, "[COMPRESSIONACTIVE] DEFLATE is active already");
    compressed_ = true;
    tagged(out, c.tag, "OK", "DEFLATE active");
    out.next = Next::compress;
    return;
  }
  if (!mailbox_) return no(out, c.tag, "[UNAVAILABLE] The mailbox is not open");
  if (n == "NAMESPACE") {
    out.bytes += "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n";
    return tagged(out, c.tag, "OK", "NAMESPACE completed");
  }
  if (n == "LIST") return cmd_list(c, out, false);
  if (n == "LSUB") return cmd_list(c, out, true);
  if (n == "STATUS") return cmd_status(c, out);
  if (n == "CREATE" || n == "DELETE" || n == "RENAME" || n == "SUBSCRIBE" || n == "UNSUBSCRIBE")
    return cmd_folder_change(c, out);
  if (n == "SELECT" || n == "EXAMINE") return cmd_select(c, out, n == "EXAMINE");
  if (n == "APPEND") return cmd_append(c, out);
  if (n == "IDLE") {
    if (!c.args.empty()) return bad(out, c.tag, "IDLE takes no arguments");
    idle_tag_ = c.tag;
    state_ = State::idle;
    out.bytes += "+ idling\r\n";
    report_changes(out);
    return;
  }
  bool selected_only = n == "FETCH" || n == "UID FETCH" || n == "STORE" || n == "UID STORE" || n == "EXPUNGE" ||
                       n == "UID EXPUNGE" || n == "SEARCH" || n == "UID SEARCH" || n == "COPY" || n == "UID COPY" ||
                       n == "MOVE" || n == "UID MOVE" || n == "CLOSE" || n == "UNSELECT" || n == "CHECK" ||
                       n == "SORT" || n == "UID SORT" || n == "THREAD" || n == "UID THREAD";
  if (selected_only && state_ != State::selected) return bad(out, c.tag, "No mailbox selected");
  bool uid = n.rfind("UID ", 0) == 0;
  std::string base = uid ? n.substr(4) : n;
  if (base == "FETCH") return cmd_fetch(c, out, uid);
  if (base == "STORE") return cmd_store(c, out, uid);
  if (base == "EXPUNGE") return cmd_expunge(c, out, uid);
  if (base == "SEARCH") return cmd_search(c, out, uid);
  if (base == "SORT") return cmd_sort(c, out, uid);
  if (base == "THREAD") return cmd_thread(c, out, uid);
  if (base == "COPY" || base == "MOVE") return cmd_copy(c, out, uid, base == "MOVE");
  if (n == "CHECK") {
    report_changes(out);
    return tagged(out, c.tag, "OK", "CHECK completed");
  }
  if (n == "CLOSE" || n == "UNSELECT") {
    if (n == "CLOSE" && !readonly_) {  // expunge silently (RFC 9051 6.4.1)
      std::vector<uint32_t> gone;
      for (auto& m : folder_->messages())
        if (m.flags.find('T') != std::string::npos) gone.push_back(m.uid);
      std::string error;
      if (!gone.empty()) folder_->expunge(gone, true, error);
    }
    deselect();
    return tagged(out, c.tag, "OK", n + " completed");
  }
  return bad(out, c.tag, "Unknown command");
}

void Session::cmd_id(Command& c, Output& out) {
  // RFC 2971: the client's parameters are not needed; ours say what this is.
  if (c.args.size() != 1 || (c.args[0].kind != Token::Kind::list && !(c.args[0].kind == Token::Kind::atom &&
                                                                       iequals(c.args[0].value, "NIL"))))
    return bad(out, c.tag, "Usage: ID (\"name\" \"value\" ...) or ID NIL");
  out.bytes += "* ID (\"name\" \"bulwark\")\r\n";
  tagged(out, c.tag, "OK", "ID completed");
}

void Session::cmd_enable(Command& c, Output& out) {
  if (c.args.empty()) return bad(out, c.tag, "ENABLE needs a capability");
  std::string enabled;
  for (auto& a : c.args) {
    if (a.kind != Token::Kind::atom) return bad(out, c.tag, "ENABLE takes capability names");
    std::string cap = to_upper(a.value);
    if (cap == "IMAP4REV2" && !rev2_) rev2_ = true, enabled += " IMAP4rev2";
    else if (cap == "CONDSTORE" && !condstore_) condstore_ = true, enabled += " CONDSTORE";
    else if (cap == "QRESYNC" && !qresync_) qresync_ = condstore_ = true, enabled += " QRESYNC";  // RFC 7162 3.2.3
    else if (cap == "UTF8=ACCEPT" && !utf8_) utf8_ = true, enabled += " UTF8=ACCEPT";
  }
  out.bytes += "* ENABLED" + enabled + "\r\n";
  tagged(out, c.tag, "OK", "ENABLE completed");
}

void Session::cmd_login(Command& c, Output& out) {
  if (!plaintext_allowed()) {
    hooks_.refused("LOGIN without TLS");
    return no(out, c.tag, "[PRIVACYREQUIRED] Plaintext login is disabled without TLS: use STARTTLS");
  }
  if (c.args.size() != 2) return bad(out, c.tag, "Usage: LOGIN user password");
  auto user = astring(c.args[0]), pw = astring(c.args[1]);
  if (!user || !pw) return bad(out, c.tag, "Usage: LOGIN user password");
  if (hooks_.login_blocked()) {
    auth::wipe(*pw);
    return no(out, c.tag, "[UNAVAILABLE] Too many failed logins from your address, try again later");
  }
  login_.user = std::move(*user);
  login_.password = std::move(*pw);
  auth::wipe(c.args[1].value);
  mech_name_ = "LOGIN";
  tag_ = c.tag;
  state_ = State::verifying;
  out.next = Next::verify;
}

void Session::cmd_authenticate(Command& c, Output& out) {
  if (c.args.empty() || c.args.size() > 2 || c.args[0].kind != Token::Kind::atom)
    return bad(out, c.tag, "Usage: AUTHENTICATE mechanism [initial-response]");
  auto m = auth::mech_from_name(c.args[0].value);
  bool configured = false;
  for (auto k : cfg_.auth.mechanisms) configured |= m && k == *m;
  if (!configured) return no(out, c.tag, "Unsupported authentication mechanism");
  if (!cfg_.auth.usable(*m, client_.tls)) {
    hooks_.refused(std::string("AUTHENTICATE ") + auth::mech_name(*m) + " without TLS");
    return no(out, c.tag, "[PRIVACYREQUIRED] This mechanism needs TLS: use STARTTLS");
  }
  if (hooks_.login_blocked())
    return no(out, c.tag, "[UNAVAILABLE] Too many failed logins from your address, try again later");
  std::optional<std::string> init;
  if (c.args.size() == 2) {
    if (!c.args[1].is_astring()) return bad(out, c.tag, "Bad initial response");
    if (c.args[1].value == "=") init = std::string();
    else if (!(init = auth::base64_decode(c.args[1].value))) return bad(out, c.tag, "Cannot decode the initial response");
    auth::wipe(c.args[1].value);
  }
  mech_ = auth::make_mechanism(*m, hooks_.secrets(), {cfg_.hostname, {}});
  mech_name_ = auth::mech_name(*m);
  tag_ = c.tag;
  auth_final_ = false;
  auth_buf_ = reader_.take_buffer();  // what follows are the exchange's lines
  if (!hooks_.begin_check()) {
    mech_.reset();
    if (init) auth::wipe(*init);
    return no(out, c.tag, "[UNAVAILABLE] Too many logins at once from your address, try again later");
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
      auth_final_ = true;  // RFC 9051 6.2.2: success data as one more challenge
      auth_user_ = step.user;
      out.bytes += "+ " + auth::base64_encode(step.data) + "\r\n";
      return;
    case auth::Step::failure: mech_.reset(); return auth_failure(step.user, step.why, out);
  }
}

void Session::auth_line(std::string_view line, Output& out) {
  if (line == "*") {
    mech_.reset();
    return bad(out, tag_, "Authentication cancelled");
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
    return bad(out, tag_, "Cannot decode the response");
  }
  if (!hooks_.begin_check()) {
    mech_.reset();
    auth::wipe(*decoded);
    return no(out, tag_, "[UNAVAILABLE] Too many logins at once from your address, try again later");
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
  state_ = State::not_authenticated;
  if (why == auth::Step::Why::malformed) return bad(out, tag_, "Malformed authentication exchange");
  no(out, tag_, "[AUTHENTICATIONFAILED] Authentication failed");
}

Output Session::login_unavailable(std::string_view why) {
  Output out;
  auth::wipe(login_.password);
  login_ = LoginRequest{};
  state_ = State::not_authenticated;
  no(out, tag_, "[UNAVAILABLE] " + std::string(why));
  return process(std::move(out));
}

Output Session::login_finished(bool ok) {
  Output out;
  std::string user = std::move(login_.user);
  auth::wipe(login_.password);
  login_ = LoginRequest{};
  state_ = State::not_authenticated;
  if (ok) logged_in(user, out);
  else auth_failure(user, auth::Step::Why::bad_credentials, out);
  if (out.next == Next::logged_in) return out;
  return process(std::move(out));
}

void Session::logged_in(const std::string& user, Output& out) {
  user_ = user;
  state_ = State::authenticated;
  reader_.set_limits(cfg_.limits);
  tagged(out, tag_, "OK", "[CAPABILITY " + capabilities() + "] Logged in");
  out.next = Next::logged_in;
}

Output Session::resume() {
  Output out;
  if (fetch_) continue_fetch(out);
  if (out.next == Next::more) return out;
  return process(std::move(out));
}

void Session::give_back() {
  // An AUTHENTICATE exchange is over (or ended at once): what the client sent after
  // it are commands again, in front of anything newer.
  if (mech_ || auth_buf_.empty()) return;
  std::string rest = reader_.take_buffer();
  reader_.feed(auth_buf_);
  reader_.feed(rest);
  auth::wipe(auth_buf_);
}

Output Session::tls_started() {
  client_.tls = true;
  reader_.discard_buffer();
  return {};  // RFC 9051 6.2.1: the client speaks first
}

}  // namespace bulwark::imap
