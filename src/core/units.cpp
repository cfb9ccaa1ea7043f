#include "units.hpp"

#include <ctime>
#include <charconv>
#include <limits>

#include "strings.hpp"

namespace bulwark {
namespace {
std::optional<uint64_t> parse_number(std::string_view digits) {
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size()) return std::nullopt;
  return v;
}
}  // namespace

std::optional<uint64_t> parse_size(std::string_view s) {
  s = trim(s);
  uint64_t mult = 1;
  std::string unit;
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  std::string suffix = to_lower(trim(s.substr(i)));
  if (suffix.empty() || suffix == "b") mult = 1;
  else if (suffix == "kb" || suffix == "k") mult = 1024ull;
  else if (suffix == "mb" || suffix == "m") mult = 1024ull * 1024;
  else if (suffix == "gb" || suffix == "g") mult = 1024ull * 1024 * 1024;
  else return std::nullopt;
  auto n = parse_number(s.substr(0, i));
  if (!n) return std::nullopt;
  if (*n > std::numeric_limits<uint64_t>::max() / mult) return std::nullopt;
  return *n * mult;
}

std::optional<std::chrono::seconds> parse_duration(std::string_view s) {
  s = trim(s);
  if (s == "0") return std::chrono::seconds(0);
  if (s.size() < 2) return std::nullopt;
  uint64_t mult;
  switch (ascii_lower(s.back())) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    default: return std::nullopt;
  }
  auto n = parse_number(s.substr(0, s.size() - 1));
  if (!n || *n > (1ull << 40) / mult) return std::nullopt;
  return std::chrono::seconds(static_cast<int64_t>(*n * mult));
}

std::string utc_time(int64_t unix_seconds, const char* format) {
  std::time_t t = std::time_t(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

std::string hex(std::string_view raw) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string sanitize(std::string_view s, size_t max_len) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    if (c < 0x20 || c >= 0x7f || c == '\\') {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  return out;
}

}  // namespace bulwark
