// admin/encryption_cli: the command-line side of secrets -- passwords typed on the
// terminal or read from stdin or a file, unlocking the encryption keyring (SPEC 13) for
// `serve` and the other commands, `encryption passwd`, and `log show` (SPEC 14), which
// is how sealed logs are read.
#pragma once
#include <optional>
#include <stdexcept>
#include <string>

#include "config/config.hpp"

namespace bulwark {

// A mistake in how a command was called: `bulwark` exits 2 (others exit 1).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A line typed on the terminal without echo.
std::string ask_quietly(const char* prompt);
// A new password: one line of stdin, or typed twice on the terminal.
std::string read_password(bool from_stdin);
// The first line of a secret file without its CR ("" when unreadable); `trim_spaces`
// also drops trailing spaces (the relay password file always did; an encryption
// password is taken as typed, as `encryption passwd` stores it).
std::string read_secret_line(const std::string& path, bool trim_spaces = false);

// [password_policy] for a new password: why it is refused, or nothing. `name` is what
// it must not contain (policy.forbid_username); "" for a password of no account.
std::optional<std::string> password_refused(const Config& cfg, std::string_view pw, std::string_view name);
// The same for a command: UsageError "password refused: ... ([password_policy] in FILE)".
void require_password_policy(const Config& cfg, std::string_view pw, std::string_view name);

// Wipes a password when it goes out of scope, also on an exception.
struct Wiped {
  std::string& s;
  ~Wiped();
};

// A data dir with a keyring is encrypted: loads its data key into the process, the
// password from encryption.password_file or the terminal. Throws (nothing written)
// on a wrong or missing password, or when a conversion did not finish; does nothing
// when encryption is off.
void unlock_encryption(const Config& cfg);

// `serve`, first thing: holds <data_dir>/serve.lock (shared; `encryption enable` and
// `disable` take it exclusive, so neither runs beside a server), unlocks the key, and
// finishes an interrupted conversion before anything else opens the data (saying so
// on stderr). Throws on a wrong or missing password, nothing written.
void start_encryption(const Config& cfg);

// `bulwark encryption enable|disable`: converts the data dir and the logs (resumable:
// a journal, <data_dir>/encryption.converting, says which way until it is done).
void encryption_enable(const Config& cfg, bool password_stdin);
void encryption_disable(const Config& cfg, bool password_stdin);
// off | on | converting (n of m done): `encryption enable|disable`
std::string encryption_status(const Config& cfg);

// `bulwark encryption passwd`: rewraps the data key; prints what it did.
void encryption_passwd(const Config& cfg, bool password_stdin);

// `bulwark log show NAME [--follow]`: NAME is mail, security or main (bulwark.log), or
// the path of a log file (one rotated away: mail.log.1).
void show_log(const Config& cfg, const std::string& name, bool follow);
// "" when NAME is one show_log takes, else what is wrong (for the CLI's check).
std::string check_log_name(const std::string& name);

}  // namespace bulwark
