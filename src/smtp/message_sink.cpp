#include "message_sink.hpp"

#include "core/strings.hpp"

namespace bulwark::smtp {

void MessageSink::append(std::string_view bytes) {
  for (char ch : bytes) {
    if (prev_cr_ && ch != '\n') bare_ = true;
    ++line_len_;
    if (ch == '\n') {
      if (!prev_cr_) bare_ = true;
      if (line_len_ > max_line_) too_long_ = true;
      if (in_headers_) {
        if (line_len_ == 2 && prev_cr_) in_headers_ = false;
        else if (istarts_with(line_head_, "received:")) ++received_;
      }
      line_len_ = 0;
      line_head_.clear();
    } else if (in_headers_ && line_head_.size() < 9 && ch != '\r') {
      line_head_ += ch;
    }
    prev_cr_ = ch == '\r';
  }
  if (line_len_ > max_line_) too_long_ = true;
  size_ += bytes.size();
  if (max_size_ && size_ > max_size_) {
    if (!too_big_) {
      too_big_ = true;
      body_.discard();
    }
    return;
  }
  body_.append(bytes);
}

void MessageSink::finish() {
  if (prev_cr_) bare_ = true;
  // A message must end with CRLF; BDAT content may not. Add it (RFC 5321 4.1.1.4
  // requires the final line be terminated); DATA content always ends in CRLF here.
  if (!too_big_ && body_.size() && body_.last() != '\n') body_.append("\r\n");
  body_.finish();
}

}  // namespace bulwark::smtp
