#include "reply.hpp"

namespace bulwark::smtp {

std::string Reply::render() const {
  std::string out;
  std::string code_s = std::to_string(code);
  for (size_t i = 0; i < lines.size(); ++i) {
    out += code_s;
    out += (i + 1 < lines.size()) ? '-' : ' ';
    if (!enhanced.empty()) {
      out += enhanced;
      out += ' ';
    }
    out += lines[i];
    out += "\r\n";
  }
  if (lines.empty()) out = code_s + " " + enhanced + "\r\n";
  return out;
}

}  // namespace bulwark::smtp
