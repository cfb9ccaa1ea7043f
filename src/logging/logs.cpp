#include "logging/logs.hpp"

#include <algorithm>
#include <fcntl.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include "crypt/file.hpp"
#include "crypt/records.hpp"

namespace bulwark::logs {
namespace {

// A log file. One write(2) per line on an O_APPEND descriptor, so lines from several
// threads never interleave and a reader (`tail -f`, `log show --follow`) never sees
// half a line. With a data key loaded (SPEC 13) each line is a sealed record
// (crypt/records.hpp), read with `bulwark log show`; a log that was plain before stays
// plain (an append keeps the file's form) until the conversion turns it. reopen() is
// log rotation: after logrotate renames the file, SIGHUP makes the server start a new
// one (the lines in between went to the renamed file: none is lost).
class FileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  FileSink(std::string path, bool sealed) : path_(std::move(path)), sealed_(sealed), fd_(open_file()) {}
  ~FileSink() override {
    if (fd_ >= 0) ::close(fd_);
  }
  // False when the file cannot be opened (the old one is kept, and written on).
  bool reopen() {
    std::lock_guard lk(mutex_);
    int fd = open_file();
    if (fd < 0) return false;
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    return true;
  }
  const std::string& path() const { return path_; }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    if (fd_ < 0) return;
    std::string_view text(line.data(), line.size());
    if (sealed_) {
      crypt::append_text(fd_, text, crypt::data_key());
      return;
    }
    while (!text.empty()) {
      ssize_t n = ::write(fd_, text.data(), text.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // disk full: the line is lost, the server goes on
      text.remove_prefix(size_t(n));
    }
  }
  void flush_() override {}  // every line is written when it is logged

 private:
  int open_file() const { return ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640); }
  std::string path_;
  bool sealed_;
  int fd_;
};

std::mutex mu;
std::string dir;
bool to_stderr = true;
std::shared_ptr<spdlog::logger> mail_l, security_l, main_l;
std::vector<std::shared_ptr<FileSink>> files;  // the three files, for reopen()

std::shared_ptr<spdlog::logger> make(const std::string& name, const std::string& file, bool stderr_too) {
  std::vector<spdlog::sink_ptr> sinks;
  bool sealed = !file.empty() && crypt::data_key();
  if (!file.empty()) {
    files.push_back(std::make_shared<FileSink>(file, sealed));
    sinks.push_back(files.back());
  }
  // Sealed logs are not copied to stderr (a terminal, or the system journal in the clear).
  if ((stderr_too && !sealed) || file.empty()) sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto l = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
  l->set_formatter(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %v",
                                                               spdlog::pattern_time_type::utc));
  if (name == "main") l->set_formatter(std::make_unique<spdlog::pattern_formatter>(
                          "%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc));
  l->flush_on(spdlog::level::info);
  return l;
}

void build() {
  files.clear();
  auto f = [](const char* n) { return dir.empty() ? std::string() : (std::filesystem::path(dir) / n).string(); };
  mail_l = make("mail", f("mail.log"), false);
  security_l = make("security", f("security.log"), false);
  main_l = make("main", f("bulwark.log"), to_stderr);
}

}  // namespace

void init(const std::string& log_dir, bool also_stderr) {
  std::lock_guard lk(mu);
  if (std::filesystem::create_directories(log_dir)) ::chmod(log_dir.c_str(), 0750);
  dir = log_dir;
  to_stderr = also_stderr;
  build();
  // spdlog creates the files with the process umask; existing files from older
  // versions were 0644. Group-readable is enough for log shippers.
  for (const char* n : {"mail.log", "security.log", "bulwark.log"})
    ::chmod((std::filesystem::path(dir) / n).c_str(), 0640);
}

std::optional<uint64_t> CauseThrottle::allow(const std::string& cause) {
  std::lock_guard lk(mu_);
  auto now = std::chrono::steady_clock::now();
  auto it = seen_.find(cause);
  if (it != seen_.end() && now - it->second.last < every_) {
    ++it->second.held;
    return std::nullopt;
  }
  if (it == seen_.end()) {
    if (seen_.size() >= 256)
      seen_.erase(std::min_element(seen_.begin(), seen_.end(),
                                   [](auto& a, auto& b) { return a.second.last < b.second.last; }));
    it = seen_.emplace(cause, Seen{}).first;
  }
  uint64_t held = it->second.held;
  it->second = Seen{now, 0};
  return held;
}

std::optional<uint64_t> Throttle::allow() {
  std::lock_guard lk(mu_);
  auto now = std::chrono::steady_clock::now();
  if (any_ && now - last_ < every_) {
    ++held_;
    return std::nullopt;
  }
  any_ = true;
  last_ = now;
  uint64_t held = held_;
  held_ = 0;
  return held;
}

std::once_flag default_once;

// init() runs before any thread starts; without it (admin commands) the loggers are
// built once, on first use, writing to stderr.
static spdlog::logger& get(std::shared_ptr<spdlog::logger>& l) {
  std::call_once(default_once, [] {
    std::lock_guard lk(mu);
    if (!main_l) build();
  });
  return *l;
}

void reopen() {
  std::vector<std::shared_ptr<FileSink>> now;
  {
    std::lock_guard lk(mu);
    now = files;
  }
  for (auto& f : now)
    if (!f->reopen()) main().error("cannot reopen {}: {}; still writing to the old file", f->path(), std::strerror(errno));
}

spdlog::logger& mail() { return get(mail_l); }
spdlog::logger& security() { return get(security_l); }
spdlog::logger& main() { return get(main_l); }
void flush() {
  if (mail_l) mail_l->flush();
  if (security_l) security_l->flush();
  if (main_l) main_l->flush();
}

}  // namespace bulwark::logs
