// Every file in tests/configs/bad is refused with the message its first line expects.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"

using namespace bulwark;
namespace fs = std::filesystem;

TEST(Config, BadConfigsFolder) {
  size_t n = 0;
  for (auto& e : fs::directory_iterator(BULWARK_BAD_CONFIGS)) {
    std::ifstream in(e.path());
    std::string first;
    std::getline(in, first);
    ASSERT_EQ(first.rfind("# expect: ", 0), 0u) << e.path();
    std::string expect = e.path().string() + first.substr(10);
    try {
      load_config(e.path().string());
      ADD_FAILURE() << e.path() << " was accepted";
    } catch (const ConfigError& err) {
      EXPECT_EQ(std::string(err.what()).substr(0, expect.size()), expect);
    }
    ++n;
  }
  EXPECT_GE(n, 15u);
}

TEST(Config, DefaultsAndValues) {
  fs::path p = fs::temp_directory_path() / "bulwark_config_test.toml";
  std::ofstream(p) << "[server]\nhostname = \"mx.example.test\"\ndata_dir = \"d\"\n"
                      "[limits]\nmax_message_size = \"10MB\"\nmax_recipients = 0\n"
                      "[timeouts]\ncommand = \"2m\"\n";
  Config c = load_config(p.string());
  EXPECT_EQ(c.server.hostname, "mx.example.test");
  EXPECT_EQ(c.server.data_dir, (fs::temp_directory_path() / "d").string());  // relative to the file
  EXPECT_EQ(c.server.log_dir, "/var/log/bulwark");
  EXPECT_EQ(c.limits.max_message_size, 10u << 20);
  EXPECT_EQ(c.limits.max_recipients, 0u);
  EXPECT_EQ(c.limits.max_hops, 30u);
  EXPECT_EQ(c.timeouts.command.count(), 120);
  EXPECT_TRUE(c.tls.self_signed);
  ASSERT_EQ(c.listeners.size(), 3u);  // smtp, submission, smtps on all addresses
  EXPECT_EQ(c.listeners[0].port, 25);
  EXPECT_EQ(c.cert_path(), c.server.data_dir + "/cert.pem");
  fs::remove(p);
}
