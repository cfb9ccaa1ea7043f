// imap/: what SORT and THREAD (RFC 5256) compare of a message, taken from its header
// alone -- never its body -- so that the keys of a folder can be kept (net/ caches them
// per folder) and a sort of 100,000 messages is a sort of small records. Strings are
// compared as i;unicode-casemap (RFC 5051) says: title case, then compatibility
// decomposition (libunistring), compared octet by octet.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::imap {

struct SortKeys {
  int64_t sent = 0;          // the Date: field in UTC seconds; 0 when missing or unreadable
  std::string subject;       // the base subject (RFC 5256 2.1), casemapped
  bool reply = false;        // base subject extraction took a "Re:", "Fwd:", "(fwd)" or [fwd: ...]
  std::string from, to, cc;  // the addr-mailbox (local part) of the field's first address, casemapped
  std::string message_id;    // "<...>", or empty (THREAD=REFERENCES)
  std::vector<std::string> references;  // References (else In-Reply-To's first id), oldest first
  size_t bytes() const;      // what keeping it costs, roughly (caches count with this)
};

// The string keys SORT orders by (a store may keep each message's rank among its
// folder's values of one, so that a sort compares numbers).
enum class KeyField : uint8_t { subject, from, to, cc };
constexpr size_t kKeyFields = 4;
inline const std::string& field(const SortKeys& k, KeyField f) {
  switch (f) {
    case KeyField::subject: return k.subject;
    case KeyField::from: return k.from;
    case KeyField::to: return k.to;
    case KeyField::cc: break;
  }
  return k.cc;
}

// The keys of a message from its header (CRLF or LF).
SortKeys sort_keys(std::string_view header);

// RFC 5256 2.1: the subject with its "Re:", "Fwd:", "[list]" leaders and "(fwd)"
// trailers taken away, encoded words decoded, white space squeezed; `reply` says
// whether anything reply- or forward-like was taken.
std::string base_subject(std::string_view subject, bool* reply = nullptr);
// i;unicode-casemap (RFC 5051): the string's title case, decomposed (NFKD).
std::string casemap(std::string_view utf8);
// A Date: field ("Tue, 3 Jan 2023 11:30:00 -0500") as UTC seconds; 0 when unreadable.
int64_t sent_time(std::string_view date);

}  // namespace bulwark::imap
