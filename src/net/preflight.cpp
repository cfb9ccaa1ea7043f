#include "net/preflight.hpp"

#include <pwd.h>
#include <unistd.h>

#include <filesystem>

#include "admin/encryption_cli.hpp"
#include "net/tls.hpp"

namespace bulwark {

void preflight(const Config& cfg) {
  namespace fs = std::filesystem;
  bool cert = fs::exists(cfg.cert_path()), key = fs::exists(cfg.key_path());
  if (cert && key) {
    try {
      make_server_tls(cfg);
    } catch (const std::exception& e) {
      std::string what = e.what();
      throw config_error(cfg, what.find("private key") != std::string::npos ? "tls.private_key" : "tls.certificate",
                         what);
    }
  } else if (!cfg.tls.self_signed || cert != key) {
    // serve makes a self-signed pair only when neither file is there
    throw config_error(cfg, cert ? "tls.private_key" : "tls.certificate",
                       (cert ? cfg.key_path() : cfg.cert_path()) + " is missing" +
                           (cfg.tls.self_signed ? " (remove the other file to have a new pair made)"
                                                : " (set tls.self_signed = true to have one made)"));
  }
  const auto& d = cfg.delivery;
  if (d.relay_auth == "smtp" || d.relay_auth == "pop3-before-smtp") {
    if (::access(d.relay_password_file.c_str(), R_OK) != 0)
      throw config_error(cfg, "delivery.relay_password_file", "cannot read " + d.relay_password_file);
    std::string pw;
    try {
      pw = read_secret_line(d.relay_password_file, true);
    } catch (const std::exception& e) {
      throw config_error(cfg, "delivery.relay_password_file", e.what());
    }
    bool empty = pw.empty();
    std::fill(pw.begin(), pw.end(), '\0');
    if (empty) throw config_error(cfg, "delivery.relay_password_file", d.relay_password_file + " holds no password");
  }
  if (::geteuid() == 0 && !cfg.server.user.empty() && !::getpwnam(cfg.server.user.c_str()))
    throw config_error(cfg, "server.user", "\"" + cfg.server.user + "\" does not exist (create it, or set server.user)");
}

}  // namespace bulwark
