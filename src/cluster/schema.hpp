// cluster/schema.hpp: the PostgreSQL schema of cluster mode, versioned. Migrations are
// one list in schema.cpp, applied in order, each in its own transaction, under an
// advisory lock (two nodes starting at once do not both migrate). A node refuses a
// database whose version it does not know (SPEC 16).
#pragma once
#include <string>

#include "cluster/pg.hpp"

namespace bulwark::cluster {

// The version this build knows.
int schema_version();
// The database's version; 0 when it has no schema yet.
int database_version(pg::Conn& c);
// Creates or upgrades the schema; returns the version it was before. Throws
// pg::Error, or std::runtime_error when the database is newer than this build.
int migrate(pg::Conn& c);
// Throws std::runtime_error naming both versions unless the database has this build's.
void require_version(pg::Conn& c);

}  // namespace bulwark::cluster
