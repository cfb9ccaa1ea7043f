#include "admin/audit.hpp"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "cluster/pg.hpp"
#include "cluster/schema.hpp"
#include "cluster/settings.hpp"
#include "directory/directory.hpp"
#include "dkim/dkim.hpp"

namespace fs = std::filesystem;

namespace bulwark {
namespace {

bool group_is_everything(const Config& c, const std::string& group) {
  if (group.empty()) return false;
  auto it = c.ip_group_ranges.find(group);
  if (it == c.ip_group_ranges.end()) return false;
  for (auto& r : it->second)
    if (r.is_everything()) return true;
  return false;
}

void check_certificate(const Config& c, std::vector<Finding>& out) {
  FILE* f = std::fopen(c.cert_path().c_str(), "r");
  if (!f) {
    out.push_back({Finding::notice, "no certificate at " + c.cert_path() +
                                        (c.tls.self_signed ? " yet (a self-signed one is made at first start)"
                                                           : ": STARTTLS and SMTPS will not work")});
    return;
  }
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!x) {
    out.push_back({Finding::warning, "cannot read the certificate " + c.cert_path()});
    return;
  }
  if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0)
    out.push_back({Finding::notice, "the certificate is self-signed: other servers will use it (opportunistic TLS), "
                                    "but mail clients will warn; install one from a CA in tls.certificate"});
  int days = 0, secs = 0;
  if (ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(x))) {
    if (days < 0 || (days == 0 && secs < 0))
      out.push_back({Finding::warning, "the certificate has expired"});
    else if (days < 30)
      out.push_back({Finding::warning, "the certificate expires in " + std::to_string(days) + " days"});
  }
  X509_free(x);
}

void check_mode(const std::string& path, const std::string& what, mode_t forbidden, std::vector<Finding>& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;
  if (st.st_mode & forbidden)
    out.push_back({Finding::warning, what + " " + path + " is readable by other users (chmod o-rwx)"});
}

}  // namespace

