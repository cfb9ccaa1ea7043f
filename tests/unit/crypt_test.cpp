// crypt/: sealed files (round trip, positioned reads, every kind of tampering) and the
// keyring (unlock, wrong password, rewrap keeps the data key).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "crypt/crypt.hpp"
#include "temp_dir.hpp"

using namespace bulwark;
using namespace bulwark::crypt;

namespace {

std::string text(size_t n, uint32_t seed = 7) {
  std::string s(n, '\0');
  for (auto& c : s) c = char((seed = seed * 1103515245u + 12345u) >> 16);
  return s;
}

// A cheap cost for tests; the real default is MODERATE.
const KdfCost kFast{1, 8192 * 1024};

}  // namespace

TEST(CryptSealed, RoundTripAtEverySizeAroundChunkEdges) {
  DataKey key = DataKey::random();
  for (size_t n : {0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 1000}) {
    std::string plain = text(n);
    std::string sealed = seal(key, plain, 16);
    EXPECT_TRUE(is_sealed(sealed));
    EXPECT_EQ(sealed.size(), kHeaderSize + n + (n == 0 ? 1 : (n + 15) / 16) * kTagSize) << n;
    EXPECT_EQ(open(key, sealed), plain) << n;
    if (n >= 8) {
      EXPECT_EQ(sealed.find(plain.substr(0, 8)), std::string::npos) << n;  // nothing in the clear
    }
  }
  std::string big = text(300000);
  EXPECT_EQ(open(key, seal(key, big)), big);
}

TEST(CryptSealed, StreamingInAnyPiecesEqualsWhole) {
  DataKey key = DataKey::random();
  std::string plain = text(5000);
  for (size_t piece : {1, 7, 64, 65, 4999, 5000}) {
    std::string out;
    Sealer s(key, &out, 64);
    for (size_t i = 0; i < plain.size(); i += piece) s.write(std::string_view(plain).substr(i, piece));
    s.finish();
    EXPECT_EQ(out.size(), seal(key, plain, 64).size()) << piece;
    EXPECT_EQ(open(key, out), plain) << piece;
  }
}

TEST(CryptSealed, NoTwoFilesShareANoncePrefix) {
  DataKey key = DataKey::random();
  std::string a = seal(key, "same"), b = seal(key, "same");
  EXPECT_NE(a.substr(12, 16), b.substr(12, 16));
  EXPECT_NE(a, b);
}

TEST(CryptSealed, EveryAlterationFailsLoudly) {
  DataKey key = DataKey::random(), other = DataKey::random();
  std::string plain = text(100);
  std::string sealed = seal(key, plain, 32);  // 4 chunks: 32 32 32 4
  std::string why;
  for (size_t i = 0; i < sealed.size(); ++i) {  // one flipped bit anywhere
    std::string bad = sealed;
    bad[i] ^= 0x01;
    EXPECT_FALSE(open(key, bad, &why)) << i;
  }
  EXPECT_FALSE(open(other, sealed, &why));
  EXPECT_EQ(why, "sealed file altered, cut short or under another key");
  // cut at a chunk boundary: the new last chunk was not sealed as the last
  EXPECT_FALSE(open(key, sealed.substr(0, kHeaderSize + 2 * (32 + kTagSize))));
  EXPECT_FALSE(open(key, sealed.substr(0, sealed.size() - 1)));
  EXPECT_FALSE(open(key, sealed + "x"));
  // two chunks swapped
  std::string swapped = sealed;
  std::string c0 = sealed.substr(kHeaderSize, 48), c1 = sealed.substr(kHeaderSize + 48, 48);
  swapped.replace(kHeaderSize, 48, c1);
  swapped.replace(kHeaderSize + 48, 48, c0);
  EXPECT_FALSE(open(key, swapped));
  // a chunk moved in from another file under the same key
  std::string other_file = seal(key, text(100, 9), 32);
  std::string mixed = sealed;
  mixed.replace(kHeaderSize, 48, other_file.substr(kHeaderSize, 48));
  EXPECT_FALSE(open(key, mixed));
  EXPECT_FALSE(open(key, "plain text", &why));
  EXPECT_EQ(why, "not a sealed file");
}

