// Incremental UTF-8 validation (RFC 3629 section 4), fail-fast.
#include <duplex/protocol/utf8.hpp>

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <tmmintrin.h>
#define DUPLEX_UTF8_SSSE3 1
#endif

namespace duplex::protocol {
namespace {

// The state kept between pieces: state_ is the number of continuation bytes
// still expected (1-3); partial_ holds the allowed range of the next one
// (low byte: lowest value, next byte: highest value).
constexpr std::uint32_t any_continuation = 0x80u | (0xBFu << 8);

inline bool in_range(std::uint8_t c, std::uint8_t lo, std::uint8_t hi) noexcept {
  return static_cast<std::uint8_t>(c - lo) <= static_cast<std::uint8_t>(hi - lo);
}

inline std::uint64_t load64(const std::uint8_t* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}
inline std::uint32_t load32(const std::uint8_t* p) noexcept {
  std::uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// Skips the ASCII run at p; returns the first non-ASCII byte or end.
inline const std::uint8_t* skip_ascii(const std::uint8_t* p, const std::uint8_t* end) noexcept {
  // Short text (small messages, the common case): two overlapping words.
  const auto n = end - p;
  if (n <= 16) {
    if (n >= 8 && ((load64(p) | load64(end - 8)) & 0x8080808080808080ull) == 0) return end;
    if (n >= 4 && n < 8 && ((load32(p) | load32(end - 4)) & 0x80808080u) == 0) return end;
  }
#if defined(__SSE2__)
  while (end - p >= 32) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    int m = _mm_movemask_epi8(_mm_or_si128(a, b));
    if (m != 0) break;
    p += 32;
  }
  while (end - p >= 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    int m = _mm_movemask_epi8(a);
    if (m != 0) return p + __builtin_ctz(static_cast<unsigned>(m));
    p += 16;
  }
#endif
  while (end - p >= 8) {
    if ((load64(p) & 0x8080808080808080ull) != 0) break;
    p += 8;
  }
  while (p < end && *p < 0x80) ++p;
  return p;
}

#if defined(DUPLEX_UTF8_SSSE3)
// Validates 16 bytes at a time with three nibble lookups per block (the
// "lookup" algorithm of Keiser and Lemire, "Validating UTF-8 in less than one
// instruction per byte", 2021), for text that starts on a code point boundary.
// Returns how far it got (a multiple of 16 bytes); `bad` is set when a byte in
// that range breaks UTF-8. A sequence cut at the returned position is not
// judged: the caller re-checks it from its lead byte.
__attribute__((target("ssse3"))) const std::uint8_t* validate_ssse3(const std::uint8_t* p,
                                                                    const std::uint8_t* end,
                                                                    bool& bad) noexcept {
  // One bit per error class; a byte pair is invalid when all three lookups
  // agree on a class.
  constexpr std::uint8_t too_short = 1 << 0;   // lead then non-continuation
  constexpr std::uint8_t too_long = 1 << 1;    // ASCII then continuation
  constexpr std::uint8_t overlong_3 = 1 << 2;  // E0 80..9F
  constexpr std::uint8_t too_large = 1 << 3;   // F4 90..BF, F5..FF
  constexpr std::uint8_t surrogate = 1 << 4;   // ED A0..BF
  constexpr std::uint8_t overlong_2 = 1 << 5;  // C0, C1
  constexpr std::uint8_t too_large_1000 = 1 << 6;
  constexpr std::uint8_t overlong_4 = 1 << 6;  // F0 80..8F
  constexpr std::uint8_t two_conts = 1 << 7;   // continuation after continuation
  constexpr std::uint8_t carry = too_short | too_long | two_conts;
  alignas(16) static constexpr std::uint8_t byte1_high[16] = {
      too_long,
      too_long,
      too_long,
      too_long,
      too_long,
      too_long,
      too_long,
      too_long,
      two_conts,
      two_conts,
      two_conts,
      two_conts,
      too_short | overlong_2,
      too_short,
      too_short | overlong_3 | surrogate,
      too_short | too_large | too_large_1000 | overlong_4};
  alignas(16) static constexpr std::uint8_t byte1_low[16] = {
      carry | overlong_3 | overlong_2 | overlong_4,
      carry | overlong_2,
      carry,
      carry,
      carry | too_large,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000 | surrogate,
      carry | too_large | too_large_1000,
      carry | too_large | too_large_1000};
  alignas(16) static constexpr std::uint8_t byte2_high[16] = {
      too_short,
      too_short,
      too_short,
      too_short,
      too_short,
      too_short,
      too_short,
      too_short,
      too_long | overlong_2 | two_conts | overlong_3 | too_large_1000 | overlong_4,
      too_long | overlong_2 | two_conts | overlong_3 | too_large,
      too_long | overlong_2 | two_conts | surrogate | too_large,
      too_long | overlong_2 | two_conts | surrogate | too_large,
      too_short,
      too_short,
      too_short,
      too_short};
  const __m128i t1h = _mm_load_si128(reinterpret_cast<const __m128i*>(byte1_high));
  const __m128i t1l = _mm_load_si128(reinterpret_cast<const __m128i*>(byte1_low));
  const __m128i t2h = _mm_load_si128(reinterpret_cast<const __m128i*>(byte2_high));
  const __m128i low_nibble = _mm_set1_epi8(0x0F);
  const __m128i third_min = _mm_set1_epi8(static_cast<char>(0xE0 - 0x80));
  const __m128i fourth_min = _mm_set1_epi8(static_cast<char>(0xF0 - 0x80));
  const __m128i high_bit = _mm_set1_epi8(static_cast<char>(0x80));
  __m128i prev = _mm_setzero_si128();
  __m128i err = _mm_setzero_si128();
  while (end - p >= 16) {
    const __m128i in = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i prev1 = _mm_alignr_epi8(in, prev, 15);
    const __m128i b1h = _mm_shuffle_epi8(t1h, _mm_and_si128(_mm_srli_epi16(prev1, 4), low_nibble));
    const __m128i b1l = _mm_shuffle_epi8(t1l, _mm_and_si128(prev1, low_nibble));
    const __m128i b2h = _mm_shuffle_epi8(t2h, _mm_and_si128(_mm_srli_epi16(in, 4), low_nibble));
    const __m128i special = _mm_and_si128(_mm_and_si128(b1h, b1l), b2h);
    // Bytes 2 and 3 after a 3- or 4-byte lead must be continuations; the
    // tables flag every continuation after a continuation, so the two cancel.
    const __m128i prev2 = _mm_alignr_epi8(in, prev, 14);
    const __m128i prev3 = _mm_alignr_epi8(in, prev, 13);
    const __m128i must23 = _mm_and_si128(
        _mm_or_si128(_mm_subs_epu8(prev2, third_min), _mm_subs_epu8(prev3, fourth_min)), high_bit);
    err = _mm_or_si128(err, _mm_xor_si128(must23, special));
    prev = in;
    p += 16;
  }
  bad = _mm_movemask_epi8(_mm_cmpeq_epi8(err, _mm_setzero_si128())) != 0xFFFF;
  return p;
}

bool have_ssse3() noexcept {
  static const bool yes = __builtin_cpu_supports("ssse3");
  return yes;
}
#endif

}  // namespace

bool Utf8Validator::feed(std::span<const std::byte> data) noexcept {
  if (state_ == reject_) return false;
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  const auto* const end = p + data.size();

  // Finish a sequence split by the previous piece, one byte at a time (at most 3).
  while (state_ != 0) {
    if (p == end) return true;
    const auto lo = static_cast<std::uint8_t>(partial_);
    const auto hi = static_cast<std::uint8_t>(partial_ >> 8);
    if (!in_range(*p, lo, hi)) {
      state_ = reject_;
      return false;
    }
    ++p;
    --state_;
    partial_ = any_continuation;
  }

  while (p < end) {
    if (*p < 0x80) {
      p = skip_ascii(p, end);
      if (p == end) break;
    }
#if defined(DUPLEX_UTF8_SSSE3)
    // Long non-ASCII text: 16 bytes per step; the scalar code below takes
    // over at the last code point boundary before where it stopped.
    if (end - p >= 64 && have_ssse3()) {
      bool bad = false;
      const std::uint8_t* q = validate_ssse3(p, end, bad);
      if (bad) {
        state_ = reject_;
        return false;
      }
      if (q[-1] >= 0xC0)
        q -= 1;
      else if (q[-2] >= 0xE0)
        q -= 2;
      else if (q[-3] >= 0xF0)
        q -= 3;
      p = q;
      continue;
    }
#endif
    const std::uint8_t c = *p;
    std::size_t need;
    std::uint8_t lo = 0x80, hi = 0xBF;
    // RFC 3629 4: C0, C1 (overlong 2-byte forms), stray continuation bytes and
    // F5-FF (beyond U+10FFFF) never occur in UTF-8.
    if (c < 0xC2) {
      state_ = reject_;
      return false;
    } else if (c < 0xE0) {
      need = 1;
    } else if (c < 0xF0) {
      need = 2;
      // E0 80-9F would be overlong; ED A0-BF would be a UTF-16 surrogate.
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
      need = 3;
      // F0 80-8F would be overlong; F4 90-BF would exceed U+10FFFF.
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      state_ = reject_;
      return false;
    }
    if (static_cast<std::size_t>(end - p) > need) {
      // The whole sequence is here.
      bool good = in_range(p[1], lo, hi);
      if (need >= 2) good = good && in_range(p[2], 0x80, 0xBF);
      if (need == 3) good = good && in_range(p[3], 0x80, 0xBF);
      if (!good) {
        state_ = reject_;
        return false;
      }
      p += need + 1;
      continue;
    }
    // The piece ends inside this sequence: check what is here, keep the rest.
    ++p;
    for (; p < end; ++p, --need, lo = 0x80, hi = 0xBF) {
      if (!in_range(*p, lo, hi)) {
        state_ = reject_;
        return false;
      }
    }
    state_ = static_cast<std::uint8_t>(need);
    partial_ = static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 8);
    return true;
  }
  return true;
}

bool is_valid_utf8(std::span<const std::byte> text) noexcept {
  Utf8Validator v;
  return v.feed(text) && v.complete();
}

bool is_valid_utf8(std::string_view text) noexcept {
  return is_valid_utf8(std::as_bytes(std::span(text.data(), text.size())));
}

}  // namespace duplex::protocol
