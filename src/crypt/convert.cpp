// crypt/convert.cpp: the resumable conversion (see convert.hpp).
#include "crypt/convert.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/body.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"

namespace bulwark::crypt {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTempSuffix = ".bwconv";

bool has_part(const fs::path& p, std::string_view name) {
  for (auto& part : p)
    if (part == name) return true;
  return false;
}

// The file's plaintext in the target form, to `fd`.
bool write_whole(const std::string& path, int fd, const DataKey& key, bool to_sealed, std::string& why) {
  // PlainFile reads sealed files with the process's key: the caller set it.
  auto in = PlainFile::open(path, &why);
  if (!in) return false;
  FileWriter out(fd, to_sealed ? &key : nullptr);
  for (;;) {
    auto piece = in->next(1 << 20, &why);
    if (!piece) return false;
    if (piece->empty()) break;
    if (!out.write(*piece)) return why = std::strerror(errno), false;
  }
  return out.finish() || (why = std::strerror(errno), false);
}

bool write_records(const std::string& path, int fd, const DataKey& key, bool to_sealed, std::string& why) {
  auto text = read_text(path, &key, &why);
  if (!text) return false;
  std::string out = to_sealed ? seal_records(key, text->text) : text->text;
  return write_all(fd, out) || (why = std::strerror(errno), false);
}

// Whether the file is already in the target form (its first bytes say).
bool in_target_form(const std::string& path, Form form, bool to_sealed) {
  char head[8] = {0};
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::pread(fd, head, sizeof head, 0);
  ::close(fd);
  std::string_view h(head, n > 0 ? size_t(n) : 0);
  bool sealed = form == Form::whole ? is_sealed(h) : h.substr(0, kRecordsMagic.size()) == kRecordsMagic;
  if (form == Form::records && h.empty()) return true;  // an empty state file: nothing to seal
  return sealed == to_sealed;
}

}  // namespace

Form form_of(const std::string& relative, bool in_log_dir) {
  fs::path p(relative);
  std::string name = p.filename().string();
  if (name.ends_with(kTempSuffix) || name.ends_with(".tmp") || name.ends_with(".lock")) return Form::left;
  if (in_log_dir) return name.ends_with(".log") ? Form::records : Form::left;
  std::string top = p.begin() == p.end() ? "" : p.begin()->string();
  if (top == "queue") return name.ends_with(".done") ? Form::records : Form::whole;
  // The spool's commit record (queue/commit_record.hpp): names of mailboxes and of
  // this host. Sealed as it is; the files it lists stay as they were written.
  if (top == "queue.tmp" && name.starts_with(".commit.")) return Form::records;
  if (top == "quarantine") return name.ends_with(".done") ? Form::records : Form::whole;
  if (top == "dkim") return name.ends_with(".pem") ? Form::whole : Form::left;
  if (top == "greylist" || name == "greylist") return Form::records;
  if (top == "mail") {
    if (name == "bulwark-uidlist") return Form::records;
    if (name == "subscriptions" || name == "dovecot-keywords") return Form::whole;
    std::string parent = p.parent_path().filename().string();
    if ((parent == "new" || parent == "cur") && !has_part(p, "tmp")) return Form::whole;
    return Form::left;  // maildirfolder, tmp/
  }
  // keyring, the directory (sealed by Directory itself), cert.pem and key.pem,
  // reports/ (templates), the rest of queue.tmp/ (transient), retry requests.
  return Form::left;
}

namespace {

// The covered files of both trees; an interrupted run's temporaries are removed
// (`tidy`) or skipped.
std::vector<std::pair<std::string, Form>> covered(const std::string& data_dir, const std::string& log_dir, bool tidy) {
  std::vector<std::pair<std::string, Form>> files;
  std::error_code ec;
  for (const auto& [root, logs] : {std::pair{data_dir, false}, std::pair{log_dir, true}}) {
    if (root.empty() || !fs::is_directory(root, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string path = it->path().string();
      if (path.ends_with(kTempSuffix)) {  // an interrupted run's: the original is whole
        if (tidy) fs::remove(it->path(), ec);
        continue;
      }
      Form f = form_of(fs::relative(it->path(), root, ec).string(), logs);
      if (f != Form::left) files.emplace_back(path, f);
    }
  }
  return files;
}

}  // namespace

Progress survey(const std::string& data_dir, const std::string& log_dir, bool to_sealed) {
  Progress pr;
  auto files = covered(data_dir, log_dir, false);
  pr.total = files.size();
  for (auto& [path, form] : files) pr.already += in_target_form(path, form, to_sealed);
  return pr;
}

Progress convert(const std::string& data_dir, const std::string& log_dir, const DataKey& key, bool to_sealed,
                 size_t stop_after) {
  Progress pr;
  auto files = covered(data_dir, log_dir, true);
  pr.total = files.size();
  std::set<std::string> touched_dirs;
  for (auto& [path, form] : files) {
    if (in_target_form(path, form, to_sealed)) {
      ++pr.already;
      continue;
    }
    if (pr.converted >= stop_after) break;
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) continue;  // gone meanwhile
    std::string tmp = path + std::string(kTempSuffix), why;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    if (!ok) why = std::strerror(errno);
    if (ok) ok = form == Form::whole ? write_whole(path, fd, key, to_sealed, why)
                                     : write_records(path, fd, key, to_sealed, why);
    if (ok) {
      ::fchmod(fd, st.st_mode & 07777);
      if (::geteuid() == 0) (void)::fchown(fd, st.st_uid, st.st_gid);
      ok = ::fsync(fd) == 0;
      if (!ok) why = std::strerror(errno);
    }
    if (fd >= 0) {
      timespec times[2] = {st.st_atim, st.st_mtim};  // Maildir readers may look at mtime
      ::futimens(fd, times);
      ::close(fd);
    }
    if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
      ok = false;
      why = std::strerror(errno);
    }
    if (!ok) {
      ::unlink(tmp.c_str());
      pr.failed.push_back(path + ": " + why);
      continue;
    }
    touched_dirs.insert(fs::path(path).parent_path().string());
    ++pr.converted;
    pr.bytes += uint64_t(st.st_size);
  }
  for (auto& d : touched_dirs) sync_dir(d);
  return pr;
}

}  // namespace bulwark::crypt
