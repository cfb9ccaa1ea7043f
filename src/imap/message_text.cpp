#include "imap/message_text.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>

#include "core/strings.hpp"

namespace bulwark::imap {

std::optional<uint64_t> number(std::string_view s) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// The header (through the blank line) and the text of a CRLF message.
std::pair<std::string_view, std::string_view> split_message(std::string_view m) {
  size_t e = m.find("\r\n\r\n");
  if (e == std::string_view::npos) return {m, {}};
  return {m.substr(0, e + 4), m.substr(e + 4)};
}

// HEADER.FIELDS (A B) / HEADER.FIELDS.NOT: the chosen fields, then the blank line.
std::string header_fields(std::string_view header, const std::vector<std::string>& names, bool exclude) {
  std::string out;
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = pos;
    do {  // a field with its folded continuation lines
      size_t nl = header.find("\r\n", end);
      end = nl == std::string_view::npos ? header.size() : nl + 2;
    } while (end < header.size() && (header[end] == ' ' || header[end] == '\t'));
    std::string_view field = header.substr(pos, end - pos);
    size_t colon = field.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = trim(field.substr(0, colon));
      bool listed = false;
      for (auto& n : names) listed |= iequals(n, name);
      if (listed != exclude) out += field;
    }
    pos = end;
  }
  return out + "\r\n";
}

bool contains_ci(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return true;
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return ascii_lower(a) == ascii_lower(b); });
  return it != hay.end();
}

// The value of a header field (first occurrence, unfolded), or empty.
std::string header_value(std::string_view header, std::string_view name) {
  std::string all = header_fields(header, {std::string(name)}, false);
  size_t colon = all.find(':');
  if (colon == std::string::npos) return {};
  return std::string(all.substr(colon + 1));
}

std::optional<int64_t> search_date(std::string_view s) {  // 1-Feb-1994
  static const char* months[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  size_t a = s.find('-'), b = s.rfind('-');
  if (a == std::string_view::npos || a == b) return std::nullopt;
  auto d = number(s.substr(0, a)), y = number(s.substr(b + 1));
  std::string mon = to_lower(s.substr(a + 1, b - a - 1));
  int m = -1;
  for (int i = 0; i < 12; ++i)
    if (mon == months[i]) m = i;
  if (!d || !y || m < 0 || *d < 1 || *d > 31 || *y < 1900 || *y > 9999) return std::nullopt;
  std::tm tm{};
  tm.tm_mday = int(*d);
  tm.tm_mon = m;
  tm.tm_year = int(*y) - 1900;
  return int64_t(timegm(&tm));
}

}  // namespace bulwark::imap
