#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark {

// A mailbox as it travels in the SMTP envelope. `local` keeps the exact form the
// client used (quoted if it was quoted, case preserved); `domain` is lower-cased.
// An address literal keeps its brackets ("[192.0.2.1]").
struct Address {
  std::string local;
  std::string domain;
  bool utf8 = false;  // contains non-ASCII (needs SMTPUTF8)

  bool empty() const { return local.empty() && domain.empty(); }  // the null path <>
  std::string str() const { return empty() ? std::string() : domain.empty() ? local : local + "@" + domain; }
  std::string bracketed() const { return "<" + str() + ">"; }
  // The key used for directory lookups: local part unquoted and lower-cased.
  std::string lookup_key() const;
  bool domain_is_literal() const { return !domain.empty() && domain.front() == '['; }
};

enum class AddressError { syntax, too_long, bad_domain, bad_local };

struct ParsedPath {
  Address address;
  std::string params;  // the text after '>' (ESMTP parameters), leading spaces removed
};

// Parses an RFC 5321 Path ("<...>" with optional source route, which is dropped)
// followed by optional ESMTP parameters. `allow_null` accepts "<>".
// `allow_bare_postmaster` accepts "<Postmaster>" (RCPT only, RFC 5321 4.5.1).
struct PathResult {
  std::optional<ParsedPath> path;
  AddressError error = AddressError::syntax;
};
PathResult parse_path(std::string_view text, bool allow_null, bool allow_bare_postmaster);

// Parses a bare mailbox "local@domain" (no brackets), as typed on the admin CLI.
std::optional<Address> parse_mailbox(std::string_view text);

// Domain syntax per RFC 5321 (LDH labels, or UTF-8 labels when allow_utf8).
bool valid_domain(std::string_view d, bool allow_utf8);
bool valid_utf8(std::string_view s);

}  // namespace bulwark
