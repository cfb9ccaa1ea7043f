#include "cluster/schema.hpp"

#include <stdexcept>

namespace bulwark::cluster {

namespace {

// One entry per version; never edit one that has shipped, add the next.
const char* const kMigrations[] = {
    // 1: nodes, the directory (the same tables as the embedded SQLite directory, so the
    // changes of one can be carried to the other column for column; docs/cluster.md).
    R"sql(
CREATE TABLE nodes(name TEXT PRIMARY KEY, version TEXT NOT NULL, address TEXT NOT NULL, pid BIGINT NOT NULL,
  started TIMESTAMPTZ NOT NULL, heartbeat TIMESTAMPTZ NOT NULL, sessions BIGINT NOT NULL DEFAULT 0);
CREATE TABLE directory_version(id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
INSERT INTO directory_version VALUES(1, 1);
CREATE TABLE domains(name TEXT PRIMARY KEY, anti_spoofing INTEGER NOT NULL DEFAULT 1);
CREATE TABLE users("key" TEXT PRIMARY KEY, address TEXT NOT NULL, domain TEXT NOT NULL, password_hash TEXT NOT NULL,
  scram TEXT, cram_md5 TEXT);
CREATE TABLE aliases(alias TEXT NOT NULL, domain TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY(alias, target));
CREATE TABLE "groups"(grp TEXT NOT NULL, domain TEXT NOT NULL, member TEXT NOT NULL, PRIMARY KEY(grp, member));
CREATE TABLE delegations(owner TEXT NOT NULL, delegate TEXT NOT NULL, PRIMARY KEY(owner, delegate));
CREATE TABLE admins(name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, read_only INTEGER NOT NULL DEFAULT 0,
  token_hash TEXT);
)sql",
    // 2: the mail store (store/pg_store.hpp). UIDVALIDITY from a sequence (any unique
    // value does; never used for UIDs or MODSEQs, which come from the folder's row).
    R"sql(
CREATE SEQUENCE uidvalidity_seq;
SELECT setval('uidvalidity_seq', extract(epoch from now())::bigint);
CREATE TABLE mailboxes(id BIGSERIAL PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL,
  special TEXT NOT NULL DEFAULT '', uidvalidity BIGINT NOT NULL, uidnext BIGINT NOT NULL DEFAULT 1,
  modseq BIGINT NOT NULL DEFAULT 1, recent_from BIGINT NOT NULL DEFAULT 1, keywords TEXT[] NOT NULL DEFAULT '{}',
  UNIQUE(owner, name));
CREATE TABLE subscriptions(owner TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY(owner, name));
CREATE TABLE blobs(id BYTEA PRIMARY KEY, data BYTEA NOT NULL, size BIGINT NOT NULL, sealed BOOLEAN NOT NULL);
CREATE TABLE messages(mailbox BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE, uid BIGINT NOT NULL,
  modseq BIGINT NOT NULL, flags TEXT NOT NULL DEFAULT '', size BIGINT NOT NULL, internal_date BIGINT NOT NULL,
  head BYTEA NOT NULL DEFAULT ''::bytea, blob BYTEA NOT NULL REFERENCES blobs(id), PRIMARY KEY(mailbox, uid));
CREATE INDEX messages_by_modseq ON messages(mailbox, modseq);
CREATE INDEX messages_by_blob ON messages(blob);
CREATE TABLE expunged(mailbox BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE, uid BIGINT NOT NULL,
  modseq BIGINT NOT NULL, PRIMARY KEY(mailbox, uid));
CREATE INDEX expunged_by_modseq ON expunged(mailbox, modseq);
)sql",
    // 3: DKIM keys shared by the nodes (cluster/dkim_keys.hpp); the PEM sealed when
    // encryption at rest is on.
    R"sql(
CREATE TABLE dkim_keys(domain TEXT NOT NULL, selector TEXT NOT NULL, pem BYTEA NOT NULL, sealed BOOLEAN NOT NULL,
  PRIMARY KEY(domain, selector));
CREATE TABLE dkim_removed(domain TEXT NOT NULL, selector TEXT NOT NULL, PRIMARY KEY(domain, selector));
)sql",
    // 4: the blob purge (store/pg_blobs.hpp): when a body was last used, and the bodies
    // that may have lost their last message -- every new one, and those of deleted
    // messages (a trigger: EXPUNGE, and folders or users removed by cascade).
    R"sql(
ALTER TABLE blobs ADD COLUMN used TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE TABLE blob_gc(id BYTEA PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now());
INSERT INTO blob_gc(id) SELECT id FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.id);
CREATE FUNCTION bulwark_blob_gc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO blob_gc(id) SELECT DISTINCT blob FROM gone ON CONFLICT (id) DO UPDATE SET at = now();
  RETURN NULL;
