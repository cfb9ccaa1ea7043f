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

// The one way a mailbox is written into an SMTP path (RCPT TO, MAIL FROM) from text
// that did not come straight from a parsed path (alias and group targets, the queue):
// `local` is the local part as its owner spells it, unquoted; the result is a
// Dot-string when it is one, else a Quoted-string with '"' and '\\' escaped (RFC 5321
// 4.1.2), so that nothing in it can end the path or add parameters. nullopt when no
// path can carry it (empty, over 64 octets, a control character, invalid UTF-8).
std::optional<std::string> quote_local(std::string_view local);
// "local@domain" text -- the local part quoted or not -- as quote_local writes it,
// split at the last '@'; nullopt when it cannot be written safely or the domain is
// not a domain or address literal.
std::optional<std::string> path_mailbox(std::string_view text);
// The local part of `text` ("local@domain") unquoted.
std::string unquoted_local(std::string_view local);

// Domain syntax per RFC 5321 (LDH labels, or UTF-8 labels when allow_utf8).
bool valid_domain(std::string_view d, bool allow_utf8);
bool valid_utf8(std::string_view s);

}  // namespace bulwark
