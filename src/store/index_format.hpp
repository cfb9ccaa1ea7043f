// store/: the UID index's line format (internal to store/). The index is a header
//   "bulwark-uidlist 1 <uidvalidity> <next uid> <highest modseq>"
// and then one line per change, appended under the folder's lock and synced:
//   "+ <uid> <modseq> <size> <vsize> <flags or -> <base>"   a message, new or changed
//   "- <uid> <modseq>"                                     a message removed
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/mailstore.hpp"

namespace bulwark::store::uidlist {

std::optional<uint64_t> number(std::string_view s);
// Splits on single spaces.
std::vector<std::string_view> fields(std::string_view line);
// A base name is safe in the index when it is one word of printable bytes and no
// path: anything else found in a Maildir (a stray file from another tool) is skipped.
bool usable_name(std::string_view n);
// Maildir flag letters (system flags upper case, keywords a..z), or "-" for none.
bool usable_flags(std::string_view f);
std::string entry_line(const Message& m);
std::string removal_line(uint32_t uid, uint64_t modseq);

}  // namespace bulwark::store::uidlist
