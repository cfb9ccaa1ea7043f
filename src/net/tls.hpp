#pragma once
#include <asio/ssl.hpp>
#include <memory>
#include <string>

#include "config/config.hpp"

namespace bulwark {

// Creates cert + key (ECDSA P-256, 10 years, CN and SAN = hostname) when the
// configured files are missing and tls.self_signed is on. Throws std::runtime_error.
void ensure_certificate(const Config& cfg);

// A server context: TLS 1.2+ (or 1.3 only), forward-secret AEAD ciphers only.
std::shared_ptr<asio::ssl::context> make_server_tls(const Config& cfg);

}  // namespace bulwark
