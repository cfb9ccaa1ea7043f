#include "imap/parser.hpp"

#include <string.h>

#include <algorithm>

namespace bulwark::imap {
namespace {

bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+">
bool tag_char(unsigned char c) {
  return c < 0x80 && !is_ctl(c) && c != ' ' && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' &&
         c != '"' && c != '\\' && c != '+';
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  return out;
}

// The tag of a command's text, for an error reply; "*" when there is none.
std::string tag_of(std::string_view text) {
  size_t n = 0;
  while (n < text.size() && tag_char(static_cast<unsigned char>(text[n]))) ++n;
  if (n == 0 || (n < text.size() && text[n] != ' ')) return "*";
  return std::string(text.substr(0, n));
}

// A literal marker at the end of a line: "{123}", "{123+}", "~{123}".
struct Marker {
  uint64_t size = 0;
  bool nonsync = false, binary = false, overflow = false;
  size_t start = 0;  // where the marker begins in the line
};
std::optional<Marker> literal_marker(std::string_view line) {
  if (line.empty() || line.back() != '}') return std::nullopt;
  size_t open = line.rfind('{');
  if (open == std::string_view::npos) return std::nullopt;
  std::string_view in = line.substr(open + 1, line.size() - open - 2);
  Marker m;
  if (!in.empty() && in.back() == '+') {
    m.nonsync = true;
    in.remove_suffix(1);
  }
  if (in.empty()) return std::nullopt;
  for (char c : in) {
    if (c < '0' || c > '9') return std::nullopt;
    if (m.size > (UINT64_MAX - 9) / 10) m.overflow = true;
    else m.size = m.size * 10 + uint64_t(c - '0');
  }
  m.start = open;
  if (open > 0 && line[open - 1] == '~') {
    m.binary = true;
    m.start = open - 1;
  }
  return m;
}

class Parser {
 public:
  Parser(std::string_view t, const std::vector<std::string>& lits, const std::vector<uint64_t>& streamed,
         const std::vector<bool>& binary, const Limits& lim)
      : t_(t), lits_(lits), streamed_(streamed), binary_(binary), lim_(lim) {}

  bool args(std::vector<Token>& out, std::string& error) {
    while (i_ < t_.size()) {
      if (t_[i_] == ')') return fail(error, "Unexpected )");
      if (t_[i_] != ' ') return fail(error, "Missing space between arguments");
      while (i_ < t_.size() && t_[i_] == ' ') ++i_;  // lenient: more than one space
      if (i_ == t_.size()) break;                      // trailing space
      Token tok;
      if (!value(tok, 0, error)) return false;
      out.push_back(std::move(tok));
    }
    return true;
  }
  size_t pos() const { return i_; }
  void set_pos(size_t p) { i_ = p; }

  bool atom_word(std::string& out) {  // letters for command names
    size_t s = i_;
    while (i_ < t_.size() && t_[i_] != ' ' && !is_ctl(static_cast<unsigned char>(t_[i_])) && t_[i_] != '(' &&
           t_[i_] != ')')
      ++i_;
    out = std::string(t_.substr(s, i_ - s));
    return !out.empty();
  }

 private:
  bool fail(std::string& error, const char* why) {
    error = why;
    return false;
  }

