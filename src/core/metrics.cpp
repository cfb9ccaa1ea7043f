// core/metrics.cpp: see metrics.hpp.
#include "core/metrics.hpp"

#include <array>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>

namespace bulwark::metrics {

namespace {

struct Help {
  const char* name;
  const char* type;
  const char* text;
};

// Every family the server exports, with its help line (a name not listed here is
// exported as untyped).
constexpr Help kHelp[] = {
    {"bulwark_connections_total", "counter", "Connections accepted, by service."},
    {"bulwark_connections", "gauge", "Connections open now, by service."},
    {"bulwark_connections_refused_total", "counter", "Connections refused before the greeting, by service and reason."},
    {"bulwark_tls_handshakes_total", "counter", "Completed TLS handshakes (implicit and STARTTLS), by protocol version."},
    {"bulwark_messages_accepted_total", "counter", "Messages accepted (250 after DATA), by service."},
    {"bulwark_smtp_refusals_total", "counter", "SMTP replies 4xx/5xx sent, by reply code and enhanced status code."},
    {"bulwark_deliveries_total", "counter", "Delivery outcomes per recipient, by route (local, remote) and result."},
    {"bulwark_auth_failures_total", "counter", "Failed logins, by protocol."},
    {"bulwark_smtp_accept_seconds", "histogram", "From the end of DATA to the reply: checks and the durable commit."},
    {"bulwark_admin_request_seconds", "histogram", "Admin API requests, from parsed to answered."},
    {"bulwark_queue_messages", "gauge", "Messages in the queue."},
    {"bulwark_queue_oldest_seconds", "gauge", "Age of the oldest queued message."},
    {"bulwark_uptime_seconds", "gauge", "Seconds since the server started."},
};

constexpr std::array<double, 11> kBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30};

struct Histogram {
  std::array<uint64_t, kBuckets.size()> counts{};
  uint64_t count = 0;
  double sum = 0;
};

struct Hour {
  int64_t hour = -1;
  int64_t accepted = 0, refused = 0;
};

struct Registry {
  std::mutex mu;
  std::map<std::string, std::map<std::string, int64_t>, std::less<>> values;      // name -> labels -> value
  std::map<std::string, std::map<std::string, Histogram>, std::less<>> histograms;
  std::array<Hour, 24> hours{};
};

Registry& reg() {
  static Registry r;
  return r;
}

const Help* help_of(std::string_view name) {
  for (auto& h : kHelp)
    if (name == h.name) return &h;
  return nullptr;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string series(std::string_view name, std::string_view labels, std::string_view extra = {}) {
  std::string s(name);
  if (!labels.empty() || !extra.empty()) {
    s += '{';
    s += labels;
    if (!labels.empty() && !extra.empty()) s += ',';
    s += extra;
    s += '}';
  }
  return s;
}

int64_t current_hour() {
  return std::chrono::duration_cast<std::chrono::hours>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void hour_add(bool accepted) {
  int64_t h = current_hour();
  auto& r = reg();
  std::lock_guard lk(r.mu);
  Hour& slot = r.hours[size_t(h % 24)];
  if (slot.hour != h) slot = Hour{h, 0, 0};
  (accepted ? slot.accepted : slot.refused) += 1;
}

}  // namespace

void add(std::string_view name, std::string_view labels, int64_t n) {
  auto& r = reg();
  std::lock_guard lk(r.mu);
  auto fam = r.values.find(name);
  if (fam == r.values.end()) fam = r.values.emplace(std::string(name), std::map<std::string, int64_t>{}).first;
  auto it = fam->second.find(std::string(labels));
  if (it == fam->second.end()) it = fam->second.emplace(std::string(labels), 0).first;
  it->second += n;
}

void observe(std::string_view name, std::string_view labels, double seconds) {
  auto& r = reg();
  std::lock_guard lk(r.mu);
  auto fam = r.histograms.find(name);
  if (fam == r.histograms.end()) fam = r.histograms.emplace(std::string(name), std::map<std::string, Histogram>{}).first;
  Histogram& h = fam->second[std::string(labels)];
  for (size_t i = 0; i < kBuckets.size(); ++i)
    if (seconds <= kBuckets[i]) ++h.counts[i];
  ++h.count;
  h.sum += seconds;
}

int64_t value(std::string_view name, std::string_view labels) {
  auto& r = reg();
  std::lock_guard lk(r.mu);
  auto fam = r.values.find(name);
  if (fam == r.values.end()) return 0;
  auto it = fam->second.find(std::string(labels));
  return it == fam->second.end() ? 0 : it->second;
}

void hour_accepted() { hour_add(true); }
void hour_refused() { hour_add(false); }

std::vector<std::pair<int64_t, int64_t>> per_hour(size_t hours) {
  hours = std::min<size_t>(hours, 24);
  int64_t now = current_hour();
  auto& r = reg();
  std::lock_guard lk(r.mu);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t h = now - int64_t(hours) + 1; h <= now; ++h) {
    const Hour& slot = r.hours[size_t(h % 24)];
    out.emplace_back(slot.hour == h ? slot.accepted : 0, slot.hour == h ? slot.refused : 0);
  }
  return out;
}

std::string render(const std::vector<Sample>& extra) {
  std::string out;
  auto header = [&out](std::string_view name, const char* fallback_type) {
    const Help* h = help_of(name);
    if (h) out += "# HELP " + std::string(name) + " " + h->text + "\n";
    out += "# TYPE " + std::string(name) + " " + (h ? h->type : fallback_type) + "\n";
  };
  auto& r = reg();
  {
    std::lock_guard lk(r.mu);
    for (auto& [name, byl] : r.values) {
      header(name, "untyped");
      for (auto& [labels, v] : byl) out += series(name, labels) + " " + std::to_string(v) + "\n";
    }
    for (auto& [name, byl] : r.histograms) {
      header(name, "histogram");
      for (auto& [labels, h] : byl) {
        for (size_t i = 0; i < kBuckets.size(); ++i)
          out += series(name + std::string("_bucket"), labels, "le=\"" + number(kBuckets[i]) + "\"") + " " +
                 std::to_string(h.counts[i]) + "\n";
        out += series(name + std::string("_bucket"), labels, "le=\"+Inf\"") + " " + std::to_string(h.count) + "\n";
        out += series(name + std::string("_sum"), labels) + " " + number(h.sum) + "\n";
        out += series(name + std::string("_count"), labels) + " " + std::to_string(h.count) + "\n";
      }
    }
  }
  std::string last;
  for (auto& s : extra) {
    if (s.name != last) header(s.name, "gauge");
    last = s.name;
    out += series(s.name, s.labels) + " " + number(s.value) + "\n";
  }
  return out;
}

}  // namespace bulwark::metrics
