#include "auth/sasl.hpp"

#include <chrono>
#include <cstring>

#include "core/strings.hpp"

namespace bulwark::auth {
namespace {

constexpr size_t max_user = 320;       // RFC 5321 path length, generously
constexpr size_t max_password = 1024;  // what the CLI accepts

Step fail(Step::Why why, std::string user = {}) {
  Step s;
  s.kind = Step::failure;
  s.why = why;
  s.user = std::move(user);
  return s;
}

Step challenge(std::string data) {
  Step s;
  s.kind = Step::challenge;
  s.data = std::move(data);
  return s;
}

Step verify(std::string user, std::string password) {
  Step s;
  s.kind = Step::verify_password;
  s.user = std::move(user);
  s.password = std::move(password);
  return s;
}

bool bad_user(std::string_view u) {
  if (u.empty() || u.size() > max_user) return true;
  for (unsigned char c : u)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// RFC 4616: [authzid] NUL authcid NUL passwd
class Plain : public Mechanism {
 public:
  Step start(const std::optional<std::string>& initial) override {
    if (!initial) return challenge("");
    return next(*initial);
  }
  Step next(const std::string& r) override {
    size_t a = r.find('\0');
    size_t b = a == std::string::npos ? a : r.find('\0', a + 1);
    if (b == std::string::npos || r.find('\0', b + 1) != std::string::npos) return fail(Step::Why::malformed);
    std::string authzid = r.substr(0, a), user = r.substr(a + 1, b - a - 1), pw = r.substr(b + 1);
    if (bad_user(user) || pw.empty() || pw.size() > max_password) return fail(Step::Why::malformed, user);
    // Acting as somebody else (authzid) is not a right anybody has here.
    if (!authzid.empty() && !iequals(authzid, user)) return fail(Step::Why::impersonation, user);
    return verify(std::move(user), std::move(pw));
  }
};

class Login : public Mechanism {
 public:
  Step start(const std::optional<std::string>& initial) override {
    if (initial && !initial->empty()) return next(*initial);
    return challenge("Username:");
  }
  Step next(const std::string& r) override {
    if (!have_user_) {
      if (bad_user(r)) return fail(Step::Why::malformed);
      user_ = r;
      have_user_ = true;
      return challenge("Password:");
    }
    if (r.empty() || r.size() > max_password) return fail(Step::Why::malformed, user_);
    return verify(user_, r);
  }

 private:
  bool have_user_ = false;
  std::string user_;
};

class CramMd5 : public Mechanism {
 public:
  CramMd5(SecretSource& s, std::string hostname) : secrets_(s), hostname_(std::move(hostname)) {}
  Step start(const std::optional<std::string>& initial) override {
    if (initial) return fail(Step::Why::malformed);  // the server speaks first
    uint64_t r = 0;
    std::string rb = random_bytes(8);
    std::memcpy(&r, rb.data(), 8);
    auto t = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    challenge_ = "<" + std::to_string(r) + "." + std::to_string(t.count()) + "@" + hostname_ + ">";
    return challenge(challenge_);
  }
  Step next(const std::string& r) override {
    size_t sp = r.rfind(' ');
    if (sp == std::string::npos || r.size() - sp - 1 != 32) return fail(Step::Why::malformed);
    std::string user = r.substr(0, sp), digest = to_lower(r.substr(sp + 1));
    if (bad_user(user)) return fail(Step::Why::malformed);
    auto secret = secrets_.cram_md5_secret(user);
    // Unknown user or CRAM-MD5 not enabled: compute on a random secret anyway.
    CramSecret s = secret ? *secret : CramSecret{};
    if (!secret) std::memcpy(s.data(), random_bytes(s.size()).data(), s.size());
    bool ok = equal_ct(cram_md5_digest_hex(s, challenge_), digest) && secret.has_value();
    if (!ok) return fail(Step::Why::bad_credentials, user);
    Step st;
    st.kind = Step::success;
    st.user = user;
    return st;
  }

 private:
  SecretSource& secrets_;
  std::string hostname_;
  std::string challenge_;
};

// RFC 5802 saslname: "=2C" is ',' and "=3D" is '='; any other '=' is an error.
std::optional<std::string> decode_saslname(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ',') return std::nullopt;
    if (s[i] != '=') {
      out += s[i];
      continue;
    }
    if (s.substr(i, 3) == "=2C") out += ',';
    else if (s.substr(i, 3) == "=3D") out += '=';
    else return std::nullopt;
    i += 2;
  }
  return out;
}

class Scram : public Mechanism {
 public:
  Scram(SecretSource& s, std::function<std::string()> nonce) : secrets_(s), nonce_(std::move(nonce)) {}

  Step start(const std::optional<std::string>& initial) override {
    if (!initial) return challenge("");  // the client speaks first
    return client_first(*initial);
  }
  Step next(const std::string& r) override {
    switch (stage_) {
      case 0: return client_first(r);
      case 1: return client_final(r);
      default: return fail(Step::Why::malformed, user_);
    }
  }

