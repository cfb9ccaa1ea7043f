// libFuzzer target: the IMAP command reader (token trees, literals of every kind,
// streamed and discarded literals, bounds). The first byte picks the read size and
// the limits; invariants: nothing buffered past the text bound plus one read, the
// data of a streamed literal adds up to its announced size, and the reader never
// stops making progress while input is buffered.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "imap/parser.hpp"

using namespace bulwark::imap;

namespace {
size_t depth(const Token& t) {
  size_t d = 0;
  for (auto& i : t.items) d = std::max(d, depth(i));
  return t.kind == Token::Kind::list ? d + 1 : d;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t step = data[0] % 31 + 1;
  Limits lim;
  lim.max_text = 512;
  lim.max_inline_literal = data[0] & 1 ? 8 : 64;
  lim.max_literal = 300;
  lim.max_depth = 6;
  lim.max_tokens = 200;
  lim.literal_minus = data[0] & 2;
  Reader r(lim);
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  uint64_t streaming = 0;
  for (size_t i = 0; i < in.size(); i += step) {
    r.feed(in.substr(i, step));
    for (int guard = 0;; ++guard) {
      if (guard > 100000) abort();
      auto e = r.next();
      using K = Reader::Event::Kind;
      if (e.kind == K::none) break;
      if (e.kind == K::literal_begin) {
        if (streaming || e.size <= lim.max_inline_literal || e.size > lim.max_literal) abort();
        streaming = e.size;
      }
      if (e.kind == K::literal_data) {
        if (e.data.empty() || e.data.size() > streaming) abort();
        streaming -= e.data.size();
      }
      if (e.kind == K::command) {
        if (streaming) abort();
        if (e.cmd.tag.empty() || e.cmd.name.empty() || e.cmd.args.size() > lim.max_tokens) abort();
        for (auto& a : e.cmd.args)
          if (depth(a) > lim.max_depth) abort();
      }
      if (e.kind == K::error && e.reason.empty()) abort();
    }
    if (r.buffered() > lim.max_text + step + 2) abort();
  }
  return 0;
}
