#include "delivery/signing.hpp"

#include <chrono>

#include "logging/logs.hpp"

namespace bulwark {

std::string dkim_fields(Spool& spool, dkim::Signer& signer, const StoredMessage& m) {
  constexpr size_t kMaxSignedHead = 1 << 20;
  try {
    Spool::Reader r(spool, m);
    std::string head;
    size_t body = std::string::npos;
    while (body == std::string::npos && r.left() > 0 && head.size() < kMaxSignedHead) {
      auto chunk = r.next(64 * 1024);
      if (!chunk || chunk->empty()) return "";
      head += *chunk;
      body = dkim::body_offset(head);
    }
    if (body == std::string::npos && r.left() > 0) return "";  // a header over 1 MiB: not signed
    std::string_view h(head);
    h = h.substr(0, body == std::string::npos ? h.size() : body - 2);
    if (h.size() >= 2 && h.substr(h.size() - 2) == "\r\n") h.remove_suffix(2);
    auto job = signer.begin(h);
    if (!job) return "";
    if (body != std::string::npos) job->body(std::string_view(head).substr(body));
    while (r.left() > 0) {
      auto chunk = r.next(64 * 1024);
      if (!chunk || chunk->empty()) return "";
      job->body(*chunk);
    }
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    return job->finish(now.count());
  } catch (const std::exception& e) {
    logs::main().error("DKIM signing of {} failed, sent unsigned: {}", m.envelope.id, e.what());
    return "";
  }
}

}  // namespace bulwark
