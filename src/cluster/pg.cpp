#include "cluster/pg.hpp"

#include "core/strings.hpp"

#include <fstream>

namespace bulwark::pg {

namespace {

std::string trim_message(const char* m) {
  std::string s = m ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (auto& ch : s)
    if (ch == '\n') ch = ' ';
  return s;
}


}  // namespace

int64_t Result::integer(int row, int col) const {
  if (null(row, col)) return 0;
  return std::stoll(text(row, col));
}

std::string Result::bytes(int row, int col) const {
  std::string t = text(row, col);
  std::string out;
  if (t.size() < 2 || t[0] != '\\' || t[1] != 'x') return out;
  out.reserve((t.size() - 2) / 2);
  for (size_t i = 2; i + 1 < t.size(); i += 2) out.push_back(char(hex_digit(t[i]) << 4 | hex_digit(t[i + 1])));
  return out;
}

int64_t Result::affected() const {
  const char* n = r_ ? PQcmdTuples(r_.get()) : "";
  return *n ? std::stoll(n) : 0;
}

std::unique_ptr<Conn> Conn::open(const Settings& s) {
  std::string password;
  if (!s.password_file.empty()) {
    std::ifstream in(s.password_file);
    if (!in) throw Error("cannot read " + s.password_file, "", true);
    std::getline(in, password);
    while (!password.empty() && (password.back() == '\r' || password.back() == '\n')) password.pop_back();
  }
  std::string timeout = std::to_string(s.connect_timeout);
  // The conninfo is expanded first; what follows overrides it.
  std::vector<const char*> keys{"dbname", "application_name", "connect_timeout"};
  std::vector<const char*> values{s.conninfo.c_str(), s.application.c_str(), timeout.c_str()};
  if (!password.empty()) {
    keys.push_back("password");
    values.push_back(password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* c = PQconnectdbParams(keys.data(), values.data(), 1);
  std::fill(password.begin(), password.end(), '\0');
  if (!c) throw Error("PostgreSQL: out of memory", "", true);
  if (PQstatus(c) != CONNECTION_OK) {
    std::string why = trim_message(PQerrorMessage(c));
    PQfinish(c);
    throw Error("PostgreSQL: cannot connect: " + why, "", true);
  }
  // Quiet: NOTICEs (e.g. "relation already exists, skipping") are not for our logs.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<Conn>(new Conn(c));
}

Conn::~Conn() { PQfinish(c_); }

bool Conn::ok() const { return PQstatus(c_) == CONNECTION_OK; }

std::string Conn::server() const {
  const char* h = PQhost(c_);
  const char* p = PQport(c_);
  return std::string(h ? h : "?") + ":" + (p ? p : "?");
}

Result Conn::check(PGresult* r, const char* what) {
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Result(r);
  std::string state;
  if (r) {
    const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (s) state = s;
  }
  std::string msg = trim_message(r ? PQresultErrorMessage(r) : PQerrorMessage(c_));
  if (msg.empty()) msg = trim_message(PQerrorMessage(c_));
  PQclear(r);
  bool lost = PQstatus(c_) != CONNECTION_OK || state.rfind("08", 0) == 0 || state.rfind("57P", 0) == 0;
  if (lost) prepared_.clear();
  throw Error(std::string("PostgreSQL: ") + what + ": " + msg, state, lost);
}

Result Conn::exec(const char* sql, std::initializer_list<Param> params) {
  return exec(sql, std::vector<Param>(params));
}

Result Conn::exec(const char* sql, const std::vector<Param>& params) {
  if (PQstatus(c_) != CONNECTION_OK) {
    PQreset(c_);  // one try to come back (after a restart of the server)
    prepared_.clear();
    if (PQstatus(c_) != CONNECTION_OK) throw Error("PostgreSQL: connection lost: " + trim_message(PQerrorMessage(c_)), "", true);
  }
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = "s" + std::to_string(prepared_.size() + 1);
    check(PQprepare(c_, name.c_str(), sql, int(params.size()), nullptr), "prepare");
    it = prepared_.emplace(sql, name).first;
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  return check(PQexecPrepared(c_, it->second.c_str(), int(values.size()), values.data(), nullptr, nullptr, 0), "query");
}

Result Conn::run(const std::string& sql) { return check(PQexec(c_, sql.c_str()), "query"); }

Result Conn::run(const std::string& sql, const std::vector<Param>& params) {
  std::vector<const char*> values;
  for (auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  return check(PQexecParams(c_, sql.c_str(), int(values.size()), nullptr, values.data(), nullptr, nullptr, 0), "query");
}

Pool::Lease::~Lease() {
  if (!p_) return;
  std::lock_guard lk(p_->mu_);
  --p_->out_;
  if (c_ && c_->ok()) p_->idle_.push_back(std::move(c_));
  p_->cv_.notify_one();
}

Pool::Lease Pool::get(std::chrono::milliseconds wait) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, wait, [&] { return !idle_.empty() || out_ < max_; }))
    throw Error("PostgreSQL: no free connection within " + std::to_string(wait.count()) + " ms", "", true);
  ++out_;
  if (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(c));
  }
  lk.unlock();
  try {
    return Lease(this, Conn::open(s_));
  } catch (...) {
    std::lock_guard again(mu_);
    --out_;
    cv_.notify_one();
    throw;
  }
}

Transaction::Transaction(Conn& c, const char* begin) : c_(c) { c_.run(begin); }

Transaction::~Transaction() {
  if (done_) return;
  try {
    if (c_.ok()) c_.run("ROLLBACK");
  } catch (...) {
    // The connection went: the server rolled back already.
  }
}

void Transaction::commit() {
  done_ = true;
  c_.run("COMMIT");
}

std::optional<Target> target(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (!opts) {
    PQfreemem(err);
    return std::nullopt;
  }
  Target t;
  std::string sslmode = "prefer", hostaddr;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    std::string k = o->keyword;
    if (k == "host") t.host = o->val;
    else if (k == "hostaddr") hostaddr = o->val;
    else if (k == "sslmode") sslmode = o->val;
  }
  PQconninfoFree(opts);
  if (t.host.empty()) t.host = hostaddr;
  t.tls_required = sslmode == "require" || sslmode == "verify-ca" || sslmode == "verify-full";
  t.local = t.host.empty() || t.host.front() == '/' || t.host == "localhost" || t.host.rfind("127.", 0) == 0 ||
            t.host == "::1";
  return t;
}

std::string bytea(const std::string& raw) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + raw.size() * 2);
  for (unsigned char ch : raw) {
    out += hex[ch >> 4];
    out += hex[ch & 15];
  }
  return out;
}

bool retryable(const Error& e) { return e.sqlstate == "40001" || e.sqlstate == "40P01"; }

}  // namespace bulwark::pg
