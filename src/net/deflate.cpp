#include "net/deflate.hpp"

namespace bulwark {

Deflate::Deflate() {
  // windowBits -15: raw deflate with a 32 KiB window (RFC 4978 requires the reader to
  // take 32 KiB; for writing we use it too, for the ratio); memLevel 8: zlib's default.
  ok_ = deflateInit2(&out_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  if (ok_ && inflateInit2(&in_, -15) != Z_OK) {
    deflateEnd(&out_);
    ok_ = false;
  }
}

Deflate::~Deflate() {
  if (!ok_) return;
  deflateEnd(&out_);
  inflateEnd(&in_);
}

std::string Deflate::compress(std::string_view plain) {
  std::string out;
  out_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  out_.avail_in = uInt(plain.size());
  char buf[16384];
  do {
    out_.next_out = reinterpret_cast<Bytef*>(buf);
    out_.avail_out = sizeof buf;
    deflate(&out_, Z_SYNC_FLUSH);
    out.append(buf, sizeof buf - out_.avail_out);
  } while (out_.avail_out == 0 || out_.avail_in > 0);
  return out;
}

std::optional<std::string> Deflate::inflate(std::string_view in, size_t& consumed, size_t max_out) {
  std::string out(max_out, '\0');
  in_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  in_.avail_in = uInt(in.size());
  in_.next_out = reinterpret_cast<Bytef*>(out.data());
  in_.avail_out = uInt(max_out);
  int rc = ::inflate(&in_, Z_SYNC_FLUSH);
  consumed = in.size() - in_.avail_in;
  if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) return std::nullopt;
  out.resize(max_out - in_.avail_out);
  pending_ = in_.avail_out == 0;
  return out;
}

}  // namespace bulwark
