// RFC 6455 section 5: frame header codec and masking.
#include <duplex/error.hpp>
#include <duplex/protocol/frame.hpp>

#include <bit>
#include <cstdlib>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
// AVX2 is used where the CPU has it, chosen at run time: the library is built
// for the baseline x86-64 (no -march flags), so only these functions are
// compiled for AVX2.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DUPLEX_MASK_AVX2 1
#include <immintrin.h>
#endif

namespace duplex::protocol {
namespace {

inline std::uint8_t u8(std::byte b) noexcept {
  return static_cast<std::uint8_t>(b);
}

// The four key bytes rotated so that byte 0 of the result masks the byte at
// key offset `offset`, repeated to fill 64 bits.
inline std::uint64_t rotated_key64(MaskKey key, std::size_t offset) noexcept {
  std::uint32_t k;
  std::memcpy(&k, key.data(), 4);
  if constexpr (std::endian::native == std::endian::little) {
    const auto shift = static_cast<unsigned>(offset * 8);
    if (shift != 0) k = (k >> shift) | (k << (32 - shift));
  } else {
    const auto shift = static_cast<unsigned>(offset * 8);
    if (shift != 0) k = (k << shift) | (k >> (32 - shift));
  }
  return (std::uint64_t{k} << 32) | k;
}

#if defined(DUPLEX_MASK_AVX2)
// Checked once: __builtin_cpu_supports reads what __builtin_cpu_init found.
// DUPLEX_NO_AVX2 set (non-empty) keeps the SSE2 loop: to test it, or compare
// the two, on a machine that has AVX2.
bool detect_avx2() noexcept {
  const char* off = std::getenv("DUPLEX_NO_AVX2");
  if (off != nullptr && *off != '\0') return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") != 0;
}
const bool cpu_has_avx2 = detect_avx2();

// From this size on, a payload is worth the AVX2 loop (a 64 KiB payload costs
// half the instructions of the SSE2 loop below).
constexpr std::size_t avx2_min_size = 256;

// One 32-byte block: the load folds into the XOR (one instruction), so a
// block costs two.
__attribute__((target("avx2"))) inline void xor_block_avx2(std::byte* dst, const std::byte* src,
                                                           __m256i k) noexcept {
  _mm256_storeu_si256(
      reinterpret_cast<__m256i*>(dst),
      _mm256_xor_si256(k, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
}

// XORs the first multiple of 32 bytes of `n` as xor_pattern() does, 256 bytes
// per turn, and returns how many it did (the caller finishes the rest).
__attribute__((target("avx2"))) std::size_t xor_pattern_avx2(std::byte* dst, const std::byte* src,
                                                             std::size_t n,
                                                             std::uint64_t k64) noexcept {
  const __m256i k = _mm256_set1_epi64x(static_cast<long long>(k64));
  std::size_t i = 0;
  // Written out: the compiler does not unroll the loop at -O2.
  for (; i + 256 <= n; i += 256) {
    xor_block_avx2(dst + i, src + i, k);
    xor_block_avx2(dst + i + 32, src + i + 32, k);
    xor_block_avx2(dst + i + 64, src + i + 64, k);
    xor_block_avx2(dst + i + 96, src + i + 96, k);
    xor_block_avx2(dst + i + 128, src + i + 128, k);
    xor_block_avx2(dst + i + 160, src + i + 160, k);
    xor_block_avx2(dst + i + 192, src + i + 192, k);
    xor_block_avx2(dst + i + 224, src + i + 224, k);
  }
  for (; i + 32 <= n; i += 32) xor_block_avx2(dst + i, src + i, k);
  return i;
}
#endif

// XORs `n` bytes of `src` with the repeating 8-byte pattern `k64` into `dst`;
// `dst` may equal `src`. Unaligned loads and stores go through memcpy or
// unaligned intrinsics, so any alignment is fine.
inline void xor_pattern(std::byte* dst, const std::byte* src, std::size_t n,
                        std::uint64_t k64) noexcept {
  std::size_t i = 0;
#if defined(DUPLEX_MASK_AVX2)
  // The pattern repeats every 8 bytes, so the SSE2 and scalar code go on at
  // i (a multiple of 32) with the same k64.
  if (n >= avx2_min_size && cpu_has_avx2) i = xor_pattern_avx2(dst, src, n, k64);
#endif
#if defined(__SSE2__)
  const __m128i k128 = _mm_set1_epi64x(static_cast<long long>(k64));
  for (; i + 64 <= n; i += 64) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, k128));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 16), _mm_xor_si128(b, k128));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 32), _mm_xor_si128(c, k128));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 48), _mm_xor_si128(d, k128));
  }
  for (; i + 16 <= n; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, k128));
  }
#endif
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src + i, 8);
    w ^= k64;
    std::memcpy(dst + i, &w, 8);
  }
  // Scalar tail: the pattern's byte j masks position i + j (i is a multiple of 8).
  std::uint8_t k[8];
  std::memcpy(k, &k64, 8);
  for (std::size_t j = 0; i < n; ++i, ++j) dst[i] = src[i] ^ std::byte{k[j]};
}

}  // namespace

