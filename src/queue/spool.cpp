#include "queue/spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace bulwark {
namespace fs = std::filesystem;

namespace {

// Envelope fields are written as %-escaped tokens so no byte a client sent can break
// the line structure of the spool file.
std::string enc(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '%' || c == 0x7f) {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  return out.empty() ? "%" : out;  // "%" alone = empty string
}

std::string dec(std::string_view s) {
  if (s == "%") return {};
  auto hexval = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out += char(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(size_t(n));
  }
  return true;
}

std::string serialize_envelope_header(const smtp::Envelope& e, int64_t arrival, uint64_t content_size) {
  std::string h = "bulwark-spool 1\n";
  h += "id " + enc(e.id) + "\n";
  h += "arrival " + std::to_string(arrival) + "\n";
  h += "client " + enc(e.client_ip) + "\n";
  h += "helo " + enc(e.helo) + "\n";
  h += "sender " + enc(e.sender) + "\n";
  h += std::string("smtputf8 ") + (e.smtputf8 ? "1" : "0") + "\n";
  h += "tls " + enc(e.tls) + "\n";
  h += "size " + std::to_string(content_size) + "\n";
  for (auto& r : e.recipients) h += std::string("rcpt ") + (r.local ? "L " : "R ") + enc(r.rcpt) + " " + enc(r.target) + "\n";
  h += "\n";
  return h;
}

Spool::Spool(const std::string& data_dir)
    : data_dir_(data_dir),
      queue_dir_((fs::path(data_dir) / "queue").string()),
      tmp_dir_((fs::path(data_dir) / "queue.tmp").string()) {
  fs::create_directories(queue_dir_);
  fs::create_directories(tmp_dir_);
  queue_fd_ = ::open(queue_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (queue_fd_ < 0) throw std::runtime_error("cannot open " + queue_dir_ + ": " + std::strerror(errno));
}

Spool::~Spool() {
  stop();
  if (queue_fd_ >= 0) ::close(queue_fd_);
}

void Spool::start() {
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
  reap_stopping_ = false;
  reaper_ = std::thread([this] { reap(); });
}

void Spool::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard lk(reap_mu_);
    reap_stopping_ = true;
  }
  reap_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();  // every pending removal is done first
}

void Spool::remove_later(const std::string& id) {
  {
    std::lock_guard lk(reap_mu_);
    if (!reap_stopping_) {
      reap_.push_back(id);
      reap_cv_.notify_one();
      return;
    }
  }
  remove(id);
}

void Spool::reap() {
  std::unique_lock lk(reap_mu_);
  for (;;) {
    reap_cv_.wait(lk, [this] { return reap_stopping_ || !reap_.empty(); });
    if (reap_.empty() && reap_stopping_) return;
    std::deque<std::string> batch;
    batch.swap(reap_);
    lk.unlock();
    for (auto& id : batch) remove(id);
    lk.lock();
  }
}

std::string Spool::new_id() {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  uint64_t n;
  {
    std::lock_guard lk(mu_);
    n = counter_++;
  }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%013llX%05llX", (unsigned long long)us, (unsigned long long)(n & 0xFFFFF));
  return buf;
}

void Spool::submit(std::shared_ptr<smtp::Transaction> tx, Done done) {
  {
    std::lock_guard lk(mu_);
    pending_.push_back({std::move(tx), std::move(done)});
  }
  cv_.notify_one();
}

void Spool::run() {
  for (;;) {
    std::vector<Job> batch;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty() && stopping_) return;
      while (!pending_.empty() && batch.size() < 512) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    bool ok = commit_batch(batch);
    ++batches_;
    for (auto& j : batch) {
      j.done(ok);
      if (ok && committed_cb_) committed_cb_(std::move(j.tx));
    }
  }
}

bool Spool::commit_batch(std::vector<Job>& jobs) {
  int64_t now = unix_now();
  std::vector<std::string> written;
  bool ok = true;
  for (auto& j : jobs) {
    const smtp::Transaction& tx = *j.tx;
    std::string tmp = tmp_dir_ + "/" + tx.envelope.id;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      ok = false;
      break;
    }
    std::string header = serialize_envelope_header(tx.envelope, now, tx.received.size() + tx.data.size());
    bool w = write_all(fd, header) && write_all(fd, tx.received) && write_all(fd, tx.data);
    ::close(fd);
    written.push_back(tx.envelope.id);
    if (!w) {
      ok = false;
      break;
    }
  }
  // One sync for the whole batch makes every file's data durable; then the renames,
  // then one more sync makes the renames (the commit points) durable.
  if (ok && ::syncfs(queue_fd_) != 0) ok = false;
  if (ok) {
    for (auto& id : written) {
      if (::rename((tmp_dir_ + "/" + id).c_str(), (queue_dir_ + "/" + id).c_str()) != 0) {
        ok = false;
        break;
      }
    }
  }
  if (ok && ::fsync(queue_fd_) != 0) ok = false;
  if (!ok) {
    for (auto& id : written) {
      ::unlink((tmp_dir_ + "/" + id).c_str());
      ::unlink((queue_dir_ + "/" + id).c_str());
    }
  }
  return ok;
}

