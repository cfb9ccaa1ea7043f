// crypt/records.cpp: append-only files of sealed records (format in records.hpp).
#include "crypt/records.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/body.hpp"

namespace bulwark::crypt {

namespace {

constexpr size_t kNonce = 24;

std::string record(const DataKey& key, std::string_view header, std::string_view plain) {
  std::string out(4 + kNonce + plain.size() + kTagSize, '\0');
  uint32_t len = uint32_t(kNonce + plain.size() + kTagSize);
  for (int i = 0; i < 4; ++i) out[size_t(i)] = char(len >> (24 - 8 * i));
  auto* nonce = reinterpret_cast<unsigned char*>(out.data() + 4);
  randombytes_buf(nonce, kNonce);
  unsigned long long n = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + kNonce, &n, reinterpret_cast<const unsigned char*>(plain.data()),
                                             plain.size(), reinterpret_cast<const unsigned char*>(header.data()),
                                             header.size(), nullptr, nonce, key.bytes());
  return out;
}

std::string new_header() {
  std::string h(kRecordsMagic);
  h.resize(kRecordsHeader);
  randombytes_buf(h.data() + kRecordsMagic.size(), kRecordsHeader - kRecordsMagic.size());
  return h;
}

void set_why(std::string* why, std::string text) {
  if (why) *why = std::move(text);
}

bool read_all_fd(int fd, std::string& out, off_t at = 0) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, size_t(n));
    at += n;
  }
}

}  // namespace

std::string seal_records(const DataKey& key, std::string_view plain) {
  if (sodium_init() < 0) return {};
  std::string h = new_header();
  return h + record(key, h, plain);
}

bool append_text(int fd, std::string_view text, const DataKey* key) {
  if (sodium_init() < 0) return false;
  struct stat st{};
  if (::fstat(fd, &st) != 0) return false;
  if (st.st_size == 0) return write_all(fd, key ? seal_records(*key, text) : std::string(text));
  char head[kRecordsHeader];
  ssize_t n;
  do n = ::pread(fd, head, sizeof head, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return false;
  std::string_view h(head, size_t(n));
  if (h.substr(0, kRecordsMagic.size()) != kRecordsMagic) return write_all(fd, text);  // plain stays plain
  if (!key) {
    errno = ENOKEY;
    return false;
  }
  if (h.size() < kRecordsHeader) {
    errno = EBADMSG;
    return false;
  }
  return write_all(fd, record(*key, h, text));
}

std::optional<TextFile> read_text(int fd, const DataKey* key, std::string* why, uint64_t from) {
  TextFile out;
  char head[kRecordsHeader];
  ssize_t got;
  do got = ::pread(fd, head, sizeof head, 0);
  while (got < 0 && errno == EINTR);
  if (got < 0) return set_why(why, std::strerror(errno)), std::nullopt;
  std::string_view header(head, size_t(got));
  out.sealed = header.substr(0, kRecordsMagic.size()) == kRecordsMagic;
  uint64_t start = out.sealed ? std::max<uint64_t>(from, kRecordsHeader) : from;
  std::string raw;
  if (!read_all_fd(fd, raw, off_t(start))) return set_why(why, std::strerror(errno)), std::nullopt;
  if (!out.sealed) {
    out.text = std::move(raw);
    out.good_end = start + out.text.size();
    return out;
  }
  if (!key) return set_why(why, "the file is encrypted and no key is loaded"), std::nullopt;
  if (sodium_init() < 0) return set_why(why, "libsodium failed to initialise"), std::nullopt;
  out.good_end = start;
  if (header.size() < kRecordsHeader) return out;  // a header cut short: nothing was ever appended
  size_t pos = 0;
  while (raw.size() - pos >= 4) {
    auto* p = reinterpret_cast<const unsigned char*>(raw.data() + pos);
    uint32_t len = uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
    if (raw.size() - pos - 4 < len) break;  // torn: the append never completed
    if (len < kNonce + kTagSize) return set_why(why, "sealed record damaged"), std::nullopt;
    size_t at = out.text.size(), plain = len - kNonce - kTagSize;
    out.text.resize(at + plain);
    unsigned long long n = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(out.text.data() + at), &n,
                                                   nullptr, p + 4 + kNonce, len - kNonce,
                                                   reinterpret_cast<const unsigned char*>(header.data()),
                                                   header.size(), p + 4, key->bytes()) != 0)
      return set_why(why, "sealed record altered or under another key"), std::nullopt;
    pos += 4 + len;
    out.good_end = start + pos;
  }
  return out;
}

std::optional<TextFile> read_text(const std::string& path, const DataKey* key, std::string* why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return TextFile{};
    return set_why(why, std::strerror(errno)), std::nullopt;
  }
  auto r = read_text(fd, key, why);
  ::close(fd);
  return r;
}

}  // namespace bulwark::crypt
