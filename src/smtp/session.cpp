#include "smtp/session.hpp"

#include <charconv>
#include <ctime>
#include <set>

#include "core/strings.hpp"
#include "core/units.hpp"

namespace bulwark::smtp {
namespace {

std::string rfc5322_date(std::chrono::system_clock::time_point tp) {
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

// Splits "VERB rest" -> verb, rest. The verb is compared case-insensitively.
std::pair<std::string_view, std::string_view> split_verb(std::string_view line) {
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return {line, {}};
  return {line.substr(0, sp), line.substr(sp + 1)};
}

bool valid_helo_arg(std::string_view a) {
  if (a.empty() || a.size() > 255) return false;
  if (a.front() == '[') {
    // address literal: reuse the mailbox parser's literal check
    return parse_mailbox("x@" + std::string(a)).has_value();
  }
  return valid_domain(a, true);
}

// Parses "KEY=VALUE KEY2" ESMTP parameters. Returns false on syntax error.
bool parse_params(std::string_view s, std::vector<std::pair<std::string, std::string>>& out) {
  while (!s.empty()) {
    size_t sp = s.find(' ');
    std::string_view tok = s.substr(0, sp);
    s = sp == std::string_view::npos ? std::string_view{} : trim(s.substr(sp + 1));
    if (tok.empty()) continue;
    size_t eq = tok.find('=');
    std::string key = to_lower(tok.substr(0, eq));
    std::string val = eq == std::string_view::npos ? std::string() : std::string(tok.substr(eq + 1));
    if (key.empty()) return false;
    for (char c : key)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    for (auto& p : out)
      if (p.first == key) return false;  // duplicate parameter
    out.emplace_back(std::move(key), std::move(val));
  }
  return true;
}

std::optional<uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Does the header section of `msg` have a field named `name` (lower-case)?
bool has_header_field(std::string_view msg, std::string_view name) {
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t eol = msg.find("\r\n", pos);
    std::string_view line = msg.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    if (line.empty()) return false;  // end of the header section
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && line[0] != ' ' && line[0] != '\t' &&
        iequals(trim(line.substr(0, colon)), name))
      return true;
    if (eol == std::string_view::npos) break;
    pos = eol + 2;
  }
  return false;
}

}  // namespace

const char* service_name(Service s) {
  switch (s) {
    case Service::smtp: return "smtp";
    case Service::submission: return "submission";
    case Service::smtps: return "smtps";
  }
  return "?";
}

ServerSession::ServerSession(SessionConfig cfg, SessionHooks& hooks, ClientInfo client)
    : cfg_(std::move(cfg)), hooks_(hooks), client_(std::move(client)) {}

void ServerSession::reply(Output& out, const Reply& r) { out.bytes += r.render(); }

void ServerSession::fail(Output& out, const Reply& r) {
  reply(out, r);
  ++failed_;
  if (cfg_.limits.max_failed_commands && failed_ >= cfg_.limits.max_failed_commands) {
    hooks_.refused("too many failed commands (" + std::to_string(failed_) + ")");
    reply(out, Reply(421, "4.7.0", cfg_.hostname + " Too many errors, closing connection"));
    out.next = Next::close;
    set_state(State::closed);
  }
}

Output ServerSession::greet() {
  Output out;
  reply(out, Reply(220, "", cfg_.hostname + " ESMTP bulwark"));
  return out;
}

Output ServerSession::shutdown(Closing why) {
  Output out;
  if (why == Closing::timeout)
    reply(out, Reply(421, "4.4.2", cfg_.hostname + " Timeout, closing connection"));
  else
    reply(out, Reply(421, "4.3.2", cfg_.hostname + " Server shutting down, closing connection"));
  out.next = Next::close;
  set_state(State::closed);
  return out;
}

void ServerSession::reset_transaction() {
  mail_given_ = false;
  bdat_used_ = false;
  bdat_failed_ = false;
  bdat_last_ = false;
  bdat_remaining_ = 0;
  data_mid_line_ = false;
  env_ = Envelope{};
  sink_.reset();
}

