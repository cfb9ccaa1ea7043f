// delivery/: RemoteDelivery's queue manager -- which message is due, its attempt
// split into jobs per destination, the results recorded, reports sent. The sessions
// that carry the jobs are in remote_session.cpp; the shared state in remote_impl.hpp.
#include <fstream>
#include <future>

#include "core/metrics.hpp"
#include "core/strings.hpp"
#include "delivery/remote_impl.hpp"
#include "delivery/reports.hpp"
#include "logging/logs.hpp"
#include "queue/dsn.hpp"

namespace fs = std::filesystem;

namespace bulwark {

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string domain_of(const std::string& address) {
  size_t at = address.rfind('@');
  return at == std::string::npos ? std::string() : to_lower(address.substr(at + 1));
}

std::string duration_text(std::chrono::seconds d) {
  auto n = d.count();
  if (n % 86400 == 0) return std::to_string(n / 86400) + (n == 86400 ? " day" : " days");
  if (n % 3600 == 0) return std::to_string(n / 3600) + (n == 3600 ? " hour" : " hours");
  if (n % 60 == 0) return std::to_string(n / 60) + (n == 60 ? " minute" : " minutes");
  return std::to_string(n) + (n == 1 ? " second" : " seconds");
}

}  // namespace

void RemoteDelivery::Impl::add_record(Spool::StateRecord r, std::function<void()> then) {
  records.push_back(std::move(r));
  if (then) after_records.push_back(std::move(then));
  if (flush_posted) return;
  flush_posted = true;
  asio::post(io, [self = shared_from_this()] { self->flush_records(); });
}

void RemoteDelivery::Impl::flush_records() {
  flush_posted = false;
  if (records.empty() && after_records.empty()) return;
  auto batch = std::make_shared<std::vector<Spool::StateRecord>>(std::move(records));
  auto thens = std::move(after_records);
  records.clear();
  after_records.clear();
  disk_then(
      [this, batch] {
        spool.record_many(*batch);
        return true;
      },
      [thens = std::move(thens)](bool) {
        for (auto& f : thens) f();
      });
}

void RemoteDelivery::Impl::index_spool(const std::vector<QueueEntry>& queued) {
  for (auto& e : queued)
    if (e.remote_pending) add_entry(e.id, e.next_attempt);
  if (!entries.empty()) logs::main().info("remote delivery: {} queued message(s) picked up", entries.size());
}

void RemoteDelivery::Impl::on_tick() {
  if (stopping) return;
  // `queue retry` is noticed within 200 ms; the whole index is looked at once a second.
  fs::path p = fs::path(s.data_dir) / "retry-now";
  disk_then([p] { return take_retry_requests(p); },
            [this](std::vector<std::string> ids) {
              if (stopping) return;
              apply_retry_requests(ids);
              if (!ids.empty() || ++ticks % 5 == 0) schedule();
              tick->expires_after(std::chrono::milliseconds(200));
              tick->async_wait([self = shared_from_this()](const asio::error_code& ec) {
                if (!ec) self->on_tick();
              });
            });
}

std::vector<std::string> RemoteDelivery::Impl::take_retry_requests(const fs::path& p) {
  std::vector<std::string> ids;
  std::error_code ec;
  if (!fs::exists(p, ec)) return ids;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) ids.push_back(line);
  fs::remove(p, ec);
  return ids;
}

void RemoteDelivery::Impl::apply_retry_requests(const std::vector<std::string>& ids) {
  for (auto& id : ids) {
    if (id == "*") {
      for (auto& [k, e] : entries)
        if (!e.busy) reschedule(k, 0);
    } else if (auto it = entries.find(id); it != entries.end() && !it->second.busy) {
      reschedule(id, 0);
    }
  }
}

