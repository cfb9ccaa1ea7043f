// Generated at configure time from the repository's reports/ folder (CMakeLists.txt).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace bulwark {
// ("en/failed.txt", text) pairs.
const std::vector<std::pair<std::string, std::string>>& builtin_reports();
}  // namespace bulwark
