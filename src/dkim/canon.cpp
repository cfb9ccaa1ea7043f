// dkim/: message structure, canonicalization (RFC 6376 3.4), tag lists, base64.
#include <openssl/evp.h>

#include <stdexcept>

#include "core/strings.hpp"
#include "dkim/dkim.hpp"

namespace bulwark::dkim {

namespace {
bool wsp(char c) { return c == ' ' || c == '\t'; }
}  // namespace

size_t body_offset(std::string_view m) {
  if (m.substr(0, 2) == "\r\n") return 2;  // no header at all
  size_t p = m.find("\r\n\r\n");
  return p == std::string_view::npos ? std::string_view::npos : p + 4;
}

std::vector<Field> split_fields(std::string_view head) {
  std::vector<Field> out;
  size_t pos = 0;
  while (pos < head.size()) {
    // A field runs until a CRLF not followed by whitespace (folding).
    size_t end = pos;
    for (;;) {
      size_t crlf = head.find("\r\n", end);
      if (crlf == std::string_view::npos) {
        end = head.size();
        break;
      }
      if (crlf + 2 < head.size() && wsp(head[crlf + 2])) {
        end = crlf + 2;
        continue;
      }
      end = crlf;
      break;
    }
    std::string_view raw = head.substr(pos, end - pos);
    size_t colon = raw.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = raw.substr(0, colon);
      while (!name.empty() && wsp(name.back())) name.remove_suffix(1);
      if (!name.empty()) out.push_back({name, raw});
    }
    pos = end + 2;
  }
  return out;
}

std::string relaxed_header(std::string_view raw) {
  size_t colon = raw.find(':');
  std::string out = to_lower(trim(raw.substr(0, colon)));
  out += ':';
  std::string_view v = raw.substr(colon + 1);
  bool space = false, value = false;  // whitespace before the value is dropped
  for (char c : v) {
    if (c == '\r' || c == '\n') continue;  // unfold
    if (wsp(c)) {
      space = true;
      continue;
    }
    if (space && value) out += ' ';
    space = false;
    value = true;
    out += c;
  }
  return out;
}

const EVP_MD* md_sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);  // kept for the process
  return md ? md : EVP_sha256();
}

const EVP_MD* md_sha1() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  return md ? md : EVP_sha1();
}

BodyHash::BodyHash(bool relaxed, bool sha1, std::optional<uint64_t> limit) : relaxed_(relaxed), limit_(limit) {
  md_ = EVP_MD_CTX_new();
  if (!md_ || EVP_DigestInit_ex(md_, sha1 ? md_sha1() : md_sha256(), nullptr) != 1)
    throw std::runtime_error("DKIM: cannot start a digest");
  pending_.reserve(flush_at + 4096);
}

BodyHash::~BodyHash() { EVP_MD_CTX_free(md_); }

// Canonical bytes collect in `pending_` and reach the digest in blocks: one
// EVP_DigestUpdate per byte cost more than the hashing itself.
void BodyHash::emit(std::string_view s) {
  uint64_t room = limit_ ? (*limit_ > total_ ? *limit_ - total_ : 0) : s.size();
  if (room > 0) pending_.append(s.data(), std::min<uint64_t>(room, s.size()));
  total_ += s.size();
  if (pending_.size() >= flush_at) flush();
}

void BodyHash::flush() {
  if (!pending_.empty()) EVP_DigestUpdate(md_, pending_.data(), pending_.size());
  pending_.clear();
}

// One state machine for both canonicalizations: a line's content is emitted as it
// comes (relaxed: whitespace runs become one SP, trailing whitespace dropped), the
// CRLF of a line with content at once, empty lines only when more content follows.
// Runs of ordinary bytes (not CR; when relaxed, no whitespace but single spaces between
// words) go out in one piece.
void BodyHash::update(std::string_view bytes) {
  size_t i = 0, n = bytes.size();
  while (i < n) {
    char c = bytes[i];
    if (cr_) {
      cr_ = false;
      if (c == '\n') {
        if (line_content_) emit("\r\n");
        else ++empty_lines_;
        line_content_ = wsp_ = false;
        ++i;
        continue;
      }
      content("\r");  // a lone CR is content
    }
    if (c == '\r') {
      cr_ = true;
      ++i;
      continue;
    }
    if (relaxed_ && wsp(c)) {
      wsp_ = true;
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < n) {
      char d = bytes[j];
      if (d == '\r') break;
      if (relaxed_ && wsp(d)) {
        // one SP between words is already canonical: the run goes on through it
        if (d == ' ' && j + 1 < n && !wsp(bytes[j + 1]) && bytes[j + 1] != '\r') {
          j += 2;
          continue;
        }
        break;
      }
      ++j;
    }
    content(bytes.substr(i, j - i));
    i = j;
  }
}

// Bytes of a line's content: the empty lines held back and the whitespace run before
// them are due now.
void BodyHash::content(std::string_view run) {
  if (!line_content_) {
    for (; empty_lines_ > 0; --empty_lines_) emit("\r\n");
    line_content_ = true;
  }
  if (wsp_) emit(" ");
  wsp_ = false;
  emit(run);
}

std::string BodyHash::finish() {
  if (cr_) {  // a CR at the very end is content
    cr_ = false;
    content("\r");
  }
  if (line_content_) emit("\r\n");  // a last line without CRLF gets one
  else if (!relaxed_ && total_ == 0) emit("\r\n");  // simple: an empty body is one CRLF
  flush();
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(md_, d, &n);
  return std::string(reinterpret_cast<char*>(d), n);
}

std::string signed_input(bool ed25519, std::string_view data, const EVP_MD** md) {
  if (!ed25519) {
    *md = md_sha256();
    return std::string(data);
  }
  unsigned char d[32];  // RFC 8463 3: Ed25519 (pure) over the SHA-256 hash of the data
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), d, &n, md_sha256(), nullptr);
  *md = nullptr;
  return std::string(reinterpret_cast<char*>(d), n);
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_tags(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t semi = text.find(';', pos);
    std::string_view part = text.substr(pos, semi == std::string_view::npos ? std::string_view::npos : semi - pos);
    pos = semi == std::string_view::npos ? text.size() + 1 : semi + 1;
    // strip folding whitespace around the tag
    auto strip = [](std::string_view s) {
      while (!s.empty() && (wsp(s.front()) || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
      while (!s.empty() && (wsp(s.back()) || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
      return s;
    };
    part = strip(part);
    if (part.empty()) {
      if (semi == std::string_view::npos) break;
      continue;  // a trailing ";" is allowed
    }
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    std::string name(strip(part.substr(0, eq)));
    if (name.empty()) return std::nullopt;
    for (char c : name)
      if (!(isalnum(static_cast<unsigned char>(c)) || c == '_')) return std::nullopt;
    std::string value;
    for (char c : strip(part.substr(eq + 1)))
      if (c != '\r' && c != '\n') value += c;
    for (auto& [n, v] : out)
      if (n == name) return std::nullopt;
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

std::string base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()), int(raw.size()));
  out.resize(size_t(n));
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  std::string clean;
  for (char c : text)
    if (!(wsp(c) || c == '\r' || c == '\n')) clean += c;
  if (clean.size() % 4 != 0) return std::nullopt;
  if (clean.empty()) return std::string();
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()), int(clean.size()));
  if (n < 0) return std::nullopt;
  size_t pad = 0;
  if (clean.back() == '=') ++pad;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(size_t(n) - pad);
  return out;
}

}  // namespace bulwark::dkim
