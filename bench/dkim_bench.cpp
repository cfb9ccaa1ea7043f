// DKIM signing and verification per core (Google Benchmark): a 4 KiB and a 100 KiB
// message, RSA-2048 and Ed25519, relaxed/relaxed, as the server signs (dkim::Signer)
// and verifies (dkim::Verifier). Built with -DBULWARK_BENCH=ON; bench/compare.sh runs it.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "dkim/dkim.hpp"

using namespace bulwark;

namespace {

struct Keys {
  std::string dir;
  std::string rsa_record, ed_record;
  Keys() {
    char tmpl[] = "/tmp/bulwark-dkim-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    rsa_record = dkim::record_value(dkim::keygen(dir + "/rsa", "bench.test", "r", dkim::Algorithm::rsa2048));
    ed_record = dkim::record_value(dkim::keygen(dir + "/ed", "bench.test", "e", dkim::Algorithm::ed25519));
  }
  ~Keys() { std::filesystem::remove_all(dir); }
};

Keys& keys() {
  static Keys k;
  return k;
}

std::string message(size_t body) {
  std::string m =
      "From: Sender <s@bench.test>\r\nTo: u@example.test\r\nSubject: benchmark\r\n"
      "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b@bench.test>\r\nMIME-Version: 1.0\r\n\r\n";
  while (m.size() < body) m += "The quick brown fox jumps over the lazy dog, again and again.  \r\n";
  return m;
}

void sign(benchmark::State& st, const char* which) {
  dkim::Signer signer(keys().dir + "/" + which);
  std::string m = message(size_t(st.range(0)));
  for (auto _ : st) benchmark::DoNotOptimize(signer.sign(m, 1700000000));
  st.SetItemsProcessed(st.iterations());
}

void verify(benchmark::State& st, const char* which) {
  dkim::Signer signer(keys().dir + "/" + which);
  std::string m = message(size_t(st.range(0)));
  std::string signed_msg = signer.sign(m, 1700000000) + m;
  bool ed = std::string(which) == "ed";
  std::unordered_map<std::string, dkim::KeyAnswer> answers{
      {std::string(ed ? "e" : "r") + "._domainkey.bench.test",
       {dkim::KeyAnswer::found, {ed ? keys().ed_record : keys().rsa_record}}}};
  size_t body = dkim::body_offset(signed_msg);
  std::string_view head = std::string_view(signed_msg).substr(0, body - 4);
  for (auto _ : st) {
    dkim::Verifier v(head, 1700000000);
    v.body(std::string_view(signed_msg).substr(body));
    auto r = v.finish(answers);
    if (r.empty() || r[0].result != dkim::Verdict::pass) st.SkipWithError("did not verify");
  }
  st.SetItemsProcessed(st.iterations());
}

}  // namespace

BENCHMARK_CAPTURE(sign, rsa2048, "rsa")->Arg(4096)->Arg(100 * 1024);
BENCHMARK_CAPTURE(sign, ed25519, "ed")->Arg(4096)->Arg(100 * 1024);
BENCHMARK_CAPTURE(verify, rsa2048, "rsa")->Arg(4096)->Arg(100 * 1024);
BENCHMARK_CAPTURE(verify, ed25519, "ed")->Arg(4096)->Arg(100 * 1024);
BENCHMARK_MAIN();
