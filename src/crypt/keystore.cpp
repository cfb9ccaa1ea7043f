// crypt/keystore.cpp: the keyring file.
#include "crypt/keystore.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "crypt/file.hpp"

namespace bulwark::crypt {

std::string keyring_path(const std::string& data_dir) { return data_dir + "/keyring"; }

std::optional<std::string> read_keyring(const std::string& data_dir) {
  std::string path = keyring_path(data_dir);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    throw std::runtime_error("cannot read the encryption keyring " + path + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_keyring(const std::string& data_dir, const std::string& text) {
  std::string path = keyring_path(data_dir);
  if (!replace_file(path, text, nullptr))  // the keyring itself is never sealed
    throw std::runtime_error("cannot write the encryption keyring " + path + ": " + std::strerror(errno));
}

std::optional<DataKey> unlock_data_dir(const std::string& data_dir, std::string_view password) {
  auto ring = read_keyring(data_dir);
  if (!ring) return std::nullopt;
  std::string why;
  auto key = unlock(*ring, password, &why);
  if (!key) throw std::runtime_error("cannot unlock the encryption keyring " + keyring_path(data_dir) + ": " + why);
  return key;
}

}  // namespace bulwark::crypt
