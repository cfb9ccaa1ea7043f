// directory/: who and what is local -- domains, users, aliases, groups -- behind the
// Directory interface, with one implementation on SQLite (WAL, so the admin CLI and
// a running server share it safely; every lookup reads current data, so changes
// take effect without restart). Lookups run on read connections of their own (a
// pool, one per thread reading at once): under WAL they never wait for a writer,
// neither this process's (a password rehash) nor the admin CLI's. Writes go through
// one connection under a mutex.
//
// Sealed form (encryption on, SPEC 13; docs/encryption.md): the database lives in
// memory (SQLite's memdb, shared by this process's connections), loaded from the
// sealed snapshot <data_dir>/directory.sealed; every change is written back sealed
// (temp + fsync + rename) under <data_dir>/directory.lock, which also serialises the
// CLI and the server; a lookup that finds the snapshot replaced reloads it, so the
// admin CLI's changes still take effect without restart.
//
// Cluster form (SPEC 16; directory/pg_replica.cpp, docs/cluster.md): the tables live in
// PostgreSQL; each node answers lookups from an in-memory replica of them (the same
// SQLite schema and code as above, so a lookup costs what it costs on one machine and
// never waits on the network on an I/O thread). A change locks PostgreSQL's directory
// version row, catches the replica up, runs the change on it, carries the rows it
// changed to PostgreSQL, bumps the version and NOTIFYs, in one transaction; every node
// LISTENs and reloads (and checks the version every few seconds besides). While a node
// cannot reach PostgreSQL its replica may be stale, so lookups answer "try later".
// Depends on core/, crypt/ and cluster/.
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>
#include <cstdint>

#include "auth/password.hpp"
#include "cluster/pg.hpp"
#include "core/address.hpp"

namespace bulwark {

struct DbConn;

// A directory operation that cannot be done (unknown domain, duplicate, ...).
class DirectoryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Resolution {
  enum Kind { local, unknown, not_local, temp_failure } kind = unknown;
  std::vector<std::string> mailboxes;  // local users (lookup keys)
  std::vector<std::string> remote;     // non-local targets of aliases/groups
};

struct DomainInfo {
  std::string name;
  bool anti_spoofing = true;
};

class Directory {
 public:
  // Opens (creating if needed) <data_dir>/directory.db -- or, when this process holds
  // the data key, the sealed snapshot, made from directory.db if there is none yet
  // (then directory.db is removed). Throws DirectoryError when the directory is
  // sealed and no key is loaded.
  static std::unique_ptr<Directory> open(const std::string& data_dir);
  // The cluster form on PostgreSQL (schema made and checked by the caller). `follow`:
  // keep the replica current (a server); the admin CLI, which makes one change and
  // goes, does not need to. Throws DirectoryError when PostgreSQL cannot be reached.
  static std::unique_ptr<Directory> open_cluster(const pg::Settings& s, bool follow);
  // False while the cluster form has lost PostgreSQL (its answers could be stale);
  // lookups then answer temp_failure. Always true on one machine.
  bool available() const;
  // Cluster form: brings the replica up to PostgreSQL's version now, so that a login
  // never answers from a replica that has not yet heard of a change already committed
  // (`user passwd`/`user remove` on another node count at once). One round trip; run it
  // off the I/O threads. False when PostgreSQL cannot be reached (available() is then
  // false too). The single-machine form: always true, nothing done.
  bool catch_up();
  // `encryption disable`: writes the sealed snapshot back as <data_dir>/directory.db
  // (temp + fsync + rename) and removes the snapshot; nothing when there is none.
  // Needs the data key. Safe to run again after an interruption.
  static void unseal(const std::string& data_dir);
  static std::string sealed_path(const std::string& data_dir);
  ~Directory();
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // Server side. Never throws: errors become temp_failure.
  Resolution resolve(const Address& a);
  // Where postmaster mail goes when the domain has no postmaster of its own (and for
  // the bare <Postmaster> of RFC 5321 4.5.1): `configured` (server.postmaster, a
  // local or remote address) if set and valid, else postmaster@server_hostname, else
  // the postmaster of the first local domain that has one. unknown: none at all.
  Resolution resolve_postmaster(const std::string& server_hostname, const std::string& configured = "");
  bool is_local_domain(const std::string& domain);

  // Admin side. Throw DirectoryError with a message for the operator.
  void add_domain(const std::string& domain, bool anti_spoofing);
  void remove_domain(const std::string& domain);
  std::vector<DomainInfo> list_domains();

  // Stores the Argon2id hash and the SCRAM-SHA-256 keys; with `cram_md5` also the
  // CRAM-MD5 secret (legacy, off by default). The password policy is the caller's.
  void add_user(const Address& a, const std::string& password, bool cram_md5 = false);
  void set_password(const Address& a, const std::string& password, bool cram_md5 = false);
  void remove_user(const Address& a);
  std::vector<std::string> list_users(const std::string& domain_filter = "");

