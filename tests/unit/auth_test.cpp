#include <gtest/gtest.h>

#include <map>

#include "auth/password.hpp"
#include "auth/sasl.hpp"

using namespace bulwark::auth;

namespace {

class Secrets : public SecretSource {
 public:
  std::map<std::string, ScramSecret> scram;
  std::map<std::string, CramSecret> cram;
  std::optional<ScramSecret> scram_secret(const std::string& u) override {
    auto it = scram.find(u);
    if (it == scram.end()) return std::nullopt;
    return it->second;
  }
  std::optional<CramSecret> cram_md5_secret(const std::string& u) override {
    auto it = cram.find(u);
    if (it == cram.end()) return std::nullopt;
    return it->second;
  }
};

std::string key_b64(const Key& k) { return base64_encode(std::string_view(reinterpret_cast<const char*>(k.data()), 32)); }

}  // namespace

// RFC 7677 section 3: the SCRAM-SHA-256 example exchange, byte for byte.
TEST(Scram, Rfc7677Vector) {
  Secrets s;
  s.scram["user"] = derive_scram("pencil", *base64_decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
  auto m = make_mechanism(Mech::scram_sha_256, s, {"", [] { return std::string("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"); }});
  Step first = m->start(std::string("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"));
  ASSERT_EQ(first.kind, Step::challenge);
  EXPECT_EQ(first.data,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  Step fin = m->next(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  ASSERT_EQ(fin.kind, Step::success);
  EXPECT_EQ(fin.user, "user");
  EXPECT_EQ(fin.data, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

TEST(Scram, WrongProofAndUnknownUserFailAtTheEnd) {
  Secrets s;
  s.scram["user"] = derive_scram("pencil", "saltsaltsaltsalt", 4096);
  for (std::string user : {"user", "nobody"}) {
    auto m = make_mechanism(Mech::scram_sha_256, s, {"", [] { return std::string("SERVERNONCE"); }});
    Step first = m->start(std::string("n,,n=" + user + ",r=CLIENT"));
    ASSERT_EQ(first.kind, Step::challenge) << user;  // unknown users get a made-up salt
    Step fin = m->next("c=biws,r=CLIENTSERVERNONCE,p=" + base64_encode(std::string(32, 'x')));
    EXPECT_EQ(fin.kind, Step::failure) << user;
    EXPECT_EQ(fin.why, Step::Why::bad_credentials) << user;
  }
}

TEST(Scram, MalformedAndImpersonation) {
  Secrets s;
  s.scram["user"] = derive_scram("pencil", "saltsaltsaltsalt", 4096);
  for (std::string bad : {"", "x", "p=tls-unique,,n=user,r=abc", "n,,m=ext,n=user,r=abc", "n,,n=user",
                          "n,,n=us=er,r=abc", "n,,r=abc,n=user", "n,,n=user,r="}) {
    auto m = make_mechanism(Mech::scram_sha_256, s);
    EXPECT_EQ(m->start(bad).why, Step::Why::malformed) << bad;
  }
  auto m = make_mechanism(Mech::scram_sha_256, s);
  EXPECT_EQ(m->start(std::string("n,a=admin,n=user,r=abc")).why, Step::Why::impersonation);
  auto ok = make_mechanism(Mech::scram_sha_256, s);
  EXPECT_EQ(ok->start(std::string("n,a=user,n=user,r=abc")).kind, Step::challenge);
  // Wrong nonce or channel binding in the final message.
  auto m2 = make_mechanism(Mech::scram_sha_256, s, {"", [] { return std::string("S"); }});
  m2->start(std::string("n,,n=user,r=C"));
  EXPECT_EQ(m2->next("c=biws,r=XS,p=" + base64_encode(std::string(32, 'x'))).why, Step::Why::malformed);
}

TEST(Scram, StoredFormRoundTrips) {
  ScramSecret a = new_scram("Correct-Horse-9");
  std::string text = encode_scram(a);
  EXPECT_EQ(text.rfind("SCRAM-SHA-256$10000:", 0), 0u);
  auto b = decode_scram(text);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->salt, a.salt);
  EXPECT_EQ(key_b64(b->stored_key), key_b64(a.stored_key));
  EXPECT_EQ(key_b64(b->server_key), key_b64(a.server_key));
  EXPECT_FALSE(decode_scram("SCRAM-SHA-256$x:abc$def:ghi"));
  EXPECT_FALSE(decode_scram("plain"));
}

TEST(Plain, ParsesAndRefuses) {
  Secrets s;
  auto m = make_mechanism(Mech::plain, s);
  Step st = m->start(std::string("\0user@example.test\0secret", 25));
  ASSERT_EQ(st.kind, Step::verify_password);
  EXPECT_EQ(st.user, "user@example.test");
  EXPECT_EQ(st.password, "secret");
  // authzid equal to the user (any case) is fine; another identity is impersonation.
  EXPECT_EQ(make_mechanism(Mech::plain, s)->start(std::string("USER@example.test\0user@example.test\0pw", 38)).kind,
            Step::verify_password);
  EXPECT_EQ(make_mechanism(Mech::plain, s)->start(std::string("boss@example.test\0user@example.test\0pw", 38)).why,
            Step::Why::impersonation);
  for (std::string bad : {std::string("nonul"), std::string("\0user", 5), std::string("\0\0pw", 4),
                          std::string("\0user\0", 6), std::string("\0u\0p\0x", 6)})
    EXPECT_EQ(make_mechanism(Mech::plain, s)->start(bad).why, Step::Why::malformed);
  // No initial response: an empty challenge, then the response.
  auto m2 = make_mechanism(Mech::plain, s);
  EXPECT_EQ(m2->start(std::nullopt).kind, Step::challenge);
  EXPECT_EQ(m2->next(std::string("\0u@x.test\0pw", 12)).kind, Step::verify_password);
}

TEST(Login, AsksUserThenPassword) {
  Secrets s;
  auto m = make_mechanism(Mech::login, s);
  Step a = m->start(std::nullopt);
  EXPECT_EQ(a.data, "Username:");
  Step b = m->next("user@example.test");
  EXPECT_EQ(b.data, "Password:");
  Step c = m->next("secret");
  ASSERT_EQ(c.kind, Step::verify_password);
  EXPECT_EQ(c.user, "user@example.test");
  auto m2 = make_mechanism(Mech::login, s);
  EXPECT_EQ(m2->start(std::string("user@example.test")).data, "Password:");
  EXPECT_EQ(m2->next("").why, Step::Why::malformed);
}

// RFC 2195 section 2: tim / tanstaaftanstaaf.
TEST(CramMd5, Rfc2195Vector) {
  CramSecret secret = derive_cram_md5("tanstaaftanstaaf");
  EXPECT_EQ(cram_md5_digest_hex(secret, "<1896.697170952@postoffice.reston.mci.net>"),
            "b913a602c7eda7a495b4e6e7334d3890");
  Secrets s;
  s.cram["tim"] = secret;
  auto m = make_mechanism(Mech::cram_md5, s, {"mail.example.test", {}});
  Step ch = m->start(std::nullopt);
  ASSERT_EQ(ch.kind, Step::challenge);
  EXPECT_NE(ch.data.find("@mail.example.test>"), std::string::npos);
  EXPECT_EQ(m->next("tim " + cram_md5_digest_hex(secret, ch.data)).kind, Step::success);
  auto m2 = make_mechanism(Mech::cram_md5, s, {"h", {}});
  m2->start(std::nullopt);
  EXPECT_EQ(m2->next("tim 00000000000000000000000000000000").why, Step::Why::bad_credentials);
}

TEST(Password, PolicyRules) {
  PasswordPolicy p;
  EXPECT_FALSE(check_password_policy("Correct-Horse-9", "demo@example.test", p));
  EXPECT_TRUE(check_password_policy("Short-1a", "demo@example.test", p));             // length
  EXPECT_TRUE(check_password_policy("alllowercaseletters", "demo@example.test", p));  // classes
  EXPECT_TRUE(check_password_policy("My-Demo-Password-1", "demo@example.test", p));   // user name
  EXPECT_TRUE(check_password_policy("Line\nBreak-Pass-1", "x@example.test", p));
  p.min_classes = 1;
  p.min_length = 4;
  p.forbid_username = false;
  EXPECT_FALSE(check_password_policy("demodemo", "demo@example.test", p));
  // Length counts characters, not bytes.
  p.min_length = 5;
  EXPECT_TRUE(check_password_policy("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "x@y.test", p));
}

TEST(Password, Argon2idHashAndRehash) {
  std::string h = hash_password("Correct-Horse-9");
  EXPECT_EQ(h.rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(verify_password(h, "Correct-Horse-9"));
  EXPECT_FALSE(verify_password(h, "correct-horse-9"));
  EXPECT_FALSE(needs_rehash(h));
  // A hash with weaker (older) parameters is flagged for upgrade.
  std::string weak = "$argon2id$v=19$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$"
                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  EXPECT_TRUE(needs_rehash(weak));
}

TEST(Base64, StrictDecoding) {
  EXPECT_EQ(*base64_decode("AHVzZXIAcGFzcw=="), std::string("\0user\0pass", 10));
  EXPECT_EQ(*base64_decode(""), "");
  EXPECT_FALSE(base64_decode("AHVz ZXIA"));
  EXPECT_FALSE(base64_decode("AHVzZXIAcGFzcw="));
  EXPECT_FALSE(base64_decode("!!!!"));
}
