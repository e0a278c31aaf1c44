// An independent UTF-8 reference for tests and fuzzing: decodes by arithmetic
// on code point values (not by byte ranges), and finds the first byte after
// which no continuation can make the text valid.
#pragma once

#include <cstddef>
#include <cstdint>

namespace duplex::test {

inline constexpr std::size_t utf8_ok = static_cast<std::size_t>(-1);

/// True when the first `m` bytes of a `len`-byte sequence can still be
/// completed into a valid scalar value.
inline bool utf8_extendable(const std::uint8_t* b, std::size_t m, std::size_t len) {
  const std::uint32_t lead_bits = len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07;
  std::uint32_t lo = b[0] & lead_bits, hi = lo;
  for (std::size_t k = 1; k < len; ++k) {
    const std::uint32_t bits = k < m ? (b[k] & 0x3Fu) : 0u;
    lo = (lo << 6) | (k < m ? bits : 0x00);
    hi = (hi << 6) | (k < m ? bits : 0x3F);
  }
  const std::uint32_t min_v = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
  const std::uint32_t max_v = len == 2 ? 0x7FF : len == 3 ? 0xFFFF : 0x10FFFF;
  if (lo < min_v) lo = min_v;
  if (hi > max_v) hi = max_v;
  if (lo > hi) return false;
  // Entirely inside the surrogate range?
  return !(lo >= 0xD800 && hi <= 0xDFFF);
}

/// Index of the first byte after which `data` can no longer be the start of
/// valid UTF-8, or utf8_ok. `*boundary` says whether it ends on a code point.
inline std::size_t utf8_first_bad(const std::uint8_t* data, std::size_t n,
                                  bool* boundary = nullptr) {
  std::size_t i = 0;
  if (boundary) *boundary = true;
  while (i < n) {
    const std::uint8_t c = data[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    if ((c & 0xE0) == 0xC0)
      len = 2;
    else if ((c & 0xF0) == 0xE0)
      len = 3;
    else if ((c & 0xF8) == 0xF0)
      len = 4;
    if (len == 0 || !utf8_extendable(data + i, 1, len)) return i;
    std::size_t k = 1;
    for (; k < len && i + k < n; ++k) {
      if ((data[i + k] & 0xC0) != 0x80) return i + k;
      if (!utf8_extendable(data + i, k + 1, len)) return i + k;
    }
    if (k < len) {
      if (boundary) *boundary = false;
      return utf8_ok;
    }
    i += len;
  }
  return utf8_ok;
}

}  // namespace duplex::test
