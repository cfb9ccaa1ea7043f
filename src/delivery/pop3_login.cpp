#include "delivery/pop3_login.hpp"

#include "auth/password.hpp"
#include "core/strings.hpp"

namespace bulwark {

Pop3Login::~Pop3Login() { auth::wipe(password_); }

Pop3Login::Out Pop3Login::fail(std::string why) {
  st_ = St::finished;
  error_ = std::move(why);
  auth::wipe(password_);
  Out o;
  o.event = Out::failed;
  return o;
}

Pop3Login::Out Pop3Login::feed(std::string_view bytes) {
  Out out;
  if (st_ == St::finished) return out;
  buf_.append(bytes);
  size_t lf = buf_.find('\n');
  if (lf == std::string::npos) {
    if (buf_.size() > 4096) return fail("POP3 server line too long");
    return out;
  }
  std::string line = buf_.substr(0, lf);
  buf_.erase(0, lf + 1);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  bool ok = line.rfind("+OK", 0) == 0;
  std::string said = sanitize(line, 120);
  switch (st_) {
    case St::greeting:
      if (!ok) return fail("POP3 server refused the connection: " + said);
      st_ = St::stls;
      out.bytes = "STLS\r\n";
      return out;
    case St::stls:
      if (!ok) return fail("POP3 server offers no STLS; not sending the password in clear (" + said + ")");
      buf_.clear();  // nothing sent before TLS counts after it
      out.event = Out::starttls;
      return out;
    case St::user:
      if (!ok) return fail("POP3 server refused USER: " + said);
      st_ = St::pass;
      out.bytes = "PASS " + password_ + "\r\n";
      return out;
    case St::pass:
      if (!ok) return fail("POP3 login refused: " + said);
      st_ = St::finished;
      auth::wipe(password_);
      out.bytes = "QUIT\r\n";
      out.event = Out::done;
      return out;
    case St::finished: return out;
  }
  return out;
}

Pop3Login::Out Pop3Login::tls_started() {
  st_ = St::user;
  Out out;
  out.bytes = "USER " + user_ + "\r\n";
  return out;
}

}  // namespace bulwark
