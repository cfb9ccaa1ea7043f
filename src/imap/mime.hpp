// imap/: the MIME structure of a message as IMAP shows it (RFC 9051 7.5.2): ENVELOPE,
// BODY and BODYSTRUCTURE, and body sections by part number ("1.2", "2.HEADER",
// "1.MIME"). Tolerant of broken MIME the way clients expect: a missing boundary makes
// the multipart one text part, a part without a header is text/plain, depth is bounded.
// Works on a CRLF message held in memory; views point into it.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::imap {

struct MimePart {
  std::string_view header;  // the part's header, through its blank line (may be empty)
  std::string_view body;
  std::string type = "text", subtype = "plain";  // as written (defaults lower case)
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<MimePart> children;     // multipart/*
  std::unique_ptr<MimePart> message;  // message/rfc822: the enclosed message
  size_t close_end = 0;               // multipart: the end of its close delimiter line in body
  bool is_multipart() const;
  bool is_message() const;
};

MimePart parse_mime(std::string_view message);

// The parenthesized ENVELOPE of a header.
std::string envelope(std::string_view header);

// One entry of an address header as ENVELOPE lists it (RFC 3501 7.4.2): an address, or
// a group's start ("mailbox" holds its name) or end.
struct EnvelopeAddress {
  enum Kind { address, group_start, group_end } kind = address;
  std::string name, route, mailbox, host;
  bool has_host = false;
};
std::vector<EnvelopeAddress> parse_addresses(std::string_view value);
// An address header as SEARCH FROM/TO/CC/BCC match it: "name <mailbox@host>, ..." with
// group names -- comments and the header's own syntax are not matched (as Dovecot).
std::string address_search_text(std::string_view value);
// BODYSTRUCTURE (extensible = true) or BODY.
std::string body_structure(const MimePart& part, bool extensible);
// A section below the top level: "1", "1.2", "2.HEADER", "2.TEXT", "1.MIME",
// "3.HEADER.FIELDS" is handled by the caller with the header this returns. Nothing
// when the part does not exist. `what`: "" (the part's body), HEADER, TEXT, MIME.
// `part`, when given, is set to the part the section names.
std::optional<std::string_view> mime_section(const MimePart& root, std::string_view spec, std::string& what,
                                             const MimePart** part = nullptr);

}  // namespace bulwark::imap
