// crypt/keystore.cpp: the keyring file.
#include "crypt/keystore.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/body.hpp"

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
  std::string path = keyring_path(data_dir), tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && write_all(fd, text) && ::fsync(fd) == 0;
  int e = errno;
  if (fd >= 0) ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0 || !sync_dir(data_dir)) {
    if (ok) e = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write the encryption keyring " + path + ": " + std::strerror(e));
  }
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
