#include "queue/dsn.hpp"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "auth/password.hpp"
#include "queue/reports_data.hpp"

namespace fs = std::filesystem;

namespace bulwark {
namespace {

std::string builtin(const std::string& name) {
  for (auto& [n, text] : builtin_reports())
    if (n == name) return text;
  return {};
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string load_template(const std::string& data_dir, const std::string& lang, const std::string& kind) {
  for (const std::string& l : {lang, std::string("en")}) {
    std::string t = read_file(fs::path(data_dir) / "reports" / l / (kind + ".txt"));
    if (!t.empty()) return t;
  }
  std::string t = builtin(lang + "/" + kind + ".txt");
  return t.empty() ? builtin("en/" + kind + ".txt") : t;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

bool ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

// A header value that may hold UTF-8: RFC 2047 encoded-word when needed.
std::string header_text(const std::string& s) { return ascii(s) ? s : "=?UTF-8?B?" + auth::base64_encode(s) + "?="; }

// LF or CRLF text -> CRLF lines.
std::string crlf(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out += '\r';
    out += s[i];
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

std::string date_of(int64_t unix_seconds) {
  return rfc5322_date_of(std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds)));
}

}  // namespace

std::string rfc5322_date_of(std::chrono::system_clock::time_point tp) {
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

void install_report_templates(const std::string& data_dir) {
  for (auto& [name, text] : builtin_reports()) {
    fs::path p = fs::path(data_dir) / "reports" / name;
    if (fs::exists(p)) continue;  // the administrator's copy wins, edited or not
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }
}

std::string build_dsn(const DsnInput& in, const std::string& data_dir, const std::string& lang) {
  std::string kind = in.kind == DsnInput::failed ? "failed" : "delayed";
  std::string tmpl = load_template(data_dir, lang, kind);
  // First line "Subject: ...", then the body.
  std::string subject = in.kind == DsnInput::failed ? "Undelivered Mail Returned to Sender" : "Delayed Mail";
  if (tmpl.rfind("Subject:", 0) == 0) {
    size_t nl = tmpl.find('\n');
    subject = tmpl.substr(8, nl == std::string::npos ? std::string::npos : nl - 8);
    while (!subject.empty() && (subject.front() == ' ')) subject.erase(0, 1);
    while (!subject.empty() && (subject.back() == '\r' || subject.back() == ' ')) subject.pop_back();
    tmpl = nl == std::string::npos ? "" : tmpl.substr(nl + 1);
  }
  std::string list;
  for (auto& r : in.recipients) list += "  <" + r.address + ">: " + r.diagnostic + "\n";
  if (!list.empty()) list.pop_back();
  std::string body = tmpl;
  body = replace_all(body, "{hostname}", in.reporting_mta);
  body = replace_all(body, "{sender}", in.original_sender);
  body = replace_all(body, "{id}", in.original_id);
  body = replace_all(body, "{arrival}", date_of(in.arrival));
  body = replace_all(body, "{retry_until}", date_of(in.retry_until));
  body = replace_all(body, "{recipients}", list);

  std::string boundary = in.message_id + "/" + in.reporting_mta;
  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@" + in.reporting_mta + ">\r\n";
  m += "To: <" + in.original_sender + ">\r\n";
  m += "Subject: " + header_text(subject) + "\r\n";
  m += "Date: " + rfc5322_date_of(in.now) + "\r\n";
  m += "Message-ID: <" + in.message_id + "@" + in.reporting_mta + ">\r\n";
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
  m += "\r\nThis is a MIME-encapsulated delivery status notification.\r\n";
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
  m += crlf(body);
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: message/delivery-status\r\n\r\n";
  m += "Reporting-MTA: dns; " + in.reporting_mta + "\r\n";
  m += "X-Bulwark-Queue-ID: " + in.original_id + "\r\n";
  m += "Arrival-Date: " + date_of(in.arrival) + "\r\n";
  for (auto& r : in.recipients) {
    m += "\r\nFinal-Recipient: rfc822; " + r.address + "\r\n";
    m += std::string("Action: ") + (in.kind == DsnInput::failed ? "failed" : "delayed") + "\r\n";
    m += "Status: " + r.status + "\r\n";
    if (!r.remote_mta.empty()) m += "Remote-MTA: dns; " + r.remote_mta + "\r\n";
    m += "Diagnostic-Code: smtp; " + r.diagnostic + "\r\n";
    m += "Last-Attempt-Date: " + rfc5322_date_of(in.now) + "\r\n";
    if (in.kind == DsnInput::delayed) m += "Will-Retry-Until: " + date_of(in.retry_until) + "\r\n";
  }
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: text/rfc822-headers\r\n\r\n";
  size_t end = in.original_content.find("\r\n\r\n");
  m += in.original_content.substr(0, end == std::string::npos ? in.original_content.size() : end + 2);
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

}  // namespace bulwark
