// directory/directory_sealed.cpp: the directory's sealed form (encryption on, SPEC 13):
// an in-memory SQLite database loaded from <data_dir>/directory.sealed and written
// back after each change. See directory.hpp and docs/encryption.md.
#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/body.hpp"
#include "crypt/file.hpp"
#include "directory/pg_replica.hpp"
#include "directory/sqlite.hpp"

namespace bulwark {

namespace fs = std::filesystem;

struct Directory::Snapshot {
  std::string path, plain, lock_path;
  int lock_fd = -1;
  // Which file the loaded content came from: a lookup compares them with a stat.
  std::atomic<uint64_t> ino{0}, mtime_ns{0}, size{0};
  std::atomic<bool> stale{true};

  explicit Snapshot(const std::string& data_dir)
      : path(sealed_path(data_dir)),
        plain((fs::path(data_dir) / "directory.db").string()),
        lock_path((fs::path(data_dir) / "directory.lock").string()) {
    lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) throw DirectoryError("cannot open " + lock_path + ": " + std::strerror(errno));
  }
  ~Snapshot() { ::close(lock_fd); }
  bool same(const struct stat& st) const {
    return uint64_t(st.st_ino) == ino && uint64_t(st.st_size) == size &&
           uint64_t(st.st_mtim.tv_sec) * 1000000000u + uint64_t(st.st_mtim.tv_nsec) == mtime_ns;
  }
  void remember(const struct stat& st) {
    ino = uint64_t(st.st_ino);
    size = uint64_t(st.st_size);
    mtime_ns = uint64_t(st.st_mtim.tv_sec) * 1000000000u + uint64_t(st.st_mtim.tv_nsec);
    stale = false;
  }
};

