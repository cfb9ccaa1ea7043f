// dkim/: signing (RFC 6376 5, RFC 8463): relaxed/relaxed, rsa-sha256 and ed25519-sha256.
#include <openssl/evp.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <stdexcept>

#include "core/header.hpp"
#include "core/strings.hpp"
#include "dkim/dkim.hpp"

namespace bulwark::dkim {

namespace {

// What a signature covers, in this order. Trace and transport fields (Received,
// Return-Path) change in transit and are left out; From is over-signed so that no
// second From can be added after signing (RFC 6376 8.15).
const char* const kSigned[] = {"from",       "reply-to",  "sender",       "subject",       "date",
                               "message-id", "to",        "cc",           "in-reply-to",   "references",
                               "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
                               "list-id",    "list-unsubscribe", "list-unsubscribe-post", "feedback-id"};

std::string sign_bytes(EVP_PKEY* key, Algorithm a, std::string_view data) {
  const EVP_MD* md = nullptr;
  std::string input = signed_input(a == Algorithm::ed25519, data, &md);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    throw std::runtime_error("DKIM signing failed (OpenSSL)");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    throw std::runtime_error("DKIM signing failed (OpenSSL)");
  sig.resize(len);
  return sig;
}

int64_t dir_stamp(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

std::vector<std::string> headers_to_sign(const std::vector<Field>& fields) {
  std::vector<std::string> out;
  for (const char* name : kSigned) {
    size_t n = 0;
    for (auto& f : fields) n += iequals(f.name, name);
    if (std::string_view(name) == "from") ++n;
    for (size_t i = 0; i < n; ++i) out.push_back(name);
  }
  return out;
}

std::vector<Key> Signer::keys_for(const std::string& domain) {
  std::string dir = (std::filesystem::path(data_dir_) / "dkim" / domain).string();
  int64_t stamp = dir_stamp(dir);
  std::lock_guard lk(mu_);
  auto it = cache_.find(domain);
  if (it != cache_.end() && it->second.stamp == stamp) return it->second.keys;
  std::vector<Key> newest;
  if (stamp != 0) {
    for (auto& k : list_keys(data_dir_, domain)) {
      auto same = std::find_if(newest.begin(), newest.end(), [&](const Key& n) { return n.algorithm == k.algorithm; });
      if (same == newest.end()) newest.push_back(k);
      else if (std::tie(k.created, k.selector) > std::tie(same->created, same->selector)) *same = k;
    }
  }
  if (cache_.size() > 10000) cache_.clear();  // bounded: one entry per From: domain seen
  cache_[domain] = {stamp, newest};
  return newest;
}

std::unique_ptr<Signer::Job> Signer::begin(std::string_view head) {
  auto fields = split_fields(head);
  size_t froms = 0;
  for (auto& f : fields) froms += iequals(f.name, "from");
  if (froms != 1) return nullptr;  // RFC 5322: exactly one From
  std::string msg(head);
  msg += "\r\n\r\n";
  HeaderAddresses from = header_addresses(msg, "from");
  if (!from.ok || from.addresses.empty()) return nullptr;
  std::string domain = to_lower(from.addresses[0].domain);
  for (auto& a : from.addresses)
    if (to_lower(a.domain) != domain) return nullptr;
  if (domain.empty() || domain.find('/') != std::string::npos || domain[0] == '.' || domain[0] == '[') return nullptr;
  auto keys = keys_for(domain);
  if (keys.empty()) return nullptr;
  auto job = std::make_unique<Job>();
  job->keys_ = std::move(keys);
  job->domain_ = domain;
  job->head_.assign(head);
  job->hash_ = std::make_unique<BodyHash>(true);
  return job;
}

std::string Signer::Job::finish(int64_t now) {
  std::string bh = base64(hash_->finish());
  auto fields = split_fields(head_);
  auto names = headers_to_sign(fields);
  // The canonical header fields named in h=, each instance taken from the bottom up.
  std::string signed_headers;
  std::map<std::string, size_t> used;
  for (auto& name : names) {
    size_t skip = used[name]++;
    for (auto f = fields.rbegin(); f != fields.rend(); ++f) {
      if (!iequals(f->name, name)) continue;
      if (skip-- > 0) continue;
      signed_headers += relaxed_header(f->raw) + "\r\n";
      break;
    }
  }
  std::string h;
  for (auto& n : names) h += (h.empty() ? "" : ":") + n;
  std::string out;
  for (auto& k : keys_) {
    std::string field = std::string("DKIM-Signature: v=1; a=") +
                        (k.algorithm == Algorithm::ed25519 ? "ed25519-sha256" : "rsa-sha256") +
                        "; c=relaxed/relaxed; d=" + domain_ + "; s=" + k.selector + ";\r\n\tt=" + std::to_string(now) +
                        "; h=" + h + ";\r\n\tbh=" + bh + ";\r\n\tb=";
    std::string data = signed_headers + relaxed_header(field);
    std::string b = base64(sign_bytes(k.pkey.get(), k.algorithm, data));
    for (size_t i = 0; i < b.size(); i += 72) field += (i ? "\r\n\t " : "") + b.substr(i, 72);
    out += field + "\r\n";
  }
  return out;
}

std::string Signer::sign(std::string_view message, int64_t now) {
  size_t body = body_offset(message);
  std::string_view head = message.substr(0, body == std::string_view::npos ? message.size() : body - 2);
  if (head.size() >= 2 && head.substr(head.size() - 2) == "\r\n") head.remove_suffix(2);
  auto job = begin(head);
  if (!job) return "";
  if (body != std::string_view::npos) job->body(message.substr(body));
  return job->finish(now);
}

}  // namespace bulwark::dkim
