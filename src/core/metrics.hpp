// core/: the server's counters, gauges and histograms for `/metrics` (Prometheus text
// format, SPEC 15) and the admin status. One registry per process; label values come
// only from the server's own vocabulary (service names, reply codes, TLS versions,
// results), never from what a peer sends, so the number of series is bounded.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::metrics {

// A counter (or a gauge, with n < 0 to go down) by name and label text, e.g.
// add("bulwark_connections_total", "service=\"smtp\"").
void add(std::string_view name, std::string_view labels = {}, int64_t n = 1);
// One observation of a duration for a histogram (buckets 1 ms .. 30 s).
void observe(std::string_view name, std::string_view labels, double seconds);
// A value set at scrape time (queue size...): rendered with the rest.
struct Sample {
  std::string name, labels;
  double value;
};
// The whole registry in the Prometheus text exposition format (0.0.4), with `extra`.
std::string render(const std::vector<Sample>& extra = {});
// The current value of a counter or gauge (0 when never touched): for the status.
int64_t value(std::string_view name, std::string_view labels = {});
// Messages accepted and refused in each of the last `hours` hours, oldest first.
std::vector<std::pair<int64_t, int64_t>> per_hour(size_t hours = 24);
// Counted by the SMTP driver: one accepted message; one refusal (the per-hour view).
void hour_accepted();
void hour_refused();

}  // namespace bulwark::metrics
