// delivery/: reports (RFC 3464 DSNs) to a message's sender, queued in the spool like
// any message. Remote delivery sends bounces, delay notices and expiry reports; local
// delivery sends expiry reports for mailboxes it could not write to; the start-up
// scan tells the senders of damaged queue files. Depends on queue/, logging/.
#pragma once
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "queue/dsn.hpp"
#include "queue/spool.hpp"

namespace bulwark {

struct ReportSettings {
  std::string hostname;  // Reporting-MTA, Received:, Message-ID
  std::string data_dir;  // templates in <data_dir>/reports/
  std::string language = "en";
  std::chrono::seconds bounce_after{5 * 86400};  // for Retry-Until of delay notices
};

class Reporter {
 public:
  // Where a report to `address` goes (local mailboxes and/or remote); empty = nowhere.
  using Route = std::function<std::vector<smtp::Recipient>(const std::string& address)>;

  Reporter(Spool& spool, ReportSettings settings, Route route);
  void update(ReportSettings settings);  // SIGHUP: language

  // Queues a report about `m` to its sender; `done` runs on the spool's thread once
  // the report is durable (true) or could not be stored (false). Returns false, and
  // `done` is never called, when no report goes: a null sender (never bounce a bounce)
  // or one that cannot be routed (both logged). `original_headers`: the header section
  // to attach ("" when unreadable). Reads templates: not on an I/O thread.
  bool send(const StoredMessage& m, DsnInput::Kind kind, const std::vector<DsnRecipient>& recipients,
            const std::string& original_headers, std::function<void(bool)> done);

 private:
  Spool& spool_;
  std::mutex mu_;
  ReportSettings s_;
  Route route_;
};

// A queue file that could not be read was quarantined: tells its sender, if the
// envelope said who that is, that the message was not delivered.
void report_damaged(Reporter& reporter, const Loaded& damaged);

}  // namespace bulwark
