// crypt/records.hpp: append-only text files (the queue's delivery state, the mailbox
// UID index, the greylist) in either form. Plain, they are lines of text; sealed, they
// are a header and a series of records, each one append sealed on its own:
//
//   "BWRECS1\n"  16 random bytes                                   (the file's header)
//   per record:  u32 length (big-endian)  24-byte random nonce  ciphertext + 16-byte tag
//
// Every record is XChaCha20-Poly1305 with the file's header as associated data, so a
// record cannot be altered or moved in from another file. (Records are not chained: one
// could be dropped or repeated by someone who can write the file -- the files are
// delivery state and indexes, where that costs a repeated delivery, not a secret.)
// A record cut short by a crash in the middle of an append is dropped on reading, as a
// torn line is in a plain file. Appends to one file must be serialised by the caller.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "crypt/crypt.hpp"

namespace bulwark::crypt {

constexpr std::string_view kRecordsMagic = "BWRECS1\n";
constexpr size_t kRecordsHeader = 8 + 16;

// The text of `plain` as a sealed records file of one record.
std::string seal_records(const DataKey& key, std::string_view plain);

// Appends `text` to the open file `fd` (opened O_RDWR | O_APPEND: its header is read) in the file's form: an empty
// file is started sealed when `key` is given, a plain file stays plain (the conversion
// turns it), a sealed one gets one record -- which needs a key (false, errno ENOKEY,
// without one). False on an I/O error.
bool append_text(int fd, std::string_view text, const DataKey* key);

struct TextFile {
  std::string text;      // the plaintext: every line of a plain file, every whole record's
  uint64_t good_end = 0; // sealed: the file offset after the last whole record (a torn one follows when less than the size)
  bool sealed = false;
};
// The text of an append-only file in either form (fd read from offset 0). nullopt
// with the cause in *why on a read error, a sealed file and no key, or a record that
// fails its check.
// `from`: a previous good_end -- only the records after it (`bulwark log show --follow`).
std::optional<TextFile> read_text(int fd, const DataKey* key, std::string* why = nullptr, uint64_t from = 0);
// The same by path; a missing file is an empty plain text.
std::optional<TextFile> read_text(const std::string& path, const DataKey* key, std::string* why = nullptr);

}  // namespace bulwark::crypt
