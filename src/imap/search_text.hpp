// imap/: text as SEARCH compares it (RFC 9051 6.4.4: "the text ... after decoding"):
// header values with their encoded words (RFC 2047) decoded, the text parts of a
// message with their transfer encoding undone and converted to UTF-8, and a
// case-insensitive comparison that folds non-ASCII letters too (Ü matches ü).
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "imap/mime.hpp"

namespace bulwark::imap {

// A header value with encoded words decoded into UTF-8 (unknown charsets stay as written).
std::string decode_words(std::string_view value);
// What BODY searches: every text/* part decoded into UTF-8, and the header of each
// enclosed message (message/rfc822) decoded, separated by line ends.
std::string searchable_text(const MimePart& root);
// A part's content with its Content-Transfer-Encoding undone (FETCH BINARY, RFC 3516):
// base64, quoted-printable; 7bit, 8bit, binary and none as they are; nothing for an
// encoding bulwark does not know (the client is told [UNKNOWN-CTE]).
std::optional<std::string> decode_transfer(std::string_view encoding, std::string_view body);
// For comparing: lower case (Unicode, through the C.UTF-8 locale), runs of white space
// as one space when `squeeze`.
std::string fold(std::string_view utf8, bool squeeze);

}  // namespace bulwark::imap
