// net/: COMPRESS=DEFLATE (RFC 4978) for a connection: raw deflate (no zlib header) in
// both directions. Output is flushed (Z_SYNC_FLUSH) at the end of every write, so a
// client sees each response whole. Bounded: about 300 KiB of zlib state per session,
// and inflate hands its output on in pieces of at most `max_out` bytes, so a small
// hostile input cannot make a large buffer (the session's own bounds then apply).
#pragma once
#include <zlib.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark {

class Deflate {
 public:
  Deflate();
  ~Deflate();
  Deflate(const Deflate&) = delete;
  Deflate& operator=(const Deflate&) = delete;
  bool ok() const { return ok_; }
  // `plain` compressed, flushed so that the peer can decompress all of it now.
  std::string compress(std::string_view plain);
  // Inflates from `in`, at most `max_out` bytes of output; `consumed` says how much of
  // `in` it took. nullopt: the stream is not deflate (the connection should end).
  std::optional<std::string> inflate(std::string_view in, size_t& consumed, size_t max_out);
  // True when the last inflate stopped at max_out: more output may come without input.
  bool output_pending() const { return pending_; }

 private:
  z_stream out_{}, in_{};
  bool ok_ = false, pending_ = false;
};

}  // namespace bulwark
