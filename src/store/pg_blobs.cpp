// store/pg_blobs.cpp: see pg_blobs.hpp.
#include "store/pg_blobs.hpp"

#include <sodium.h>

#include "crypt/crypt.hpp"

namespace bulwark::store {

std::string PgBlobs::put(pg::Conn& c, std::string_view plain) {
  unsigned char h[32];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(plain.data()), plain.size(),
                     key_ ? key_->bytes() : nullptr, key_ ? crypt::DataKey::size : 0);
  std::string id(reinterpret_cast<const char*>(h), sizeof h);
  std::string hexid = pg::bytea(id);
  auto known = c.exec("SELECT used < now() - interval '10 minutes' FROM blobs WHERE id=$1::bytea", {hexid});
  if (known.rows()) {
    // Used again: not purged for another hour (written at most every 10 minutes).
    if (known.text(0, 0) == "t") c.exec("UPDATE blobs SET used = now() WHERE id=$1::bytea", {hexid});
    return id;
  }
  std::string data = key_ ? crypt::seal(*key_, plain) : std::string(plain);
  c.exec(
      "WITH b AS (INSERT INTO blobs(id, data, size, sealed) VALUES($1::bytea, $2::bytea, $3, $4) "
      "ON CONFLICT DO NOTHING RETURNING id) "
      "INSERT INTO blob_gc(id) SELECT id FROM b ON CONFLICT DO NOTHING",
      {hexid, pg::bytea(data), std::to_string(plain.size()), key_ ? "t" : "f"});
  return id;
}

std::optional<std::string> PgBlobs::get(pg::Conn& c, const std::string& id, std::string& error) {
  auto r = c.exec("SELECT data, sealed FROM blobs WHERE id=$1::bytea", {pg::bytea(id)});
  if (!r.rows()) {
    error = "a message body is missing from the blob store";
    return std::nullopt;
  }
  return plain(r.bytes(0, 0), r.text(0, 1) == "t", error);
}

std::optional<std::string> PgBlobs::plain(std::string data, bool sealed, std::string& error) const {
  if (!sealed) return data;
  if (!key_) {
    error = "a message body is sealed and the data key is not loaded";
    return std::nullopt;
  }
  std::string why;
  auto plain = crypt::open(*key_, data, &why);
  if (!plain) error = "a sealed message body fails its check: " + why;
  return plain;
}

Purged purge_blobs(pg::Conn& c, int max_batches) {
  Purged out;
  for (int i = 0; i < max_batches; ++i) {
    pg::Transaction t(c);
    // pg_try_advisory_xact_lock key: "bulwark" blob purge.
    if (c.exec("SELECT pg_try_advisory_xact_lock(7262917504102)").text(0, 0) != "t") return out;
    // A candidate leaves the list unless its body is unreferenced but was used within
    // the hour (then it stays, for a later run).
    auto r = c.exec(
        "WITH cand AS (SELECT id FROM blob_gc WHERE at < now() - interval '1 hour' ORDER BY at LIMIT 1000), "
        "gone AS (DELETE FROM blobs b USING cand WHERE b.id = cand.id AND b.used < now() - interval '1 hour' "
        "  AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id) "
        "  AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.blob = b.id) RETURNING b.size), "
        "done AS (DELETE FROM blob_gc g USING cand WHERE g.id = cand.id AND NOT EXISTS (SELECT 1 FROM blobs b "
        "  WHERE b.id = g.id AND b.used >= now() - interval '1 hour' "
        "  AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id) "
        "  AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.blob = b.id)) RETURNING 1) "
        "SELECT (SELECT count(*) FROM gone), (SELECT coalesce(sum(size), 0) FROM gone), "
        "  (SELECT count(*) FROM done), (SELECT count(*) FROM cand)");
    t.commit();
    out.bodies += r.integer(0, 0);
    out.bytes += r.integer(0, 1);
    if (r.integer(0, 3) < 1000) return out;
    if (r.integer(0, 2) == 0) return out;  // all due candidates wait on recent use: nothing to gain now
  }
  out.more = true;
  return out;
}

}  // namespace bulwark::store
