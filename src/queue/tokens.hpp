// queue/tokens.hpp: the %-escaped tokens of the spool's text files (envelope headers,
// state lines, the commit record): no byte a client sent can break their line
// structure.
#pragma once
#include <string>
#include <string_view>

#include "core/strings.hpp"

namespace bulwark {

// Bytes <= 0x20, '%' and DEL become %XX; the empty string is "%".
inline std::string enc_token(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '%' || c == 0x7f) {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  return out.empty() ? "%" : out;
}

inline std::string dec_token(std::string_view s) {
  if (s == "%") return {};
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
      out += char(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace bulwark
