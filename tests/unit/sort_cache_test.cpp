// The process-wide SORT key cache: kept keys stay valid while held, ranks follow the
// order of the strings (equal strings, equal ranks) and follow new messages.
#include <gtest/gtest.h>

#include "net/sort_cache.hpp"

using bulwark::sort_key_cache;
using bulwark::imap::KeyField;
using bulwark::imap::SortKeys;

namespace {
SortKeys with_subject(std::string s) {
  SortKeys k;
  k.subject = std::move(s);
  k.from = "x";
  return k;
}
}  // namespace

TEST(SortKeyCache, RanksFollowTheStringsAndNewMessages) {
  const std::string folder = "/unit/sort-cache-ranks";
  std::shared_ptr<const void> hold;
  const char* subjects[] = {"b", "a", "c", "a"};
  for (uint32_t uid = 1; uid <= 4; ++uid) {
    auto k = with_subject(subjects[uid - 1]);
    ASSERT_NE(sort_key_cache().put(folder, 7, uid, std::move(k), hold), nullptr);
  }
  std::vector<const SortKeys*> out;
  std::array<std::vector<uint32_t>, bulwark::imap::kKeyFields> ranks;
  unsigned both = 1u << unsigned(KeyField::subject) | 1u << unsigned(KeyField::from);
  auto held = sort_key_cache().get(folder, 7, {1, 2, 3, 4}, out, both, &ranks);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0]->subject, "b");
  auto& r = ranks[size_t(KeyField::subject)];
  ASSERT_EQ(r.size(), 4u);
  EXPECT_LT(r[1], r[0]);  // a < b < c, the two a's alike
  EXPECT_LT(r[0], r[2]);
  EXPECT_EQ(r[1], r[3]);
  auto& f = ranks[size_t(KeyField::from)];
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0], f[3]);
  // a new message between them: the ranks are made again
  auto k = with_subject("bb");
  ASSERT_NE(sort_key_cache().put(folder, 7, 5, std::move(k), hold), nullptr);
  sort_key_cache().get(folder, 7, {1, 3, 5}, out, both, &ranks);
  EXPECT_LT(r[0], r[2]);  // b < bb < c
  EXPECT_LT(r[2], r[1]);
  // one not kept: keys where kept, no ranks
  ranks = {};
  sort_key_cache().get(folder, 7, {1, 99}, out, both, &ranks);
  EXPECT_NE(out[0], nullptr);
  EXPECT_EQ(out[1], nullptr);
  EXPECT_TRUE(ranks[0].empty());
  // another UIDVALIDITY: a new folder by that name; what was held stays readable
  const SortKeys* old = out[0];
  auto n = with_subject("z");
  sort_key_cache().put(folder, 8, 1, std::move(n), hold);
  sort_key_cache().get(folder, 7, {1}, out);
  EXPECT_EQ(out[0], nullptr);
  EXPECT_EQ(old->subject, "b");  // `held` keeps the old table
}
