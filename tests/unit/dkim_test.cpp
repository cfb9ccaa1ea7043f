// dkim/: canonicalization (RFC 6376 3.4.5's example), tag lists, base64, the choice
// of signed header fields, keys on disk and the signer's choice of keys.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <thread>

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

// RFC 6376 3.4.3/3.4.4 as written, the whole body at once: the reference the streaming
// BodyHash must agree with.
std::string canonical_body(bool relaxed, std::string_view body) {
  std::vector<std::string> lines;
  size_t at = 0;
  for (size_t e; (e = body.find("\r\n", at)) != std::string_view::npos; at = e + 2) lines.emplace_back(body.substr(at, e - at));
  if (at < body.size()) lines.emplace_back(body.substr(at));
  if (relaxed)
    for (auto& l : lines) {
      std::string r;
      for (char c : l) {
        bool w = c == ' ' || c == '\t';
        if (w && !r.empty() && r.back() == ' ') continue;
        r += w ? ' ' : c;
      }
      while (!r.empty() && r.back() == ' ') r.pop_back();
      l = r;
    }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::string out;
  for (auto& l : lines) out += l + "\r\n";
  if (out.empty() && !relaxed) out = "\r\n";
  return out;
}

}  // namespace

TEST(DkimCanon, StreamingAgreesWithTheRfcInAnyPieces) {
  uint32_t seed = 12345;
  auto next = [&] { return seed = seed * 1103515245u + 12345u, seed >> 16; };
  const char alphabet[] = {'a', 'b', ' ', '\t', '\r', '\n', '\r', '\n'};
  for (int round = 0; round < 300; ++round) {
    size_t len = round < 280 ? next() % 64 : 40000 + next() % 60000;  // the long ones cross the flush size
    std::string body;
    for (size_t i = 0; i < len; ++i) body += round % 3 == 0 && next() % 4 ? 'x' : alphabet[next() % 8];
    for (bool relaxed : {false, true}) {
      std::string want = sha256(canonical_body(relaxed, body));
      EXPECT_EQ(body_hash(relaxed, body), want) << round;
      EXPECT_EQ(body_hash(relaxed, body, 1 + next() % 7), want) << round;
      EXPECT_EQ(body_hash(relaxed, body, 1 + next() % 9000), want) << round;
    }
  }
}

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

