// imap/: mailbox names as IMAP4rev1 clients write them -- modified UTF-7 (RFC 3501
// 5.1.3) -- and as the store keeps them (UTF-8). IMAP4rev2 clients (after ENABLE
// IMAP4rev2 or UTF8=ACCEPT) use UTF-8 directly.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace bulwark::imap {

std::string utf8_to_mutf7(std::string_view utf8);
// Nothing when `mutf7` is not valid modified UTF-7 (a client error: BAD).
std::optional<std::string> mutf7_to_utf8(std::string_view mutf7);

}  // namespace bulwark::imap