void RemoteDelivery::Impl::schedule() {
  if (stopping) return;
  int64_t now = unix_now();
  size_t cap = s.max_sessions * 4;  // messages held in memory at once
  while (!due.empty() && attempts < cap && due.begin()->first <= now) {
    std::string id = due.begin()->second;
    due.erase(due.begin());
    auto it = entries.find(id);
    if (it == entries.end()) continue;
    it->second.busy = true;
    ++attempts;  // counted from here: the load is part of the attempt
    bool sign = s.dkim_sign;
    disk_then([this, id] { return spool.load(id); },
              [this, id, sign](Loaded l) {
                if (!sign || l.status != Loaded::ok || !l.msg.envelope.ours) return begin_attempt(id, std::move(l));
                auto held = std::make_shared<Loaded>(std::move(l));
                disk_then(
                    [this, held] {
                      held->msg.prepend = dkim_fields(spool, signer, held->msg);
                      return true;
                    },
                    [this, id, held](bool) { begin_attempt(id, std::move(*held)); }, signing);
              });
  }
}

void RemoteDelivery::Impl::begin_attempt(const std::string& id, Loaded loaded) {
  if (loaded.status != Loaded::ok) {
    --attempts;
    entries.erase(id);                       // busy: not in `due`
    if (loaded.status == Loaded::damaged) {  // quarantined, and the sender told
      auto l = std::make_shared<Loaded>(std::move(loaded));
      disk_then(
          [this, id, l] {
            spool.quarantine(id, l->why);
            report_damaged(reporter, *l);
            return true;
          },
          [](bool) {});
    }
    return;  // missing: delivered meanwhile, or `queue delete`
  }
  auto attempt = std::make_shared<Attempt>();
  attempt->id = id;
  attempt->msg = std::make_shared<StoredMessage>(std::move(loaded.msg));
  const StoredMessage& msg = *attempt->msg;
  std::map<std::string, std::vector<std::string>> by_dest;
  std::set<std::string> seen;
  for (auto& r : msg.envelope.recipients) {
    if (r.local || msg.finished(r.target) || !seen.insert(r.target).second) continue;
    by_dest[s.relay ? std::string("relay:") + s.relay_host : domain_of(r.target)].push_back(r.target);
  }
  if (by_dest.empty()) return finish_attempt(attempt);
  if (unix_now() - msg.arrival >= s.bounce_after.count()) {
    for (auto& [d, targets] : by_dest)
      for (auto& t : targets) {
        std::string last;
        for (auto& [target, why] : msg.last_error)
          if (target == t) last = why;
        std::string text = "4.4.7 delivery time expired: not delivered within " + duration_text(s.bounce_after);
        if (!last.empty()) text += "; last error: " + last;
        Result r;
        r.target = t;
        r.kind = Result::failed;
        r.reply.code = 450;
        r.reply.text = std::move(text);
        r.reply.local = true;
        attempt->results.push_back(std::move(r));
      }
    return finish_attempt(attempt);
  }
  attempt->open_jobs = by_dest.size();
  for (auto& [d, targets] : by_dest) dests[d].jobs.push_back({attempt, targets});
  pump();
}

void RemoteDelivery::Impl::pump() {
  if (stopping) return;
  for (auto& [key, d] : dests) {
    while (!d.jobs.empty() && d.sessions < s.max_per_destination && sessions < s.max_sessions &&
           d.sessions < d.jobs.size()) {
      ++d.sessions;
      ++sessions;
      asio::co_spawn(io, session(key), asio::detached);
    }
  }
}

void RemoteDelivery::Impl::complete_job(Job& job, std::vector<Result> results) {
  auto& a = *job.attempt;
  std::vector<std::string> delivered;
  for (auto& r : results) {
    if (r.kind == Result::delivered) delivered.push_back(r.target);
    log_result(a, r);
  }
  // Recorded right away while other destinations of the message are still open: a
  // restart must not send again what a server took with 250. (The last job's
  // results go into finish_attempt's record, or the message is simply removed.)
  if (!delivered.empty() && a.open_jobs > 1) {
    Spool::StateRecord rec{a.id, {}, false, -1, 0};
    for (auto& t : delivered) rec.outcomes.push_back({TargetOutcome::delivered, t, ""});
    add_record(std::move(rec));
  }
  a.results.insert(a.results.end(), results.begin(), results.end());
  if (--a.open_jobs == 0) finish_attempt(job.attempt);
}

