// An in-memory imap::OpenFolder for session tests (and the fuzz target): messages with
// UIDs, flags, modseqs; copy targets by name.
#pragma once
#include <algorithm>
#include <map>

#include "imap/mailbox.hpp"

namespace bulwark::test {

struct MemMessage {
  imap::MessageRef ref;
  std::string content;  // CRLF
};

struct MemFolderData {
  uint32_t uidvalidity = 77, uidnext = 1;
  uint32_t recent_from = UINT32_MAX;  // \Recent: nothing unless a test says so
  uint64_t modseq = 1;
  std::vector<MemMessage> msgs;
  void add(std::string content, std::string flags = "") {
    MemMessage m;
    m.ref.uid = uidnext++;
    m.ref.modseq = ++modseq;
    m.ref.size = content.size();
    m.ref.flags = std::move(flags);
    m.ref.internal_date = 1700000000;
    m.content = std::move(content);
    msgs.push_back(std::move(m));
  }
};

class MemFolder : public imap::OpenFolder {
 public:
  MemFolder(MemFolderData& d, std::map<std::string, MemFolderData>& all) : d_(d), all_(all) { refresh_refs(); }
  uint32_t uidvalidity() const override { return d_.uidvalidity; }
  uint32_t uidnext() const override { return d_.uidnext; }
  uint64_t highestmodseq() const override { return d_.modseq; }
  const std::vector<imap::MessageRef>& messages() const override { return refs_; }
  uint32_t claim_recent() override {
    uint32_t from = d_.recent_from;
    d_.recent_from = std::max(from, d_.uidnext);
    return from;
  }
  uint32_t recent_from() override { return d_.recent_from; }
  bool refresh(std::string&) override {
    refresh_refs();
    return true;
  }
  std::optional<std::string> content(uint32_t uid, std::string&) override {
    for (auto& m : d_.msgs)
      if (m.ref.uid == uid) return m.content;
    return std::nullopt;
  }
  bool change_flags(const std::vector<uint32_t>& uids, const imap::FlagChange& change, imap::FlagChangeResult& result,
                    std::string&) override {
    for (uint32_t uid : uids)
      for (auto& m : d_.msgs) {
        if (m.ref.uid != uid) continue;
        if (change.unchanged_since && m.ref.modseq > *change.unchanged_since) {
          result.modified.push_back(uid);
          continue;
        }
        std::string f = imap::apply_change(m.ref.flags, change);
        if (f == m.ref.flags) continue;
        result.changed.emplace_back(uid, m.ref.modseq);
        m.ref.flags = f;
        m.ref.modseq = ++d_.modseq;
      }
    refresh_refs();
    return true;
  }
  bool expunge(const std::vector<uint32_t>& uids, bool only_deleted, std::string&) override {
    std::erase_if(d_.msgs, [&](const MemMessage& m) {
      return std::count(uids.begin(), uids.end(), m.ref.uid) > 0 &&
             (!only_deleted || m.ref.flags.find('T') != std::string::npos);
    });
    ++d_.modseq;
    refresh_refs();
    return true;
  }
  std::optional<std::vector<std::pair<uint32_t, uint32_t>>> copy(const std::vector<uint32_t>& uids,
                                                                  const std::string& to, std::string& error) override {
    if (!all_.count(to)) {
      error = "[TRYCREATE] No such mailbox";
      return std::nullopt;
    }
    std::vector<std::pair<uint32_t, uint32_t>> out;
    auto& t = all_[to];
    for (uint32_t u : uids)
      for (auto& m : d_.msgs)
        if (m.ref.uid == u) {
          t.add(m.content, m.ref.flags);
          out.emplace_back(u, t.msgs.back().ref.uid);
        }
    return out;
  }

 private:
  void refresh_refs() {
    refs_.clear();
    for (auto& m : d_.msgs) refs_.push_back(m.ref);
  }
  MemFolderData& d_;
  std::map<std::string, MemFolderData>& all_;
  std::vector<imap::MessageRef> refs_;
};

}  // namespace bulwark::test
