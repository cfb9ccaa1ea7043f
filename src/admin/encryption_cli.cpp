// admin/encryption_cli.cpp: see encryption_cli.hpp.
#include "admin/encryption_cli.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <thread>

#include "auth/password.hpp"
#include "core/body.hpp"
#include "store/mailstore.hpp"
#include "crypt/convert.hpp"
#include "directory/directory.hpp"
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

std::optional<std::string> password_refused(const Config& cfg, std::string_view pw, std::string_view name) {
  auth::PasswordPolicy pp{cfg.password_policy.min_length, int(cfg.password_policy.min_classes),
                          cfg.password_policy.forbid_username && !name.empty()};
  return auth::check_password_policy(pw, name, pp);
}

void require_password_policy(const Config& cfg, std::string_view pw, std::string_view name) {
  if (auto problem = password_refused(cfg, pw, name))
    throw UsageError("password refused: " + *problem + " ([password_policy] in " + cfg.file + ")");
}

namespace {

namespace fs = std::filesystem;

// Present while a conversion is unfinished: "enable" or "disable" (SPEC 13).
std::string journal_path(const std::string& data_dir) { return (fs::path(data_dir) / "encryption.converting").string(); }

std::string read_journal(const std::string& data_dir) {
  std::string j = read_secret_line(journal_path(data_dir));
  return j == "enable" || j == "disable" ? j : std::string();
}

void write_journal(const std::string& data_dir, const std::string& what) {
  if (!crypt::replace_file(journal_path(data_dir), what + "\n", nullptr))
    throw std::runtime_error("cannot write " + journal_path(data_dir) + ": " + std::strerror(errno));
}

void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw std::runtime_error("cannot remove " + path + ": " + std::strerror(errno));
  sync_dir(fs::path(path).parent_path().string());
}

// <data_dir>/serve.lock: `serve` holds it shared, a conversion exclusive (flock: a
// killed process lets go). -1 when another process holds it the other way.
int lock_data_dir(const std::string& data_dir, bool exclusive) {
  if (fs::create_directories(data_dir)) ::chmod(data_dir.c_str(), 0750);
  std::string path = (fs::path(data_dir) / "serve.lock").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// `enable` / `disable` hold serve.lock exclusive while they run.
struct ConversionLock {
  int fd;
  explicit ConversionLock(const std::string& dd) : fd(lock_data_dir(dd, true)) {
    if (fd < 0)
      throw std::runtime_error("bulwark serve is running on " + dd +
                               ": stop it first (the conversion runs with the server stopped)");
  }
  ~ConversionLock() { ::close(fd); }
  ConversionLock(const ConversionLock&) = delete;
  ConversionLock& operator=(const ConversionLock&) = delete;
};

// The password that unlocks the keyring: encryption.password_file, else the terminal.
std::string configured_password(const Config& cfg) {
  std::string pw;
  if (!cfg.encryption.password_file.empty()) {
    pw = read_secret_line(cfg.encryption.password_file);
    if (pw.empty()) throw std::runtime_error("encryption.password_file " + cfg.encryption.password_file + " holds no password");
  } else if (isatty(STDIN_FILENO)) {
    pw = ask_quietly("Encryption password: ");
  } else {
    throw std::runtime_error("the data in " + cfg.server.data_dir + " is encrypted: set encryption.password_file in " +
                             cfg.file + ", or start serve on a terminal to type the password");
  }
  return pw;
}

void unlock_with(const Config& cfg, std::string_view pw) {
  auto key = crypt::unlock_data_dir(cfg.server.data_dir, pw);  // throws on a wrong password
  if (key) crypt::set_data_key(std::move(*key));
}

// Converts every covered file, then the directory; what it did, to `out`. Throws
// (the journal stays: running again finishes) when a file could not be converted.
void run_conversion(const Config& cfg, bool to_sealed, std::ostream& out) {
  auto t0 = std::chrono::steady_clock::now();
  // The mailboxes' names first (hashed when sealed: the tree shows no user), then the files.
  auto names = store::convert_mailbox_names(cfg.server.data_dir, to_sealed);
  if (!names.failed.empty()) {
    std::string m = "could not rename " + std::to_string(names.failed.size()) +
                    " mailbox director(y/ies), left as they were; run the command again once the cause is fixed:";
    for (size_t i = 0; i < names.failed.size() && i < 5; ++i) m += "\n  " + names.failed[i];
    throw std::runtime_error(m);
  }
  auto pr = crypt::convert(cfg.server.data_dir, cfg.server.log_dir, *crypt::data_key(), to_sealed);
  if (!pr.failed.empty()) {
    std::string m = "could not convert " + std::to_string(pr.failed.size()) +
                    " file(s), left as they were; run the command again once the cause is fixed:";
    for (size_t i = 0; i < pr.failed.size() && i < 5; ++i) m += "\n  " + pr.failed[i];
    throw std::runtime_error(m);
  }
  if (to_sealed)
    Directory::open(cfg.server.data_dir);  // with the key loaded: made a sealed snapshot
  else
    Directory::unseal(cfg.server.data_dir);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double mb = double(pr.bytes) / 1e6;
  out << (to_sealed ? "sealed " : "unsealed ") << pr.converted << " file(s), " << std::fixed << std::setprecision(1)
      << mb << " MB in " << secs << " s (" << (secs > 0 ? mb / secs : 0.0) << " MB/s); " << pr.already
      << " were done already; " << names.renamed << " mailbox(es) renamed; the directory is "
      << (to_sealed ? "sealed" : "plain") << "\n";
}

std::string interrupted_message(const std::string& j) {
  return "an `encryption " + j + "` did not finish: run `bulwark encryption " + j +
         "` again, or start `bulwark serve`, which finishes it";
}

// A password for enable/disable: one line of stdin, or typed on the terminal (twice for
// a new keyring).
std::string conversion_password(bool password_stdin, bool is_new) {
  if (password_stdin || is_new) return read_password(password_stdin);
  if (!isatty(STDIN_FILENO)) throw UsageError("give the password on standard input with --password-stdin");
  return ask_quietly("Encryption password: ");
}

}  // namespace

