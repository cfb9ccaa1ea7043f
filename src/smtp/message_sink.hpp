#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "core/body.hpp"

namespace bulwark::smtp {

// Collects the bytes of one message (already dot-unstuffed for DATA, raw for
// BDAT) and checks what RFC 5321/5322 and our limits require of them: only CRLF
// line endings, text lines of at most `max_line` octets, total size, and the
// number of Received: header fields (mail loop detection). The bytes go into a
// MessageBody: in memory, or streamed to a file when `spill` says so.
// `authserv_id` (our hostname): Authentication-Results: header fields that claim it
// are forged (only we may write them) and are dropped on the way in (RFC 8601 5).
class MessageSink {
 public:
  MessageSink(uint64_t max_size, size_t max_line, const BodySpill* spill = nullptr, std::string authserv_id = "")
      : max_size_(max_size), max_line_(max_line), body_(spill), authserv_id_(std::move(authserv_id)) {}

  void append(std::string_view bytes);
  // Call once at the end of the message.
  void finish();

  bool bare_cr_lf() const { return bare_; }
  bool line_too_long() const { return too_long_; }
  bool too_big() const { return too_big_; }
  uint64_t size() const { return size_; }
  size_t received_count() const { return received_; }
  size_t dropped_results() const { return dropped_; }  // forged Authentication-Results removed
  MessageBody& body() { return body_; }

 private:
  uint64_t max_size_;
  size_t max_line_;
  MessageBody body_;
  uint64_t size_ = 0;
  size_t line_len_ = 0;  // octets of the current line including its CRLF so far
  bool prev_cr_ = false;
  bool bare_ = false, too_long_ = false, too_big_ = false;
  bool in_headers_ = true;
  std::string line_;       // the current header line, held until its end (bounded by max_line)
  bool dropping_ = false;  // inside a forged Authentication-Results field
  bool pending_ar_ = false;  // an A-R field whose first line had no authserv-id: decided at the next line
  std::string pending_line_;
  std::string authserv_id_;
  size_t received_ = 0, dropped_ = 0;

  void header_line_done();
  void store(std::string_view bytes);
};

}  // namespace bulwark::smtp
