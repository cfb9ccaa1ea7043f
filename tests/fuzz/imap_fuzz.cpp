// libFuzzer target: the IMAP command reader (token trees, literals of every kind,
// streamed and discarded literals, bounds). The first byte picks the read size and
// the limits; invariants: nothing buffered past the text bound plus one read, the
// data of a streamed literal adds up to its announced size, and the reader never
// stops making progress while input is buffered.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "imap/parser.hpp"
#include "imap/mime.hpp"
#include "imap/session.hpp"
#include "../unit/imap_mem_folder.hpp"

using namespace bulwark::imap;

namespace {
size_t depth(const Token& t) {
  size_t d = 0;
  for (auto& i : t.items) d = std::max(d, depth(i));
  return t.kind == Token::Kind::list ? d + 1 : d;
}
}  // namespace

namespace {
struct FuzzHooks : bulwark::imap::Hooks, bulwark::auth::SecretSource {
  bulwark::auth::SecretSource& secrets() override { return *this; }
  std::optional<bulwark::auth::ScramSecret> scram_secret(const std::string& u) override {
    static const auto s = bulwark::auth::derive_scram("pencil", "salt", 1);
    if (u == "u@example.test") return s;
    return std::nullopt;
  }
  std::optional<bulwark::auth::CramSecret> cram_md5_secret(const std::string&) override { return std::nullopt; }
  bool login_blocked() override { return failures > 3; }
  void login_failed(std::string_view, const std::string&, std::string_view) override { ++failures; }
  void refused(const std::string&) override {}
  int failures = 0;
};

// A streamed APPEND goes here when the mailbox offers it (the store writes a file).
struct FuzzSink : bulwark::imap::AppendSink {
  std::map<std::string, bulwark::test::MemFolderData>* data;
  std::string folder, got;
  bool write(std::string_view d) override {
    got += d;
    return got.size() <= 4096;
  }
  std::optional<std::pair<uint32_t, uint32_t>> commit(const std::string& f, const std::vector<std::string>&, int64_t,
                                                      std::string&) override {
    (*data)[folder].add(got, f);
    return std::pair{(*data)[folder].msgs.back().ref.uid, (*data)[folder].uidvalidity};
  }
};

struct FuzzMailbox : bulwark::imap::Mailbox {
  std::vector<bulwark::imap::FolderInfo> f{{"INBOX", "", false, true, true}, {"Sent", "\\Sent", true, false, true},
                                           {"Sent/x", "", false, true, false}};
  std::vector<bulwark::imap::FolderInfo> folders() override { return f; }
  std::optional<bulwark::imap::FolderStatus> status(const std::string& n, std::string& e) override {
    if (n.size() % 2) return bulwark::imap::FolderStatus{};
    e = "[NONEXISTENT] no";
    return std::nullopt;
  }
  bool create(const std::string& n, std::string&) override {
    if (f.size() < 50) f.push_back({n, "", false, false, true});
    return true;
  }
  bool remove(const std::string& n, std::string& e) override { return n.size() % 3 ? true : (e = "no", false); }
  bool rename(const std::string&, const std::string&, std::string&) override { return true; }
  bool subscribe(const std::string&, bool, std::string&) override { return true; }
  std::map<std::string, bulwark::test::MemFolderData> data;
  FuzzMailbox() {
    data["INBOX"].add("From: a@b\r\nSubject: hi\r\n\r\nbody\r\n.\r\n", "S");
    data["INBOX"].add("Subject: x\r\n\r\n", "FT");
    data["INBOX"].add("no header at all");
    data["Sent"];
  }
  std::unique_ptr<bulwark::imap::AppendSink> begin_append(const std::string& n, std::string&) override {
    if (!data.count(n) || data[n].msgs.size() > 20) return nullptr;
    auto s = std::make_unique<FuzzSink>();
    s->data = &data;
    s->folder = n;
    return s;
  }
  std::unique_ptr<bulwark::imap::OpenFolder> open(const std::string& n, std::string& e) override {
    if (!data.count(n)) {
      e = "[NONEXISTENT] no";
      return nullptr;
    }
    return std::make_unique<bulwark::test::MemFolder>(data[n], data);
  }
  std::optional<std::pair<uint32_t, uint32_t>> append(const std::string& n, std::string_view c, const std::string& f,
                                                       const std::vector<std::string>&, int64_t, std::string& e) override {
    if (!data.count(n) || data[n].msgs.size() > 20) {
      e = "[TRYCREATE] no";
      return std::nullopt;
    }
    data[n].add(std::string(c), f);
    return std::pair{data[n].msgs.back().ref.uid, data[n].uidvalidity};
  }
};

// The session over the same input: every reply a whole CRLF line, and it never asks
// for a step its state does not allow.
void session(const uint8_t* data, size_t size) {
  using namespace bulwark;
  size_t step = data[0] % 13 + 1;
  FuzzHooks h;
  imap::Config c;
  c.hostname = "mx.example.test";
  c.starttls_available = data[0] & 1;
  c.auth.mode = data[0] & 2 ? auth::Mode::none : data[0] & 4 ? auth::Mode::encrypted : auth::Mode::secure_auth;
  c.auth.mechanisms = {auth::Mech::scram_sha_256, auth::Mech::plain, auth::Mech::login};
  c.limits.max_text = 1024;
  c.limits.max_literal = 2048;
  c.limits.max_inline_literal = data[0] & 16 ? 64 : 4096;  // APPEND streamed into a sink, or held
  imap::Session s(c, h, {"192.0.2.1", bool(data[0] & 8)});
  FuzzMailbox mb;
  auto drive = [&](imap::Output o) {
    for (int guard = 0; guard < 1000; ++guard) {
      if (!o.bytes.empty() && (o.bytes.size() < 2 || o.bytes.substr(o.bytes.size() - 2) != "\r\n")) abort();
      switch (o.next) {
        case imap::Next::read:
        case imap::Next::close:
        case imap::Next::compress: return;  // what follows would be deflate: the driver's
        case imap::Next::starttls: o = s.tls_started(); break;
        case imap::Next::verify:
          if (s.state() != imap::State::verifying) abort();
          o = s.login_finished(s.pending_login().password == "pencil");
          break;
        case imap::Next::more: o = s.resume(); break;
        case imap::Next::logged_in:
          if (s.state() != imap::State::authenticated) abort();
          s.set_mailbox(&mb);
          o = s.resume();
          break;
      }
    }
    abort();
  };
  drive(s.greet());
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  for (size_t i = 0; i < in.size() && s.state() != imap::State::logout; i += step) {
    drive(s.feed(in.substr(i, step)));
    if (s.state() == imap::State::idle && i % 3 == 0) drive(s.idle_tick());
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  session(data, size);
  {  // the input as a message: MIME structure, envelope, sections
    std::string_view msg(reinterpret_cast<const char*>(data + 1), size - 1);
    bulwark::imap::MimePart m = bulwark::imap::parse_mime(msg);
    std::string s = bulwark::imap::body_structure(m, data[0] & 1) + bulwark::imap::envelope(m.header);
    if (s.size() > 64 * size + 4096) abort();  // output bounded by input
    std::string what;
    for (const char* spec : {"1", "1.2", "2.1.MIME", "1.HEADER", "3.TEXT"}) {
      auto sec = bulwark::imap::mime_section(m, spec, what);
      if (sec && !sec->empty() && (sec->data() < msg.data() || sec->data() + sec->size() > msg.data() + msg.size())) abort();
    }
  }
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