void unlock_encryption(const Config& cfg) {
  std::string j = read_journal(cfg.server.data_dir);
  if (!j.empty()) throw std::runtime_error(interrupted_message(j));
  if (!crypt::read_keyring(cfg.server.data_dir)) return;
  std::string pw = configured_password(cfg);
  Wiped wiped{pw};
  unlock_with(cfg, pw);
}

void start_encryption(const Config& cfg) {
  const std::string& dd = cfg.server.data_dir;
  std::string j = read_journal(dd);
  auto ring = crypt::read_keyring(dd);
  if (!j.empty() && !ring && j == "enable")
    throw std::runtime_error("an `encryption enable` was interrupted before its key was made: run `bulwark encryption enable` again");
  if (ring) {  // first: a wrong password stops serve before it writes anything, the lock file too
    std::string pw = configured_password(cfg);
    Wiped wiped{pw};
    unlock_with(cfg, pw);
  }
  static int lock_fd = -1;  // held for the life of the server
  lock_fd = lock_data_dir(dd, !j.empty());
  if (lock_fd < 0)
    throw std::runtime_error(j.empty() ? "`bulwark encryption` is converting " + dd + ": start serve when it has finished"
                                       : "another process is using " + dd + " (serve, or a conversion)");
  if (ring && j.empty()) {
    // A mailbox still under its plain name (a data dir put together by hand, an older
    // version's): renamed now, so that the tree never shows who has mail here.
    auto names = store::convert_mailbox_names(dd, true);
    if (names.renamed) std::cerr << "bulwark: " << names.renamed << " mailbox(es) renamed to their hashed names\n";
    for (auto& f : names.failed) std::cerr << "bulwark: warning: " << f << "\n";
  }
  if (!j.empty()) {
    if (ring) {
      std::cerr << "bulwark: finishing an interrupted `encryption " << j << "` before accepting connections\n";
      run_conversion(cfg, j == "enable", std::cerr);
      if (j == "disable") {
        remove_file(crypt::keyring_path(dd));
        crypt::clear_data_key();
      }
    }
    remove_file(journal_path(dd));
    ::flock(lock_fd, LOCK_SH);
  }
}

