#include "policy/redis_limits.hpp"

#include <sstream>

#include "cluster/redis.hpp"
#include "core/metrics.hpp"
#include "logging/logs.hpp"

namespace bulwark {

namespace {

constexpr const char* kChannel = "bulwark:limits";
constexpr const char* kBlockPrefix = "bulwark:block:";

// Counts one event in a window; at `max` sets the block and tells every node.
// KEYS: counter, block. ARGV: window ms, max, block ms (0 = what is left of the
// counter's window), channel, message without its length.
constexpr const char* kCount = R"lua(
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local max = tonumber(ARGV[2])
if max > 0 and n >= max then
  local ms = tonumber(ARGV[3])
  if ms == 0 then ms = redis.call('PTTL', KEYS[1]) end
  if ms > 0 then
    redis.call('SET', KEYS[2], '1', 'PX', ms)
    redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. ms)
  end
end
return n
)lua";

std::optional<ClientLimits::Block> block_named(const std::string& s) {
  if (s == "harvest") return ClientLimits::Block::harvest;
  if (s == "rate") return ClientLimits::Block::rate;
  if (s == "auth0") return ClientLimits::Block::auth_mail;
  if (s == "auth1") return ClientLimits::Block::auth_admin;
  return std::nullopt;
}

int64_t ms(std::chrono::seconds s) { return int64_t(s.count()) * 1000; }

}  // namespace

RedisLimits::RedisLimits(RedisLimitSettings s, LimitSettings limits, ClientLimits& local, PopLogins& pop)
    : s_(std::move(s)), local_(local), pop_(pop), limits_(limits) {
  metrics::add("bulwark_cluster_redis_up", "", 0);  // shown as 0 until Redis answers
  local_.share(this);
  pop_.share([this](const IpAddress& ip, const std::string& user) { push({Op::pop, ip, 0, 0, user}); });
  writer_ = std::thread([this] { writer_loop(); });
  reader_ = std::thread([this] { reader_loop(); });
}

void RedisLimits::share_folders(FolderFeed feed) {
  std::lock_guard lk(folders_mu_);
  folders_ = std::move(feed);
  if (folders_.live) folders_.live(up_);
}

void RedisLimits::folder_changed(int64_t folder) {
  Op op{Op::folder, IpAddress{}, 0, 0, {}};
  op.first = folder;
  push(std::move(op));
}

void RedisLimits::share_greylist(Greylist* g) {
  greylist_ = g;
  if (g)
    g->share([this](const std::string& key, int64_t first, bool passed) {
      Op op{Op::grey, IpAddress{}, passed ? 1 : 0, 0, key};
      op.first = first;
      push(std::move(op));
    });
}

RedisLimits::~RedisLimits() {
  local_.share(nullptr);
  pop_.share(nullptr);
  if (Greylist* g = greylist_.load()) g->share(nullptr);
  stop_ = true;
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (reader_.joinable()) reader_.join();
  if (reported_up_) metrics::add("bulwark_cluster_redis_up", "", -1);
}

void RedisLimits::update(LimitSettings limits) {
  std::lock_guard lk(mu_);
  limits_ = limits;
}

