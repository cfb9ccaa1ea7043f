#include "policy/policy.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace bulwark {

bool IpGroups::contains(const std::string& group, const IpAddress& a) const {
  if (group.empty()) return false;
  auto it = groups_.find(group);
  if (it == groups_.end()) return false;
  for (auto& r : it->second)
    if (r.contains(a)) return true;
  return false;
}

size_t IpKeyHash::operator()(const IpAddress& a) const noexcept {
  uint64_t h1, h2;
  std::memcpy(&h1, a.bytes.data(), 8);
  std::memcpy(&h2, a.bytes.data() + 8, 8);
  return std::hash<uint64_t>()(h1 * 0x9E3779B97F4A7C15ull ^ h2);
}

void PopLogins::record(const IpAddress& ip, const std::string& user) {
  remember(ip, user);
  std::function<void(const IpAddress&, const std::string&)> shared;
  {
    std::lock_guard lk(mu_);
    shared = shared_;
  }
  if (shared) shared(ip, user);
}

void PopLogins::learn(const IpAddress& ip, const std::string& user) { remember(ip, user); }

void PopLogins::share(std::function<void(const IpAddress&, const std::string&)> shared) {
  std::lock_guard lk(mu_);
  shared_ = std::move(shared);
}

void PopLogins::remember(const IpAddress& ip, const std::string& user) {
  std::lock_guard lk(mu_);
  auto now = now_();
  if (last_.size() >= 100000 && !last_.count(ip)) {
    std::erase_if(last_, [&](auto& kv) { return now - kv.second.last > std::chrono::hours(24); });
    if (last_.size() >= 100000)  // a day of logins from 100,000 addresses: the oldest goes
      last_.erase(std::min_element(last_.begin(), last_.end(),
                                   [](auto& a, auto& b) { return a.second.last < b.second.last; }));
  }
  Seen& s = last_[ip];
  s.last = now;
  if (user.empty()) return;
  std::erase_if(s.users, [&](auto& u) { return u.first == user; });
  s.users.insert(s.users.begin(), {user, now});
  if (s.users.size() > kUsersPerAddress) s.users.resize(kUsersPerAddress);
}

bool PopLogins::within(const IpAddress& ip, std::chrono::seconds window) const {
  if (window.count() == 0) return false;
  std::lock_guard lk(mu_);
  auto it = last_.find(ip);
  return it != last_.end() && now_() - it->second.last <= window;
}

std::vector<std::string> PopLogins::users_within(const IpAddress& ip, std::chrono::seconds window) const {
  std::vector<std::string> out;
  if (window.count() == 0) return out;
  std::lock_guard lk(mu_);
  auto it = last_.find(ip);
  if (it == last_.end()) return out;
  auto now = now_();
  for (auto& [user, when] : it->second.users)
    if (now - when <= window) out.push_back(user);
  return out;
}

const char* relay_verdict_name(RelayVerdict v) {
  switch (v) {
    case RelayVerdict::open_relay: return "open relay";
    case RelayVerdict::ip_group: return "IP group";
    case RelayVerdict::authenticated: return "authenticated";
    case RelayVerdict::pop_before_smtp: return "POP before SMTP";
    case RelayVerdict::denied: return "denied";
  }
  return "?";
}

RelayVerdict decide_relay(const RelaySettings& s, const IpGroups& groups, const PopLogins& pop,
                          const RelayInputs& in) {
  if (s.open) return RelayVerdict::open_relay;
  if (in.authenticated && s.allow_authenticated) return RelayVerdict::authenticated;
  if (!in.ip_group_revoked && groups.contains(s.allow_ip_group, in.ip)) return RelayVerdict::ip_group;
  if (pop.within(in.ip, s.pop_before_smtp)) return RelayVerdict::pop_before_smtp;
  return RelayVerdict::denied;
}

ClientLimits::ClientLimits(LimitSettings s, NowFn now) : s_(std::move(s)), now_(std::move(now)) {}

void ClientLimits::update(LimitSettings s) {
  std::lock_guard lk(mu_);
  s_ = std::move(s);
}

