// delivery/: the POP3 login that POP-before-SMTP relay servers want before they take
// mail (delivery.relay_auth = "pop3-before-smtp"), without I/O. STLS first, always:
// the password never travels in clear. USER/PASS (RFC 1939), then QUIT.
#pragma once
#include <string>
#include <string_view>

namespace bulwark {

class Pop3Login {
 public:
  Pop3Login(std::string user, std::string password) : user_(std::move(user)), password_(std::move(password)) {}
  ~Pop3Login();

  struct Out {
    std::string bytes;
    enum Event { none, starttls, done, failed } event = none;
  };
  Out feed(std::string_view bytes);  // what the POP3 server sent
  Out tls_started();                 // after Out::starttls and a good handshake
  const std::string& error() const { return error_; }

 private:
  enum class St { greeting, stls, user, pass, finished };
  Out fail(std::string why);
  St st_ = St::greeting;
  std::string user_, password_, buf_, error_;
};

}  // namespace bulwark
