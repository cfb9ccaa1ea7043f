// store/pg_detail.hpp: helpers shared by the cluster mail store's files (pg_store.cpp,
// pg_folders.cpp). Private to store/.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "cluster/pg.hpp"
#include "crypt/crypt.hpp"
#include "store/pg_store.hpp"

namespace bulwark::store::pg_detail {

inline const char* const kDefaults[][2] = {
    {"Sent", "\\Sent"}, {"Drafts", "\\Drafts"}, {"Trash", "\\Trash"}, {"Junk", "\\Junk"}, {"Archive", "\\Archive"}};

inline int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An array parameter: {1,2,3}.
inline std::string int_array(const std::vector<uint32_t>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "}";
}

// Flag letters and keyword names are atoms: no quotes or backslashes to escape.
inline std::string text_array(const std::vector<std::string>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ",\"" : "\"") + v[i] + "\"";
  return s + "}";
}

inline std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  size_t from = 0;
  for (;;) {
    size_t nl = s.find('\n', from);
    out.push_back(s.substr(from, nl - from));
    if (nl == std::string::npos) break;
    from = nl + 1;
  }
  return out;
}

inline PgFolder folder_of(const pg::Result& r, int row) {
  PgFolder f;
  f.id = r.integer(row, 0);
  f.name = r.text(row, 1);
  f.special = r.text(row, 2);
  f.uidvalidity = uint32_t(r.integer(row, 3));
  f.uidnext = uint32_t(r.integer(row, 4));
  f.modseq = uint64_t(r.integer(row, 5));
  f.recent_from = uint32_t(r.integer(row, 6));
  return f;
}

// The message's head (Return-Path, Delivered-To) as stored: sealed like bodies.
inline std::string seal_head(const crypt::DataKey* key, const std::string& head) {
  return key && !head.empty() ? crypt::seal(*key, head) : head;
}

}  // namespace bulwark::store::pg_detail
