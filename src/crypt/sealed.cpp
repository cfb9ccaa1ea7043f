// crypt/: the data key and sealed files (format in crypt.hpp).
#include <openssl/evp.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "crypt/crypt.hpp"

namespace bulwark::crypt {

namespace {

void init() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) throw std::runtime_error("libsodium failed to initialise");
}

constexpr uint64_t kLastBit = uint64_t(1) << 63;
constexpr uint32_t kMinChunk = 16, kMaxChunk = 16u << 20;

uint32_t get_u32(const unsigned char* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// The file's own key: keyed BLAKE2b-256 of its header (magic, chunk size, 16 random
// bytes) under the data key. Every file has a key of its own, so chunk numbers can
// serve as AES-GCM's 96-bit nonces without ever repeating under one key.
void file_key(const DataKey& key, std::string_view header, unsigned char out[32]) {
  crypto_generichash(out, 32, reinterpret_cast<const unsigned char*>(header.data()), header.size(), key.bytes(),
                     DataKey::size);
}

// The nonce of chunk `index`: four zero bytes, then the number (top bit: last).
void chunk_nonce(uint64_t index, bool last, unsigned char nonce[12]) {
  std::memset(nonce, 0, 4);
  uint64_t n = index | (last ? kLastBit : 0);
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<unsigned char>(n >> (56 - 8 * i));
}

// AES-256-GCM (OpenSSL: AES-NI where the CPU has it) of one chunk, the header as
// associated data. Encrypting writes ciphertext then tag into `out`; decrypting
// checks the tag at the end of `in`.
bool gcm(bool encrypt, const unsigned char fkey[32], std::string_view header, uint64_t index, bool last,
         const unsigned char* in, size_t n, unsigned char* out) {
  // One context per thread and direction, given the cipher once: in OpenSSL 3 naming
  // the cipher on every init costs more than decrypting a 4 KiB chunk.
  struct Ctx {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    bool ready = false;
    ~Ctx() { EVP_CIPHER_CTX_free(c); }
  };
  thread_local Ctx enc, dec;
  Ctx& ctx = encrypt ? enc : dec;
  if (!ctx.c) return false;
  if (!ctx.ready) {
    int ok = encrypt ? EVP_EncryptInit_ex(ctx.c, EVP_aes_256_gcm(), nullptr, nullptr, nullptr)
                     : EVP_DecryptInit_ex(ctx.c, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
    if (ok != 1) return false;
    ctx.ready = true;
  }
  unsigned char nonce[12];
  chunk_nonce(index, last, nonce);
  int len = 0;
  const unsigned char* ad = reinterpret_cast<const unsigned char*>(header.data());
  if (encrypt) {
    return EVP_EncryptInit_ex(ctx.c, nullptr, nullptr, fkey, nonce) == 1 &&
           EVP_EncryptUpdate(ctx.c, nullptr, &len, ad, int(header.size())) == 1 &&
           EVP_EncryptUpdate(ctx.c, out, &len, in, int(n)) == 1 && EVP_EncryptFinal_ex(ctx.c, out + n, &len) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_GET_TAG, int(kTagSize), out + n) == 1;
  }
  if (n < kTagSize) return false;
  size_t body = n - kTagSize;
  unsigned char tag[kTagSize];
  std::memcpy(tag, in + body, kTagSize);
  return EVP_DecryptInit_ex(ctx.c, nullptr, nullptr, fkey, nonce) == 1 &&
         EVP_DecryptUpdate(ctx.c, nullptr, &len, ad, int(header.size())) == 1 &&
         EVP_DecryptUpdate(ctx.c, out, &len, in, int(body)) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_SET_TAG, int(kTagSize), tag) == 1 &&
         EVP_DecryptFinal_ex(ctx.c, out + body, &len) == 1;
}

// Appends the plaintext of one chunk to *out; false when its check fails.
bool open_chunk(const unsigned char fkey[32], std::string_view header, uint64_t index, bool last,
                std::string_view cipher, std::string* out) {
  if (cipher.size() < kTagSize) return false;
  size_t at = out->size();
  out->resize(at + cipher.size() - kTagSize);
  if (!gcm(false, fkey, header, index, last, reinterpret_cast<const unsigned char*>(cipher.data()), cipher.size(),
           reinterpret_cast<unsigned char*>(out->data() + at))) {
    sodium_memzero(out->data() + at, out->size() - at);
    out->resize(at);
    return false;
  }
  return true;
}