bool ClientLimits::count_toward_block(uint32_t& count, SteadyClock::time_point& since,
                                      SteadyClock::time_point& blocked_until, SteadyClock::time_point now,
                                      std::chrono::seconds window, uint64_t max, std::chrono::seconds block) {
  if (now - since > window) {
    count = 0;
    since = now;
  }
  if (++count < max) return false;
  blocked_until = now + block;
  count = 0;
  return true;
}

void ClientLimits::rotate(Entry& e, int64_t minute) {
  if (minute - e.minute >= 60) {
    e.buckets.fill(0);
  } else {
    for (int64_t m = e.minute + 1; m <= minute; ++m) e.buckets[size_t(m % 60)] = 0;
  }
  e.minute = std::max(e.minute, minute);
}

ClientLimits::Entry* ClientLimits::entry(const IpAddress& ip, SteadyClock::time_point now) {
  IpAddress key = limit_key(ip);
  auto it = map_.find(key);
  if (it == map_.end()) {
    if (map_.size() >= s_.max_tracked) {
      if (now >= next_evict_) evict(now);
      if (map_.size() >= s_.max_tracked) {
        ++untracked_;
        return nullptr;
      }
    }
    it = map_.emplace(key, Entry{}).first;
    it->second.minute = std::chrono::duration_cast<std::chrono::minutes>(now.time_since_epoch()).count();
  }
  it->second.last_seen = now;
  return &it->second;
}

bool ClientLimits::live(const Entry& e, SteadyClock::time_point now) const {
  if (e.connections > 0 || e.mailbox_connections > 0 || e.blocked_until > now) return true;
  if (e.others[0] || e.others[1] || e.rate_blocked_until > now) return true;
  for (auto& a : e.auth)
    if (a.pending > 0 || a.blocked_until > now || (a.failures > 0 && now - a.since <= s_.auth_window)) return true;
  if (e.unknown > 0 && now - e.unknown_since <= s_.harvest_block) return true;
  int64_t minute = std::chrono::duration_cast<std::chrono::minutes>(now.time_since_epoch()).count();
  if (minute - e.minute < 60)
    for (auto b : e.buckets)
      if (b) return true;
  return false;
}

void ClientLimits::evict(SteadyClock::time_point now) {
  // Only what holds no state that matters: forgetting it changes no decision.
  std::erase_if(map_, [&](auto& kv) { return !live(kv.second, now); });
  if (map_.size() >= s_.max_tracked) next_evict_ = now + std::chrono::seconds(1);
}

ClientLimits::Connect ClientLimits::connect(const IpAddress& ip, Kind kind) {
  uint32_t here = 0;
  {
    std::lock_guard lk(mu_);
    auto now = now_();
    Entry* e = entry(ip, now);
    if (!e) return Connect::untracked;
    if (kind == Kind::smtp && e->blocked_until > now) return Connect::harvest_blocked;
    uint32_t& n = kind == Kind::smtp ? e->connections : e->mailbox_connections;
    uint64_t max = kind == Kind::smtp ? s_.max_connections_per_ip : s_.max_mailbox_connections_per_ip;
    if (max && uint64_t(n) + e->others[size_t(kind)] >= max) return Connect::too_many_connections;
    here = ++n;
  }
  if (sharing_) sharing_->connections(limit_key(ip), kind, here);
  return Connect::ok;
}

void ClientLimits::disconnect(const IpAddress& ip, Kind kind) {
  uint32_t here = 0;
  {
    std::lock_guard lk(mu_);
    auto it = map_.find(limit_key(ip));
    if (it == map_.end()) return;
    uint32_t& n = kind == Kind::smtp ? it->second.connections : it->second.mailbox_connections;
    if (n > 0) --n;
    here = n;
  }
  if (sharing_) sharing_->connections(limit_key(ip), kind, here);
}

void ClientLimits::share(Sharing* s) { sharing_ = s; }

void ClientLimits::impose(const IpAddress& key, Block b, std::chrono::milliseconds length) {
  std::lock_guard lk(mu_);
  auto now = now_();
  Entry* e = entry(key, now);
  if (!e) return;
  auto until = now + length;
  auto& slot = b == Block::harvest ? e->blocked_until
               : b == Block::rate  ? e->rate_blocked_until
                                   : e->auth[b == Block::auth_mail ? 0 : 1].blocked_until;
  slot = std::max(slot, until);
}

