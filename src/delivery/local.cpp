#include "delivery/local.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/strings.hpp"
#include "logging/logs.hpp"

namespace bulwark {
namespace fs = std::filesystem;

std::string maildir_path(const std::string& data_dir, const std::string& mailbox_key) {
  auto escape = [](std::string_view s) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-' ||
                (c == '.' && !out.empty());
      if (ok) out += char(c);
      else {
        out += '%';
        out += hex[c >> 4];
        out += hex[c & 15];
      }
    }
    return out;
  };
  size_t at = mailbox_key.rfind('@');
  std::string local = to_lower(mailbox_key.substr(0, at));
  std::string domain = at == std::string::npos ? "" : to_lower(mailbox_key.substr(at + 1));
  return (fs::path(data_dir) / "mail" / escape(domain) / escape(local)).string();
}

LocalDelivery::LocalDelivery(Spool& spool, std::string data_dir, std::string hostname)
    : spool_(spool), data_dir_(std::move(data_dir)), hostname_(std::move(hostname)) {
  fs::create_directories(fs::path(data_dir_) / "mail");
  data_fd_ = ::open((fs::path(data_dir_) / "mail").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

LocalDelivery::~LocalDelivery() {
  stop();
  if (data_fd_ >= 0) ::close(data_fd_);
}

void LocalDelivery::start() {
  for (auto& id : spool_.list()) enqueue(id);
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void LocalDelivery::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LocalDelivery::enqueue(const std::string& id, std::shared_ptr<const smtp::Transaction> tx) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back({id, std::move(tx)});
  }
  cv_.notify_one();
}

bool LocalDelivery::idle() {
  std::lock_guard lk(mu_);
  return queue_.empty() && !busy_;
}

void LocalDelivery::run() {
  for (;;) {
    std::vector<Item> batch;
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, std::chrono::seconds(5), [&] { return stopping_ || !queue_.empty(); });
      // At shutdown the waiting local deliveries are finished first (they are quick);
      // retries and anything that fails stay spooled for the next start.
      if (stopping_ && queue_.empty()) return;
      auto now = std::chrono::steady_clock::now();
      for (auto it = retry_.begin(); !stopping_ && it != retry_.end();) {
        if (it->first <= now) {
          queue_.push_back({it->second, nullptr});
          it = retry_.erase(it);
        } else {
          ++it;
        }
      }
      while (!queue_.empty() && batch.size() < 256) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      busy_ = !batch.empty();
    }
    if (!batch.empty()) deliver_batch(batch);
    std::lock_guard lk(mu_);
    busy_ = false;
  }
}

void LocalDelivery::deliver_batch(std::vector<Item>& items) {
  struct Copy {
    std::string id, target, tmp, final_path;
    size_t size;
  };
  struct Msg {
    std::string id;
    std::vector<std::string> targets;
    bool remote_left = false;
    bool failed = false;
  };
  std::vector<Copy> copies;
  std::vector<Msg> msgs;
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;

  for (auto& item : items) {
    const std::string& id = item.id;
    std::optional<StoredMessage> m;
    if (item.tx) {
      m.emplace();
      m->envelope = item.tx->envelope;
      m->content = item.tx->received + item.tx->data;
      item.tx.reset();
    } else {
      m = spool_.load(id);
    }
    if (!m) continue;  // removed meanwhile (queue delete) or unreadable
    Msg msg{id, {}, false, false};
    std::set<std::string> seen(m->done.begin(), m->done.end());
    // Content for Maildir: our headers, then the message with CRLF -> LF (the
    // Maildir convention; lossless here because bare CR and LF were refused).
    std::string body;
    body.reserve(m->content.size() + 256);
    for (size_t i = 0; i < m->content.size(); ++i) {
      if (m->content[i] == '\r' && i + 1 < m->content.size() && m->content[i + 1] == '\n') continue;
      body += m->content[i];
    }
    for (auto& r : m->envelope.recipients) {
      if (!r.local) {
        msg.remote_left = true;
        continue;
      }
      if (!seen.insert(r.target).second) continue;
      std::string dir = maildir_path(data_dir_, r.target);
      try {
        if (!known_dirs_.count(dir)) {
          for (const char* sub : {"tmp", "new", "cur"}) fs::create_directories(fs::path(dir) / sub);
          known_dirs_.insert(dir);
        }
      } catch (const fs::filesystem_error& e) {
        logs::main().error("delivery {}: cannot create {}: {}", id, dir, e.what());
        msg.failed = true;
        continue;
      }
      std::string content = "Return-Path: <" + m->envelope.sender + ">\nDelivered-To: " + r.target + "\n" + body;
      char name[160];
      std::snprintf(name, sizeof name, "%lld.M%lldP%dQ%llu.%s,S=%zu", (long long)secs, (long long)usecs, int(getpid()),
                    (unsigned long long)++counter_, hostname_.c_str(), content.size());
      std::string tmp = dir + "/tmp/" + name;
      int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0 || !write_all(fd, content)) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        logs::main().error("delivery {}: cannot write {}: {}", id, tmp, std::strerror(errno));
        msg.failed = true;
        continue;
      }
      ::close(fd);
      copies.push_back({id, r.target, tmp, dir + "/new/" + name, content.size()});
      msg.targets.push_back(r.target);
    }
    msgs.push_back(std::move(msg));
  }
  // Same grouping as the spool: one sync for all the data, renames, one sync for them.
  if (data_fd_ >= 0 && !copies.empty() && ::syncfs(data_fd_) != 0) {
    logs::main().error("delivery: sync failed: {}", std::strerror(errno));
    for (auto& c : copies) ::unlink(c.tmp.c_str());
    std::lock_guard lk(mu_);
    for (auto& m : msgs) retry_.emplace_back(std::chrono::steady_clock::now() + std::chrono::seconds(30), m.id);
    return;
  }
  std::set<std::string> renamed_failed;
  for (auto& c : copies) {
    if (::rename(c.tmp.c_str(), c.final_path.c_str()) != 0) renamed_failed.insert(c.id + "\n" + c.target);
  }
  if (!copies.empty()) ::syncfs(data_fd_);
  for (auto& m : msgs) {
    std::vector<std::string> ok;
    for (auto& t : m.targets)
      if (!renamed_failed.count(m.id + "\n" + t)) ok.push_back(t);
    for (auto& c : copies)
      if (c.id == m.id && !renamed_failed.count(c.id + "\n" + c.target))
        logs::mail().info("delivered id={} to=<{}> relay=local mailbox={} size={}", m.id, sanitize(c.target),
                          c.final_path, c.size);
    bool all_done = !m.failed && ok.size() == m.targets.size();
    if (all_done && !m.remote_left) {
      spool_.remove_later(m.id);
    } else {
      if (!ok.empty()) spool_.record_delivered(m.id, ok);
      // Remote delivery may have finished its part already.
      if (all_done) spool_.finish_if_complete(m.id);
      if (!all_done) {
        std::lock_guard lk(mu_);
        retry_.emplace_back(std::chrono::steady_clock::now() + std::chrono::seconds(30), m.id);
      }
    }
  }
}

}  // namespace bulwark
