// dkim/: signing keys under <data_dir>/dkim/<domain>/<selector>.pem.
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <stdexcept>

#include "core/strings.hpp"
#include "crypt/file.hpp"
#include "dkim/dkim.hpp"

namespace fs = std::filesystem;

namespace bulwark::dkim {

namespace {

fs::path domain_dir(const std::string& data_dir, const std::string& domain) {
  return fs::path(data_dir) / "dkim" / to_lower(domain);
}

bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.') return false;
  for (char c : d)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  return d.find("..") == std::string_view::npos;
}

// The key file, plain or sealed (encryption at rest, crypt/file.hpp).
std::shared_ptr<EVP_PKEY> read_key(const fs::path& p) {
  auto pem = crypt::read_small(p.string());
  if (!pem) return nullptr;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem->data(), int(pem->size())), BIO_free);
  EVP_PKEY* k = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  OPENSSL_cleanse(pem->data(), pem->size());
  return std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free);
}

std::optional<Algorithm> algorithm_of(EVP_PKEY* k) {
  if (!k) return std::nullopt;
  if (EVP_PKEY_is_a(k, "ED25519")) return Algorithm::ed25519;
  if (EVP_PKEY_is_a(k, "RSA") && EVP_PKEY_get_bits(k) >= 1024) return Algorithm::rsa2048;
  return std::nullopt;
}

}  // namespace

const char* algorithm_name(Algorithm a) { return a == Algorithm::ed25519 ? "ed25519" : "rsa2048"; }

std::string default_selector(Algorithm a, int64_t now) {
  std::time_t t = std::time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d%02d%c", tm.tm_year + 1900, tm.tm_mon + 1, a == Algorithm::ed25519 ? 'e' : 'r');
  return buf;
}

bool valid_selector(std::string_view s) {
  // dot-separated DNS labels (RFC 6376 3.1), letters, digits and hyphens
  if (s.empty() || s.size() > 63 || s.front() == '.' || s.back() == '.' || s.find("..") != std::string_view::npos)
    return false;
  for (char c : s)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  return true;
}

// The PEM written as <data_dir>/dkim/<domain>/<selector>.pem: to a temporary file,
// synced, then linked (a crash leaves no half key); `replace`: over an existing one.
static void write_key_file(const std::string& data_dir, const std::string& domain, const std::string& selector,
                           std::string_view pem, bool replace) {
  fs::path dir = domain_dir(data_dir, domain);
  fs::create_directories(dir);
  ::chmod((fs::path(data_dir) / "dkim").c_str(), 0700);
  fs::path path = dir / (selector + ".pem");
  if (!replace && fs::exists(path))
    throw std::runtime_error("domain " + domain + " already has a key with selector " + selector +
                             " (remove it first, or choose another --selector)");
  fs::path tmp = dir / ("." + selector + ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
  bool ok;
  {
    crypt::FileWriter w(fd);  // sealed when encryption is on
    ok = w.write(pem) && w.finish() && ::fsync(fd) == 0;
  }
  ::close(fd);
  if (!ok || (replace ? ::rename(tmp.c_str(), path.c_str()) : ::link(tmp.c_str(), path.c_str())) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(e));
  }
  ::unlink(tmp.c_str());
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

Key keygen(const std::string& data_dir, const std::string& domain_in, const std::string& selector, Algorithm a) {
  std::string domain = to_lower(domain_in);
  if (!valid_domain(domain)) throw std::invalid_argument("\"" + sanitize(domain_in) + "\" is not a domain name");
  if (!valid_selector(selector))
    throw std::invalid_argument("selector \"" + sanitize(selector) + "\" must be DNS labels (letters, digits, '-', '.')");
  fs::path path = domain_dir(data_dir, domain) / (selector + ".pem");
  if (fs::exists(path))
    throw std::runtime_error("domain " + domain + " already has a key with selector " + selector +
                             " (remove it first, or choose another --selector)");
  EVP_PKEY* raw = a == Algorithm::ed25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                          : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t(2048));
  if (!raw) throw std::runtime_error("cannot generate the key (OpenSSL)");
  std::shared_ptr<EVP_PKEY> pkey(raw, EVP_PKEY_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> mem(BIO_new(BIO_s_mem()), BIO_free);
  if (!mem || PEM_write_bio_PrivateKey(mem.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw std::runtime_error("cannot write the key (OpenSSL)");
  char* pem = nullptr;
  long len = BIO_get_mem_data(mem.get(), &pem);
  write_key_file(data_dir, domain, selector, std::string_view(pem, size_t(len)), false);
  OPENSSL_cleanse(pem, size_t(len));
  Key k{domain, selector, a, path.string(), int64_t(std::time(nullptr)), pkey};
  return k;
}

void install_key(const std::string& data_dir, const std::string& domain, const std::string& selector,
                 std::string_view pem) {
  if (!valid_domain(to_lower(domain)) || !valid_selector(selector))
    throw std::invalid_argument("not a key: " + sanitize(domain) + " selector " + sanitize(selector));
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), int(pem.size())), BIO_free);
  std::shared_ptr<EVP_PKEY> k(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr,
                              EVP_PKEY_free);
  if (!algorithm_of(k.get())) throw std::invalid_argument("not a DKIM key (RSA or Ed25519): " + sanitize(selector));
  write_key_file(data_dir, to_lower(domain), selector, pem, true);
}

