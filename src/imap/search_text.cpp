#include "imap/search_text.hpp"

#include <iconv.h>
#include <locale.h>
#include <sodium.h>
#include <wctype.h>

#include <cerrno>

#include "core/strings.hpp"
#include "imap/message_text.hpp"

namespace bulwark::imap {
namespace {

constexpr size_t max_text = 16 * 1024 * 1024;  // what one message contributes to a search

// bytes in `charset` as UTF-8 (iconv); invalid sequences are skipped, an unknown
// charset gives the bytes as they are.
std::string to_utf8(std::string_view charset, std::string_view bytes) {
  std::string cs = to_lower(trim(charset));
  if (cs.empty() || cs == "utf-8" || cs == "us-ascii" || cs == "utf8") return std::string(bytes);
  iconv_t cd = iconv_open("UTF-8//IGNORE", cs.c_str());
  if (cd == iconv_t(-1)) return std::string(bytes);
  std::string out(bytes.size() * 4 + 16, '\0');
  char* in = const_cast<char*>(bytes.data());
  size_t in_left = bytes.size();
  char* o = out.data();
  size_t out_left = out.size();
  while (in_left > 0) {
    // glibc's //IGNORE converts to the end and still reports EILSEQ with nothing left:
    // done then (skipping a byte there would run past the input).
    if (iconv(cd, &in, &in_left, &o, &out_left) != size_t(-1) || in_left == 0) break;
    if (errno == EILSEQ || errno == EINVAL) {  // a byte the charset does not have: skip it
      ++in;
      --in_left;
      continue;
    }
    break;  // E2BIG cannot happen with 4x room; anything else: what we have
  }
  iconv_close(cd);
  out.resize(size_t(o - out.data()));
  return out;
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Quoted-printable (RFC 2045 6.7); `q`: the Q encoding of encoded words ('_' is a space).
std::string unquote_printable(std::string_view s, bool q) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_' && q) {
      out += ' ';
    } else if (c == '=' && i + 1 < s.size()) {
      if (s[i + 1] == '\r' || s[i + 1] == '\n') {  // soft line break
        i += s[i + 1] == '\r' && i + 2 < s.size() && s[i + 2] == '\n' ? 2 : 1;
      } else if (i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
        out += char(hex(s[i + 1]) * 16 + hex(s[i + 2]));
        i += 2;
      } else {
        out += c;
      }
    } else {
      out += c;
    }
  }
  return out;
}

std::string unbase64(std::string_view s) {
  std::string out(s.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), s.data(), s.size(), " \t\r\n=", &len,
                    &end, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
  out.resize(len);  // up to the first byte that is not base64: what a client would show
  return out;
}

std::string param(const MimePart& p, std::string_view name) {
  for (auto& [k, v] : p.params)
    if (k == name) return v;
  return {};
}

void collect(const MimePart& p, std::string& out) {
  if (out.size() > max_text) return;
  if (p.is_multipart()) {
    for (auto& c : p.children) collect(c, out);
  } else if (p.is_message() && p.message) {
    out += decode_words(p.message->header);
    collect(*p.message, out);
  } else if (iequals(p.type, "text")) {
    auto raw = decode_transfer(header_value(p.header, "Content-Transfer-Encoding"), p.body);
    out += to_utf8(param(p, "charset"), raw ? *raw : std::string(p.body));
    out += "\r\n";
  }
}

}  // namespace

std::optional<std::string> decode_transfer(std::string_view encoding, std::string_view body) {
  std::string e = to_lower(trim(encoding));
  if (e == "base64") return unbase64(body);
  if (e == "quoted-printable") return unquote_printable(body, false);
  if (e.empty() || e == "7bit" || e == "8bit" || e == "binary") return std::string(body);
  return std::nullopt;
}

namespace {

locale_t utf8_locale() {
  static locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(0));
  return l;
}

}  // namespace

std::string decode_words(std::string_view v) {
  std::string out;
  size_t i = 0;
  bool last_was_word = false;
  std::string pending_space;  // white space between two encoded words is dropped (RFC 2047 6.2)
  while (i < v.size()) {
    if (v.substr(i, 2) == "=?") {
      size_t q1 = v.find('?', i + 2);
      size_t q2 = q1 == std::string_view::npos ? q1 : v.find('?', q1 + 1);
      size_t end = q2 == std::string_view::npos ? q2 : v.find("?=", q2 + 1);
      if (end != std::string_view::npos && q2 == q1 + 2) {
        std::string_view charset = v.substr(i + 2, q1 - i - 2);
        charset = charset.substr(0, charset.find('*'));  // RFC 2231 language suffix
        char kind = char(v[q1 + 1] | 0x20);
        std::string_view text = v.substr(q2 + 1, end - q2 - 1);
        if (kind == 'q' || kind == 'b') {
          if (!last_was_word) out += pending_space;
          pending_space.clear();
          out += to_utf8(charset, kind == 'b' ? unbase64(text) : unquote_printable(text, true));
          last_was_word = true;
          i = end + 2;
          continue;
        }
      }
    }
    char c = v[i++];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      pending_space += c;
      continue;
    }
    out += pending_space;
    pending_space.clear();
    out += c;
    last_was_word = false;
  }
  return out + pending_space;
}

std::string searchable_text(const MimePart& root) {
  std::string out;
  collect(root, out);
  return out;
}

std::string fold(std::string_view s, bool squeeze) {
  std::string out;
  out.reserve(s.size());
  locale_t loc = utf8_locale();
  locale_t old = loc ? uselocale(loc) : locale_t(0);
  mbstate_t st{};
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80 || !loc) {
      bool space = c == ' ' || c == '\t' || c == '\r' || c == '\n';
      if (squeeze && space) {
        if (!out.empty() && out.back() != ' ') out += ' ';
      } else {
        out += ascii_lower(char(c));
      }
      ++i;
      continue;
    }
    wchar_t w;
    size_t n = mbrtowc(&w, s.data() + i, s.size() - i, &st);
    if (n == size_t(-1) || n == size_t(-2) || n == 0) {
      st = mbstate_t{};
      out += char(c);  // not UTF-8: the byte as it is
      ++i;
      continue;
    }
    char buf[MB_LEN_MAX];
    mbstate_t ost{};
    size_t m = wcrtomb(buf, wchar_t(towlower_l(wint_t(w), loc)), &ost);
    if (m == size_t(-1)) out.append(s.data() + i, n);
    else out.append(buf, m);
    i += n;
  }
  if (loc) uselocale(old);
  if (squeeze)
    while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace bulwark::imap