namespace {

// The directory lock (flock: released if the process dies), held for a change.
struct Held {
  int fd;
  explicit Held(int f) : fd(f) {
    while (::flock(fd, LOCK_EX) != 0)
      if (errno != EINTR) throw DirectoryError(std::string("cannot lock the directory: ") + std::strerror(errno));
  }
  ~Held() { ::flock(fd, LOCK_UN); }
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
};

// A database image as a file: rollback-journal form (bytes 18 and 19 say WAL when the
// image came from a WAL database, and memdb refuses to open those).
void legacy_header(std::string& image) {
  if (image.size() >= 20 && image[18] == 2 && image[19] == 2) image[18] = image[19] = 1;
}

void load_image(sqlite3* dst, std::string image) {
  legacy_header(image);
  sqlite3* priv = nullptr;
  if (sqlite3_open_v2(":memory:", &priv, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    sqlite3_close(priv);
    throw DirectoryError("directory: out of memory");
  }
  auto* buf = static_cast<unsigned char*>(sqlite3_malloc64(image.size()));
  if (!buf) {
    sqlite3_close(priv);
    throw DirectoryError("directory: out of memory");
  }
  std::memcpy(buf, image.data(), image.size());
  sodium_memzero(image.data(), image.size());
  int rc = sqlite3_deserialize(priv, "main", buf, sqlite3_int64(image.size()), sqlite3_int64(image.size()),
                               SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
  try {
    if (rc != SQLITE_OK) throw DirectoryError(std::string("directory: damaged snapshot: ") + sqlite3_errstr(rc));
    copy_db(priv, dst);
  } catch (...) {
    sqlite3_close(priv);
    throw;
  }
  sqlite3_close(priv);
}

// The sealed snapshot's plaintext (the database image); throws naming the file.
std::string read_sealed(const std::string& path, struct stat* st) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw DirectoryError("cannot read " + path + ": " + std::strerror(errno));
  if (st) ::fstat(fd, st);
  std::string why;
  auto f = crypt::PlainFile::adopt(fd, &why);
  if (!f) throw DirectoryError("cannot read " + path + ": " + why);
  if (!f->sealed()) throw DirectoryError("cannot read " + path + ": it is not sealed (replaced by hand?)");
  auto image = f->all(&why);
  if (!image) throw DirectoryError("cannot read " + path + ": " + why);
  return std::move(*image);
}

void remove_plain(const std::string& plain) {
  for (const char* suffix : {"-wal", "-shm", ""}) ::unlink((plain + suffix).c_str());
  sync_dir(fs::path(plain).parent_path().string());
}

}  // namespace

// Replaces the content of `dst` with that of `src` (the backup API: `dst`'s other
// connections see the new content; a reader in the middle of a lookup is waited for).
void copy_db(sqlite3* src, sqlite3* dst) {
  sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
  if (!b) throw DirectoryError(std::string("directory: ") + sqlite3_errmsg(dst));
  int rc;
  for (int tries = 0;; ++tries) {
    rc = sqlite3_backup_step(b, -1);
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || tries > 5000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) throw DirectoryError(std::string("directory: cannot load: ") + sqlite3_errstr(rc));
}

// Here, where Snapshot is complete.
Directory::Directory(std::string path, std::unique_ptr<DbConn> writer)
    : path_(std::move(path)), writer_(std::move(writer)) {}

Directory::~Directory() = default;  // here, where Snapshot and PgReplica are complete

std::string Directory::sealed_path(const std::string& data_dir) {
  return (fs::path(data_dir) / "directory.sealed").string();
}

std::unique_ptr<Directory> Directory::open_sealed(const std::string& data_dir) {
  // Each Directory its own shared in-memory database: its writer and its readers.
  static std::atomic<unsigned> serial{0};
  std::string uri = "file:/bulwark-directory-" + std::to_string(::getpid()) + "-" + std::to_string(++serial) +
                    "?vfs=memdb";
  std::unique_ptr<Directory> d(new Directory(uri, connect(uri, true)));
  d->snap_ = std::make_unique<Snapshot>(data_dir);
  Snapshot& s = *d->snap_;
  std::lock_guard lk(d->mu_);
  Held held(s.lock_fd);
  if (::access(s.path.c_str(), F_OK) == 0) {
    d->reload_locked();
    remove_plain(s.plain);  // an interrupted import's leftover: the snapshot was complete
    return d;
  }
  // First open with the key: the plain directory (if any) becomes the snapshot, then goes.
  if (::access(s.plain.c_str(), F_OK) == 0) {
    sqlite3* src = nullptr;
    if (sqlite3_open_v2(s.plain.c_str(), &src, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::string m = src ? sqlite3_errmsg(src) : "out of memory";
      sqlite3_close(src);
      throw DirectoryError("cannot open " + s.plain + ": " + m);
    }
    try {
      exec(src, "PRAGMA journal_mode=DELETE");  // the WAL folded in; memdb opens no WAL-mode image
      copy_db(src, d->writer_->db);
    } catch (...) {
      sqlite3_close(src);
      throw;
    }
    sqlite3_close(src);
  }
  create_directory_schema(d->writer_->db);
  d->persist_locked();
  remove_plain(s.plain);
  return d;
}

void Directory::unseal(const std::string& data_dir) {
  std::string path = sealed_path(data_dir), plain = (fs::path(data_dir) / "directory.db").string();
  if (::access(path.c_str(), F_OK) != 0) return;
  std::string image = read_sealed(path, nullptr);
  legacy_header(image);
  // A -wal left beside the new file would be replayed into it.
  for (const char* suffix : {"-wal", "-shm"}) ::unlink((plain + suffix).c_str());
  bool ok = crypt::replace_file(plain, image, nullptr);
  int err = errno;
  sodium_memzero(image.data(), image.size());
  if (!ok) throw DirectoryError("cannot write " + plain + ": " + std::strerror(err));
  ::unlink(path.c_str());
  sync_dir(data_dir);
}

void Directory::reload_locked() {
  struct stat st{};
  if (!snap_->stale && ::stat(snap_->path.c_str(), &st) == 0 && snap_->same(st)) return;
  std::string image = read_sealed(snap_->path, &st);
  load_image(writer_->db, std::move(image));
  snap_->remember(st);
}

void Directory::persist_locked() {
  sqlite3_int64 n = 0;
  unsigned char* p = sqlite3_serialize(writer_->db, "main", &n, 0);
  if (!p) throw DirectoryError("directory: cannot serialize (out of memory)");
  std::string image(reinterpret_cast<const char*>(p), size_t(n));
  sodium_memzero(p, size_t(n));
  sqlite3_free(p);
  legacy_header(image);
  bool ok = crypt::replace_file(snap_->path, image);
  int err = errno;
  sodium_memzero(image.data(), image.size());
  if (!ok) throw DirectoryError("cannot write " + snap_->path + ": " + std::strerror(err));
  struct stat st{};
  if (::stat(snap_->path.c_str(), &st) == 0) snap_->remember(st);
}

void Directory::refresh() {
  if (!snap_) return;
  struct stat st{};
  if (!snap_->stale && ::stat(snap_->path.c_str(), &st) == 0 && snap_->same(st)) return;
  try {
    std::lock_guard lk(mu_);
    reload_locked();
  } catch (const DirectoryError&) {
    // Keep answering from what is loaded; the next lookup tries again.
  }
}

Directory::Writing::Writing(Directory& d) : d_(d), lk_(d.mu_) {
  exceptions_ = std::uncaught_exceptions();
  if (d.pg_) {
    d.pg_begin_change();
    return;
  }
  if (!d.snap_) return;
  while (::flock(d.snap_->lock_fd, LOCK_EX) != 0)
    if (errno != EINTR) throw DirectoryError(std::string("cannot lock the directory: ") + std::strerror(errno));
  try {
    d.reload_locked();  // another process's change first
  } catch (...) {
    ::flock(d.snap_->lock_fd, LOCK_UN);
    throw;
  }
  changes_ = sqlite3_total_changes64(d.writer_->db);
  exceptions_ = std::uncaught_exceptions();
}

Directory::Writing::~Writing() noexcept(false) {
  if (d_.pg_) {
    d_.pg_end_change(std::uncaught_exceptions() > exceptions_);
    return;
  }
  if (!d_.snap_) return;
  std::string err;
  if (sqlite3_total_changes64(d_.writer_->db) != changes_) {
    if (std::uncaught_exceptions() > exceptions_) {
      d_.snap_->stale = true;  // a change that failed half way: the next access reloads
    } else {
      try {
        d_.persist_locked();
      } catch (const std::exception& e) {
        d_.snap_->stale = true;  // not on disk: do not keep answering from it
        err = e.what();
      }
    }
  }
  ::flock(d_.snap_->lock_fd, LOCK_UN);
  if (!err.empty()) throw DirectoryError(err);
}

}  // namespace bulwark
