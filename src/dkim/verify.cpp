// dkim/: verification of DKIM-Signature fields (RFC 6376 6, RFC 8463, RFC 8301).
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/strings.hpp"
#include "dkim/dkim.hpp"

namespace bulwark::dkim {

struct Verifier::Sig {
  Verdict v;
  bool done = false;  // the verdict is final (a syntax error, expired...)
  bool relaxed_head = false, relaxed_body = false;
  bool ed25519 = false;
  std::vector<std::string> h;
  std::string bh, b_raw, identity, raw;
  std::optional<uint64_t> limit;
  std::unique_ptr<BodyHash> hash;

  void verdict(Verdict::Result r, std::string why) {
    v.result = r;
    v.reason = std::move(why);
    done = true;
  }
};

const char* result_name(Verdict::Result r) {
  switch (r) {
    case Verdict::pass: return "pass";
    case Verdict::fail: return "fail";
    case Verdict::neutral: return "neutral";
    case Verdict::policy: return "policy";
    case Verdict::temperror: return "temperror";
    case Verdict::permerror: return "permerror";
  }
  return "permerror";
}

namespace {

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + uint64_t(c - '0');
  }
  return true;
}

// The field with the value of its b= tag removed (RFC 6376 3.7), whitespace kept.
std::string without_b(std::string_view raw) {
  size_t colon = raw.find(':');
  size_t pos = colon + 1;
  while (pos <= raw.size()) {
    size_t semi = raw.find(';', pos);
    size_t end = semi == std::string_view::npos ? raw.size() : semi;
    std::string_view part = raw.substr(pos, end - pos);
    size_t eq = part.find('=');
    if (eq != std::string_view::npos) {
      std::string_view name = part.substr(0, eq);
      while (!name.empty() && (name.front() == ' ' || name.front() == '\t' || name.front() == '\r' || name.front() == '\n'))
        name.remove_prefix(1);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      if (name == "b") return std::string(raw.substr(0, pos + eq + 1)) + std::string(raw.substr(end));
    }
    if (semi == std::string_view::npos) break;
    pos = semi + 1;
  }
  return std::string(raw);
}

// "a : b:c" -> {"a", "b", "c"}
std::vector<std::string> colon_list(std::string_view s) {
  std::vector<std::string> out;
  for (size_t p = 0; p <= s.size();) {
    size_t colon = s.find(':', p);
    out.emplace_back(trim(s.substr(p, colon == std::string_view::npos ? std::string_view::npos : colon - p)));
    if (colon == std::string_view::npos) break;
    p = colon + 1;
  }
  return out;
}

std::string canon_header(std::string_view raw, bool relaxed) {
  return relaxed ? relaxed_header(raw) : std::string(raw);
}

// i= must be the domain d= or a subdomain of it.
bool identity_in_domain(std::string_view i, std::string_view d) {
  size_t at = i.rfind('@');
  if (at == std::string_view::npos) return false;
  std::string dom = to_lower(i.substr(at + 1)), want = to_lower(d);
  return dom == want || (dom.size() > want.size() && dom.substr(dom.size() - want.size()) == want &&
                         dom[dom.size() - want.size() - 1] == '.');
}

std::shared_ptr<EVP_PKEY> parse_public_key(const std::string& der, bool ed25519) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* k = nullptr;
  if (ed25519) {
    if (der.size() == 32) k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, p, der.size());
  } else {
    k = d2i_PUBKEY(nullptr, &p, long(der.size()));  // SubjectPublicKeyInfo
    if (!k) {
      p = reinterpret_cast<const unsigned char*>(der.data());
      k = d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, long(der.size()));  // bare RSAPublicKey
    }
    if (k && !EVP_PKEY_is_a(k, "RSA")) {
      EVP_PKEY_free(k);
      k = nullptr;
    }
  }
  return std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free);
}

// Parsed keys by their bytes, the most recently used 1,024 (process-wide): OpenSSL 3's
// d2i_PUBKEY takes ~130 us, five times the RSA verification itself, and a busy
// sender's key is the same in every message. An EVP_PKEY is only read once made, so
// threads share it. Unparsable keys are remembered too (as null).
std::shared_ptr<EVP_PKEY> public_key(const std::string& der, bool ed25519) {
  static constexpr size_t capacity = 1024;
  struct Cache {
    std::mutex m;
    std::list<std::string> order;  // most recent first
    std::unordered_map<std::string, std::pair<std::shared_ptr<EVP_PKEY>, std::list<std::string>::iterator>> keys;
  };
  static Cache cache;
  std::string id = (ed25519 ? "e" : "r") + der;
  {
    std::lock_guard lock(cache.m);
    if (auto it = cache.keys.find(id); it != cache.keys.end()) {
      cache.order.splice(cache.order.begin(), cache.order, it->second.second);
      return it->second.first;
    }
  }
  auto key = parse_public_key(der, ed25519);
  std::lock_guard lock(cache.m);
  if (cache.keys.count(id)) return key;  // another thread parsed it meanwhile
  cache.order.push_front(id);
  cache.keys.emplace(std::move(id), std::make_pair(key, cache.order.begin()));
  if (cache.keys.size() > capacity) {
    cache.keys.erase(cache.order.back());
    cache.order.pop_back();
  }
  return key;
}