Output ServerSession::feed(std::string_view bytes) {
  if (state_ == State::closed) return {};
  buf_.append(bytes);
  return process(Output{});
}

Output ServerSession::process(Output out) {
  for (;;) {
    if (out.next != Next::read) break;
    bool progressed = false;
    switch (state_) {
      case State::command: progressed = process_command_line(out); break;
      case State::data: progressed = process_data(out); break;
      case State::bdat: progressed = process_bdat(out); break;
      case State::auth: progressed = process_auth_line(out); break;
      default: break;
    }
    if (!progressed) break;
  }
  // Compact the consumed prefix once per call; keeps each call linear.
  if (rpos_ > 0) {
    buf_.erase(0, rpos_);
    rpos_ = 0;
  }
  if (state_ == State::closed) {
    buf_.clear();
    out.next = Next::close;
  }
  return out;
}

ServerSession::LineResult ServerSession::take_line(Output& out, size_t limit, std::string_view& line,
                                                   const Reply& too_long) {
  std::string_view avail(buf_.data() + rpos_, buf_.size() - rpos_);
  size_t lf = avail.find('\n');
  if (lf == std::string_view::npos) {
    if (avail.size() > limit) {
      // Drop what we have but a trailing CR (it may pair with the next LF).
      size_t keep = avail.back() == '\r' ? 1 : 0;
      rpos_ += avail.size() - keep;
      discarding_long_line_ = true;
    }
    return LineResult::more;
  }
  std::string_view raw = avail.substr(0, lf + 1);
  rpos_ += lf + 1;
  if (discarding_long_line_) {
    discarding_long_line_ = false;
    fail(out, too_long);
    return LineResult::bad;
  }
  if (raw.size() < 2 || raw[raw.size() - 2] != '\r') {
    fail(out, Reply(500, "5.5.2", "Bare LF not allowed; lines must end with CRLF"));
    return LineResult::bad;
  }
  line = raw.substr(0, raw.size() - 2);
  if (line.find('\r') != std::string_view::npos) {
    fail(out, Reply(500, "5.5.2", "Bare CR not allowed"));
    return LineResult::bad;
  }
  if (raw.size() > limit) {
    fail(out, too_long);
    return LineResult::bad;
  }
  return LineResult::line;
}

bool ServerSession::process_command_line(Output& out) {
  std::string_view avail(buf_.data() + rpos_, buf_.size() - rpos_);
  // RFC 4954 4: an AUTH command with its initial response may be longer.
  size_t limit = cfg_.limits.max_command_line;
  if (istarts_with(avail, "AUTH ") && !cfg_.auth.mechanisms.empty())
    limit = std::max(limit, cfg_.auth.max_line);
  std::string_view line;
  LineResult r = take_line(out, limit, line, Reply(500, "5.5.2", "Line too long"));
  if (r == LineResult::more) return false;
  if (r == LineResult::line) dispatch(line, out);
  return true;
}