  // Login with a password (slow: Argon2id; run it off the I/O threads). `user` is the
  // address as the client typed it. On success returns the user's lookup key; a
  // hash made with older Argon2id parameters is replaced by a current one.
  std::optional<std::string> verify_login(const std::string& user, const std::string& password);
  // The user's lookup key and stored password hash (what a login cache checks that a
  // cached success still stands: `user passwd` changes the hash, `user remove` the row).
  std::optional<std::pair<std::string, std::string>> login_record(const std::string& user);
  std::optional<auth::ScramSecret> scram_secret(const std::string& user);
  std::optional<auth::CramSecret> cram_md5_secret(const std::string& user);
  // For `bulwark audit`: which users lack SCRAM keys, have CRAM-MD5, or an old hash.
  struct UserSecurity {
    std::string address;
    bool has_scram = false, has_cram_md5 = false, old_hash = false;
  };
  std::vector<UserSecurity> user_security();
  // The lookup key of a user given as typed, if that user exists.
  std::optional<std::string> user_key(const std::string& user);

  // Sender identity (SPEC 9): may the user (lookup key) use `sender` as its address?
  // Own address, aliases and groups that lead to it, and delegations to it.
  bool may_send_as(const std::string& user_key, const Address& sender);
  // The anti-spoofing switch of a local domain; nothing if the domain is not local.
  std::optional<bool> domain_anti_spoofing(const std::string& domain);

  void add_delegation(const Address& owner, const Address& to);
  void remove_delegation(const Address& owner, const Address& to);
  std::vector<std::pair<std::string, std::string>> list_delegations();

  void add_alias(const Address& alias, const Address& target);
  void remove_alias(const Address& alias);
  std::vector<std::pair<std::string, std::string>> list_aliases();

  // Administrators (SPEC 15): separate from mail users. Names: 1-64 of a-z 0-9 . _ -
  struct AdminInfo {
    std::string name;
    bool read_only = false;
    bool has_token = false;
  };
  void add_admin(const std::string& name, const std::string& password, bool read_only);
  void remove_admin(const std::string& name);
  std::vector<AdminInfo> list_admins();
  // Argon2id (slow: off the I/O threads); an unknown name pays the same.
  std::optional<AdminInfo> verify_admin(const std::string& name, const std::string& password);
  std::optional<AdminInfo> admin(const std::string& name);
  // A new API token for the admin (the old one stops working); returns it. Only its
  // SHA-256 is stored.
  std::string new_admin_token(const std::string& name);
  std::optional<AdminInfo> admin_by_token(const std::string& token);

  // `cluster import`: every row of `from` (another directory) that this one lacks, in
  // one change; rows this one has already stay as they are (a rerun adds nothing).
  // Returns how many rows were added.
  size_t import_rows(Directory& from);

  void add_group(const Address& group, const std::vector<Address>& members);
  void remove_group(const Address& group);
  std::vector<std::pair<std::string, std::string>> list_groups();

 private:
  // A read connection, back to the pool when it goes.
  struct Lease {
    Directory* owner;
    std::unique_ptr<DbConn> conn;
    Lease(Directory* o, std::unique_ptr<DbConn> c);
    ~Lease();
    Lease(Lease&&) = default;
    DbConn& operator*() { return *conn; }
  };
  static std::unique_ptr<DbConn> connect(const std::string& path, bool writer);
  Directory(std::string path, std::unique_ptr<DbConn> writer);
  static std::unique_ptr<Directory> open_sealed(const std::string& data_dir);
  Lease reader();
  // A change: holds mu_ (and, sealed, the directory lock with the snapshot reloaded if
  // another process replaced it); when it ends without an exception and the database
  // changed, the sealed snapshot is written (an error then throws DirectoryError).
  class Writing {
   public:
    explicit Writing(Directory& d);
    ~Writing() noexcept(false);
    Writing(const Writing&) = delete;
    Writing& operator=(const Writing&) = delete;

   private:
    Directory& d_;
    std::lock_guard<std::mutex> lk_;
    int64_t changes_ = 0;
    int exceptions_ = 0;
  };
  struct Snapshot;                      // the sealed form's state (directory_sealed.cpp)
  struct PgReplica;                     // the cluster form's state (pg_replica.cpp)
  void pg_begin_change();               // Writing, cluster form: under mu_
  void pg_end_change(bool failed);      // throws DirectoryError
  void refresh();                        // readers: reload a replaced snapshot
  void reload_locked();                  // under mu_ and the directory lock
  void persist_locked();                 // under mu_ and the directory lock
  bool exists(DbConn& c, const char* sql, const std::string& key);
  // One text column of the user row `key` ("" when there is none or on error).
  std::string user_column(const char* sql, const std::string& key);
  void require_local_domain(const std::string& domain);  // writer side, under mu_
  void require_free(const std::string& key);             // writer side, under mu_
  void expand(DbConn& c, const std::string& stored, int depth, std::vector<std::string>& visited, Resolution& r);
  // An alias or group target as stored: see directory.cpp.
  std::string stored_target(DbConn& c, const Address& target);

  std::string path_;
  std::mutex mu_;  // the writer
  std::unique_ptr<DbConn> writer_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<DbConn>> idle_;  // read connections not in use
  std::unique_ptr<Snapshot> snap_;             // sealed form only
  std::unique_ptr<PgReplica> pg_;              // cluster form only
};

// Local-part rules for mailboxes we create: a dot-atom, so the name maps safely
// onto a directory on disk.
bool valid_user_local_part(const std::string& local);

}  // namespace bulwark