// rsa-sha256: the SHA-256 of the data checked by EVP_PKEY_verify on a context made once
// per key and thread. Making the context and EVP_DigestVerifyInit's provider lookups
// cost more instructions than the RSA operation itself (callgrind); a PKCS#1 v1.5
// verification keeps no state in its context, so one serves every message. Each
// context holds a reference to its key (so the pointer cannot be reused meanwhile);
// at most 64 per thread.
bool verify_rsa(EVP_PKEY* key, std::string_view data, const std::string& sig) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &n, md_sha256(), nullptr) != 1) return false;
  struct Free {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
  };
  thread_local std::unordered_map<EVP_PKEY*, std::unique_ptr<EVP_PKEY_CTX, Free>> contexts;
  auto it = contexts.find(key);
  if (it == contexts.end()) {
    if (contexts.size() >= 64) contexts.clear();
    std::unique_ptr<EVP_PKEY_CTX, Free> c(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
    if (!c || EVP_PKEY_verify_init(c.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(c.get(), RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(c.get(), md_sha256()) != 1)
      return false;
    it = contexts.emplace(key, std::move(c)).first;
  }
  return EVP_PKEY_verify(it->second.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(), digest,
                         n) == 1;
}

bool verify_bytes(EVP_PKEY* key, bool ed25519, std::string_view data, const std::string& sig) {
  if (!ed25519) return verify_rsa(key, data, sig);
  const EVP_MD* md = nullptr;
  std::string input = signed_input(ed25519, data, &md);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
}

}  // namespace

Verifier::Verifier(std::string_view head, int64_t now, size_t max_signatures) : head_(head) {
  for (auto& f : split_fields(head_)) {
    if (!iequals(f.name, "dkim-signature")) continue;
    if (sigs_.size() >= max_signatures) break;
    auto s = std::make_unique<Sig>();
    s->raw.assign(f.raw);
    Sig& g = *s;
    sigs_.push_back(std::move(s));
    auto tags = parse_tags(f.raw.substr(f.raw.find(':') + 1));
    if (!tags) {
      g.verdict(Verdict::permerror, "malformed tag list");
      continue;
    }
    std::map<std::string, std::string> t(tags->begin(), tags->end());
    g.v.domain = to_lower(t["d"]);
    g.v.selector = t["s"];
    g.v.algorithm = t["a"];
    std::string b;
    for (char c : t["b"])
      if (c != ' ' && c != '\t') b += c;
    g.v.b = b.substr(0, 8);
    g.b_raw = b;
    if (t["v"] != "1") {
      g.verdict(Verdict::permerror, "v= is not 1");
      continue;
    }
    for (const char* need : {"a", "b", "bh", "d", "h", "s"})
      if (!t.count(need) || t[need].empty()) {
        g.verdict(Verdict::permerror, std::string("no ") + need + "= tag");
        break;
      }
    if (g.done) continue;
    if (g.v.algorithm == "ed25519-sha256") g.ed25519 = true;
    else if (g.v.algorithm == "rsa-sha1") {
      g.verdict(Verdict::permerror, "rsa-sha1 is not accepted (RFC 8301)");
      continue;
    } else if (g.v.algorithm != "rsa-sha256") {
      g.verdict(Verdict::permerror, "unknown algorithm " + sanitize(g.v.algorithm, 40));
      continue;
    }
    std::string c = t.count("c") ? to_lower(t["c"]) : "simple/simple";
    size_t slash = c.find('/');
    std::string ch = c.substr(0, slash), cb = slash == std::string::npos ? "simple" : c.substr(slash + 1);
    if ((ch != "simple" && ch != "relaxed") || (cb != "simple" && cb != "relaxed")) {
      g.verdict(Verdict::permerror, "unknown canonicalization " + sanitize(c, 40));
      continue;
    }
    g.relaxed_head = ch == "relaxed";
    g.relaxed_body = cb == "relaxed";
    for (auto& name : colon_list(t["h"]))
      if (!name.empty()) g.h.push_back(to_lower(name));
    if (std::find(g.h.begin(), g.h.end(), "from") == g.h.end()) {
      g.verdict(Verdict::permerror, "From is not signed");
      continue;
    }
    g.identity = t.count("i") ? t["i"] : "@" + g.v.domain;
    if (!identity_in_domain(g.identity, g.v.domain)) {
      g.verdict(Verdict::permerror, "i= is not within d=");
      continue;
    }
    if (t.count("l")) {
      uint64_t l = 0;
      if (!parse_u64(t["l"], l)) {
        g.verdict(Verdict::permerror, "bad l= tag");
        continue;
      }
      g.limit = l;
    }
    if (t.count("q") && t["q"].find("dns/txt") == std::string::npos) {
      g.verdict(Verdict::permerror, "unknown query method");
      continue;
    }
    uint64_t x = 0, ts = 0;
    if (t.count("x") && parse_u64(t["x"], x)) {
      if (t.count("t") && parse_u64(t["t"], ts) && x < ts) {
        g.verdict(Verdict::permerror, "x= is before t=");
        continue;
      }
      if (int64_t(x) < now) {
        g.verdict(Verdict::fail, "signature expired");
        continue;
      }
    }
    auto bh = unbase64(t["bh"]);
    if (!bh) {
      g.verdict(Verdict::permerror, "bad bh= tag");
      continue;
    }
    g.bh = *bh;
    g.hash = std::make_unique<BodyHash>(g.relaxed_body, false, g.limit);
  }
}

Verifier::~Verifier() = default;

void Verifier::body(std::string_view bytes) {
  for (auto& s : sigs_)
    if (!s->done) s->hash->update(bytes);
}

std::vector<std::string> Verifier::key_names() const {
  std::vector<std::string> out;
  for (auto& s : sigs_)
    if (!s->done) {
      std::string n = s->v.selector + "._domainkey." + s->v.domain;
      if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    }
  return out;
}

std::vector<Verdict> Verifier::finish(const std::unordered_map<std::string, KeyAnswer>& keys) {
  auto fields = split_fields(head_);
  std::vector<Verdict> out;
  for (auto& sp : sigs_) {
    Sig& s = *sp;
    if (!s.done) [&] {
      std::string digest = s.hash->finish();
      if (s.limit && s.hash->length() < *s.limit) return s.verdict(Verdict::fail, "l= is longer than the body");
      auto it = keys.find(s.v.selector + "._domainkey." + s.v.domain);
      if (it == keys.end() || it->second.status == KeyAnswer::temporary)
        return s.verdict(Verdict::temperror, "key lookup failed");
      if (it->second.status == KeyAnswer::missing || it->second.texts.empty())
        return s.verdict(Verdict::permerror, "no key for signature");
      if (it->second.texts.size() > 1) return s.verdict(Verdict::permerror, "more than one key record");
      auto kt = parse_tags(it->second.texts[0]);
      if (!kt) return s.verdict(Verdict::permerror, "malformed key record");
      std::map<std::string, std::string> k(kt->begin(), kt->end());
      if (k.count("v") && k["v"] != "DKIM1") return s.verdict(Verdict::permerror, "key record is not DKIM1");
      std::string kk = k.count("k") ? k["k"] : "rsa";
      if (kk != (s.ed25519 ? "ed25519" : "rsa")) return s.verdict(Verdict::permerror, "key type does not match a=");
      if (k.count("h") && k["h"].find("sha256") == std::string::npos)
        return s.verdict(Verdict::permerror, "key does not allow sha256");
      if (k.count("s") && k["s"].find("email") == std::string::npos && k["s"].find('*') == std::string::npos)
        return s.verdict(Verdict::permerror, "key is not for email");
      if (k.count("t")) {  // t=s: i= must be exactly d=
        auto flags = colon_list(k["t"]);
        bool strict = std::find(flags.begin(), flags.end(), "s") != flags.end();
        std::string idom = to_lower(s.identity.substr(s.identity.rfind('@') + 1));
        if (strict && idom != s.v.domain) return s.verdict(Verdict::permerror, "key requires i= to be d= (t=s)");
      }
      if (!k.count("p")) return s.verdict(Verdict::permerror, "key record has no p=");
      if (trim(k["p"]).empty()) return s.verdict(Verdict::fail, "key revoked");
      auto der = unbase64(k["p"]);
      auto pkey = der ? public_key(*der, s.ed25519) : nullptr;
      if (!pkey) return s.verdict(Verdict::permerror, "unusable public key");
      if (!s.ed25519 && EVP_PKEY_get_bits(pkey.get()) < 1024)
        return s.verdict(Verdict::permerror, "RSA key shorter than 1024 bits (RFC 8301)");
      if (digest != s.bh) return s.verdict(Verdict::fail, "body hash did not verify");
      std::string data;
      std::map<std::string, size_t> used;
      for (auto& name : s.h) {
        size_t skip = used[name]++;
        for (auto f = fields.rbegin(); f != fields.rend(); ++f) {
          if (!iequals(f->name, name) || skip-- > 0) continue;
          data += canon_header(f->raw, s.relaxed_head) + "\r\n";
          break;
        }
      }
      data += canon_header(without_b(s.raw), s.relaxed_head);
      auto sig = unbase64(s.b_raw);
      if (!sig || !verify_bytes(pkey.get(), s.ed25519, data, *sig))
        return s.verdict(Verdict::fail, "signature did not verify");
      if (s.limit && s.hash->length() > *s.limit)
        return s.verdict(Verdict::neutral, "l= leaves part of the body unsigned");
      s.v.result = Verdict::pass;
      s.done = true;
    }();
    out.push_back(s.v);
  }
  return out;
}

}  // namespace bulwark::dkim
