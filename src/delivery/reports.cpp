#include "delivery/reports.hpp"

#include <algorithm>

#include "core/strings.hpp"
#include "logging/logs.hpp"

namespace bulwark {

Reporter::Reporter(Spool& spool, ReportSettings settings, Route route)
    : spool_(spool), s_(std::move(settings)), route_(std::move(route)) {}

void Reporter::update(ReportSettings settings) {
  std::lock_guard lk(mu_);
  s_ = std::move(settings);
}

bool Reporter::send(const StoredMessage& m, DsnInput::Kind kind, const std::vector<DsnRecipient>& recipients,
                    const std::string& original_headers, std::function<void(bool)> done) {
  const std::string& id = m.envelope.id;
  if (m.envelope.sender.empty()) {
    logs::mail().info("no report for id={}: it has the null sender", id);
    return false;
  }
  std::vector<smtp::Recipient> to = route_(m.envelope.sender);
  if (to.empty()) {
    logs::mail().info("no report for id={}: sender <{}> cannot be routed", id, sanitize(m.envelope.sender));
    return false;
  }
  ReportSettings s;
  {
    std::lock_guard lk(mu_);
    s = s_;
  }
  auto tx = std::make_shared<smtp::Transaction>();
  tx->envelope.id = spool_.new_id();
  tx->envelope.sender = "";
  tx->envelope.client_ip = "127.0.0.1";
  tx->envelope.ours = true;  // the server's own report: signed like any mail of ours
  tx->envelope.helo = s.hostname;
  tx->envelope.recipients = to;
  DsnInput in;
  in.kind = kind;
  in.reporting_mta = s.hostname;
  in.original_sender = m.envelope.sender;
  in.original_id = id;
  in.arrival = m.arrival;
  in.retry_until = m.arrival + s.bounce_after.count();
  in.recipients = recipients;
  in.original_content = original_headers;
  in.message_id = tx->envelope.id;
  in.now = std::chrono::system_clock::now();
  tx->body = MessageBody(build_dsn(in, s.data_dir, s.language));
  tx->received =
      "Received: by " + s.hostname + " (bulwark) id " + tx->envelope.id + "; " + rfc5322_date_of(in.now) + "\r\n";
  logs::mail().info("report id={} kind={} original={} to=<{}>", tx->envelope.id,
                    kind == DsnInput::failed ? "failed" : "delayed", id, sanitize(m.envelope.sender));
  spool_.submit(tx, std::move(done));
  return true;
}

void report_damaged(Reporter& reporter, const Loaded& damaged) {
  std::vector<DsnRecipient> rcpts;
  std::vector<std::string> seen;
  for (auto& r : damaged.msg.envelope.recipients) {
    if (std::find(seen.begin(), seen.end(), r.rcpt) != seen.end()) continue;
    seen.push_back(r.rcpt);
    rcpts.push_back({r.rcpt, "4.3.0",
                     "4.3.0 the queued copy of this message was damaged (" + damaged.why +
                         "); it may not have been delivered: please send it again",
                     ""});
  }
  if (rcpts.empty()) return;  // nobody to name: the log says it all
  reporter.send(damaged.msg, DsnInput::failed, rcpts, "", nullptr);
}

}  // namespace bulwark
