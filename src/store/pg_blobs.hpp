// store/pg_blobs.hpp: message bodies of cluster mode's mail store (SPEC 16), behind an
// interface so object storage could take them later. Content-addressed: one body per
// distinct message, shared by its recipients and by COPY; sealed first when encryption
// at rest is on, so the database never holds plaintext mail.
//
// Bodies no message refers to any more are purged (purge_blobs): a message's deletion
// (EXPUNGE, a folder or user removed) and a queued message's end make its body a
// candidate (triggers, schema versions 4 and 7), and so does every new body (its
// message may never have been committed: a crash between the body and the message). A candidate older than an hour whose body is
// still unreferenced and unused for an hour goes. The hour covers the gap between put()
// and the message's commit; the foreign keys of messages and of the queue make a
// body that is still referenced impossible to delete, whatever the timing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cluster/pg.hpp"

namespace bulwark::crypt {
class DataKey;
}

namespace bulwark::store {

// Where bodies go. PostgreSQL's table today; object storage could be another.
class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // Stores `plain` (once per distinct content) and returns its id.
  virtual std::string put(pg::Conn& c, std::string_view plain) = 0;
  virtual std::optional<std::string> get(pg::Conn& c, const std::string& id, std::string& error) = 0;
};

// The blobs table: the id is a hash of the plaintext (keyed with the data key when
// encryption is on, so equal mail cannot be recognised by its id).
class PgBlobs : public BlobStore {
 public:
  explicit PgBlobs(const crypt::DataKey* key) : key_(key) {}
  std::string put(pg::Conn& c, std::string_view plain) override;
  std::optional<std::string> get(pg::Conn& c, const std::string& id, std::string& error) override;
  // A row's data as read from the table: opened when `sealed`.
  std::optional<std::string> plain(std::string data, bool sealed, std::string& error) const;

 private:
  const crypt::DataKey* key_;
};

struct Purged {
  int64_t bodies = 0, bytes = 0;
  bool more = false;  // stopped at `max_batches`: candidates that are due are left
};
// Removes due bodies no message refers to, in batches of 1,000, at most `max_batches`.
// One node at a time (an advisory lock; another finds it taken and returns nothing).
Purged purge_blobs(pg::Conn& c, int max_batches = 20);

}  // namespace bulwark::store
