// admin/encryption_cli.cpp: see encryption_cli.hpp.
#include "admin/encryption_cli.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "auth/password.hpp"
#include "crypt/file.hpp"
#include "crypt/keystore.hpp"
#include "crypt/records.hpp"

namespace bulwark {

std::string ask_quietly(const char* prompt) {
  std::cerr << prompt << std::flush;
  termios old{};
  tcgetattr(STDIN_FILENO, &old);
  termios quiet = old;
  quiet.c_lflag &= ~tcflag_t(ECHO);
  tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  std::string p;
  std::getline(std::cin, p);
  tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::cerr << "\n";
  return p;
}

std::string read_password(bool from_stdin) {
  std::string pw;
  if (from_stdin) {
    if (!std::getline(std::cin, pw)) throw UsageError("no password on standard input");
    if (!pw.empty() && pw.back() == '\r') pw.pop_back();
    return pw;
  }
  if (!isatty(STDIN_FILENO)) throw UsageError("give the password on standard input with --password-stdin");
  pw = ask_quietly("Password: ");
  if (ask_quietly("Again: ") != pw) throw UsageError("the two passwords differ");
  return pw;
}

std::string read_secret_line(const std::string& path, bool trim_spaces) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || (trim_spaces && line.back() == ' '))) line.pop_back();
  return line;
}

Wiped::~Wiped() { sodium_memzero(s.data(), s.size()); }

void unlock_encryption(const Config& cfg) {
  if (!crypt::read_keyring(cfg.server.data_dir)) return;
  std::string pw;
  Wiped wiped{pw};
  if (!cfg.encryption.password_file.empty()) {
    pw = read_secret_line(cfg.encryption.password_file);
    if (pw.empty()) throw std::runtime_error("encryption.password_file " + cfg.encryption.password_file + " holds no password");
  } else if (isatty(STDIN_FILENO)) {
    pw = ask_quietly("Encryption password: ");
  } else {
    throw std::runtime_error("the data in " + cfg.server.data_dir + " is encrypted: set encryption.password_file in " +
                             cfg.file + ", or start serve on a terminal to type the password");
  }
  auto key = crypt::unlock_data_dir(cfg.server.data_dir, pw);  // throws on a wrong password
  crypt::set_data_key(std::move(*key));
}

void encryption_passwd(const Config& cfg, bool password_stdin) {
  auto ring = crypt::read_keyring(cfg.server.data_dir);
  if (!ring) throw std::runtime_error("encryption is off in " + cfg.server.data_dir + ": there is no password to change");
  std::string old_pw, new_pw;
  Wiped w1{old_pw}, w2{new_pw};
  if (password_stdin) {
    old_pw = read_password(true);
    new_pw = read_password(true);
  } else {
    if (!isatty(STDIN_FILENO)) throw UsageError("give the passwords on standard input with --password-stdin");
    old_pw = ask_quietly("Current encryption password: ");
    new_pw = read_password(false);
  }
  auth::PasswordPolicy pp{cfg.password_policy.min_length, int(cfg.password_policy.min_classes), false};
  if (auto problem = auth::check_password_policy(new_pw, "", pp))
    throw UsageError("new password refused: " + *problem + " ([password_policy] in " + cfg.file + ")");
  std::string why;
  auto next = crypt::rewrap(*ring, old_pw, new_pw, &why);
  if (!next) throw std::runtime_error("cannot change the encryption password: " + why + "; nothing changed");
  crypt::write_keyring(cfg.server.data_dir, *next);
  std::cout << "encryption password changed (the data key is the same: no data was rewritten)\n";
}

void show_log(const Config& cfg, const std::string& name, bool follow) {
  unlock_encryption(cfg);  // when the data is encrypted, so are the logs
  std::filesystem::path path = std::filesystem::path(cfg.server.log_dir) / (name == "main" ? "bulwark.log" : name + ".log");
  uint64_t offset = 0;
  for (;;) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && !follow) throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
    if (fd >= 0) {
      struct stat st{};
      if (::fstat(fd, &st) == 0 && uint64_t(st.st_size) < offset) offset = 0;  // rotated or truncated
      std::string why;
      auto text = crypt::read_text(fd, crypt::data_key(), &why, offset);
      ::close(fd);
      if (!text) throw std::runtime_error("cannot read " + path.string() + ": " + why);
      std::cout << text->text << std::flush;
      offset = text->good_end;
    }
    if (!follow) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace bulwark
