#include "core/header.hpp"

#include "core/strings.hpp"

namespace bulwark {
namespace {

// Unfolded values of every field called `name`.
std::vector<std::string> field_values(std::string_view msg, std::string_view name) {
  std::vector<std::string> out;
  bool in_field = false;
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t eol = msg.find("\r\n", pos);
    std::string_view line = msg.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    if (line.empty()) break;  // end of the header section
    if (line[0] == ' ' || line[0] == '\t') {
      if (in_field) out.back() += std::string(line);
    } else {
      size_t colon = line.find(':');
      in_field = colon != std::string_view::npos && iequals(trim(line.substr(0, colon)), name);
      if (in_field) out.emplace_back(line.substr(colon + 1));
    }
    if (eol == std::string_view::npos) break;
    pos = eol + 2;
  }
  return out;
}

// Splits an address-list into addr-specs. Comments are dropped, quoted strings kept;
// "<...>" wins over the display name; "name:" opens a group, ";" closes it.
bool split_list(std::string_view v, std::vector<std::string>& specs) {
  std::string bare, angle;
  bool have_angle = false, in_angle = false;
  auto flush = [&]() -> bool {
    std::string spec = have_angle ? angle : bare;
    if (have_angle) {
      // obsolete source route "@a,@b:user@host"
      if (!spec.empty() && spec[0] == '@') {
        size_t colon = spec.find(':');
        if (colon == std::string::npos) return false;
        spec = spec.substr(colon + 1);
      }
    }
    if (!spec.empty()) specs.push_back(spec);
    else if (have_angle) return false;  // "<>" is no mailbox
    bare.clear();
    angle.clear();
    have_angle = false;
    return true;
  };
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '(') {  // comment, nested, with quoted-pairs
      int depth = 1;
      while (++i < v.size() && depth > 0) {
        if (v[i] == '\\') ++i;
        else if (v[i] == '(') ++depth;
        else if (v[i] == ')') --depth;
      }
      if (depth != 0) return false;
      --i;
      continue;
    }
    if (c == '"') {
      std::string q = "\"";
      while (++i < v.size() && v[i] != '"') {
        if (v[i] == '\\' && i + 1 < v.size()) q += v[i++];
        q += v[i];
      }
      if (i >= v.size()) return false;
      q += '"';
      (in_angle ? angle : bare) += q;
      continue;
    }
    if (in_angle) {
      if (c == '>') in_angle = false;
      else if (c != ' ' && c != '\t') angle += c;
      continue;
    }
    switch (c) {
      case '<':
        if (have_angle) return false;
        in_angle = have_angle = true;
        angle.clear();
        break;
      case ':': bare.clear(); break;  // group display name
      case ',':
      case ';':
        if (!flush()) return false;
        break;
      case ' ':
      case '\t': bare += ' '; break;
      default: bare += c;
    }
  }
  if (in_angle) return false;
  return flush();
}

}  // namespace

HeaderAddresses header_addresses(std::string_view message, std::string_view name) {
  HeaderAddresses r;
  for (auto& value : field_values(message, name)) {
    ++r.fields;
    std::vector<std::string> specs;
    if (!split_list(value, specs)) {
      r.ok = false;
      continue;
    }
    for (auto& spec : specs) {
      // A bare addr-spec may still carry a display name if the writer forgot "<>":
      // only "local@domain" with no spaces outside quotes is accepted.
      std::string s(trim(spec));
      auto a = parse_mailbox(s);
      if (!a) {
        r.ok = false;
        continue;
      }
      r.addresses.push_back(*a);
    }
  }
  return r;
}

}  // namespace bulwark
