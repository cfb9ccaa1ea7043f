#include "imap/message_text.hpp"

#include <algorithm>
#include <charconv>
#include <cctype>
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

std::string set_text(const std::vector<uint64_t>& v) {
  std::string set;
  for (size_t j = 0; j < v.size();) {
    size_t e = j;
    while (e + 1 < v.size() && v[e + 1] == v[e] + 1) ++e;
    set += (set.empty() ? "" : ",") + std::to_string(v[j]) + (e > j ? ":" + std::to_string(v[e]) : std::string());
    j = e + 1;
  }
  return set;
}

bool contains_ci(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return true;
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return ascii_lower(a) == ascii_lower(b); });
  return it != hay.end();
}

// The value of a header field (the first or the last occurrence, unfolded: line
// breaks removed), or empty.
std::string header_value(std::string_view header, std::string_view name, bool last) {
  std::string all = header_fields(header, {std::string(name)}, false);
  std::string_view v;
  size_t pos = 0;
  while (pos + 2 < all.size()) {  // fields start where a line does not begin with white space
    size_t end = pos;
    do {
      end = all.find("\r\n", end) + 2;
    } while (end < all.size() && (all[end] == ' ' || all[end] == '\t'));
    std::string_view field(all.data() + pos, end - pos);
    v = field.substr(field.find(':') + 1);
    if (!last) break;
    pos = end;
  }
  std::string out;
  for (char c : v)
    if (c != '\r' && c != '\n') out += c;
  return out;
}

namespace {
int month_of(std::string_view s) {
  static const char* months[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  std::string m = to_lower(s);
  for (int i = 0; i < 12; ++i)
    if (m == months[i]) return i;
  return -1;
}

std::optional<int64_t> day_start(uint64_t d, int m, uint64_t y) {
  if (d < 1 || d > 31 || m < 0 || y < 1900 || y > 9999) return std::nullopt;
  std::tm tm{};
  tm.tm_mday = int(d);
  tm.tm_mon = m;
  tm.tm_year = int(y) - 1900;
  return int64_t(timegm(&tm));
}
}  // namespace

std::optional<int64_t> search_date(std::string_view s) {  // 1-Feb-1994
  size_t a = s.find('-'), b = s.rfind('-');
  if (a == std::string_view::npos || a == b) return std::nullopt;
  auto d = number(s.substr(0, a)), y = number(s.substr(b + 1));
  if (!d || !y) return std::nullopt;
  return day_start(*d, month_of(s.substr(a + 1, b - a - 1)), *y);
}

std::optional<int64_t> date_time(std::string_view s) {  // "dd-Mon-yyyy hh:mm:ss +zzzz"
  if (s.size() != 26 || s[2] != '-' || s[6] != '-' || s[11] != ' ' || s[14] != ':' || s[17] != ':' || s[20] != ' ')
    return std::nullopt;
  std::string_view day = s.substr(0, 2);
  if (day[0] == ' ') day = day.substr(1);
  auto d = number(day), y = number(s.substr(7, 4));
  auto hh = number(s.substr(12, 2)), mm = number(s.substr(15, 2)), ss = number(s.substr(18, 2));
  auto zh = number(s.substr(22, 2)), zm = number(s.substr(24, 2));
  if (!d || !y || !hh || !mm || !ss || !zh || !zm || *hh > 23 || *mm > 59 || *ss > 60 || *zm > 59 ||
      (s[21] != '+' && s[21] != '-'))
    return std::nullopt;
  auto start = day_start(*d, month_of(s.substr(3, 3)), *y);
  if (!start) return std::nullopt;
  int64_t zone = int64_t(*zh * 3600 + *zm * 60) * (s[21] == '-' ? -1 : 1);
  return *start + int64_t(*hh * 3600 + *mm * 60 + *ss) - zone;
}

std::optional<int64_t> sent_day(std::string_view date) {  // [Day,] d Mon yyyy ...: the day only
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < date.size() && words.size() < 4) {
    while (i < date.size() && (date[i] == ' ' || date[i] == '\t' || date[i] == ',')) ++i;
    size_t j = i;
    while (j < date.size() && date[j] != ' ' && date[j] != '\t' && date[j] != ',') ++j;
    if (j > i) words.push_back(date.substr(i, j - i));
    i = j;
  }
  size_t k = !words.empty() && !words[0].empty() && !std::isdigit(static_cast<unsigned char>(words[0][0])) ? 1 : 0;
  if (words.size() < k + 3) return std::nullopt;
  auto d = number(words[k]), y = number(words[k + 2]);
  if (!d || !y) return std::nullopt;
  if (*y < 50) *y += 2000;  // RFC 5322 4.3: two-digit years
  else if (*y < 1000) *y += 1900;
  return day_start(*d, month_of(words[k + 1]), *y);
}


}  // namespace bulwark::imap