  bool value(Token& tok, size_t depth, std::string& error) {
    if (++tokens_ > lim_.max_tokens) return fail(error, "Too many arguments");
    char c = t_[i_];
    if (c == '(') {
      if (depth + 1 > lim_.max_depth) return fail(error, "Parentheses nested too deeply");
      tok.kind = Token::Kind::list;
      ++i_;
      bool first = true;
      for (;;) {
        if (i_ >= t_.size()) return fail(error, "Missing )");
        if (t_[i_] == ')') {
          ++i_;
          return true;
        }
        if (!first) {
          if (t_[i_] != ' ') return fail(error, "Missing space in a list");
          while (i_ < t_.size() && t_[i_] == ' ') ++i_;
          if (i_ < t_.size() && t_[i_] == ')') continue;
          if (i_ >= t_.size()) return fail(error, "Missing )");
        }
        first = false;
        Token item;
        if (!value(item, depth + 1, error)) return false;
        tok.items.push_back(std::move(item));
      }
    }
    if (c == '"') {
      tok.kind = Token::Kind::quoted;
      ++i_;
      for (;;) {
        if (i_ >= t_.size()) return fail(error, "Missing closing quote");
        char q = t_[i_++];
        if (q == '"') return true;
        if (q == '\0') return fail(error, "A literal inside a quoted string");
        if (q == '\\') {
          if (i_ >= t_.size() || (t_[i_] != '"' && t_[i_] != '\\')) return fail(error, "Bad escape in a quoted string");
          q = t_[i_++];
        }
        tok.value += q;
      }
    }
    if (c == '\0') {
      if (li_ >= lits_.size()) return fail(error, "Literal out of place");
      tok.binary = binary_[li_];
      if (streamed_[li_]) {
        tok.kind = Token::Kind::streamed;
        tok.size = streamed_[li_];
      } else {
        tok.kind = Token::Kind::literal;
        tok.value = lits_[li_];
        tok.size = tok.value.size();
      }
      ++li_;
      ++i_;
      if (i_ < t_.size() && t_[i_] != ' ' && t_[i_] != ')') return fail(error, "Missing space after a literal");
      return true;
    }
    if (c == ')') return fail(error, "Unexpected )");
    // An atom; "[...]" inside it is taken whole (BODY[HEADER.FIELDS (A B)]<0.10>).
    tok.kind = Token::Kind::atom;
    size_t s = i_;
    int bracket = 0;
    while (i_ < t_.size()) {
      char a = t_[i_];
      if (a == '\0') break;
      if (is_ctl(static_cast<unsigned char>(a))) return fail(error, "Control character in an atom");
      if (bracket == 0 && (a == ' ' || a == '(' || a == ')' || a == '"')) break;
      if (a == '[') ++bracket;
      if (a == ']' && bracket > 0) --bracket;
      ++i_;
    }
    if (bracket) {
      // An atom may hold "[" without "]" (ASTRING-CHAR includes it: a mailbox "a[b"):
      // it then ends where an atom without brackets would.
      i_ = s;
      while (i_ < t_.size()) {
        char a = t_[i_];
        if (a == '\0' || a == ' ' || a == '(' || a == ')' || a == '"') break;
        ++i_;
      }
    }
    tok.value = std::string(t_.substr(s, i_ - s));
    if (tok.value.empty()) return fail(error, "Empty argument");
    return true;
  }

