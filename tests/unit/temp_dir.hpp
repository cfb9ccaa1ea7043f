// A directory under /tmp for one test, removed with everything in it afterwards.
#pragma once
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace bulwark::test {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "bulwark-test") {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  size_t files() const { return size_t(std::distance(std::filesystem::directory_iterator(path), {})); }
};

}  // namespace bulwark::test
