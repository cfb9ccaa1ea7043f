#include "delivery/local.hpp"

#include "store/folders.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/strings.hpp"
#include "core/metrics.hpp"
#include "logging/logs.hpp"
#include "store/folders.hpp"

namespace bulwark {
namespace fs = std::filesystem;

namespace {

// CRLF -> LF on the way into a Maildir file (the Maildir convention; lossless here:
// bare CR and LF were refused at the door). Buffers and writes in 64 KiB pieces.
class MaildirWriter {
 public:
  explicit MaildirWriter(int fd) : file_(fd) {}
  // CRLF -> LF: runs without CR are copied whole; a CR is dropped when LF follows (a
  // CR at the end of `bytes` waits for the next piece).
  void put(std::string_view bytes) {
    if (cr_ && !bytes.empty()) {
      cr_ = false;
      if (bytes[0] != '\n') out_ += '\r';
    }
    for (size_t i = 0; i < bytes.size();) {
      const char* cr = static_cast<const char*>(std::memchr(bytes.data() + i, '\r', bytes.size() - i));
      size_t end = cr ? size_t(cr - bytes.data()) : bytes.size();
      std::string_view run = bytes.substr(i, end - i);
      out_.append(run);
      lines_ += uint64_t(std::count(run.begin(), run.end(), '\n'));
      if (!cr) break;
      i = end + 1;
      if (i == bytes.size()) cr_ = true;
      else if (bytes[i] != '\n') out_ += '\r';
    }
    if (out_.size() >= 64 * 1024) flush();
  }
  bool finish() {
    if (cr_) out_ += '\r';
    cr_ = false;
    flush();
    return file_.finish() && ok_;
  }
  uint64_t written() const { return written_; }
  // The size a POP3 or IMAP client is told: with CRLF line ends again.
  uint64_t crlf_size() const { return written_ + lines_; }