// The header's chunk size when it is a valid header, else 0.
uint32_t header_chunk(std::string_view header) {
  if (header.size() < kHeaderSize || header.substr(0, kMagic.size()) != kMagic) return 0;
  uint32_t c = get_u32(reinterpret_cast<const unsigned char*>(header.data()) + 8);
  return c >= kMinChunk && c <= kMaxChunk ? c : 0;
}

// How a sealed body of `body` bytes splits into chunks: false when no sealer writes it.
bool layout(uint64_t body, uint32_t chunk, uint64_t* chunks, uint64_t* last_cipher) {
  uint64_t full = uint64_t(chunk) + kTagSize;
  if (body < kTagSize) return false;
  *chunks = (body + full - 1) / full;
  *last_cipher = body - (*chunks - 1) * full;
  return *last_cipher >= kTagSize;
}

void set_why(std::string* why, const char* text) {
  if (why) *why = text;
}

}  // namespace

DataKey::DataKey() {
  init();
  k_ = static_cast<unsigned char*>(sodium_malloc(size));
  if (!k_) throw std::bad_alloc();
}

DataKey::~DataKey() {
  if (k_) sodium_free(k_);  // wipes
}

DataKey& DataKey::operator=(DataKey&& o) noexcept {
  if (this != &o) {
    if (k_) sodium_free(k_);
    k_ = o.k_;
    o.k_ = nullptr;
  }
  return *this;
}

DataKey DataKey::random() {
  DataKey k;
  randombytes_buf(k.k_, size);
  return k;
}

std::optional<DataKey> DataKey::from_bytes(std::string_view raw) {
  if (raw.size() != size) return std::nullopt;
  DataKey k;
  std::memcpy(k.k_, raw.data(), size);
  return k;
}

bool is_sealed(std::string_view first_bytes) { return first_bytes.substr(0, kMagic.size()) == kMagic; }

Sealer::Sealer(const DataKey& key, std::string* out, uint32_t chunk) : key_(key), out_(out), chunk_(chunk) {
  init();
  if (chunk < kMinChunk || chunk > kMaxChunk) throw std::invalid_argument("sealed file: bad chunk size");
  header_.assign(kMagic);
  for (int i = 3; i >= 0; --i) header_ += static_cast<char>(chunk >> (8 * i));
  std::string prefix(16, '\0');
  randombytes_buf(prefix.data(), prefix.size());
  header_ += prefix;
  file_key(key_, header_, fkey_.data());
  out_->append(header_);
  pending_.reserve(chunk_);
}

Sealer::~Sealer() {
  sodium_memzero(fkey_.data(), fkey_.size());
  sodium_memzero(pending_.data(), pending_.size());
}

void Sealer::emit(std::string_view plain, bool last) {
  size_t at = out_->size();
  out_->resize(at + plain.size() + kTagSize);
  if (!gcm(true, fkey_.data(), header_, index_++, last, reinterpret_cast<const unsigned char*>(plain.data()),
           plain.size(), reinterpret_cast<unsigned char*>(out_->data() + at)))
    throw std::runtime_error("sealed file: AES-256-GCM failed (OpenSSL)");
}

// Up to one chunk is held back: only finish() knows which chunk is the last.
void Sealer::write(std::string_view plain) {
  if (finished_) throw std::logic_error("sealed file: write after finish");
  while (!plain.empty()) {
    if (pending_.size() == chunk_) {  // full, and more follows: not the last
      emit(pending_, false);
      pending_.clear();
    }
    if (pending_.empty() && plain.size() > chunk_) {
      emit(plain.substr(0, chunk_), false);
      plain.remove_prefix(chunk_);
      continue;
    }
    size_t take = std::min<size_t>(plain.size(), chunk_ - pending_.size());
    pending_.append(plain.substr(0, take));
    plain.remove_prefix(take);
  }
}

void Sealer::finish() {
  if (finished_) throw std::logic_error("sealed file: finished twice");
  emit(pending_, true);
  sodium_memzero(pending_.data(), pending_.size());
  pending_.clear();
  finished_ = true;
}

std::string seal(const DataKey& key, std::string_view plain, uint32_t chunk) {
  std::string out;
  out.reserve(kHeaderSize + plain.size() + (plain.size() / chunk + 1) * kTagSize);
  Sealer s(key, &out, chunk);
  s.write(plain);
  s.finish();
  return out;
}

