// The directory's sealed form (encryption on): the snapshot is made from directory.db,
// holds nothing readable, is seen by a second Directory (another process's CLI) after
// a change, survives a reopen, refuses a tampered or keyless open, and goes back to a
// plain directory.db with `unseal`.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "crypt/file.hpp"
#include "directory/directory.hpp"
#include "temp_dir.hpp"

using namespace bulwark;

namespace {
using test::TempDir;
namespace fs = std::filesystem;

Address addr(const char* s) { return *parse_mailbox(s); }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

struct KeyLoaded {
  KeyLoaded() { crypt::set_data_key(crypt::DataKey::random()); }
  ~KeyLoaded() { crypt::clear_data_key(); }
};

void fill(Directory& d) {
  d.add_domain("example.org", true);
  d.add_user(addr("alice@example.org"), "Secret-Pass-1");
  d.add_alias(addr("postmaster@example.org"), addr("alice@example.org"));
}

}  // namespace

TEST(DirectorySealed, PlainDirectoryBecomesASnapshotWithNothingReadable) {
  TempDir t("bulwark-dirseal");
  fill(*Directory::open(t.path.string()));
  ASSERT_TRUE(fs::exists(t.path / "directory.db"));
  KeyLoaded k;
  auto d = Directory::open(t.path.string());
  EXPECT_FALSE(fs::exists(t.path / "directory.db"));
  EXPECT_FALSE(fs::exists(t.path / "directory.db-wal"));
  ASSERT_TRUE(fs::exists(t.path / "directory.sealed"));
  EXPECT_EQ(fs::status(t.path / "directory.sealed").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  std::string raw = slurp(t.path / "directory.sealed");
  EXPECT_EQ(raw.find("example.org"), std::string::npos);
  EXPECT_EQ(raw.find("argon2id"), std::string::npos);
  EXPECT_EQ(raw.find("SQLite format"), std::string::npos);
  EXPECT_EQ(d->resolve(addr("postmaster@example.org")).mailboxes, std::vector<std::string>{"alice@example.org"});
  EXPECT_EQ(d->verify_login("alice@example.org", "Secret-Pass-1"), "alice@example.org");
  EXPECT_FALSE(d->verify_login("alice@example.org", "wrong"));
}

TEST(DirectorySealed, ChangesReachAnotherInstanceAndSurviveAReopen) {
  KeyLoaded k;
  TempDir t("bulwark-dirseal");
  auto server = Directory::open(t.path.string());
  EXPECT_TRUE(fs::exists(t.path / "directory.sealed"));
  EXPECT_TRUE(server->list_domains().empty());
  {
    auto cli = Directory::open(t.path.string());  // as `bulwark user add` would, beside a running server
    fill(*cli);
  }
  EXPECT_TRUE(server->is_local_domain("example.org"));
  EXPECT_EQ(server->resolve(addr("alice@example.org")).kind, Resolution::local);
  server->add_user(addr("bob@example.org"), "Secret-Pass-2");  // the server writes: reloads first, keeps alice
  {
    auto cli = Directory::open(t.path.string());
    cli->remove_user(addr("alice@example.org"));
    EXPECT_EQ(cli->list_users(), std::vector<std::string>{"bob@example.org"});
    EXPECT_THROW(cli->remove_user(addr("alice@example.org")), DirectoryError);
  }
  EXPECT_EQ(server->resolve(addr("alice@example.org")).kind, Resolution::unknown);
  server.reset();
  auto again = Directory::open(t.path.string());
  EXPECT_EQ(again->list_users(), std::vector<std::string>{"bob@example.org"});
  EXPECT_EQ(again->list_aliases().size(), 1u);
}

TEST(DirectorySealed, NoKeyOrATamperedSnapshotIsRefused) {
  TempDir t("bulwark-dirseal");
  {
    KeyLoaded k;
    fill(*Directory::open(t.path.string()));
  }
  EXPECT_THROW(Directory::open(t.path.string()), DirectoryError);  // no key: not a new empty directory
  EXPECT_FALSE(fs::exists(t.path / "directory.db"));
  KeyLoaded other;  // a different key
  EXPECT_THROW(Directory::open(t.path.string()), DirectoryError);
}

TEST(DirectorySealed, UnsealGivesBackAPlainDirectory) {
  TempDir t("bulwark-dirseal");
  {
    KeyLoaded k;
    fill(*Directory::open(t.path.string()));
    Directory::unseal(t.path.string());
    Directory::unseal(t.path.string());  // again, as after an interruption: nothing left to do
  }
  EXPECT_FALSE(fs::exists(t.path / "directory.sealed"));
  ASSERT_TRUE(fs::exists(t.path / "directory.db"));
  EXPECT_EQ(slurp(t.path / "directory.db").substr(0, 15), "SQLite format 3");
  auto d = Directory::open(t.path.string());
  EXPECT_EQ(d->list_users(), std::vector<std::string>{"alice@example.org"});
  EXPECT_EQ(d->verify_login("alice@example.org", "Secret-Pass-1"), "alice@example.org");
  d->add_user(addr("carol@example.org"), "Secret-Pass-3");  // WAL mode again, writable
  EXPECT_EQ(d->list_users().size(), 2u);
}
