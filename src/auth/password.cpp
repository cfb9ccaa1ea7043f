// The MD5 block API is the only way to keep and resume HMAC-MD5 pad states (CRAM-MD5).
#define OPENSSL_SUPPRESS_DEPRECATED
#include "auth/password.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <sodium.h>

#include <cstring>
#include <mutex>
#include <stdexcept>

#include "core/strings.hpp"

namespace bulwark::auth {
namespace {

void init_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) throw std::runtime_error("libsodium failed to initialise");
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

}  // namespace

std::optional<std::string> check_password_policy(std::string_view pw, std::string_view address,
                                                 const PasswordPolicy& p) {
  if (pw.empty()) return "the password is empty";
  if (pw.size() > 1024) return "the password is longer than 1024 bytes";
  for (char c : pw)
    if (c == '\r' || c == '\n' || c == '\0') return "the password contains a line break or NUL byte";
  if (utf8_length(pw) < p.min_length)
    return "the password is shorter than " + std::to_string(p.min_length) + " characters";
  int lower = 0, upper = 0, digit = 0, other = 0;
  for (unsigned char c : pw) {
    if (c >= 'a' && c <= 'z') lower = 1;
    else if (c >= 'A' && c <= 'Z') upper = 1;
    else if (c >= '0' && c <= '9') digit = 1;
    else other = 1;
  }
  if (lower + upper + digit + other < p.min_classes)
    return "the password must mix at least " + std::to_string(p.min_classes) +
           " of: lower-case letters, upper-case letters, digits, other characters";
  if (p.forbid_username) {
    std::string_view local = address.substr(0, address.rfind('@'));
    // Names of one or two characters would forbid half of all passwords.
    if (local.size() >= 3 && to_lower(pw).find(to_lower(local)) != std::string::npos)
      return "the password must not contain the user name";
  }
  return std::nullopt;
}

std::string hash_password(std::string_view pw) {
  init_sodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, pw.data(), pw.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                            crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw std::runtime_error("out of memory while hashing the password");
  return out;
}

bool verify_password(const std::string& hash, std::string_view pw) {
  init_sodium();
  return crypto_pwhash_str_verify(hash.c_str(), pw.data(), pw.size()) == 0;
}