std::vector<std::string> Spool::list() {
  std::vector<std::string> ids;
  for (auto& e : fs::directory_iterator(queue_dir_)) {
    std::string name = e.path().filename().string();
    if (name.find('.') == std::string::npos) ids.push_back(name);
  }
  std::sort(ids.begin(), ids.end());  // ids start with the arrival time
  return ids;
}

std::optional<StoredMessage> Spool::load(const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || id.find('.') != std::string::npos) return std::nullopt;
  std::ifstream in(queue_dir_ + "/" + id, std::ios::binary);
  if (!in) return std::nullopt;
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t end = all.find("\n\n");
  if (all.rfind("bulwark-spool 1\n", 0) != 0 || end == std::string::npos) return std::nullopt;
  StoredMessage m;
  uint64_t size = 0;
  std::istringstream hs(all.substr(0, end + 1));
  std::string line;
  while (std::getline(hs, line)) {
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    std::string a, b, c;
    ls >> a >> b >> c;
    if (key == "id") m.envelope.id = dec(a);
    else if (key == "arrival") m.arrival = std::stoll(a);
    else if (key == "client") m.envelope.client_ip = dec(a);
    else if (key == "helo") m.envelope.helo = dec(a);
    else if (key == "sender") m.envelope.sender = dec(a);
    else if (key == "smtputf8") m.envelope.smtputf8 = a == "1";
    else if (key == "tls") m.envelope.tls = dec(a);
    else if (key == "size") size = std::stoull(a);
    else if (key == "rcpt") m.envelope.recipients.push_back({dec(b), dec(c), a == "L"});
  }
  m.content = all.substr(end + 2);
  if (m.content.size() != size) return std::nullopt;
  // <id>.done: one line per event. "TARGET" delivered; "F TARGET REASON" bounced;
  // "D TARGET REASON" deferred (the last one counts); "W 1" delay notice sent;
  // "R NEXT ATTEMPTS" retry schedule (the last one counts).
  std::ifstream dn(queue_dir_ + "/" + id + ".done");
  while (std::getline(dn, line)) {
    if (line.empty()) continue;
    if (line.find(' ') == std::string::npos) {
      m.done.push_back(dec(line));
      continue;
    }
    std::istringstream ls(line);
    std::string kind, a, b;
    ls >> kind >> a >> b;
    if (kind == "F") m.failed.emplace_back(dec(a), dec(b));
    else if (kind == "D") {
      std::string t = dec(a);
      std::erase_if(m.last_error, [&](auto& e) { return e.first == t; });
      m.last_error.emplace_back(t, dec(b));
    }
    else if (kind == "W") m.warned = true;
    else if (kind == "R") {
      m.next_attempt = std::atoll(a.c_str());
      m.attempts = uint32_t(std::atoll(b.c_str()));
    }
  }
  return m;
}

bool StoredMessage::finished(const std::string& target) const {
  if (std::find(done.begin(), done.end(), target) != done.end()) return true;
  for (auto& f : failed)
    if (f.first == target) return true;
  return false;
}

namespace {
void append_synced(const std::string& path, const std::string& lines) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  write_all(fd, lines);
  ::fdatasync(fd);
  ::close(fd);
}
}  // namespace

void Spool::record_delivered(const std::string& id, const std::vector<std::string>& targets) {
  std::string lines;
  for (auto& t : targets) lines += enc(t) + "\n";
  std::lock_guard lk(state_mu_);
  append_synced(queue_dir_ + "/" + id + ".done", lines);
}

void Spool::record_many(const std::vector<StateRecord>& records) {
  std::lock_guard lk(state_mu_);
  for (auto& r : records) {
    std::string lines;
    for (auto& o : r.outcomes) {
      if (o.kind == TargetOutcome::delivered) lines += enc(o.target) + "\n";
      else lines += (o.kind == TargetOutcome::failed ? "F " : "D ") + enc(o.target) + " " + enc(o.reason) + "\n";
    }
    if (r.warned) lines += "W 1\n";
    if (r.next_attempt >= 0) lines += "R " + std::to_string(r.next_attempt) + " " + std::to_string(r.attempts) + "\n";
    if (lines.empty() || !fs::exists(queue_dir_ + "/" + r.id)) continue;  // deleted meanwhile
    int fd = ::open((queue_dir_ + "/" + r.id + ".done").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) continue;
    write_all(fd, lines);
    ::close(fd);
  }
  // Not synced: the state survives a crash of the process (it is in the page cache);
  // after a power loss a message may go out once more, or a report be repeated --
  // never lost. Postfix does not sync its delivery status either.
}

bool Spool::finish_if_complete(const std::string& id) {
  std::lock_guard lk(state_mu_);
  auto m = load(id);
  if (!m) return false;
  for (auto& r : m->envelope.recipients)
    if (!m->finished(r.target)) return false;
  remove(id);
  return true;
}

void Spool::remove(const std::string& id) {
  ::unlink((queue_dir_ + "/" + id).c_str());
  ::unlink((queue_dir_ + "/" + id + ".done").c_str());
}

void Spool::recover() {
  for (auto& e : fs::directory_iterator(tmp_dir_)) fs::remove(e.path());
  for (auto& e : fs::directory_iterator(queue_dir_)) {
    std::string name = e.path().filename().string();
    if (name.size() > 5 && name.ends_with(".done") && !fs::exists(queue_dir_ + "/" + name.substr(0, name.size() - 5)))
      fs::remove(e.path());
  }
}

}  // namespace bulwark
