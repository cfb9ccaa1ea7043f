// config/: the TOML configuration turned into a typed Config. Every key -- its section,
// default, scope and how its value is read and checked -- is declared once in
// schema.cpp; config.cpp reads the file through it and checks what spans keys.
// Depends on core/.
#pragma once
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ip.hpp"

namespace bulwark {

// "FILE:LINE: key: problem" -- what check-config prints and serve refuses to start with.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ListenerConfig {
  std::string service;  // smtp | submission | smtps
  std::string address;
  uint16_t port = 0;
  std::string allowed_ip_group;  // "" = everyone
  uint64_t max_connections = 0;  // 0 = no cap
};

struct DnsServer {
  std::string address;
  uint16_t port = 53;
};

struct Config {
  std::string file;  // the path it was read from

  struct {
    std::string hostname = "localhost";
    std::string data_dir = "/var/lib/bulwark";
    std::string log_dir = "/var/log/bulwark";
    std::string user = "bulwark";
    // Extension: where postmaster@ mail goes for a domain without a postmaster of its
    // own ("" = postmaster@hostname, else the first domain's postmaster).
    std::string postmaster;
  } server;

  struct {
    std::string certificate = "cert.pem";  // resolved against data_dir
    std::string private_key = "key.pem";
    bool self_signed = true;
    std::string min_version = "1.2";
  } tls;

  // name -> elements as written; "local" always exists (default: loopback).
  RawIpGroups ip_groups{{"local", {"127.0.0.0/8", "::1"}}};
  IpGroupMap ip_group_ranges;  // flattened, filled by load_config

  struct {
    bool open = false;
    std::string allow_ip_group = "local";
    bool allow_authenticated = true;
    std::chrono::seconds pop_before_smtp{0};
    std::string trusted_ip_group;
  } relay;

  struct {
    uint64_t max_messages_per_hour = 0;
    uint64_t max_connections_per_ip = 20;
    uint64_t max_mailbox_connections_per_ip = 50;  // POP3 + IMAP connections of one IP together
    uint64_t max_unknown_recipients = 20;
    std::chrono::seconds harvest_block{3600};
    uint64_t max_failed_commands = 10;
    uint64_t max_recipients = 100;
    uint64_t max_message_size = 50ull << 20;
    uint64_t max_hops = 30;
    std::string exempt_ip_group;
    // Extension: message bytes all sessions together may hold in memory; a message
    // over 256 KiB, or one arriving while this is used up, streams to the spool disk.
    uint64_t message_memory = 256ull << 20;
    bool require_sender_domain_in_dns = false;
    bool require_client_ptr = false;
  } limits;

  struct {
    std::string mode = "secure-auth";  // none | secure-auth | encrypted
    std::string insecure_auth_ip_group;
    std::vector<std::string> auth_mechanisms{"SCRAM-SHA-256", "PLAIN", "LOGIN"};
    bool anti_spoofing = true;
    uint64_t max_auth_failures = 5;                  // per IP per 15 minutes; 0 = off
    std::chrono::seconds auth_failure_delay{1};      // extension: wait before a failed-AUTH reply
    // extension: a successful password login lets the same user with the same password
    // skip Argon2id for this long (Dovecot's auth_cache_ttl); 0 = off
    std::chrono::seconds login_cache_ttl{3600};
    bool received_auth_user = false;                 // extension: name the AUTH user in Received:
  } policy;

  struct {
    uint64_t min_length = 10;
    uint64_t min_classes = 3;
    bool forbid_username = true;
  } password_policy;

  struct {
    std::string mode = "direct";         // direct | relay
    std::string relay_host;
    uint16_t relay_port = 25;
    std::string relay_auth = "none";     // none | smtp | pop3-before-smtp
    std::string relay_user;
    std::string relay_password_file;     // resolved against the config file's directory
    std::string tls = "opportunistic";   // opportunistic | required | off
    uint64_t max_delivery_threads = 32;
    std::chrono::seconds retry_interval{1800};
    std::chrono::seconds warn_after{4 * 3600};
    std::chrono::seconds bounce_after{5 * 86400};
    std::string report_language = "en";
    uint16_t mx_port = 25;
    // Extensions of the specification:
    uint64_t max_per_destination = 4;    // concurrent sessions to one domain / relay host
    std::string tls_ca_file;             // extra CA for verifying in required mode ("" = system store)
    uint16_t relay_pop3_port = 110;      // relay_auth = "pop3-before-smtp"
    std::chrono::seconds connect_timeout{30};
    std::chrono::seconds reply_timeout{300};  // each reply, each block sent (RFC 5321 4.5.3.2)
  } delivery;

  struct {
    bool sign = true;    // sign mail of ours whose From: domain has a key (bulwark dkim keygen)
    bool verify = true;  // verify inbound signatures; the result goes into Authentication-Results
  } dkim;

  struct {
    std::string password_file;  // `serve` reads the password here when encryption is on ("" = the terminal)
  } encryption;

  struct {
    std::string mode = "tag";  // off | tag (Authentication-Results only) | reject (fail -> 550 5.7.23)
  } spf;

  // [cluster] (SPEC 16; docs/cluster.md): shared state in PostgreSQL and Redis. Without
  // the table, everything is embedded (SQLite, Maildir, memory).
  struct {
    bool enabled = false;                // the table is present
    std::string node;                    // unique per node: logs, metrics, leases, heartbeats
    std::string postgres;                // libpq conninfo
    std::string postgres_password_file;  // "" = none (or PGPASSFILE); mode 600
    std::string redis;                   // redis://host:port/db or rediss:// (TLS); "" = no Redis
    std::string redis_password_file;
    std::chrono::seconds lease{120};
  } cluster;

  struct {
    std::string mode = "tag";  // off | tag | enforce (p=reject -> 550 5.7.1, p=quarantine -> Junk)
  } dmarc;

  struct {
    std::vector<std::string> zones;  // DNSBL zones; a listed client gets 554 5.7.1 at RCPT
  } dnsbl;

  struct {
    bool enabled = false;
    std::chrono::seconds delay{300};             // first (network, sender, recipient): 451 4.7.1 until then
    std::chrono::seconds expire{35 * 86400};     // a passed triplet is remembered this long after its last use
  } greylisting;

  struct {
    std::vector<DnsServer> servers;  // empty = /etc/resolv.conf
    std::chrono::seconds timeout{5};
  } dns;

  struct {
    std::chrono::seconds command{300};   // RFC 5321 4.5.3.2: at least 5 minutes
    std::chrono::seconds data{600};      // longest wait for data inside DATA/BDAT
    uint64_t min_data_rate = 500;        // bytes/s a DATA/BDAT phase must average after its first `data`
                                         // seconds (Postfix's smtpd_min_data_rate); 0 = no minimum
    std::chrono::seconds session{3600};  // whole connection
    std::chrono::seconds shutdown{30};   // SIGTERM: how long transactions may finish
  } timeouts;

  std::vector<ListenerConfig> listeners;

  // Warnings for the log at start (e.g. an open relay); not errors.
  std::vector<std::string> warnings;

  // [dns] servers as "ip:port" / "[v6]:port" for the resolver.
  std::vector<std::string> dns_server_list() const;

  // Derived absolute paths.
  std::string cert_path() const;
  std::string key_path() const;
};

// Reads and validates. Throws ConfigError.
Config load_config(const std::string& path);

// The error "FILE:LINE: key: problem" for a check made after loading (net/preflight):
// the line where `key` ("tls.certificate") is set in cfg's file, else 1.
ConfigError config_error(const Config& cfg, const std::string& key, const std::string& problem);

}  // namespace bulwark
