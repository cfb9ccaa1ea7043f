// auth/: SASL server mechanisms without I/O (RFC 4422): SCRAM-SHA-256 (RFC 5802,
// RFC 7677), PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login) and CRAM-MD5
// (RFC 2195). A mechanism turns the client's decoded responses into steps; the
// protocol (SMTP now, POP3 later) does the base64 framing, "*" cancel and replies.
// Checking a password against its Argon2id hash is slow, so the mechanism does not
// do it: it asks for it (verify_password) and the caller runs it off the I/O thread.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/password.hpp"

namespace bulwark::auth {

enum class Mech { scram_sha_256, plain, login, cram_md5 };
std::optional<Mech> mech_from_name(std::string_view name);  // case-insensitive
const char* mech_name(Mech m);
// Mechanisms that send the password itself (secure-auth allows them only inside TLS).
inline bool is_plaintext(Mech m) { return m == Mech::plain || m == Mech::login; }

// What the challenge-response mechanisms need from the directory.
class SecretSource {
 public:
  virtual ~SecretSource() = default;
  // Nothing for an unknown user (or one without that secret).
  virtual std::optional<ScramSecret> scram_secret(const std::string& user) = 0;
  virtual std::optional<CramSecret> cram_md5_secret(const std::string& user) = 0;
};

struct Step {
  enum Kind { challenge, verify_password, success, failure } kind = failure;
  // challenge: raw bytes for the client; success: additional data for the client
  // (SCRAM's server signature), empty if none.
  std::string data;
  std::string user;      // the authentication identity, once known
  std::string password;  // verify_password only; the caller wipes it after use
  enum class Why { none, malformed, bad_credentials, impersonation } why = Why::none;
};

struct MechanismOptions {
  std::string hostname;                      // CRAM-MD5 challenge
  std::function<std::string()> server_nonce; // SCRAM; default: 24 random bytes, base64
};

class Mechanism {
 public:
  virtual ~Mechanism() = default;
  // The first step, given the client's initial response if it sent one.
  virtual Step start(const std::optional<std::string>& initial) = 0;
  virtual Step next(const std::string& response) = 0;
};

std::unique_ptr<Mechanism> make_mechanism(Mech m, SecretSource& secrets, MechanismOptions opts = {});

// The security policy of SPEC 8 for one connection, shared by every protocol that
// logs users in (SMTP AUTH, POP3, IMAP, the admin console).
enum class Mode { none, secure_auth, encrypted };
struct LoginPolicy {
  Mode mode = Mode::secure_auth;
  std::vector<Mech> mechanisms;  // offered in this order; empty = no login by mechanism
  bool insecure_ok = false;      // the client is in policy.insecure_auth_ip_group
  std::chrono::milliseconds failure_delay{0};
  // May `m` be used on this connection now (offered, and allowed over it)?
  bool usable(Mech m, bool tls) const;
  // A plaintext password (POP3 USER/PASS, IMAP LOGIN) on this connection now?
  bool plaintext_ok(bool tls) const;
  // `encrypted` mode: before TLS nothing but the commands that lead to it.
  bool tls_first(bool tls) const { return mode == Mode::encrypted && !tls; }
};

}  // namespace bulwark::auth
