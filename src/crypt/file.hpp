// crypt/file.hpp: the one way stored files are read. A PlainFile is the plaintext of a
// file in either form -- plain, or sealed (told apart by the magic) -- so a reader
// (the spool, the mailboxes, POP3, IMAP) never needs to know whether encryption is on,
// or that a conversion is half done and both forms sit side by side.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "crypt/crypt.hpp"

namespace bulwark::crypt {

// This process's data key once unlocked (`serve`, or a CLI command that reads mail);
// null while encryption is off. Set once, before any thread reads stored files.
const DataKey* data_key();
void set_data_key(DataKey key);
void clear_data_key();  // tests

class PlainFile {
 public:
  // Takes ownership of `fd` (open for reading; closed by the PlainFile, also when this
  // fails). nullopt, with the cause in *why and errno set: the file cannot be read (the
  // system's error, never ENOENT), it is sealed and no key is loaded (ENOKEY), or its
  // sealed header is damaged (EBADMSG).
  static std::optional<PlainFile> adopt(int fd, std::string* why = nullptr);
  // ::open(path, O_RDONLY) and adopt; errno is the open's when it fails there.
  static std::optional<PlainFile> open(const std::string& path, std::string* why = nullptr);
  PlainFile(PlainFile&& o) noexcept;
  PlainFile& operator=(PlainFile&& o) noexcept;
  PlainFile(const PlainFile&) = delete;
  PlainFile& operator=(const PlainFile&) = delete;
  ~PlainFile();

  uint64_t size() const { return size_; }  // of the plaintext
  bool sealed() const { return sealed_.has_value(); }
  // The plaintext bytes at [offset, offset + length) -- shorter at the end, "" past
  // it; nullopt (cause in *why) on a read error or when a sealed chunk fails its check.
  std::optional<std::string> read(uint64_t offset, size_t length, std::string* why = nullptr);
  // The next bytes after the previous `next` (at most `max`): "" at the end.
  std::optional<std::string> next(size_t max, std::string* why = nullptr);
  // The whole plaintext.
  std::optional<std::string> all(std::string* why = nullptr) { return read(0, size_t(size_), why); }

 private:
  explicit PlainFile(int fd) : fd_(fd) {}
  int fd_ = -1;
  uint64_t size_ = 0, pos_ = 0;
  std::string head_;  // a plain file's first bytes, read with the magic (a small message: all of it)
  std::optional<Reader> sealed_;
};

// A small file's whole plaintext, either form (subscriptions, keywords, a DKIM key);
// nullopt with errno ENOENT when it does not exist, or another errno and *why.
std::optional<std::string> read_small(const std::string& path, std::string* why = nullptr);
// Replaces a small file durably: a temporary file (0600) beside it, written plain or
// sealed under `key` (by default the process's), fsync, rename, fsync of the
// directory. False with errno on an error (the old file stays).
bool replace_file(const std::string& path, std::string_view plain, const DataKey* key = data_key());

// The one way stored mail is written: plain, or sealed when a key is given (by default
// the process's: encryption on). Buffers up to 64 KiB; the caller syncs and closes the
// descriptor, which it keeps. Not movable (the sealer writes into this object).
class FileWriter {
 public:
  explicit FileWriter(int fd, const DataKey* key = data_key());
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  // False once a write failed (errno is the system's).
  bool write(std::string_view plain);
  // Seals the last chunk and writes what is buffered; required, once.
  bool finish();
  uint64_t written() const { return plain_; }  // plaintext bytes so far
  bool sealed() const { return sealer_.has_value(); }

 private:
  bool flush();
  int fd_;
  std::string out_;
  std::optional<Sealer> sealer_;
  uint64_t plain_ = 0;
  bool ok_ = true;
};

}  // namespace bulwark::crypt
