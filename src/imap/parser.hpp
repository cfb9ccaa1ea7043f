// imap/: the IMAP command reader without I/O (RFC 9051 2.2 and 9, RFC 3501; LITERAL+
// and LITERAL- of RFC 7888; binary literals "~{n}" of RFC 3516). Bytes in, whole
// commands out as token trees, with the protocol's literal handshake made explicit:
// a synchronizing literal "{n}" asks the server to say "+" before the client sends it.
// Everything a client controls is bounded: the text of a command, the depth and count
// of its tokens, and literals -- small ones are held, large ones (APPEND) are handed
// on in chunks as they arrive and never held, and one over the limit is refused
// without being read into memory. Depends on the standard library only (fuzzed).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::imap {

struct Token {
  enum class Kind {
    atom,      // including NIL, numbers, sequence sets, BODY[...]<...> (brackets kept whole)
    quoted,    // the unescaped text
    literal,   // the bytes (held: up to Limits::max_inline_literal)
    streamed,  // a literal handed on as literal_data events; `size` only
    list,      // ( ... )
  };
  Kind kind = Kind::atom;
  std::string value;
  std::vector<Token> items;
  uint64_t size = 0;
  bool binary = false;  // "~{n}"
  bool is_string() const { return kind == Kind::quoted || kind == Kind::literal; }
  // An astring (atom, quoted or held literal) as text.
  bool is_astring() const { return kind == Kind::atom || is_string(); }
};

struct Command {
  std::string tag;
  std::string name;  // upper case: "UID FETCH" for UID commands
  std::vector<Token> args;
};

struct Limits {
  size_t max_text = 64 * 1024;              // a command's text, literals excluded
  uint64_t max_inline_literal = 64 * 1024;  // larger literals are streamed
  uint64_t max_literal = 50ull << 20;       // larger literals are refused (APPENDLIMIT)
  size_t max_depth = 32;                    // nested parentheses
  size_t max_tokens = 100000;
  bool literal_minus = false;               // LITERAL- (rev2 default): {n+} only up to 4096
  // A literal over max_literal ends the connection instead of being refused (and, when
  // non-synchronizing, read and discarded): before login nobody may push bytes unbounded.
  bool oversize_fatal = false;
};
// Before authentication no command needs more than a few kilobytes of literal.
constexpr uint64_t kPreAuthLiteral = 8 * 1024;

class Reader {
 public:
  explicit Reader(Limits limits = {}) : lim_(limits) {}

  struct Event {
    enum class Kind {
      none,            // needs more input
      command,         // `cmd` is complete
      continuation,    // the client waits for "+" before sending a literal of `size`
      literal_begin,   // a streamed literal of `size` bytes starts (the command so far: `cmd`)
      literal_data,    // `data`: the next bytes of it (valid until the next call)
      error,           // `reason`; `tag` if one was read; `fatal`: close after saying it
    };
    Kind kind = Kind::none;
    Command cmd;
    std::string tag;
    std::string_view data;
    uint64_t size = 0;
    std::string reason;
    bool too_big = false;  // the error is a literal over the limit ([TOOBIG])
    bool fatal = false;
  };

  void feed(std::string_view bytes) { buf_.append(bytes); }
  // New bounds (after login), for the next literal on.
  void set_limits(const Limits& limits) { lim_ = limits; }
  Event next();
  ~Reader() {
    pos_ = buf_.size();
    compact();
    reset_command();
  }
  size_t buffered() const { return buf_.size() - pos_; }
  // The bytes not yet read (for an AUTHENTICATE exchange, whose lines are not commands).
  std::string take_buffer() {
    std::string rest = buf_.substr(pos_);
    discard_buffer();
    return rest;
  }
  // STARTTLS/COMPRESS: whatever came with the command is dropped.
  void discard_buffer() {
    pos_ = buf_.size();
    compact();
  }
  // The reader is between commands (no partial command held).
  bool idle() const { return state_ == State::line && text_.empty() && buffered() == 0; }

 private:
  enum class State { line, literal, discard_literal, discard_line };
  Event finish_command();
  Event fail(std::string reason, bool fatal = false, bool too_big = false);
  void reset_command();
  void compact();

  Limits lim_;
  std::string buf_;
  size_t pos_ = 0;
  State state_ = State::line;
  // The command being assembled: text pieces with literals between them.
  std::string text_;                // all text so far, a literal marked by \0 + index
  std::vector<std::string> lits_;   // held literals
  std::vector<uint64_t> streamed_;  // sizes of streamed literals (index: lits_ slot)
  std::vector<bool> binary_;
  uint64_t lit_left_ = 0;
  bool lit_streamed_ = false;
  bool begin_pending_ = false;
  std::string pending_error_;
  bool pending_too_big_ = false;
};

// Parses a command's text (with literals already spliced in) into tag, name, args.
// Exposed for tests; Reader::next uses it.
std::optional<Command> parse_command(std::string_view text, const std::vector<std::string>& lits,
                                     const std::vector<uint64_t>& streamed, const std::vector<bool>& binary,
                                     const Limits& lim, std::string& tag, std::string& error);

}  // namespace bulwark::imap
