// crypt/: encryption at rest (SPEC 13), the primitives. Depends on core, auth (base64)
// and libsodium; does no file I/O of its own except positioned reads through a caller's fd.
//
// Envelope encryption: one random data key encrypts the files; the keyring holds it
// wrapped by a key derived from the administrator's password with Argon2id. A new
// password rewraps 72 bytes -- no mail is rewritten.
//
// A sealed file is authenticated in chunks (AES-256-GCM, 64 KiB of plaintext each), so
// a reader decrypts only the chunks a partial FETCH or a TOP needs:
//
//   "BWSEAL2\n"  u32 chunk size (big-endian)  16 random bytes (the file's id)
//   chunk 0 .. n-1: ciphertext + 16-byte tag; every chunk full but the last
//
// Each file has its own key: keyed BLAKE2b-256 (libsodium's crypto_generichash) of
// the 28-byte header under the data key. A chunk's 96-bit nonce is four zero bytes and
// its number, with the top bit set on the last chunk; the header is every chunk's
// associated data. So chunks cannot be reordered, dropped or moved between files, a
// file cut at a chunk boundary fails, the header cannot be altered, and no nonce is
// used twice under one key (a file is written once, under a fresh random id: 2^128).
// (Version 1, XChaCha20-Poly1305, was never written by a released command; AES-GCM
// with AES-NI reads 4 KiB messages about five times faster -- bench/README.md.)
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark::crypt {

// 32 secret bytes in guarded, locked memory (sodium_malloc), wiped when destroyed.
class DataKey {
 public:
  static DataKey random();
  static std::optional<DataKey> from_bytes(std::string_view raw);  // exactly 32 bytes
  DataKey(DataKey&& o) noexcept : k_(o.k_) { o.k_ = nullptr; }
  DataKey& operator=(DataKey&& o) noexcept;
  DataKey(const DataKey&) = delete;
  DataKey& operator=(const DataKey&) = delete;
  ~DataKey();
  const unsigned char* bytes() const { return k_; }
  static constexpr size_t size = 32;

 private:
  DataKey();
  unsigned char* k_ = nullptr;
};

constexpr std::string_view kMagic = "BWSEAL2\n";
constexpr size_t kHeaderSize = 8 + 4 + 16;
constexpr size_t kTagSize = 16;
constexpr uint32_t kDefaultChunk = 64 * 1024;

// Whether these first bytes of a file are a sealed file's.
bool is_sealed(std::string_view first_bytes);

// The sealed form of `plain`, whole.
std::string seal(const DataKey& key, std::string_view plain, uint32_t chunk = kDefaultChunk);

// The plaintext of a whole sealed file; nullopt, with the cause in *why, when it is not
// one, was altered, cut short or sealed under another key.
std::optional<std::string> open(const DataKey& key, std::string_view sealed, std::string* why = nullptr);

// Sealing as the bytes come (a message arriving over SMTP): `out` receives the sealed
// bytes in order, the header first.
class Sealer {
 public:
  Sealer(const DataKey& key, std::string* out, uint32_t chunk = kDefaultChunk);
  ~Sealer();
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;
  void write(std::string_view plain);
  void finish();  // the last chunk (possibly empty); required, once

 private:
  void emit(std::string_view plain, bool last);
  const DataKey& key_;
  std::array<unsigned char, 32> fkey_{};  // this file's key
  std::string* out_;
  uint32_t chunk_;
  std::string header_, pending_;
  uint64_t index_ = 0;
  bool finished_ = false;
};

// Positioned reads of a sealed file through an open descriptor: only the chunks
// covering [offset, offset + length) are read and checked. The last chunk read is kept.
// The key and the descriptor must outlive the Reader (it keeps neither).
class Reader {
 public:
  // Reads and checks the header; `file_size` is the sealed file's size.
  // `start`: the file's first bytes when the caller has read them already (at least
  // the header is then not read again, and chunk 0 not either when they cover it).
  static std::optional<Reader> make(const DataKey& key, int fd, uint64_t file_size, std::string* why = nullptr,
                                    std::string_view start = {});
  Reader(const Reader&) = default;
  Reader(Reader&&) = default;
  Reader& operator=(const Reader&) = default;
  Reader& operator=(Reader&&) = default;
  ~Reader();  // wipes the file key and the cached chunk
  uint64_t size() const { return plain_size_; }
  // The plaintext bytes at [offset, offset + length) (shorter at the end); nullopt when
  // a chunk fails its check or cannot be read (cause in *why).
  std::optional<std::string> read(uint64_t offset, size_t length, std::string* why = nullptr);

 private:
  explicit Reader(int fd) : fd_(fd) {}
  bool load(uint64_t index, std::string* why);
  std::array<unsigned char, 32> fkey_{};  // this file's key
  int fd_;
  std::string header_;
  uint32_t chunk_ = 0;
  uint64_t chunks_ = 0, plain_size_ = 0;
  std::optional<uint64_t> cached_index_;
  std::string cached_;
  std::string first_;  // chunk 0's ciphertext, when make() was given it (used once)
};

// ---- the keyring (text; the caller stores it durably) ----

struct KdfCost {
  uint64_t ops;
  size_t mem;  // bytes
  static KdfCost moderate();  // libsodium's MODERATE: 3 passes over 256 MiB (~1 s)
};

// A new keyring: a fresh data key wrapped under `password`. Returns the file text.
std::string new_keyring(std::string_view password, const DataKey& key, KdfCost cost = KdfCost::moderate());
// The data key, or nullopt with the cause in *why: a wrong password ("wrong password")
// or a damaged keyring. Runs Argon2id: call it off any I/O thread.
std::optional<DataKey> unlock(std::string_view keyring, std::string_view password, std::string* why = nullptr);
// The same data key wrapped under a new password (fresh salt and nonce); nullopt when
// `old_password` does not open it.
std::optional<std::string> rewrap(std::string_view keyring, std::string_view old_password,
                                  std::string_view new_password, std::string* why = nullptr);

}  // namespace bulwark::crypt
