// admin/: `bulwark cluster import --from-config OLD` (SPEC 16): a single-machine
// installation copied into the cluster -- its directory, its DKIM keys, and its
// mailboxes with their UIDVALIDITY, UIDs, MODSEQs, flags, keywords, \Recent marker and
// subscriptions, so that clients do not resync. Resumable (killed, run again: it goes on where it was)
// and idempotent (what is there already is left as it is); the old data is only read.
#pragma once
#include <ostream>
#include <string>

#include "cluster/pg.hpp"
#include "config/config.hpp"

namespace bulwark {

class Directory;
namespace store {
class PgStore;
}

// `old` is the old installation's configuration (refused when it is a cluster node's).
// Progress and the summary go to `out`; throws std::runtime_error on what stops it.
void cluster_import(const Config& old, Directory& to, store::PgStore& mail, pg::Conn& conn, std::ostream& out);

}  // namespace bulwark