std::optional<std::string> open(const DataKey& key, std::string_view sealed, std::string* why) {
  init();
  uint32_t chunk = header_chunk(sealed);
  if (chunk == 0) return set_why(why, "not a sealed file"), std::nullopt;
  std::string_view header = sealed.substr(0, kHeaderSize);
  uint64_t chunks = 0, last = 0;
  if (!layout(sealed.size() - kHeaderSize, chunk, &chunks, &last))
    return set_why(why, "sealed file cut short"), std::nullopt;
  std::string out;
  out.reserve(sealed.size());
  uint64_t full = uint64_t(chunk) + kTagSize;
  unsigned char fkey[32];
  file_key(key, header, fkey);
  for (uint64_t i = 0; i < chunks; ++i) {
    bool is_last = i + 1 == chunks;
    std::string_view c = sealed.substr(kHeaderSize + i * full, is_last ? last : full);
    if (!open_chunk(fkey, header, i, is_last, c, &out)) {
      sodium_memzero(out.data(), out.size());
      sodium_memzero(fkey, sizeof fkey);
      return set_why(why, "sealed file altered, cut short or under another key"), std::nullopt;
    }
  }
  sodium_memzero(fkey, sizeof fkey);
  return out;
}

std::optional<Reader> Reader::make(const DataKey& key, int fd, uint64_t file_size, std::string* why,
                                   std::string_view start) {
  init();
  Reader r(fd);
  if (file_size < kHeaderSize) return set_why(why, "sealed file cut short"), std::nullopt;
  if (start.size() >= kHeaderSize) {
    r.header_ = start.substr(0, kHeaderSize);
  } else {
    r.header_.resize(kHeaderSize);
    if (::pread(fd, r.header_.data(), kHeaderSize, 0) != ssize_t(kHeaderSize))
      return set_why(why, "sealed file cut short"), std::nullopt;
  }
  r.chunk_ = header_chunk(r.header_);
  if (r.chunk_ == 0) return set_why(why, "not a sealed file"), std::nullopt;
  uint64_t last = 0;
  if (!layout(file_size - kHeaderSize, r.chunk_, &r.chunks_, &last))
    return set_why(why, "sealed file cut short"), std::nullopt;
  r.plain_size_ = (r.chunks_ - 1) * r.chunk_ + (last - kTagSize);
  file_key(key, r.header_, r.fkey_.data());
  size_t first = r.chunks_ == 1 ? size_t(last) : size_t(r.chunk_) + kTagSize;
  if (start.size() >= kHeaderSize + first) r.first_ = start.substr(kHeaderSize, first);
  return r;
}

Reader::~Reader() {
  sodium_memzero(fkey_.data(), fkey_.size());
  sodium_memzero(cached_.data(), cached_.size());
}

bool Reader::load(uint64_t index, std::string* why) {
  if (cached_index_ == index) return true;
  cached_index_.reset();
  bool last = index + 1 == chunks_;
  uint64_t full = uint64_t(chunk_) + kTagSize;
  size_t len = last ? size_t(plain_size_ - index * chunk_ + kTagSize) : size_t(full);
  std::string cipher;
  bool have = index == 0 && first_.size() == len;  // read with the header already
  if (have) cipher = std::move(first_);
  else cipher.assign(len, '\0');
  first_.clear();
  off_t at = off_t(kHeaderSize + index * full);
  for (size_t got = have ? len : 0; got < len;) {
    ssize_t n = ::pread(fd_, cipher.data() + got, len - got, at + off_t(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return set_why(why, "sealed file cut short"), false;
    got += size_t(n);
  }
  sodium_memzero(cached_.data(), cached_.size());
  cached_.clear();
  if (!open_chunk(fkey_.data(), header_, index, last, cipher, &cached_))
    return set_why(why, "sealed file altered, cut short or under another key"), false;
  cached_index_ = index;
  return true;
}

std::optional<std::string> Reader::read(uint64_t offset, size_t length, std::string* why) {
  std::string out;
  if (offset >= plain_size_) return out;
  uint64_t end = length >= plain_size_ - offset ? plain_size_ : offset + length;  // no overflow for huge lengths
  out.reserve(size_t(end - offset));
  for (uint64_t i = offset / chunk_; i * chunk_ < end; ++i) {
    if (!load(i, why)) return std::nullopt;
    uint64_t from = std::max<uint64_t>(offset, i * chunk_) - i * chunk_;
    uint64_t to = std::min<uint64_t>(end, (i + 1) * uint64_t(chunk_)) - i * chunk_;
    out.append(cached_, size_t(from), size_t(to - from));
  }
  return out;
}

}  // namespace bulwark::crypt
