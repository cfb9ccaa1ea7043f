#pragma once
#include <string>
#include <vector>

namespace bulwark::smtp {

// One SMTP reply: code, RFC 3463 enhanced status and one or more text lines.
struct Reply {
  int code = 250;
  std::string enhanced;  // "2.0.0"; empty for 220 greeting / EHLO lines
  std::vector<std::string> lines;

  Reply(int c, std::string e, std::string text) : code(c), enhanced(std::move(e)), lines{std::move(text)} {}
  Reply(int c, std::string e, std::vector<std::string> l) : code(c), enhanced(std::move(e)), lines(std::move(l)) {}
  std::string render() const;
  bool is_error() const { return code >= 400; }
};

}  // namespace bulwark::smtp
