// The SQLite directory on a temporary data dir: logins, the Argon2id upgrade,
// sender identity and delegations.
#include <gtest/gtest.h>

#include "temp_dir.hpp"
#include <sodium.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "directory/directory.hpp"

using namespace bulwark;

namespace {
using test::TempDir;

Address addr(const char* s) { return *parse_mailbox(s); }

std::string stored_hash(const std::filesystem::path& dir, const std::string& key) {
  sqlite3* db = nullptr;
  sqlite3_open((dir / "directory.db").c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT password_hash FROM users WHERE key=?", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  std::string out = sqlite3_step(st) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : "";
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

void set_hash(const std::filesystem::path& dir, const std::string& key, const std::string& hash) {
  sqlite3* db = nullptr;
  sqlite3_open((dir / "directory.db").c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "UPDATE users SET password_hash=? WHERE key=?", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, hash.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, key.c_str(), -1, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);
}
}  // namespace

TEST(Directory, LoginIsCaseInsensitiveAndStoresNoPlaintext) {
  TempDir t;
  auto d = Directory::open(t.path);
  d->add_domain("example.test", true);
  d->add_user(addr("Demo@Example.Test"), "Correct-Horse-9");
  EXPECT_EQ(d->verify_login("demo@example.test", "Correct-Horse-9"), "demo@example.test");
  EXPECT_EQ(d->verify_login("DEMO@EXAMPLE.TEST", "Correct-Horse-9"), "demo@example.test");
  EXPECT_FALSE(d->verify_login("demo@example.test", "correct-horse-9"));
  EXPECT_FALSE(d->verify_login("nobody@example.test", "Correct-Horse-9"));
  EXPECT_FALSE(d->verify_login("not an address", "Correct-Horse-9"));
  auto scram = d->scram_secret("demo@example.test");
  ASSERT_TRUE(scram);
  EXPECT_EQ(scram->iterations, auth::scram_iterations);
  EXPECT_FALSE(d->cram_md5_secret("demo@example.test"));  // not enabled for this user
  EXPECT_EQ(stored_hash(t.path, "demo@example.test").rfind("$argon2id$", 0), 0u);
}

TEST(Directory, OldArgon2ParametersAreUpgradedAtLogin) {
  TempDir t;
  auto d = Directory::open(t.path);
  d->add_domain("example.test", true);
  d->add_user(addr("demo@example.test"), "Correct-Horse-9");
  // A hash as an older release (weaker parameters) would have written it.
  ASSERT_EQ(sodium_init() >= 0, true);
  char weak[crypto_pwhash_STRBYTES];
  std::string pw = "Correct-Horse-9";
  ASSERT_EQ(crypto_pwhash_str_alg(weak, pw.data(), pw.size(), 1, 8192 * 1024, crypto_pwhash_ALG_ARGON2ID13), 0);
  set_hash(t.path, "demo@example.test", weak);
  ASSERT_TRUE(auth::needs_rehash(stored_hash(t.path, "demo@example.test")));
  // A wrong password changes nothing.
  EXPECT_FALSE(d->verify_login("demo@example.test", "Wrong-Horse-9"));
  EXPECT_EQ(stored_hash(t.path, "demo@example.test"), weak);
  // The right one logs in and leaves a current hash behind.
  EXPECT_TRUE(d->verify_login("demo@example.test", pw));
  std::string now = stored_hash(t.path, "demo@example.test");
  EXPECT_NE(now, weak);
  EXPECT_FALSE(auth::needs_rehash(now));
  EXPECT_TRUE(d->verify_login("demo@example.test", pw));
}

// Issue 8.10: lookups must not queue behind a writer. Another process (the admin CLI)
// holds the write lock while a login's hash upgrade waits for it (up to 5 s, holding
// the writer); a recipient lookup and a SCRAM secret read still answer at once.
TEST(Directory, LookupsDoNotWaitForAWriter) {
  TempDir t;
  auto d = Directory::open(t.path);
  d->add_domain("example.test", true);
  d->add_user(addr("demo@example.test"), "Correct-Horse-9");
  ASSERT_EQ(sodium_init() >= 0, true);
  char weak[crypto_pwhash_STRBYTES];
  std::string pw = "Correct-Horse-9";
  ASSERT_EQ(crypto_pwhash_str_alg(weak, pw.data(), pw.size(), 1, 8192 * 1024, crypto_pwhash_ALG_ARGON2ID13), 0);
  set_hash(t.path, "demo@example.test", weak);
  ASSERT_EQ(d->resolve(addr("demo@example.test")).kind, Resolution::local);  // a reader exists

  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open((t.path / "directory.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::atomic<bool> login_done{false};
  std::thread login([&] {
    EXPECT_TRUE(d->verify_login("demo@example.test", pw));  // its rehash UPDATE waits for `other`
    login_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the login is now waiting
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(d->resolve(addr("demo@example.test")).kind, Resolution::local);
  EXPECT_TRUE(d->scram_secret("demo@example.test"));
  EXPECT_TRUE(d->may_send_as("demo@example.test", addr("demo@example.test")));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(login_done) << "the writer was not held up: the test proves nothing";
  EXPECT_LT(took, std::chrono::seconds(2)) << "lookups waited for the writer";
  sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr);
  login.join();
  sqlite3_close(other);
  EXPECT_FALSE(auth::needs_rehash(stored_hash(t.path, "demo@example.test")));
}

TEST(Directory, SenderIdentity) {
  TempDir t;
  auto d = Directory::open(t.path);
  d->add_domain("example.test", true);
  d->add_domain("open.test", false);
  for (auto u : {"demo@example.test", "other@example.test", "boss@example.test"})
    d->add_user(addr(u), "Correct-Horse-9");
  d->add_alias(addr("sales@example.test"), addr("demo@example.test"));
  d->add_group(addr("team@example.test"), {addr("other@example.test"), addr("sales@example.test")});
  d->add_delegation(addr("boss@example.test"), addr("demo@example.test"));
  const std::string me = "demo@example.test";
  EXPECT_TRUE(d->may_send_as(me, addr("demo@example.test")));
  EXPECT_TRUE(d->may_send_as(me, addr("Sales@example.test")));
  EXPECT_TRUE(d->may_send_as(me, addr("team@example.test")));  // member through an alias
  EXPECT_TRUE(d->may_send_as(me, addr("boss@example.test")));
  EXPECT_FALSE(d->may_send_as(me, addr("other@example.test")));
  EXPECT_FALSE(d->may_send_as("other@example.test", addr("boss@example.test")));
  EXPECT_FALSE(d->may_send_as(me, addr("x@remote.test")));
  EXPECT_EQ(d->domain_anti_spoofing("example.test"), true);
  EXPECT_EQ(d->domain_anti_spoofing("OPEN.test"), false);
  EXPECT_EQ(d->domain_anti_spoofing("remote.test"), std::nullopt);
  EXPECT_THROW(d->add_delegation(addr("boss@example.test"), addr("ghost@example.test")), DirectoryError);
  d->remove_delegation(addr("boss@example.test"), addr("demo@example.test"));
  EXPECT_FALSE(d->may_send_as(me, addr("boss@example.test")));
  EXPECT_THROW(d->remove_delegation(addr("boss@example.test"), addr("demo@example.test")), DirectoryError);
}
