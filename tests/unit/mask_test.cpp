// RFC 6455 5.3 masking: the word/SIMD implementation against a naive reference
// for every key offset, length and alignment.
#include <duplex/protocol/frame.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "protocol_test_util.hpp"

namespace duplex::protocol {
namespace {

using test::Bytes;

void naive_mask(std::byte* p, std::size_t n, MaskKey key, std::size_t offset) {
  for (std::size_t i = 0; i < n; ++i) p[i] ^= key[(offset + i) % 4];
}

Bytes random_bytes(std::size_t n, std::mt19937& rng) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::byte>(rng() & 0xFF);
  return b;
}

constexpr MaskKey key_a{std::byte{0x37}, std::byte{0xfa}, std::byte{0x21}, std::byte{0x3d}};

// apply_mask on `len` bytes of a copy of `storage` from `align`, against the
// naive loop on another copy; returns that copy (the expected bytes).
Bytes expect_apply_mask_matches_naive(const Bytes& storage, std::size_t align, std::size_t offset,
                                      std::size_t len) {
  Bytes a = storage, b = storage;
  const std::size_t next = apply_mask(std::span(a.data() + align, len), key_a, offset);
  naive_mask(b.data() + align, len, key_a, offset);
  EXPECT_EQ(a, b) << "align " << align << " offset " << offset << " len " << len;
  EXPECT_EQ(next, (offset + len) % 4);
  return b;
}

// The SSE2 loop is tested on AVX2 machines too: ctest runs these tests again
// with DUPLEX_NO_AVX2=1 (unit.mask_without_avx2, tests/unit/CMakeLists.txt).
TEST(Mask, Avx2IsUsedAsTheCpuAndTheEnvironmentSay) {
  const char* off = std::getenv("DUPLEX_NO_AVX2");
  if (off != nullptr && *off != '\0') {
    EXPECT_FALSE(mask_uses_avx2());
    return;
  }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  EXPECT_EQ(mask_uses_avx2(), __builtin_cpu_supports("avx2") != 0);
#else
  EXPECT_FALSE(mask_uses_avx2());
#endif
}

TEST(Mask, MatchesNaiveForEveryOffsetLengthAndAlignment) {
  std::mt19937 rng(6455);
  Bytes storage = random_bytes(300 + 16, rng);
  for (std::size_t align = 0; align < 16; align += 3)
    for (std::size_t offset = 0; offset < 4; ++offset)
      for (std::size_t len = 0; len <= 300; ++len) {
        expect_apply_mask_matches_naive(storage, align, offset, len);
        ASSERT_FALSE(::testing::Test::HasFailure());
      }
}

TEST(Mask, CopyMaskedMatchesNaiveForEveryOffsetLengthAndAlignment) {
  std::mt19937 rng(7);
  const Bytes src = random_bytes(300 + 16, rng);
  for (std::size_t align = 0; align < 16; align += 5)
    for (std::size_t offset = 0; offset < 4; ++offset)
      for (std::size_t len = 0; len <= 300; ++len) {
        Bytes dst(len + 32, std::byte{0xEE});
        const std::size_t next = copy_masked(std::span(dst.data() + 7, len),
                                             std::span(src.data() + align, len), key_a, offset);
        Bytes expect(src.begin() + static_cast<std::ptrdiff_t>(align),
                     src.begin() + static_cast<std::ptrdiff_t>(align + len));
        naive_mask(expect.data(), len, key_a, offset);
        ASSERT_TRUE(std::equal(expect.begin(), expect.end(), dst.begin() + 7));
        // Bytes around the destination are untouched.
        for (std::size_t i = 0; i < 7; ++i) ASSERT_EQ(dst[i], std::byte{0xEE});
        for (std::size_t i = 7 + len; i < dst.size(); ++i) ASSERT_EQ(dst[i], std::byte{0xEE});
        ASSERT_EQ(next, (offset + len) % 4);
      }
}

// Lengths where the wide (AVX2, when the CPU has it) loop runs, for each count
// of 32-byte blocks and tail bytes after it, both in place and copying.
TEST(Mask, LongPayloadsMatchNaiveForEveryTailAndOffset) {
  std::mt19937 rng(11);
  const Bytes storage = random_bytes(1200 + 16, rng);
  for (std::size_t align = 0; align < 16; align += 7)
    for (std::size_t offset = 0; offset < 4; ++offset)
      for (std::size_t len = 250; len <= 1200; ++len) {
        const Bytes b = expect_apply_mask_matches_naive(storage, align, offset, len);
        ASSERT_FALSE(::testing::Test::HasFailure());
        Bytes dst(len + 2, std::byte{0xEE});
        copy_masked(std::span(dst.data() + 1, len), std::span(storage.data() + align, len), key_a,
                    offset);
        ASSERT_TRUE(std::equal(dst.begin() + 1, dst.end() - 1,
                               b.begin() + static_cast<std::ptrdiff_t>(align)))
            << "copy: align " << align << " offset " << offset << " len " << len;
        ASSERT_EQ(dst.front(), std::byte{0xEE});
        ASSERT_EQ(dst.back(), std::byte{0xEE});
      }
}

TEST(Mask, IsItsOwnInverse) {
  std::mt19937 rng(1);
  const Bytes orig = random_bytes(1000, rng);
  Bytes b = orig;
  apply_mask(b, key_a);
  EXPECT_NE(b, orig);
  apply_mask(b, key_a);
  EXPECT_EQ(b, orig);
}

TEST(Mask, PieceByPieceEqualsWhole) {
  std::mt19937 rng(2);
  const Bytes orig = random_bytes(777, rng);
  for (int trial = 0; trial < 50; ++trial) {
    Bytes whole = orig, pieces = orig;
    apply_mask(whole, key_a);
    std::size_t pos = 0, off = 0;
    while (pos < pieces.size()) {
      std::size_t n = std::min<std::size_t>(rng() % 40, pieces.size() - pos);
      off = apply_mask(std::span(pieces.data() + pos, n), key_a, off);
      pos += n;
    }
    ASSERT_EQ(whole, pieces);
  }
}

TEST(Mask, ZeroKeyChangesNothingAndLargeBuffer) {
  std::mt19937 rng(3);
  const Bytes orig = random_bytes(65536 + 13, rng);
  Bytes b = orig;
  apply_mask(b, MaskKey{});
  EXPECT_EQ(b, orig);
  Bytes c = orig;
  apply_mask(std::span(c.data() + 1, c.size() - 1), key_a, 3);
  Bytes d = orig;
  naive_mask(d.data() + 1, d.size() - 1, key_a, 3);
  EXPECT_EQ(c, d);
}

TEST(Mask, OffsetIsTakenModuloFour) {
  Bytes a = test::bytes("abcdefgh"), b = a;
  EXPECT_EQ(apply_mask(a, key_a, 6), (6u + 8u) % 4);
  naive_mask(b.data(), b.size(), key_a, 2);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace duplex::protocol
