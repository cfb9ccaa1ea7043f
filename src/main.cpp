// `bulwark`: `serve` runs the server; every other command administers its state.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <sodium.h>
#include <filesystem>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <iostream>
#include <thread>

#include "admin/audit.hpp"
#include "admin/cluster_import.hpp"
#include "admin/encryption_cli.hpp"
#include "auth/password.hpp"
#include "cluster/node.hpp"
#include "cluster/dkim_keys.hpp"
#include "cluster/schema.hpp"
#include "cluster/settings.hpp"
#include "config/config.hpp"
#include "core/metrics.hpp"
#include "core/strings.hpp"
#include "crypt/keystore.hpp"
#include "delivery/local.hpp"
#include "delivery/remote.hpp"
#include "dkim/dkim.hpp"
#include "directory/directory.hpp"
#include "logging/logs.hpp"
#include "net/preflight.hpp"
#include "net/server.hpp"
#include "serve.hpp"
#include "queue/spool.hpp"
#include "store/folders.hpp"
#include "store/mailstore.hpp"
#include "store/pg_queue.hpp"
#include "store/pg_store.hpp"

using namespace bulwark;
using bulwark::cluster::pg_settings;
namespace fs = std::filesystem;

namespace {

constexpr int kOk = 0, kRuntime = 1, kUsage = 2;

Address mailbox_arg(const std::string& s, const char* what) {
  auto a = parse_mailbox(s);
  if (!a) throw UsageError(std::string(what) + " \"" + sanitize(s) + "\" is not a valid address (user@domain)");
  return *a;
}

// A new user's mailbox: INBOX and the special-use folders (SPEC 12), owned by
// server.user when the CLI runs as root, so the server can write to it.
void make_mailbox(const Config& cfg, const std::string& key) {
  std::string md = maildir_path(cfg.server.data_dir, key), error;
  if (cfg.cluster.enabled) {  // the folders in PostgreSQL, for every node
    store::PgStore st(pg_settings(cfg), 1, crypt::data_key());
    if (!st.ensure_defaults(key, error)) std::cerr << "warning: the mailbox of " << key << " was not created: " << error << "\n";
    return;
  }
  if ((!store::note_mailbox_owner(md, key, error) || !store::ensure_default_folders(md, error)) && !error.empty())
    std::cerr << "warning: the mailbox of " << key << " was not created: " << error << "\n";
  if (::getuid() != 0 || cfg.server.user.empty()) return;
  passwd* pw = getpwnam(cfg.server.user.c_str());
  if (!pw) return;
  fs::path box(md);
  ::chown(box.parent_path().parent_path().c_str(), pw->pw_uid, pw->pw_gid);  // mail/
  ::chown(box.parent_path().c_str(), pw->pw_uid, pw->pw_gid);                // mail/<domain>/
  ::chown(box.c_str(), pw->pw_uid, pw->pw_gid);
  std::error_code ec;
  for (auto& e : fs::recursive_directory_iterator(box, ec)) ::lchown(e.path().c_str(), pw->pw_uid, pw->pw_gid);
}

void print_queue_entry(const StoredMessage& m, const std::string& node = "") {
  std::cout << m.envelope.id << "  " << m.content_size << " bytes  from <" << sanitize(m.envelope.sender) << ">";
  if (!node.empty()) std::cout << "  node " << node;
  if (m.attempts) std::cout << "  attempts " << m.attempts << ", next " << iso_utc(m.next_attempt);
  std::cout << "\n";
  for (auto& s : target_states(m)) {
    std::string state = s.state == "bounced"   ? "bounced: " + sanitize(s.reason, 120)
                        : s.state == "waiting" ? (s.local ? "waiting" : "waiting (remote delivery)")
                                               : s.state;
    std::cout << "    " << (s.local ? "local  " : "remote ") << "<" << sanitize(s.target) << ">  " << state << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bulwark: a secure mail server"};
  app.require_subcommand(1);
  std::string config_path = "/etc/bulwark/bulwark.toml";
  app.add_option("--config,-c", config_path, "configuration file")->capture_default_str();

  auto sub = [&](CLI::App* parent, const char* name, const char* help) {
    auto s = parent->add_subcommand(name, help);
    s->fallthrough();
    return s;
  };
  auto* serve_cmd = sub(&app, "serve", "run the server in the foreground");
  auto* check_cmd = sub(&app, "check-config", "validate the configuration and exit");

  std::string arg1, arg2;
  std::vector<std::string> members;
  bool no_anti_spoofing = false, password_stdin = false, cram_md5 = false;

  auto* domain = sub(&app, "domain", "local domains");
  domain->require_subcommand(1);
  auto* domain_add = sub(domain, "add", "add a local domain");
  domain_add->add_option("DOMAIN", arg1)->required();
  domain_add->add_flag("--no-anti-spoofing", no_anti_spoofing, "do not restrict sender addresses of this domain");
  auto* domain_remove = sub(domain, "remove", "remove a local domain (it must be empty)");
  domain_remove->add_option("DOMAIN", arg1)->required();
  auto* domain_list = sub(domain, "list", "list local domains");

  auto* user = sub(&app, "user", "mailbox users");
  user->require_subcommand(1);
  auto* user_add = sub(user, "add", "add a user (password from the terminal or --password-stdin)");
  user_add->add_option("ADDRESS", arg1)->required();
  user_add->add_flag("--password-stdin", password_stdin, "read the password from standard input");
  user_add->add_flag("--cram-md5", cram_md5, "also store a CRAM-MD5 secret (legacy clients only)");
  auto* user_passwd = sub(user, "passwd", "set a user's password");
  user_passwd->add_option("ADDRESS", arg1)->required();
  user_passwd->add_flag("--password-stdin", password_stdin, "read the password from standard input");
  user_passwd->add_flag("--cram-md5", cram_md5, "also store a CRAM-MD5 secret (legacy clients only)");
  auto* user_remove = sub(user, "remove", "remove a user (the mailbox stays on disk)");
  user_remove->add_option("ADDRESS", arg1)->required();
  auto* user_list = sub(user, "list", "list users");
  user_list->add_option("DOMAIN", arg1, "only this domain");

  auto* alias = sub(&app, "alias", "aliases");
  alias->require_subcommand(1);
  auto* alias_add = sub(alias, "add", "add an alias (several targets: add it several times)");
  alias_add->add_option("ALIAS", arg1)->required();
  alias_add->add_option("TARGET", arg2)->required();
  auto* alias_remove = sub(alias, "remove", "remove an alias and all its targets");
  alias_remove->add_option("ALIAS", arg1)->required();
  auto* alias_list = sub(alias, "list", "list aliases");

  auto* group = sub(&app, "group", "groups (distribution lists)");
  group->require_subcommand(1);
  auto* group_add = sub(group, "add", "add a group or members to it");
  group_add->add_option("GROUP_ADDRESS", arg1)->required();
  group_add->add_option("--member", members, "member address (repeatable)")->required();
  auto* group_remove = sub(group, "remove", "remove a group");
  group_remove->add_option("GROUP_ADDRESS", arg1)->required();
  auto* group_list = sub(group, "list", "list groups and members");

  auto* admin = sub(&app, "admin", "administrators of the HTTPS console and API (not mail users)");
  admin->require_subcommand(1);
  bool read_only = false;
  auto* admin_add = sub(admin, "add", "add an administrator");
  admin_add->add_option("NAME", arg1)->required();
  admin_add->add_flag("--read-only", read_only, "may look, may not change anything");
  admin_add->add_flag("--password-stdin", password_stdin, "read the password from standard input");
  auto* admin_remove = sub(admin, "remove", "remove an administrator");
  admin_remove->add_option("NAME", arg1)->required();
  auto* admin_list = sub(admin, "list", "list administrators");
  auto* admin_token = sub(admin, "token", "print a new API token for NAME (the previous one stops working)");
  admin_token->add_option("NAME", arg1)->required();

  auto* audit_cmd = sub(&app, "audit", "security review of the configuration and directory (exit 1 on warnings)");

  auto* delegate = sub(&app, "delegate", "delegations: who may send as another address");
  delegate->require_subcommand(1);
  auto* delegate_add = sub(delegate, "add", "let USER send as ADDRESS");
  delegate_add->add_option("--owner", arg1, "the address that is delegated")->required();
  delegate_add->add_option("--to", arg2, "the user who may send as it")->required();
  auto* delegate_remove = sub(delegate, "remove", "remove a delegation");
  delegate_remove->add_option("--owner", arg1)->required();
  delegate_remove->add_option("--to", arg2)->required();
  auto* delegate_list = sub(delegate, "list", "list delegations");

  auto* queue = sub(&app, "queue", "the mail queue");
  queue->require_subcommand(1);
  auto* queue_list = sub(queue, "list", "list queued messages");
  auto* queue_show = sub(queue, "show", "show one queued message");
  queue_show->add_option("ID", arg1)->required();
  auto* queue_retry = sub(queue, "retry", "retry remote delivery now (one message, or all)");
  queue_retry->add_option("ID", arg1, "queue id (default: every message)");
  auto* queue_delete = sub(queue, "delete", "delete a queued message");
  queue_delete->add_option("ID", arg1)->required();

  std::string selector, algorithm = "rsa2048";
  auto* dkim_cmd = sub(&app, "dkim", "DKIM signing keys");
  dkim_cmd->require_subcommand(1);
  auto* dkim_keygen = sub(dkim_cmd, "keygen", "make a signing key for a local domain and print its DNS TXT record");
  dkim_keygen->add_option("DOMAIN", arg1)->required();
  dkim_keygen->add_option("--selector", selector, "DNS selector (default: YYYYMM + r or e)");
  dkim_keygen->add_option("--algorithm", algorithm, "rsa2048 | ed25519")
      ->check(CLI::IsMember({"rsa2048", "ed25519"}))
      ->capture_default_str();
  auto* dkim_list = sub(dkim_cmd, "list", "list signing keys and their DNS records");
  dkim_list->add_option("DOMAIN", arg1, "only this domain");
  auto* dkim_remove = sub(dkim_cmd, "remove", "remove a signing key");
  dkim_remove->add_option("DOMAIN", arg1)->required();
  dkim_remove->add_option("--selector", selector, "the key's selector")->required();

  auto* encryption = sub(&app, "encryption", "encryption at rest");
  encryption->require_subcommand(1);
  auto* encryption_status =
      sub(encryption, "status", "whether the data is encrypted: off | on | converting (n of m done)");
  auto* encryption_enable = sub(encryption, "enable",
                                "turn encryption on: converts the data and logs (resumable; the server stopped); "
                                "--password-stdin: the new password on one line");
  encryption_enable->add_flag("--password-stdin", password_stdin, "read the password from standard input");
  auto* encryption_disable = sub(encryption, "disable",
                                 "turn encryption off: converts everything back (resumable; the server stopped)");
  encryption_disable->add_flag("--password-stdin", password_stdin, "read the password from standard input");
  auto* encryption_passwd =
      sub(encryption, "passwd", "change the encryption password (no data is rewritten); --password-stdin: two lines, old and new");
  encryption_passwd->add_flag("--password-stdin", password_stdin, "read the old and the new password from standard input");

  auto* cluster_cmd = sub(&app, "cluster", "cluster mode (SPEC 16): shared state in PostgreSQL and Redis");
  cluster_cmd->require_subcommand(1);
  auto* cluster_init = sub(cluster_cmd, "init", "create or upgrade the schema in PostgreSQL");
  sub(cluster_cmd, "status", "the nodes: name, state, version, address, sessions, last heartbeat");
  std::string import_from;
  auto* cluster_import_cmd = sub(cluster_cmd, "import",
                                 "copy a single-machine installation in (directory, mailboxes with their UIDs and flags); "
                                 "resumable, idempotent; the old data is only read");
  cluster_import_cmd->add_option("--from-config", import_from, "the old installation's configuration file")->required();
  auto* cluster_purge = sub(cluster_cmd, "purge",
                            "remove message bodies no message has referred to for an hour (nodes do it every 10 minutes)");

  bool follow = false;
  auto* log_cmd = sub(&app, "log", "the logs");
  log_cmd->require_subcommand(1);
  auto* log_show = sub(log_cmd, "show", "print a log: mail, security or main (bulwark.log), or a rotated log "
                                        "file by its path; the way to read them when encryption is on");
  log_show->add_option("LOG", arg1, "mail, security, main, or the path of a log file (e.g. a rotated mail.log.1)")
      ->required()
      ->check(check_log_name);
  log_show->add_flag("--follow,-f", follow, "keep printing lines as they are written");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "bulwark: " << e.what() << " (see bulwark --help)\n";
    return kUsage;
  }

  Config cfg;
  try {
    cfg = load_config(config_path);
  } catch (const ConfigError& e) {
    std::cerr << e.what() << "\n";
    return kUsage;
  }

  try {
    if (check_cmd->parsed()) {
      preflight(cfg);  // the checks serve makes beyond the file's own
      std::cout << config_path << ": ok\n";
      return kOk;
    }
    if (serve_cmd->parsed()) return serve(cfg);

    if (queue->parsed() && cfg.cluster.enabled) {  // the cluster's queue, from any node
      unlock_encryption(cfg);
      auto c = pg::Conn::open(cluster::pg_settings(cfg, "admin"));
      const crypt::DataKey* key = crypt::data_key();
      auto queued = [&](const std::string& id) {
        auto q = store::queue_get(*c, key, id);
        if (!q) throw std::runtime_error("no queued message " + sanitize(id));
        return *q;
      };
      if (queue_list->parsed()) {
        auto all = store::queue_list(*c, key);
        for (auto& q : all) print_queue_entry(q.msg, q.holder.empty() ? "(none yet)" : q.holder);
        std::cout << all.size() << " message(s) queued in the cluster\n";
      } else if (queue_show->parsed()) {
        auto q = queued(arg1);
        print_queue_entry(q.msg, q.holder.empty() ? "(none yet)" : q.holder);
        std::cout << "client " << q.msg.envelope.client_ip << "  helo " << sanitize(q.msg.envelope.helo) << "  tls "
                  << (q.msg.envelope.tls.empty() ? "none" : q.msg.envelope.tls) << "\n\n";
        std::cout << store::queue_headers(*c, key, arg1);
      } else if (queue_retry->parsed()) {
        if (!arg1.empty()) queued(arg1);
        store::queue_retry(*c, arg1);
        std::cout << "retry requested for " << (arg1.empty() ? std::string("every queued message") : arg1)
                  << " (the node holding it picks it up at its next heartbeat, within "
                  << std::min<int64_t>(5, std::max<int64_t>(1, cfg.cluster.lease.count() / 3)) << " s)\n";
      } else if (queue_delete->parsed()) {
        if (!store::queue_delete(*c, arg1)) throw std::runtime_error("no queued message " + sanitize(arg1));
        std::cout << "deleted " << arg1 << "\n";
      }
      return kOk;
    }
    if (queue->parsed()) {
      unlock_encryption(cfg);  // the queue files are sealed when encryption is on
      Spool spool(cfg.server.data_dir);
      auto queued = [&spool](const std::string& id) {
        Loaded l = spool.load(id);
        if (l.status == Loaded::missing) throw std::runtime_error("no queued message " + sanitize(id));
        if (l.status == Loaded::damaged)
          throw std::runtime_error("queued message " + sanitize(id) + " is damaged (" + l.why +
                                   "); a running server moves it to quarantine/");
        return l.msg;
      };
      if (queue_list->parsed()) {
        size_t n = 0;
        for (auto& id : spool.list()) {
          Loaded l = spool.load(id);
          if (l.status == Loaded::ok) print_queue_entry(l.msg);
          else if (l.status == Loaded::damaged) std::cout << id << "  damaged: " << l.why << "\n";
          n += l.status != Loaded::missing;
        }
        std::cout << n << " message(s) queued\n";
      } else if (queue_show->parsed()) {
        StoredMessage m = queued(arg1);
        print_queue_entry(m);
        std::cout << "client " << m.envelope.client_ip << "  helo " << sanitize(m.envelope.helo) << "  tls "
                  << (m.envelope.tls.empty() ? "none" : m.envelope.tls) << "\n\n";
        std::cout << spool.read_headers(m);
      } else if (queue_retry->parsed()) {
        if (!arg1.empty()) queued(arg1);
        RemoteDelivery::request_retry(cfg.server.data_dir, arg1);
        std::cout << "retry requested for " << (arg1.empty() ? std::string("every queued message") : arg1)
                  << " (a running server picks it up within a second)\n";
      } else if (queue_delete->parsed()) {
        if (spool.load(arg1).status == Loaded::missing) throw std::runtime_error("no queued message " + sanitize(arg1));
        spool.remove(arg1);
        std::cout << "deleted " << arg1 << "\n";
      }
      return kOk;
    }

    if (log_show->parsed()) {
      show_log(cfg, arg1, follow);
      return kOk;
    }
    if (encryption_status->parsed()) {
      std::cout << bulwark::encryption_status(cfg) << "\n";
      return kOk;
    }
    if (encryption_enable->parsed()) {
      bulwark::encryption_enable(cfg, password_stdin);
      return kOk;
    }
    if (encryption_disable->parsed()) {
      bulwark::encryption_disable(cfg, password_stdin);
      return kOk;
    }
    if (encryption_passwd->parsed()) {
      bulwark::encryption_passwd(cfg, password_stdin);
      return kOk;
    }

    // Commands below read the directory, write mailboxes (user add) or read and write
    // DKIM keys: when the data is encrypted they need its key, as `serve` does.
    unlock_encryption(cfg);
    if (cluster_cmd->parsed()) {
      if (!cfg.cluster.enabled) throw UsageError("no [cluster] in " + config_path + ": this is a single-machine installation");
      auto c = pg::Conn::open(pg_settings(cfg));
      if (cluster_init->parsed()) {
        int before = cluster::migrate(*c);
        if (before == cluster::schema_version())
          std::cout << "schema is current (version " << before << ") in " << c->server() << "\n";
        else
          std::cout << (before ? "upgraded the schema from version " + std::to_string(before) + " to "
                               : std::string("made the schema, version "))
                    << cluster::schema_version() << ", in " << c->server() << "\n";
        return kOk;
      }
      cluster::require_version(*c);
      if (cluster_import_cmd->parsed()) {
        Config old;
        try {
          old = load_config(import_from);
        } catch (const ConfigError& e) {
          throw UsageError(e.what());
        }
        // The old data's key when it is encrypted (the cluster then seals with it: give
        // every node that keyring), else this node's.
        unlock_encryption(fs::exists(fs::path(old.server.data_dir) / "keyring") ? old : cfg);
        auto to = Directory::open_cluster(pg_settings(cfg), false);
        store::PgStore mail(pg_settings(cfg), 2, crypt::data_key());
        cluster_import(old, *to, mail, *c, std::cout);
        return kOk;
      }
      if (cluster_purge->parsed()) {
        store::Purged total;
        do {
          auto p = store::purge_blobs(*c);
          total.bodies += p.bodies;
          total.bytes += p.bytes;
          total.more = p.more;
        } while (total.more);
        std::cout << "removed " << total.bodies << " unreferenced message bodies (" << total.bytes << " bytes)\n";
        return kOk;
      }
      auto lease = cfg.cluster.lease.count();
      std::cout << "schema version " << cluster::schema_version() << " at " << c->server() << "\n";
      std::cout << "NODE\tSTATE\tVERSION\tADDRESS\tSESSIONS\tLAST HEARTBEAT\tSTARTED\tQUEUED\n";
      for (auto& n : cluster::nodes(*c)) {
        std::string state = n.seconds_since_heartbeat < 15 ? "up" : n.seconds_since_heartbeat < double(lease) ? "late" : "down";
        std::cout << n.name << "\t" << state << "\t" << n.version << "\t" << n.address << "\t" << n.sessions << "\t"
                  << int64_t(n.seconds_since_heartbeat) << "s ago\t" << n.started << "\t" << n.queued << "\n";
      }
      return kOk;
    }
    if (audit_cmd->parsed()) {
      std::unique_ptr<Directory> dir;
      try {
        dir = open_directory(cfg, false);
      } catch (const std::exception&) {
        if (!cfg.cluster.enabled) throw;  // cluster mode: the findings say why
      }
      size_t warnings = 0;
      for (auto& f : audit(cfg, dir.get())) {
        warnings += f.level == Finding::warning;
        std::cout << (f.level == Finding::warning ? "warning: " : "notice:  ") << f.text << "\n";
      }
      std::cout << "bulwark audit: " << warnings << " warning(s)\n";
      return warnings ? kRuntime : kOk;
    }
    auto dir = open_directory(cfg, false);
    if (dkim_keygen->parsed()) {
      std::string domain = to_lower(arg1);
      if (!dir->is_local_domain(domain))
        throw UsageError("domain " + sanitize(domain) + " is not a local domain (bulwark domain add " + sanitize(domain) + ")");
      auto alg = algorithm == "ed25519" ? dkim::Algorithm::ed25519 : dkim::Algorithm::rsa2048;
      if (selector.empty()) selector = dkim::default_selector(alg, int64_t(std::time(nullptr)));
      if (!dkim::valid_selector(selector))
        throw UsageError("selector \"" + sanitize(selector) + "\" must be DNS labels (letters, digits, '-', '.')");
      dkim::Key k = dkim::keygen(cfg.server.data_dir, domain, selector, alg);
      if (cfg.cluster.enabled) {  // every node signs with it
        auto c = pg::Conn::open(pg_settings(cfg));
        cluster::dkim_published(*c, cfg.server.data_dir, domain, selector, crypt::data_key());
      }
      std::cout << dkim::dns_record(k) << "\n";
      std::cerr << "key stored in " << k.path << " (0600); publish the record above in DNS, then mail from "
                << domain << " is signed with it\n";
    } else if (dkim_list->parsed()) {
      for (auto& k : dkim::list_keys(cfg.server.data_dir, arg1)) {
        char day[16];
        std::time_t t = std::time_t(k.created);
        std::tm tm{};
        gmtime_r(&t, &tm);
        std::strftime(day, sizeof day, "%Y-%m-%d", &tm);
        std::cout << k.domain << "  " << k.selector << "  " << dkim::algorithm_name(k.algorithm) << "  " << day << "\n"
                  << "  " << dkim::dns_record(k) << "\n";
      }
    } else if (dkim_remove->parsed()) {
      dkim::remove_key(cfg.server.data_dir, arg1, selector);
      if (cfg.cluster.enabled) {
        auto c = pg::Conn::open(pg_settings(cfg));
        cluster::dkim_removed(*c, to_lower(arg1), selector);
      }
      std::cout << "removed DKIM key " << selector << " of " << to_lower(arg1) << "\n";
    } else if (domain_add->parsed()) {
      dir->add_domain(arg1, !no_anti_spoofing);
      std::cout << "added domain " << to_lower(arg1) << "\n";
    } else if (domain_remove->parsed()) {
      dir->remove_domain(arg1);
      std::cout << "removed domain " << to_lower(arg1) << "\n";
    } else if (domain_list->parsed()) {
      for (auto& d : dir->list_domains()) std::cout << d.name << (d.anti_spoofing ? "" : "  (no anti-spoofing)") << "\n";
    } else if (user_add->parsed() || user_passwd->parsed()) {
      Address a = mailbox_arg(arg1, "user");
      std::string pw = read_password(password_stdin);
      Wiped wiped{pw};
      require_password_policy(cfg, pw, a.lookup_key());
      if (user_add->parsed()) dir->add_user(a, pw, cram_md5);
      else dir->set_password(a, pw, cram_md5);
      sodium_memzero(pw.data(), pw.size());
      if (user_add->parsed()) make_mailbox(cfg, a.lookup_key());
      std::cout << (user_add->parsed() ? "added user " : "password changed for ") << a.str() << "\n";
    } else if (user_remove->parsed()) {
      Address a = mailbox_arg(arg1, "user");
      dir->remove_user(a);
      std::cout << "removed user " << a.str() << "\n";
    } else if (user_list->parsed()) {
      for (auto& u : dir->list_users(arg1)) std::cout << u << "\n";
    } else if (alias_add->parsed()) {
      Address a = mailbox_arg(arg1, "alias"), t = mailbox_arg(arg2, "target");
      dir->add_alias(a, t);
      std::cout << "added alias " << a.lookup_key() << " -> " << t.lookup_key() << "\n";
    } else if (alias_remove->parsed()) {
      Address a = mailbox_arg(arg1, "alias");
      dir->remove_alias(a);
      std::cout << "removed alias " << a.lookup_key() << "\n";
    } else if (alias_list->parsed()) {
      for (auto& [a, t] : dir->list_aliases()) std::cout << a << " -> " << t << "\n";
    } else if (group_add->parsed()) {
      Address g = mailbox_arg(arg1, "group");
      std::vector<Address> ms;
      for (auto& m : members) ms.push_back(mailbox_arg(m, "member"));
      dir->add_group(g, ms);
      std::cout << "group " << g.lookup_key() << " has " << ms.size() << " new member(s)\n";
    } else if (group_remove->parsed()) {
      Address g = mailbox_arg(arg1, "group");
      dir->remove_group(g);
      std::cout << "removed group " << g.lookup_key() << "\n";
    } else if (group_list->parsed()) {
      for (auto& [g, m] : dir->list_groups()) std::cout << g << ": " << m << "\n";
    } else if (admin_add->parsed()) {
      std::string pw = read_password(password_stdin);
      Wiped wiped{pw};
      require_password_policy(cfg, pw, arg1);
      dir->add_admin(arg1, pw, read_only);
      std::cout << "added administrator " << arg1 << (read_only ? " (read-only)" : "") << "\n";
    } else if (admin_remove->parsed()) {
      dir->remove_admin(arg1);
      std::cout << "removed administrator " << arg1 << "\n";
    } else if (admin_list->parsed()) {
      for (auto& ad : dir->list_admins())
        std::cout << ad.name << (ad.read_only ? " read-only" : " full") << (ad.has_token ? " token" : "") << "\n";
    } else if (admin_token->parsed()) {
      std::cout << dir->new_admin_token(arg1) << "\n";
    } else if (delegate_add->parsed()) {
      Address o = mailbox_arg(arg1, "owner"), t = mailbox_arg(arg2, "user");
      dir->add_delegation(o, t);
      std::cout << t.lookup_key() << " may now send as " << o.lookup_key() << "\n";
    } else if (delegate_remove->parsed()) {
      Address o = mailbox_arg(arg1, "owner"), t = mailbox_arg(arg2, "user");
      dir->remove_delegation(o, t);
      std::cout << "removed delegation of " << o.lookup_key() << " to " << t.lookup_key() << "\n";
    } else if (delegate_list->parsed()) {
      for (auto& [o, t] : dir->list_delegations()) std::cout << o << " -> " << t << "\n";
    }
    return kOk;
  } catch (const UsageError& e) {
    std::cerr << "bulwark: " << e.what() << "\n";
    return kUsage;
  } catch (const ConfigError& e) {  // preflight: a configuration serve would refuse
    std::cerr << e.what() << "\n";
    return kUsage;
  } catch (const std::exception& e) {
    std::cerr << "bulwark: " << e.what() << "\n";
    return kRuntime;
  }
}