 private:
  Step client_first(std::string_view m) {
    // gs2-header: "n,," or "y,," (we offer no -PLUS, so "p=" is refused), optionally
    // with an authzid "a=name" that must be the user itself.
    if (m.size() < 3 || (m[0] != 'n' && m[0] != 'y') || m[1] != ',') return fail(Step::Why::malformed);
    size_t c2 = m.find(',', 2);
    if (c2 == std::string_view::npos) return fail(Step::Why::malformed);
    std::string_view authz = m.substr(2, c2 - 2);
    gs2_header_ = std::string(m.substr(0, c2 + 1));
    std::string_view bare = m.substr(c2 + 1);
    if (bare.substr(0, 2) != "n=") return fail(Step::Why::malformed);  // also refuses "m=" extensions
    size_t c3 = bare.find(',');
    if (c3 == std::string_view::npos) return fail(Step::Why::malformed);
    auto user = decode_saslname(bare.substr(2, c3 - 2));
    if (!user || bad_user(*user)) return fail(Step::Why::malformed);
    std::string_view rest = bare.substr(c3 + 1);
    if (rest.substr(0, 2) != "r=") return fail(Step::Why::malformed);
    std::string_view cnonce = rest.substr(2, rest.find(',') - 2);
    if (cnonce.empty() || cnonce.size() > 256) return fail(Step::Why::malformed);
    for (unsigned char c : cnonce)
      if (c < 0x21 || c > 0x7e) return fail(Step::Why::malformed);
    if (!authz.empty()) {
      auto z = authz.substr(0, 2) == "a=" ? decode_saslname(authz.substr(2)) : std::nullopt;
      if (!z) return fail(Step::Why::malformed);
      if (!iequals(*z, *user)) return fail(Step::Why::impersonation, *user);
    }
    user_ = *user;
    client_first_bare_ = std::string(bare);
    auto secret = secrets_.scram_secret(user_);
    if (secret) {
      secret_ = *secret;
      known_ = true;
    } else {
      // An unknown user gets a stable made-up salt and fails only at the proof, so
      // the exchange does not tell which users exist.
      static const std::string pepper = random_bytes(32);
      Key fake = hmac_sha256(pepper, to_lower(user_));
      secret_.salt.assign(reinterpret_cast<const char*>(fake.data()), 16);
      secret_.iterations = scram_iterations;
      std::memcpy(secret_.stored_key.data(), random_bytes(32).data(), 32);
    }
    nonce_all_ = std::string(cnonce) + (nonce_ ? nonce_() : base64_encode(random_bytes(24)));
    server_first_ = "r=" + nonce_all_ + ",s=" + base64_encode(secret_.salt) + ",i=" + std::to_string(secret_.iterations);
    stage_ = 1;
    return challenge(server_first_);
  }

  Step client_final(std::string_view m) {
    stage_ = 2;
    size_t p = m.rfind(",p=");
    if (p == std::string_view::npos) return fail(Step::Why::malformed, user_);
    std::string_view without_proof = m.substr(0, p);
    auto proof = base64_decode(m.substr(p + 3));
    std::string expect_prefix = "c=" + base64_encode(gs2_header_) + ",r=" + nonce_all_;
    if (!proof || proof->size() != 32) return fail(Step::Why::malformed, user_);
    if (!(without_proof == expect_prefix ||
          (without_proof.substr(0, expect_prefix.size()) == expect_prefix &&
           without_proof.size() > expect_prefix.size() && without_proof[expect_prefix.size()] == ',')))
      return fail(Step::Why::malformed, user_);
    std::string auth_message = client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
    Key sig = hmac_sha256(secret_.stored_key, auth_message);
    Key client_key{};
    for (size_t i = 0; i < 32; ++i) client_key[i] = uint8_t(uint8_t((*proof)[i]) ^ sig[i]);
    Key check = sha256(std::string_view(reinterpret_cast<const char*>(client_key.data()), 32));
    bool ok = equal_ct(std::string_view(reinterpret_cast<const char*>(check.data()), 32),
                       std::string_view(reinterpret_cast<const char*>(secret_.stored_key.data()), 32));
    if (!ok || !known_) return fail(Step::Why::bad_credentials, user_);
    Key server_sig = hmac_sha256(secret_.server_key, auth_message);
    Step st;
    st.kind = Step::success;
    st.user = user_;
    st.data = "v=" + base64_encode(std::string_view(reinterpret_cast<const char*>(server_sig.data()), 32));
    return st;
  }

  SecretSource& secrets_;
  std::function<std::string()> nonce_;
  int stage_ = 0;
  bool known_ = false;
  std::string user_, gs2_header_, client_first_bare_, server_first_, nonce_all_;
  ScramSecret secret_;
};

}  // namespace

std::optional<Mech> mech_from_name(std::string_view n) {
  if (iequals(n, "SCRAM-SHA-256")) return Mech::scram_sha_256;
  if (iequals(n, "PLAIN")) return Mech::plain;
  if (iequals(n, "LOGIN")) return Mech::login;
  if (iequals(n, "CRAM-MD5")) return Mech::cram_md5;
  return std::nullopt;
}

const char* mech_name(Mech m) {
  switch (m) {
    case Mech::scram_sha_256: return "SCRAM-SHA-256";
    case Mech::plain: return "PLAIN";
    case Mech::login: return "LOGIN";
    case Mech::cram_md5: return "CRAM-MD5";
  }
  return "?";
}

std::unique_ptr<Mechanism> make_mechanism(Mech m, SecretSource& secrets, MechanismOptions opts) {
  switch (m) {
    case Mech::scram_sha_256: return std::make_unique<Scram>(secrets, std::move(opts.server_nonce));
    case Mech::plain: return std::make_unique<Plain>();
    case Mech::login: return std::make_unique<Login>();
    case Mech::cram_md5: return std::make_unique<CramMd5>(secrets, opts.hostname);
  }
  return nullptr;
}

bool LoginPolicy::plaintext_ok(bool tls) const {
  if (tls || mode == Mode::none) return true;
  if (mode == Mode::encrypted) return false;
  return insecure_ok;
}

bool LoginPolicy::usable(Mech m, bool tls) const {
  bool offered = false;
  for (auto c : mechanisms) offered |= c == m;
  if (!offered) return false;
  return !is_plaintext(m) ? !tls_first(tls) : plaintext_ok(tls);
}

}  // namespace bulwark::auth
