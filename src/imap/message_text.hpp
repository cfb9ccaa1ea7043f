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
// A sequence set for sorted, distinct numbers: "1:3,5,9:12".
std::string set_text(const std::vector<uint64_t>& sorted);
// The value of a header field (first occurrence, or the last one, as Dovecot takes it
// for ENVELOPE), unfolded, or empty.
std::string header_value(std::string_view header, std::string_view name, bool last = false);
// A SEARCH date ("1-Feb-1994") as the epoch second of that day's start (UTC).
std::optional<int64_t> search_date(std::string_view s);
// An APPEND date-time ("05-Feb-2023 10:00:00 +0100") as an epoch second.
std::optional<int64_t> date_time(std::string_view s);
// The day of a Date: header ("Tue, 3 Jan 2023 11:30:00 -0500"), time and zone
// disregarded (SENTBEFORE/SENTON/SENTSINCE), as the epoch second of its start (UTC).
std::optional<int64_t> sent_day(std::string_view date);

}  // namespace bulwark::imap
