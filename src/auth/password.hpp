// auth/: passwords and SASL, without I/O. This file: the password policy, Argon2id
// hashes (libsodium) and the stored secrets of the challenge-response mechanisms,
// all derived when a password is set so that no plaintext-equivalent is kept.
// Depends on core/ only.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark::auth {

struct PasswordPolicy {
  size_t min_length = 10;
  int min_classes = 3;  // of lower, upper, digit, other
  bool forbid_username = true;
};

// A reason the password is refused (for the operator), or nothing.
std::optional<std::string> check_password_policy(std::string_view password, std::string_view address,
                                                 const PasswordPolicy& policy);

// Argon2id with the current parameters (libsodium's INTERACTIVE: 2 passes, 64 MiB).
std::string hash_password(std::string_view password);
bool verify_password(const std::string& hash, std::string_view password);
// True when the hash was made with other parameters than the current ones.
bool needs_rehash(const std::string& hash);
// A hash of a random password, verified against when the user does not exist so
// that an unknown user costs the same time as a wrong password.
const std::string& dummy_hash();

// SCRAM-SHA-256 (RFC 5802, RFC 7677) server-side secrets.
using Key = std::array<uint8_t, 32>;
struct ScramSecret {
  std::string salt;  // raw bytes
  uint32_t iterations = 0;
  Key stored_key{}, server_key{};
};
constexpr uint32_t scram_iterations = 10000;  // RFC 7677 asks for at least 4096
ScramSecret derive_scram(std::string_view password, std::string_view salt, uint32_t iterations);
ScramSecret new_scram(std::string_view password);  // random 16-byte salt
// RFC 5803 form: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey> (base64 parts).
std::string encode_scram(const ScramSecret& s);
std::optional<ScramSecret> decode_scram(std::string_view text);

// CRAM-MD5 (RFC 2195, legacy): the HMAC-MD5 inner and outer states after the padded
// key block, so the password itself is not stored (the states are still a
// plaintext-equivalent for CRAM-MD5, which is why it is off unless enabled per user).
using CramSecret = std::array<uint8_t, 32>;
CramSecret derive_cram_md5(std::string_view password);
std::string cram_md5_digest_hex(const CramSecret& secret, std::string_view challenge);

// Crypto helpers shared by the mechanisms.
Key sha256(std::string_view data);
Key hmac_sha256(const Key& key, std::string_view data);
Key hmac_sha256(std::string_view key, std::string_view data);
bool equal_ct(std::string_view a, std::string_view b);  // constant time for equal lengths
std::string base64_encode(std::string_view raw);
std::optional<std::string> base64_decode(std::string_view text);  // strict: no whitespace
std::string random_bytes(size_t n);
void wipe(std::string& secret);  // zero the bytes (not optimised away), then clear

}  // namespace bulwark::auth
