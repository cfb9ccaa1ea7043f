// queue/: delivery status notifications (RFC 3464): a multipart/report with a human
// part from an editable UTF-8 template, the machine-readable message/delivery-status
// part and the original message's header. Templates live in
// <data_dir>/reports/<lang>/{failed,delayed}.txt; the built-in ones (the repository's
// reports/ folder, compiled in) are installed at first start and never overwritten.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace bulwark {

struct DsnRecipient {
  std::string address;
  std::string status;      // enhanced status code, e.g. "5.1.1"
  std::string diagnostic;  // "550 5.1.1 no such user" (the remote reply) or our reason
  std::string remote_mta;  // host name, or "" when none answered
};

struct DsnInput {
  enum Kind { failed, delayed } kind = failed;
  std::string reporting_mta;  // our host name
  std::string original_sender;
  std::string original_id;
  int64_t arrival = 0;           // unix seconds
  int64_t retry_until = 0;       // delayed: when we give up
  std::vector<DsnRecipient> recipients;
  std::string original_content;  // the message as queued; only its header is attached
  std::string message_id;        // for the report's Message-ID
  std::chrono::system_clock::time_point now;
};

// Writes the built-in templates into <data_dir>/reports/ where missing.
void install_report_templates(const std::string& data_dir);
// The report, CRLF lines. Templates from <data_dir>/reports/<lang>/, falling back to
// "en" and then to the built-in text for anything missing.
std::string build_dsn(const DsnInput& in, const std::string& data_dir, const std::string& lang);

std::string rfc5322_date_of(std::chrono::system_clock::time_point tp);

}  // namespace bulwark
