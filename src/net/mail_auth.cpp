#include "net/mail_auth.hpp"

#include <unistd.h>

#include <chrono>
#include <mutex>
#include <random>

#include "core/header.hpp"
#include "core/strings.hpp"

namespace bulwark {

namespace {

// An RFC 8601 value: a token, or a quoted string when it holds anything else.
std::string ar_value(std::string_view v) {
  bool token = !v.empty();
  for (char c : v)
    if (!(isalnum(static_cast<unsigned char>(c)) || std::string_view("-._@+/=").find(c) != std::string_view::npos))
      token = false;
  if (token) return std::string(v);
  std::string out = "\"";
  for (char c : sanitize(v, 100))
    if (c != '"' && c != '\\') out += c;
  return out + "\"";
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string authentication_results(const std::string& hostname, const MessageChecks& what, const CheckResults& r) {
  std::string out = "Authentication-Results: " + hostname;
  if (r.dkim && r.dkim->empty()) out += ";\r\n\tdkim=none";
  for (auto& v : r.dkim ? *r.dkim : std::vector<dkim::Verdict>{}) {
    out += ";\r\n\tdkim=" + std::string(dkim::result_name(v.result));
    if (v.result != dkim::Verdict::pass && !v.reason.empty()) out += " reason=" + ar_value(v.reason);
    if (!v.domain.empty()) out += " header.d=" + ar_value(v.domain);
    if (!v.selector.empty()) out += " header.s=" + ar_value(v.selector);
    if (!v.algorithm.empty()) out += " header.a=" + ar_value(v.algorithm);
    if (!v.b.empty()) out += " header.b=" + ar_value(v.b);
  }
  if (r.spf) {
    out += ";\r\n\tspf=" + std::string(spf::result_name(r.spf->result));
    if (!r.spf->why.empty()) out += " reason=" + ar_value(r.spf->why);
    if (what.sender.empty()) out += " smtp.helo=" + ar_value(what.helo);
    else out += " smtp.mailfrom=" + ar_value(what.sender);
  }
  if (r.dmarc) {
    const dmarc::Outcome& d = *r.dmarc;
    out += ";\r\n\tdmarc=" + std::string(dmarc::result_name(d.result));
    if (d.result == dmarc::Result::pass || d.result == dmarc::Result::fail)
      out += std::string(" (p=") + dmarc::policy_name(d.policy) + " dis=" + dmarc::policy_name(d.disposition) + ")";
    if (!d.why.empty() && d.result != dmarc::Result::fail) out += " reason=" + ar_value(d.why);
    if (!r.from_domain.empty()) out += " header.from=" + ar_value(r.from_domain);
  }
  return out + "\r\n";
}

namespace {

// SPF, one DNS answer at a time (policy/spf.hpp); bounded by the RFC's limits and,
// whatever a record does, by 200 rounds.
struct SpfRun {
  MessageChecks what;
  spf::DnsAnswers answers;
  size_t rounds = 0;
};

// What the cache has, kept in `answers` (a map: what evaluate() holds stays put).
spf::Peek from_cache(DnsChecks& dns, spf::DnsAnswers& answers) {
  return [&dns, &answers](const spf::DnsKey& key) -> const DnsResult* {
    auto hit = dns.cached(key.second, key.first);
    return hit ? &(answers[key] = std::move(*hit)) : nullptr;
  };
}

void run_spf(DnsChecks& dns, std::shared_ptr<SpfRun> st, std::function<void(spf::Outcome)> done) {
  spf::Outcome o = spf::evaluate(st->what.ip, st->what.sender, st->what.helo, st->answers, from_cache(dns, st->answers));
  if (!o.done && ++st->rounds > 200) {
    o.done = true;
    o.result = spf::Result::permerror;
    o.why = "too many DNS lookups";
  }
  if (o.done) return done(std::move(o));
  spf::DnsKey key = o.need;
  dns.cached_query(key.second, key.first, [&dns, st, done = std::move(done), key](DnsResult r) mutable {
    st->answers[key] = std::move(r);
    run_spf(dns, st, std::move(done));
  });
}

void verify_dkim(asio::thread_pool& disk, DnsChecks& dns, std::shared_ptr<smtp::Transaction> tx,
                 std::function<void(std::vector<dkim::Verdict>)> done);

// The one domain of the From: field(s), or "" (none, several fields, several domains).
std::string from_domain(std::string_view head) {
  std::string msg(head.substr(0, head.find("\r\n\r\n")));
  msg += "\r\n\r\n";
  HeaderAddresses from = header_addresses(msg, "from");
  if (from.fields != 1 || !from.ok || from.addresses.empty()) return "";
  std::string d = to_lower(from.addresses[0].domain);
  for (auto& a : from.addresses)
    if (to_lower(a.domain) != d) return "";
  return d.empty() || d[0] == '[' ? "" : d;
}

unsigned random_percent() {
  thread_local std::mt19937 gen{std::random_device{}()};
  return unsigned(std::uniform_int_distribution<int>(0, 99)(gen));
}

struct DmarcRun {
  dmarc::Input in;
  spf::DnsAnswers answers;
};

void run_dmarc(DnsChecks& dns, std::shared_ptr<DmarcRun> st, std::function<void(dmarc::Outcome)> done) {
  dmarc::Outcome o = dmarc::evaluate(st->in, st->answers, from_cache(dns, st->answers));
  if (o.done) return done(std::move(o));
  spf::DnsKey key = o.need;
  dns.cached_query(key.second, key.first, [&dns, st, done = std::move(done), key](DnsResult r) mutable {
    st->answers[key] = std::move(r);
    run_dmarc(dns, st, std::move(done));
  });
}

}  // namespace

void check_message(asio::thread_pool& disk, DnsChecks& dns, std::shared_ptr<smtp::Transaction> tx,
                   MessageChecks what, std::function<void(CheckResults)> done) {
  // Both checks at once; whichever ends last calls done.
  struct Join {
    std::mutex mu;
    CheckResults r;
    int left = 0;
    std::function<void(CheckResults)> done;
    void one_done() {
      bool last;
      {
        std::lock_guard lk(mu);
        last = --left == 0;
      }
      if (last) done(std::move(r));
    }
  };
  auto j = std::make_shared<Join>();
  j->left = int(what.dkim) + int(what.spf) + 1;
  if (what.dmarc && what.dkim && what.spf) {
    // DMARC once both are known, on their results.
    j->done = [&dns, tx, what, done = std::move(done)](CheckResults r) mutable {
      auto st = std::make_shared<DmarcRun>();
      r.from_domain = from_domain(tx->body.head());
      st->in.from_domain = r.from_domain;
      for (auto& v : *r.dkim)
        if (v.result == dkim::Verdict::pass) st->in.dkim_pass.push_back(v.domain);
      st->in.spf_pass = r.spf->result == spf::Result::pass;
      st->in.spf_domain = spf::checked_domain(what.sender, what.helo);
      st->in.random_percent = random_percent();
      auto results = std::make_shared<CheckResults>(std::move(r));
      run_dmarc(dns, st, [results, done = std::move(done)](dmarc::Outcome o) {
        results->dmarc = std::move(o);
        done(std::move(*results));
      });
    };
  } else {
    j->done = std::move(done);
  }
  if (what.spf) {
    auto st = std::make_shared<SpfRun>();
    st->what = what;
    run_spf(dns, st, [j](spf::Outcome o) {
      {
        std::lock_guard lk(j->mu);
        j->r.spf = std::move(o);
      }
      j->one_done();
    });
  }
  if (what.dkim)
    verify_dkim(disk, dns, tx, [j](std::vector<dkim::Verdict> v) {
      {
        std::lock_guard lk(j->mu);
        j->r.dkim = std::move(v);
      }
      j->one_done();
    });
  j->one_done();
}

namespace {

// A message in memory up to this size is verified on the session's own thread: its
// hashing and one RSA check (~16 us) cost less than the two thread hand-offs of going
// to the pool and back (bench/README.md, "Mail authentication"). Larger ones, and
// bodies in a file, go to the disk pool so that no big message holds an I/O thread.
constexpr uint64_t kVerifyInline = 64 * 1024;

void verify_dkim(asio::thread_pool& disk, DnsChecks& dns, std::shared_ptr<smtp::Transaction> tx,
                 std::function<void(std::vector<dkim::Verdict>)> done) {
  auto work = [&disk, &dns, tx, done = std::move(done)]() mutable {
    const MessageBody& body = tx->body;
    std::string_view head = body.head();
    size_t off = dkim::body_offset(head);
    std::string_view fields = head.substr(0, off == std::string_view::npos ? head.size() : off - 2);
    if (fields.size() >= 2 && fields.substr(fields.size() - 2) == "\r\n") fields.remove_suffix(2);
    auto v = std::make_shared<dkim::Verifier>(fields, unix_now());
    if (!v->any()) return done({});
    if (off != std::string_view::npos) {
      if (!body.spilled()) {
        v->body(std::string_view(body.memory()).substr(off));
      } else {
        std::string buf(64 * 1024, '\0');
        for (uint64_t pos = off; pos < body.size();) {
          ssize_t n = ::pread(body.fd(), buf.data(), std::min<uint64_t>(buf.size(), body.size() - pos),
                              off_t(MessageBody::kHeaderRoom + pos));
          if (n <= 0) break;  // a verdict of fail, not a stuck message
          v->body(std::string_view(buf.data(), size_t(n)));
          pos += uint64_t(n);
        }
      }
    }
    // The key records, all at once; the last answer finishes on the disk pool.
    struct Keys {
      std::mutex mu;
      std::unordered_map<std::string, dkim::KeyAnswer> answers;
      size_t left = 0;
    };
    auto names = v->key_names();
    auto keys = std::make_shared<Keys>();
    keys->left = names.size() + 1;  // +1: this loop, so that answers all from the cache finish here
    auto finish = [&disk, v, keys, done]() {
      asio::post(disk, [v, keys, done] { done(v->finish(keys->answers)); });
    };
    for (auto& name : names) {
      dns.cached_query(name, DnsType::txt, [name, keys, finish](DnsResult r) {
        dkim::KeyAnswer a;
        if (r.status == DnsResult::ok) {
          a.status = dkim::KeyAnswer::found;
          for (auto& t : r.texts)  // only DKIM key records count (RFC 6376 3.6.2.2)
            if (t.find("p=") != std::string::npos) a.texts.push_back(t);
          if (a.texts.empty()) a.status = dkim::KeyAnswer::missing;
        } else if (r.status == DnsResult::failure) {
          a.status = dkim::KeyAnswer::temporary;
        }
        bool last;
        {
          std::lock_guard lk(keys->mu);
          keys->answers[name] = std::move(a);
          last = --keys->left == 0;
        }
        if (last) finish();  // on the resolver's thread: back to the disk pool
      });
    }
    bool last;
    {
      std::lock_guard lk(keys->mu);
      last = --keys->left == 0;
    }
    if (last) done(v->finish(keys->answers));  // every key came from the cache: no second hop
  };
  if (!tx->body.spilled() && tx->body.size() <= kVerifyInline) work();
  else asio::post(disk, std::move(work));
}

}  // namespace

}  // namespace bulwark
