// delivery/: the insides of RemoteDelivery, shared by its two halves -- remote.cpp,
// the queue manager (the schedule, attempts, results, state records, reports), and
// remote_session.cpp, the outbound sessions (one per destination at a time: DNS,
// connections, the SMTP client). Everything runs on the manager's one loop thread but
// for what disk_then() sends to the disk or signing threads. Private to delivery/.
#pragma once
#include <algorithm>
#include <asio.hpp>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "delivery/outbound.hpp"
#include "delivery/remote.hpp"
#include "delivery/signing.hpp"

namespace bulwark {

struct RemoteDelivery::Impl : std::enable_shared_from_this<RemoteDelivery::Impl> {
  struct Result {
    std::string target;
    enum Kind { delivered, failed, deferred } kind = deferred;
    smtp::ServerReply reply;
    std::string relay;  // "host[ip]:port" or ""
  };
  struct Attempt {
    std::string id;
    std::shared_ptr<StoredMessage> msg;
    size_t open_jobs = 0;
    std::vector<Result> results;
  };
  struct Job {
    std::shared_ptr<Attempt> attempt;
    std::vector<std::string> targets;
  };
  struct Dest {
    std::deque<Job> jobs;
    size_t sessions = 0;
  };
  struct Entry {
    int64_t next = 0;
    bool busy = false;
  };
  Spool& spool;
  Resolver& resolver;
  RemoteSettings s;
  Reporter& reporter;
  // File work (loads, state records, reports, reading content) runs here, never on
  // the loop's thread: one slow disk must not stall every outbound session.
  asio::thread_pool disk{1};
  // DKIM signing is CPU work (an RSA-2048 signature ~0.3 ms): it has its own threads,
  // so that neither loads nor state records wait behind it.
  const unsigned signing_threads = std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, 4);
  asio::thread_pool signing{signing_threads};
  // The loop, owned so that close() ends it (and the session frames left in it,
  // which hold this Impl) at a stated moment; the timer and the work guard go first.
  std::unique_ptr<asio::io_context> io_holder = std::make_unique<asio::io_context>();
  asio::io_context& io = *io_holder;
  Outbound net{io, disk, spool, s};
  dkim::Signer signer{s.data_dir};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  std::optional<asio::steady_timer> tick{std::in_place, io};
  std::thread thread;
  std::map<std::string, Entry> entries;
  std::set<std::pair<int64_t, std::string>> due;  // (next attempt, id) of entries not busy

  void add_entry(const std::string& id, int64_t next) {
    auto [it, fresh] = entries.emplace(id, Entry{next, false});
    if (!fresh) return;
    due.emplace(next, id);
  }
  void reschedule(const std::string& id, int64_t next) {
    auto it = entries.find(id);
    if (it == entries.end()) return;
    if (!it->second.busy) due.erase({it->second.next, id});
    it->second.next = next;
    it->second.busy = false;
    due.emplace(next, id);
  }
  void drop_entry(const std::string& id) {
    auto it = entries.find(id);
    if (it == entries.end()) return;
    if (!it->second.busy) due.erase({it->second.next, id});
    entries.erase(it);
  }
  std::map<std::string, Dest> dests;
  size_t sessions = 0, attempts = 0;
  size_t in_flight = 0;        // sessions in the middle of a message
  size_t reports_pending = 0;  // reports handed to the spool, outcome not yet recorded
  size_t disk_pending = 0;     // jobs on the disk thread whose results are not back
  uint64_t ticks = 0;
  bool stopping = false;
  // State records waiting for one batched sync; `then` runs after it.
  std::vector<Spool::StateRecord> records;
  std::vector<std::function<void()>> after_records;
  bool flush_posted = false;
  Impl(Spool& sp, Resolver& r, RemoteSettings st, Reporter& rep)
      : spool(sp), resolver(r), s(std::move(st)), reporter(rep) {}

  // Runs f on the disk thread (or `pool`), then `then(result)` back on the loop's thread.
  template <class F, class Then>
  void disk_then(F f, Then then) {
    disk_then(std::move(f), std::move(then), disk);
  }
  template <class F, class Then>
  void disk_then(F f, Then then, asio::thread_pool& pool) {
    ++disk_pending;
    asio::post(pool, [self = shared_from_this(), f = std::move(f), then = std::move(then)]() mutable {
      auto r = f();
      asio::post(self->io, [self, then = std::move(then), r = std::move(r)]() mutable {
        --self->disk_pending;
        then(std::move(r));
      });
    });
  }

  // ---- the schedule (everything below runs on the io thread) ----

  void add_record(Spool::StateRecord r, std::function<void()> then = {});
  void flush_records();
  void index_spool(const std::vector<QueueEntry>& queued);
  void on_tick();
  static std::vector<std::string> take_retry_requests(const std::filesystem::path& p);
  void apply_retry_requests(const std::vector<std::string>& ids);
  void schedule();

  void begin_attempt(const std::string& id, Loaded loaded);
  void pump();
  void complete_job(Job& job, std::vector<Result> results);
  void log_result(const Attempt& a, const Result& r);
  void finish_attempt(std::shared_ptr<Attempt> a);

  // ---- one outbound session ----

  template <class Token>
  auto async_query(std::string name, DnsType type, Token&& token);

  struct Hosts {
    std::vector<Host> list;
    std::optional<smtp::ServerReply> permanent;  // the destination cannot be reached, ever
    smtp::ServerReply temporary{451, "4.4.3 no address found for the destination", true};
  };
  asio::awaitable<void> addresses_of(const std::string& name, Hosts& out);
  asio::awaitable<Hosts> hosts_for(const std::string& dest);
  std::optional<Job> take_job(const std::string& key);
  // `tried`: the host last connected to, "name[ip]:port" ("": none was, mail.log says relay=none).
  void fail_all(const std::string& key, const smtp::ServerReply& why, Result::Kind kind,
                const std::string& tried = "");
  asio::awaitable<void> session(std::string key);

  // One TCP connection: deliver queued jobs of `key` until none is left or it fails.
  asio::awaitable<void> connection(const std::string& key, const Host& host, uint16_t port, smtp::ServerReply& last,
                                   bool& permanent, bool& clean);
};

}  // namespace bulwark