TEST(CryptSealed, ReaderDecryptsOnlyWhatIsAsked) {
  test::TempDir d;
  DataKey key = DataKey::random();
  std::string plain = text(1000);
  std::string sealed = seal(key, plain, 64);
  auto path = (d.path / "m").string();
  std::ofstream(path, std::ios::binary) << sealed;
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  auto r = Reader::make(key, fd, sealed.size());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->size(), plain.size());
  for (auto [off, len] : std::vector<std::pair<uint64_t, size_t>>{{0, 10}, {60, 10}, {63, 1}, {64, 64}, {990, 100},
                                                                 {0, 1000}, {1000, 5}, {500, 0}, {10, SIZE_MAX}})
    EXPECT_EQ(r->read(off, len), plain.substr(std::min<size_t>(off, plain.size()), len)) << off;
  ::close(fd);
  // A damaged chunk fails the reads that touch it, and only those.
  std::string bad = sealed;
  bad[kHeaderSize + 3 * (64 + kTagSize) + 5] ^= 0x40;  // chunk 3: bytes 192..255
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
  fd = ::open(path.c_str(), O_RDONLY);
  auto r2 = Reader::make(key, fd, bad.size());
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->read(0, 192), plain.substr(0, 192));
  std::string why;
  EXPECT_FALSE(r2->read(150, 100, &why));
  EXPECT_EQ(why, "sealed file altered, cut short or under another key");
  EXPECT_EQ(r2->read(256, 100), plain.substr(256, 100));
  ::close(fd);
}

TEST(CryptKeyring, UnlockRewrapAndWrongPasswords) {
  DataKey key = DataKey::random();
  std::string ring = new_keyring("correct horse", key, kFast);
  EXPECT_EQ(ring.find("correct horse"), std::string::npos);
  std::string sealed = seal(key, "a message");
  auto k1 = unlock(ring, "correct horse");
  ASSERT_TRUE(k1);
  EXPECT_EQ(open(*k1, sealed), "a message");
  std::string why;
  EXPECT_FALSE(unlock(ring, "correct horsE", &why));
  EXPECT_EQ(why, "wrong password");
  // a new password: the same data key, the old password no longer opens it
  auto ring2 = rewrap(ring, "correct horse", "battery staple");
  ASSERT_TRUE(ring2);
  EXPECT_NE(*ring2, ring);
  EXPECT_FALSE(unlock(*ring2, "correct horse"));
  auto k2 = unlock(*ring2, "battery staple");
  ASSERT_TRUE(k2);
  EXPECT_EQ(open(*k2, sealed), "a message");
  EXPECT_FALSE(rewrap(ring, "wrong", "x", &why));
  EXPECT_EQ(why, "wrong password");
}

TEST(CryptKeyring, DamageAndAlteredCostAreRefused) {
  DataKey key = DataKey::random();
  std::string ring = new_keyring("pw", key, kFast);
  std::string why;
  EXPECT_FALSE(unlock("", "pw", &why));
  EXPECT_EQ(why, "the keyring is damaged");
  EXPECT_FALSE(unlock(ring.substr(0, ring.size() / 2), "pw", &why));
  EXPECT_EQ(why, "the keyring is damaged");
  // changing the cost in the file breaks the wrapping (the kdf line is authenticated)
  std::string cheaper = ring;
  cheaper.replace(cheaper.find("ops=1"), 5, "ops=2");
  EXPECT_FALSE(unlock(cheaper, "pw", &why));
  EXPECT_EQ(why, "wrong password");
  std::string huge = ring;
  huge.replace(huge.find("ops=1"), 5, "ops=99999");
  EXPECT_FALSE(unlock(huge, "pw", &why));
  EXPECT_EQ(why, "the keyring is damaged");
}
