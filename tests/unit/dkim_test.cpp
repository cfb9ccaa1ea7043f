// dkim/: canonicalization (RFC 6376 3.4.5's example), tag lists, base64, the choice
// of signed header fields, keys on disk and the signer's choice of keys.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include "dkim/dkim.hpp"
#include "temp_dir.hpp"

using namespace bulwark;
using namespace bulwark::dkim;

namespace {

std::string sha256(std::string_view s) {
  unsigned char d[32];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), d, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(d), n);
}

std::string body_hash(bool relaxed, std::string_view body, size_t piece = 0) {
  BodyHash h(relaxed);
  if (piece == 0) h.update(body);
  for (size_t i = 0; piece && i < body.size(); i += piece) h.update(body.substr(i, piece));
  return h.finish();
}

}  // namespace

TEST(DkimCanon, Rfc6376Example) {
  // RFC 6376 3.4.5
  auto fields = split_fields("A: X\r\nB : Y\t\r\n\tZ  ");
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(relaxed_header(fields[0].raw), "a:X");
  EXPECT_EQ(relaxed_header(fields[1].raw), "b:Y Z");
  std::string body = " C \r\nD \t E\r\n\r\n\r\n";
  EXPECT_EQ(body_hash(true, body), sha256(" C\r\nD E\r\n"));
  EXPECT_EQ(body_hash(false, body), sha256(" C \r\nD \t E\r\n"));
  for (size_t piece : {1, 2, 3, 5})  // the same in any pieces
    EXPECT_EQ(body_hash(true, body, piece), sha256(" C\r\nD E\r\n")) << piece;
}

TEST(DkimCanon, EmptyAndUnterminatedBodies) {
  EXPECT_EQ(body_hash(true, ""), sha256(""));           // relaxed: nothing
  EXPECT_EQ(body_hash(false, ""), sha256("\r\n"));      // simple: one CRLF
  EXPECT_EQ(body_hash(true, "\r\n \r\n\t\r\n"), sha256(""));  // only blank lines
  EXPECT_EQ(body_hash(false, "\r\n\r\n"), sha256("\r\n"));
  EXPECT_EQ(body_hash(true, "x  "), sha256("x\r\n"));   // a CRLF is added
  EXPECT_EQ(body_hash(true, "a\r\n\r\nb\r\n"), sha256("a\r\n\r\nb\r\n"));  // inner blank lines stay
  BodyHash limited(false, false, 3);  // l=3: only "abc" is hashed
  limited.update("abcdef\r\n");
  EXPECT_EQ(limited.finish(), sha256("abc"));
  EXPECT_EQ(limited.length(), 8u);
}

TEST(DkimCanon, FieldsAndBodyOffset) {
  std::string m = "From: a@b\r\nSubject: x\r\n y\r\n\r\nbody\r\n";
  EXPECT_EQ(body_offset(m), m.find("body"));
  EXPECT_EQ(body_offset("From: a@b\r\n"), std::string::npos);
  EXPECT_EQ(body_offset("\r\nbody"), 2u);
  auto f = split_fields(std::string_view(m).substr(0, m.find("\r\n\r\n")));
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[1].name, "Subject");
  EXPECT_EQ(f[1].raw, "Subject: x\r\n y");
  auto names = headers_to_sign(split_fields("From: a@b\r\nTo: c\r\nTo: d\r\nReceived: x\r\nX-Other: y"));
  EXPECT_EQ(names, (std::vector<std::string>{"from", "from", "to", "to"}));
}

TEST(DkimTags, ParseAndBase64) {
  auto t = parse_tags(" v=1; a=rsa-sha256;\r\n\tb=ab\r\n cd ; ");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->size(), 3u);
  EXPECT_EQ((*t)[2].first, "b");
  EXPECT_EQ((*t)[2].second, "ab cd");  // folding removed; base64 readers drop the space
  EXPECT_FALSE(parse_tags("v=1; v=2"));  // a tag twice
  EXPECT_FALSE(parse_tags("novalue"));
  EXPECT_EQ(base64("hello"), "aGVsbG8=");
  EXPECT_EQ(unbase64("aGVs\r\n bG8="), std::string("hello"));
  EXPECT_FALSE(unbase64("abc"));
}

TEST(DkimKeys, KeygenListRemoveAndSignerSeesChanges) {
  test::TempDir d;
  Key rsa = keygen(d.path.string(), "Example.TEST", "s1", Algorithm::rsa2048);
  struct stat st{};
  ASSERT_EQ(::stat(rsa.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THROW(keygen(d.path.string(), "example.test", "s1", Algorithm::ed25519), std::runtime_error);
  EXPECT_THROW(keygen(d.path.string(), "example.test", "../x", Algorithm::ed25519), std::invalid_argument);
  EXPECT_EQ(default_selector(Algorithm::ed25519, 1795996800), "202611e");  // 2026-11-30
  EXPECT_EQ(default_selector(Algorithm::rsa2048, 1795996800), "202611r");
  Signer signer(d.path.string());
  std::string msg = "From: Someone <u@example.test>\r\nSubject: hi\r\n\r\nbody\r\n";
  std::string sig = signer.sign(msg, 1700000000);
  EXPECT_NE(sig.find("a=rsa-sha256; c=relaxed/relaxed; d=example.test; s=s1;"), std::string::npos) << sig;
  EXPECT_EQ(sig.find("ed25519"), std::string::npos);
  keygen(d.path.string(), "example.test", "e1", Algorithm::ed25519);
  sig = signer.sign(msg, 1700000000);
  EXPECT_NE(sig.find("a=ed25519-sha256"), std::string::npos);
  EXPECT_NE(sig.find("a=rsa-sha256"), std::string::npos);
  EXPECT_EQ(list_keys(d.path.string()).size(), 2u);
  // No key for the From: domain, two From fields, or From addresses of two domains: unsigned.
  EXPECT_EQ(signer.sign("From: u@other.test\r\n\r\nx\r\n", 1), "");
  EXPECT_EQ(signer.sign("From: u@example.test\r\nFrom: v@example.test\r\n\r\nx\r\n", 1), "");
  EXPECT_EQ(signer.sign("From: u@example.test, v@other.test\r\n\r\nx\r\n", 1), "");
  remove_key(d.path.string(), "example.test", "s1");
  remove_key(d.path.string(), "example.test", "e1");
  EXPECT_EQ(signer.sign(msg, 1), "");
  EXPECT_THROW(remove_key(d.path.string(), "example.test", "e1"), std::runtime_error);
}
