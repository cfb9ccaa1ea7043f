#include "smtp/client.hpp"

#include <cctype>

#include "auth/password.hpp"
#include "core/address.hpp"
#include "core/strings.hpp"

namespace bulwark::smtp {

namespace {
// A mailbox in brackets for MAIL FROM / RCPT TO, written by the one function that
// quotes a local part (core/address.hpp): nothing in it can end the path or add
// parameters. Text no path can carry becomes the null path, which a server refuses
// for RCPT (the recipient then bounces) -- it never reaches the wire as it is.
std::string path(const std::string& mailbox) {
  if (mailbox.empty()) return "<>";
  auto text = path_mailbox(mailbox);
  return "<" + (text ? *text : std::string()) + ">";
}

constexpr size_t kMaxReplyLine = 4096;
constexpr size_t kMaxReplyLines = 200;

bool looks_enhanced(std::string_view t) {
  // d.d{1,3}.d{1,3} followed by a space or the end
  size_t i = 0;
  if (t.size() < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.') return false;
  i = 2;
  for (int part = 0; part < 2; ++part) {
    size_t start = i;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
    if (i == start || i - start > 3) return false;
    if (part == 0) {
      if (i >= t.size() || t[i] != '.') return false;
      ++i;
    }
  }
  return i == t.size() || t[i] == ' ';
}

}  // namespace

std::string ServerReply::enhanced() const {
  if (looks_enhanced(text)) return text.substr(0, text.find(' '));
  if (code >= 500) return "5.0.0";
  if (code >= 400) return "4.0.0";
  return "2.0.0";
}

std::string ServerReply::str() const { return std::to_string(code) + " " + text; }

std::string DotStuffer::stuff(std::string_view chunk) {
  std::string out;
  out.reserve(chunk.size() + chunk.size() / 64 + 8);
  for (char c : chunk) {
    if (line_start_ && c == '.') out += '.';
    out += c;
    line_start_ = c == '\n';
  }
  if (!chunk.empty()) empty_ = false;
  return out;
}

std::string DotStuffer::finish() const { return (empty_ || line_start_) ? ".\r\n" : "\r\n.\r\n"; }

std::string dot_stuff(std::string_view data) {
  DotStuffer d;
  std::string out = d.stuff(data);
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

ClientOutput ClientSession::fail(ServerReply r) {
  failure_ = std::move(r);
  st_ = St::failed;
  ClientOutput out;
  out.event = ClientEvent::failed;
  return out;
}

ClientOutput ClientSession::feed(std::string_view bytes) {
  ClientOutput out;
  if (st_ == St::closed || st_ == St::failed) return out;
  buf_.append(bytes);
  size_t pos = 0;
  for (;;) {
    size_t lf = buf_.find('\n', pos);
    if (lf == std::string::npos) {
      if (buf_.size() - pos > kMaxReplyLine) return fail({451, "4.4.2 reply line too long", true});
      break;
    }
    std::string line = buf_.substr(pos, lf - pos);
    pos = lf + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > kMaxReplyLine || line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
        !std::isdigit(static_cast<unsigned char>(line[1])) || !std::isdigit(static_cast<unsigned char>(line[2])) ||
        (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
      return fail({451, "4.4.2 malformed reply from the server: " + sanitize(line, 80), true});
    lines_.push_back(line);
    if (lines_.size() > kMaxReplyLines) return fail({451, "4.4.2 reply too long", true});
    if (line.size() > 3 && line[3] == '-') continue;
    ServerReply r;
    r.code = std::stoi(line.substr(0, 3));
    for (auto& l : lines_) {
      if (!r.text.empty()) r.text += "; ";
      r.text += sanitize(l.size() > 4 ? std::string_view(l).substr(4) : std::string_view(), 512);
    }
    std::vector<std::string> all = std::move(lines_);
    lines_.clear();
    if (st_ == St::ehlo) {  // keep the keywords
      for (size_t i = 1; i < all.size(); ++i) {
        std::string kw = all[i].size() > 4 ? all[i].substr(4) : "";
        size_t sp = kw.find(' ');
        std::string key = to_upper(kw.substr(0, sp));
        ext_.insert(key);
        std::string args = sp == std::string::npos ? "" : kw.substr(sp + 1);
        if (key == "SIZE" && !args.empty()) size_limit_ = std::strtoull(args.c_str(), nullptr, 10);
        if (key == "AUTH") {
          size_t p = 0;
          std::string a = to_upper(args);
          while (p < a.size()) {
            size_t e = a.find(' ', p);
            if (e == std::string::npos) e = a.size();
            if (e > p) auth_mechs_.push_back(a.substr(p, e - p));
            p = e + 1;
          }
        }
      }
    }
    ClientOutput o = on_reply(r);
    out.bytes += o.bytes;
    out.event = o.event;
    if (o.event != ClientEvent::none || st_ == St::failed || st_ == St::closed) {
      // Replies beyond an event wait for the caller (it may start TLS: then the rest
      // is discarded, like the server does with plaintext behind STARTTLS).
      buf_.erase(0, pos);
      if (o.event == ClientEvent::starttls) buf_.clear();
      return out;
    }
  }
  buf_.erase(0, pos);
  return out;
}

ClientOutput ClientSession::on_reply(const ServerReply& r) {
  ClientOutput out;
  if (r.code == 421 && st_ != St::quit) return fail(r);
  switch (st_) {
    case St::greeting:
      if (r.code != 220) return fail(r);
      st_ = St::ehlo;
      out.bytes = "EHLO " + s_.helo + "\r\n";
      return out;
    case St::ehlo:
      if (r.code == 250) return after_ehlo();
      if (r.code >= 500 && !tls_ && s_.tls != ClientTls::required) {  // an old server: HELO
        ext_.clear();
        st_ = St::helo;
        out.bytes = "HELO " + s_.helo + "\r\n";
        return out;
      }
      return fail(r);
    case St::helo:
      if (r.code != 250) return fail(r);
      return after_ehlo();
    case St::starttls:
      if (r.code != 220) return fail(r);
      out.event = ClientEvent::starttls;
      return out;
    case St::auth_plain:
    case St::auth_login_pass:
      if (r.code != 235) return fail({r.code >= 500 ? 454 : r.code, "4.7.0 relay server refused our login: " + r.text, true});
      st_ = St::ready;
      out.event = ClientEvent::ready;
      return out;
    case St::auth_login_user:
      if (r.code != 334) return fail({454, "4.7.0 relay server refused AUTH LOGIN: " + r.text, true});
      st_ = St::auth_login_pass;
      out.bytes = auth::base64_encode(s_.auth_password) + "\r\n";
      return out;
    case St::mail:
    case St::rcpt:
    case St::data: {
      if (expect_.empty()) return fail({451, "4.4.2 unexpected reply: " + r.str(), true});
      Expect e = expect_.front();
      expect_.erase(expect_.begin());
      if (e == Expect::mail) mail_reply_ = r;
      else if (e == Expect::rcpt) rcpt_replies_.push_back(r);
      else data_reply_ = r;
      if (!expect_.empty()) return out;
      return after_transaction_replies(out);
    }
    case St::body:
      data_reply_ = r;
      return finish_message(out);
    case St::rset:
      st_ = St::ready;
      out.event = ClientEvent::message_done;
      return out;
    case St::quit:
      st_ = St::closed;
      out.event = ClientEvent::closed;
      return out;
    default: return out;
  }
}

ClientOutput ClientSession::after_ehlo() {
  ClientOutput out;
  if (!tls_ && s_.tls != ClientTls::off) {
    if (has("STARTTLS")) {
      st_ = St::starttls;
      out.bytes = "STARTTLS\r\n";
      return out;
    }
    if (s_.tls == ClientTls::required) return fail({451, "4.7.10 TLS is required but the server does not offer STARTTLS", true});
  }
  return authenticate();
}

ClientOutput ClientSession::authenticate() {
  ClientOutput out;
  if (s_.auth_user.empty()) {
    st_ = St::ready;
    out.event = ClientEvent::ready;
    return out;
  }
  if (!tls_) return fail({454, "4.7.10 not sending the relay password without TLS (the server offers no STARTTLS)", true});
  auto offered = [&](const char* m) {
    for (auto& a : auth_mechs_)
      if (a == m) return true;
    return false;
  };
  if (offered("PLAIN")) {
    std::string msg = std::string("\0", 1) + s_.auth_user + std::string("\0", 1) + s_.auth_password;
    out.bytes = "AUTH PLAIN " + auth::base64_encode(msg) + "\r\n";
    auth::wipe(msg);
    st_ = St::auth_plain;
    return out;
  }
  if (offered("LOGIN")) {
    out.bytes = "AUTH LOGIN " + auth::base64_encode(s_.auth_user) + "\r\n";
    st_ = St::auth_login_user;
    return out;
  }
  return fail({454, "4.7.0 relay server offers neither AUTH PLAIN nor LOGIN", true});
}

ClientOutput ClientSession::tls_started() {
  tls_ = true;
  ext_.clear();
  auth_mechs_.clear();
  size_limit_ = 0;
  buf_.clear();
  st_ = St::ehlo;
  ClientOutput out;
  out.bytes = "EHLO " + s_.helo + "\r\n";
  return out;
}

ClientOutput ClientSession::send(const OutMessage& m) {
  ClientOutput out;
  copy_ = m;
  msg_ = &copy_;
  results_.clear();
  rcpt_replies_.clear();
  mail_reply_.reset();
  data_reply_.reset();
  expect_.clear();
  rcpt_index_ = 0;
  auto refuse_all = [&](ServerReply r) {
    results_.assign(m.recipients.size(), r);
    out.event = ClientEvent::message_done;
    return out;
  };
  if (st_ != St::ready) return refuse_all({451, "4.3.0 session not ready", true});
  uint64_t size = m.size;
  if (size_limit_ && size > size_limit_)
    return refuse_all({552, "5.3.4 message is larger than the receiving server accepts (SIZE " +
                                std::to_string(size_limit_) + ")", true});
  if (m.eight_bit && !has("8BITMIME"))
    return refuse_all({554, "5.6.3 the message has 8-bit content and the receiving server does not support 8BITMIME",
                       true});
  if (m.smtputf8 && !has("SMTPUTF8"))
    return refuse_all({553, "5.6.7 the message needs SMTPUTF8 and the receiving server does not support it", true});
  std::string mail = "MAIL FROM:" + path(m.sender);
  if (has("SIZE")) mail += " SIZE=" + std::to_string(size);
  if (m.eight_bit) mail += " BODY=8BITMIME";
  if (m.smtputf8) mail += " SMTPUTF8";
  mail += "\r\n";
  if (has("PIPELINING")) {
    out.bytes = mail;
    expect_.push_back(Expect::mail);
    for (auto& r : m.recipients) {
      out.bytes += "RCPT TO:" + path(r) + "\r\n";
      expect_.push_back(Expect::rcpt);
    }
    out.bytes += "DATA\r\n";
    expect_.push_back(Expect::data);
    st_ = St::data;
  } else {
    out.bytes = mail;
    expect_.push_back(Expect::mail);
    st_ = St::mail;
  }
  return out;
}

// Called when every reply expected so far has arrived.
ClientOutput ClientSession::after_transaction_replies(ClientOutput out) {
  const OutMessage& m = *msg_;
  bool pipelined = has("PIPELINING");
  if (!pipelined) {
    // One step at a time: MAIL, then each RCPT, then DATA.
    if (st_ == St::mail) {
      if (!mail_reply_->positive()) return finish_message(out);
      st_ = St::rcpt;
    }
    if (st_ == St::rcpt) {
      if (rcpt_index_ < m.recipients.size()) {
        out.bytes += "RCPT TO:" + path(m.recipients[rcpt_index_++]) + "\r\n";
        expect_.push_back(Expect::rcpt);
        return out;
      }
      bool any = false;
      for (auto& r : rcpt_replies_) any |= r->positive();
      if (!any) return finish_message(out);
      out.bytes += "DATA\r\n";
      expect_.push_back(Expect::data);
      st_ = St::data;
      return out;
    }
  }
  // DATA answered.
  bool any = false;
  for (auto& r : rcpt_replies_) any |= r && r->positive();
  bool mail_ok = mail_reply_ && mail_reply_->positive();
  if (data_reply_ && data_reply_->code == 354) {
    if (!mail_ok || !any) {
      // RFC 2920 3.1: every RCPT failed but DATA was accepted: send an empty message.
      out.bytes += ".\r\n";
      data_reply_.reset();
      st_ = St::rset;  // its reply ends the transaction; nothing was delivered
      finish_message(ClientOutput{});
      st_ = St::rset;
      return out;
    }
    st_ = St::body;
    out.event = ClientEvent::body;  // the caller streams the content
    return out;
  }
  return finish_message(out);
}

ClientOutput ClientSession::body_sent() { return feed({}); }

ClientOutput ClientSession::finish_message(ClientOutput out) {
  const OutMessage& m = *msg_;
  results_.clear();
  bool ok_final = st_ == St::body && data_reply_ && data_reply_->positive();
  for (size_t i = 0; i < m.recipients.size(); ++i) {
    if (mail_reply_ && !mail_reply_->positive()) results_.push_back(*mail_reply_);
    else if (i < rcpt_replies_.size() && rcpt_replies_[i] && !rcpt_replies_[i]->positive())
      results_.push_back(*rcpt_replies_[i]);
    else if (data_reply_) results_.push_back(*data_reply_);
    else results_.push_back({451, "4.4.2 no reply for this recipient", true});
  }
  if (ok_final) {
    st_ = St::ready;
    out.event = ClientEvent::message_done;
    return out;
  }
  // The transaction failed somewhere: RSET so the next message starts clean.
  out.bytes += "RSET\r\n";
  st_ = St::rset;
  return out;
}

ClientOutput ClientSession::quit() {
  ClientOutput out;
  if (st_ == St::closed || st_ == St::failed) {
    out.event = ClientEvent::closed;
    return out;
  }
  out.bytes = "QUIT\r\n";
  st_ = St::quit;
  return out;
}

}  // namespace bulwark::smtp