void ClientLimits::others(const IpAddress& key, Kind kind, uint32_t n) {
  std::lock_guard lk(mu_);
  if (n == 0) {
    auto it = map_.find(key);
    if (it != map_.end()) it->second.others[size_t(kind)] = 0;
    return;
  }
  Entry* e = entry(key, now_());
  if (e) e->others[size_t(kind)] = n;
}

bool ClientLimits::message_allowed(const IpAddress& ip) {
  std::lock_guard lk(mu_);
  if (!s_.max_messages_per_hour) return true;
  auto now = now_();
  Entry* e = entry(ip, now);
  if (!e) return true;
  if (e->rate_blocked_until > now) return false;
  rotate(*e, std::chrono::duration_cast<std::chrono::minutes>(now.time_since_epoch()).count());
  uint64_t sum = 0;
  for (auto b : e->buckets) sum += b;
  return sum < s_.max_messages_per_hour;
}

void ClientLimits::message_accepted(const IpAddress& ip) {
  {
    std::lock_guard lk(mu_);
    if (!s_.max_messages_per_hour) return;  // nothing to count toward
    auto now = now_();
    Entry* e = entry(ip, now);
    if (!e) return;
    int64_t minute = std::chrono::duration_cast<std::chrono::minutes>(now.time_since_epoch()).count();
    rotate(*e, minute);
    ++e->buckets[size_t(minute % 60)];
  }
  if (sharing_) sharing_->message(limit_key(ip));
}

bool ClientLimits::unknown_recipient(const IpAddress& ip) {
  bool blocked = false;
  {
    std::lock_guard lk(mu_);
    if (!s_.max_unknown_recipients) return false;
    auto now = now_();
    Entry* e = entry(ip, now);
    if (!e) return false;
    // Unknown recipients count within a window as long as the block would last.
    blocked = count_toward_block(e->unknown, e->unknown_since, e->blocked_until, now, s_.harvest_block,
                                 s_.max_unknown_recipients, s_.harvest_block);
  }
  if (sharing_) sharing_->unknown_recipient(limit_key(ip));
  return blocked;
}

ClientLimits::Attempt ClientLimits::auth_attempt(const IpAddress& ip, Realm realm) {
  std::lock_guard lk(mu_);
  if (!s_.max_auth_failures) return Attempt::ok;
  auto now = now_();
  Entry* e = entry(ip, now);
  if (!e) return Attempt::blocked;
  auto& a = e->auth[size_t(realm)];
  if (a.blocked_until > now) return Attempt::blocked;
  if (a.failures > 0 && now - a.since > s_.auth_window) a.failures = 0;
  if (a.failures + a.pending >= s_.max_auth_failures) return Attempt::busy;
  ++a.pending;
  return Attempt::ok;
}

void ClientLimits::auth_release(const IpAddress& ip, Realm realm) {
  std::lock_guard lk(mu_);
  auto it = map_.find(limit_key(ip));
  if (it != map_.end() && it->second.auth[size_t(realm)].pending > 0) --it->second.auth[size_t(realm)].pending;
}

bool ClientLimits::auth_failure(const IpAddress& ip, Realm realm, bool held) {
  bool blocked = false;
  {
    std::lock_guard lk(mu_);
    auto now = now_();
    Entry* e = entry(ip, now);
    if (!e) return s_.max_auth_failures > 0;
    auto& a = e->auth[size_t(realm)];
    if (held && a.pending > 0) --a.pending;
    if (!s_.max_auth_failures) return false;
    blocked = count_toward_block(a.failures, a.since, a.blocked_until, now, s_.auth_window, s_.max_auth_failures,
                                 s_.auth_block);
  }
  if (sharing_) sharing_->auth_failure(limit_key(ip), realm);
  return blocked;
}

bool ClientLimits::auth_blocked(const IpAddress& ip, Realm realm) {
  std::lock_guard lk(mu_);
  if (!s_.max_auth_failures) return false;
  auto now = now_();
  Entry* e = entry(ip, now);
  return !e || e->auth[size_t(realm)].blocked_until > now;
}

size_t ClientLimits::tracked() const {
  std::lock_guard lk(mu_);
  return map_.size();
}

uint64_t ClientLimits::untracked() const {
  std::lock_guard lk(mu_);
  return untracked_;
}

}  // namespace bulwark
