// Incremental UTF-8 validation (RFC 3629 section 4), fail-fast.
#include <duplex/protocol/utf8.hpp>

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
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

// Skips the ASCII run at p; returns the first non-ASCII byte or end.
inline const std::uint8_t* skip_ascii(const std::uint8_t* p, const std::uint8_t* end) noexcept {
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
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if ((w & 0x8080808080808080ull) != 0) break;
    p += 8;
  }
  while (p < end && *p < 0x80) ++p;
  return p;
}

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