std::size_t frame_header_size(const FrameHeader& h) noexcept {
  std::size_t n = 2;
  if (h.payload_length > 0xFFFF)
    n += 8;
  else if (h.payload_length > 125)
    n += 2;
  if (h.masked) n += 4;
  return n;
}

std::size_t parse_frame_header(std::span<const std::byte> data, FrameHeader& out,
                               std::error_code& ec) noexcept {
  const std::size_t n = data.size();
  if (n < 2) return 0;
  const std::uint8_t b0 = u8(data[0]);
  const std::uint8_t b1 = u8(data[1]);
  const std::uint8_t len7 = b1 & 0x7F;
  const bool masked = (b1 & 0x80) != 0;
  std::uint64_t len = len7;
  std::size_t pos = 2;
  if (len7 == 126) {
    if (n < 4) return 0;
    len = (std::uint64_t{u8(data[2])} << 8) | u8(data[3]);
    // RFC 6455 5.2: the minimal number of bytes must encode the length.
    if (len < 126) {
      ec = make_error_code(error::non_minimal_length);
      return 0;
    }
    pos = 4;
  } else if (len7 == 127) {
    // RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
    if (n >= 3 && (u8(data[2]) & 0x80) != 0) {
      ec = make_error_code(error::length_top_bit);
      return 0;
    }
    // RFC 6455 5.2: minimal encoding; the value is <= 0xFFFF exactly when its
    // six high bytes are zero, which is known once byte 7 is here.
    if (n >= 8) {
      bool high_zero = true;
      for (std::size_t i = 2; i < 8; ++i) high_zero = high_zero && u8(data[i]) == 0;
      if (high_zero) {
        ec = make_error_code(error::non_minimal_length);
        return 0;
      }
    }
    if (n < 10) return 0;
    len = 0;
    for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | u8(data[i]);
    pos = 10;
  }
  if (masked) {
    if (n < pos + 4) return 0;
    std::memcpy(out.mask.data(), data.data() + pos, 4);
    pos += 4;
  } else {
    out.mask = {};
  }
  out.fin = (b0 & 0x80) != 0;
  out.rsv1 = (b0 & 0x40) != 0;
  out.rsv2 = (b0 & 0x20) != 0;
  out.rsv3 = (b0 & 0x10) != 0;
  out.opcode = static_cast<Opcode>(b0 & 0x0F);
  out.masked = masked;
  out.payload_length = len;
  return pos;
}

std::size_t write_frame_header(const FrameHeader& h,
                               std::span<std::byte, max_frame_header_size> out) noexcept {
  std::uint8_t b0 = static_cast<std::uint8_t>(h.opcode) & 0x0F;
  if (h.fin) b0 |= 0x80;
  if (h.rsv1) b0 |= 0x40;
  if (h.rsv2) b0 |= 0x20;
  if (h.rsv3) b0 |= 0x10;
  const std::uint8_t mbit = h.masked ? 0x80 : 0x00;
  out[0] = std::byte{b0};
  std::size_t pos = 2;
  const std::uint64_t len = h.payload_length;
  if (len <= 125) {
    out[1] = std::byte{static_cast<std::uint8_t>(mbit | len)};
  } else if (len <= 0xFFFF) {
    out[1] = std::byte{static_cast<std::uint8_t>(mbit | 126)};
    out[2] = std::byte{static_cast<std::uint8_t>(len >> 8)};
    out[3] = std::byte{static_cast<std::uint8_t>(len)};
    pos = 4;
  } else {
    out[1] = std::byte{static_cast<std::uint8_t>(mbit | 127)};
    for (std::size_t i = 0; i < 8; ++i)
      out[2 + i] = std::byte{static_cast<std::uint8_t>(len >> (56 - 8 * i))};
    pos = 10;
  }
  if (h.masked) {
    std::memcpy(out.data() + pos, h.mask.data(), 4);
    pos += 4;
  }
  return pos;
}

bool mask_uses_avx2() noexcept {
#if defined(DUPLEX_MASK_AVX2)
  return cpu_has_avx2;
#else
  return false;
#endif
}

std::size_t apply_mask(std::span<std::byte> data, MaskKey key, std::size_t offset) noexcept {
  offset &= 3;
  xor_pattern(data.data(), data.data(), data.size(), rotated_key64(key, offset));
  return (offset + data.size()) & 3;
}

std::size_t copy_masked(std::span<std::byte> dst, std::span<const std::byte> src, MaskKey key,
                        std::size_t offset) noexcept {
  offset &= 3;
  const std::size_t n = dst.size() < src.size() ? dst.size() : src.size();
  xor_pattern(dst.data(), src.data(), n, rotated_key64(key, offset));
  return (offset + n) & 3;
}

}  // namespace duplex::protocol