std::optional<std::string> key_pem(const Key& k) { return crypt::read_small(k.path); }

std::vector<Key> list_keys(const std::string& data_dir, const std::string& only) {
  std::vector<Key> out;
  fs::path root = fs::path(data_dir) / "dkim";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (auto& d : fs::directory_iterator(root, ec)) {
    if (!d.is_directory(ec)) continue;
    std::string domain = d.path().filename().string();
    if (!only.empty() && domain != to_lower(only)) continue;
    for (auto& f : fs::directory_iterator(d.path(), ec)) {
      std::string name = f.path().filename().string();
      if (name.size() < 5 || name.substr(name.size() - 4) != ".pem" || name[0] == '.') continue;
      std::string selector = name.substr(0, name.size() - 4);
      if (!valid_selector(selector)) continue;
      auto pkey = read_key(f.path());
      auto alg = algorithm_of(pkey.get());
      if (!alg) continue;
      struct stat st{};
      ::stat(f.path().c_str(), &st);
      out.push_back({domain, selector, *alg, f.path().string(), int64_t(st.st_mtime), pkey});
    }
  }
  std::sort(out.begin(), out.end(), [](const Key& a, const Key& b) {
    return std::tie(a.domain, a.selector) < std::tie(b.domain, b.selector);
  });
  return out;
}

void remove_key(const std::string& data_dir, const std::string& domain, const std::string& selector) {
  if (!valid_selector(selector) || !valid_domain(to_lower(domain)))
    throw std::invalid_argument("no such key: " + sanitize(domain) + " selector " + sanitize(selector));
  fs::path path = domain_dir(data_dir, domain) / (selector + ".pem");
  if (::unlink(path.c_str()) != 0)
    throw std::runtime_error("no key for " + to_lower(domain) + " with selector " + selector);
  std::error_code ec;
  fs::remove(domain_dir(data_dir, domain), ec);  // only when it is now empty
}

std::string public_key_text(const Key& k) {
  if (k.algorithm == Algorithm::ed25519) {
    unsigned char raw[32];
    size_t n = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(k.pkey.get(), raw, &n) != 1) throw std::runtime_error("cannot read the public key");
    return base64(std::string_view(reinterpret_cast<char*>(raw), n));
  }
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(k.pkey.get(), &der);  // SubjectPublicKeyInfo, as RFC 6376 3.6.1 allows
  if (n <= 0) throw std::runtime_error("cannot read the public key");
  std::string out = base64(std::string_view(reinterpret_cast<char*>(der), size_t(n)));
  OPENSSL_free(der);
  return out;
}

std::string record_value(const Key& k) {
  return std::string("v=DKIM1; k=") + (k.algorithm == Algorithm::ed25519 ? "ed25519" : "rsa") + "; p=" +
         public_key_text(k);
}

std::string dns_record(const Key& k) {
  std::string value = record_value(k);
  std::string out = k.selector + "._domainkey." + k.domain + ". IN TXT";
  for (size_t i = 0; i < value.size(); i += 255) out += " \"" + value.substr(i, 255) + "\"";
  return out;
}

}  // namespace bulwark::dkim
