// cluster/: what `bulwark audit` reads from a libpq conninfo.
#include <gtest/gtest.h>

#include "cluster/shared_settings.hpp"
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

#include "cluster/redis.hpp"

TEST(ClusterRedisUrl, Forms) {
  using bulwark::redis::parse_url;
  auto u = parse_url("rediss://redis.example.com:6380/2");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "redis.example.com");
  EXPECT_EQ(u->port, "6380");
  EXPECT_EQ(u->db, 2);
  u = parse_url("redis://[::1]:7000");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, "7000");
  EXPECT_EQ(parse_url("redis://10.0.0.1")->port, "6379");
  EXPECT_FALSE(parse_url("redis://:secret@host:6379/0"));  // passwords come from a file
  EXPECT_FALSE(parse_url("http://host"));
  EXPECT_FALSE(parse_url("redis://host:port/0"));
  EXPECT_FALSE(parse_url("redis://host/x"));
}

TEST(SharedSettings, SplitKeepsEachMachinesOwnKeysOut) {
  auto patch = nlohmann::json::parse(
      R"({"limits": {"max_recipients": 2}, "server": {"hostname": "mx1.example.test", "postmaster": "pm@example.test"},
          "tls": {"min_version": "1.3", "certificate": "/etc/mx1.pem"}, "cluster": {"lease": "5m"}})");
  auto [shared, own] = bulwark::cluster::split_patch(patch);
  EXPECT_EQ(shared, nlohmann::json::parse(R"({"limits": {"max_recipients": 2}, "server": {"postmaster": "pm@example.test"},
                                             "tls": {"min_version": "1.3"}})"));
  EXPECT_EQ(own, nlohmann::json::parse(R"({"server": {"hostname": "mx1.example.test"},
                                          "tls": {"certificate": "/etc/mx1.pem"}, "cluster": {"lease": "5m"}})"));
}

TEST(SharedSettings, MergeKeepsNullsAsBackToTheDefault) {
  auto into = nlohmann::json::parse(R"({"limits": {"max_recipients": 2, "max_hops": 30}, "spf": {"mode": "mark"}})");
  bulwark::cluster::merge_keeping_nulls(into, nlohmann::json::parse(R"({"limits": {"max_recipients": null},
                                                                        "ip_groups": {"office": ["192.0.2.0/24"]}})"));
  EXPECT_EQ(into, nlohmann::json::parse(R"({"limits": {"max_recipients": null, "max_hops": 30}, "spf": {"mode": "mark"},
                                            "ip_groups": {"office": ["192.0.2.0/24"]}})"));
}
