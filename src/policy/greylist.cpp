#include "policy/greylist.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/body.hpp"
#include "core/strings.hpp"
#include "crypt/crypt.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"
#include "logging/logs.hpp"

namespace bulwark {

namespace {

int64_t system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The network part of the client address: IPv4 /24, IPv6 /64 (a sender's pool of
// outbound servers usually shares it; a retry may come from a neighbour).
std::string network(const IpAddress& ip) {
  IpAddress n = ip;
  if (ip.is_v4()) n.bytes[15] = 0;
  else
    for (int i = 8; i < 16; ++i) n.bytes[i] = 0;
  return n.str();
}

}  // namespace

Greylist::Greylist(std::string path, GreylistSettings s, Clock now)
    : path_(std::move(path)), s_(s), now_(now ? std::move(now) : Clock(system_now)) {
  if (path_.empty()) return;  // cluster mode: the journal, no file
  std::lock_guard lk(mu_);
  load();
  compact();
}

std::string Greylist::hash_key(const std::string& plain, const crypt::DataKey* key) {
  unsigned char h[16];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(plain.data()), plain.size(),
                     key ? key->bytes() : nullptr, key ? crypt::DataKey::size : 0);
  char hex[2 * sizeof h + 1];
  sodium_bin2hex(hex, sizeof hex, h, sizeof h);
  return hex;
}

std::string Greylist::key_of(const IpAddress& ip, const std::string& sender, const std::string& rcpt, bool hashed,
                             const crypt::DataKey* key) {
  std::string k = network(ip) + "/";
  for (char c : to_lower(sender) + "/" + to_lower(rcpt))  // no spaces or controls in the file
    k += (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) ? '_' : c;
  return hashed ? hash_key(k, key) : k;
}

void Greylist::journal_to(Journal j) {
  std::lock_guard lk(mu_);
  journal_ = std::move(j);
}

Greylist::~Greylist() {
  if (fd_ >= 0) ::close(fd_);
}

// The file: "<passed-at> <last-use> <key>" lines; keys hold no spaces or newlines
// (addresses are sanitized by the SMTP layer; anything else is escaped below).
void Greylist::load() {
  std::string why;
  auto file = crypt::read_text(path_, crypt::data_key(), &why);  // plain lines, or sealed records
  if (!file) {
    logs::main().error("greylisting: {} cannot be read ({}); starting with no passed triplets", path_, why);
    return;
  }
  std::istringstream in(std::move(file->text));
  std::string line;
  int64_t now = now_();
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    int64_t first = 0, last = 0;
    std::string key;
    if (!(ls >> first >> last >> key) || last + s_.expire.count() < now) continue;
    auto [it, fresh] = map_.try_emplace(key);
    Entry& e = it->second;
    if (!fresh) passed_order_.erase(e.order);
    else ++passed_;
    e.first = first;
    e.last = e.written = std::max(e.last, last);
    e.passed = true;
    e.order = passed_order_.insert(passed_order_.end(), key);
  }
}

void Greylist::compact() {
  std::string tmp = path_ + ".tmp";
  {
    std::string text;
    for (auto& key : passed_order_) {
      const Entry& e = map_[key];
      text += std::to_string(e.first) + ' ' + std::to_string(e.last) + ' ' + key + '\n';
    }
    if (const crypt::DataKey* k = crypt::data_key()) text = crypt::seal_records(*k, text);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write_all(fd, text);
    if (fd >= 0) ::close(fd);
    if (!ok) return;  // keep appending to the old file
  }
  if (fd_ >= 0) ::close(fd_);
  ::rename(tmp.c_str(), path_.c_str());
  fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  lines_ = passed_;
}

void Greylist::append(const std::string& key, const Entry& e) {
  if (fd_ < 0) return;
  std::string line = std::to_string(e.first) + ' ' + std::to_string(e.last) + ' ' + key + '\n';
  crypt::append_text(fd_, line, crypt::data_key());
  if (++lines_ > 2 * passed_ + 1000) compact();
}

void Greylist::drop_expired(int64_t now) {
  while (!pending_order_.empty()) {
    auto it = map_.find(pending_order_.front());
    if (it->second.first + s_.pending_for.count() >= now) break;
    map_.erase(it);
    pending_order_.pop_front();
  }
  while (!passed_order_.empty()) {
    auto it = map_.find(passed_order_.front());
    if (it->second.last + s_.expire.count() >= now) break;
    map_.erase(it);
    passed_order_.pop_front();
    --passed_;
  }
}