END $$;
CREATE TRIGGER messages_blob_gc AFTER DELETE ON messages REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION bulwark_blob_gc();
)sql",
    // 5: the settings the admin API changes, shared by the nodes
    // (cluster/shared_settings.hpp): one accumulated patch and its version.
    R"sql(
CREATE TABLE shared_settings(id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL,
  patch JSONB NOT NULL, changed_by TEXT NOT NULL DEFAULT '', changed_at TIMESTAMPTZ);
INSERT INTO shared_settings(id, version, patch) VALUES(1, 0, '{}');
)sql",
    // 6: where a delivered copy came from ("node/queue id" for local delivery from a
    // node's spool), so that delivering it again after a crash finds it there.
    R"sql(
ALTER TABLE messages ADD COLUMN origin TEXT;
CREATE UNIQUE INDEX messages_by_origin ON messages(mailbox, origin) WHERE origin IS NOT NULL;
)sql",
    // 7: the outbound queue (store/pg_queue.hpp): each message's envelope, body and
    // delivery state, held by one node (its lease is that node's heartbeat); its body a
    // candidate for the purge when it leaves.
    R"sql(
CREATE TABLE queue(id TEXT PRIMARY KEY, holder TEXT,
  envelope BYTEA NOT NULL, sealed BOOLEAN NOT NULL, blob BYTEA NOT NULL REFERENCES blobs(id),
  state BYTEA[] NOT NULL DEFAULT '{}', arrival BIGINT NOT NULL, size BIGINT NOT NULL,
  retry BOOLEAN NOT NULL DEFAULT false);
CREATE INDEX queue_by_holder ON queue(holder);
CREATE INDEX queue_by_blob ON queue(blob);
CREATE TRIGGER queue_blob_gc AFTER DELETE ON queue REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION bulwark_blob_gc();
)sql",
    // 8: greylisting (policy/pg_greylist.hpp): triplets by their keyed hash, each change
    // numbered so that a node reads only what changed since its last look.
    R"sql(
CREATE SEQUENCE greylist_seq;
CREATE TABLE greylist(key TEXT PRIMARY KEY, first BIGINT NOT NULL, last BIGINT NOT NULL, passed BOOLEAN NOT NULL,
  node TEXT NOT NULL, seq BIGINT NOT NULL);
CREATE INDEX greylist_by_seq ON greylist(seq);
)sql",
};

constexpr int kVersion = int(sizeof(kMigrations) / sizeof(kMigrations[0]));
// pg_advisory_lock key: "bulwark" schema changes.
constexpr const char* kLock = "SELECT pg_advisory_lock(7262917504101)";
constexpr const char* kUnlock = "SELECT pg_advisory_unlock(7262917504101)";

}  // namespace

int schema_version() { return kVersion; }

int database_version(pg::Conn& c) {
  auto r = c.run("SELECT to_regclass('bulwark_schema') IS NOT NULL");
  if (r.text(0, 0) != "t") return 0;
  auto v = c.run("SELECT version FROM bulwark_schema");
  return v.rows() ? int(v.integer(0, 0)) : 0;
}

int migrate(pg::Conn& c) {
  c.run(kLock);
  struct Unlock {
    pg::Conn& c;
    ~Unlock() {
      try {
        if (c.ok()) c.run(kUnlock);
      } catch (...) {
      }
    }
  } unlock{c};
  int before = database_version(c);
  if (before > kVersion)
    throw std::runtime_error("the database's schema is version " + std::to_string(before) + ", this bulwark knows up to " +
                             std::to_string(kVersion) + ": upgrade bulwark on this node");
  for (int v = before; v < kVersion; ++v) {
    pg::Transaction t(c);
    if (v == 0) c.run("CREATE TABLE bulwark_schema(version INTEGER NOT NULL); INSERT INTO bulwark_schema VALUES(0)");
    c.run(kMigrations[v]);
    c.run("UPDATE bulwark_schema SET version = " + std::to_string(v + 1));
    t.commit();
  }
  return before;
}

void require_version(pg::Conn& c) {
  int v = database_version(c);
  if (v == kVersion) return;
  if (v == 0) throw std::runtime_error("the database has no bulwark schema: run `bulwark cluster init`");
  throw std::runtime_error("the database's schema is version " + std::to_string(v) + ", this bulwark's is " +
                           std::to_string(kVersion) +
                           (v < kVersion ? ": run `bulwark cluster init` to upgrade it" : ": upgrade bulwark on this node"));
}

}  // namespace bulwark::cluster
