// imap/: reading a message as IMAP needs it, without MIME parsing: header and text,
// chosen header fields, case-insensitive search. Internal to imap/.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::imap {

std::optional<uint64_t> number(std::string_view s);
// The header (through the blank line) and the text of a CRLF message.
std::pair<std::string_view, std::string_view> split_message(std::string_view m);
// HEADER.FIELDS (A B) / HEADER.FIELDS.NOT: the chosen fields, then the blank line.
std::string header_fields(std::string_view header, const std::vector<std::string>& names, bool exclude);
bool contains_ci(std::string_view hay, std::string_view needle);
// The value of a header field (first occurrence, unfolded), or empty.
std::string header_value(std::string_view header, std::string_view name);
// A SEARCH date ("1-Feb-1994") as the epoch second of that day's start (UTC).
std::optional<int64_t> search_date(std::string_view s);

}  // namespace bulwark::imap
