// RFC 5322 header fields of a message: just enough to read the addresses of From:
// for the sender identity check (SPEC 9).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/address.hpp"

namespace bulwark {

struct HeaderAddresses {
  size_t fields = 0;                // how many fields of that name the header has
  bool ok = true;                   // false: an address could not be parsed
  std::vector<Address> addresses;   // every mailbox, groups flattened
};

// The mailboxes of every `name` field (case-insensitive, e.g. "from") in the header
// section of `message` (CRLF lines; the header ends at the first empty line).
// Display names, comments, quoted strings, groups and folding are understood.
HeaderAddresses header_addresses(std::string_view message, std::string_view name);

}  // namespace bulwark
