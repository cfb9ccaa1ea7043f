// serve.hpp: `bulwark serve`, and the directory as serve and the admin commands open it.
#pragma once
#include <memory>

#include "config/config.hpp"
#include "directory/directory.hpp"

namespace bulwark {

// Runs the server until SIGTERM/SIGINT; the process's exit code.
int serve(const Config& cfg);

// The directory: embedded (SQLite) or, in cluster mode, PostgreSQL's. A serving node
// (`serving`) makes the schema when the database has none (the first node; under a
// lock) and refuses one of another version; the admin commands only check.
std::unique_ptr<Directory> open_directory(const Config& cfg, bool serving);

}  // namespace bulwark