void ServerSession::dispatch(std::string_view line, Output& out) {
  auto [verb_sv, arg] = split_verb(line);
  std::string verb = to_lower(verb_sv);
  if (data_refused_) {
    data_refused_ = false;
    static const std::set<std::string> verbs{"ehlo", "helo", "mail", "rcpt", "data",  "bdat", "starttls",
                                             "rset", "noop", "quit", "vrfy", "expn", "help", "auth"};
    if (!verbs.count(verb)) return drop_pipelined_body(out);  // a header line, not a command
  }
  if (need_tls_first() && verb != "ehlo" && verb != "helo" && verb != "starttls" && verb != "quit" &&
      verb != "noop" && verb != "rset" && verb != "help")
    return fail(out, Reply(530, "5.7.0", "Must issue a STARTTLS command first"));
  if (verb == "ehlo") return cmd_ehlo(trim(arg), true, out);
  if (verb == "helo") return cmd_ehlo(trim(arg), false, out);
  if (verb == "mail") return cmd_mail(arg, out);
  if (verb == "rcpt") return cmd_rcpt(arg, out);
  if (verb == "data") return cmd_data(arg, out);
  if (verb == "bdat") return cmd_bdat(arg, out);
  if (verb == "starttls") return cmd_starttls(arg, out);
  if (verb == "rset") {
    if (!trim(arg).empty()) return fail(out, Reply(501, "5.5.4", "Syntax: RSET"));
    reset_transaction();
    return reply(out, Reply(250, "2.0.0", "Ok"));
  }
  if (verb == "noop") return reply(out, Reply(250, "2.0.0", "Ok"));
  if (verb == "quit") {
    reply(out, Reply(221, "2.0.0", cfg_.hostname + " closing connection"));
    out.next = Next::close;
    set_state(State::closed);
    return;
  }
  if (verb == "vrfy") {
    if (trim(arg).empty()) return fail(out, Reply(501, "5.5.4", "Syntax: VRFY address"));
    return reply(out, Reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"));
  }
  if (verb == "expn") return fail(out, Reply(502, "5.5.1", "EXPN not available"));
  if (verb == "help")
    return reply(out, Reply(214, "2.0.0",
                            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH"));
  if (verb == "auth") return cmd_auth(arg, out);
  fail(out, Reply(500, "5.5.2", "Command not recognized"));
}

void ServerSession::cmd_ehlo(std::string_view arg, bool extended, Output& out) {
  if (!valid_helo_arg(arg))
    return fail(out, Reply(501, "5.5.4", extended ? "Syntax: EHLO hostname" : "Syntax: HELO hostname"));
  reset_transaction();
  helo_ = std::string(arg);
  esmtp_ = extended;
  if (!extended) return reply(out, Reply(250, "", cfg_.hostname));
  std::vector<std::string> lines{cfg_.hostname + " Hello [" + client_.ip + "]", "PIPELINING"};
  lines.push_back(cfg_.limits.max_message_size ? "SIZE " + std::to_string(cfg_.limits.max_message_size)
                                               : std::string("SIZE"));
  lines.insert(lines.end(), {"8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"});
  if (cfg_.starttls_available && !client_.tls) lines.push_back("STARTTLS");
  std::string mechs;
  for (auto m : cfg_.auth.mechanisms)
    if (mechanism_usable(m)) mechs += std::string(" ") + auth::mech_name(m);
  if (!mechs.empty()) lines.push_back("AUTH" + mechs);
  lines.push_back("HELP");
  reply(out, Reply(250, "", std::move(lines)));
}

void ServerSession::cmd_mail(std::string_view arg, Output& out) {
  if (helo_.empty()) return fail(out, Reply(503, "5.5.1", "Send EHLO first"));
  if (mail_given_) return fail(out, Reply(503, "5.5.1", "Nested MAIL command"));
  if (!istarts_with(arg, "from:")) return fail(out, Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"));
  if (cfg_.service == Service::submission && auth_user_.empty())
    return fail(out, Reply(530, "5.7.0", "Authentication required"));
  auto parsed = parse_path(trim(arg.substr(5)), true, false);
  if (!parsed.path) {
    if (parsed.error == AddressError::too_long) return fail(out, Reply(501, "5.1.7", "Sender address too long"));
    return fail(out, Reply(501, "5.1.7", "Bad sender address syntax"));
  }
  std::vector<std::pair<std::string, std::string>> params;
  if (!parse_params(parsed.path->params, params) || (!esmtp_ && !params.empty()))
    return fail(out, Reply(501, "5.5.4", "Bad MAIL parameters"));
  bool smtputf8 = false;
  for (auto& [k, v] : params) {
    if (k == "size") {
      auto n = parse_decimal(v);
      if (!n) return fail(out, Reply(501, "5.5.4", "Bad SIZE parameter"));
      if (cfg_.limits.max_message_size && *n > cfg_.limits.max_message_size)
      {
        hooks_.refused("declared message size " + std::to_string(*n) + " over the limit");
        return reply(out, Reply(552, "5.3.4", "Message size exceeds fixed maximum message size"));
      }
    } else if (k == "body") {
      std::string b = to_lower(v);
      if (b != "7bit" && b != "8bitmime") return fail(out, Reply(501, "5.5.4", "Bad BODY parameter"));
    } else if (k == "smtputf8") {
      if (!v.empty()) return fail(out, Reply(501, "5.5.4", "SMTPUTF8 takes no value"));
      smtputf8 = true;
    } else {
      return fail(out, Reply(555, "5.5.4", "Unsupported MAIL parameter " + sanitize(k, 40)));
    }
  }
  const Address& a = parsed.path->address;
  if (a.utf8 && !smtputf8) return fail(out, Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"));
  if (auto refusal = hooks_.check_sender(a)) return reply(out, *refusal);
  if (hooks_.sender_needs_check(a)) {
    checking_sender_ = a;
    checking_smtputf8_ = smtputf8;
    set_state(State::wait_check);
    out.next = Next::check;
    return;
  }
  accept_mail(a, smtputf8, out);
}

void ServerSession::accept_mail(const Address& a, bool smtputf8, Output& out) {
  reset_transaction();
  mail_given_ = true;
  env_.sender = a.str();
  env_.smtputf8 = smtputf8;
  env_.helo = helo_;
  env_.client_ip = client_.ip;
  env_.auth_user = auth_user_;
  reply(out, Reply(250, "2.1.0", "Ok"));
}

Output ServerSession::check_finished(std::optional<Reply> refusal) {
  Output out;
  set_state(State::command);
  if (refusal) reply(out, *refusal);
  else accept_mail(checking_sender_, checking_smtputf8_, out);
  checking_sender_ = Address{};
  return process(std::move(out));
}

void ServerSession::cmd_rcpt(std::string_view arg, Output& out) {
  if (!mail_given_) return fail(out, Reply(503, "5.5.1", "Need MAIL before RCPT"));
  if (bdat_used_) return fail(out, Reply(503, "5.5.1", "RCPT not allowed during BDAT"));
  if (!istarts_with(arg, "to:")) return fail(out, Reply(501, "5.5.4", "Syntax: RCPT TO:<address>"));
  auto parsed = parse_path(trim(arg.substr(3)), false, true);
  if (!parsed.path) {
    if (parsed.error == AddressError::too_long) return fail(out, Reply(501, "5.1.3", "Recipient address too long"));
    return fail(out, Reply(501, "5.1.3", "Bad recipient address syntax"));
  }
  if (!parsed.path->params.empty())
    return fail(out, Reply(555, "5.5.4", "Unsupported RCPT parameter"));
  Address a = parsed.path->address;
  // <Postmaster> keeps an empty domain: the hooks resolve it (RFC 5321 4.5.1).
  if (a.utf8 && !env_.smtputf8) return fail(out, Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"));
  // Count distinct RCPT commands accepted so far against the limit.
  std::set<std::string> given;
  for (auto& r : env_.recipients) given.insert(r.rcpt);
  if (cfg_.limits.max_recipients && given.size() >= cfg_.limits.max_recipients) {
    hooks_.refused("more than " + std::to_string(cfg_.limits.max_recipients) + " recipients");
    return fail(out, Reply(452, "4.5.3", "Too many recipients"));  // counts: a client that goes on is broken
  }
  RecipientLookup lk = hooks_.lookup_recipient(a);
  std::string rcpt = a.str();
  auto refused = [&](Output& o) {
    auto r = hooks_.check_recipient(env_.sender, a);
    if (!r) return false;
    if (r->code >= 500) fail(o, *r);
    else reply(o, *r);
    return true;
  };
  switch (lk.kind) {
    case RecipientLookup::local:
      if (!lk.mailboxes.empty() || !lk.remote.empty())
        if (refused(out)) return;
      for (auto& m : lk.mailboxes) env_.recipients.push_back({rcpt, m, true});
      for (auto& r : lk.remote) env_.recipients.push_back({rcpt, r, false});
      if (lk.mailboxes.empty() && lk.remote.empty())  // e.g. an empty group
        return reply(out, Reply(550, "5.1.1", "Recipient address has no mailbox"));
      return reply(out, Reply(250, "2.1.5", "Ok"));
    case RecipientLookup::unknown:
      ++unknown_rcpts_;
      if (hooks_.unknown_recipient()) {
        reply(out, Reply(421, "4.7.1", cfg_.hostname + " Too many unknown recipients, closing connection"));
        out.next = Next::close;
        set_state(State::closed);
        return;
      }
      return reply(out, Reply(550, "5.1.1", "User unknown"));
    case RecipientLookup::temp_failure:
      return reply(out, Reply(451, "4.3.0", "Temporary lookup failure, try again later"));
    case RecipientLookup::not_local:
      if (!hooks_.may_relay(a)) return fail(out, Reply(554, "5.7.1", "Relaying denied"));  // counts, like Postfix
      if (refused(out)) return;
      env_.recipients.push_back({rcpt, rcpt, false});
      return reply(out, Reply(250, "2.1.5", "Ok"));
  }
}

void ServerSession::refuse_data(Output& out, const Reply& r) {
  fail(out, r);
  if (state_ == State::closed) return;
  // RFC 2920 3.1: a client waits for the reply to DATA before it sends the message.
  // Bytes already behind a refused DATA are a message body that would otherwise run
  // as commands (a nested MAIL/RCPT/DATA in it would be executed): end the session.
  if (buffered() > 0) return drop_pipelined_body(out);
  data_refused_ = true;  // and if it arrives a moment later, its first line tells
}

void ServerSession::drop_pipelined_body(Output& out) {
  hooks_.refused("message content sent without waiting for the reply to DATA");
  reply(out, Reply(421, "4.5.0", cfg_.hostname + " Message content sent before DATA was accepted, closing"));
  out.next = Next::close;
  set_state(State::closed);
}

void ServerSession::cmd_data(std::string_view arg, Output& out) {
  if (!trim(arg).empty()) return refuse_data(out, Reply(501, "5.5.4", "Syntax: DATA"));
  if (!mail_given_) return refuse_data(out, Reply(503, "5.5.1", "Need MAIL command"));
  if (bdat_used_) return refuse_data(out, Reply(503, "5.5.1", "DATA not allowed after BDAT"));
  if (env_.recipients.empty()) return refuse_data(out, Reply(554, "5.5.1", "No valid recipients"));
  sink_ = std::make_unique<MessageSink>(cfg_.limits.max_message_size, cfg_.limits.max_text_line, hooks_.body_spill(),
                                      cfg_.hostname);
  data_mid_line_ = false;
  reply(out, Reply(354, "", "End data with <CR><LF>.<CR><LF>"));
  set_state(State::data);
}

bool ServerSession::process_data(Output& out) {
  bool progressed = false;
  for (;;) {
    std::string_view avail(buf_.data() + rpos_, buf_.size() - rpos_);
    size_t crlf = avail.find("\r\n");
    if (crlf == std::string_view::npos) {
      // An over-long partial line: hand it to the sink (which flags it) and keep
      // only a trailing CR that may begin the CRLF.
      if (avail.size() > cfg_.limits.max_text_line) {
        size_t take = avail.size() - (avail.back() == '\r' ? 1 : 0);
        std::string_view part = avail.substr(0, take);
        if (!data_mid_line_ && !part.empty() && part.front() == '.') part.remove_prefix(1);
        sink_->append(part);
        rpos_ += take;
        data_mid_line_ = true;
        progressed = true;
      }
      return progressed;
    }
    std::string_view line = avail.substr(0, crlf);
    rpos_ += crlf + 2;
    progressed = true;
    if (!data_mid_line_ && line == ".") {
      set_state(State::command);
      finish_message(out);
      return true;
    }
    if (!data_mid_line_ && !line.empty() && line.front() == '.') line.remove_prefix(1);
    sink_->append(line);
    sink_->append("\r\n");
    data_mid_line_ = false;
  }
}

void ServerSession::cmd_bdat(std::string_view arg, Output& out) {
  auto [size_s, rest] = split_verb(trim(arg));
  auto n = parse_decimal(size_s);
  std::string_view last = trim(rest);
  if (!n || !(last.empty() || iequals(last, "last"))) {
    // Without a valid size we cannot find the next command: the stream is lost.
    reply(out, Reply(501, "5.5.4", "Syntax: BDAT size [LAST]"));
    reply(out, Reply(421, "4.5.0", cfg_.hostname + " closing connection"));
    out.next = Next::close;
    set_state(State::closed);
    return;
  }
  bdat_remaining_ = *n;
  bdat_last_ = !last.empty();
  if (!mail_given_ || env_.recipients.empty()) bdat_failed_ = true;
  if (!sink_ && !bdat_failed_)
    sink_ = std::make_unique<MessageSink>(cfg_.limits.max_message_size, cfg_.limits.max_text_line,
                                          hooks_.body_spill(), cfg_.hostname);
  if (mail_given_) bdat_used_ = true;
  set_state(State::bdat);
}

bool ServerSession::process_bdat(Output& out) {
  size_t avail = buf_.size() - rpos_;
  size_t take = static_cast<size_t>(std::min<uint64_t>(bdat_remaining_, avail));
  if (take > 0) {
    if (!bdat_failed_ && sink_) sink_->append(std::string_view(buf_.data() + rpos_, take));
    rpos_ += take;
    bdat_remaining_ -= take;
  }
  if (bdat_remaining_ > 0) return take > 0;
  set_state(State::command);
  if (bdat_failed_) {
    bool last = bdat_last_;
    if (!mail_given_) fail(out, Reply(503, "5.5.1", "Need MAIL command"));
    else if (env_.recipients.empty()) reply(out, Reply(554, "5.5.1", "No valid recipients"));
    else reply(out, Reply(503, "5.5.1", "Transaction failed, send RSET"));
    if (last) reset_transaction();
    return true;
  }
  if (sink_->too_big()) {
    // RFC 3030: the transaction fails; remaining chunks are still read and refused.
    hooks_.refused("message size over the limit");
    reply(out, Reply(552, "5.3.4", "Message size exceeds fixed maximum message size"));
    bdat_failed_ = true;
    sink_.reset();
    if (bdat_last_) reset_transaction();
    return true;
  }
  if (!bdat_last_) {
    reply(out, Reply(250, "2.0.0", "Ok, " + std::to_string(sink_->size()) + " octets received"));
    return true;
  }
  finish_message(out);
  return true;
}

bool ServerSession::finish_message(Output& out) {
  sink_->finish();
  auto fail_tx = [&](const Reply& r) {
    if (r.code == 552 || r.code == 554) hooks_.refused(r.lines.front());
    reply(out, r);
    reset_transaction();
    return false;
  };
  if (sink_->too_big()) return fail_tx(Reply(552, "5.3.4", "Message size exceeds fixed maximum message size"));
  if (sink_->bare_cr_lf())
    return fail_tx(Reply(550, "5.6.0", "Message contains bare CR or LF; lines must end with CRLF"));
  if (sink_->line_too_long()) return fail_tx(Reply(500, "5.5.2", "Message contains a line longer than 1000 octets"));
  if (cfg_.limits.max_hops && sink_->received_count() >= cfg_.limits.max_hops)
    return fail_tx(Reply(554, "5.4.6", "Too many hops (mail loop?)"));
  if (sink_->body().failed())
    return fail_tx(Reply(452, "4.3.1", "Insufficient system storage, try again later"));
  if (auto refusal = hooks_.check_message(sink_->body().head())) return fail_tx(*refusal);

  pending_ = Transaction{};
  pending_.envelope = std::move(env_);
  Envelope& e = pending_.envelope;
  e.id = hooks_.new_queue_id();
  if (client_.tls) e.tls = client_.tls_version + "/" + client_.tls_cipher;
  std::string proto = esmtp_ ? "ESMTP" : "SMTP";
  if (e.smtputf8) proto = esmtp_ ? "UTF8SMTP" : proto;
  if (client_.tls) proto += "S";
  if (!auth_user_.empty()) proto += "A";  // RFC 3848
  std::string r = "Received: from " + sanitize(helo_, 255) + " ([" + client_.ip + "])\r\n\tby " + cfg_.hostname +
                  " (bulwark)";
  if (client_.tls) r += " (using " + client_.tls_version + " with cipher " + client_.tls_cipher + ")";
  if (cfg_.auth.received_auth_user && !auth_user_.empty()) r += "\r\n\t(authenticated as " + auth_user_ + ")";
  r += "\r\n\twith " + proto + " id " + e.id;
  std::set<std::string> rcpts;
  for (auto& rc : e.recipients) rcpts.insert(rc.rcpt);
  if (rcpts.size() == 1) r += "\r\n\tfor <" + *rcpts.begin() + ">";
  r += "; " + rfc5322_date(hooks_.now()) + "\r\n";
  // Message submission (RFC 6409 8) completes a message that lacks these.
  if (cfg_.service == Service::submission || !auth_user_.empty()) {
    std::string_view d = sink_->body().head();
    if (!has_header_field(d, "date")) r += "Date: " + rfc5322_date(hooks_.now()) + "\r\n";
    if (!has_header_field(d, "message-id")) r += "Message-ID: <" + e.id + "@" + cfg_.hostname + ">\r\n";
  }
  pending_.received = std::move(r);
  pending_.body = std::move(sink_->body());
  pending_id_ = e.id;
  reset_transaction();
  set_state(State::wait_commit);
  out.next = Next::commit;
  return true;
}

Output ServerSession::commit_finished(bool ok) {
  Output out;
  if (ok) reply(out, Reply(250, "2.0.0", "Ok: queued as " + pending_id_));
  else reply(out, Reply(451, "4.3.0", "Error writing message to disk, try again later"));
  pending_ = Transaction{};
  set_state(State::command);
  return process(std::move(out));
}

Output ServerSession::commit_refused(const Reply& why) {
  Output out;
  hooks_.refused(why.lines.front());
  reply(out, why);
  pending_ = Transaction{};
  set_state(State::command);
  return process(std::move(out));
}

void ServerSession::cmd_starttls(std::string_view arg, Output& out) {
  if (!trim(arg).empty()) return fail(out, Reply(501, "5.5.4", "Syntax: STARTTLS"));
  if (client_.tls) return fail(out, Reply(503, "5.5.1", "TLS already active"));
  if (!cfg_.starttls_available) return fail(out, Reply(502, "5.5.1", "STARTTLS not available"));
  reply(out, Reply(220, "2.0.0", "Ready to start TLS"));
  // RFC 3207 / CVE-2011-0411: anything pipelined behind STARTTLS was sent in
  // plaintext and must not be executed inside the TLS session.
  buf_.clear();
  rpos_ = 0;
  set_state(State::wait_tls);
  out.next = Next::starttls;
}

Output ServerSession::tls_started(std::string version, std::string cipher) {
  client_.tls = true;
  client_.tls_version = std::move(version);
  client_.tls_cipher = std::move(cipher);
  helo_.clear();
  esmtp_ = false;
  auth_user_.clear();  // RFC 3207 4.2: forget what was learnt before TLS
  hooks_.auth_reset();
  reset_transaction();
  buf_.clear();
  rpos_ = 0;
  set_state(State::command);
  return {};
}

}  // namespace bulwark::smtp