namespace {

// RFC 8463 Appendix A: one message signed with Ed25519 (selector brisbane) and RSA
// (selector test), both simple/simple.
const char* kRfc8463 =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";

using Keys = std::unordered_map<std::string, KeyAnswer>;

std::vector<Verdict> verify(std::string_view msg, const Keys& keys, int64_t now = 1700000000) {
  size_t b = body_offset(msg);
  Verifier v(msg.substr(0, b - 4), now);
  for (size_t i = b; i < msg.size(); i += 7) v.body(msg.substr(i, 7));  // in pieces
  return v.finish(keys);
}

Keys rfc8463_keys() {
  return {{"brisbane._domainkey.football.example.com",
           {KeyAnswer::found, {"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}},
          {"test._domainkey.football.example.com",
           {KeyAnswer::found,
            {"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQ"
             "iY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G"
             "+2kryOTIKT+l/K4w3QIDAQAB"}}}};
}

}  // namespace

TEST(DkimVerify, Rfc8463Example) {
  auto v = verify(kRfc8463, rfc8463_keys());
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].result, Verdict::pass) << v[0].reason;
  EXPECT_EQ(v[0].algorithm, "ed25519-sha256");
  EXPECT_EQ(v[0].domain, "football.example.com");
  EXPECT_EQ(v[0].b, "/gCrinpc");
  EXPECT_EQ(v[1].result, Verdict::pass) << v[1].reason;
  // One character of the body or of a signed header changed: both fail.
  std::string body(kRfc8463);
  body.replace(body.find("hungry"), 6, "Hungry");
  for (auto& r : verify(body, rfc8463_keys())) EXPECT_EQ(r.reason, "body hash did not verify");
  std::string head(kRfc8463);
  head.replace(head.find("dinner"), 6, "Dinner");
  for (auto& r : verify(head, rfc8463_keys())) EXPECT_EQ(r.reason, "signature did not verify");
  // An unsigned header added: still pass (only h= is covered); a second From: (which
  // h= over-signs here) breaks it.
  std::string extra(kRfc8463);
  extra.insert(extra.find("\r\n\r\n") + 2, "X-Added: yes\r\n");
  for (auto& r : verify(extra, rfc8463_keys())) EXPECT_EQ(r.result, Verdict::pass);
  std::string from(kRfc8463);
  from.insert(from.find("\r\n\r\n") + 2, "From: ceo@football.example.com\r\n");
  for (auto& r : verify(from, rfc8463_keys())) EXPECT_EQ(r.result, Verdict::fail);
}

TEST(DkimVerify, KeyProblems) {
  Keys keys = rfc8463_keys();
  keys["brisbane._domainkey.football.example.com"] = {KeyAnswer::found, {"v=DKIM1; k=ed25519; p="}};
  keys["test._domainkey.football.example.com"] = {KeyAnswer::missing, {}};
  auto v = verify(kRfc8463, keys);
  EXPECT_EQ(v[0].result, Verdict::fail);
  EXPECT_EQ(v[0].reason, "key revoked");
  EXPECT_EQ(v[1].result, Verdict::permerror);
  keys["brisbane._domainkey.football.example.com"] = {KeyAnswer::temporary, {}};
  keys["test._domainkey.football.example.com"] = {KeyAnswer::found, {"v=DKIM1; k=ed25519; p=abc"}};
  v = verify(kRfc8463, keys);
  EXPECT_EQ(v[0].result, Verdict::temperror);
  EXPECT_EQ(v[1].reason, "key type does not match a=");
  // A wrong key (the other algorithm's record under the right name)
  keys = rfc8463_keys();
  keys["brisbane._domainkey.football.example.com"] = {KeyAnswer::found,
                                                      {"v=DKIM1; k=ed25519; p=yi50DjK5O9pqbFpNHklsv9lqaS0ArSYu02qp1S0DW1Y="}};
  EXPECT_EQ(verify(kRfc8463, keys)[0].reason, "signature did not verify");
}

TEST(DkimVerify, OwnSignaturesExpiryAndLength) {
  test::TempDir d;
  Key rsa = keygen(d.path.string(), "example.test", "r", Algorithm::rsa2048);
  Key ed = keygen(d.path.string(), "example.test", "e", Algorithm::ed25519);
  // the printed record's strings joined again are the record's value
  std::string printed = dns_record(rsa), joined;
  for (size_t q = printed.find('"'); q != std::string::npos; q = printed.find('"', printed.find('"', q + 1) + 1))
    joined += printed.substr(q + 1, printed.find('"', q + 1) - q - 1);
  EXPECT_EQ(joined, record_value(rsa));
  Keys keys{{"r._domainkey.example.test", {KeyAnswer::found, {record_value(rsa)}}},
            {"e._domainkey.example.test", {KeyAnswer::found, {record_value(ed)}}}};
  Signer signer(d.path.string());
  std::string msg = "From: u@example.test\r\nSubject:  spaced \t out\r\n\r\nbody  text \r\n\r\n";
  std::string signed_msg = signer.sign(msg, 1700000000) + msg;
  auto v = verify(signed_msg, keys);
  ASSERT_EQ(v.size(), 2u);
  for (auto& r : v) EXPECT_EQ(r.result, Verdict::pass) << r.reason;
  // relaxed: whitespace changes in transit do not matter
  std::string respaced = signed_msg;
  respaced.replace(respaced.find("body  text "), 11, "body text");
  for (auto& r : verify(respaced, keys)) EXPECT_EQ(r.result, Verdict::pass) << r.reason;
  // x= in the past: fail; l= with content appended: neutral; l= past the end: fail
  std::string hdr = "DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=r; h=from; bh=AAAA; b=AAAA; x=100\r\n";
  EXPECT_EQ(verify(hdr + msg, keys)[0].reason, "signature expired");
  std::string bad_i = "DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=r; h=from; bh=AAAA; b=AAAA; i=@evil.test\r\n";
  EXPECT_EQ(verify(bad_i + msg, keys)[0].result, Verdict::permerror);
  std::string no_from = "DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=r; h=subject; bh=AAAA; b=AAAA\r\n";
  EXPECT_EQ(verify(no_from + msg, keys)[0].reason, "From is not signed");
  std::string sha1 = "DKIM-Signature: v=1; a=rsa-sha1; d=example.test; s=r; h=from; bh=AAAA; b=AAAA\r\n";
  EXPECT_EQ(verify(sha1 + msg, keys)[0].result, Verdict::permerror);
}

// An RSA key's verification context is made once per thread and kept: it must give
// the same answers for message after message, after a failure too, on any thread.
TEST(DkimVerify, OneKeyManyMessagesAfterAFailureAndOnAnotherThread) {
  test::TempDir d;
  Key rsa = keygen(d.path.string(), "example.test", "r", Algorithm::rsa2048);
  Keys keys{{"r._domainkey.example.test", {KeyAnswer::found, {record_value(rsa)}}}};
  Signer signer(d.path.string());
  std::string a = "From: u@example.test\r\nSubject: one\r\n\r\nfirst\r\n";
  std::string b = "From: u@example.test\r\nSubject: two\r\n\r\nsecond\r\n";
  std::string sa = signer.sign(a, 1700000000) + a, sb = signer.sign(b, 1700000000) + b;
  std::string forged = sb;
  forged.replace(forged.find("Subject: two"), 12, "Subject: TWO");  // the body hash still holds
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(verify(sa, keys)[0].result, Verdict::pass);
    auto f = verify(forged, keys)[0];
    EXPECT_EQ(f.result, Verdict::fail);
    EXPECT_EQ(f.reason, "signature did not verify");
    EXPECT_EQ(verify(sb, keys)[0].result, Verdict::pass);
  }
  Verdict::Result elsewhere = Verdict::permerror, forged_elsewhere = Verdict::pass;
  std::thread t([&] {
    elsewhere = verify(sa, keys)[0].result;
    forged_elsewhere = verify(forged, keys)[0].result;
  });
  t.join();
  EXPECT_EQ(elsewhere, Verdict::pass);
  EXPECT_EQ(forged_elsewhere, Verdict::fail);
}
