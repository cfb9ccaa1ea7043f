#include "net/tls.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "logging/logs.hpp"

namespace bulwark {
namespace {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

std::string ssl_error() {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

FILE* open_private(const std::string& path, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return nullptr;
  ::fchmod(fd, mode);
  return ::fdopen(fd, "w");
}

}  // namespace

// A certificate bulwark made (self_signed) that expires within 30 days: made again.
// Only a self-issued one is touched -- never a certificate from a CA.
bool self_signed_expiring(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return false;
  X509Ptr x(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!x || X509_NAME_cmp(X509_get_subject_name(x.get()), X509_get_issuer_name(x.get())) != 0) return false;
  time_t soon = time(nullptr) + 30L * 86400;
  return X509_cmp_time(X509_get0_notAfter(x.get()), &soon) < 0;
}

void ensure_certificate(const Config& cfg) {
  namespace fs = std::filesystem;
  std::string cert = cfg.cert_path(), key = cfg.key_path();
  if (fs::exists(cert) && fs::exists(key)) {
    if (!cfg.tls.self_signed || !self_signed_expiring(cert)) return;
    fs::remove(cert);
    fs::remove(key);
    logs::main().info("TLS: the self-signed certificate {} expires within 30 days; making a new one", cert);
  }
  if (!cfg.tls.self_signed)
    throw std::runtime_error("TLS certificate " + cert + " or key " + key +
                             " is missing (set tls.self_signed = true to generate one)");
  if (fs::exists(cert) != fs::exists(key))
    throw std::runtime_error("only one of " + cert + " and " + key +
                             " exists; remove it or supply the other before a certificate can be generated");
  fs::create_directories(fs::path(cert).parent_path());
  fs::create_directories(fs::path(key).parent_path());
  PkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!pkey) throw std::runtime_error("key generation failed: " + ssl_error());
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  unsigned char serial[16];
  FILE* ur = std::fopen("/dev/urandom", "rb");
  if (!ur || std::fread(serial, 1, sizeof serial, ur) != sizeof serial) {
    if (ur) std::fclose(ur);
    throw std::runtime_error("cannot read /dev/urandom");
  }
  std::fclose(ur);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  // One year (renewed at a start within 30 days of the end): a key that leaks is not
  // trusted for a decade.
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 60L * 60 * 24 * 365);
  X509_set_pubkey(x.get(), pkey.get());
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cfg.server.hostname.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
  std::string san = "DNS:" + cfg.server.hostname;
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, san.c_str()},
                            std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                            std::pair{NID_ext_key_usage, "serverAuth"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (!ext) throw std::runtime_error("certificate extension failed: " + ssl_error());
    X509_add_ext(x.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (!X509_sign(x.get(), pkey.get(), EVP_sha256())) throw std::runtime_error("signing failed: " + ssl_error());
  FILE* kf = open_private(key, 0600);
  if (!kf) throw std::runtime_error("cannot write " + key + ": " + std::strerror(errno));
  bool ok = PEM_write_PrivateKey(kf, pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  ok = (std::fclose(kf) == 0) && ok;
  FILE* cf = open_private(cert, 0644);
  if (!cf) throw std::runtime_error("cannot write " + cert + ": " + std::strerror(errno));
  ok = PEM_write_X509(cf, x.get()) == 1 && ok;
  ok = (std::fclose(cf) == 0) && ok;
  if (!ok) throw std::runtime_error("writing the self-signed certificate failed");
}

std::shared_ptr<asio::ssl::context> make_server_tls(const Config& cfg) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                   asio::ssl::context::single_dh_use);
  SSL_CTX* c = ctx->native_handle();
  SSL_CTX_set_min_proto_version(c, cfg.tls.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Key exchange groups of Mozilla's "intermediate" profile.
  if (SSL_CTX_set1_groups_list(c, "X25519:P-256:P-384") != 1)
    throw std::runtime_error("cannot set the TLS key exchange groups: " + ssl_error());
  // Mozilla "intermediate": ECDHE key exchange, AEAD ciphers only (TLS 1.2); TLS 1.3
  // suites are OpenSSL's defaults, all AEAD.
  SSL_CTX_set_cipher_list(c,
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  // Idle connections should not hold 2 x 16 KiB of TLS buffers.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  asio::error_code ec;
  ctx->use_certificate_chain_file(cfg.cert_path(), ec);
  if (ec) throw std::runtime_error("cannot load TLS certificate " + cfg.cert_path() + ": " + ec.message());
  ctx->use_private_key_file(cfg.key_path(), asio::ssl::context::pem, ec);
  if (ec) throw std::runtime_error("cannot load TLS private key " + cfg.key_path() + ": " + ec.message());
  if (SSL_CTX_check_private_key(c) != 1)
    throw std::runtime_error("TLS private key " + cfg.key_path() + " does not match the certificate");
  return ctx;
}

}  // namespace bulwark
