// net/: what `serve` checks of a configuration beyond load_config before it takes a
// connection -- the TLS certificate and key load and match, the relay password file
// holds a password, server.user exists (when started as root). check-config, the
// settings API (before it writes), a reload and serve all make these same checks, so
// that a configuration one of them accepts the others accept too. Nothing is written
// (a missing self-signed certificate is made by serve, not here).
#pragma once
#include "config/config.hpp"

namespace bulwark {

// Throws ConfigError "FILE:LINE: key: what is wrong".
void preflight(const Config& cfg);

}  // namespace bulwark