void RemoteDelivery::Impl::log_result(const Attempt& a, const Result& r) {
  switch (r.kind) {
    case Result::delivered:
      metrics::add("bulwark_deliveries_total", "route=\"remote\",result=\"delivered\"");
      logs::mail().info("delivered id={} to=<{}> relay={} reply=\"{}\"", a.id, sanitize(r.target), r.relay,
                        sanitize(r.reply.str(), 300));
      break;
    case Result::failed:
      metrics::add("bulwark_deliveries_total", "route=\"remote\",result=\"bounced\"");
      logs::mail().info("bounced id={} to=<{}> relay={} reason=\"{}\"", a.id, sanitize(r.target),
                        r.relay.empty() ? "none" : r.relay, sanitize(r.reply.str(), 300));
      break;
    case Result::deferred:
      metrics::add("bulwark_deliveries_total", "route=\"remote\",result=\"deferred\"");
      logs::mail().info("deferred id={} to=<{}> relay={} reason=\"{}\"", a.id, sanitize(r.target),
                        r.relay.empty() ? "none" : r.relay, sanitize(r.reply.str(), 300));
      break;
  }
}

void RemoteDelivery::Impl::finish_attempt(std::shared_ptr<Attempt> a) {
  --attempts;
  const StoredMessage& m = *a->msg;
  int64_t now = unix_now();
  std::vector<TargetOutcome> outcomes;
  std::vector<DsnRecipient> failed, deferred;
  for (auto& r : a->results) {
    DsnRecipient d{r.target, r.reply.enhanced(), r.reply.str(), r.relay.substr(0, r.relay.find('['))};
    if (r.kind == Result::failed) {
      failed.push_back(d);
      outcomes.push_back({TargetOutcome::failed, r.target, r.reply.str()});
    } else if (r.kind == Result::deferred) {
      deferred.push_back(d);
      outcomes.push_back({TargetOutcome::deferred, r.target, r.reply.str()});
    } else {
      outcomes.push_back({TargetOutcome::delivered, r.target, ""});
    }
  }
  bool warn = !deferred.empty() && !m.warned && s.warn_after.count() > 0 && now - m.arrival >= s.warn_after.count();
  int64_t next = now + s.retry_interval.count();
  auto record = [this, a, outcomes, warn, next, more = !deferred.empty()](bool dsn_ok) {
    std::vector<TargetOutcome> out = outcomes;
    if (!dsn_ok)  // no report could be queued: the failures are tried again next time
      std::erase_if(out, [](auto& o) { return o.kind == TargetOutcome::failed; });
    bool over = !more && dsn_ok;
    bool has_local = false;
    for (auto& r : a->msg->envelope.recipients) has_local |= r.local;
    if (over && !has_local) {
      // Every target is done: the message simply goes (the unlink, which can wait
      // on the disk, happens on the spool's removal thread).
      entries.erase(a->id);  // busy: not in `due`
      spool.remove_later(a->id);
      schedule();
      return;
    }
    add_record({a->id, out, warn && dsn_ok, next, a->msg->attempts + 1}, [this, a, over, next] {
      if (over) {
        // Remote work is over; if local copies are still pending, LocalDelivery ends it.
        std::string id = a->id;
        disk_then([this, id] { return spool.finish_if_complete(id); }, [](bool) {});
        entries.erase(a->id);  // busy: not in `due`
      } else {
        reschedule(a->id, next);
      }
      schedule();
    });
  };
  std::vector<std::pair<DsnInput::Kind, std::vector<DsnRecipient>>> reports;
  if (!failed.empty()) reports.push_back({DsnInput::failed, failed});
  if (warn) reports.push_back({DsnInput::delayed, deferred});
  if (reports.empty()) return record(true);
  auto pending = std::make_shared<size_t>(reports.size());
  auto all_ok = std::make_shared<bool>(true);
  ++reports_pending;  // stop() waits for the outcome to be recorded
  auto settle = [this, record](bool ok) {
    record(ok);
    --reports_pending;
  };
  // On the disk thread: the original header is read from the spool file and the
  // report's template from <data_dir>/reports/; the report is stored like any
  // message and its outcome comes back here.
  for (auto& [kind, rcpts] : reports) {
    auto done = [this, pending, all_ok, settle](bool ok) {
      asio::post(io, [pending, all_ok, settle, ok] {
        *all_ok = *all_ok && ok;
        if (--*pending == 0) settle(*all_ok);
      });
    };
    disk_then([this, a, kind = kind, rcpts = rcpts,
               done] { return reporter.send(*a->msg, kind, rcpts, spool.read_headers(*a->msg), done); },
              [pending, all_ok, settle](bool queued) {
                if (!queued && --*pending == 0) settle(*all_ok);  // null sender or no route: nothing to wait for
              });
  }
}