Greylist::Verdict Greylist::check(const IpAddress& ip, const std::string& sender, const std::string& rcpt,
                                  int64_t* seconds_left) {
  std::string key = key_of(ip, sender, rcpt, s_.hashed, s_.hash_key);
  int64_t now = now_();
  std::optional<std::pair<int64_t, bool>> tell;  // what the other nodes hear of, after the lock
  bool refreshed = false;                          // a pass's daily refresh, for the journal
  Verdict v = decide(key, now, seconds_left, tell, refreshed);
  Shared shared;
  Journal journal;
  if (tell || refreshed) {
    std::lock_guard lk(mu_);
    shared = shared_;
    journal = journal_;
  }
  if (shared && tell) shared(key, tell->first, tell->second);
  if (journal && tell) journal(key, tell->first, now, tell->second);
  if (journal && refreshed) journal(key, 0, now, true);
  return v;
}

void Greylist::share(Shared shared) {
  std::lock_guard lk(mu_);
  shared_ = std::move(shared);
}

void Greylist::learn(const std::string& key, int64_t first, bool passed) {
  if (key.empty() || key.find_first_of(" \n") != std::string::npos) return;
  std::lock_guard lk(mu_);
  int64_t now = now_();
  auto it = map_.find(key);
  if (it == map_.end()) {
    if (!passed) {
      if (pending_order_.size() >= s_.max_pending) return;  // ours first
      Entry e;
      e.first = first;
      e.last = now;
      e.order = pending_order_.insert(pending_order_.end(), key);
      map_.emplace(key, e);
      return;
    }
    it = map_.emplace(key, Entry{}).first;
    it->second.first = first;
    it->second.order = pending_order_.insert(pending_order_.end(), key);  // made passed below
  }
  Entry& e = it->second;
  if (!passed) {
    if (!e.passed) e.first = std::min(e.first, first);  // the earliest attempt counts
    return;
  }
  if (!e.passed) pass(key, e, now);
}

void Greylist::pass(const std::string& key, Entry& e, int64_t now) {
  pending_order_.erase(e.order);
  e.passed = true;
  ++passed_;
  if (passed_ > s_.max_passed) {  // bounded: the least recently used goes
    map_.erase(passed_order_.front());
    passed_order_.pop_front();
    --passed_;
  }
  e.order = passed_order_.insert(passed_order_.end(), key);
  e.last = e.written = now;
  append(key, e);
}

Greylist::Verdict Greylist::decide(const std::string& key, int64_t now, int64_t* seconds_left,
                                   std::optional<std::pair<int64_t, bool>>& tell, bool& refreshed) {
  std::lock_guard lk(mu_);
  if (now - last_sweep_ >= 60) {
    drop_expired(now);
    last_sweep_ = now;
  }
  auto it = map_.find(key);
  if (it == map_.end()) {
    if (pending_order_.size() >= s_.max_pending) {  // bounded: the oldest attempt goes
      map_.erase(pending_order_.front());
      pending_order_.pop_front();
    }
    Entry e;
    e.first = e.last = now;
    e.order = pending_order_.insert(pending_order_.end(), key);
    map_.emplace(key, e);
    if (seconds_left) *seconds_left = s_.delay.count();
    tell.emplace(now, false);
    return Verdict::defer;
  }
  Entry& e = it->second;
  if (!e.passed) {
    if (now - e.first < s_.delay.count()) {
      if (seconds_left) *seconds_left = s_.delay.count() - (now - e.first);
      return Verdict::defer;
    }
    if (e.first + s_.pending_for.count() < now) {  // too late: this counts as a first attempt
      e.first = now;
      pending_order_.splice(pending_order_.end(), pending_order_, e.order);
      if (seconds_left) *seconds_left = s_.delay.count();
      return Verdict::defer;
    }
    pass(key, e, now);
    tell.emplace(e.first, true);
    return Verdict::pass;
  }
  e.last = now;
  passed_order_.splice(passed_order_.end(), passed_order_, e.order);
  if (now - e.written >= 86400) {  // the file (or the journal) learns of the use once a day
    e.written = now;
    append(key, e);
    refreshed = true;
  }
  return Verdict::pass;
}

size_t Greylist::pending() const {
  std::lock_guard lk(mu_);
  return pending_order_.size();
}

size_t Greylist::passed() const {
  std::lock_guard lk(mu_);
  return passed_;
}

}  // namespace bulwark