std::vector<Finding> audit(const Config& c, Directory* dirp) {
  std::vector<Finding> out;
  auto warn = [&](std::string t) { out.push_back({Finding::warning, std::move(t)}); };
  auto note = [&](std::string t) { out.push_back({Finding::notice, std::move(t)}); };

  // Relay and the groups that open it.
  if (c.relay.open) warn("relay.open = true: anyone may relay through this server (open relay)");
  if (group_is_everything(c, c.relay.allow_ip_group))
    warn("relay.allow_ip_group \"" + c.relay.allow_ip_group + "\" contains every address: open relay");
  if (group_is_everything(c, c.relay.trusted_ip_group))
    warn("relay.trusted_ip_group \"" + c.relay.trusted_ip_group + "\" contains every address: DNS checks are off for all");
  if (group_is_everything(c, c.limits.exempt_ip_group))
    warn("limits.exempt_ip_group \"" + c.limits.exempt_ip_group + "\" contains every address: no per-IP limits apply");
  if (group_is_everything(c, c.policy.insecure_auth_ip_group))
    warn("policy.insecure_auth_ip_group contains every address: passwords may cross the network in clear");

  // Authentication.
  if (c.policy.mode == "none") warn("policy.mode = \"none\": PLAIN/LOGIN passwords are accepted without TLS");
  if (c.policy.max_auth_failures == 0) warn("policy.max_auth_failures = 0: no protection against password guessing");
  for (auto& m : c.policy.auth_mechanisms)
    if (m == "CRAM-MD5") note("CRAM-MD5 is offered: its stored secret is a password equivalent (legacy clients only)");
  if (c.password_policy.min_length < 8 || c.password_policy.min_classes < 2)
    warn("password_policy allows weak passwords (min_length " + std::to_string(c.password_policy.min_length) +
         ", min_classes " + std::to_string(c.password_policy.min_classes) + ")");
  if (!c.policy.anti_spoofing) warn("policy.anti_spoofing = false: users may send as any address");

  // Limits.
  if (c.limits.max_unknown_recipients == 0) warn("limits.max_unknown_recipients = 0: no directory harvest protection");
  if (c.limits.max_connections_per_ip == 0) warn("limits.max_connections_per_ip = 0: one address may take every connection");
  if (c.limits.max_message_size == 0) warn("limits.max_message_size = 0: messages of any size are accepted");
  if (c.limits.max_failed_commands == 0) note("limits.max_failed_commands = 0: broken or hostile clients are never cut off");
  if (c.limits.max_messages_per_hour == 0)
    note("limits.max_messages_per_hour = 0: no hourly limit per address (set one if your users relay through you)");

  // Cluster mode (SPEC 16): the engines' connections.
  if (c.cluster.enabled) {
    auto t = pg::target(c.cluster.postgres);
    if (!t) warn("cluster.postgres does not parse as a libpq conninfo");
    else if (!t->local && !t->tls_required)
      warn("cluster.postgres goes to " + t->host + " without TLS required (set sslmode=verify-full): directory and mail cross the network in clear");
    else if (t->tls_required && c.cluster.postgres.find("verify-full") == std::string::npos && !t->local)
      note("cluster.postgres: sslmode=verify-full also checks the server's name");
    const std::string& r = c.cluster.redis;
    if (r.empty()) note("cluster.redis is not set: limits, blocks and POP-before-SMTP windows count per node only");
    else if (r.rfind("redis://", 0) == 0) {
      std::string host = r.substr(8, r.find_first_of(":/", 8) - 8);
      if (host.find('@') != std::string::npos) host = host.substr(host.find('@') + 1);
      if (!(host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]"))
        warn("cluster.redis goes to " + host + " without TLS (use rediss://)");
    }
    if (c.cluster.postgres_password_file.empty() && !std::getenv("PGPASSFILE"))
      note("cluster.postgres_password_file is not set: PostgreSQL must let this node in without a password "
           "(certificate or peer authentication) or ~/.pgpass supplies it");
    // (A password file open to others is refused when the configuration loads.)
    // The schema: a node of another version refuses to start (SPEC 16); say so first.
    try {
      pg::Settings ps = cluster::pg_settings(c, "audit");
      auto conn = pg::Conn::open(ps);
      int have = cluster::database_version(*conn), want = cluster::schema_version();
      if (have == 0)
        note("the cluster's database has no schema yet: `bulwark cluster init` (or the first serve) makes it");
      else if (have < want)
        warn("the cluster's schema is version " + std::to_string(have) + ", this bulwark's is " + std::to_string(want) +
             ": `bulwark cluster init` upgrades it (nodes of the old version then refuse to start)");
      else if (have > want)
        warn("the cluster's schema is version " + std::to_string(have) + ", this bulwark's is " + std::to_string(want) +
             ": this node refuses to start; upgrade its bulwark");
    } catch (const std::exception& e) {
      warn(std::string("cluster.postgres cannot be reached: ") + e.what());
    }
  }

  // Outbound.
  if (c.delivery.tls == "off") warn("delivery.tls = \"off\": outbound mail never uses TLS");
  if (!c.delivery.relay_password_file.empty())
    check_mode(c.delivery.relay_password_file, "delivery.relay_password_file", S_IROTH | S_IWOTH, out);

  // Process and files.
  if (c.server.user.empty()) note("server.user is empty: the server keeps the user it was started as");
  check_mode(c.server.data_dir, "data_dir", S_IROTH | S_IWOTH | S_IXOTH, out);
  check_mode((fs::path(c.server.data_dir) / "directory.db").string(), "the directory", S_IROTH, out);
  check_mode(c.key_path(), "the private key", S_IROTH | S_IRGRP, out);
  // The logs name clients, senders and users: not for everyone on the host.
  for (const char* log : {"mail.log", "security.log", "bulwark.log"})
    check_mode((fs::path(c.server.log_dir) / log).string(), std::string("the log"), S_IROTH | S_IWOTH, out);
  struct stat ld {};
  if (::stat(c.server.log_dir.c_str(), &ld) == 0 && (ld.st_mode & S_IWOTH))
    warn("log_dir " + c.server.log_dir + " is writable by other users (chmod o-w)");
  check_certificate(c, out);
  if (c.dmarc.mode == "off" && c.spf.mode == "off") note("SPF and DMARC are off: forged senders are not even marked");
  for (auto& k : dkim::list_keys(c.server.data_dir)) {
    struct stat ks {};
    if (::stat(k.path.c_str(), &ks) == 0 && (ks.st_mode & 077))
      warn("DKIM key " + k.path + " is readable by other users (chmod 600)");
    if (dirp && !dirp->is_local_domain(k.domain))
      note("DKIM key " + k.path + " belongs to " + k.domain + ", which is not a local domain (bulwark dkim remove)");
  }

  // The directory.
  if (!dirp) return out;  // cluster mode, PostgreSQL not reached or of another schema: said above
  Directory& dir = *dirp;
  auto domains = dir.list_domains();
  if (domains.empty()) note("no local domain yet (bulwark domain add DOMAIN)");
  bool fallback = dir.resolve_postmaster(c.server.hostname, c.server.postmaster).kind == Resolution::local;
  if (!c.server.postmaster.empty() && !fallback)
    warn("server.postmaster " + c.server.postmaster + " does not resolve to a mailbox or remote address");
  auto keys = dkim::list_keys(c.server.data_dir);
  for (auto& d : domains) {
    if (!d.anti_spoofing) warn("domain " + d.name + " has anti-spoofing off: its addresses can be forged by anyone");
    bool has_key = std::any_of(keys.begin(), keys.end(), [&](const dkim::Key& k) { return k.domain == d.name; });
    if (c.dkim.sign && !has_key)
      note("domain " + d.name + " has no DKIM key: its mail leaves unsigned (bulwark dkim keygen " + d.name + ")");
    Address pm{"postmaster", d.name, false};
    if (dir.resolve(pm).kind == Resolution::local) continue;
    if (fallback)
      note("domain " + d.name + " has no postmaster@ of its own: its postmaster mail goes to the server's postmaster");
    else
      warn("domain " + d.name + " has no postmaster@ address (RFC 5321 4.5.1 requires one; bulwark alias add; "
           "the server does not start without one)");
  }
  for (auto& u : dir.user_security()) {
    if (!u.has_scram) note("user " + u.address + " has no SCRAM-SHA-256 keys (set before SCRAM existed): bulwark user passwd");
    if (u.has_cram_md5) note("user " + u.address + " has a CRAM-MD5 secret (legacy)");
    if (u.old_hash) note("user " + u.address + "'s password hash uses old Argon2id parameters (upgraded at the next login)");
  }
  return out;
}

}  // namespace bulwark
