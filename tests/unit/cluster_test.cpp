// cluster/: what `bulwark audit` reads from a libpq conninfo.
#include <gtest/gtest.h>

#include "cluster/pg.hpp"
#include "cluster/schema.hpp"

using bulwark::pg::target;

TEST(ClusterConninfo, RemoteWithoutTlsIsFlagged) {
  auto t = target("host=db.example.com dbname=bulwark user=bulwark");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->host, "db.example.com");
  EXPECT_FALSE(t->local);
  EXPECT_FALSE(t->tls_required);  // libpq's default, prefer, falls back to clear text
}

TEST(ClusterConninfo, TlsModesAndLocalTargets) {
  EXPECT_TRUE(target("host=db sslmode=verify-full")->tls_required);
  EXPECT_TRUE(target("postgresql://db/bulwark?sslmode=require")->tls_required);
  EXPECT_FALSE(target("host=db sslmode=allow")->tls_required);
  EXPECT_TRUE(target("host=127.0.0.1 port=5432")->local);
  EXPECT_TRUE(target("host=/run/postgresql")->local);
  EXPECT_TRUE(target("dbname=bulwark")->local);
  EXPECT_FALSE(target("hostaddr=192.0.2.7")->local);
  EXPECT_FALSE(target("host='unterminated"));
}

TEST(ClusterSchema, VersionIsTheNumberOfMigrations) { EXPECT_GE(bulwark::cluster::schema_version(), 1); }