bool needs_rehash(const std::string& hash) {
  init_sodium();
  return crypto_pwhash_str_needs_rehash(hash.c_str(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0;
}

const std::string& dummy_hash() {
  static const std::string h = hash_password(base64_encode(random_bytes(24)));
  return h;
}

Key sha256(std::string_view data) {
  Key out{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

Key hmac_sha256(std::string_view key, std::string_view data) {
  Key out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       out.data(), &len);
  return out;
}

Key hmac_sha256(const Key& key, std::string_view data) {
  return hmac_sha256(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()), data);
}

bool equal_ct(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string base64_encode(std::string_view raw) {
  init_sodium();
  std::string out(sodium_base64_ENCODED_LEN(raw.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()), raw.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  init_sodium();
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                        &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(len);
  return out;
}

std::string random_bytes(size_t n) {
  init_sodium();
  std::string s(n, '\0');
  randombytes_buf(s.data(), n);
  return s;
}

void wipe(std::string& secret) {
  if (!secret.empty()) sodium_memzero(secret.data(), secret.size());
  secret.clear();
}

ScramSecret derive_scram(std::string_view pw, std::string_view salt, uint32_t iterations) {
  ScramSecret s;
  s.salt = std::string(salt);
  s.iterations = iterations;
  Key salted{};
  PKCS5_PBKDF2_HMAC(pw.data(), int(pw.size()), reinterpret_cast<const unsigned char*>(salt.data()), int(salt.size()),
                    int(iterations), EVP_sha256(), int(salted.size()), salted.data());
  Key client_key = hmac_sha256(salted, "Client Key");
  s.stored_key = sha256(std::string_view(reinterpret_cast<const char*>(client_key.data()), client_key.size()));
  s.server_key = hmac_sha256(salted, "Server Key");
  sodium_memzero(salted.data(), salted.size());
  sodium_memzero(client_key.data(), client_key.size());
  return s;
}

ScramSecret new_scram(std::string_view pw) { return derive_scram(pw, random_bytes(16), scram_iterations); }

namespace {
std::string_view key_view(const Key& k) { return {reinterpret_cast<const char*>(k.data()), k.size()}; }
}  // namespace

std::string encode_scram(const ScramSecret& s) {
  return "SCRAM-SHA-256$" + std::to_string(s.iterations) + ":" + base64_encode(s.salt) + "$" +
         base64_encode(key_view(s.stored_key)) + ":" + base64_encode(key_view(s.server_key));
}

std::optional<ScramSecret> decode_scram(std::string_view t) {
  constexpr std::string_view prefix = "SCRAM-SHA-256$";
  if (t.substr(0, prefix.size()) != prefix) return std::nullopt;
  t.remove_prefix(prefix.size());
  size_t colon1 = t.find(':'), dollar = t.find('$'), colon2 = t.rfind(':');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || colon2 <= dollar || colon1 > dollar)
    return std::nullopt;
  ScramSecret s;
  uint64_t iter = 0;
  for (char c : t.substr(0, colon1)) {
    if (c < '0' || c > '9' || iter > 100000000) return std::nullopt;
    iter = iter * 10 + uint64_t(c - '0');
  }
  if (iter == 0) return std::nullopt;
  s.iterations = uint32_t(iter);
  auto salt = base64_decode(t.substr(colon1 + 1, dollar - colon1 - 1));
  auto stored = base64_decode(t.substr(dollar + 1, colon2 - dollar - 1));
  auto server = base64_decode(t.substr(colon2 + 1));
  if (!salt || !stored || !server || stored->size() != 32 || server->size() != 32) return std::nullopt;
  s.salt = *salt;
  std::memcpy(s.stored_key.data(), stored->data(), 32);
  std::memcpy(s.server_key.data(), server->data(), 32);
  return s;
}

namespace {

// The MD5 chaining state after one 64-byte block of key XOR pad.
void md5_pad_state(std::string_view key, unsigned char pad, uint8_t* out16) {
  unsigned char block[64] = {0};
  std::memcpy(block, key.data(), key.size());
  for (auto& b : block) b ^= pad;
  MD5_CTX ctx;
  MD5_Init(&ctx);
  MD5_Update(&ctx, block, sizeof block);
  uint32_t words[4] = {ctx.A, ctx.B, ctx.C, ctx.D};
  std::memcpy(out16, words, 16);
  sodium_memzero(block, sizeof block);
  sodium_memzero(&ctx, sizeof ctx);
}

void md5_resume(MD5_CTX& ctx, const uint8_t* state16) {
  MD5_Init(&ctx);
  uint32_t words[4];
  std::memcpy(words, state16, 16);
  ctx.A = words[0], ctx.B = words[1], ctx.C = words[2], ctx.D = words[3];
  ctx.Nl = 512;  // one block already hashed
  ctx.Nh = 0;
}

}  // namespace

CramSecret derive_cram_md5(std::string_view pw) {
  unsigned char keybuf[16];
  std::string_view key = pw;
  if (pw.size() > 64) {  // RFC 2104: long keys are hashed first
    MD5(reinterpret_cast<const unsigned char*>(pw.data()), pw.size(), keybuf);
    key = std::string_view(reinterpret_cast<const char*>(keybuf), sizeof keybuf);
  }
  CramSecret s{};
  md5_pad_state(key, 0x36, s.data());
  md5_pad_state(key, 0x5c, s.data() + 16);
  sodium_memzero(keybuf, sizeof keybuf);
  return s;
}

std::string cram_md5_digest_hex(const CramSecret& secret, std::string_view challenge) {
  MD5_CTX ctx;
  unsigned char inner[16], outer[16];
  md5_resume(ctx, secret.data());
  MD5_Update(&ctx, challenge.data(), challenge.size());
  MD5_Final(inner, &ctx);
  md5_resume(ctx, secret.data() + 16);
  MD5_Update(&ctx, inner, sizeof inner);
  MD5_Final(outer, &ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : outer) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

}  // namespace bulwark::auth
