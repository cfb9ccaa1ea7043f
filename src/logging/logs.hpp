// logging/: the three logs. mail.log (one line per accepted message and per delivery),
// security.log (every refusal for a policy reason), bulwark.log (server events, also
// on stderr). Every line starts with an ISO-8601 UTC timestamp. Callers pass values
// through sanitize() when they come from the network. Depends on spdlog only.
#pragma once
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace bulwark::logs {

// Opens the files under log_dir (created if needed). Without init, all three go to stderr.
void init(const std::string& log_dir, bool also_stderr = true);
spdlog::logger& mail();
spdlog::logger& security();
spdlog::logger& main();
void flush();

}  // namespace bulwark::logs