  std::string_view t_;
  const std::vector<std::string>& lits_;
  const std::vector<uint64_t>& streamed_;
  const std::vector<bool>& binary_;
  const Limits& lim_;
  size_t i_ = 0, li_ = 0, tokens_ = 0;
};

}  // namespace

std::optional<Command> parse_command(std::string_view text, const std::vector<std::string>& lits,
                                     const std::vector<uint64_t>& streamed, const std::vector<bool>& binary,
                                     const Limits& lim, std::string& tag, std::string& error) {
  tag = tag_of(text);
  if (tag == "*") {
    error = text.empty() ? "Empty command" : "Missing or bad tag";
    return std::nullopt;
  }
  Command c;
  c.tag = tag;
  Parser p(text, lits, streamed, binary, lim);
  p.set_pos(tag.size());
  if (p.pos() >= text.size() || text[p.pos()] != ' ') {
    error = "Missing command";
    return std::nullopt;
  }
  p.set_pos(p.pos() + 1);
  std::string name;
  if (!p.atom_word(name)) {
    error = "Missing command";
    return std::nullopt;
  }
  c.name = upper(name);
  if (c.name == "UID") {
    if (p.pos() >= text.size() || text[p.pos()] != ' ' || (p.set_pos(p.pos() + 1), !p.atom_word(name))) {
      error = "UID needs a command";
      return std::nullopt;
    }
    c.name += " " + upper(name);
  }
  for (char ch : c.name)
    if (!((ch >= 'A' && ch <= 'Z') || ch == ' ' || ch == '-' || (ch >= '0' && ch <= '9'))) {
      error = "Bad command name";
      return std::nullopt;
    }
  if (!p.args(c.args, error)) return std::nullopt;
  return c;
}

// Consumed input may have been a password (LOGIN, AUTHENTICATE): zeroed, not just
// dropped, so it does not linger in freed or reused memory.
void Reader::compact() {
  if (pos_ == 0) return;
  explicit_bzero(buf_.data(), pos_);
  if (pos_ >= buf_.size()) buf_.clear();
  else buf_.erase(0, pos_);
  pos_ = 0;
}

void Reader::reset_command() {
  explicit_bzero(text_.data(), text_.size());
  for (auto& l : lits_) explicit_bzero(l.data(), l.size());
  text_.clear();
  lits_.clear();
  streamed_.clear();
  binary_.clear();
  lit_left_ = 0;
  lit_streamed_ = false;
  begin_pending_ = false;
  pending_error_.clear();
  pending_too_big_ = false;
}

Reader::Event Reader::fail(std::string reason, bool fatal, bool too_big) {
  Event e;
  e.kind = Event::Kind::error;
  e.tag = tag_of(text_);
  e.reason = std::move(reason);
  e.fatal = fatal;
  e.too_big = too_big;
  reset_command();
  state_ = State::line;
  return e;
}

Reader::Event Reader::finish_command() {
  std::string tag, error;
  auto c = parse_command(text_, lits_, streamed_, binary_, lim_, tag, error);
  if (!c) {
    Event e = fail(error);
    e.tag = tag;
    return e;
  }
  Event e;
  e.kind = Event::Kind::command;
  e.cmd = std::move(*c);
  reset_command();
  return e;
}

Reader::Event Reader::next() {
  compact();
  for (;;) {
    switch (state_) {
      case State::line: {
        size_t nl = buf_.find('\n', pos_);
        if (nl == std::string::npos) {
          if (text_.size() + buffered() > lim_.max_text) {
            buf_.clear();
            pos_ = 0;
            return fail("Command line too long", true);
          }
          return {};
        }
        std::string_view line(buf_.data() + pos_, nl - pos_);
        pos_ = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (text_.size() + line.size() > lim_.max_text) return fail("Command line too long", true);
        if (line.find('\0') != std::string_view::npos) {
          if (text_.empty()) text_.assign(line.substr(0, line.find('\0')));  // for the tag
          return fail("NUL in a command");
        }
        auto m = literal_marker(line);
        if (!m) {
          text_.append(line);
          return finish_command();
        }
        text_.append(line.substr(0, m->start));
        text_ += '\0';
        binary_.push_back(m->binary);
        lits_.emplace_back();
        bool over = m->overflow || m->size > lim_.max_literal ||
                    (m->nonsync && lim_.literal_minus && m->size > 4096);
        if (over && lim_.oversize_fatal) return fail("Literal too big", true, true);
        if (over && !m->nonsync)  // the client waits for "+" and sends nothing more
          return fail("Literal too big", false, true);
        if (over) {  // RFC 7888 4: read and discard it, then refuse the command
          streamed_.push_back(0);
          state_ = State::discard_literal;
          lit_left_ = m->overflow ? UINT64_MAX : m->size;
          pending_error_ = "Literal too big";
          pending_too_big_ = true;
          continue;
        }
        lit_streamed_ = m->size > lim_.max_inline_literal;
        streamed_.push_back(lit_streamed_ ? m->size : 0);
        lit_left_ = m->size;
        begin_pending_ = lit_streamed_;
        state_ = State::literal;
        if (!m->nonsync) {
          Event e;
          e.kind = Event::Kind::continuation;
          e.size = m->size;
          return e;
        }
        continue;
      }
      case State::literal: {
        if (begin_pending_) {
          begin_pending_ = false;
          Event e;
          e.kind = Event::Kind::literal_begin;
          e.size = lit_left_;
          std::string tag, error;
          e.tag = tag_of(text_);
          // The command so far (tag, name, the arguments before this literal).
          std::string head = text_.substr(0, text_.size() - 1);
          while (!head.empty() && head.back() == ' ') head.pop_back();
          std::vector<std::string> l(lits_.begin(), lits_.end() - 1);
          std::vector<uint64_t> s(streamed_.begin(), streamed_.end() - 1);
          std::vector<bool> b(binary_.begin(), binary_.end() - 1);
          if (auto c = parse_command(head, l, s, b, lim_, tag, error)) e.cmd = std::move(*c);
          return e;
        }
        uint64_t avail = std::min<uint64_t>(buffered(), lit_left_);
        if (lit_left_ == 0) {
          state_ = State::line;
          continue;
        }
        if (avail == 0) return {};
        if (lit_streamed_) {
          Event e;
          e.kind = Event::Kind::literal_data;
          e.data = std::string_view(buf_.data() + pos_, size_t(avail));
          pos_ += size_t(avail);
          lit_left_ -= avail;
          if (lit_left_ == 0) state_ = State::line;
          return e;
        }
        lits_.back().append(buf_, pos_, size_t(avail));
        pos_ += size_t(avail);
        lit_left_ -= avail;
        if (lit_left_ == 0) state_ = State::line;
        continue;
      }
      case State::discard_literal: {
        uint64_t avail = std::min<uint64_t>(buffered(), lit_left_);
        pos_ += size_t(avail);
        lit_left_ -= avail;
        if (lit_left_ > 0) return {};
        state_ = State::discard_line;
        continue;
      }
      case State::discard_line: {
        size_t nl = buf_.find('\n', pos_);
        if (nl == std::string::npos) {
          pos_ = buf_.size();
          return {};
        }
        pos_ = nl + 1;
        std::string why = pending_error_;
        bool too_big = pending_too_big_;
        return fail(why, false, too_big);
      }
    }
  }
}

}  // namespace bulwark::imap