 private:
  void flush() {
    if (ok_ && !file_.write(out_)) ok_ = false;  // plain, or sealed when encryption is on
    written_ += out_.size();
    out_.clear();
  }
  crypt::FileWriter file_;
  std::string out_;
  bool cr_ = false, ok_ = true;
  uint64_t written_ = 0, lines_ = 0;
};

std::string duration_words(std::chrono::seconds d) {
  auto n = d.count();
  if (n % 86400 == 0) return std::to_string(n / 86400) + (n == 86400 ? " day" : " days");
  if (n % 3600 == 0) return std::to_string(n / 3600) + (n == 3600 ? " hour" : " hours");
  return std::to_string(n) + (n == 1 ? " second" : " seconds");
}

}  // namespace

struct LocalDelivery::Copy {
  std::string id, target, tmp, final_path;
  uint64_t size = 0;
};

struct LocalDelivery::Msg {
  std::string id;
  StoredMessage m;                                // envelope, arrival, delivery state
  std::shared_ptr<const smtp::Transaction> tx;    // the content, when it is in memory
  std::vector<std::string> targets;               // local targets to write now
  std::vector<std::pair<std::string, std::string>> errors;  // target, why not
  bool remote_left = false;
};

LocalDelivery::LocalDelivery(Spool& spool, Reporter& reporter, LocalSettings settings, Sync sync)
    : spool_(spool), reporter_(reporter), s_(std::move(settings)), sync_(std::move(sync)) {
  if (!sync_) sync_ = [](int fd) { return ::syncfs(fd); };
  fs::path mail = fs::path(s_.data_dir) / "mail";
  std::error_code ec;
  fs::create_directories(mail, ec);
  data_fd_ = ::open(mail.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // Without it no delivery could be made durable: refuse to start rather than pretend.
  if (data_fd_ < 0) throw std::runtime_error("cannot open the mailbox directory " + mail.string() + ": " + std::strerror(errno));
}

LocalDelivery::~LocalDelivery() {
  stop();
  if (data_fd_ >= 0) ::close(data_fd_);
}

void LocalDelivery::start(const std::vector<QueueEntry>& queued) {
  for (auto& e : queued)
    if (e.local_pending || !e.remote_pending) enqueue(e.id);
  stopping_ = false;
  thread_ = std::thread([this] {
    logs::crash_stack_for_this_thread();
    run();
  });
}

void LocalDelivery::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LocalDelivery::update(LocalSettings settings) {
  std::lock_guard lk(mu_);
  s_.retry = settings.retry;
  s_.bounce_after = settings.bounce_after;
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
      cv_.wait_for(lk, std::chrono::seconds(1), [&] { return stopping_ || !queue_.empty(); });
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

bool LocalDelivery::prepare(Item& item, Msg& msg) {
  msg.id = item.id;
  if (item.tx && !item.tx->body.spilled()) {
    msg.tx = std::move(item.tx);
    msg.m.envelope = msg.tx->envelope;
    msg.m.arrival = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  } else {
    item.tx.reset();
    Loaded l = spool_.load(item.id);
    if (l.status == Loaded::missing) return false;  // removed meanwhile (queue delete)
    if (l.status == Loaded::damaged) {
      spool_.quarantine(item.id, l.why);
      report_damaged(reporter_, l);
      return false;
    }
    msg.m = std::move(l.msg);
  }
  std::set<std::string> seen(msg.m.done.begin(), msg.m.done.end());
  for (auto& r : msg.m.envelope.recipients) {
    if (!r.local) {
      msg.remote_left = true;
      continue;
    }
    if (!msg.m.finished(r.target) && seen.insert(r.target).second) msg.targets.push_back(r.target);
  }
  return true;
}

bool LocalDelivery::ensure_maildir(const std::string& dir, std::string& error) {
  {
    std::lock_guard lk(dirs_mu_);
    if (known_dirs_.count(dir)) return true;
  }
  std::error_code ec;
  for (const char* sub : {"tmp", "new", "cur"}) {
    fs::create_directories(fs::path(dir) / sub, ec);
    if (ec) {
      error = "cannot create " + (fs::path(dir) / sub).string() + ": " + ec.message();
      return false;
    }
  }
  std::lock_guard lk(dirs_mu_);
  known_dirs_.insert(dir);
  return true;
}

bool LocalDelivery::write_copy(const Msg& msg, const std::string& target, Copy& copy, std::string& error) {
  std::string dir = maildir_path(s_.data_dir, target);
  bool known;
  {
    std::lock_guard lk(dirs_mu_);
    known = known_dirs_.count(dir) > 0;
  }
  if (!known && !store::note_mailbox_owner(dir, target, error)) return false;
  if (msg.m.envelope.junk) dir = store::folder_dir(dir, "Junk");  // DMARC quarantine
  if (!ensure_maildir(dir, error)) return false;
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  char name[160];
  std::snprintf(name, sizeof name, "%lld.M%06lldP%dQ%llu.%s", (long long)secs, (long long)usecs, int(getpid()),
                (unsigned long long)++counter_, s_.hostname.c_str());
  std::string tmp = dir + "/tmp/" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ENOENT) {  // the Maildir was removed since we last saw it
    {
      std::lock_guard lk(dirs_mu_);
      known_dirs_.erase(dir);
    }
    if (!ensure_maildir(dir, error)) return false;
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  if (fd < 0) {
    error = "cannot write " + tmp + ": " + std::strerror(errno);
    return false;
  }
  MaildirWriter w(fd);
  w.put("Return-Path: <" + msg.m.envelope.sender + ">\r\nDelivered-To: " + target + "\r\n");
  bool read_ok = true;
  if (msg.tx) {
    w.put(msg.tx->received);
    const MessageBody& b = msg.tx->body;
    if (!b.spilled()) w.put(b.memory());
    std::string piece;  // a large body (write-once): from its spill file, in pieces
    for (uint64_t at = 0; read_ok && b.spilled() && at < b.size();) {
      piece.resize(size_t(std::min<uint64_t>(b.size() - at, 64 * 1024)));
      ssize_t n = ::pread(b.fd(), piece.data(), piece.size(), off_t(MessageBody::kHeaderRoom + at));
      if (n < 0 && errno == EINTR) continue;
      read_ok = n > 0;
      if (read_ok) w.put(std::string_view(piece.data(), size_t(n)));
      at += read_ok ? uint64_t(n) : 0;
    }
  } else {
    Spool::Reader r(spool_, msg.m);
    while (read_ok && r.left() > 0) {
      auto chunk = r.next();
      if (chunk) w.put(*chunk);
      else read_ok = false;
    }
  }
  bool ok = w.finish();
  int saved = errno;
  ok = (::close(fd) == 0) && ok;
  if (!ok || !read_ok) {
    ::unlink(tmp.c_str());
    error = read_ok ? "cannot write " + tmp + ": " + std::strerror(saved) : "the message could not be read";
    return false;
  }
  copy = {msg.id, target, tmp, dir + "/new/" + name + ",S=" + std::to_string(w.written()) + ",W=" + std::to_string(w.crlf_size()), w.written()};
  return true;
}

bool LocalDelivery::write(const smtp::Transaction& tx, std::vector<DirectCopy>& out) {
  if (pg_) return false;
  Msg msg;
  msg.id = tx.envelope.id;
  msg.m.envelope = tx.envelope;
  // Not owned: the spool's job holds the transaction until the commit is over.
  msg.tx = std::shared_ptr<const smtp::Transaction>(std::shared_ptr<const smtp::Transaction>(), &tx);
  std::set<std::string> seen;
  for (auto& r : tx.envelope.recipients) {
    if (!r.local) return false;
    if (seen.insert(r.target).second) msg.targets.push_back(r.target);
  }
  out.clear();
  for (auto& t : msg.targets) {
    Copy c;
    std::string why;
    if (!write_copy(msg, t, c, why)) {  // the spool's way retries it, and says why then
      for (auto& d : out) ::unlink(d.tmp.c_str());
      out.clear();
      return false;
    }
    out.push_back({t, std::move(c.tmp), std::move(c.final_path), c.size});
  }
  return !out.empty();
}

int LocalDelivery::sync_mailboxes(int spool_fd) {
  struct stat a{}, b{};
  if (::fstat(spool_fd, &a) == 0 && ::fstat(data_fd_, &b) == 0 && a.st_dev == b.st_dev) return 0;
  return sync_(data_fd_);
}

void LocalDelivery::delivered(const smtp::Transaction& tx, const std::vector<DirectCopy>& copies) {
  for (auto& c : copies) {
    metrics::add("bulwark_deliveries_total", "route=\"local\",result=\"delivered\"");
    logs::mail().info("delivered id={} to=<{}> relay=local mailbox={} size={} (at the end of data)", tx.envelope.id,
                      sanitize(c.target), c.final_path, c.size);
  }
}

void LocalDelivery::deliver_batch_pg(std::vector<Msg>& msgs) {
  for (auto& m : msgs) {
    std::string body;
    if (m.tx) {
      body = m.tx->received;
      body += m.tx->body.memory();
    } else {
      Spool::Reader r(spool_, m.m);
      bool read_ok = true;
      while (read_ok && r.left() > 0) {
        auto chunk = r.next();
        if (chunk) body += *chunk;
        else read_ok = false;
      }
      if (!read_ok) {
        for (auto& t : m.targets) m.errors.emplace_back(t, "the queue file could not be read");
        settle(m, {});
        continue;
      }
    }
    std::set<std::string> ok;
    for (auto& t : m.targets) {
      std::string head = "Return-Path: <" + m.m.envelope.sender + ">\r\nDelivered-To: " + t + "\r\n";
      std::string why;
      // The origin: the queue id, which names the node that accepted the message (so a
      // node that took it over finds the copies the first one made); an id of a
      // single-machine spool (no node in it) gets this node's name in front.
      std::string origin = m.id.find('-') != std::string::npos ? m.id : node_ + "/" + m.id;
      if (!pg_->deliver(t, m.m.envelope.junk, head, body, why, origin)) {
        m.errors.emplace_back(t, "mail store: " + why);
        continue;
      }
      ok.insert(t);
      metrics::add("bulwark_deliveries_total", "route=\"local\",result=\"delivered\"");
      logs::mail().info("delivered id={} to=<{}> relay=local mailbox={}{} size={}", m.id, sanitize(t),
                        m.m.envelope.junk ? "Junk" : "INBOX", " (PostgreSQL)", head.size() + body.size());
    }
    settle(m, ok);
  }
}

void LocalDelivery::deliver_batch(std::vector<Item>& items) {
  std::vector<Msg> msgs;
  std::vector<Copy> copies;
  if (pg_) {
    for (auto& item : items) {
      Msg msg;
      if (prepare(item, msg)) msgs.push_back(std::move(msg));
    }
    return deliver_batch_pg(msgs);
  }
  for (auto& item : items) {
    Msg msg;
    if (!prepare(item, msg)) continue;
    for (auto& t : msg.targets) {
      Copy c;
      std::string why;
      if (write_copy(msg, t, c, why)) copies.push_back(std::move(c));
      else msg.errors.emplace_back(t, why);
    }
    msgs.push_back(std::move(msg));
  }
  auto retry_all = [&](const char* what) {
    logs::main().error("local delivery: {} failed ({}); {} message(s) stay queued and are tried again", what,
                       std::strerror(errno), msgs.size());
    std::lock_guard lk(mu_);
    for (auto& m : msgs) retry_.emplace_back(std::chrono::steady_clock::now() + s_.retry, m.id);
  };
  // Same grouping as the spool: one sync for all the data, renames, one sync for
  // them. Only a sync that succeeded makes a delivery done.
  if (!copies.empty() && sync_(data_fd_) != 0) {
    for (auto& c : copies) ::unlink(c.tmp.c_str());
    return retry_all("sync of the new mailbox files");
  }
  std::set<std::string> renamed;  // id + "\n" + target
  for (auto& c : copies) {
    if (::rename(c.tmp.c_str(), c.final_path.c_str()) == 0) {
      renamed.insert(c.id + "\n" + c.target);
      continue;
    }
    std::string why = "cannot move into " + c.final_path + ": " + std::strerror(errno);
    ::unlink(c.tmp.c_str());
    for (auto& m : msgs)
      if (m.id == c.id) m.errors.emplace_back(c.target, why);
  }
  // If this one fails the copies are in new/ but not known durable: the messages stay
  // queued and are delivered again (a duplicate is possible, a loss is not).
  if (!copies.empty() && sync_(data_fd_) != 0) return retry_all("sync after moving into new/");
  for (auto& c : copies)
    if (renamed.count(c.id + "\n" + c.target)) {
      metrics::add("bulwark_deliveries_total", "route=\"local\",result=\"delivered\"");
      logs::mail().info("delivered id={} to=<{}> relay=local mailbox={} size={}", c.id, sanitize(c.target),
                        c.final_path, c.size);
    }
  // The copies are durable: record them all at once, then one sync -- a kill between a
  // copy and its record repeats that copy at the restart, so the records follow at once.
  bool unsynced = false;
  for (auto& m : msgs) {
    std::set<std::string> ok;
    for (auto& t : m.targets)
      if (renamed.count(m.id + "\n" + t)) ok.insert(t);
    settle(m, ok, &unsynced);
  }
  if (unsynced && spool_.sync_state() != 0)
    logs::main().error("local delivery: cannot sync the queue's delivery state: {} (after a power cut a message "
                       "may be delivered again)", std::strerror(errno));
}

void LocalDelivery::settle(Msg& m, const std::set<std::string>& ok, bool* unsynced) {
  bool all_done = m.errors.empty();
  if (all_done && !m.remote_left) {
    spool_.remove_later(m.id);
    return;
  }
  if (!ok.empty()) {
    spool_.record_delivered(m.id, std::vector<std::string>(ok.begin(), ok.end()), unsynced == nullptr);
    if (unsynced) *unsynced = true;
  }
  // Remote delivery may have finished its part already.
  if (all_done) {
    spool_.finish_if_complete(m.id);
    return;
  }
  auto age = std::chrono::seconds(std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::system_clock::now().time_since_epoch()).count() - m.m.arrival);
  std::chrono::seconds bounce_after, retry;
  {
    std::lock_guard lk(mu_);
    bounce_after = s_.bounce_after;
    retry = s_.retry;
  }
  if (age >= bounce_after) return bounce(m, m.errors);
  for (auto& [t, why] : m.errors) {
    metrics::add("bulwark_deliveries_total", "route=\"local\",result=\"deferred\"");
    logs::mail().info("deferred id={} to=<{}> relay=local reason=\"{}\"", m.id, sanitize(t), sanitize(why, 300));
  }
  std::lock_guard lk(mu_);
  retry_.emplace_back(std::chrono::steady_clock::now() + retry, m.id);
}

void LocalDelivery::bounce(const Msg& m, const std::vector<std::pair<std::string, std::string>>& targets) {
  std::vector<DsnRecipient> rcpts;
  Spool::StateRecord rec{m.id, {}, false, -1, 0};
  std::chrono::seconds after;
  {
    std::lock_guard lk(mu_);
    after = s_.bounce_after;
  }
  for (auto& [t, why] : targets) {
    std::string text = "4.4.7 local delivery failed for " + duration_words(after) + "; last error: " + why;
    rcpts.push_back({t, "4.4.7", text, ""});
    rec.outcomes.push_back({TargetOutcome::failed, t, text});
    metrics::add("bulwark_deliveries_total", "route=\"local\",result=\"bounced\"");
    logs::mail().info("bounced id={} to=<{}> relay=local reason=\"{}\"", m.id, sanitize(t), sanitize(text, 300));
  }
  std::string headers = m.tx ? m.tx->received + std::string(m.tx->body.head()) : spool_.read_headers(m.m);
  if (size_t e = headers.find("\r\n\r\n"); e != std::string::npos) headers.resize(e + 2);
  // The failure is recorded once the report is stored (on the spool's thread).
  Spool& spool = spool_;
  auto record = [&spool, rec] {
    spool.record_many({rec});
    spool.finish_if_complete(rec.id);
  };
  if (!reporter_.send(m.m, DsnInput::failed, rcpts, headers, [record](bool) { record(); })) record();
}

}  // namespace bulwark
