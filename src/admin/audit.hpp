// admin/: `bulwark audit` -- a security review of the configuration, the certificate,
// the data directory and the directory of users (SPEC 4). Read-only.
#pragma once
#include <string>
#include <vector>

#include "config/config.hpp"

namespace bulwark {

class Directory;

struct Finding {
  enum Level { warning, notice } level = warning;
  std::string text;
};

// `dir` may be null in cluster mode when the directory cannot be opened (PostgreSQL
// unreachable, a schema of another version): the findings then say why.
std::vector<Finding> audit(const Config& cfg, Directory* dir);

}  // namespace bulwark
