#include "cluster/dkim_keys.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <map>
#include <set>

#include "crypt/crypt.hpp"
#include "dkim/dkim.hpp"
#include "logging/logs.hpp"

namespace bulwark::cluster {

namespace {

std::string stored(const crypt::DataKey* key, const std::string& pem) { return key ? crypt::seal(*key, pem) : pem; }

std::optional<std::string> plain(const crypt::DataKey* key, const std::string& data, bool sealed) {
  if (!sealed) return data;
  if (!key) return std::nullopt;
  return crypt::open(*key, data);
}

}  // namespace

void dkim_published(pg::Conn& c, const std::string& data_dir, const std::string& domain, const std::string& selector,
                    const crypt::DataKey* key) {
  for (auto& k : dkim::list_keys(data_dir, domain)) {
    if (k.selector != selector) continue;
    auto pem = dkim::key_pem(k);
    if (!pem) throw std::runtime_error("cannot read " + k.path);
    pg::Transaction t(c);
    c.exec("DELETE FROM dkim_removed WHERE domain=$1 AND selector=$2", {k.domain, k.selector});
    c.exec("INSERT INTO dkim_keys(domain, selector, pem, sealed) VALUES($1, $2, $3::bytea, $4) "
           "ON CONFLICT (domain, selector) DO UPDATE SET pem = EXCLUDED.pem, sealed = EXCLUDED.sealed",
           {k.domain, k.selector, pg::bytea(stored(key, *pem)), key ? "t" : "f"});
    t.commit();
  }
}

size_t dkim_import(pg::Conn& c, const std::string& data_dir, const crypt::DataKey* key) {
  size_t n = 0;
  for (auto& k : dkim::list_keys(data_dir)) {
    if (c.exec("SELECT 1 FROM dkim_removed WHERE domain=$1 AND selector=$2", {k.domain, k.selector}).rows()) continue;
    auto pem = dkim::key_pem(k);
    if (!pem) throw std::runtime_error("cannot read " + k.path);
    n += size_t(c.exec("INSERT INTO dkim_keys(domain, selector, pem, sealed) VALUES($1, $2, $3::bytea, $4) "
                       "ON CONFLICT DO NOTHING",
                       {k.domain, k.selector, pg::bytea(stored(key, *pem)), key ? "t" : "f"})
                    .affected());
  }
  return n;
}

void dkim_removed(pg::Conn& c, const std::string& domain, const std::string& selector) {
  pg::Transaction t(c);
  c.exec("DELETE FROM dkim_keys WHERE domain=$1 AND selector=$2", {domain, selector});
  c.exec("INSERT INTO dkim_removed(domain, selector) VALUES($1, $2) ON CONFLICT DO NOTHING", {domain, selector});
  t.commit();
}

std::string dkim_sync(pg::Conn& c, const std::string& data_dir, const crypt::DataKey* key) {
  std::map<std::pair<std::string, std::string>, std::string> shared;  // (domain, selector) -> PEM
  auto r = c.exec("SELECT domain, selector, pem, sealed FROM dkim_keys");
  for (int i = 0; i < r.rows(); ++i) {
    auto pem = plain(key, r.bytes(i, 2), r.text(i, 3) == "t");
    if (pem) shared[{r.text(i, 0), r.text(i, 1)}] = std::move(*pem);
  }
  std::set<std::pair<std::string, std::string>> removed;
  auto x = c.exec("SELECT domain, selector FROM dkim_removed");
  for (int i = 0; i < x.rows(); ++i) removed.insert({x.text(i, 0), x.text(i, 1)});
  std::string changed;
  std::set<std::pair<std::string, std::string>> here;
  for (auto& k : dkim::list_keys(data_dir)) {
    std::pair<std::string, std::string> id{k.domain, k.selector};
    here.insert(id);
    if (removed.count(id)) {
      dkim::remove_key(data_dir, k.domain, k.selector);
      changed += " removed " + k.selector + "._domainkey." + k.domain;
      continue;
    }
    auto pem = dkim::key_pem(k);
    if (!pem) continue;
    auto it = shared.find(id);
    if (it == shared.end()) {  // made here (before cluster mode, or while PostgreSQL was away): up
      c.exec("INSERT INTO dkim_keys(domain, selector, pem, sealed) VALUES($1, $2, $3::bytea, $4) ON CONFLICT DO NOTHING",
             {k.domain, k.selector, pg::bytea(stored(key, *pem)), key ? "t" : "f"});
      changed += " shared " + k.selector + "._domainkey." + k.domain;
    } else if (it->second != *pem) {  // made on two nodes at once: the shared one wins
      dkim::install_key(data_dir, k.domain, k.selector, it->second);
      changed += " replaced " + k.selector + "._domainkey." + k.domain;
    }
  }
  for (auto& [id, pem] : shared) {
    if (here.count(id)) continue;
    dkim::install_key(data_dir, id.first, id.second, pem);
    changed += " added " + id.second + "._domainkey." + id.first;
  }
  return changed;
}

DkimFollower::DkimFollower(pg::Settings s, std::string data_dir, const crypt::DataKey* key, std::chrono::seconds every)
    : s_(std::move(s)), data_dir_(std::move(data_dir)), key_(key), every_(every) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] {
    std::unique_ptr<pg::Conn> c;
    while (!stop_) {
      try {
        if (!c) c = pg::Conn::open(s_);
        std::string changed = dkim_sync(*c, data_dir_, key_);
        if (!changed.empty()) logs::main().info("cluster: DKIM keys:{}", changed);
      } catch (const std::exception& e) {
        c.reset();  // PostgreSQL away: the keys here stay as they are
      }
      pollfd w{wake_fd_, POLLIN, 0};
      ::poll(&w, 1, int(every_.count() * 1000));
    }
  });
}

DkimFollower::~DkimFollower() {
  stop_ = true;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::close(wake_fd_);
}

}  // namespace bulwark::cluster