void encryption_enable(const Config& cfg, bool password_stdin) {
  const std::string& dd = cfg.server.data_dir;
  ConversionLock lock(dd);
  std::string j = read_journal(dd);
  auto ring = crypt::read_keyring(dd);
  if (ring && j.empty()) throw std::runtime_error("encryption is already on in " + dd);
  std::string pw = conversion_password(password_stdin, !ring);
  Wiped wiped{pw};
  if (!ring) {  // a new data key under this password; the journal first, so a rerun knows
    require_password_policy(cfg, pw, "");
    write_journal(dd, "enable");
    crypt::DataKey key = crypt::DataKey::random();
    crypt::write_keyring(dd, crypt::new_keyring(pw, key));
  } else if (j != "enable") {
    write_journal(dd, "enable");  // turning an interrupted disable back
  }
  unlock_with(cfg, pw);  // a rerun: the password must be the one given first
  std::cerr << "converting the data in " << dd << " and the logs in " << cfg.server.log_dir << "...\n";
  run_conversion(cfg, true, std::cout);
  remove_file(journal_path(dd));
  std::cout << "encryption on\n";
}

void encryption_disable(const Config& cfg, bool password_stdin) {
  const std::string& dd = cfg.server.data_dir;
  ConversionLock lock(dd);
  std::string j = read_journal(dd);
  auto ring = crypt::read_keyring(dd);
  if (!ring) {
    if (j == "disable") {  // killed after the keyring went: nothing sealed is left
      remove_file(journal_path(dd));
      std::cout << "encryption off\n";
      return;
    }
    if (j == "enable") throw std::runtime_error(interrupted_message(j));
    throw std::runtime_error("encryption is already off in " + dd);
  }
  std::string pw = conversion_password(password_stdin, false);
  Wiped wiped{pw};
  unlock_with(cfg, pw);  // before anything is written: a wrong password changes nothing
  if (j != "disable") write_journal(dd, "disable");
  std::cerr << "converting the data in " << dd << " and the logs in " << cfg.server.log_dir << "...\n";
  run_conversion(cfg, false, std::cout);
  remove_file(crypt::keyring_path(dd));
  remove_file(journal_path(dd));
  crypt::clear_data_key();
  std::cout << "encryption off\n";
}

std::string encryption_status(const Config& cfg) {
  const std::string& dd = cfg.server.data_dir;
  std::string j = read_journal(dd);
  if (j.empty()) return crypt::read_keyring(dd) ? "on" : "off";
  bool to_sealed = j == "enable";
  auto pr = crypt::survey(dd, cfg.server.log_dir, to_sealed);
  bool dir_done = (::access(Directory::sealed_path(dd).c_str(), F_OK) == 0) == to_sealed;
  return "converting (" + std::to_string(pr.already + dir_done) + " of " + std::to_string(pr.total + 1) +
         " done): `encryption " + j + "`";
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
  if (auto problem = password_refused(cfg, new_pw, ""))
    throw UsageError("new password refused: " + *problem + " ([password_policy] in " + cfg.file + ")");
  std::string why;
  auto next = crypt::rewrap(*ring, old_pw, new_pw, &why);
  if (!next) throw std::runtime_error("cannot change the encryption password: " + why + "; nothing changed");
  crypt::write_keyring(cfg.server.data_dir, *next);
  std::cout << "encryption password changed (the data key is the same: no data was rewritten)\n";
}

namespace {
bool known_log(const std::string& name) { return name == "mail" || name == "security" || name == "main"; }
}  // namespace

std::string check_log_name(const std::string& name) {
  if (known_log(name) || name.find('/') != std::string::npos) return "";
  return "must be mail, security, main or a path with a / (e.g. ./mail.log.1)";
}

void show_log(const Config& cfg, const std::string& name, bool follow) {
  unlock_encryption(cfg);  // when the data is encrypted, so are the logs
  bool named = known_log(name);
  std::filesystem::path path =
      named ? std::filesystem::path(cfg.server.log_dir) / (name == "main" ? "bulwark.log" : name + ".log")
            : std::filesystem::path(name);  // a rotated file (mail.log.1)
  uint64_t offset = 0;
  ino_t inode = 0;
  for (;;) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 && !follow) throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
    if (fd >= 0) {
      struct stat st{};
      if (::fstat(fd, &st) == 0 && (st.st_ino != inode || uint64_t(st.st_size) < offset)) {
        offset = 0;  // a new file (rotated) or a truncated one: from its start
        inode = st.st_ino;
      }
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
