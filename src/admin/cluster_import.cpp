#include "admin/cluster_import.hpp"

#include <ctime>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "cluster/dkim_keys.hpp"
#include "policy/pg_greylist.hpp"
#include "queue/spool.hpp"
#include "store/pg_queue.hpp"
#include "core/address.hpp"
#include "crypt/file.hpp"
#include "crypt/records.hpp"
#include "core/strings.hpp"
#include "directory/directory.hpp"
#include "store/folders.hpp"
#include "store/mailstore.hpp"
#include "store/pg_store.hpp"

namespace bulwark {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBatch = 50;  // messages per transaction: what a kill can cost a rerun

struct Counts {
  size_t folders = 0, messages = 0, already = 0;
};

void import_folder(const std::string& key, const std::string& maildir, const store::FolderEntry& entry,
                   store::PgStore& mail, Counts& n) {
  std::string dir = store::folder_dir(maildir, entry.name), error;
  if (!store::is_inbox(entry.name) && !fs::exists(dir)) return;  // a parent only implied by its children
  auto f = store::Folder::open(dir, error);
  if (!f) throw std::runtime_error("cannot read folder " + entry.name + " of " + key + ": " + error);
  store::PgFolder want;
  want.name = entry.name;
  want.special = entry.special;
  want.uidvalidity = f->uidvalidity();
  want.uidnext = f->next_uid();
  want.modseq = f->highest_modseq();
  want.recent_from = f->recent_from();
  auto imported = mail.import_folder(key, want, store::read_keywords(dir), error);
  if (!imported) throw std::runtime_error(error);
  std::set<uint32_t> have(imported->uids.begin(), imported->uids.end());
  ++n.folders;
  std::vector<store::PgStore::OldMessage> batch;
  auto flush = [&]() {
    if (batch.empty()) return;
    if (!mail.import_messages(imported->id, batch, error)) throw std::runtime_error(error);
    n.messages += batch.size();
    batch.clear();
  };
  for (auto& m : f->messages()) {
    if (have.count(m.uid)) {
      ++n.already;
      continue;
    }
    std::string why;
    auto file = f->read_message(m, &why);
    auto content = file ? file->all(&why) : std::nullopt;
    if (!content) {
      if (errno == ENOENT) continue;  // gone since the folder was read
      throw std::runtime_error("cannot read message " + std::to_string(m.uid) + " of " + entry.name + " of " + key +
                               ": " + why);
    }
    batch.push_back({m.uid, m.modseq, m.flags, store::arrival_time(m.base), std::move(*content)});
    if (batch.size() >= kBatch) flush();
  }
  flush();
}

}  // namespace

void cluster_import(const Config& old, Directory& to, store::PgStore& mail, pg::Conn& conn, std::ostream& out) {
  if (old.cluster.enabled) throw std::runtime_error(old.file + " is a cluster node's configuration, not a single machine's");
  if (!fs::exists(old.server.data_dir)) throw std::runtime_error("no data directory " + old.server.data_dir);
  auto from = Directory::open(old.server.data_dir);
  size_t rows = to.import_rows(*from);
  out << "directory: " << rows << " row(s) added (domains, users, aliases, groups, delegations, administrators)"
      << std::endl;
  out << "DKIM keys: " << cluster::dkim_import(conn, old.server.data_dir, crypt::data_key())
      << " added (every node takes them within seconds)" << std::endl;
  Counts n;
  std::string error;
  for (auto& address : from->list_users()) {
    auto a = parse_mailbox(address);
    if (!a) continue;
    std::string key = a->lookup_key();
    std::string maildir = maildir_path(old.server.data_dir, key);
    if (!fs::exists(maildir)) continue;
    Counts before = n;
    for (auto& sub : store::subscriptions(maildir))
      if (!mail.subscribe(key, sub, true, error)) throw std::runtime_error(error);
    for (auto& entry : store::list_folders(maildir)) import_folder(key, maildir, entry, mail, n);
    out << key << ": " << (n.folders - before.folders) << " folder(s), " << (n.messages - before.messages)
        << " message(s) copied, " << (n.already - before.already) << " there already" << std::endl;
  }
  out << "imported: " << n.folders << " folder(s), " << n.messages << " message(s); " << n.already
      << " message(s) were there already" << std::endl;
  // The outbound queue: each message held by no node yet (the first node to beat takes
  // it over and delivers it). Copied: the old spool stays as it was.
  if (fs::exists(fs::path(old.server.data_dir) / "queue")) {
    Spool spool(old.server.data_dir);
    size_t added = 0, there = 0;
    for (auto& id : spool.list()) {
      if (spool.load(id).status != Loaded::ok) continue;
      (store::queue_import(conn, crypt::data_key(), spool, id) ? added : there)++;
    }
    out << "queue: " << added << " message(s) added (a node takes them over within seconds), " << there
        << " there already or unreadable" << std::endl;
  }
  // Greylisting: the passed triplets, under the keys the nodes use (keyed hashes).
  if (fs::exists(fs::path(old.server.data_dir) / "greylist")) {
    std::string why;
    auto text = crypt::read_text((fs::path(old.server.data_dir) / "greylist").string(), crypt::data_key(), &why);
    if (!text) throw std::runtime_error("the old greylist cannot be read: " + why);
    int64_t now = int64_t(std::time(nullptr));
    out << "greylisting: " << import_greylist(conn, text->text, crypt::data_key(), now, old.greylisting.expire.count())
        << " passed triplet(s) added" << std::endl;
  }
}

}  // namespace bulwark
