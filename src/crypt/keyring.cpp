// crypt/: the keyring -- the data key wrapped by a key derived from the password.
//
//   bulwark-keyring 1
//   kdf argon2id13 ops=3 mem=268435456 salt=<base64, 16 bytes>
//   key <base64: 24-byte nonce, then the 32-byte data key encrypted, then its tag>
//
// The first two lines are the associated data of the wrapping: the cost and the salt
// cannot be changed without the key line failing.
#include <sodium.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "auth/password.hpp"
#include "crypt/crypt.hpp"

namespace bulwark::crypt {

namespace {

constexpr std::string_view kFirstLine = "bulwark-keyring 1";

// The key-encryption key: Argon2id of the password. Wiped by the caller.
bool derive(std::string_view password, const unsigned char* salt, KdfCost cost, unsigned char kek[32]) {
  return crypto_pwhash(kek, 32, password.data(), password.size(), salt, cost.ops, cost.mem,
                       crypto_pwhash_ALG_ARGON2ID13) == 0;
}

std::string kdf_line(KdfCost cost, const unsigned char* salt) {
  return "kdf argon2id13 ops=" + std::to_string(cost.ops) + " mem=" + std::to_string(cost.mem) +
         " salt=" + auth::base64_encode(std::string_view(reinterpret_cast<const char*>(salt), crypto_pwhash_SALTBYTES));
}

struct Parsed {
  KdfCost cost{};
  std::string salt, wrapped, ad;
};

std::optional<Parsed> parse(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    size_t e = text.find('\n');
    lines.push_back(text.substr(0, e));
    text.remove_prefix(e == std::string_view::npos ? text.size() : e + 1);
  }
  if (lines.size() != 3 || lines[0] != kFirstLine) return std::nullopt;
  Parsed p;
  unsigned long long ops = 0, mem = 0;
  char salt[64] = {0};
  std::string kdf(lines[1]);
  if (std::sscanf(kdf.c_str(), "kdf argon2id13 ops=%llu mem=%llu salt=%63s", &ops, &mem, salt) != 3) return std::nullopt;
  // bounds: libsodium's own, and no more than 4 GiB or 64 passes (a keyring is not a DoS)
  if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > 64 || mem < crypto_pwhash_MEMLIMIT_MIN || mem > (4ull << 30))
    return std::nullopt;
  p.cost = {ops, size_t(mem)};
  auto s = auth::base64_decode(salt);
  if (!s || s->size() != crypto_pwhash_SALTBYTES) return std::nullopt;
  p.salt = *s;
  if (lines[2].substr(0, 4) != "key ") return std::nullopt;
  auto w = auth::base64_decode(lines[2].substr(4));
  if (!w || w->size() != 24 + DataKey::size + 16) return std::nullopt;
  p.wrapped = *w;
  p.ad = std::string(lines[0]) + "\n" + std::string(lines[1]) + "\n";
  return p;
}

}  // namespace

KdfCost KdfCost::moderate() { return {crypto_pwhash_OPSLIMIT_MODERATE, crypto_pwhash_MEMLIMIT_MODERATE}; }

std::string new_keyring(std::string_view password, const DataKey& key, KdfCost cost) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  unsigned char salt[crypto_pwhash_SALTBYTES];
  randombytes_buf(salt, sizeof salt);
  std::string ad = std::string(kFirstLine) + "\n" + kdf_line(cost, salt) + "\n";
  unsigned char kek[32];
  if (!derive(password, salt, cost, kek)) throw std::runtime_error("Argon2id: out of memory");
  unsigned char wrapped[24 + DataKey::size + 16];
  randombytes_buf(wrapped, 24);
  unsigned long long n = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + 24, &n, key.bytes(), DataKey::size,
                                             reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nullptr,
                                             wrapped, kek);
  sodium_memzero(kek, sizeof kek);
  return ad + "key " + auth::base64_encode(std::string_view(reinterpret_cast<const char*>(wrapped), sizeof wrapped)) + "\n";
}

std::optional<DataKey> unlock(std::string_view keyring, std::string_view password, std::string* why) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  auto p = parse(keyring);
  if (!p) {
    if (why) *why = "the keyring is damaged";
    return std::nullopt;
  }
  unsigned char kek[32];
  if (!derive(password, reinterpret_cast<const unsigned char*>(p->salt.data()), p->cost, kek)) {
    if (why) *why = "Argon2id: out of memory";
    return std::nullopt;
  }
  unsigned char raw[DataKey::size];
  unsigned long long n = 0;
  const auto* w = reinterpret_cast<const unsigned char*>(p->wrapped.data());
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(raw, &n, nullptr, w + 24, p->wrapped.size() - 24,
                                                      reinterpret_cast<const unsigned char*>(p->ad.data()),
                                                      p->ad.size(), w, kek);
  sodium_memzero(kek, sizeof kek);
  if (rc != 0) {
    if (why) *why = "wrong password";
    return std::nullopt;
  }
  auto key = DataKey::from_bytes(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
  sodium_memzero(raw, sizeof raw);
  return key;
}

std::optional<std::string> rewrap(std::string_view keyring, std::string_view old_password,
                                  std::string_view new_password, std::string* why) {
  auto key = unlock(keyring, old_password, why);
  if (!key) return std::nullopt;
  auto p = parse(keyring);
  return new_keyring(new_password, *key, p->cost);
}

}  // namespace bulwark::crypt
