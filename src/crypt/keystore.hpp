// crypt/keystore.hpp: the keyring on disk (<data_dir>/keyring, SPEC 13). Its presence
// is what "encryption is on" means; the data key it wraps is unlocked once per
// process (`serve` at start, before it writes anything) and set with set_data_key.
#pragma once
#include <optional>
#include <string>

#include "crypt/crypt.hpp"

namespace bulwark::crypt {

std::string keyring_path(const std::string& data_dir);
// The keyring's text; nullopt when there is none (encryption is off). Throws when it
// exists but cannot be read.
std::optional<std::string> read_keyring(const std::string& data_dir);
// Replaces the keyring durably: a temporary file (0600), fsync, rename, fsync of the
// directory -- a crash leaves the old keyring or the new one, never neither.
void write_keyring(const std::string& data_dir, const std::string& text);
// Unlocks the data dir's keyring with `password` (Argon2id: about a second, call it
// before any I/O thread runs). Throws, naming the keyring, on a wrong password or a
// damaged keyring; nullopt when encryption is off.
std::optional<DataKey> unlock_data_dir(const std::string& data_dir, std::string_view password);

}  // namespace bulwark::crypt
