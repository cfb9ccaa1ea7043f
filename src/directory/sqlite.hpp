// directory/sqlite.hpp: the directory's SQLite plumbing, shared by its plain (file)
// and sealed (in-memory snapshot) forms -- a connection with its statement cache, a
// prepared statement that goes back to the cache, and exec.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "directory/directory.hpp"

namespace bulwark {

// Prepared statements by SQL text (every text is a string literal, so its address is
// the key), reused across calls: preparing costs more than running these lookups.
// One cache per connection, used by one thread at a time (the writer under
// Directory::mu_, a reader while leased). A statement already in use (a nested
// lookup) gets a fresh, uncached one.
struct StmtCache {
  struct Slot {
    sqlite3_stmt* st = nullptr;
    bool busy = false;
  };
  std::unordered_map<const char*, Slot> slots;
};

// One SQLite connection and its statements.
struct DbConn {
  sqlite3* db = nullptr;
  StmtCache cache;
  explicit DbConn(sqlite3* d) : db(d) {}
  ~DbConn() {
    for (auto& [sql, slot] : cache.slots) sqlite3_finalize(slot.st);  // before close: it refuses otherwise
    cache.slots.clear();
    sqlite3_close(db);
  }
};

// A prepared statement, reset (cached) or finalized when it goes out of scope.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql, StmtCache* cache = nullptr) : db_(db) {
    if (cache) {
      auto& slot = cache->slots[sql];
      if (!slot.busy) {
        if (!slot.st && sqlite3_prepare_v2(db, sql, -1, &slot.st, nullptr) != SQLITE_OK) {
          slot.st = nullptr;
          throw DirectoryError(std::string("directory: ") + sqlite3_errmsg(db));
        }
        slot.busy = true;
        slot_ = &slot;
        st_ = slot.st;
        return;
      }
    }
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
      throw DirectoryError(std::string("directory: ") + sqlite3_errmsg(db));
  }
  ~Stmt() {
    if (slot_) {
      sqlite3_reset(st_);
      sqlite3_clear_bindings(st_);
      slot_->busy = false;
    } else {
      sqlite3_finalize(st_);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  bool step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw DirectoryError(std::string("directory: ") + sqlite3_errmsg(db_));
  }
  std::string text(int col) {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    return p ? std::string(p, size_t(sqlite3_column_bytes(st_, col))) : std::string();
  }
  int64_t integer(int col) { return sqlite3_column_int64(st_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
  StmtCache::Slot* slot_ = nullptr;
};

inline void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown error";
    sqlite3_free(err);
    throw DirectoryError("directory: " + m);
  }
}

// The directory's tables (and the columns older directories lack).
void create_directory_schema(sqlite3* db);

// Replaces the content of `dst` with that of `src` (the backup API: `dst`'s other
// connections see the new content; a reader in the middle of a lookup is waited for).
void copy_db(sqlite3* src, sqlite3* dst);

}  // namespace bulwark