RemoteDelivery::RemoteDelivery(Spool& spool, Resolver& resolver, RemoteSettings settings, Reporter& reporter)
    : impl_(std::make_shared<Impl>(spool, resolver, std::move(settings), reporter)) {}

RemoteDelivery::~RemoteDelivery() { close(); }

void RemoteDelivery::start(const std::vector<QueueEntry>& queued) {
  auto impl = impl_;
  logs::crash_stacks_for(impl->disk, 1);
  logs::crash_stacks_for(impl->signing, impl->signing_threads);
  install_report_templates(impl->s.data_dir);
  asio::post(impl->io, [impl, queued] {
    impl->index_spool(queued);
    impl->on_tick();
  });
  impl->thread = std::thread([impl] {
    logs::crash_stack_for_this_thread();
    impl->io.run();
  });
}

void RemoteDelivery::stop() {
  auto impl = impl_;
  if (!impl->thread.joinable()) return;
  // Runs f on the manager's thread and waits (bounded) for its answer. The promise is
  // shared with the posted handler: a slow thread answers into a live object.
  auto ask = [&impl](auto f, std::chrono::seconds wait) {
    using T = decltype(f());
    auto p = std::make_shared<std::promise<T>>();
    auto fut = p->get_future();
    asio::post(impl->io, [p, f] { p->set_value(f()); });
    return fut.wait_for(wait) == std::future_status::ready ? std::optional<T>(fut.get()) : std::nullopt;
  };
  asio::post(impl->io, [impl] {
    impl->stopping = true;
    impl->tick->cancel();
  });
  // Sessions in the middle of a message finish it, and reports for results already
  // known are committed and recorded (bounded); sessions still resolving or
  // connecting are simply dropped: their messages stay queued.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto busy =
        ask([impl] { return impl->in_flight + impl->reports_pending + impl->disk_pending; }, std::chrono::seconds(1));
    if (busy && *busy == 0) break;
    if (std::chrono::steady_clock::now() > until) {
      logs::main().warn("remote delivery: stopping with work in flight; it is retried at the next start");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Whatever results are still waiting to be written are written now.
  ask(
      [impl] {
        impl->flush_records();
        return true;
      },
      std::chrono::seconds(5));
  for (auto wait_until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
       std::chrono::steady_clock::now() < wait_until;) {
    auto busy = ask([impl] { return impl->disk_pending; }, std::chrono::seconds(1));
    if (busy && *busy == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  impl->work.reset();
  impl->io.stop();
  impl->thread.join();
  impl->disk.join();  // its last jobs post into the stopped loop, which close() ends
  impl->signing.join();
}

void RemoteDelivery::close() {
  auto impl = impl_;
  stop();
  if (!impl->io_holder) return;
  impl->tick.reset();
  impl->work.reset();
  impl->io_holder.reset();  // the frames left in the loop go, and with them their hold on impl
}

void RemoteDelivery::reload(RemoteSettings settings) {
  auto impl = impl_;
  asio::post(impl->io, [impl, settings = std::move(settings)]() mutable {
    RemoteSettings old = impl->s;
    settings.hostname = old.hostname;  // these need a restart
    settings.data_dir = old.data_dir;
    impl->s = std::move(settings);
    try {
      impl->net.reload_tls();
    } catch (const std::exception& e) {
      impl->s = std::move(old);
      logs::main().error("reload: delivery settings kept: {}", e.what());
      return;
    }
    logs::main().info("reload: delivery settings updated");
    impl->schedule();
  });
}

void RemoteDelivery::enqueue(const std::string& id) {
  auto impl = impl_;
  asio::post(impl->io, [impl, id] {
    if (impl->stopping) return;
    impl->add_entry(id, 0);
    impl->schedule();
  });
}

void RemoteDelivery::request_retry(const std::string& data_dir, const std::string& id) {
  std::ofstream(fs::path(data_dir) / "retry-now", std::ios::app) << (id.empty() ? "*" : id) << "\n";
}

}  // namespace bulwark
