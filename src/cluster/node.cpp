#include "cluster/node.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace bulwark::cluster {

Heartbeat::Heartbeat(const pg::Settings& s, std::string node, std::string version, std::string address,
                     std::function<int64_t()> sessions, std::function<void(pg::Conn&)> chores,
                     std::chrono::seconds every, std::chrono::seconds chores_every)
    : settings_(s),
      node_(std::move(node)),
      version_(std::move(version)),
      address_(std::move(address)),
      sessions_(std::move(sessions)),
      chores_(std::move(chores)),
      every_(every),
      chores_every_(chores_every) {
  auto c = pg::Conn::open(settings_);
  // Another process beating under this name within the last three beats: a second node
  // with the same name would share its leases. Refuse -- unless it was this machine's
  // and that process is gone (a restart after kill -9 or a crash).
  auto r = c->exec("SELECT pid, address FROM nodes WHERE name=$1 AND heartbeat > now() - $2::interval",
                   {node_, std::to_string(every_.count() * 3) + " seconds"});
  if (r.rows()) {
    std::string addr = r.text(0, 1);
    pid_t pid = pid_t(r.integer(0, 0));
    auto host = [](const std::string& a) { return a.substr(0, a.find('/')); };
    bool ours_and_gone = host(addr) == host(address_) && (pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH));
    if (!ours_and_gone)
      throw std::runtime_error("cluster.node \"" + node_ + "\" is in use by a live node (" + addr + ", pid " +
                               std::to_string(pid) + "): each node needs a name of its own");
  }
  c->exec(
      "INSERT INTO nodes(name, version, address, pid, started, heartbeat, sessions) VALUES($1,$2,$3,$4,now(),now(),0) "
      "ON CONFLICT(name) DO UPDATE SET version=$2, address=$3, pid=$4, started=now(), heartbeat=now(), sessions=0",
      {node_, version_, address_, std::to_string(::getpid())});
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this, conn = std::shared_ptr<pg::Conn>(std::move(c))]() mutable {
    auto chores_due = std::chrono::steady_clock::now();
    while (!stop_) {
      pollfd w{wake_fd_, POLLIN, 0};
      ::poll(&w, 1, int(every_.count() * 1000));
      if (stop_) break;
      try {
        if (!conn) conn = pg::Conn::open(settings_);
        beat(*conn);
        if (chores_ && std::chrono::steady_clock::now() >= chores_due) {
          chores_due = std::chrono::steady_clock::now() + chores_every_;
          chores_(*conn);
        }
      } catch (const std::exception&) {
        conn.reset();  // the directory's follower says so in the log; try again next beat
      }
    }
  });
}

Heartbeat::~Heartbeat() {
  stop_ = true;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::close(wake_fd_);
}

void Heartbeat::beat(pg::Conn& c) {
  c.exec("UPDATE nodes SET heartbeat=now(), sessions=$2 WHERE name=$1",
         {node_, std::to_string(sessions_ ? sessions_() : 0)});
}

std::vector<NodeStatus> nodes(pg::Conn& c) {
  std::vector<NodeStatus> out;
  auto r = c.run(
      "SELECT name, version, address, pid, sessions, EXTRACT(EPOCH FROM now() - heartbeat), "
      "to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
      "(SELECT count(*) FROM queue q WHERE q.holder = nodes.name) FROM nodes ORDER BY name");
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.integer(i, 3), r.integer(i, 4), std::stod(r.text(i, 5)),
                   r.text(i, 6), r.integer(i, 7)});
  return out;
}

}  // namespace bulwark::cluster
