// dkim/: DKIM (RFC 6376, RFC 8463): canonicalization, keys under <data_dir>/dkim/,
// signing of outgoing mail and the sans-I/O part of verification (the caller looks
// up the key records in DNS). OpenSSL does the cryptography. Depends on core/.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;

namespace bulwark::dkim {

// ---- message structure and canonicalization (canon.cpp)

// One header field as it stands in the message: "Name: value" with its folding,
// without the CRLF that ends it.
struct Field {
  std::string_view name;
  std::string_view raw;
};
// Where the body starts: just after the first empty line; npos when the message has
// no empty line (all of it is header).
size_t body_offset(std::string_view message);
// The fields of a header section (the bytes before the empty line).
std::vector<Field> split_fields(std::string_view head);
// RFC 6376 3.4.2 "relaxed" header canonicalization of one field, without CRLF.
std::string relaxed_header(std::string_view raw);

// Body canonicalization (RFC 6376 3.4.3/3.4.4) fed in pieces, hashed with SHA-256
// (or SHA-1 for verifying old rsa-sha1 signatures). `limit` (l=) bounds what is hashed.
class BodyHash {
 public:
  BodyHash(bool relaxed, bool sha1 = false, std::optional<uint64_t> limit = std::nullopt);
  ~BodyHash();
  BodyHash(const BodyHash&) = delete;
  BodyHash& operator=(const BodyHash&) = delete;
  void update(std::string_view bytes);
  std::string finish();          // the raw digest
  uint64_t length() const { return total_; }  // canonical bytes (before the l= cut)

 private:
  static constexpr size_t flush_at = 32 * 1024;
  void emit(std::string_view s);
  void flush();
  void content(std::string_view run);
  bool relaxed_;
  std::optional<uint64_t> limit_;
  uint64_t total_ = 0;
  EVP_MD_CTX* md_ = nullptr;
  bool line_content_ = false, wsp_ = false, cr_ = false;
  uint64_t empty_lines_ = 0;
  std::string pending_;  // canonical bytes not yet given to the digest
};

// Tag lists (RFC 6376 3.2): "v=1; a=rsa-sha256; ..."; nullopt when malformed or a tag
// appears twice. Values keep their inner whitespace except folding, which is removed.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_tags(std::string_view text);
std::string base64(std::string_view raw);
// What the signature algorithm signs for these header bytes, and the digest to give
// EVP_DigestSign/Verify: rsa-sha256 the bytes with SHA-256; ed25519-sha256 their
// SHA-256 hash with no digest (RFC 8463).
std::string signed_input(bool ed25519, std::string_view data, const EVP_MD** md);
// SHA-256 and SHA-1 fetched from OpenSSL's provider once: EVP_sha256() handed to an
// Init makes OpenSSL 3 look the implementation up again on every message.
const EVP_MD* md_sha256();
const EVP_MD* md_sha1();
std::optional<std::string> unbase64(std::string_view text);  // whitespace ignored

// ---- keys (keys.cpp)

enum class Algorithm { rsa2048, ed25519 };
const char* algorithm_name(Algorithm a);  // "rsa2048" | "ed25519"

struct Key {
  std::string domain, selector;
  Algorithm algorithm = Algorithm::rsa2048;
  std::string path;
  int64_t created = 0;  // unix seconds (file modification time)
  std::shared_ptr<EVP_PKEY> pkey;
};

// <data_dir>/dkim/<domain>/<selector>.pem (PKCS#8, 0600). keygen refuses an existing
// selector; the default selector is YYYYMM plus "r" (RSA) or "e" (Ed25519).
std::string default_selector(Algorithm a, int64_t now);
bool valid_selector(std::string_view s);
Key keygen(const std::string& data_dir, const std::string& domain, const std::string& selector, Algorithm a);
std::vector<Key> list_keys(const std::string& data_dir, const std::string& domain = "");
void remove_key(const std::string& data_dir, const std::string& domain, const std::string& selector);
// Cluster mode (cluster/dkim_keys.hpp): a key from another node written here (an
// existing one replaced), and a key's PEM as stored here (plaintext).
void install_key(const std::string& data_dir, const std::string& domain, const std::string& selector,
                 std::string_view pem);
std::optional<std::string> key_pem(const Key& k);
// The DNS record to publish: `sel._domainkey.domain. IN TXT "v=DKIM1; k=...; p=..."`,
// split into strings of at most 255 octets.
std::string dns_record(const Key& k);
std::string public_key_text(const Key& k);  // the p= value
std::string record_value(const Key& k);     // "v=DKIM1; k=...; p=...", not split

// ---- signing (sign.cpp)

// Signs with every key of the From: domain: the newest key of each algorithm. The
// keys of a domain are read again when its directory changes. Thread-safe.
class Signer {
 public:
  explicit Signer(std::string data_dir) : data_dir_(std::move(data_dir)) {}

  class Job {
   public:
    void body(std::string_view bytes) { hash_->update(bytes); }
    // The DKIM-Signature fields to put on top of the message, CRLF-terminated.
    std::string finish(int64_t now);
    const std::string& domain() const { return domain_; }

   private:
    friend class Signer;
    std::vector<Key> keys_;
    std::string domain_, head_;
    std::unique_ptr<BodyHash> hash_;
  };
  // `head`: the header section of the message (without the empty line). Null when the
  // message has no single From: domain with a key.
  std::unique_ptr<Job> begin(std::string_view head);
  // The whole message at once (tests, small messages).
  std::string sign(std::string_view message, int64_t now);

 private:
  std::vector<Key> keys_for(const std::string& domain);
  std::string data_dir_;
  std::mutex mu_;
  struct Cached {
    int64_t stamp = -1;
    std::vector<Key> keys;
  };
  std::unordered_map<std::string, Cached> cache_;
};

// The header fields a signature covers (h=), From counted one extra time (over-signed).
std::vector<std::string> headers_to_sign(const std::vector<Field>& fields);

// ---- verification (verify.cpp), sans-I/O: the caller feeds the body and answers the
// key lookups (TXT records at key_names()).

struct KeyAnswer {
  enum Status { found, missing, temporary } status = missing;  // missing: NXDOMAIN or no TXT
  std::vector<std::string> texts;
};

struct Verdict {
  // RFC 8601 2.7.1 result names
  enum Result { pass, fail, neutral, policy, temperror, permerror } result = permerror;
  std::string domain, selector, algorithm;  // d=, s=, a= (as far as they could be read)
  std::string b;       // the first 8 characters of b= (RFC 6008 header.b)
  std::string reason;  // why not pass, for the A-R comment and the log
};
const char* result_name(Verdict::Result r);

class Verifier {
 public:
  // head: the header section (without the empty line). At most max_signatures
  // DKIM-Signature fields are looked at (the topmost), so a message cannot make the
  // server do unbounded work.
  Verifier(std::string_view head, int64_t now, size_t max_signatures = 5);
  ~Verifier();
  bool any() const { return !sigs_.empty(); }
  void body(std::string_view bytes);
  // "selector._domainkey.domain" of every signature that still needs its key.
  std::vector<std::string> key_names() const;
  std::vector<Verdict> finish(const std::unordered_map<std::string, KeyAnswer>& keys);

 private:
  struct Sig;
  std::string head_;
  std::vector<std::unique_ptr<Sig>> sigs_;
};

}  // namespace bulwark::dkim