void RedisLimits::push(Op op) {
  {
    std::lock_guard lk(mu_);
    if (queue_.size() >= kQueue) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
}

void RedisLimits::connections(const IpAddress& key, ClientLimits::Kind kind, uint32_t here) {
  push({Op::conns, key, int(kind), here, {}});
}
void RedisLimits::message(const IpAddress& key) { push({Op::message, key, 0, 0, {}}); }
void RedisLimits::unknown_recipient(const IpAddress& key) { push({Op::unknown, key, 0, 0, {}}); }
void RedisLimits::auth_failure(const IpAddress& key, ClientLimits::Realm realm) {
  push({Op::auth_fail, key, int(realm), 0, {}});
}

void RedisLimits::state(bool up, const std::string& why) {
  std::lock_guard lk(state_mu_);
  bool now_up = writer_up_ && reader_up_;
  {
    std::lock_guard fl(folders_mu_);
    // Not live while a part is down: a change published meanwhile may be lost.
    if (folders_.live) folders_.live(now_up);
  }
  if (now_up && !reported_up_) {
    reported_up_ = true;
    up_ = true;
    metrics::add("bulwark_cluster_redis_up", "", 1);
    logs::main().info("cluster: Redis reachable: limits, blocks and POP-before-SMTP windows count across the nodes");
  } else if (!now_up && reported_up_) {
    reported_up_ = false;
    up_ = false;
    metrics::add("bulwark_cluster_redis_up", "", -1);
  }
  if (!up) {
    auto t = std::chrono::steady_clock::now();
    if (t - last_complaint_ >= std::chrono::seconds(10)) {
      last_complaint_ = t;
      logs::main().error("cluster: Redis unreachable, limits and blocks count on this node only: {}", why);
    }
  }
}

void RedisLimits::writer_loop() {
  std::unique_ptr<redis::Conn> c;
  auto backoff = std::chrono::milliseconds(250);
  auto refresh_every = std::max<std::chrono::milliseconds>(std::chrono::seconds(1), s_.lease / 3);
  auto next_refresh = std::chrono::steady_clock::now() + refresh_every;
  while (!stop_) {
    std::deque<Op> work;
    LimitSettings lim;
    {
      std::unique_lock lk(mu_);
      cv_.wait_until(lk, std::min(next_refresh, std::chrono::steady_clock::now() + std::chrono::seconds(1)),
                     [&] { return stop_ || !queue_.empty(); });
      if (stop_) break;
      work.swap(queue_);
      lim = limits_;
    }
    // What this node has open, kept also while Redis is away (republished on return).
    for (auto& op : work) {
      if (op.kind != Op::conns) continue;
      if (op.count) own_[{op.key, op.sub}] = op.count;
      else own_.erase({op.key, op.sub});
    }
    try {
      if (!c) {
        c = redis::Conn::open(s_.url, s_.password_file);
        writer_up_ = true;
        state(true, "");
        backoff = std::chrono::milliseconds(250);
        next_refresh = std::chrono::steady_clock::now();  // everything we have open, at once
      }
      for (auto& op : work) {
        std::string ip = op.key.str();
        switch (op.kind) {
          case Op::conns:
            c->command({"PUBLISH", kChannel,
                        "c " + s_.node + " " + std::to_string(op.sub) + " " + ip + " " + std::to_string(op.count)});
            break;
          case Op::message:
            if (lim.max_messages_per_hour)
              c->command({"EVAL", kCount, "2", "bulwark:count:rate:" + ip, kBlockPrefix + std::string("rate:") + ip,
                          "3600000", std::to_string(lim.max_messages_per_hour), "0", kChannel, "b rate " + ip});
            break;
          case Op::unknown:
            if (lim.max_unknown_recipients)
              c->command({"EVAL", kCount, "2", "bulwark:count:harvest:" + ip, kBlockPrefix + std::string("harvest:") + ip,
                          std::to_string(ms(lim.harvest_block)), std::to_string(lim.max_unknown_recipients),
                          std::to_string(ms(lim.harvest_block)), kChannel, "b harvest " + ip});
            break;
          case Op::auth_fail:
            if (lim.max_auth_failures) {
              std::string b = op.sub == 0 ? "auth0" : "auth1";
              c->command({"EVAL", kCount, "2", "bulwark:count:" + b + ":" + ip, kBlockPrefix + b + ":" + ip,
                          std::to_string(ms(lim.auth_window)), std::to_string(lim.max_auth_failures),
                          std::to_string(ms(lim.auth_block)), kChannel, "b " + b + " " + ip});
            }
            break;
          case Op::pop:
            c->command({"PUBLISH", kChannel, "p " + s_.node + " " + ip + " " + op.user});
            break;
          case Op::folder:
            c->command({"PUBLISH", kChannel, "f " + s_.node + " " + std::to_string(op.first)});
            break;
          case Op::grey:
            c->command({"PUBLISH", kChannel,
                        "g " + s_.node + " " + std::to_string(op.first) + " " + std::to_string(op.sub) + " " + op.user});
            break;
        }
      }
      if (std::chrono::steady_clock::now() >= next_refresh) {
        for (auto& [k, n] : own_)
          c->command({"PUBLISH", kChannel,
                      "c " + s_.node + " " + std::to_string(k.second) + " " + k.first.str() + " " + std::to_string(n)});
        next_refresh = std::chrono::steady_clock::now() + refresh_every;
      }
    } catch (const redis::Error& e) {
      c.reset();
      writer_up_ = false;
      state(false, e.what());
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, backoff, [&] { return bool(stop_); });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

void RedisLimits::on_message(const std::string& text) {
  std::istringstream in(text);
  std::string what;
  in >> what;
  if (what == "b") {
    std::string kind, ip;
    int64_t length = 0;
    in >> kind >> ip >> length;
    auto b = block_named(kind);
    auto a = IpAddress::parse(ip);
    if (b && a && length > 0) local_.impose(*a, *b, std::chrono::milliseconds(length));
  } else if (what == "c") {
    std::string node, ip;
    int kind = 0;
    uint32_t n = 0;
    in >> node >> kind >> ip >> n;
    auto a = IpAddress::parse(ip);
    if (!a || node == s_.node || (kind != 0 && kind != 1)) return;
    auto key = std::make_pair(*a, kind);
    auto it = others_.find(key);
    if (it == others_.end()) {
      if (n == 0 || others_.size() >= kOthersTracked) return;
      it = others_.emplace(key, decltype(others_)::mapped_type{}).first;
    }
    if (n) it->second[node] = {n, std::chrono::steady_clock::now()};
    else it->second.erase(node);
    uint32_t sum = 0;
    for (auto& [_, v] : it->second) sum += v.first;
    local_.others(*a, ClientLimits::Kind(kind), sum);
    if (it->second.empty()) others_.erase(it);
  } else if (what == "f") {
    std::string node;
    int64_t folder = 0;
    in >> node >> folder;
    if (node == s_.node || folder <= 0) return;
    std::lock_guard lk(folders_mu_);
    if (folders_.changed) folders_.changed(folder);
  } else if (what == "g") {
    std::string node, key;
    int64_t first = 0;
    int passed = 0;
    in >> node >> first >> passed >> key;
    Greylist* g = greylist_.load();
    if (g && node != s_.node && !key.empty()) g->learn(key, first, passed != 0);
  } else if (what == "p") {
    std::string node, ip, user;
    in >> node >> ip >> user;
    auto a = IpAddress::parse(ip);
    if (a && node != s_.node) pop_.learn(*a, user);
  }
}

void RedisLimits::sweep(std::chrono::steady_clock::time_point now) {
  // A node that stopped renewing its counts (it died) holds nothing after `lease`.
  for (auto it = others_.begin(); it != others_.end();) {
    size_t before = it->second.size();
    std::erase_if(it->second, [&](auto& kv) { return now - kv.second.second > s_.lease; });
    if (it->second.size() != before) {
      uint32_t sum = 0;
      for (auto& [_, v] : it->second) sum += v.first;
      local_.others(it->first.first, ClientLimits::Kind(it->first.second), sum);
    }
    it = it->second.empty() ? others_.erase(it) : std::next(it);
  }
}

void RedisLimits::reader_loop() {
  auto backoff = std::chrono::milliseconds(250);
  auto next_sweep = std::chrono::steady_clock::now();
  while (!stop_) {
    try {
      auto c = redis::Conn::open(s_.url, s_.password_file);
      // The blocks in force, then what comes.
      std::string cursor = "0";
      size_t seen = 0;
      do {
        auto r = c->command({"SCAN", cursor, "MATCH", std::string(kBlockPrefix) + "*", "COUNT", "1000"});
        if (r.type != redis::Reply::array || r.items.size() != 2) break;
        cursor = r.items[0].text;
        for (auto& k : r.items[1].items) {
          if (++seen > kOthersTracked) break;
          std::string rest = k.text.substr(std::string(kBlockPrefix).size());
          auto colon = rest.find(':');
          if (colon == std::string::npos) continue;
          auto b = block_named(rest.substr(0, colon));
          auto a = IpAddress::parse(rest.substr(colon + 1));
          auto ttl = c->command({"PTTL", k.text});
          if (b && a && ttl.type == redis::Reply::integer && ttl.number > 0)
            local_.impose(*a, *b, std::chrono::milliseconds(ttl.number));
        }
      } while (cursor != "0" && seen <= kOthersTracked && !stop_);
      c->send({"SUBSCRIBE", kChannel});
      reader_up_ = true;
      state(true, "");
      backoff = std::chrono::milliseconds(250);
      while (!stop_) {
        auto m = c->read(std::chrono::milliseconds(500));
        if (m && m->type == redis::Reply::array && m->items.size() == 3 && m->items[0].text == "message")
          on_message(m->items[2].text);
        auto now = std::chrono::steady_clock::now();
        if (now >= next_sweep) {
          sweep(now);
          next_sweep = now + std::chrono::seconds(1);
        }
      }
    } catch (const redis::Error& e) {
      reader_up_ = false;
      state(false, e.what());
      sweep(std::chrono::steady_clock::now());
      auto until = std::chrono::steady_clock::now() + backoff;
      while (!stop_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

}  // namespace bulwark
