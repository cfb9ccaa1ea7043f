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
#include <charconv>
#include <fstream>
#include <sstream>

#include "core/strings.hpp"
#include "crypt/records.hpp"
#include "queue/tokens.hpp"
#include "logging/logs.hpp"

namespace bulwark {
namespace fs = std::filesystem;

namespace {

bool has_8bit(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return true;
  return false;
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

std::vector<std::string_view> tokens(std::string_view line) {
  std::vector<std::string_view> t;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string_view::npos) sp = line.size();
    if (sp > pos) t.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  return t;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string serialize_envelope_header(const smtp::Envelope& e, int64_t arrival, uint64_t content_size,
                                      bool eight_bit) {
  std::string h = "bulwark-spool 1\n";
  h += "id " + enc_token(e.id) + "\n";
  h += "arrival " + std::to_string(arrival) + "\n";
  h += "client " + enc_token(e.client_ip) + "\n";
  h += "helo " + enc_token(e.helo) + "\n";
  h += "sender " + enc_token(e.sender) + "\n";
  h += std::string("smtputf8 ") + (e.smtputf8 ? "1" : "0") + "\n";
  h += std::string("8bit ") + (eight_bit ? "1" : "0") + "\n";
  h += "tls " + enc_token(e.tls) + "\n";
  if (e.ours) h += "ours 1\n";
  if (e.junk) h += "junk 1\n";
  h += "size " + std::to_string(content_size) + "\n";
  for (auto& r : e.recipients) h += std::string("rcpt ") + (r.local ? "L " : "R ") + enc_token(r.rcpt) + " " + enc_token(r.target) + "\n";
  return h;
}

Spool::Spool(const std::string& data_dir, uint64_t memory_limit)
    : data_dir_(data_dir),
      queue_dir_((fs::path(data_dir) / "queue").string()),
      tmp_dir_((fs::path(data_dir) / "queue.tmp").string()),
      quarantine_dir_((fs::path(data_dir) / "quarantine").string()),
      budget_(memory_limit) {
  spill_.dir = tmp_dir_;
  spill_.budget = &budget_;
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
  thread_ = std::thread([this] {
    logs::crash_stack_for_this_thread();
    run();
  });
  reap_stopping_ = false;
  reaper_ = std::thread([this] {
    logs::crash_stack_for_this_thread();
    reap();
  });
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

void Spool::remove_later(const std::string& id, bool finished) {
  {
    std::lock_guard lk(reap_mu_);
    if (!reap_stopping_) {
      reap_.emplace_back(id, finished);
      reap_cv_.notify_one();
      return;
    }
  }
  if (finished && ledger_) ledger_->finished(id);
  remove(id);
}

void Spool::reap() {
  std::unique_lock lk(reap_mu_);
  for (;;) {
    reap_cv_.wait(lk, [this] { return reap_stopping_ || !reap_.empty(); });
    if (reap_.empty() && reap_stopping_) return;
    std::deque<std::pair<std::string, bool>> batch;
    batch.swap(reap_);
    lk.unlock();
    // Cluster mode: a finished message leaves the cluster's queue first (when that
    // cannot be recorded now, the next heartbeat finds it and ends it then).
    for (auto& [id, finished] : batch) {
      if (finished && ledger_) ledger_->finished(id);
      remove(id);
    }
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
  return buf + id_suffix_;
}

void Spool::set_ledger(QueueLedger* ledger, const std::string& node) {
  ledger_ = ledger;
  // An id is a file name without '.' (load() refuses one): the node's dots become '_'.
  id_suffix_ = "-" + node;
  std::replace(id_suffix_.begin(), id_suffix_.end(), '.', '_');
}

void Spool::submit(std::shared_ptr<smtp::Transaction> tx, Done done) {
  {
    std::lock_guard lk(mu_);
    pending_.push_back({std::move(tx), std::move(done), false, {}});
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
      if (j.done) j.done(ok);
      if (ok && j.direct) direct_->delivered(*j.tx, j.copies);  // nothing left to deliver
      else if (ok && committed_cb_) committed_cb_(std::move(j.tx));
    }
  }
}

// Writes one message into queue.tmp/ (returns its path there). A spilled body is
// already there: its header goes into the room at the front of its own file -- the
// header lines, a "pad" line that fills the room exactly, the empty line, then the
// Received: field, so that the message proper starts where it was streamed to.
bool Spool::write_job(const smtp::Transaction& tx, int64_t now, std::string& tmp_path) {
  const MessageBody& body = tx.body;
  uint64_t content = tx.received.size() + body.size();
  std::string header = serialize_envelope_header(tx.envelope, now, content, body.eight_bit() || has_8bit(tx.received));
  if (crypt::data_key()) return write_sealed(tx, header, tmp_path);
  if (body.spilled()) {
    size_t fixed = header.size() + 1 + tx.received.size();  // + the empty line
    const size_t room = MessageBody::kHeaderRoom;
    if (fixed + 5 <= room) {  // "pad \n" is the shortest pad line
      std::string prefix = header + "pad " + std::string(room - fixed - 5, '.') + "\n\n" + tx.received;
      tmp_path = body.path();
      for (size_t off = 0; off < prefix.size();) {
        ssize_t n = ::pwrite(body.fd(), prefix.data() + off, prefix.size() - off, off_t(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += size_t(n);
      }
      return true;
    }
    // A header too large for the room (thousands of recipients): copy into a new file.
  }
  tmp_path = tmp_dir_ + "/" + tx.envelope.id;
  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = write_all(fd, header + "\n") && write_all(fd, tx.received);
  if (ok && !body.spilled()) ok = write_all(fd, body.memory());
  if (ok && body.spilled()) {
    loff_t in = off_t(MessageBody::kHeaderRoom);
    uint64_t left = body.size();
    while (ok && left > 0) {
      ssize_t n = ::copy_file_range(body.fd(), &in, fd, nullptr, size_t(std::min<uint64_t>(left, 1 << 30)), 0);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) left -= uint64_t(n);
    }
  }
  ::close(fd);
  if (!ok) ::unlink(tmp_path.c_str());
  return ok;
}

// Encryption on (SPEC 13): the whole file -- envelope, Received:, content -- sealed
// into a new file of queue.tmp/; a streamed body is read back from its spill file (which
// its owner removes).
bool Spool::write_sealed(const smtp::Transaction& tx, const std::string& header, std::string& tmp_path) {
  const MessageBody& body = tx.body;
  tmp_path = tmp_dir_ + "/" + tx.envelope.id;
  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  crypt::FileWriter w(fd);
  bool ok = w.write(header) && w.write("\n") && w.write(tx.received);
  if (ok && !body.spilled()) ok = w.write(body.memory());
  std::string piece;
  for (uint64_t at = 0; ok && body.spilled() && at < body.size();) {
    piece.resize(size_t(std::min<uint64_t>(body.size() - at, 64 * 1024)));
    ssize_t n = ::pread(body.fd(), piece.data(), piece.size(), off_t(MessageBody::kHeaderRoom + at));
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0 && w.write(std::string_view(piece.data(), size_t(n)));
    at += n > 0 ? uint64_t(n) : 0;
  }
  ok = w.finish() && ok;
  ::close(fd);
  if (!ok) ::unlink(tmp_path.c_str());
  return ok;
}

bool Spool::commit_batch(std::vector<Job>& jobs) {
  int64_t now = unix_now();
  std::vector<std::pair<std::string, Job*>> written;  // path in queue.tmp/, job
  std::vector<DirectCopy*> copies;                    // written straight into mailboxes
  bool ok = true;
  std::string cause;  // the step that failed, for the log
  auto failed = [&](const char* step) {
    ok = false;
    cause = std::string(step) + ": " + std::strerror(errno);
  };
  for (auto& j : jobs) {
    // Write-once: local recipients only, and their copies could all be written.
    if (direct_ && !ledger_ && !j.tx->body.failed() && direct_->write(*j.tx, j.copies)) {
      j.direct = true;
      for (auto& c : j.copies) copies.push_back(&c);
      continue;
    }
    std::string tmp;
    if (!write_job(*j.tx, now, tmp)) {
      failed("writing a message into queue.tmp/");
      break;
    }
    written.emplace_back(tmp, &j);
  }
  // One sync for the whole batch makes every file's data durable (the mailboxes' copies
  // too: the same filesystem, or synced besides) with the batch's commit record; the
  // renames follow, made certain by the record (queue/commit_record.hpp). Cluster mode,
  // and a spool that has not recovered: a second sync makes the renames durable.
  bool recorded = record_ && !ledger_;
  bool record_written = false;
  if (ok && recorded) {
    std::vector<CommitEntry> entries;
    entries.reserve(written.size() + copies.size());
    for (auto& [tmp, job] : written) entries.push_back({tmp, path_of(job->tx->envelope.id)});
    for (auto* c : copies) entries.push_back({c->tmp, c->final_path});
    record_written = true;  // or half: cancel() blanks it if the batch fails
    if (!record_->write(entries)) failed("writing the commit record");
  }
  if (ok && (recorded ? record_->commit() : ::syncfs(queue_fd_)) != 0) failed("syncing the queue");
  if (ok && (!copies.empty() || mail_unsynced_) && direct_->sync_mailboxes(queue_fd_) != 0)
    failed("syncing the mailboxes");
  size_t renamed = 0, moved = 0;
  for (; ok && renamed < written.size(); ++renamed) {
    auto& [tmp, job] = written[renamed];
    if (::rename(tmp.c_str(), path_of(job->tx->envelope.id).c_str()) != 0) failed("renaming into queue/");
  }
  for (; ok && moved < copies.size(); ++moved)
    if (::rename(copies[moved]->tmp.c_str(), copies[moved]->final_path.c_str()) != 0) failed("moving into new/");
  if (recorded) {
    if (ok) mail_unsynced_ = !copies.empty();  // the next batch's sync covers them
  } else {
    // The renames into new/ are in other directories: a sync of the filesystem covers
    // them with queue/ (one journal commit, as the directory's fsync would be).
    if (ok && copies.empty() && ::fsync(queue_fd_) != 0) failed("syncing queue/");
    if (ok && !copies.empty() && (::syncfs(queue_fd_) != 0 || direct_->sync_mailboxes(queue_fd_) != 0))
      failed("syncing queue/ and the mailboxes");
  }
  // Cluster mode: acknowledged only once the cluster's queue has it too (SPEC 16).
  if (ok && ledger_) {
    std::vector<std::string> ids;
    for (auto& w : written) ids.push_back(w.second->tx->envelope.id);
    if (!ledger_->commit(*this, ids)) {
      ok = false;
      cause = "recording in the cluster's queue (PostgreSQL)";
    }
  }
  if (!ok && record_written) record_->cancel();  // before its files go
  if (!ok) {  // the sessions answer 451; one line per cause every 10 s, not one per message
    static logs::CauseThrottle throttle;
    if (auto held = throttle.allow(cause))
      logs::main().error("spool: {} message(s) not accepted, {}{}", jobs.size(), cause,
                         *held ? fmt::format(" ({} more batches since)", *held) : std::string());
  }
  for (size_t i = 0; i < written.size(); ++i) {
    auto& [tmp, job] = written[i];
    bool streamed = job->tx->body.spilled() && tmp == job->tx->body.path();
    if (ok) {
      if (streamed) job->tx->body.release_file();  // it is the queue file now
      continue;
    }
    // Failed: nothing of this batch stays (none of it was acknowledged). A streamed
    // body's own file is removed by its owner.
    if (i < renamed) ::unlink(path_of(job->tx->envelope.id).c_str());
    else if (!streamed) ::unlink(tmp.c_str());
  }
  if (!ok)  // nor in the mailboxes
    for (size_t i = 0; i < copies.size(); ++i) ::unlink((i < moved ? copies[i]->final_path : copies[i]->tmp).c_str());
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

std::string delivered_state_line(const std::string& target) { return enc_token(target) + "\n"; }

bool parse_envelope_header(std::string_view head, StoredMessage& m, std::string& why) {
  if (head.rfind("bulwark-spool 1\n", 0) != 0) {
    why = "not a bulwark spool file";
    return false;
  }
  bool has_arrival = false, has_size = false;
  // A bad line is remembered, and the rest still read: the sender (to tell) and the
  // recipients of a damaged file are often intact.
  std::string bad;
  auto note = [&bad](const char* why) {
    if (bad.empty()) bad = why;
  };
  size_t pos = head.find('\n') + 1;
  while (pos < head.size()) {
    size_t eol = head.find('\n', pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 1;
    auto t = tokens(line);
    if (t.empty()) continue;
    std::string_view key = t[0];
    std::string_view a = t.size() > 1 ? t[1] : std::string_view();
    if (key == "rcpt") {
      if (t.size() != 4 || (a != "L" && a != "R")) note("bad recipient line");
      else m.envelope.recipients.push_back({dec_token(t[2]), dec_token(t[3]), a == "L"});
    } else if (key == "arrival") {
      if (!parse_number(a, m.arrival)) note("bad arrival time");
      has_arrival = true;
    } else if (key == "size") {
      if (!parse_number(a, m.content_size)) note("bad size");
      has_size = true;
    } else if (key == "client") m.envelope.client_ip = dec_token(a);
    else if (key == "helo") m.envelope.helo = dec_token(a);
    else if (key == "sender") m.envelope.sender = dec_token(a);
    else if (key == "smtputf8") m.envelope.smtputf8 = a == "1";
    else if (key == "8bit") m.eight_bit = a == "1";
    else if (key == "tls") m.envelope.tls = dec_token(a);
    else if (key == "ours") m.envelope.ours = a == "1";
    else if (key == "junk") m.envelope.junk = a == "1";
    // "id" is the file name; "pad" fills the room before a streamed body; other keys
    // are from a newer version: ignored.
  }
  if (bad.empty() && !has_arrival) bad = "no arrival time";
  if (bad.empty() && !has_size) bad = "no size";
  if (bad.empty() && m.envelope.recipients.empty()) bad = "no recipients";
  why = bad;
  return bad.empty();
}

// <id>.done: one line per event. "TARGET" delivered; "F TARGET REASON" bounced;
// "D TARGET REASON" deferred (the last one counts); "W 1" delay notice sent;
// "R NEXT ATTEMPTS" retry schedule (the last one counts).
void apply_state_lines(std::string_view text, StoredMessage& m) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    auto t = tokens(text.substr(pos, eol - pos));
    pos = eol + 1;
    if (t.empty()) continue;
    if (t.size() == 1) {
      m.done.push_back(dec_token(t[0]));
      continue;
    }
    std::string_view kind = t[0], a = t[1], b = t.size() > 2 ? t[2] : std::string_view("%");
    if (kind == "F") m.failed.emplace_back(dec_token(a), dec_token(b));
    else if (kind == "D") {
      std::string target = dec_token(a);
      std::erase_if(m.last_error, [&](auto& e) { return e.first == target; });
      m.last_error.emplace_back(target, dec_token(b));
    } else if (kind == "W") m.warned = true;
    else if (kind == "R") {
      parse_number(a, m.next_attempt);  // a damaged schedule means "now"
      parse_number(b, m.attempts);
    }
  }
}

Loaded Spool::load(const std::string& id) {
  Loaded out;
  if (id.empty() || id.find('/') != std::string::npos || id.find('.') != std::string::npos) return out;
  auto damaged = [&](std::string why) {
    out.status = Loaded::damaged;
    out.why = std::move(why);
    return out;
  };
  std::string why;
  auto file = crypt::PlainFile::open(path_of(id), &why);
  // Missing: delivered meanwhile, or `queue delete` -- or unreadable for now (no key
  // loaded, out of descriptors): left alone. Damaged only when a sealed file fails.
  if (!file) return errno == EBADMSG ? damaged(why) : out;
  // The envelope: everything up to the first empty line (bounded: a file without one
  // within 1 MiB is not a spool file).
  std::string head;
  size_t end = std::string::npos;
  while (end == std::string::npos) {
    auto piece = file->next(8192, &why);
    if (!piece) return damaged("cannot be read: " + why);
    if (piece->empty()) break;
    size_t from = head.size() > 0 ? head.size() - 1 : 0;
    head += *piece;
    end = head.find("\n\n", from);
    if (head.size() > (1u << 20)) break;
  }
  if (head.rfind("bulwark-spool 1\n", 0) != 0) return damaged("not a bulwark spool file");
  if (end == std::string::npos) return damaged("envelope without an end");
  StoredMessage& m = out.msg;
  m.envelope.id = id;
  {
    std::string bad;
    if (!parse_envelope_header(std::string_view(head).substr(0, end + 1), m, bad)) return damaged(bad);
  }
  m.content_offset = end + 2;
  if (file->size() != m.content_offset + m.content_size)
    return damaged("truncated: " + std::to_string(file->size()) + " bytes where the envelope says " +
                   std::to_string(m.content_offset + m.content_size));
  if (head.substr(0, end + 1).find("\n8bit ") == std::string::npos) {  // written before the "8bit" line: look
    Reader r(*this, m);
    while (auto chunk = r.next()) {
      if (chunk->empty()) break;
      if (has_8bit(*chunk)) {
        m.eight_bit = true;
        break;
      }
    }
  }
  // <id>.done: one line per event. "TARGET" delivered; "F TARGET REASON" bounced;
  // "D TARGET REASON" deferred (the last one counts); "W 1" delay notice sent;
  // "R NEXT ATTEMPTS" retry schedule (the last one counts).
  auto state = crypt::read_text(path_of(id) + ".done", crypt::data_key(), &why);
  if (!state) return damaged("delivery state " + id + ".done cannot be read: " + why);
  apply_state_lines(state->text, m);
  out.status = Loaded::ok;
  return out;
}

Spool::Reader::Reader(const Spool& spool, const StoredMessage& m)
    : id_(m.envelope.id), offset_(m.content_offset), size_(m.content_size) {
  std::string why;
  file_ = crypt::PlainFile::open(spool.path_of(m.envelope.id), &why);
  if (!file_ && errno != ENOENT)
    logs::main().error("spool: message {} cannot be read: {}", m.envelope.id, why);
}

Spool::Reader::~Reader() = default;

std::optional<std::string> Spool::Reader::next(size_t max) {
  if (!file_) return std::nullopt;
  std::string why;
  auto chunk = file_->read(offset_ + pos_, size_t(std::min<uint64_t>(max, size_ - pos_)), &why);
  if (!chunk) {
    logs::main().error("spool: message {} cannot be read: {}", id_, why);
    return std::nullopt;
  }
  if (chunk->size() != std::min<uint64_t>(max, size_ - pos_)) return std::nullopt;  // shorter than the envelope says
  pos_ += chunk->size();
  return chunk;
}

std::optional<std::string> Spool::read_content(const StoredMessage& m) {
  Reader r(*this, m);
  std::string all;
  all.reserve(size_t(m.content_size));
  while (r.left() > 0) {
    auto chunk = r.next(1 << 20);
    if (!chunk) return std::nullopt;
    all += *chunk;
  }
  return all;
}

std::string Spool::read_headers(const StoredMessage& m) {
  Reader r(*this, m);
  std::string head;
  while (r.left() > 0 && head.size() < 64 * 1024) {
    auto chunk = r.next(8192);
    if (!chunk) break;
    head += *chunk;
    if (size_t e = head.find("\r\n\r\n"); e != std::string::npos) return head.substr(0, e + 2);
  }
  return head.substr(0, std::min<size_t>(head.size(), 64 * 1024));
}

void Spool::quarantine(const std::string& id, const std::string& why) {
  std::lock_guard lk(state_mu_);
  std::error_code ec;
  fs::create_directories(quarantine_dir_, ec);
  bool moved = ::rename(path_of(id).c_str(), (quarantine_dir_ + "/" + id).c_str()) == 0;
  ::rename((path_of(id) + ".done").c_str(), (quarantine_dir_ + "/" + id + ".done").c_str());
  if (moved) ::fsync(queue_fd_);
  logs::main().error("queue file {} is damaged ({}): {} {}", id, sanitize(why),
                     moved ? "moved to" : "could not be moved to", quarantine_dir_);
  logs::mail().info("quarantined id={} reason=\"{}\"", id, sanitize(why));
}

Spool::Scan Spool::scan() {
  Scan out;
  for (auto& id : list()) {
    Loaded l = load(id);
    if (l.status == Loaded::missing) continue;
    if (l.status == Loaded::damaged) {
      quarantine(id, l.why);
      out.quarantined.push_back(std::move(l));
      continue;
    }
    out.queued.push_back({id, l.msg.pending(true), l.msg.pending(false), l.msg.next_attempt});
  }
  return out;
}

bool StoredMessage::finished(const std::string& target) const {
  if (std::find(done.begin(), done.end(), target) != done.end()) return true;
  for (auto& f : failed)
    if (f.first == target) return true;
  return false;
}

bool StoredMessage::pending(bool local) const {
  for (auto& r : envelope.recipients)
    if (r.local == local && !finished(r.target)) return true;
  return false;
}

namespace {
// <id>.done: plain lines, or sealed records when encryption is on (crypt/records.hpp).
void append_state(const std::string& path, const std::string& lines, bool sync) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (!crypt::append_text(fd, lines, crypt::data_key()))
    logs::main().error("spool: cannot write {}: {}", path, std::strerror(errno));
  if (sync) ::fdatasync(fd);
  ::close(fd);
}
}  // namespace

// Cluster mode: what the ledger says this node no longer holds is not recorded, and its
// local copy goes (the node holding it now delivers it). When PostgreSQL cannot be
// reached the state is recorded here only: the cluster's copy is behind, so a node
// taking the message over later may repeat a delivery -- never lose one.
namespace {
std::vector<std::string> ledger_append(QueueLedger* ledger, const std::vector<std::pair<std::string, std::string>>& lines) {
  if (!ledger || lines.empty()) return {};
  try {
    return ledger->append(lines);
  } catch (const std::exception& e) {
    static logs::CauseThrottle throttle;
    if (auto held = throttle.allow("state"))
      logs::main().error("queue: delivery state not recorded in the cluster's queue, kept on this node: {}{}",
                         e.what(), *held ? fmt::format(" ({} more since)", *held) : std::string());
    return {};
  }
}
}  // namespace

void Spool::drop_lost(const std::vector<std::string>& lost) {
  for (auto& id : lost) {
    logs::main().warn("queue: message {} is no longer this node's (its lease passed to another node, or it was "
                      "deleted): its result is not recorded here and this node's copy goes",
                      id);
    remove_later(id, false);
  }
}

int Spool::sync_state() { return ::syncfs(queue_fd_); }

void Spool::record_delivered(const std::string& id, const std::vector<std::string>& targets, bool sync) {
  std::string lines;
  for (auto& t : targets) lines += enc_token(t) + "\n";
  auto lost = ledger_append(ledger_, {{id, lines}});
  if (!lost.empty()) return drop_lost(lost);
  std::lock_guard lk(state_mu_);
  append_state(queue_dir_ + "/" + id + ".done", lines, sync);
}

void Spool::record_many(const std::vector<StateRecord>& records) {
  std::vector<std::pair<std::string, std::string>> all;
  for (auto& r : records) {
    std::string lines;
    for (auto& o : r.outcomes) {
      if (o.kind == TargetOutcome::delivered) lines += enc_token(o.target) + "\n";
      else lines += (o.kind == TargetOutcome::failed ? "F " : "D ") + enc_token(o.target) + " " + enc_token(o.reason) + "\n";
    }
    if (r.warned) lines += "W 1\n";
    if (r.next_attempt >= 0) lines += "R " + std::to_string(r.next_attempt) + " " + std::to_string(r.attempts) + "\n";
    if (lines.empty() || !fs::exists(queue_dir_ + "/" + r.id)) continue;  // deleted meanwhile
    all.emplace_back(r.id, std::move(lines));
  }
  auto lost = ledger_append(ledger_, all);
  drop_lost(lost);
  std::lock_guard lk(state_mu_);
  for (auto& [id, lines] : all)
    if (std::find(lost.begin(), lost.end(), id) == lost.end())
      append_state(queue_dir_ + "/" + id + ".done", lines, false);
  // Not synced: the state survives a crash of the process (it is in the page cache);
  // after a power loss a message may go out once more, or a report be repeated --
  // never lost. Postfix does not sync its delivery status either.
}

bool Spool::finish_if_complete(const std::string& id) {
  std::lock_guard lk(state_mu_);
  Loaded l = load(id);
  if (l.status != Loaded::ok) return false;
  for (auto& r : l.msg.envelope.recipients)
    if (!l.msg.finished(r.target)) return false;
  // Cluster mode: gone from the cluster's queue first. When that cannot be recorded
  // now the row stays this node's; the next heartbeat writes it back here and
  // finishes it then (store/pg_queue.cpp).
  if (ledger_) ledger_->finished(id);
  remove(id);
  return true;
}

std::vector<TargetState> target_states(const StoredMessage& m) {
  std::vector<TargetState> out;
  for (auto& r : m.envelope.recipients) {
    if (std::any_of(out.begin(), out.end(), [&](auto& s) { return s.target == r.target; })) continue;
    TargetState s{r.target, r.local, "waiting", ""};
    for (auto& [t, why] : m.last_error)
      if (t == r.target) s.reason = why;
    if (std::find(m.done.begin(), m.done.end(), r.target) != m.done.end()) s = {r.target, r.local, "delivered", ""};
    for (auto& [t, why] : m.failed)
      if (t == r.target) s = {r.target, r.local, "bounced", why};
    out.push_back(std::move(s));
  }
  return out;
}

void Spool::remove(const std::string& id) {
  ::unlink((queue_dir_ + "/" + id).c_str());
  ::unlink((queue_dir_ + "/" + id + ".done").c_str());
}

bool Spool::adopt(const std::string& id, const std::string& header, std::string_view content,
                  const std::string& state) {
  if (id.empty() || id.find('/') != std::string::npos || id.find('.') != std::string::npos) return false;
  std::string tmp = tmp_dir_ + "/" + id + ".adopt";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok;
  if (crypt::data_key()) {
    crypt::FileWriter w(fd);
    ok = w.write(header) && w.write("\n") && w.write(content);
    ok = w.finish() && ok;
  } else {
    ok = write_all(fd, header + "\n") && write_all(fd, content);
  }
  ok = ok && ::fdatasync(fd) == 0;
  ::close(fd);
  std::lock_guard lk(state_mu_);
  std::string done = path_of(id) + ".done";
  ::unlink(done.c_str());
  if (ok && !state.empty()) {
    int sfd = ::open(done.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ok = sfd >= 0 && crypt::append_text(sfd, state, crypt::data_key()) && ::fdatasync(sfd) == 0;
    if (sfd >= 0) ::close(sfd);
  }
  ok = ok && ::rename(tmp.c_str(), path_of(id).c_str()) == 0 && ::fsync(queue_fd_) == 0;
  if (!ok) {
    ::unlink(tmp.c_str());
    ::unlink(done.c_str());
  }
  return ok;
}

void Spool::recover() {
  // The last batches' renames first: their files may be acknowledged.
  record_ = std::make_unique<CommitRecord>(tmp_dir_);
  auto replayed = record_->replay();
  logs::main().info("spool: one journal commit per batch ({})", record_->how());
  if (replayed.renamed || replayed.torn)
    logs::main().warn("spool: commit record: {} committed file(s) moved into place, {} torn one(s) removed",
                      replayed.renamed, replayed.torn);
  // queue.tmp/: files of commits that never finished and bodies streamed by sessions
  // that never committed -- none of them was acknowledged.
  for (auto& e : fs::directory_iterator(tmp_dir_))
    if (!e.path().filename().string().starts_with(CommitRecord::kPrefix)) fs::remove(e.path());
  for (auto& e : fs::directory_iterator(queue_dir_)) {
    std::string name = e.path().filename().string();
    if (name.size() > 5 && name.ends_with(".done") && !fs::exists(queue_dir_ + "/" + name.substr(0, name.size() - 5)))
      fs::remove(e.path());
  }
}

}  // namespace bulwark
