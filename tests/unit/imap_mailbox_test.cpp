// The IMAP session's folder commands over the real store (StoreMailbox on a temp dir).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "imap/session.hpp"
#include "net/imap_mailbox.hpp"
#include "store/mailstore.hpp"
#include "temp_dir.hpp"

using namespace bulwark;
namespace fs = std::filesystem;

namespace {
struct Hooks : imap::Hooks {
  struct None : auth::SecretSource {
    std::optional<auth::ScramSecret> scram_secret(const std::string&) override { return std::nullopt; }
    std::optional<auth::CramSecret> cram_md5_secret(const std::string&) override { return std::nullopt; }
  } none;
  auth::SecretSource& secrets() override { return none; }
  bool login_blocked() override { return false; }
  void login_failed(std::string_view, const std::string&, std::string_view) override {}
  void refused(const std::string&) override {}
};

std::string run(imap::Session& s, const std::string& in) {
  imap::Output o = s.feed(in);
  std::string out = o.bytes;
  while (o.next == imap::Next::verify || o.next == imap::Next::logged_in || o.next == imap::Next::more) {
    o = o.next == imap::Next::verify ? s.login_finished(true) : s.resume();
    out += o.bytes;
  }
  return out;
}
}  // namespace

TEST(StoreMailbox, FolderCommandsOnARealMaildir) {
  test::TempDir t;
  std::string md = (t.path / "mail" / "demo").string();
  StoreMailbox mb(md, "demo@example.test");
  Hooks h;
  imap::Config c;
  c.hostname = "mx";
  c.auth.mode = auth::Mode::none;
  imap::Session s(c, h, {"192.0.2.1", false});
  s.greet();
  run(s, "a LOGIN demo x\r\n");
  s.set_mailbox(&mb);
  std::string out = run(s, "b LIST \"\" *\r\n");
  EXPECT_EQ(out,
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
            "* LIST (\\HasNoChildren \\Archive) \"/\" \"Archive\"\r\n"
            "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Drafts\"\r\n"
            "* LIST (\\HasNoChildren \\Junk) \"/\" \"Junk\"\r\n"
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
            "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
            "b OK LIST completed\r\n");
  // a delivery into INBOX, seen by STATUS
  fs::create_directories(fs::path(md) / "new");
  std::ofstream(fs::path(md) / "new" / "1700000000.x.h,S=5,W=6") << "abcd\n";
  out = run(s, "c STATUS INBOX (MESSAGES UNSEEN SIZE UIDNEXT)\r\nd CREATE Work/2026\r\ne LIST \"\" Work*\r\n"
               "f DELETE Work\r\ng RENAME Work Old\r\nh LSUB \"\" *\r\ni STATUS Nope (MESSAGES)\r\nj CREATE a.b\r\n");
  EXPECT_EQ(out,
            "* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1 SIZE 6 UIDNEXT 2)\r\nc OK STATUS completed\r\n"
            "d OK CREATE completed\r\n"
            "* LIST (\\HasChildren) \"/\" \"Work\"\r\n* LIST (\\HasNoChildren) \"/\" \"Work/2026\"\r\ne OK LIST completed\r\n"
            "f NO [HASCHILDREN] Delete the folders inside it first\r\n"
            "g OK RENAME completed\r\n"
            "* LSUB () \"/\" \"Archive\"\r\n* LSUB () \"/\" \"Drafts\"\r\n* LSUB () \"/\" \"Junk\"\r\n"
            "* LSUB () \"/\" \"Sent\"\r\n* LSUB () \"/\" \"Trash\"\r\nh OK LSUB completed\r\n"
            "i NO [NONEXISTENT] No such mailbox\r\n"
            "j NO [CANNOT] Folder names may not contain \".\", \"*\", \"%\" or control characters\r\n");
  EXPECT_TRUE(fs::exists(fs::path(md) / ".Old.2026" / "cur"));
}
