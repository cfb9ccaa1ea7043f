#include "message_sink.hpp"

#include "core/strings.hpp"

namespace bulwark::smtp {

namespace {

// The authserv-id of an Authentication-Results value (RFC 8601 2.2): the first token,
// after any whitespace and comments. "" when the text holds none (yet).
std::string_view authserv_id(std::string_view v) {
  size_t i = 0;
  int depth = 0;
  while (i < v.size()) {
    char c = v[i];
    if (c == '(') ++depth;
    else if (c == ')' && depth > 0) --depth;
    else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n') break;
    ++i;
  }
  size_t start = i;
  while (i < v.size() && v[i] != ';' && v[i] != ' ' && v[i] != '\t' && v[i] != '\r' && v[i] != '(') ++i;
  return v.substr(start, i - start);
}

}  // namespace

void MessageSink::append(std::string_view bytes) {
  size_t header_bytes = 0;  // how much of `bytes` belongs to the header section
  for (char ch : bytes) {
    if (prev_cr_ && ch != '\n') bare_ = true;
    ++line_len_;
    if (in_headers_) {
      ++header_bytes;
      // A longer line makes the message refused (500 5.5.2): what is held stays bounded.
      if (line_.size() <= (max_line_ ? max_line_ : 998) + 2) line_ += ch;
    }
    if (ch == '\n') {
      if (!prev_cr_) bare_ = true;
      if (line_len_ > max_line_) too_long_ = true;
      if (in_headers_) {
        bool end = line_len_ == 2 && prev_cr_;
        if (!end && istarts_with(line_, "received:")) ++received_;
        header_line_done();
        if (end) in_headers_ = false;
      }
      line_len_ = 0;
    }
    prev_cr_ = ch == '\r';
  }
  if (line_len_ > max_line_) too_long_ = true;
  size_ += bytes.size();
  if (max_size_ && size_ > max_size_ && !too_big_) {
    too_big_ = true;
    body_.discard();
  }
  store(bytes.substr(header_bytes));  // the body part, as it is
}

// A header line is complete in line_: keep it, or drop it when it belongs to a forged
// Authentication-Results field. A continuation line (leading whitespace) goes with
// its field.
void MessageSink::header_line_done() {
  std::string line = std::move(line_);
  line_.clear();
  bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
  if (pending_ar_) {
    pending_ar_ = false;
    line_ = std::move(pending_line_);
    pending_line_.clear();
    if (continuation && !authserv_id_.empty()) {
      dropping_ = iequals(authserv_id(line), authserv_id_);
      if (dropping_) {
        ++dropped_;
        line_.clear();
        return;
      }
    }
    store(line_);
    line_.clear();
  }
  if (continuation) {
    if (!dropping_) store(line);
    return;
  }
  dropping_ = false;
  if (!authserv_id_.empty() && istarts_with(line, "authentication-results:")) {
    std::string_view id = authserv_id(std::string_view(line).substr(23));
    if (id.empty()) {  // the id is on the next line: hold this one until then
      pending_ar_ = true;
      pending_line_ = std::move(line);
      return;
    }
    if (iequals(id, authserv_id_)) {
      dropping_ = true;
      ++dropped_;
      return;
    }
  }
  store(line);
}

void MessageSink::store(std::string_view bytes) {
  if (bytes.empty() || too_big_) return;
  body_.append(bytes);
}

void MessageSink::finish() {
  if (prev_cr_) bare_ = true;
  if (in_headers_) {  // a message that is all header (no empty line): its last line
    if (!line_.empty()) header_line_done();
    if (pending_ar_) {
      pending_ar_ = false;
      store(pending_line_);
    }
  }
  // A message must end with CRLF; BDAT content may not. Add it (RFC 5321 4.1.1.4
  // requires the final line be terminated); DATA content always ends in CRLF here.
  if (!too_big_ && body_.size() && body_.last() != '\n') body_.append("\r\n");
  body_.finish();
}

}  // namespace bulwark::smtp
